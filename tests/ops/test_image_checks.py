"""kzoo.ops.image_checks: the image input contract, its static, graph and NumPy checks agreeing on every rule."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kzoo.ops.image_checks import (
    EMPTY_BATCH,
    NON_FINITE,
    OUT_OF_RANGE,
    UNIT_RANGE,
    assert_image_shape,
    assert_image_values,
    check_image_spec,
    check_images_np,
    check_pixel_dtype,
    dtype_name,
)


@pytest.mark.parametrize(
    "dtype, name",
    [(tf.uint8, "uint8"), (np.float32, "float32"), (np.dtype("float16"), "float16"), ("bfloat16", "bfloat16"),
     (tf.bfloat16, "bfloat16"), (np.dtype("U3"), "<U3"), (np.bool_, "bool")],
)  # fmt: skip
def test_dtype_names(dtype, name):
    assert dtype_name(dtype) == name


def test_pixel_dtypes():
    assert check_pixel_dtype(np.uint8) == "uint8" and check_pixel_dtype(tf.float64) == "float64"
    for bad in (np.int32, np.bool_, tf.string):
        with pytest.raises(ValueError, match="images must be uint8 or float16 or bfloat16 or float32 or float64"):
            check_pixel_dtype(bad)
    with pytest.raises(ValueError, match="x must be uint8 pixels, got dtype float32; resize"):
        check_pixel_dtype(np.float32, dtypes=("uint8",), name="x", detail="; resize")


@pytest.mark.parametrize(
    "shape, kwargs, message",
    [
        ((8, 8, 3), {}, r"rank 4\), got shape \[8, 8, 3\] \(rank 3\); for one image add a batch axis"),
        ((1, 8, 8, 3, 1), {}, r"got shape \[1, 8, 8, 3, 1\] \(rank 5\)$"),
        ((1, 8, 8, 1), {"channels": 3}, r"must have 3 channel\(s\) \[batch, height, width, 3\], got 1 channels"),
        ((1, 8, 9, 3), {"height": 8, "width": 8}, r"got width 9"),
        ((0, 8, 8, 3), {}, EMPTY_BATCH),
    ],
)
def test_static_shape_rules(shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_image_spec(shape, np.uint8, **kwargs)
    with pytest.raises(ValueError, match=message):
        check_images_np(np.zeros(shape, np.uint8), **kwargs)


def test_unknown_sizes_and_allowed_empty_batches_pass():
    check_image_spec([None, None, None, 3], tf.float32, channels=3, height=8)
    check_image_spec((0, 8, 8, 3), np.uint8, allow_empty=True)
    check_images_np(np.zeros((0, 8, 8, 3), np.float32), allow_empty=True)


@pytest.mark.parametrize(
    "values, message",
    [
        (np.array([0.0, np.nan]), NON_FINITE),
        (np.array([0.0, np.inf]), NON_FINITE),
        (np.array([-1.0, 3.0]), OUT_OF_RANGE),
        (np.array([0.0, 256.0]), OUT_OF_RANGE),
        (np.array([0.0, 0.5, 1.0]), UNIT_RANGE),
    ],
)
def test_value_rules_agree_in_the_graph_and_in_numpy(values, message):
    images = values.reshape(1, 1, -1, 1).astype(np.float32)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        check_images_np(images)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message.split(" (")[0].replace("[", r"\[")):
        assert_image_values(tf.constant(images))


@pytest.mark.parametrize(
    "values",
    [np.zeros(4), np.full(4, 255.0), np.array([0.0, 1.0, 0.0, 1.0]), np.array([0.0, 12.5, 255.0, 3.0])],
)
def test_black_constant_binary_and_ordinary_pixels_pass(values):
    images = values.reshape(1, 2, 2, 1).astype(np.float32)
    check_images_np(images)
    np.testing.assert_array_equal(assert_image_values(tf.constant(images)).numpy(), images)


def test_other_ranges_and_uint8():
    inside = np.array([[[[-1.0], [0.5]]]], np.float32)
    check_images_np(inside, value_range=(-1.0, 1.0))
    assert_image_values(tf.constant(inside), value_range=(-1.0, 1.0))
    with pytest.raises(ValueError, match=r"outside \[-1, 1\]; observed min and max: -2, 1"):
        check_images_np(inside * 2, value_range=(-1.0, 1.0))
    pixels = np.array([[[[0], [255]]]], np.uint8)
    assert assert_image_values(tf.constant(pixels)).dtype == tf.uint8
    check_images_np(pixels)


def test_run_time_shape_check_for_broken_promises():
    @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8)])
    def run(images):
        return assert_image_shape(images, channels=3, height=4)

    assert run(tf.zeros([2, 4, 5, 3], tf.uint8)).shape == (2, 4, 5, 3)
    for shape in ([2, 4, 5, 1], [2, 3, 5, 3], [4, 5, 3]):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[batch, 4, width, 3\]; got shape"):
            run(tf.zeros(shape, tf.uint8))
