"""torchvision key names and tensor layouts: which kzoo variable each ``maskrcnn_resnet50_fpn`` tensor fills.

Layout differences handled here (torchvision -> Keras):

* convolutions ``[O, I, kh, kw]`` -> ``[kh, kw, I, O]``; ``ConvTranspose2d`` ``[I, O, kh, kw]`` ->
  ``[kh, kw, O, I]`` (the same ``transpose(2, 3, 1, 0)``); ``Linear`` ``[O, I]`` -> ``[I, O]``;
* boxes: torchvision's deltas are ``(dx, dy, dw, dh)``, kzoo's ``(ty, tx, th, tw)``: the rows of
  ``rpn.head.bbox_pred`` (per anchor) and ``roi_heads.box_predictor.bbox_pred`` (per class) are permuted;
* ``fc6`` reads the RoI features flattened in NCHW order: kzoo's ``box_flatten_order="nchw"`` takes the kernel
  as is (with ``"nhwc"`` its rows are permuted instead);
* anchors per position come in the same order in both (aspect ratio outer, size inner), so the RPN's
  objectness channels copy directly;
* old key names of the published v1 checkpoint (``fpn.inner_blocks.{i}``, ``rpn.head.conv``,
  ``mask_head.mask_fcn{i}``) and the current ones (``fpn.inner_blocks.{i}.0``, ``rpn.head.conv.0.0``,
  ``mask_head.{i-1}.0``) are both accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from kzoo.layers.rpn_head import TORCH_DELTA_ORDER  # (ty, tx, th, tw) <- torchvision's (dy, dx, dh, dw)
from kzoo.models.backbones.resnet import torchvision_key_to_keras
from kzoo.models.mask_rcnn import MaskRCNNModel


class TorchvisionConversionError(ValueError):
    """A state dict that does not fit the model: unknown, duplicate or missing keys, or a wrong shape."""


# -- key names ------------------------------------------------------------------------------------------------

_OLD_KEYS = (
    (re.compile(r"^backbone\.fpn\.(inner_blocks|layer_blocks)\.(\d+)\.(weight|bias)$"), r"backbone.fpn.\1.\2.0.\3"),
    (re.compile(r"^rpn\.head\.conv\.(weight|bias)$"), r"rpn.head.conv.0.0.\1"),
)
_OLD_MASK_FCN = re.compile(r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$")


def canonical_torchvision_key(key: str) -> str:
    """The key of current torchvision (>= 0.13) for ``key``, which may use the published v1 checkpoint's names.

    ``"backbone.fpn.inner_blocks.0.weight"`` -> ``"backbone.fpn.inner_blocks.0.0.weight"``,
    ``"rpn.head.conv.bias"`` -> ``"rpn.head.conv.0.0.bias"``, ``"roi_heads.mask_head.mask_fcn1.weight"`` ->
    ``"roi_heads.mask_head.0.0.weight"``; a ``"module."`` prefix (``DataParallel``) is dropped; other keys are
    returned unchanged.
    """
    if key.startswith("module."):
        key = key[len("module.") :]
    for pattern, replacement in _OLD_KEYS:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    match = _OLD_MASK_FCN.match(key)
    if match:
        return f"roi_heads.mask_head.{int(match.group(1)) - 1}.0.{match.group(2)}"
    return key


# -- tensor layouts -------------------------------------------------------------------------------------------


def _conv(value: np.ndarray) -> np.ndarray:
    """Conv ``[O, I, kh, kw]`` -> ``[kh, kw, I, O]`` (and ConvTranspose ``[I, O, kh, kw]`` -> ``[kh, kw, O, I]``)."""
    return np.transpose(value, (2, 3, 1, 0))


def _copy(value: np.ndarray) -> np.ndarray:
    return value


def _linear(value: np.ndarray) -> np.ndarray:
    return np.transpose(value)


def _delta_permutation(groups: int) -> np.ndarray:
    """Rows ``4 * g + TORCH_DELTA_ORDER[k]`` for ``g < groups``, ``k < 4``: xyxy deltas -> yxyx deltas."""
    return np.array([4 * g + TORCH_DELTA_ORDER[k] for g in range(groups) for k in range(4)], np.int64)


def _permuted(transform: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def apply(value: np.ndarray) -> np.ndarray:
        if value.shape[0] % 4:
            raise TorchvisionConversionError(f"box regression rows must be a multiple of 4, got shape {value.shape}")
        return transform(value[_delta_permutation(value.shape[0] // 4)])

    return apply


def _fc6_nhwc(roi_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """fc6 ``[F, C*S*S]`` (NCHW flatten) -> Keras kernel ``[S*S*C, F]`` for an NHWC flatten."""

    def apply(value: np.ndarray) -> np.ndarray:
        features = value.shape[0]
        channels = value.shape[1] // (roi_size * roi_size)
        kernel = value.T.reshape(channels, roi_size, roi_size, features)
        return kernel.transpose(1, 2, 0, 3).reshape(roi_size * roi_size * channels, features)

    return apply


def torchvision_weight_map(model: MaskRCNNModel) -> dict[str, tuple[Any, Callable[[np.ndarray], np.ndarray]]]:
    """Every torchvision key (current names, without ``num_batches_tracked``) of a ``maskrcnn_resnet50_fpn``-style
    state dict, mapped to the kzoo variable it fills and the function that converts the tensor's layout.

    Args:
        model: a built :class:`MaskRCNNModel` with a ResNet backbone (weights created).

    Returns:
        ``{torchvision_key: (keras_variable, transform)}``; ``transform`` maps the torchvision array to the
        variable's shape.
    """
    config = model.config
    if not config.backbone.name.startswith("resnet"):
        raise TorchvisionConversionError(
            f"torchvision's Mask R-CNN weights need a ResNet backbone, the model has {config.backbone.name!r}"
        )
    mapping: dict[str, tuple[Any, Callable[[np.ndarray], np.ndarray]]] = {}
    bn_names = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}

    for layer in model.backbone.layers:
        for variable in layer.weights:
            if variable.name == "kernel":
                key = f"backbone.body.{_torch_module(layer.name)}.weight"
                mapping[key] = (variable, _conv)
            else:
                key = f"backbone.body.{_torch_module(layer.name)}.{bn_names[variable.name]}"
                mapping[key] = (variable, _copy)
            if torchvision_key_to_keras(key) != (layer.name, variable.name):  # the backbone's own documented map
                raise TorchvisionConversionError(f"backbone layer {layer.name!r} has no torchvision counterpart")

    def add(prefix: str, layer: keras.layers.Layer, kernel: Callable, bias: Callable = _copy) -> None:
        mapping[f"{prefix}.weight"] = (layer.kernel, kernel)
        mapping[f"{prefix}.bias"] = (layer.bias, bias)

    for i, conv in enumerate(model.fpn.inner_blocks):
        add(f"backbone.fpn.inner_blocks.{i}.0", conv, _conv)
    for i, conv in enumerate(model.fpn.layer_blocks):
        add(f"backbone.fpn.layer_blocks.{i}.0", conv, _conv)
    head = model.rpn_head
    add("rpn.head.conv.0.0", head.conv, _conv)
    add("rpn.head.cls_logits", head.cls_logits, _conv)
    add("rpn.head.bbox_pred", head.bbox_pred, _permuted(_conv), _permuted(_copy))
    box = model.box_head
    fc6 = _linear if config.box_head.flatten_order == "nchw" else _fc6_nhwc(config.roi_align.box_size)
    add("roi_heads.box_head.fc6", box.fc6, fc6)
    add("roi_heads.box_head.fc7", box.fc7, _linear)
    add("roi_heads.box_predictor.cls_score", box.cls_score, _linear)
    add("roi_heads.box_predictor.bbox_pred", box.bbox_pred, _permuted(_linear), _permuted(_copy))
    mask = model.mask_head
    for i, conv in enumerate(mask.convs):
        add(f"roi_heads.mask_head.{i}.0", conv, _conv)
    add("roi_heads.mask_predictor.conv5_mask", mask.conv5_mask, _conv)
    add("roi_heads.mask_predictor.mask_fcn_logits", mask.mask_fcn_logits, _conv)
    return mapping


def _torch_module(layer_name: str) -> str:
    """Keras backbone layer name -> torchvision module path: ``layer1_0_downsample_1`` -> ``layer1.0.downsample.1``."""
    return layer_name.replace("_", ".")
