"""kzoo.ops.masks: pasting RoI masks into images, the NumPy reference and the TensorFlow graph pixel for pixel."""

import numpy as np
import pytest
import tensorflow as tf

from kzoo.ops.masks import paste_masks, paste_masks_tf


def test_full_mask_pastes_onto_its_box():
    masks = np.ones((1, 28, 28), np.float32)
    pasted = paste_masks(masks, np.array([[20.0, 10.0, 48.0, 66.0]]), (80, 90))
    rows, cols = np.nonzero(pasted[0])
    # the padded border fades over about one mask pixel: the 0.5 level sits on the box edge (+-1 pixel)
    assert abs(rows.min() - 20) <= 1 and abs(rows.max() - 47) <= 1
    assert abs(cols.min() - 10) <= 2 and abs(cols.max() - 65) <= 2
    assert pasted.shape == (1, 80, 90) and pasted.dtype == bool


def test_probabilities_clipped_boxes_and_errors():
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(3, 28, 28)).astype(np.float32)
    boxes = np.array([[-10, -10, 30, 30], [50, 50, 120, 120], [5, 5, 5.5, 5.5]], np.float32)
    probs = paste_masks(masks, boxes, (64, 64), threshold=None)
    assert probs.shape == (3, 64, 64) and probs.dtype == np.float32
    assert probs.min() >= 0 and probs.max() <= 1
    assert probs[1, :45, :45].max() == 0  # nothing outside the (clipped, expanded) box
    with pytest.raises(ValueError, match="M, M"):
        paste_masks(np.zeros((2, 28, 14)), boxes[:2], (10, 10))
    with pytest.raises(ValueError, match="boxes must be"):
        paste_masks(masks, boxes[:2], (10, 10))


def _detections(seed, batch=2, count=12, size=28, height=57, width=83):
    rng = np.random.default_rng(seed)
    masks = rng.uniform(0, 1, (batch, count, size, size)).astype(np.float32)
    yx = rng.uniform(-15, [height, width], (batch, count, 2))
    hw = rng.uniform(0.3, 40, (batch, count, 2))
    boxes = np.concatenate([yx, yx + hw], -1).astype(np.float32)
    boxes[0, 0] = [10.5, 20.25, 10.5, 30.0]  # zero height
    boxes[0, 1] = [-30, -30, -20, -20]  # entirely outside
    boxes[-1, 2] = [0, 0, height, width]  # the whole image
    boxes[-1, 3] = [0.0, 0.0, 0.0, 0.0]  # a padding row
    masks[-1, 3] = 0.0
    return masks, boxes


def test_probabilities_and_binary_masks_match_numpy():
    masks, boxes = _detections(0)
    height, width = 57, 83
    probabilities = paste_masks_tf(masks, boxes, (height, width), threshold=None).numpy()
    binary = paste_masks_tf(masks, boxes, tf.constant([height, width]), threshold=0.5).numpy()
    assert probabilities.shape == binary.shape == (2, 12, height, width)
    assert probabilities.dtype == np.float32 and binary.dtype == np.uint8
    for b in range(2):
        expected = paste_masks(masks[b], boxes[b], (height, width), threshold=None)
        np.testing.assert_allclose(probabilities[b], expected, atol=2e-7)
        np.testing.assert_array_equal(binary[b], paste_masks(masks[b], boxes[b], (height, width)).astype(np.uint8))
    assert not binary[0, 1].any() and not binary[1, 3].any()


@pytest.mark.parametrize("size", [14, 28])
def test_unknown_image_size_in_a_graph(size):
    masks, boxes = _detections(1, batch=1, count=5, size=size)
    fn = tf.function(
        lambda m, b, image: paste_masks_tf(m, b, tf.shape(image)[:2]),
        input_signature=[
            tf.TensorSpec([None, None, size, size]),
            tf.TensorSpec([None, None, 4]),
            tf.TensorSpec([None, None, 3], tf.uint8),
        ],
    )
    out = fn(masks, boxes, tf.zeros([40, 90, 3], tf.uint8)).numpy()
    np.testing.assert_array_equal(out[0], paste_masks(masks[0], boxes[0], (40, 90)).astype(np.uint8))
    assert fn(masks[:0], boxes[:0], tf.zeros([40, 90, 3], tf.uint8)).shape == (0, 5, 40, 90)


def test_bad_shapes():
    with pytest.raises(ValueError, match="masks must be"):
        paste_masks_tf(np.zeros((1, 2, 28, 14), np.float32), np.zeros((1, 2, 4), np.float32), (10, 10))
    with pytest.raises(ValueError, match="boxes must be"):
        paste_masks_tf(np.zeros((1, 2, 28, 28), np.float32), np.zeros((1, 2, 5), np.float32), (10, 10))
