"""Backbones for Mask R-CNN: functional models from images to the feature maps C2..C5.

Every backbone maps float32 images ``[B, H, W, C]`` to a dict ``{"C2": ..., "C5": ...}`` of
feature maps with strides 4, 8, 16 and 32 (``FEATURE_STRIDES``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras

from kzoo.models.backbones.mobilenet import mobilenet_v2_backbone, mobilenet_v2_feature_channels
from kzoo.models.backbones.resnet import FEATURE_CHANNELS as RESNET_FEATURE_CHANNELS
from kzoo.models.backbones.resnet import FEATURE_STRIDES, resnet_backbone, torchvision_key_to_keras
from kzoo.models.backbones.small_convnet import small_convnet_backbone, small_convnet_feature_channels
from kzoo.models.mask_rcnn_config import BackboneConfig


def _resnet(depth: int) -> Callable[..., keras.Model]:
    def build(config: BackboneConfig, input_shape, dtype: Any) -> keras.Model:
        return resnet_backbone(
            depth=depth,
            input_shape=input_shape,
            stride_in_1x1=config.stride_in_1x1,
            norm=config.norm,
            norm_epsilon=config.norm_epsilon,
            frozen_stages=config.frozen_stages,
            dtype=dtype,
        )

    return build


#: ``model.backbone.name`` -> a function ``(BackboneConfig, input_shape, dtype) -> keras.Model`` that passes the
#: config's fields to its backbone (which of them it takes, under its own argument names).
BACKBONES: dict[str, Callable[..., keras.Model]] = {
    "resnet50": _resnet(50),
    "resnet101": _resnet(101),
    "mobilenet_v2": lambda config, input_shape, dtype: mobilenet_v2_backbone(
        input_shape=input_shape, alpha=config.width, dtype=dtype
    ),
    "small_convnet": lambda config, input_shape, dtype: small_convnet_backbone(
        input_shape=input_shape, width=config.width, norm=config.norm, dtype=dtype
    ),
}


def build_backbone(
    config: BackboneConfig | str,
    input_shape: tuple[int | None, int | None, int] | None = (None, None, 3),
    dtype: Any = None,
    **fields: Any,
) -> tuple[keras.Model, dict[str, int]]:
    """Build the backbone a :class:`~kzoo.models.mask_rcnn_config.BackboneConfig` describes (``model.backbone``).

    Which fields each backbone takes is decided here (:data:`BACKBONES`): ResNets take ``stride_in_1x1``,
    ``norm``, ``norm_epsilon`` and ``frozen_stages``; ``mobilenet_v2`` takes ``width`` (as ``alpha``);
    ``small_convnet`` takes ``width`` and ``norm``.

    Args:
        config: the backbone's config, or its ``name`` (``"resnet50"``, ``"resnet101"``, ``"mobilenet_v2"`` or
            ``"small_convnet"``) with the other fields in ``fields``.
        input_shape: ``(height, width, channels)``, height and width may be ``None``.
        dtype: the dtype policy of every layer (``keras.DTypePolicy("mixed_bfloat16")``: float32 variables,
            bfloat16 features); ``None``: Keras' default.
        **fields: :class:`BackboneConfig` fields, with a name for ``config`` (``frozen_stages=0``).

    Returns:
        ``(model, channels)``: the model (images ``[B, H, W, C]`` -> dict of C2..C5) and the
        channel count of each feature, e.g. ``{"C2": 256, "C3": 512, "C4": 1024, "C5": 2048}``.

    Raises:
        ValueError: an unknown backbone name (or a field value its config refuses).
    """
    if isinstance(config, str):
        if config not in BACKBONES:
            raise ValueError(f"unknown backbone {config!r}; choose one of {sorted(BACKBONES)}")
        config = BackboneConfig(name=config, **fields)
    elif fields:
        config = dataclasses.replace(config, **fields)
    if config.name not in BACKBONES:
        raise ValueError(f"unknown backbone {config.name!r}; choose one of {sorted(BACKBONES)}")
    model = BACKBONES[config.name](config, input_shape, dtype)
    channels = {key: int(model.output[key].shape[-1]) for key in FEATURE_STRIDES}
    return model, channels


__all__ = [
    "BACKBONES",
    "FEATURE_STRIDES",
    "RESNET_FEATURE_CHANNELS",
    "build_backbone",
    "mobilenet_v2_backbone",
    "mobilenet_v2_feature_channels",
    "resnet_backbone",
    "small_convnet_backbone",
    "small_convnet_feature_channels",
    "torchvision_key_to_keras",
]
