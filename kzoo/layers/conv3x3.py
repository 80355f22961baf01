"""A 3x3 stride-1 'same' Keras convolution with a faster kernel gradient on large CPU feature maps."""

from __future__ import annotations

from typing import Any

import keras

from kzoo.ops.conv import conv2d_3x3

_FIXED = {"kernel_size": (3, 3), "strides": (1, 1), "padding": "same", "dilation_rate": (1, 1), "groups": 1}


def _normalized(key: str, value: Any) -> Any:
    if key in ("kernel_size", "strides", "dilation_rate"):
        return tuple(value) if isinstance(value, list | tuple) else (value, value)
    return value.lower() if isinstance(value, str) else value


@keras.saving.register_keras_serializable(package="kzoo")
class Conv2D3x3(keras.layers.Conv2D):
    """``keras.layers.Conv2D(filters, 3, padding="same")`` (channels last, stride 1) whose training calls go
    through :func:`kzoo.ops.conv.conv2d_3x3`: the same forward pass and weights, and on CPU a kernel gradient
    made of matrix products for feature maps of at least ``MATMUL_GRADIENT_MIN_POSITIONS`` positions. Calls
    with ``training`` false or unset, and all calls of a frozen layer, are ``keras.layers.Conv2D``'s, so
    inference and exported graphs do not change.

    Args:
        filters: ``K``, output channels.
        **kwargs: the other arguments of ``keras.layers.Conv2D`` (activation, use_bias, initializers,
            regularizers, dtype, name, ...). ``kernel_size``, ``strides``, ``padding``, ``dilation_rate`` and
            ``groups`` may be given (a saved config has them) but must be 3, 1, "same", 1 and 1.

    Input:
        ``[B, H, W, C]`` float.

    Output:
        ``[B, H, W, K]`` in the layer's compute dtype.
    """

    def __init__(self, filters: int, **kwargs: Any) -> None:
        for key, value in _FIXED.items():
            given = kwargs.pop(key, value)
            if _normalized(key, given) != value:
                raise ValueError(f"Conv2D3x3 has {key}={value!r}; got {key}={given!r} (use keras.layers.Conv2D)")
        if kwargs.get("data_format") not in (None, "channels_last"):
            raise ValueError(f"Conv2D3x3 is channels_last only, got data_format={kwargs['data_format']!r}")
        kwargs["data_format"] = "channels_last"
        super().__init__(filters, 3, padding="same", **kwargs)

    def call(self, inputs, training=None):
        if not training or not self.trainable:  # inference graphs (and exports) stay Keras's own
            return super().call(inputs)
        kernel = keras.ops.cast(self.kernel, self.compute_dtype)
        bias = keras.ops.cast(self.bias, self.compute_dtype) if self.use_bias else None
        outputs = conv2d_3x3(keras.ops.cast(inputs, self.compute_dtype), kernel, bias)
        return outputs if self.activation is None else self.activation(outputs)
