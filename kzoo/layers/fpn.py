"""Feature Pyramid Network (Lin et al., *Feature Pyramid Networks for Object Detection*), torchvision layout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kzoo.layers.conv3x3 import Conv2D3x3


def _nearest_resize(x: tf.Tensor, height: int | tf.Tensor, width: int | tf.Tensor, training: bool = False) -> tf.Tensor:
    """Nearest-neighbour resize of NHWC ``x`` to ``(height, width)``, PyTorch's legacy ``"nearest"`` rule.

    Output pixel ``i`` reads input pixel ``min(floor(i * (in / out)), in - 1)`` (``F.interpolate(size=...,
    mode="nearest")``). An exact 2x upsampling is a repeat (a broadcast and a reshape); other sizes gather
    along rows and columns with static indices when the shapes are static. With ``training``, the 2x repeat's
    gradient is a 2x2 sum pooling (an average pooling times 4) instead of the broadcast's ``Sum`` over a
    strided 5-D view, which is several times slower on CPU; inference graphs keep the plain repeat.
    """
    in_h, in_w = x.shape[1], x.shape[2]
    static = all(isinstance(v, int) for v in (in_h, in_w, height, width))
    if static and height == 2 * in_h and width == 2 * in_w:
        return _repeat_2x_pooled_gradient(x) if training else _repeat_2x(x)
    if static:
        # torch computes the scale in float32 and truncates: reproduce it in NumPy float32.
        rows = np.minimum(
            np.floor(np.arange(height, dtype=np.float32) * np.float32(in_h / height)).astype(np.int32), in_h - 1
        )
        cols = np.minimum(
            np.floor(np.arange(width, dtype=np.float32) * np.float32(in_w / width)).astype(np.int32), in_w - 1
        )
    else:
        shape = tf.shape(x)
        in_h, in_w = shape[1], shape[2]

        def index(size_out, size_in):
            scale = tf.cast(size_in, tf.float32) / tf.cast(size_out, tf.float32)
            idx = tf.cast(tf.floor(tf.cast(tf.range(size_out), tf.float32) * scale), tf.int32)
            return tf.minimum(idx, size_in - 1)

        rows, cols = index(height, in_h), index(width, in_w)
    return tf.gather(tf.gather(x, rows, axis=1), cols, axis=2)


def _repeat_2x(x: tf.Tensor) -> tf.Tensor:
    """``[B, H, W, C]`` -> ``[B, 2H, 2W, C]``, every pixel repeated 2x2 (static ``H``, ``W``)."""
    in_h, in_w = x.shape[1], x.shape[2]
    channels = x.shape[3] if x.shape[3] is not None else tf.shape(x)[3]
    # Rank 5 at most, with the batch folded into the rows: TFLite's int8 STRIDED_SLICE and friends stop
    # at 5-D, and a 6-D [B, H, 2, W, 2, C] broadcast made full-integer conversion fail ("StridedSlice op
    # only supports 1D-5D input arrays"). Pure data movement: the values are exactly the same.
    rows = tf.reshape(x, [-1, 1, in_w, 1, channels])  # [B * H, 1, W, 1, C]
    y = tf.broadcast_to(rows, [tf.shape(rows)[0], 2, in_w, 2, channels])
    return tf.reshape(y, [-1, 2 * in_h, 2 * in_w, channels])


@tf.custom_gradient
def _repeat_2x_pooled_gradient(x: tf.Tensor):
    """:func:`_repeat_2x` whose gradient is ``4 * avg_pool2d(upstream, 2, 2)``."""
    y = _repeat_2x(x)

    def grad(upstream):
        return tf.nn.avg_pool2d(upstream, 2, 2, "VALID") * tf.constant(4.0, upstream.dtype)

    return y, grad


@keras.saving.register_keras_serializable(package="kzoo")
class FeaturePyramidNetwork(keras.layers.Layer):
    """FPN top-down pathway with lateral connections, plus the extra P6 of torchvision's Mask R-CNN.

    For levels ``l = min_level .. max_level`` (C2..C5 by default, strides ``2 ** l``):

    * ``inner_l = Conv1x1(C_l)`` (lateral, with bias), ``num_channels`` outputs;
    * top-down: ``T_max = inner_max``; ``T_l = inner_l + upsample(T_{l+1})`` where ``upsample`` is
      nearest-neighbour to the lateral map's exact size (a 2x repeat when sizes are exactly double; for an
      odd-sized lateral map it reproduces ``F.interpolate(size=lateral_size, mode="nearest")``);
    * ``P_l = Conv3x3(T_l)`` (with bias, padding 1: Keras ``"same"`` at stride 1 is symmetric);
    * with ``extra_pool_level``: ``P_{max+1} = max_pool(P_max, kernel 1, stride 2)`` = ``P_max[:, ::2, ::2]``
      (torchvision's ``LastLevelMaxPool``; its size is ``ceil(H_max / 2)``).

    No normalization and no activation anywhere (torchvision's v1 FPN).

    Weight names and torchvision conversion (``backbone.fpn.`` prefix; torchvision >= 0.13 names the convs
    ``inner_blocks.{i}.0`` / ``layer_blocks.{i}.0``, the published v1 checkpoint ``inner_blocks.{i}`` /
    ``layer_blocks.{i}``; ``i = l - min_level``)::

        inner_{i}/kernel [1, 1, C_l, num_channels]  <- inner_blocks.{i}.weight [O, I, 1, 1].transpose(2, 3, 1, 0)
        inner_{i}/bias   [num_channels]             <- inner_blocks.{i}.bias
        layer_{i}/kernel [3, 3, num_channels, num_channels] <- layer_blocks.{i}.weight.transpose(2, 3, 1, 0)
        layer_{i}/bias   [num_channels]             <- layer_blocks.{i}.bias

    Initialization follows torchvision: ``kaiming_uniform_(a=1)`` kernels (= Keras ``"lecun_uniform"``),
    zero biases.

    Args:
        num_channels: channels of every output level (256 in the paper).
        min_level, max_level: pyramid levels of the inputs (C_min .. C_max).
        extra_pool_level: also output ``P_{max_level + 1}`` by subsampling (P6 for RPN anchors of size 512).

    Input:
        ``[C_min, ..., C_max]`` (a list or tuple, finest first) or a dict keyed ``"C{l}"`` (also ``"c{l}"``,
        ``"{l}"`` or the int ``l``); each float ``[B, H_l, W_l, C_l]`` NHWC, ``H_l = ceil(H_{l-1} / 2)``.

    Output:
        list ``[P_min, ..., P_max(, P_{max+1})]``, each ``[B, H_l, W_l, num_channels]`` in the layer's compute
        dtype.
    """

    def __init__(
        self,
        num_channels: int = 256,
        min_level: int = 2,
        max_level: int = 5,
        extra_pool_level: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        num_channels, min_level, max_level = int(num_channels), int(min_level), int(max_level)
        if num_channels <= 0:
            raise ValueError(f"FeaturePyramidNetwork num_channels must be positive, got {num_channels}")
        if min_level < 0 or max_level < min_level:
            raise ValueError(f"FeaturePyramidNetwork needs 0 <= min_level <= max_level, got {min_level}, {max_level}")
        self.num_channels = num_channels
        self.min_level = min_level
        self.max_level = max_level
        self.extra_pool_level = bool(extra_pool_level)
        self.num_inputs = max_level - min_level + 1
        common = dict(kernel_initializer="lecun_uniform", bias_initializer="zeros", dtype=self.dtype_policy)
        self.inner_blocks = [
            keras.layers.Conv2D(num_channels, 1, name=f"inner_{i}", **common) for i in range(self.num_inputs)
        ]
        self.layer_blocks = [Conv2D3x3(num_channels, name=f"layer_{i}", **common) for i in range(self.num_inputs)]

    def _as_list(self, inputs) -> list:
        if isinstance(inputs, Mapping):
            out = []
            for level in range(self.min_level, self.max_level + 1):
                for key in (f"C{level}", f"c{level}", str(level), level):
                    if key in inputs:
                        out.append(inputs[key])
                        break
                else:
                    raise ValueError(
                        f"FeaturePyramidNetwork: no input for level {level} (key 'C{level}') in "
                        f"{sorted(map(str, inputs))}"
                    )
            return out
        if not isinstance(inputs, Sequence) or len(inputs) != self.num_inputs:
            raise ValueError(
                f"FeaturePyramidNetwork expects {self.num_inputs} feature maps C{self.min_level}..C{self.max_level}, "
                f"got {type(inputs).__name__} of length {len(inputs) if isinstance(inputs, Sequence) else '?'}"
            )
        return list(inputs)

    def build(self, input_shape) -> None:
        shapes = self._as_list(input_shape)
        for i, shape in enumerate(shapes):
            shape = tuple(shape)
            if len(shape) != 4:
                raise ValueError(f"FeaturePyramidNetwork input C{self.min_level + i} must be 4-D NHWC, got {shape}")
            self.inner_blocks[i].build(shape)
            self.layer_blocks[i].build(shape[:3] + (self.num_channels,))
        self.built = True

    def call(self, inputs, training=None) -> list:
        features = self._as_list(inputs)
        last = self.inner_blocks[-1](features[-1])
        outputs = [self.layer_blocks[-1](last)]
        for i in range(self.num_inputs - 2, -1, -1):
            lateral = self.inner_blocks[i](features[i])
            height, width = lateral.shape[1], lateral.shape[2]
            if height is None or width is None:
                dynamic = tf.shape(lateral)
                height = dynamic[1] if height is None else height
                width = dynamic[2] if width is None else width
            last = lateral + _nearest_resize(last, height, width, training=bool(training))
            outputs.insert(0, self.layer_blocks[i](last))
        if self.extra_pool_level:
            outputs.append(outputs[-1][:, ::2, ::2, :])
        return outputs

    def compute_output_shape(self, input_shape) -> list:
        shapes = [tuple(s) for s in self._as_list(input_shape)]
        out = [s[:3] + (self.num_channels,) for s in shapes]
        if self.extra_pool_level:
            b, h, w, c = out[-1]
            out.append((b, None if h is None else -(-h // 2), None if w is None else -(-w // 2), c))
        return out

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            num_channels=self.num_channels,
            min_level=self.min_level,
            max_level=self.max_level,
            extra_pool_level=self.extra_pool_level,
        )
        return config
