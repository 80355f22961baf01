"""Bad inputs into the LiteRT helpers (``run_classifier_tflite``, ``run_mask_rcnn_tflite``,
``run_mask_rcnn_tflite_on_photos``): each case gives the correct result or a ``ValueError`` naming the problem; images
of another size than the file's fixed input are refused with both sizes named, never stretched."""

import numpy as np
import pytest
from corpus import pixels, with_value

from kzoo.export import (
    convert_classifier_tflite,
    convert_mask_rcnn_tflite,
    run_classifier_tflite,
    run_mask_rcnn_tflite,
    run_mask_rcnn_tflite_on_photos,
)

RANK = r"must be a batch of images .*\(rank 4\), got shape"
NON_FINITE = r"images: non-finite pixel values \(NaN or inf\)"
UNIT = r"look like pixels in \[0, 1\].*multiply the images by 255"
OUTSIDE = r"images: pixel values outside \[0, 255\]; observed min and max: "


def other_size(height: int, width: int, side: int) -> str:
    return (
        rf"images must be \[batch, {side}, {side}, 3\], got height {height} .*\(the .tflite file's fixed input "
        r"size: resize the images, or letterbox photographs, first\)"
    )


@pytest.fixture(scope="module")
def classifier(nin_model, tmp_path_factory) -> str:
    return convert_classifier_tflite(nin_model, tmp_path_factory.mktemp("tflite") / "nin.tflite")


@pytest.fixture(scope="module")
def detector(mask_rcnn_model, tmp_path_factory) -> str:
    return convert_mask_rcnn_tflite(mask_rcnn_model, tmp_path_factory.mktemp("tflite") / "mask_rcnn.tflite", (64, 64))


def pixel_cases(side: int, single_image_ok: bool) -> list:
    shape = (1, side, side, 3)
    return [
        pytest.param(lambda: pixels((2, side, side, 3)), "ok", id="uint8"),
        pytest.param(lambda: pixels((2, side, side, 3), np.float32), "ok", id="float-0-255"),
        pytest.param(lambda: np.zeros(shape, np.float32), "ok", id="all-black-float"),
        pytest.param(lambda: np.zeros((0, side, side, 3), np.uint8), "ok", id="empty-batch"),
        pytest.param(
            lambda: pixels((side, side, 3)), "ok" if single_image_ok else (ValueError, RANK), id="single-image-rank3"
        ),
        pytest.param(lambda: pixels((1, 1, side, side, 3)), (ValueError, RANK), id="rank5"),
        pytest.param(
            lambda: pixels((1, side // 2, side, 3)), (ValueError, other_size(side // 2, side, side)), id="other-size"
        ),
        pytest.param(
            lambda: pixels((1, side, side, 4)), (ValueError, r"must have 3 channel\(s\).*got 4"), id="4-channels"
        ),
        pytest.param(
            lambda: pixels((1, side, side, 1)), (ValueError, r"must have 3 channel\(s\).*got 1"), id="1-channel"
        ),
        pytest.param(lambda: np.zeros(shape, bool), (ValueError, "pixels, got dtype bool"), id="bool"),
        pytest.param(lambda: np.full(shape, "a"), (ValueError, "pixels, got dtype <U1"), id="strings"),
        pytest.param(lambda: with_value(shape, np.nan), (ValueError, NON_FINITE), id="nan"),
        pytest.param(lambda: with_value(shape, -np.inf), (ValueError, NON_FINITE), id="inf"),
        pytest.param(lambda: with_value(shape, 300.0), (ValueError, OUTSIDE + r"\d+, 300"), id="300"),
        pytest.param(lambda: with_value(shape, -1.0), (ValueError, OUTSIDE + "-1, "), id="minus-1"),
        pytest.param(lambda: np.full(shape, 0.7, np.float32), (ValueError, UNIT), id="0.7"),
        pytest.param(
            lambda: pixels((2, side, side, 3), np.float32) / 127.5 - 1, (ValueError, OUTSIDE), id="preprocessed-already"
        ),
    ]


@pytest.mark.parametrize("make, outcome", pixel_cases(16, single_image_ok=False))
def test_run_classifier_tflite(classifier, expect, make, outcome):
    images = make()
    out = expect(lambda value: run_classifier_tflite(classifier, value), images, outcome)
    if out is not None:
        assert out.shape == (len(images), 3) and np.all(np.isfinite(out))


@pytest.mark.parametrize("make, outcome", pixel_cases(64, single_image_ok=True))
def test_run_mask_rcnn_tflite(detector, expect, make, outcome):
    images = make()
    out = expect(lambda value: run_mask_rcnn_tflite(detector, value), images, outcome)
    if out is not None:
        count = 1 if images.ndim == 3 else len(images)
        assert out["detection_boxes"].shape == (count, 10, 4)
        assert np.all(np.isfinite(out["detection_scores"]))


PHOTO_CASES = [
    pytest.param(lambda: [pixels((40, 90, 3)), pixels((64, 64, 3), np.float32)], "ok", id="sizes-and-dtypes"),
    pytest.param(lambda: [np.zeros((100, 30, 3), np.float32)], "ok", id="all-black-float"),
    pytest.param(lambda: [], "ok", id="no-photos"),
    pytest.param(
        lambda: [pixels((40, 40, 3)), pixels((1, 40, 40, 3))],
        (ValueError, r"photos\[1\] must be one image \[height, width, 3\], got shape \[1, 40, 40, 3\]"),
        id="batch-as-photo",
    ),
    pytest.param(
        lambda: [pixels((40, 40, 1))], (ValueError, r"photos\[0\] must have 3 channel\(s\).*got 1"), id="1-channel"
    ),
    pytest.param(
        lambda: [pixels((40, 40, 3)), with_value((40, 50, 3), np.nan)],
        (ValueError, r"photos\[1\]: non-finite pixel values"),
        id="nan",
    ),
    pytest.param(
        lambda: [with_value((40, 50, 3), 300.0)], (ValueError, r"photos\[0\]: pixel values outside"), id="300"
    ),
    pytest.param(
        lambda: [pixels((40, 50, 3), np.float32) / 255], (ValueError, r"photos\[0\]: .*" + UNIT), id="unit-floats"
    ),
    pytest.param(
        lambda: [np.zeros((40, 50, 3), bool)], (ValueError, r"photos\[0\] must be .*got dtype bool"), id="bool"
    ),
]


@pytest.mark.parametrize("make, outcome", PHOTO_CASES)
def test_run_mask_rcnn_tflite_on_photos(detector, expect, make, outcome):
    photos = make()
    out = expect(lambda value: run_mask_rcnn_tflite_on_photos(detector, value), photos, outcome)
    if out is not None:
        assert out["detection_boxes"].shape == (len(photos), 10, 4)
        for photo, boxes in zip(photos, out["detection_boxes"]):
            assert np.all(boxes[:, 2] <= photo.shape[0]) and np.all(boxes[:, 3] <= photo.shape[1])
