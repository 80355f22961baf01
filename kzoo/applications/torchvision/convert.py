"""torchvision Mask R-CNN state dicts and ``.pth`` files -> kzoo models and Keras ``.weights.h5`` files.

:func:`convert_torchvision_state_dict` copies a torchvision ``maskrcnn_resnet50_fpn`` (v1) state dict into a
:class:`MaskRCNNModel` built with :func:`kzoo.models.mask_rcnn_config.torchvision_config` (key names and layouts:
:mod:`kzoo.applications.torchvision.keys`); :func:`convert_torchvision_checkpoint` turns a ``.pth`` file (read by
:mod:`kzoo.applications.torchvision.checkpoint`) into a Keras ``.weights.h5`` file, written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from kzoo.applications.torchvision.checkpoint import read_torchvision_checkpoint
from kzoo.applications.torchvision.keys import (
    TorchvisionConversionError,
    canonical_torchvision_key,
    torchvision_weight_map,
)
from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.models.mask_rcnn_config import MaskRCNNConfig, torchvision_config
from kzoo.utils.files import atomic_path

__all__ = [
    "TorchvisionConversionError",
    "convert_torchvision_checkpoint",
    "convert_torchvision_cli",
    "convert_torchvision_state_dict",
]


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _ensure_built(model: MaskRCNNModel) -> None:
    if not model.built or not model.weights or model.box_head.fc6 is None:
        model(np.zeros((1, 64, 64, 3), np.uint8))


def convert_torchvision_state_dict(state_dict: Mapping[str, Any], model: MaskRCNNModel) -> MaskRCNNModel:
    """Assign every tensor of a torchvision ``maskrcnn_resnet50_fpn`` state dict to ``model``, in place.

    Args:
        state_dict: torchvision key -> array (NumPy arrays, or anything ``np.asarray`` takes: torch CPU tensors),
            float32 parameters and buffers as ``model.state_dict()`` returns them; ``num_batches_tracked``
            entries are accepted and ignored. Old (v1 checkpoint) and current key names are both accepted.
        model: a :class:`MaskRCNNModel` built with :func:`torchvision_config` (or any config with the same
            weights: ResNet backbone, 256-channel FPN, 3 anchors per position, 4-conv mask head, the same
            ``num_classes``); built here with a small image when it has no weights yet.

    Returns:
        ``model``, with every variable set.

    Raises:
        TorchvisionConversionError: a key with no kzoo counterpart, a key given twice (old and new name),
            kzoo variables left unset, or a tensor of the wrong shape; the message lists them.
    """
    _ensure_built(model)
    mapping = torchvision_weight_map(model)
    mapped_ids = {id(variable) for variable, _ in mapping.values()}
    unmapped = [v.path for v in model.weights if id(v) not in mapped_ids]
    if unmapped:
        raise TorchvisionConversionError(f"kzoo variables with no torchvision source: {_listing(unmapped)}")

    used: dict[str, str] = {}
    unexpected, duplicates, bad_shapes = [], [], []
    assignments = []
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        canonical = canonical_torchvision_key(key)
        if canonical not in mapping:
            unexpected.append(key)
            continue
        if canonical in used:
            duplicates.append(f"{key} (also given as {used[canonical]})")
            continue
        used[canonical] = key
        variable, transform = mapping[canonical]
        array = np.asarray(value, dtype=np.float32)
        try:
            converted = transform(array)
        except (ValueError, TorchvisionConversionError) as error:
            bad_shapes.append(f"{key} {tuple(array.shape)}: {error}")
            continue
        if tuple(converted.shape) != tuple(variable.shape):
            bad_shapes.append(
                f"{key} {tuple(array.shape)} -> {tuple(converted.shape)}, kzoo {variable.path} {tuple(variable.shape)}"
            )
            continue
        assignments.append((variable, converted))
    missing = [key for key in mapping if key not in used]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} torchvision key(s) with no kzoo counterpart: {_listing(unexpected)}")
    if duplicates:
        problems.append(f"{len(duplicates)} key(s) given twice: {_listing(duplicates)}")
    if bad_shapes:
        problems.append(f"{len(bad_shapes)} tensor(s) of the wrong shape: {_listing(bad_shapes, 6)}")
    if missing:
        problems.append(f"{len(missing)} kzoo variable(s) not set, their torchvision keys missing: {_listing(missing)}")
    if problems:
        raise TorchvisionConversionError("cannot convert the torchvision state dict: " + "; ".join(problems))
    for variable, converted in assignments:
        variable.assign(converted.astype(variable.dtype))
    return model


def _num_classes_of(state: Mapping[str, np.ndarray]) -> int | None:
    for key, value in state.items():
        if canonical_torchvision_key(key) == "roi_heads.box_predictor.cls_score.weight":
            return int(np.shape(value)[0])
    return None


def convert_torchvision_checkpoint(
    pth_path: str | os.PathLike,
    output_weights_path: str | os.PathLike,
    num_classes: int | None = None,
    config: MaskRCNNConfig | None = None,
) -> str:
    """Convert a torchvision ``maskrcnn_resnet50_fpn`` checkpoint into a Keras ``.weights.h5`` file.

    The file loads into ``MaskRCNN(weights=path)`` / ``MaskRCNN(config=torchvision_config(...), weights=path)``
    (any ``min_size``/``max_size`` and thresholds: they have no weights). It is written through
    :func:`kzoo.utils.files.atomic_path`: to a temporary file beside the output, made readable (``0644`` under
    umask ``022``) and renamed into place, so a failed conversion leaves nothing behind.

    Args:
        pth_path: the ``.pth`` file (read without torch, see :func:`read_torchvision_checkpoint`).
        output_weights_path: where to write; must end in ``.weights.h5``.
        num_classes: classes including the background; ``None`` reads it from ``cls_score`` (91 for COCO).
        config: the model configuration (default :func:`torchvision_config` with ``num_classes``).

    Returns:
        ``output_weights_path`` as a string.

    Raises:
        FileNotFoundError, CheckpointError: see :func:`read_torchvision_checkpoint`;
        TorchvisionConversionError: the checkpoint does not fit the configuration.
    """
    output = os.fspath(output_weights_path)
    if not output.endswith(".weights.h5"):
        raise ValueError(f"the output must be a Keras weights file ending in .weights.h5, got {output!r}")
    state = read_torchvision_checkpoint(pth_path)
    found = _num_classes_of(state)
    if num_classes is None:
        if found is None:
            raise TorchvisionConversionError(
                f"{pth_path} has no roi_heads.box_predictor.cls_score.weight: not a torchvision Mask R-CNN"
            )
        num_classes = config.num_classes if config is not None else found
    if found is not None and found != num_classes:
        raise TorchvisionConversionError(
            f"{pth_path} predicts {found} classes (roi_heads.box_predictor.cls_score.weight), not {num_classes}"
        )
    config = config or torchvision_config(cast(int, num_classes))  # without a config: the argument or found
    if config.num_classes != num_classes:
        raise TorchvisionConversionError(f"config.num_classes={config.num_classes} but num_classes={num_classes}")
    # Weights do not depend on the input size: build on a small canvas to keep the conversion quick.
    model = MaskRCNNModel(config.replace(input={"min_size": 64, "max_size": 64}), name="mask_rcnn")
    model(np.zeros((1, 64, 64, 3), np.uint8))
    convert_torchvision_state_dict(state, model)
    with atomic_path(output) as temp_path:
        model.save_weights(temp_path)
    return output


def convert_torchvision_cli(pth: str, output: str, num_classes: int = 91) -> str:
    """``kzoo convert torchvision PTH OUTPUT [--num-classes K]``: a torchvision Mask R-CNN ``.pth`` -> ``.weights.h5``.

    Args:
        pth: the torchvision checkpoint (``maskrcnn_resnet50_fpn``, v1 layout).
        output: the Keras weights file to write (``*.weights.h5``).
        num_classes: classes including the background (91 for COCO).

    Returns:
        A one-line summary for the terminal (the output path and its size).
    """
    path = convert_torchvision_checkpoint(pth, output, num_classes=num_classes)
    size_mb = os.path.getsize(path) / 1e6
    return (
        f"wrote {path} ({size_mb:.1f} MB): load it with kzoo.applications.MaskRCNN(weights={path!r}, "
        f"config=kzoo.applications.torchvision.torchvision_config({num_classes}))"
    )
