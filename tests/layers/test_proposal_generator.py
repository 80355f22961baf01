"""kzoo.layers.proposal_generator: per-level top-k, NMS and clipping against a NumPy reference."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_references import (
    IMAGE_100,
    assert_config_round_trip,
    np_batched_nms,
    np_clip,
    np_decode,
    numpy_dict,
)

from kzoo.layers.proposal_generator import ProposalGenerator
from kzoo.ops.anchors import generate_anchors


def np_filter_proposals(objectness, deltas, anchors, level_sizes, height, width, pre, post, iou=0.7, min_size=1e-3):
    """torchvision RegionProposalNetwork.filter_proposals for one image."""
    picked, levels, start = [], [], 0
    for level, size in enumerate(level_sizes):
        order = np.argsort(-objectness[start : start + size], kind="stable")[:pre] + start
        picked.append(order)
        levels.append(np.full(order.size, level))
        start += size
    picked, levels = np.concatenate(picked), np.concatenate(levels)
    boxes = np_clip(np_decode(deltas[picked], anchors[picked], (1, 1, 1, 1)), height, width)
    scores = 1 / (1 + np.exp(-objectness[picked].astype(np.float64)))
    ok = (boxes[:, 2] - boxes[:, 0] >= min_size) & (boxes[:, 3] - boxes[:, 1] >= min_size)
    boxes, scores, levels = boxes[ok], scores[ok], levels[ok]
    keep = np_batched_nms(boxes, scores, levels, iou)[:post]
    return boxes[keep], scores[keep]


def two_level_case():
    """Two levels of 3 anchors each; per level a duplicate pair, and a tiny box with the best score."""
    anchors = np.array(
        [
            [10, 10, 30, 30],
            [11, 11, 31, 31],
            [60, 60, 60.0005, 60.0005],  # level 0
            [10, 10, 30, 30],
            [12, 12, 32, 32],
            [50, 50, 90, 90],  # level 1
        ],
        np.float32,
    )
    objectness = np.array([[2.0, 1.0, 5.0, 1.5, 0.5, -1.0]], np.float32)
    deltas = np.zeros((1, 6, 4), np.float32)
    return objectness, deltas, anchors, [3, 3]


def test_proposal_generator_removes_tiny_boxes_and_nms_per_level():
    objectness, deltas, anchors, level_sizes = two_level_case()
    gen = ProposalGenerator(pre_nms_top_k=10, post_nms_top_k=5, level_sizes=level_sizes)
    out = numpy_dict(gen(objectness, deltas, anchors, np.array([[100, 100]])))
    assert out["proposals"].shape == (1, 5, 4) and out["proposal_scores"].shape == (1, 5)
    assert out["num_proposals"].tolist() == [4]
    # the tiny box (best score) is gone; [11, 11, 31, 31] is suppressed by [10, 10, 30, 30] of its own level
    # (IoU 0.82 > 0.7), [12, 12, 32, 32] is not (IoU 0.68 with the level-1 copy); the identical box of the
    # other level is not suppressed across levels.
    expected = np.array([[10, 10, 30, 30], [10, 10, 30, 30], [12, 12, 32, 32], [50, 50, 90, 90]], np.float32)
    np.testing.assert_allclose(out["proposals"][0, :4], expected, atol=1e-5)
    logits = np.array([2.0, 1.5, 0.5, -1.0])
    np.testing.assert_allclose(out["proposal_scores"][0, :4], 1 / (1 + np.exp(-logits)), atol=1e-6)
    assert not out["proposals"][0, 4:].any() and not out["proposal_scores"][0, 4:].any()


def test_proposal_generator_pre_nms_top_k_per_level_clip_and_modes():
    objectness, deltas, anchors, level_sizes = two_level_case()
    gen = ProposalGenerator(
        pre_nms_top_k=1, post_nms_top_k=4, pre_nms_top_k_train=2, post_nms_top_k_train=3, level_sizes=level_sizes
    )
    test = numpy_dict(gen(objectness, deltas, anchors, np.array([[100, 100]]), training=False))
    # Only the best anchor of each level is considered: level 0's is tiny, so one proposal is left.
    assert test["proposals"].shape == (1, 4, 4) and test["num_proposals"].tolist() == [1]
    np.testing.assert_allclose(test["proposals"][0, 0], [10, 10, 30, 30])
    train = numpy_dict(gen(objectness, deltas, anchors, np.array([[100, 100]]), training=True))
    assert train["proposals"].shape == (1, 3, 4) and train["num_proposals"].tolist() == [3]
    # Clipping to the (un-padded) image: a 25 x 25 image cuts the boxes.
    clipped = numpy_dict(gen(objectness, deltas, anchors, np.array([[25, 28]]), training=True))
    assert clipped["proposals"][..., 2].max() <= 25 and clipped["proposals"][..., 3].max() <= 28
    assert gen.top_k(True) == (2, 3) and gen.top_k(False) == (1, 4)


def test_proposal_generator_matches_numpy_reference():
    rng = np.random.default_rng(1)
    shapes, strides, sizes = [(6, 8), (3, 4), (2, 2)], [8, 16, 32], [16, 32, 64]
    anchors = generate_anchors(shapes, strides, sizes, (0.5, 1.0, 2.0))
    level_sizes = [h * w * 3 for h, w in shapes]
    b, total = 2, anchors.shape[0]
    objectness = rng.normal(scale=2.0, size=(b, total)).astype(np.float32)
    deltas = rng.normal(scale=0.5, size=(b, total, 4)).astype(np.float32)
    deltas[0, :5, 2:] = -12.0  # some boxes shrink below min_size
    image_shape = np.array([[48, 64], [40, 50]], np.int32)
    gen = ProposalGenerator(pre_nms_top_k=40, post_nms_top_k=60, level_sizes=level_sizes)
    out = numpy_dict(gen(objectness, deltas, anchors, image_shape))
    for i in range(b):
        boxes, scores = np_filter_proposals(objectness[i], deltas[i], anchors, level_sizes, *image_shape[i], 40, 60)
        m = out["num_proposals"][i]
        assert m == len(scores) > 0
        np.testing.assert_allclose(out["proposals"][i, :m], boxes, atol=1e-4)
        np.testing.assert_allclose(out["proposal_scores"][i, :m], scores, atol=1e-6)
        assert not out["proposals"][i, m:].any()


def test_proposal_generator_tf_function_config_functional_and_no_gradient():
    objectness, deltas, anchors, level_sizes = two_level_case()
    gen = ProposalGenerator(pre_nms_top_k=2, post_nms_top_k=3, level_sizes=level_sizes, name="proposals")
    assert_config_round_trip(gen)
    assert_config_round_trip(ProposalGenerator(pre_nms_top_k_train=2000, post_nms_top_k_train=2000))

    @tf.function(jit_compile=False)
    def run(objectness, deltas, image_shape):
        return gen(objectness, deltas, anchors, image_shape, training=False)

    out = run(objectness, deltas, tf.constant([[100, 100]]))
    assert tuple(out["proposals"].shape) == (1, 3, 4) and out["num_proposals"].dtype == tf.int32
    concrete = run.get_concrete_function(objectness, deltas, tf.constant([[100, 100]]))
    assert all(t.shape.is_fully_defined() for t in concrete.structured_outputs.values())

    x = tf.Variable(deltas)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(gen(objectness, x, anchors, IMAGE_100)["proposals"])
    assert tape.gradient(loss, x) is None

    inputs = [keras.Input((6,)), keras.Input((6, 4)), keras.Input((2,), dtype="int32")]
    symbolic = gen(inputs[0], inputs[1], anchors, inputs[2])
    assert tuple(symbolic["proposals"].shape) == (None, 3, 4)
    model = keras.Model(inputs, symbolic)
    result = model([objectness, deltas, np.array([[100, 100]], np.int32)])
    np.testing.assert_allclose(result["proposals"].numpy(), out["proposals"].numpy())


def test_proposal_generator_needs_level_sizes():
    objectness, deltas, anchors, _ = two_level_case()
    with pytest.raises(ValueError, match="level_sizes"):
        ProposalGenerator()(objectness, deltas, anchors, IMAGE_100)
    with pytest.raises(ValueError, match="sum to 5"):
        ProposalGenerator(level_sizes=[3, 2])(objectness, deltas, anchors, IMAGE_100)
    out = ProposalGenerator(pre_nms_top_k=5, post_nms_top_k=2)(
        objectness, deltas, anchors, IMAGE_100, level_sizes=[3, 3]
    )
    assert tuple(out["proposals"].shape) == (1, 2, 4)
