"""Mask R-CNN mask head: a small FCN on each RoI predicting one 28 x 28 mask per class."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


def _kaiming_normal_fan_out() -> keras.initializers.Initializer:
    """PyTorch's ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` (Keras computes the same fan-out)."""
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


@keras.saving.register_keras_serializable(package="kzoo")
class MaskHead(keras.layers.Layer):
    """MaskRCNNHeads + MaskRCNNPredictor: per-RoI, per-class mask logits at twice the RoI resolution.

    On each RoI's ``[S, S, C]`` features (``S = 14``): ``num_convs`` x (3x3 conv, ``num_channels``, ReLU);
    ``conv5_mask``, a 2x2 stride-2 transposed conv (``num_channels``) + ReLU, giving ``2S x 2S``;
    ``mask_fcn_logits``, a 1x1 conv to ``num_classes`` logits (apply a sigmoid; read the channel of the
    RoI's class). ``[B, N, ...]`` RoIs are folded to ``[B * N, ...]`` internally.

    Weight names and torchvision conversion (``roi_heads.mask_head.`` for the convs: torchvision >= 0.13
    keys ``{i-1}.0`` for the published v1 checkpoint's ``mask_fcn{i}``; ``roi_heads.mask_predictor.`` for
    the rest)::

        mask_fcn{i}/kernel      [3, 3, I, O] <- mask_fcn{i}.weight [O, I, 3, 3].transpose(2, 3, 1, 0),  i = 1..4
        conv5_mask/kernel       [2, 2, O, I] <- conv5_mask.weight [I, O, 2, 2].transpose(2, 3, 1, 0)
        mask_fcn_logits/kernel  [1, 1, I, K] <- mask_fcn_logits.weight.transpose(2, 3, 1, 0)

    (every ``bias`` copies directly; ``ConvTranspose2d`` stores ``[in, out, kh, kw]`` and Keras'
    ``Conv2DTranspose`` ``[kh, kw, out, in]``, so the same transpose applies; a 2x2 stride-2 transposed conv
    has no overlap, so no kernel flip is needed.) Initialization follows torchvision: kernels
    ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``, zero biases.

    Args:
        num_classes: ``K``, mask channels (torchvision predicts one for every class, background included: 91).
        num_convs: number of 3x3 convs (4).
        num_channels: their width and the transposed conv's (256).

    Input:
        RoI features, float ``[B, N, S, S, C]`` (or ``[R, S, S, C]``).

    Output:
        mask logits ``[B, N, 2S, 2S, K]`` (``[R, 2S, 2S, K]``), in the layer's compute dtype.
    """

    def __init__(self, num_classes: int, num_convs: int = 4, num_channels: int = 256, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        num_classes, num_convs, num_channels = int(num_classes), int(num_convs), int(num_channels)
        if num_classes <= 0 or num_convs < 0 or num_channels <= 0:
            raise ValueError(
                f"MaskHead needs num_classes > 0, num_convs >= 0, num_channels > 0, got {num_classes}, "
                f"{num_convs}, {num_channels}"
            )
        self.num_classes = num_classes
        self.num_convs = num_convs
        self.num_channels = num_channels
        self.convs = [
            keras.layers.Conv2D(
                num_channels,
                3,
                padding="same",
                kernel_initializer=_kaiming_normal_fan_out(),
                bias_initializer="zeros",
                dtype=self.dtype_policy,
                name=f"mask_fcn{i + 1}",
            )
            for i in range(num_convs)
        ]
        self.conv5_mask = keras.layers.Conv2DTranspose(
            num_channels,
            2,
            strides=2,
            kernel_initializer=_kaiming_normal_fan_out(),
            bias_initializer="zeros",
            dtype=self.dtype_policy,
            name="conv5_mask",
        )
        self.mask_fcn_logits = keras.layers.Conv2D(
            num_classes,
            1,
            kernel_initializer=_kaiming_normal_fan_out(),
            bias_initializer="zeros",
            dtype=self.dtype_policy,
            name="mask_fcn_logits",
        )

    def build(self, input_shape: tuple) -> None:
        input_shape = tuple(input_shape)
        if len(input_shape) not in (4, 5) or None in input_shape[-3:]:
            raise ValueError(f"MaskHead expects RoI features [B, N, S, S, C] with static S and C, got {input_shape}")
        shape = (None,) + input_shape[-3:]
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        self.conv5_mask.build(shape)
        shape = self.conv5_mask.compute_output_shape(shape)
        self.mask_fcn_logits.build(shape)
        self.built = True

    def call(self, inputs, classes=None):
        x = inputs
        lead = [d if d is not None else tf.shape(x)[i] for i, d in enumerate(x.shape[:-3])]
        if len(lead) == 2:
            rois = lead[0] * lead[1] if all(isinstance(d, int) for d in lead) else -1
            x = tf.reshape(x, [rois] + list(x.shape[-3:]))
        for conv in self.convs:
            x = keras.ops.relu(conv(x))
        x = keras.ops.relu(self.conv5_mask(x))
        if classes is None:
            x = self.mask_fcn_logits(x)
        else:
            x = self._class_logits(x, tf.reshape(tf.cast(classes, tf.int32), [-1]))
        if len(lead) == 2:
            x = tf.reshape(x, lead + list(x.shape[1:]))
        return x

    def _class_logits(self, x: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
        """``mask_fcn_logits`` restricted to one class per RoI: ``x [R, H, W, C]``, ``classes`` int32 ``[R]`` ->
        ``[R, H, W]``. The 1x1 convolution's column of each RoI's class, so the work does not grow with ``K``."""
        # Gathers along axis 1: their gradients are dense (an axis-0 gather's are IndexedSlices), and LiteRT
        # runs them as builtin GATHER in every quantization mode.
        weights = tf.gather(tf.cast(self.mask_fcn_logits.kernel[0, 0], x.dtype), classes, axis=1)  # [C, R]
        bias = tf.gather(tf.cast(self.mask_fcn_logits.bias, x.dtype)[None], classes, axis=1)[0]  # [R]
        return tf.einsum("rhwc,cr->rhw", x, weights) + bias[:, None, None]

    def compute_output_shape(self, input_shape: tuple, classes_shape: tuple | None = None) -> tuple:
        input_shape = tuple(input_shape)
        h, w = input_shape[-3:-1]
        return input_shape[:-3] + (2 * h, 2 * w) + (() if classes_shape is not None else (self.num_classes,))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_classes=self.num_classes, num_convs=self.num_convs, num_channels=self.num_channels)
        return config
