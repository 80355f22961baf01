"""Fixtures of the torchvision conversion tests: a small torchvision-layout model and random state dicts."""

import numpy as np
import pytest

from kzoo.applications import torchvision as tv
from kzoo.models.mask_rcnn import MaskRCNNModel


@pytest.fixture(scope="session")
def small_model():
    """A torchvision-layout ResNet-50 Mask R-CNN with 5 classes (weights only; tiny input sizes)."""
    model = MaskRCNNModel(tv.torchvision_config(5, input={"min_size": 64, "max_size": 64}))
    model(np.zeros((1, 64, 64, 3), np.uint8))
    return model


def _torch_shape(variable) -> tuple:
    shape = tuple(variable.shape)
    if len(shape) == 4:  # Keras [kh, kw, I, O] (or transposed conv [kh, kw, O, I]) -> torch [O, I, kh, kw]
        return (shape[3], shape[2], shape[0], shape[1])
    return shape[::-1]  # Dense [I, O] -> Linear [O, I]; vectors unchanged


def _fake_state_dict(model, seed=0, old_names=False) -> dict:
    rng = np.random.default_rng(seed)
    state = {}
    for key, (variable, _) in tv.torchvision_weight_map(model).items():
        if old_names:
            key = (
                key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
                .replace(".0.weight", ".weight")
                .replace(".0.bias", ".bias")
                if "fpn" in key or "rpn.head.conv" in key
                else key
            )
            if key.startswith("roi_heads.mask_head."):
                index = int(key.split(".")[2])
                key = f"roi_heads.mask_head.mask_fcn{index + 1}.{key.rsplit('.', 1)[1]}"
        state[key] = rng.normal(size=_torch_shape(variable)).astype(np.float32)
        if key.endswith("running_mean"):
            state[key.replace("running_mean", "num_batches_tracked")] = np.array(0, np.int64)
    return state


@pytest.fixture
def fake_state_dict():
    """``fake_state_dict(model, seed=0, old_names=False)``: a random torchvision state dict that fits ``model``
    (current key names, or the published v1 checkpoint's with ``old_names``)."""
    return _fake_state_dict
