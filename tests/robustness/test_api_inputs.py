"""Bad inputs into the Python API (NIN models, ``nin.preprocess_input``, ``MaskRCNNModel``): each case gives the
correct result or the error that names the problem (the input contract of ``kzoo.ops.image_checks``)."""

import numpy as np
import pytest
import tensorflow as tf
from corpus import pixels, with_value

from kzoo.applications.nin import preprocess_input

InvalidArgument = tf.errors.InvalidArgumentError
RANK = (ValueError, r"must be a batch of images .*\(rank 4\), got shape")
EMPTY = (ValueError, r"empty batch \(0 images")
NON_FINITE = (InvalidArgument, "non-finite pixel values")
UNIT = (InvalidArgument, r"look like pixels in \[0, 1\].*multiply the images by 255")


def channels(n: int) -> tuple:
    return ValueError, rf"must have 3 channel\(s\) .*got {n} channels"


def dtype(name: str) -> tuple:
    return ValueError, rf"pixels, got dtype {name}"


# -- NIN: the model takes pixels scaled to [-1, 1] by preprocess_input --------------------------------------------

NIN_RANGE = (InvalidArgument, r"pixel values outside \[-1, 1\] \(NIN takes float pixels scaled .*preprocess_input")
NIN_CASES = [
    pytest.param(lambda: preprocess_input(pixels((2, 16, 16, 3))), "ok", id="preprocessed-uint8"),
    pytest.param(
        lambda: preprocess_input(pixels((2, 16, 16, 3), np.float32) * 0.5 + 0.5), "ok", id="preprocessed-float-pixels"
    ),
    pytest.param(lambda: preprocess_input(np.zeros((1, 16, 16, 3), np.float32)), "ok", id="all-black-float"),
    pytest.param(lambda: preprocess_input(pixels((16, 16, 3))), RANK, id="single-image-rank3"),
    pytest.param(lambda: np.zeros((1, 1, 16, 16, 3), np.float32), RANK, id="rank5"),
    pytest.param(lambda: np.zeros((16, 16), np.float32), RANK, id="rank2"),
    pytest.param(lambda: np.zeros((1, 16, 16, 1), np.float32), channels(1), id="1-channel"),
    pytest.param(lambda: np.zeros((1, 16, 16, 4), np.float32), channels(4), id="4-channels"),
    pytest.param(
        lambda: np.zeros((1, 20, 20, 3), np.float32),
        (ValueError, r"\[batch, 16, 16, 3\], got height 20"),
        id="other-size",
    ),
    pytest.param(lambda: np.zeros((0, 16, 16, 3), np.float32), EMPTY, id="empty-batch"),
    pytest.param(lambda: pixels((1, 16, 16, 3)), (ValueError, "got dtype uint8 .*preprocess_input"), id="uint8"),
    pytest.param(lambda: np.zeros((1, 16, 16, 3), bool), dtype("bool"), id="bool"),
    pytest.param(lambda: np.zeros((1, 16, 16, 3), np.int32), dtype("int32"), id="int32"),
    pytest.param(lambda: np.full((1, 16, 16, 3), "a"), (ValueError, "pixels, got dtype"), id="strings"),
    pytest.param(lambda: with_value((1, 16, 16, 3), np.nan) / 255, NON_FINITE, id="nan"),
    pytest.param(lambda: with_value((1, 16, 16, 3), -np.inf) / 255, NON_FINITE, id="inf"),
    pytest.param(lambda: pixels((2, 16, 16, 3), np.float32), NIN_RANGE, id="raw-pixels-not-preprocessed"),
    pytest.param(
        lambda: preprocess_input(preprocess_input(pixels((2, 16, 16, 3)))),
        (ValueError, r"outside \[0, 255\]"),
        id="preprocessed-twice-numpy",
    ),
    pytest.param(
        lambda: tf.constant(preprocess_input(pixels((2, 16, 16, 3)))) / 127.5 - 1.0,
        NIN_RANGE,
        id="preprocessed-twice-tensor",
    ),
]


@pytest.mark.parametrize("make, outcome", NIN_CASES)
def test_nin_model(nin_model, expect, make, outcome):
    out = expect(lambda value: nin_model(value(), training=False), make, outcome)
    if out is not None:
        probabilities = np.asarray(out)
        assert probabilities.shape[1:] == (3,) and np.all(np.isfinite(probabilities))
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)


def test_nin_checks_in_graphs_and_predict(nin_model):
    images = pixels((4, 16, 16, 3), np.float32)
    assert nin_model.predict(preprocess_input(images), verbose=0).shape == (4, 3)
    with pytest.raises(InvalidArgument, match=r"outside \[-1, 1\]"):
        tf.function(lambda x: nin_model(x))(images)
    with pytest.raises(ValueError, match=r"got shape \[16, 16, 3\] \(rank 3\)"):
        tf.function(lambda x: nin_model(x))(images[0])
    # training steps are not checked for values (augmented batches may leave the range)
    assert nin_model(images, training=True).shape == (4, 3)


def test_nin_gray_single_image_is_not_a_batch(gray_nin_model):
    # Keras alone would add an axis and return 16 "predictions" for this one image
    with pytest.raises(ValueError, match=r"got shape \[16, 16, 1\] \(rank 3\); for one image add a batch axis"):
        gray_nin_model(np.zeros((16, 16, 1), np.float32))
    assert gray_nin_model(np.zeros((1, 16, 16, 1), np.float32)).shape == (1, 3)


# -- nin.preprocess_input: the pixel contract -----------------------------------------------------------------------

PIXEL_RANGE = r"outside \[0, 255\]; observed min and max"
PREPROCESS_CASES = [
    pytest.param(lambda: pixels((2, 4, 4, 3)), "ok", id="uint8"),
    pytest.param(lambda: pixels((2, 4, 4, 3), np.float32), "ok", id="float-0-255"),
    pytest.param(lambda: np.zeros((1, 4, 4, 3), np.float32), "ok", id="all-black-float"),
    pytest.param(lambda: np.ones((1, 4, 4, 3), np.float32), "ok", id="constant-1-float"),
    pytest.param(lambda: pixels((2, 4, 4, 3), np.float32) / 255, (ValueError, UNIT[1]), id="unit-floats"),
    pytest.param(lambda: np.full((1, 4, 4, 3), 0.7, np.float32), (ValueError, UNIT[1]), id="constant-0.7"),
    pytest.param(lambda: with_value((1, 4, 4, 3), 300.0), (ValueError, PIXEL_RANGE + r": .*, 300"), id="300"),
    pytest.param(lambda: with_value((1, 4, 4, 3), -1.0), (ValueError, PIXEL_RANGE + ": -1, "), id="minus-1"),
    pytest.param(lambda: preprocess_input(pixels((2, 4, 4, 3))), (ValueError, PIXEL_RANGE), id="already-preprocessed"),
    pytest.param(lambda: with_value((1, 4, 4, 3), np.nan), (ValueError, NON_FINITE[1]), id="nan"),
    pytest.param(lambda: with_value((1, 4, 4, 3), np.inf), (ValueError, NON_FINITE[1]), id="inf"),
    pytest.param(lambda: np.zeros((1, 4, 4, 3), bool), (ValueError, "got dtype bool"), id="bool"),
    pytest.param(lambda: np.full((1, 2), "a"), (ValueError, "got dtype <U1"), id="strings"),
    pytest.param(lambda: tf.constant(with_value((1, 4, 4, 3), np.nan)), NON_FINITE, id="tensor-nan"),
    pytest.param(lambda: tf.constant(pixels((1, 4, 4, 3), np.float32) / 255), UNIT, id="tensor-unit-floats"),
    pytest.param(
        lambda: tf.constant(with_value((1, 4, 4, 3), 300.0)), (InvalidArgument, r"outside \[0, 255\]"), id="tensor-300"
    ),
]


@pytest.mark.parametrize("make, outcome", PREPROCESS_CASES)
def test_nin_preprocess_input(expect, make, outcome):
    out = expect(lambda value: preprocess_input(value()), make, outcome)
    if out is not None:
        out = np.asarray(out)
        assert out.dtype == np.float32 and out.min() >= -1 and out.max() <= 1


# -- Mask R-CNN: pixels in [0, 255] ---------------------------------------------------------------------------------

MASK_RCNN_CASES = [
    pytest.param(lambda: pixels((1, 64, 64, 3)), "ok", id="uint8"),
    pytest.param(lambda: pixels((2, 48, 80, 3), np.float32), "ok", id="float-0-255-other-size"),
    pytest.param(lambda: np.zeros((1, 64, 64, 3), np.float32), "ok", id="all-black-float"),
    pytest.param(lambda: pixels((1, 64, 64, 3), np.float16), "ok", id="float16"),
    pytest.param(lambda: pixels((64, 64, 3)), RANK, id="single-image-rank3"),
    pytest.param(lambda: pixels((1, 1, 64, 64, 3)), RANK, id="rank5"),
    pytest.param(lambda: pixels((1, 64, 64, 1)), channels(1), id="1-channel"),
    pytest.param(lambda: pixels((1, 64, 64, 4)), channels(4), id="4-channels"),
    pytest.param(lambda: pixels((0, 64, 64, 3)), EMPTY, id="empty-batch"),
    pytest.param(lambda: pixels((1, 64, 64, 3), np.int32), dtype("int32"), id="int32"),
    pytest.param(lambda: np.zeros((1, 64, 64, 3), bool), dtype("bool"), id="bool"),
    pytest.param(lambda: np.full((1, 64, 64, 3), "a"), dtype("string"), id="strings"),
    pytest.param(lambda: with_value((1, 64, 64, 3), np.nan), NON_FINITE, id="nan"),
    pytest.param(lambda: with_value((1, 64, 64, 3), np.inf), NON_FINITE, id="inf"),
    pytest.param(lambda: with_value((1, 64, 64, 3), 300.0), (InvalidArgument, PIXEL_RANGE + r":[\s\S]*300"), id="300"),
    pytest.param(lambda: with_value((1, 64, 64, 3), -1.0), (InvalidArgument, PIXEL_RANGE + r":\W*-1"), id="minus-1"),
    pytest.param(lambda: pixels((2, 64, 64, 3), np.float32) / 255, UNIT, id="unit-floats"),
]


@pytest.mark.parametrize("make, outcome", MASK_RCNN_CASES)
def test_mask_rcnn_model(mask_rcnn_model, expect, make, outcome):
    images = make()
    out = expect(mask_rcnn_model, images, outcome)
    if out is not None:
        assert out["detection_boxes"].shape == (len(images), 10, 4)
        assert np.all(np.isfinite(out["detection_scores"].numpy()))


def test_mask_rcnn_float_and_uint8_agree(mask_rcnn_model):
    images = pixels((1, 64, 64, 3))
    a, b = mask_rcnn_model(images), mask_rcnn_model(images.astype(np.float32))
    np.testing.assert_allclose(a["detection_scores"], b["detection_scores"], atol=1e-6)
