"""DetectionGenerator and ProposalGenerator: hand-made cases and NumPy references of torchvision's rules."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.layers.detection_generator import DetectionGenerator
from kzoo.layers.proposal_generator import ProposalGenerator
from kzoo.ops.anchors import generate_anchors

# Keras layers take tensors (or NumPy arrays), not Python lists, as positional arguments.
IMAGE_100 = np.array([[100, 100]], np.int32)
IMAGE_120_100 = np.array([[120, 100]], np.int32)

# ------------------------------------------------------------------------------------------ NumPy references


CLAMP = np.log(1000.0 / 16)


def np_decode(deltas, anchors, weights, clamp=CLAMP):
    deltas = deltas.astype(np.float32)
    anchors = anchors.astype(np.float32)
    h = anchors[..., 2] - anchors[..., 0]
    w = anchors[..., 3] - anchors[..., 1]
    cy = anchors[..., 0] + 0.5 * h
    cx = anchors[..., 1] + 0.5 * w
    ty, tx, th, tw = (deltas[..., i] / np.float32(weights[i]) for i in range(4))
    th, tw = np.minimum(th, clamp), np.minimum(tw, clamp)
    y, x = ty * h + cy, tx * w + cx
    hh, hw = 0.5 * np.exp(th) * h, 0.5 * np.exp(tw) * w
    return np.stack([y - hh, x - hw, y + hh, x + hw], -1).astype(np.float32)


def np_clip(boxes, height, width):
    limits = np.array([height, width, height, width], np.float32)
    return np.minimum(np.maximum(boxes, 0), limits)


def np_iou(box, boxes):
    ymin = np.maximum(box[0], boxes[:, 0])
    xmin = np.maximum(box[1], boxes[:, 1])
    ymax = np.minimum(box[2], boxes[:, 2])
    xmax = np.minimum(box[3], boxes[:, 3])
    inter = np.maximum(ymax - ymin, 0) * np.maximum(xmax - xmin, 0)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def np_batched_nms(boxes, scores, groups, iou_threshold):
    """torchvision.ops.batched_nms: greedy NMS within each group, kept indices in descending score order."""
    keep = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        while idx.size:
            keep.append(idx[0])
            idx = idx[1:][np_iou(boxes[idx[0]], boxes[idx[1:]]) <= iou_threshold]
    keep = np.asarray(keep, int)
    return keep[np.argsort(-scores[keep], kind="stable")]


def np_postprocess(logits, deltas, proposals, height, width, score_threshold=0.05, iou=0.5, top=100, min_size=1e-2):
    """torchvision RoIHeads.postprocess_detections for one image (yxyx, kzoo delta order)."""
    e = np.exp(logits - logits.max(-1, keepdims=True))
    scores = (e / e.sum(-1, keepdims=True))[:, 1:].reshape(-1)
    boxes = np_clip(np_decode(deltas, proposals[:, None, :], (10, 10, 5, 5)), height, width)[:, 1:].reshape(-1, 4)
    labels = np.tile(np.arange(1, logits.shape[-1]), logits.shape[0])
    ok = (scores > score_threshold) & (boxes[:, 2] - boxes[:, 0] >= min_size) & (boxes[:, 3] - boxes[:, 1] >= min_size)
    boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
    keep = np_batched_nms(boxes, scores, labels, iou)[:top]
    return boxes[keep], scores[keep], labels[keep]


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


def numpy_dict(outputs):
    return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}


def assert_config_round_trip(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == layer.get_config()


# ------------------------------------------------------------------------------------------ DetectionGenerator

CONFIDENT = 12.0  # a logit that gives p ~ 1 against zeros


def one_hot_logits(cls, k):
    logits = np.zeros(k, np.float32)
    logits[cls] = CONFIDENT
    return logits


def test_detection_generator_decodes_a_confident_proposal():
    k = 4
    proposals = np.array([[[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 30.0, 30.0]]], np.float32)  # [1, 2, 4]
    logits = np.stack([one_hot_logits(2, k), one_hot_logits(0, k)])[None]  # 2nd proposal: background only
    deltas = np.zeros((1, 2, k, 4), np.float32)
    # class 2 of proposal 0: centre moves down by 0.1 h = 4 px (ty = 10 * 0.1), height x1.5 (th = 5 * log 1.5).
    deltas[0, 0, 2] = [1.0, 0.0, 5.0 * np.log(1.5), 0.0]
    deltas[0, 0, 1] = [5.0, 5.0, 0.0, 0.0]  # another class's deltas must not be used
    gen = DetectionGenerator(num_classes=k, max_detections=5)
    out = numpy_dict(gen(logits, deltas, proposals, np.array([[100, 100]])))
    assert out["num_detections"].tolist() == [1]
    np.testing.assert_allclose(out["boxes"][0, 0], [4.0, 20.0, 64.0, 80.0], atol=1e-4)
    assert out["classes"][0, 0] == 2 and out["scores"][0, 0] > 0.999
    # padding beyond num_detections is zeros
    assert not out["boxes"][0, 1:].any() and not out["scores"][0, 1:].any() and not out["classes"][0, 1:].any()
    assert out["boxes"].shape == (1, 5, 4) and out["scores"].shape == (1, 5)
    assert out["boxes"].dtype == out["scores"].dtype == np.float32
    assert out["classes"].dtype == out["num_detections"].dtype == np.int32


def test_detection_generator_threshold_clip_and_small_boxes():
    k = 3
    proposals = np.array([[[10, 10, 40, 40], [50, 50, 90, 130], [20, 20, 20, 20], [5, 5, 25, 25]]], np.float32)
    logits = np.stack(
        [
            np.array([0.0, 3.0, 0.0]),  # p(1) = 0.91
            one_hot_logits(1, k),  # crosses the right border (width 100): clipped
            one_hot_logits(2, k),  # empty proposal: decodes to an empty box, dropped as small
            np.array([0.0, -3.5, 0.0]),  # p(1) = 0.0147 < 0.05, p(2) = 0.4963, p(0) = 0.4963
        ]
    )[None].astype(np.float32)
    deltas = np.zeros((1, 4, k, 4), np.float32)
    out = numpy_dict(DetectionGenerator(num_classes=k, max_detections=10)(logits, deltas, proposals, IMAGE_120_100))
    n = out["num_detections"][0]
    assert n == 3
    found = {(int(c), tuple(np.round(b, 3))) for b, c in zip(out["boxes"][0, :n], out["classes"][0, :n])}
    assert found == {(1, (50.0, 50.0, 90.0, 100.0)), (1, (10.0, 10.0, 40.0, 40.0)), (2, (5.0, 5.0, 25.0, 25.0))}
    assert np.all(np.diff(out["scores"][0, :n]) <= 0) and (out["scores"][0, :n] > 0.05).all()
    assert not out["boxes"][0, n:].any() and not out["classes"][0, n:].any()


def test_detection_generator_nms_is_per_class():
    k = 3
    box = [10.0, 10.0, 50.0, 50.0]
    near = [11.0, 11.0, 51.0, 51.0]  # IoU 0.905 with box
    proposals = np.array([[box, near, near, box]], np.float32)
    logits = np.stack(
        [
            one_hot_logits(1, k),
            np.array([0.0, 8.0, 0.0]),  # same class, lower score, IoU 0.905: suppressed
            one_hot_logits(2, k),  # other class at the same place (IoU 0.905 with proposal 0): kept
            np.array([0.0, 5.0, 5.0]),  # p = 0.498 for classes 1 and 2: each suppressed by its own class's best
        ]
    )[None].astype(np.float32)
    deltas = np.zeros((1, 4, k, 4), np.float32)
    gen = DetectionGenerator(num_classes=k, max_detections=6)
    out = numpy_dict(gen(logits, deltas, proposals, IMAGE_100))
    n = out["num_detections"][0]
    assert n == 2
    assert sorted(out["classes"][0, :n].tolist()) == [1, 2]
    # Each kept box is the best of its class; p ~ 1 for proposal 0 (class 1) and proposal 2 (class 2).
    assert (out["scores"][0, :n] > 0.99).all()
    with_low_iou = numpy_dict(
        DetectionGenerator(num_classes=k, nms_iou_threshold=0.95, max_detections=6)(
            logits, deltas, proposals, IMAGE_100
        )
    )
    # At IoU 0.95 only proposal 3's class-1 box (an exact duplicate of proposal 0's) is suppressed: 5 - 1.
    assert with_low_iou["num_detections"][0] == 4


def test_detection_generator_matches_numpy_reference_and_num_proposals():
    rng = np.random.default_rng(0)
    b, n, k = 2, 40, 5
    centers = rng.uniform(0, 100, size=(b, n, 2))
    sizes = rng.uniform(5, 40, size=(b, n, 2))
    proposals = np.concatenate([centers - sizes / 2, centers + sizes / 2], -1).astype(np.float32)
    logits = rng.normal(scale=2.0, size=(b, n, k)).astype(np.float32)
    deltas = rng.normal(scale=1.0, size=(b, n, k, 4)).astype(np.float32)
    image_shape = np.array([[100, 90], [80, 100]], np.int32)
    # (cap, threshold, candidates entering NMS): all 160; capped at 150; at p > 0.4 at most 2 (+1) per proposal.
    for pre_nms_top_k, threshold, candidates in [(None, 0.05, 160), (150, 0.05, 150), (None, 0.4, 120)]:
        gen = DetectionGenerator(k, score_threshold=threshold, max_detections=30, pre_nms_top_k=pre_nms_top_k)
        assert gen.nms_candidates(n) == candidates
        out = numpy_dict(gen(logits, deltas, proposals, image_shape))
        for i in range(b):
            boxes, scores, labels = np_postprocess(
                logits[i], deltas[i], proposals[i], *image_shape[i], score_threshold=threshold, top=30
            )
            m = out["num_detections"][i]
            assert m == len(scores) > 0
            np.testing.assert_allclose(out["boxes"][i, :m], boxes, atol=1e-3)
            np.testing.assert_allclose(out["scores"][i, :m], scores, atol=1e-6)
            np.testing.assert_array_equal(out["classes"][i, :m], labels)
    # num_proposals: only the first 10 proposals of image 0 and 25 of image 1 count.
    out = numpy_dict(
        DetectionGenerator(num_classes=k, max_detections=30)(
            logits, deltas, proposals, image_shape, num_proposals=np.array([10, 25])
        )
    )
    for i, count in enumerate([10, 25]):
        boxes, scores, labels = np_postprocess(
            logits[i, :count], deltas[i, :count], proposals[i, :count], *image_shape[i], top=30
        )
        assert out["num_detections"][i] == len(scores)
        np.testing.assert_allclose(out["scores"][i, : len(scores)], scores, atol=1e-6)


def test_detection_generator_tf_function_config_and_functional():
    gen = DetectionGenerator(num_classes=3, max_detections=4, score_threshold=0.1, name="det")
    assert_config_round_trip(gen)
    logits = np.zeros((2, 6, 3), np.float32)
    deltas = np.zeros((2, 6, 3, 4), np.float32)
    proposals = np.tile(np.array([0, 0, 10, 10], np.float32), (2, 6, 1))

    @tf.function(jit_compile=False)
    def run(logits, deltas, proposals, image_shape):
        return gen(logits, deltas, proposals, image_shape)

    out = run(logits, deltas, proposals, tf.constant([[20, 20], [20, 20]]))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "boxes": (2, 4, 4),
        "scores": (2, 4),
        "classes": (2, 4),
        "num_detections": (2,),
    }
    assert out["num_detections"].numpy().tolist() == [2, 2]  # classes 1 and 2 at p = 1/3; duplicates suppressed
    concrete = run.get_concrete_function(logits, deltas, proposals, tf.constant([[20, 20], [20, 20]]))
    assert all(t.shape.is_fully_defined() for t in concrete.structured_outputs.values())

    inputs = [keras.Input((6, 3)), keras.Input((6, 3, 4)), keras.Input((6, 4)), keras.Input((2,), dtype="int32")]
    symbolic = gen(*inputs)
    assert tuple(symbolic["boxes"].shape) == (None, 4, 4) and symbolic["classes"].dtype == "int32"
    model = keras.Model(inputs, symbolic)
    result = model([logits, deltas, proposals, np.array([[20, 20], [20, 20]], np.int32)])
    assert result["num_detections"].numpy().tolist() == [2, 2]


# ------------------------------------------------------------------------------------------ ProposalGenerator


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
