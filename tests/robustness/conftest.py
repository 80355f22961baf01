"""Fixtures of the bad-input tests: a tiny NIN and a tiny Mask R-CNN (built once per session), the corpus
helpers, and encoded images of every format."""

import io

import keras
import numpy as np
import pytest
from PIL import Image

from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.models.mask_rcnn_config import MaskRCNNConfig
from kzoo.models.nin import build_nin, resolve_blocks

NIN_SHAPE = (16, 16, 3)
MASK_RCNN_SIZE = 64

# a ~20k-parameter Mask R-CNN on 64 x 64 canvases (the shapes of tests/conftest.py's TINY_MASK_RCNN)
_TINY_MASK_RCNN = dict(
    num_classes=4,
    backbone={"name": "small_convnet", "width": 0.25, "norm": "group"},
    fpn={"channels": 16},
    anchors={"sizes": (8, 16, 32, 64, 128), "aspect_ratios": (1.0,)},
    rpn={"pre_nms_top_k_test": 50, "post_nms_top_k_test": 20},
    box_head={"fc_dim": 32},
    mask_head={"num_convs": 1, "channels": 16},
    detection={"max_detections": 10},
    input={"min_size": MASK_RCNN_SIZE, "max_size": MASK_RCNN_SIZE},
)


def build_tiny_nin(channels: int = 3) -> keras.Model:
    keras.utils.set_random_seed(0)
    blocks = resolve_blocks("custom", [{"filters": [8, 8]}, {"filters": [8], "pool": False, "dropout": False}])
    return build_nin(keras.Input((*NIN_SHAPE[:2], channels)), blocks, num_classes=3)


@pytest.fixture(scope="session")
def nin_model() -> keras.Model:
    """A NIN on 16 x 16 x 3 images (preprocessed to [-1, 1]), 3 classes."""
    return build_tiny_nin()


@pytest.fixture(scope="session")
def gray_nin_model() -> keras.Model:
    """The same NIN on 16 x 16 x 1 images."""
    return build_tiny_nin(channels=1)


@pytest.fixture(scope="session")
def mask_rcnn_model() -> MaskRCNNModel:
    """A random tiny Mask R-CNN (small convnet, 64 x 64 canvas, 4 classes), built."""
    keras.utils.set_random_seed(0)
    model = MaskRCNNModel(MaskRCNNConfig().replace(**_TINY_MASK_RCNN))
    model(np.zeros((1, MASK_RCNN_SIZE, MASK_RCNN_SIZE, 3), np.uint8))
    return model


@pytest.fixture(scope="session")
def encode():
    """``encode(image, fmt)``: ``image`` uint8 ``[H, W, 3]`` encoded by Pillow as ``fmt`` (PNG, JPEG, GIF, BMP,
    WEBP, TIFF)."""

    def run(image: np.ndarray, fmt: str) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=fmt)
        return buffer.getvalue()

    return run


@pytest.fixture(scope="session")
def expect():
    """``expect(fn, value, outcome)``: run ``fn(value)`` and check the outcome, ``"ok"`` (returns; the result is
    returned) or ``(exception type, regex)``: that error, its message matching the regex."""

    def run(fn, value, outcome):
        if outcome == "ok":
            return fn(value)
        error, pattern = outcome
        with pytest.raises(error, match=pattern):
            fn(value)
        return None

    return run
