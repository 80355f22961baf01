"""Mask R-CNN, keras.applications-style: ``MaskRCNN`` (the one builder of a Mask R-CNN) and ``preprocess_input``.

``MaskRCNN`` builds every Mask R-CNN of kzoo: from its keywords, from a :class:`MaskRCNNConfig`, from a preset
name (``"torchvision"``) or from a YAML file read by kzoo's one config loader (:func:`kzoo.config.load_config`);
the training task builds its model through it too. ``mask_rcnn_from_config`` and ``load_mask_rcnn_config`` are
deprecated aliases of ``MaskRCNN(config=...)`` and ``load_config(...).model``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

import keras
import numpy as np
import yaml

from kzoo.applications.weights import registered_or_path, resolve_weights_file
from kzoo.config import MaskRCNNExperimentConfig, dataclass_from_dict, load_config
from kzoo.models.mask_rcnn import MaskRCNNModel, check_input_shape
from kzoo.models.mask_rcnn_config import PRESETS, MaskRCNNConfig
from kzoo.models.weight_files import load_weights_transferring

#: ``backbone=`` names -> ``MaskRCNNConfig.backbone``.
BACKBONES = {"resnet50_fpn": "resnet50", "resnet101_fpn": "resnet101", "mobilenet_v2_fpn": "mobilenet_v2"}


def MaskRCNN(
    backbone: str | None = None,
    num_classes: int | None = None,
    weights: str | None = None,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    min_size: int | None = None,
    max_size: int | None = None,
    config: MaskRCNNConfig | str | os.PathLike | None = None,
    name: str = "mask_rcnn",
    **overrides: Any,
) -> MaskRCNNModel:
    """Instantiate a Mask R-CNN with a ResNet-FPN or MobileNetV2-FPN backbone.

    The one builder of a Mask R-CNN: ``kzoo train``/``evaluate``/``export``/``predict`` build theirs through it
    (``MaskRCNN(config=experiment.model)``).

    Args:
        backbone: ``"resnet50_fpn"``, ``"resnet101_fpn"`` or ``"mobilenet_v2_fpn"`` (light, for edge devices);
            ``None``: the config's (``"resnet50_fpn"`` without one).
        num_classes: the width of the box classifier's score output, which counts the background as class 0
            (as torchvision's ``num_classes``): 91 for COCO's category ids, ``K + 1`` for ``K`` object classes.
            ``None``: the config's (91 without one). The same name and meaning as :func:`kzoo.applications.NIN`'s
            ``num_classes`` (a classifier has no background class).
        weights: ``None`` (random), a ``.weights.h5`` file of this architecture, or a name registered in
            :mod:`kzoo.applications.weights` for family ``"mask_rcnn"``: ``"coco"``, torchvision's COCO weights of
            ``maskrcnn_resnet50_fpn`` (box AP 37.9, mask AP 34.6; ``backbone="resnet50_fpn"``), downloaded and
            converted into the Keras cache on first use (no torch needed), with the config defaulting to
            :func:`kzoo.models.mask_rcnn_config.torchvision_config`. Weights of any class count load into a model
            of any ``num_classes``: when they differ, the class-specific predictors (box classifier, box
            regressor, mask predictor) keep their fresh initial values and a one-line summary is printed.
            Weights of another architecture are an error naming the first layer that differs.
        input_shape: ``(height, width, 3)``. ``(None, None, 3)`` (the default): images of any size. A fixed
            ``(H, W, 3)`` fixes the input size: the inference graph has static shapes from the input on (the
            resize and the canvas are known while tracing, as in a ``.tflite`` file), ``model.image_shape`` is
            ``(H, W, 3)`` and images of another size are a ``ValueError`` naming both sizes. The weights do not
            depend on it. :func:`kzoo.export.convert_mask_rcnn_tflite` exports at this size when given no
            ``image_size`` (``kzoo export --format tflite`` uses the training canvas).
        min_size, max_size: images are resized so the short side is ``min_size`` and the long side at most
            ``max_size`` (the paper's 800 / 1333); ``None``: the config's.
        config: a full :class:`MaskRCNNConfig`; a preset name (``"torchvision"``); or a YAML file (a shipped
            config name such as ``"mask_rcnn_r50_fpn"`` too), read by :func:`kzoo.config.load_config` and
            taken from its ``model:`` section (a file without a ``task:`` key is read as ``task: mask_rcnn``).
            The keywords above that are not ``None`` and ``overrides`` replace its fields.
        name: model name.
        **overrides: any other :class:`MaskRCNNConfig` field, a section as a mapping of the fields to change
            (``detection={"score_threshold": 0.3}``, ``roi_align={"method": "gather"}``; see
            :meth:`MaskRCNNConfig.replace`).

    Returns:
        A :class:`kzoo.models.mask_rcnn.MaskRCNNModel` (with registered weights of its class count, its
        ``class_names`` attribute maps each label to its name, e.g. ``1: "person"`` for ``"coco"``): images
        ``[B, H, W, 3]`` uint8/float32 RGB pixels in ``[0, 255]`` -> dict of ``detection_boxes [B, D, 4]``
        (input pixels, ``[ymin, xmin, ymax, xmax]``), ``detection_scores [B, D]``, ``detection_classes [B, D]``
        (``1..num_classes - 1``, 0 for padding), ``num_detections [B]``, ``detection_masks [B, D, 28, 28]``.

    Raises:
        ValueError: an unknown backbone or option, a bad ``input_shape``, weights that need another backbone or
            config, or a config without a class count.
        FileNotFoundError: a missing weights or config file.
        kzoo.config.ConfigError: a config file with an unknown key or a bad value (named).
    """
    if backbone is not None and backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    image_shape = check_input_shape(input_shape)
    known = {f.name for f in dataclasses.fields(MaskRCNNConfig)} | set(getattr(MaskRCNNConfig, "moved_fields", {}))
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown MaskRCNN option(s) {sorted(unknown)}; see MaskRCNNConfig")
    entry = registered_or_path(weights, "mask_rcnn")  # the registry of kzoo.applications.weights
    base = _base_config(config, PRESETS[entry.model_kwargs["preset"]]() if entry is not None else None)
    changes: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    if backbone is not None:
        changes["backbone"] = {"name": BACKBONES[backbone]}
    sizes = {key: value for key, value in (("min_size", min_size), ("max_size", max_size)) if value is not None}
    if sizes:
        changes["input"] = sizes
    config = base.replace(**changes).replace(**overrides)
    if config.num_classes is None:
        raise ValueError("the config leaves num_classes to its data (model.num_classes): pass num_classes=")
    if entry is not None:
        needed = entry.model_kwargs
        if config.backbone.name != BACKBONES[needed["backbone"]]:
            names = {value: key for key, value in BACKBONES.items()}
            raise ValueError(
                f"weights={entry.name!r} are torchvision's maskrcnn_resnet50_fpn COCO weights: they need "
                f"backbone={needed['backbone']!r}, got {names.get(config.backbone.name, config.backbone.name)!r}"
            )
        if config.box_head.flatten_order != "nchw":
            raise ValueError(
                f"weights={entry.name!r} need a config like torchvision_config(), with "
                f"box_head.flatten_order='nchw', got {config.box_head.flatten_order!r}"
            )
        weights = resolve_weights_file(entry)
    model = MaskRCNNModel(config, input_shape=image_shape, name=name)
    model.build((None, *input_shape))
    if weights is not None:
        report = load_weights_transferring(model, str(weights))
        if report.reset:
            print(f"MaskRCNN: {report.summary()}")
    if entry is not None and config.num_classes == len(entry.class_names):
        model.class_names = entry.categories  # label -> name (COCO's 80 of 91 ids), for pictures and tables
    return model


def _base_config(config: MaskRCNNConfig | str | os.PathLike | None, default: MaskRCNNConfig | None) -> MaskRCNNConfig:
    """The config ``MaskRCNN``'s keywords apply to: ``config`` itself, a preset, or a YAML file's ``model:``
    section read by :func:`kzoo.config.load_config`; ``default`` (or the paper's) for ``None``."""
    if config is None:
        return default or MaskRCNNConfig()
    if isinstance(config, MaskRCNNConfig):
        return config
    if isinstance(config, str) and config in PRESETS:
        return PRESETS[config]()
    if isinstance(config, (str, os.PathLike)):
        experiment = load_config(config, task="mask_rcnn")
        if not isinstance(experiment, MaskRCNNExperimentConfig):
            raise ValueError(f"config {os.fspath(config)} is not a Mask R-CNN config (task: {experiment.task})")
        return experiment.model
    raise TypeError(
        f"config must be a MaskRCNNConfig, a preset name {sorted(PRESETS)} or a YAML file, got {type(config).__name__}"
    )


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


# -- deprecated (kept for one release) -----------------------------------------------------------------------------


def mask_rcnn_from_config(
    config: MaskRCNNConfig,
    weights: str | None = None,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    name: str = "mask_rcnn",
) -> MaskRCNNModel:
    """Deprecated: ``MaskRCNN(config=config, weights=weights, input_shape=input_shape, name=name)``."""
    warnings.warn(
        "kzoo.applications.mask_rcnn.mask_rcnn_from_config is deprecated and will be removed in the next release: "
        "use MaskRCNN(config=config, weights=..., input_shape=..., name=...)",
        DeprecationWarning,
        stacklevel=2,
    )
    return MaskRCNN(config=config, weights=weights, input_shape=input_shape, name=name)


def load_mask_rcnn_config(path: str | os.PathLike) -> MaskRCNNConfig:
    """Deprecated: ``kzoo.config.load_config(path, task="mask_rcnn").model`` (or ``MaskRCNN(config=path)``).

    Reads a ``MaskRCNNConfig`` from a YAML file (a ``model:`` section, or the fields at the top level).

    Raises:
        FileNotFoundError: a missing file.
        kzoo.config.ConfigError: an unknown key or a value of the wrong type (named).
    """
    warnings.warn(
        "kzoo.applications.mask_rcnn.load_mask_rcnn_config is deprecated and will be removed in the next release: "
        "use kzoo.config.load_config(path, task='mask_rcnn').model, or MaskRCNN(config=path)",
        DeprecationWarning,
        stacklevel=2,
    )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path) as f:
        values = yaml.safe_load(f) or {}
    if "model" in values:
        return _base_config(os.fspath(path), None)
    return dataclass_from_dict(MaskRCNNConfig, values, "model.")  # the old top-level form


__all__ = ["BACKBONES", "MaskRCNN", "preprocess_input"]
