"""Mask R-CNN, keras.applications-style: ``MaskRCNN``, ``preprocess_input``, ``load_mask_rcnn_config``."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import keras
import numpy as np
import yaml

from kzoo.applications.weights import registered_or_path, resolve_weights_file
from kzoo.config import dataclass_from_dict
from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.models.mask_rcnn_config import PRESETS, MaskRCNNConfig
from kzoo.models.weight_files import load_weights_transferring

BACKBONES = {"resnet50_fpn": "resnet50", "resnet101_fpn": "resnet101", "mobilenet_v2_fpn": "mobilenet_v2"}


def MaskRCNN(
    backbone: str = "resnet50_fpn",
    num_classes: int = 91,
    weights: str | None = None,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    min_size: int = 800,
    max_size: int = 1333,
    config: MaskRCNNConfig | None = None,
    name: str = "mask_rcnn",
    **overrides: Any,
) -> MaskRCNNModel:
    """Instantiate a Mask R-CNN with a ResNet-FPN or MobileNetV2-FPN backbone.

    Args:
        backbone: ``"resnet50_fpn"``, ``"resnet101_fpn"`` or ``"mobilenet_v2_fpn"`` (light, for edge devices).
        num_classes: classes including the background (91 for COCO's category ids).
        weights: ``None`` (random), a ``.weights.h5`` file of this architecture, or a name registered in
            :mod:`kzoo.applications.weights` for family ``"mask_rcnn"``: ``"coco"``, torchvision's COCO weights of
            ``maskrcnn_resnet50_fpn`` (box AP 37.9, mask AP 34.6; ``backbone="resnet50_fpn"``), downloaded and
            converted into the Keras cache on first use (no torch needed), with the config defaulting to
            :func:`kzoo.models.mask_rcnn_config.torchvision_config`. Weights of any class count load into a model
            of any ``num_classes``: when they differ, the class-specific predictors (box classifier, box
            regressor, mask predictor) keep their fresh initial values and a one-line summary is printed.
            Weights of another architecture are an error naming the first layer that differs.
        input_shape: ``(height, width, 3)``; ``None`` sides accept any size. A fixed size makes every shape
            in the graph static (TFLite).
        min_size, max_size: images are resized so the short side is ``min_size`` and the long side at most
            ``max_size`` (the paper's 800 / 1333).
        config: a full :class:`MaskRCNNConfig`; the keywords above and ``overrides`` replace its fields.
        name: model name.
        **overrides: any other :class:`MaskRCNNConfig` field (``score_threshold``, ``roi_method``...).

    Returns:
        A :class:`kzoo.models.mask_rcnn.MaskRCNNModel` (with registered weights of its class count, its
        ``class_names`` attribute maps each label to its name, e.g. ``1: "person"`` for ``"coco"``): images
        ``[B, H, W, 3]`` uint8/float32 RGB pixels in ``[0, 255]`` -> dict of ``detection_boxes [B, D, 4]``
        (input pixels, ``[ymin, xmin, ymax, xmax]``), ``detection_scores [B, D]``, ``detection_classes [B, D]``,
        ``num_detections [B]``, ``detection_masks [B, D, 28, 28]``.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    if len(tuple(input_shape)) != 3 or tuple(input_shape)[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape}")
    fields = {f.name for f in dataclasses.fields(MaskRCNNConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown MaskRCNN option(s) {sorted(unknown)}; see MaskRCNNConfig")
    entry = registered_or_path(weights, "mask_rcnn")  # the registry of kzoo.applications.weights
    if entry is not None:
        needed = entry.model_kwargs
        if backbone != needed["backbone"]:
            raise ValueError(
                f"weights={entry.name!r} are torchvision's maskrcnn_resnet50_fpn COCO weights: they need "
                f"backbone={needed['backbone']!r}, got {backbone!r}"
            )
        base = config or PRESETS[needed["preset"]]()
        if base.box_flatten_order != "nchw":
            raise ValueError(
                f"weights={entry.name!r} need a config like torchvision_config(), with box_flatten_order='nchw', "
                f"got {base.box_flatten_order!r}"
            )
        weights = resolve_weights_file(entry)
    else:
        base = config or MaskRCNNConfig()
    config = dataclasses.replace(
        base,
        backbone=BACKBONES[backbone],
        num_classes=num_classes,
        min_size=min_size,
        max_size=max_size,
        **overrides,
    )
    model = mask_rcnn_from_config(config, weights, input_shape, name)
    if entry is not None and num_classes == len(entry.class_names):
        model.class_names = entry.categories  # label -> name (COCO's 80 of 91 ids), for pictures and tables
    return model


def mask_rcnn_from_config(
    config: MaskRCNNConfig,
    weights: str | None = None,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    name: str = "mask_rcnn",
) -> MaskRCNNModel:
    """Build (and optionally load) a Mask R-CNN exactly as ``config`` describes; see :func:`MaskRCNN`."""
    model = MaskRCNNModel(config, name=name)
    model.build((None, *input_shape))
    if weights is not None:
        report = load_weights_transferring(model, str(weights))
        if report.reset:
            print(f"MaskRCNN: {report.summary()}")
    return model


def preprocess_input(x: Any, data_format: str | None = None) -> Any:
    """Identity up to a cast to float32: MaskRCNN normalizes (``image_mean``/``image_std``) inside the model.

    Args:
        x: RGB images ``[..., H, W, 3]`` in ``[0, 255]``, numpy array or tensor.
        data_format: accepted for keras.applications compatibility (channels-last only).

    Returns:
        float32 images of the same shape and values.
    """
    if data_format not in (None, "channels_last"):
        raise ValueError("MaskRCNN takes channels-last images")
    return np.asarray(x, np.float32) if isinstance(x, np.ndarray) else keras.ops.cast(x, "float32")


def load_mask_rcnn_config(path: str | os.PathLike) -> MaskRCNNConfig:
    """Read a ``MaskRCNNConfig`` from a YAML file (a ``model:`` section, or the fields at the top level).

    Raises:
        FileNotFoundError: a missing file.
        kzoo.config.ConfigError: an unknown key or a value of the wrong type (named).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path) as f:
        values = yaml.safe_load(f) or {}
    return dataclass_from_dict(MaskRCNNConfig, values.get("model", values), "model.")
