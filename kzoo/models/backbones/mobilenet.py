"""A light MobileNetV2 body (Sandler et al., 2018) returning C2-C5 feature maps, for edge export.

The body is ``keras.applications.MobileNetV2(include_top=False)`` with four of its layers as
outputs: the last block output at each stride.

=======  ======  =================  ===============================
feature  stride  Keras layer        channels (alpha = 1.0)
=======  ======  =================  ===============================
C2       4       ``block_2_add``    24  (``make_divisible(int(24 alpha), 8)``)
C3       8       ``block_5_add``    32  (``make_divisible(int(32 alpha), 8)``)
C4       16      ``block_12_add``   96  (``make_divisible(int(96 alpha), 8)``)
C5       32      ``out_relu``       1280 (``make_divisible(1280 alpha, 8)`` for alpha > 1)
=======  ======  =================  ===============================

C2-C4 are the outputs of linear bottlenecks (a residual sum without activation, as in the
paper); C5 is the final 1 x 1 expansion to 1280 channels with ReLU6, which torchvision's and
TF's detection feature extractors also use as their last level. Every layer is a convolution,
depthwise convolution, batch norm, ReLU6, add or zero padding, so the model converts to TFLite
builtin ops.

Padding follows Keras's MobileNetV2 (TensorFlow ``"same"``: ``(0, 1)`` at stride 2 on even
sizes), which its ImageNet weights were trained with. Keras picks the stride-2 padding from the
*static* input size: an odd side known at build time is padded ``(1, 1)`` (output ``ceil(n/2)``),
an unknown side is padded ``(0, 1)`` (output ``floor(n/2)`` when the side turns out odd). Use sides
that are multiples of 32 (Mask R-CNN pads its batch to that anyway) and the feature sizes are exactly
``H/s x W/s`` either way.
"""

from __future__ import annotations

from typing import Any

import keras

from kzoo.models.backbones.resnet import image_input

FEATURE_LAYERS: dict[str, str] = {
    "C2": "block_2_add",
    "C3": "block_5_add",
    "C4": "block_12_add",
    "C5": "out_relu",
}


def _make_divisible(value: float, divisor: int = 8) -> int:
    # keras.applications.mobilenet_v2._make_divisible
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def mobilenet_v2_feature_channels(alpha: float = 1.0) -> dict[str, int]:
    """Channels of C2..C5 of :func:`mobilenet_v2_backbone` for a width multiplier ``alpha``."""
    # keras.applications truncates before rounding: _make_divisible(int(filters * alpha), 8)
    return {
        "C2": _make_divisible(int(24 * alpha)),
        "C3": _make_divisible(int(32 * alpha)),
        "C4": _make_divisible(int(96 * alpha)),
        "C5": _make_divisible(1280 * alpha) if alpha > 1.0 else 1280,
    }


def mobilenet_v2_backbone(
    input_shape: tuple[int | None, int | None, int] | None = (None, None, 3),
    alpha: float = 1.0,
    input_tensor: Any = None,
    weights: str | None = None,
    dtype: Any = None,
    name: str | None = None,
) -> keras.Model:
    """A MobileNetV2 body mapping images to the feature maps C2..C5.

    Args:
        input_shape: ``(height, width, channels)``; height and width may be ``None`` (see the
            module doc for odd sizes). Ignored when ``input_tensor`` is a Keras tensor.
        alpha: width multiplier (``keras.applications.MobileNetV2``'s ``alpha``), > 0.
        input_tensor: optional Keras tensor (or backend tensor) to build the model on.
        weights: ``None`` (random initialization) or anything ``keras.applications.MobileNetV2``
            accepts (``"imagenet"`` downloads, with its input-size constraints; images are then
            expected in ``[-1, 1]``).
        dtype: the dtype policy of every layer (e.g. ``keras.DTypePolicy("mixed_bfloat16")``); ``None``: Keras'
            default. ``keras.applications.MobileNetV2`` takes none: its layers are rebuilt with it (same weights).
        name: model name, default ``"mobilenet_v2_{alpha}"``.

    Returns:
        A functional model from float32 images ``[B, H, W, C]`` to a dict
        ``{"C2": [B, H/4, W/4, c2], "C3": [.., /8, .., c3], "C4": [.., /16, .., c4],
        "C5": [.., /32, .., c5]}`` with channels from :func:`mobilenet_v2_feature_channels`.
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    inputs = image_input(input_tensor, input_shape)
    body = keras.applications.MobileNetV2(
        input_tensor=inputs, include_top=False, weights=weights, alpha=alpha, pooling=None
    )
    features = {key: body.get_layer(layer).output for key, layer in FEATURE_LAYERS.items()}
    model_inputs = inputs if input_tensor is None else keras.utils.get_source_inputs(inputs)
    model = keras.Model(model_inputs, features, name=name or f"mobilenet_v2_{alpha:g}".replace(".", "_"))
    return model if dtype is None else _with_dtype(model, dtype)


def _with_dtype(model: keras.Model, dtype: Any) -> keras.Model:
    """A copy of the functional ``model`` whose layers have the dtype policy ``dtype``, with the same weights."""

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        return layer.__class__.from_config({**layer.get_config(), "dtype": dtype})

    copy = keras.models.clone_model(model, input_tensors=model.input, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
