"""A small VGG-style convnet returning C2-C5: a backbone that trains from scratch on a CPU in minutes.

Each stage halves the resolution with a strided 3 x 3 convolution and adds ``convs_per_stage - 1`` more
3 x 3 convolutions, every one followed by a normalization and ReLU. The normalization is group norm (Wu and
He, 2018) by default: detection trains with a few images per batch, where batch statistics are noisy and
differ from the moving averages used at inference (measured on the shapes set, whose images each have their own
background color: with batch norm at 4 images per batch, C2 features at inference differed from training mode
by 65% of their magnitude and the detector scored bbox AP 0.03 after an epoch). With ``width=1.0`` the stages have
32 (stem, stride 2), 32 (C2, stride 4), 64 (C3), 128 (C4) and 256 (C5) channels: about 1.2 M parameters.
Only convolutions, normalization and ReLU: it converts to TFLite builtins and runs under XLA.
"""

from __future__ import annotations

from typing import Any

import keras

from kzoo.models.backbones.resnet import image_input

STAGE_CHANNELS: dict[str, int] = {"stem": 32, "C2": 32, "C3": 64, "C4": 128, "C5": 256}


def small_convnet_feature_channels(width: float = 1.0) -> dict[str, int]:
    """The channel count of C2..C5 for a width multiplier."""
    return {key: max(8, int(round(channels * width))) for key, channels in STAGE_CHANNELS.items() if key != "stem"}


def small_convnet_backbone(
    input_shape: tuple[int | None, int | None, int] | None = (None, None, 3),
    width: float = 1.0,
    convs_per_stage: int = 2,
    norm: str = "group",
    groups: int = 8,
    input_tensor: Any = None,
    dtype: Any = None,
    name: str | None = None,
) -> keras.Model:
    """A small convnet mapping images to the feature maps C2..C5.

    Args:
        input_shape: ``(height, width, channels)``; height and width may be ``None``.
        width: channel multiplier (> 0).
        convs_per_stage: 3 x 3 convolutions per stage (>= 1), the first one strided.
        norm: ``"group"`` (group normalization with ``groups`` groups, the same in training and inference) or
            ``"batch"`` (batch normalization).
        groups: the number of groups of group normalization (must divide every stage's channel count).
        input_tensor: optional Keras tensor to build the model on.
        dtype: the dtype policy of every layer (e.g. ``keras.DTypePolicy("mixed_bfloat16")``); ``None``: Keras'
            default.
        name: model name, default ``"small_convnet"``.

    Returns:
        A functional model from float32 images ``[B, H, W, C]`` to a dict ``{"C2": [B, H/4, W/4, c2],
        "C3": [.., H/8, ..], "C4": [.., H/16, ..], "C5": [.., H/32, ..]}`` (ceil division for odd sides), with
        channels from :func:`small_convnet_feature_channels`.
    """
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width!r}")
    if convs_per_stage < 1:
        raise ValueError(f"convs_per_stage must be >= 1, got {convs_per_stage!r}")
    if norm not in ("group", "batch"):
        raise ValueError(f"small_convnet norm must be 'group' or 'batch', got {norm!r}")
    inputs = image_input(input_tensor, input_shape)
    channels = {key: max(8, int(round(c * width))) for key, c in STAGE_CHANNELS.items()}
    if norm == "group" and any(c % groups for c in channels.values()):
        raise ValueError(f"groups={groups} must divide every stage's channels {sorted(set(channels.values()))}")

    def conv_bn_relu(x, filters: int, stride: int, layer_name: str):
        x = keras.layers.Conv2D(
            filters,
            3,
            strides=stride,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            dtype=dtype,
            name=f"{layer_name}_conv",
        )(x)
        if norm == "group":
            x = keras.layers.GroupNormalization(groups, epsilon=1e-5, dtype=dtype, name=f"{layer_name}_gn")(x)
        else:
            x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype=dtype, name=f"{layer_name}_bn")(x)
        return keras.layers.ReLU(dtype=dtype, name=f"{layer_name}_relu")(x)

    x = conv_bn_relu(inputs, channels["stem"], 2, "stem")
    features = {}
    for key in ("C2", "C3", "C4", "C5"):
        for index in range(convs_per_stage):
            x = conv_bn_relu(x, channels[key], 2 if index == 0 else 1, f"{key.lower()}_{index}")
        features[key] = x
    model_inputs = inputs if input_tensor is None else keras.utils.get_source_inputs(inputs)
    return keras.Model(model_inputs, features, name=name or "small_convnet")
