"""Batches Keras does not handle by itself: empty batches through ``model.predict`` (empty outputs of the right
shapes, not Keras' ``UnboundLocalError``), images of mixed sizes as a Python list or a ``tf.RaggedTensor`` (one
result per image, each resized by the model's own rule; or, where the model cannot, one clear error), and
``decode_predictions`` on NaN scores (refused, naming the row)."""

import numpy as np
import pytest
import tensorflow as tf
from corpus import pixels

from kzoo.applications.nin import decode_predictions, preprocess_input

MASK_RCNN_KEYS = {
    "detection_boxes": ((10, 4), np.float32),
    "detection_scores": ((10,), np.float32),
    "detection_classes": ((10,), np.int32),
    "num_detections": ((), np.int32),
    "detection_masks": ((10, 28, 28), np.float32),
}
SIZES = [(64, 64), (40, 30), (64, 64), (90, 50)]


def photos(dtype=np.uint8) -> list[np.ndarray]:
    return [pixels((*size, 3), dtype, seed=i) for i, size in enumerate(SIZES)]


# -- empty batches ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "empty",
    [np.zeros((0, 64, 64, 3), np.uint8), np.zeros((0, 30, 40, 3), np.float32), []],
    ids=["uint8", "float-other-size", "empty-list"],
)
def test_mask_rcnn_predict_empty(mask_rcnn_model, empty):
    out = mask_rcnn_model.predict(empty, verbose=0)
    assert set(out) == set(MASK_RCNN_KEYS)
    for key, (shape, dtype) in MASK_RCNN_KEYS.items():
        assert out[key].shape == (0, *shape) and out[key].dtype == dtype


def test_mask_rcnn_predict_empty_still_checks_the_batch(mask_rcnn_model):
    with pytest.raises(ValueError, match=r"must have 3 channel"):
        mask_rcnn_model.predict(np.zeros((0, 64, 64, 1), np.uint8), verbose=0)


@pytest.mark.parametrize("empty", [np.zeros((0, 16, 16, 3), np.float32), []], ids=["array", "empty-list"])
def test_nin_predict_empty(nin_model, empty):
    out = nin_model.predict(empty, verbose=0)
    assert out.shape == (0, 3) and out.dtype == np.float32


def test_nin_predict_empty_still_checks_the_batch(nin_model):
    with pytest.raises(ValueError, match=r"\[batch, 16, 16, 3\], got height 8"):
        nin_model.predict(np.zeros((0, 8, 16, 3), np.float32), verbose=0)


# -- mixed sizes: Mask R-CNN resizes each image by its own rule --------------------------------------------------------


def one_by_one(model, images) -> dict[str, np.ndarray]:
    outs = [model(image[None]) for image in images]
    return {key: np.concatenate([out[key].numpy() for out in outs]) for key in MASK_RCNN_KEYS}


def assert_same(out: dict, expected: dict) -> None:
    for key in MASK_RCNN_KEYS:
        np.testing.assert_allclose(np.asarray(out[key]), expected[key], atol=1e-4, err_msg=key)


def ragged(images: list[np.ndarray]) -> tf.RaggedTensor:
    return tf.ragged.constant([image.tolist() for image in images], dtype=tf.as_dtype(images[0].dtype), ragged_rank=2)


@pytest.mark.parametrize("how", ["predict-list", "predict-tuple", "predict-ragged", "call-list", "call-ragged"])
def test_mask_rcnn_mixed_sizes(mask_rcnn_model, how):
    images = photos()
    expected = one_by_one(mask_rcnn_model, images)
    value = {"list": images, "tuple": tuple(images), "ragged": ragged(images)}[how.split("-")[1]]
    out = mask_rcnn_model.predict(value, verbose=0) if how.startswith("predict") else mask_rcnn_model(value)
    assert_same(out, expected)
    # each image's boxes are in its own pixels
    for boxes, (height, width) in zip(np.asarray(out["detection_boxes"]), SIZES):
        assert np.all(boxes[:, 2] <= height + 1e-3) and np.all(boxes[:, 3] <= width + 1e-3)


def test_mask_rcnn_list_of_mixed_dtypes_and_one_image(mask_rcnn_model):
    images = [pixels((40, 30, 3)), pixels((40, 30, 3), np.float32, seed=5)]
    assert_same(mask_rcnn_model.predict(images, verbose=0), one_by_one(mask_rcnn_model, images))
    assert mask_rcnn_model.predict([images[0]], verbose=0)["detection_boxes"].shape == (1, 10, 4)


def test_mask_rcnn_list_errors_name_the_image(mask_rcnn_model):
    with pytest.raises(ValueError, match=r"images\[1\] must be one image \[height, width, 3\].*shape \[1, 40, 30, 3\]"):
        mask_rcnn_model.predict([pixels((40, 30, 3)), pixels((1, 40, 30, 3))], verbose=0)
    with pytest.raises(ValueError, match=r"images\[1\] must have 3 channel"):
        mask_rcnn_model.predict([pixels((40, 30, 3)), pixels((40, 30, 1))], verbose=0)
    mask_rcnn_model.predict(pixels((1, 40, 30, 3)), verbose=0)
    with pytest.raises(ValueError, match="must have 3 channel"):  # after another shape (Keras retraces unknown sizes)
        mask_rcnn_model.predict(pixels((1, 40, 31, 1)), verbose=0)
    with pytest.raises(ValueError, match=r"model.predict\(\[\]\) returns empty outputs"):
        mask_rcnn_model([])


def test_mask_rcnn_ragged_inside_a_tf_function_is_refused(mask_rcnn_model):
    images = ragged(photos()[:2])
    with pytest.raises(ValueError, match="tf.RaggedTensor of images is taken eagerly only.*one size per call"):
        tf.function(lambda x: mask_rcnn_model(x))(images)


# -- mixed sizes: NIN has one input size ---------------------------------------------------------------------------


def test_nin_predict_list(nin_model):
    images = [preprocess_input(pixels((16, 16, 3), seed=i)) for i in range(3)]
    expected = nin_model.predict(np.stack(images), verbose=0)
    np.testing.assert_allclose(nin_model.predict(images, verbose=0), expected, atol=1e-6)
    np.testing.assert_allclose(nin_model.predict(ragged(images), verbose=0), expected, atol=1e-6)


def test_nin_mixed_sizes_are_refused_by_name(nin_model):
    images = [preprocess_input(pixels((16, 16, 3))), preprocess_input(pixels((8, 8, 3)))]
    with pytest.raises(ValueError, match=r"images\[1\] must be \[batch, 16, 16, 3\], got height 8"):
        nin_model.predict(images, verbose=0)
    # an array of another size after one of the model's size (Keras retraces with unknown sizes) is refused too
    nin_model.predict(np.stack(images[:1]), verbose=0)
    with pytest.raises(ValueError, match=r"\[batch, 16, 16, 3\], got height 8"):
        nin_model.predict(images[1][None], verbose=0)
    with pytest.raises(ValueError, match=r"use model.predict\(images\), which batches each size separately"):
        nin_model(images)


# -- decode_predictions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_decode_predictions_refuses_non_finite_scores(bad):
    preds = np.array([[0.2, 0.3, 0.5], [0.1, bad, 0.3], [0.3, 0.3, 0.4]])
    with pytest.raises(ValueError, match=r"preds\[1\] holds non-finite scores \(NaN or inf\).*\(rows 1\)"):
        decode_predictions(preds, top=2)


def test_decode_predictions_finite_and_empty():
    assert decode_predictions(np.array([[0.2, 0.3, 0.5]]), top=2) == [[(2, "2", 0.5), (1, "1", 0.3)]]
    assert decode_predictions(np.zeros((0, 3)), top=2) == []
    with pytest.raises(ValueError, match="numeric scores"):
        decode_predictions(np.array([["a", "b"]]))
