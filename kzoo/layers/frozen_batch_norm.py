"""Batch normalization with frozen statistics and affine parameters (torchvision's ``FrozenBatchNorm2d``)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

# FusedBatchNormV3 divides by sqrt(variance + epsilon); cuDNN refuses epsilon below 1e-5, so the folded scale
# goes in as `scale` with variance 1 - _OP_EPSILON and epsilon _OP_EPSILON: a divisor of 1 on every device.
_OP_EPSILON = 1.001e-5


def _channel_affine(x: tf.Tensor, scale: tf.Tensor, shift: tf.Tensor) -> tf.Tensor:
    """``x * scale + shift`` over the last axis of a 4-D NHWC ``x`` as one inference-mode ``FusedBatchNormV3``.

    Grappler's remapper fuses a convolution followed by this op (and a ReLU) into one oneDNN convolution; a
    ``Mul`` and an ``Add`` would each be a pass over the activation. The gradient is ``dy * scale`` alone, so the
    convolution's output is not kept for a batch-norm gradient (``FusedBatchNormGradV3`` would keep it).

    Args:
        x: ``[N, H, W, C]`` float32, bfloat16 or float16.
        scale, shift: ``[C]`` float32.

    Returns:
        ``[N, H, W, C]``, the dtype of ``x``, computed in float32.
    """

    @tf.custom_gradient
    def affine(x):
        y, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=scale,
            offset=shift,
            mean=tf.zeros_like(scale),
            variance=tf.fill(tf.shape(scale), 1.0 - _OP_EPSILON),
            epsilon=_OP_EPSILON,
            is_training=False,
            data_format="NHWC",
        )

        def gradient(dy):
            return dy * tf.cast(scale, dy.dtype)

        return y, gradient

    return affine(x)


@keras.saving.register_keras_serializable(package="kzoo")
class FrozenBatchNormalization(keras.layers.Layer):
    """A fixed per-channel affine transform parameterized like batch normalization.

    Computes ``y = (x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta``
    over the last (channel) axis, always with the stored statistics: the ``training``
    argument is accepted and ignored, nothing is ever updated, and all four variables
    are non-trainable. This is what detection backbones use when the batch per replica
    is too small for meaningful batch statistics (torchvision's ``FrozenBatchNorm2d``,
    Detectron's ``AffineChannel``).

    The variables are named and ordered like ``keras.layers.BatchNormalization``'s
    (``gamma``, ``beta``, ``moving_mean``, ``moving_variance``), so ``get_weights`` /
    ``set_weights`` map 1:1 between the two layers, and a torchvision ``bn`` maps as
    ``weight -> gamma``, ``bias -> beta``, ``running_mean -> moving_mean``,
    ``running_var -> moving_variance``.

    The layer folds the four vectors into ``scale = gamma / sqrt(moving_variance + epsilon)``
    and ``shift = beta - moving_mean * scale`` (in float32) and returns
    ``x * scale + shift`` in the layer's compute dtype, as torchvision does. On 4-D (image) inputs that is one
    inference-mode ``FusedBatchNormV3`` (computed in float32), which TF fuses into a preceding convolution.

    Args:
        epsilon: added to the variance. torchvision's ``FrozenBatchNorm2d`` defaults to
            ``1e-5``; its COCO_V1 Mask R-CNN weights were trained with ``0.0``.
        gamma_initializer, beta_initializer, moving_mean_initializer, moving_variance_initializer: initial
            values (identity transform by default).

    Input shape:
        ``(..., channels)``, any rank >= 2, float; ``channels`` must be known.
    Output shape:
        Same as the input, in the layer's compute dtype.
    """

    def __init__(
        self,
        epsilon: float = 1e-5,
        gamma_initializer: Any = "ones",
        beta_initializer: Any = "zeros",
        moving_mean_initializer: Any = "zeros",
        moving_variance_initializer: Any = "ones",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        epsilon = float(epsilon)
        if epsilon < 0:
            raise ValueError(f"FrozenBatchNormalization epsilon must be >= 0, got {epsilon}")
        self.epsilon = epsilon
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.moving_mean_initializer = keras.initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = keras.initializers.get(moving_variance_initializer)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape: tuple) -> None:
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"FrozenBatchNormalization needs a known channel count, got input shape {input_shape}")
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: channels})
        shape = (channels,)
        # Same names and order as keras.layers.BatchNormalization, so weights copy 1:1.
        self.gamma = self.add_weight(shape=shape, name="gamma", initializer=self.gamma_initializer, trainable=False)
        self.beta = self.add_weight(shape=shape, name="beta", initializer=self.beta_initializer, trainable=False)
        self.moving_mean = self.add_weight(
            shape=shape, name="moving_mean", initializer=self.moving_mean_initializer, trainable=False
        )
        self.moving_variance = self.add_weight(
            shape=shape, name="moving_variance", initializer=self.moving_variance_initializer, trainable=False
        )
        self.built = True

    def call(self, inputs, training=None):
        del training  # always inference behaviour
        ops = keras.ops
        scale = ops.cast(self.gamma, "float32") * ops.rsqrt(ops.cast(self.moving_variance, "float32") + self.epsilon)
        shift = ops.cast(self.beta, "float32") - ops.cast(self.moving_mean, "float32") * scale
        x = ops.cast(inputs, self.compute_dtype)
        if len(x.shape) == 4 and x.dtype in (tf.float32, tf.bfloat16, tf.float16):
            return _channel_affine(x, scale, shift)
        return x * ops.cast(scale, self.compute_dtype) + ops.cast(shift, self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            epsilon=self.epsilon,
            gamma_initializer=keras.initializers.serialize(self.gamma_initializer),
            beta_initializer=keras.initializers.serialize(self.beta_initializer),
            moving_mean_initializer=keras.initializers.serialize(self.moving_mean_initializer),
            moving_variance_initializer=keras.initializers.serialize(self.moving_variance_initializer),
        )
        return config
