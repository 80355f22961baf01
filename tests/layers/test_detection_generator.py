"""kzoo.layers.detection_generator: decoding, thresholds, per-class NMS against a NumPy reference."""

import keras
import numpy as np
import tensorflow as tf
from layer_references import (
    IMAGE_100,
    assert_config_round_trip,
    np_batched_nms,
    np_clip,
    np_decode,
    numpy_dict,
)

from kzoo.layers.detection_generator import DetectionGenerator

IMAGE_120_100 = np.array([[120, 100]], np.int32)


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
