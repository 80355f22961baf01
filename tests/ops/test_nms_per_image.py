"""The ``per_image`` NMS kernel (the default; TFLite's builtin NMS op) gives the ``padded`` kernel's indices, in TF and
in LiteRT."""

import numpy as np
import pytest
import tensorflow as tf

from kzoo.ops import nms as N


def _scene(seed, batch=2, num=200, size=200.0, ties=False):
    rng = np.random.default_rng(seed)
    yx = rng.uniform(-20, size, (batch, num, 2))
    hw = rng.uniform(2, size / 3, (batch, num, 2))
    boxes = np.concatenate([yx, yx + hw], -1).astype(np.float32)
    scores = rng.uniform(0, 1, (batch, num)).astype(np.float32)
    if ties:  # many equal scores and duplicate boxes: the order of ties must agree too
        scores = np.round(scores * 8) / 8
        boxes[:, 1::7] = boxes[:, ::7][:, : boxes[:, 1::7].shape[1]]
    return boxes, scores


def _zero_area(boxes, scores):
    boxes = boxes.copy()
    boxes[0, 3] = [5, 5, 5, 9]  # zero height
    boxes[0, 10] = [7, 7, 30, 7]  # zero width
    boxes[1, 0] = [1, 1, 1, 1]  # a point
    scores = scores.copy()
    scores[0, 3], scores[0, 10], scores[1, 0] = 0.99, 0.5, 0.97
    return boxes, scores


CASES = [(0.5, float("-inf"), 300), (0.3, 0.2, 50), (0.7, 0.5, 20), (0.5, 0.0, 7)]


@pytest.mark.parametrize(("iou_threshold", "score_threshold", "max_output_size"), CASES)
@pytest.mark.parametrize("scene", ["random", "ties", "zero_area"])
def test_per_image_equals_padded(iou_threshold, score_threshold, max_output_size, scene):
    boxes, scores = _scene(7, ties=scene == "ties")
    if scene == "zero_area":
        boxes, scores = _zero_area(boxes, scores)
    args = (boxes, scores, max_output_size, iou_threshold, score_threshold)
    indices, count = N.non_max_suppression_padded(*args, method="per_image")
    expected_indices, expected_count = N.non_max_suppression_padded(*args, method="padded")
    np.testing.assert_array_equal(count.numpy(), expected_count.numpy())
    np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy())


def test_multiclass_and_unknown_batch():
    boxes, scores = _scene(8, batch=3, num=150)
    classes = np.random.default_rng(9).integers(0, 5, scores.shape).astype(np.int32)
    expected = N.batched_multiclass_nms(boxes, scores, classes, 40, 0.5, 0.1, method="padded")
    dynamic = tf.function(
        lambda b, s, c: N.batched_multiclass_nms(b, s, c, 40, 0.5, 0.1, method="per_image"),
        input_signature=[
            tf.TensorSpec([None, 150, 4]),
            tf.TensorSpec([None, 150]),
            tf.TensorSpec([None, 150], tf.int32),
        ],
    )
    for got in (
        N.batched_multiclass_nms(boxes, scores, classes, 40, 0.5, 0.1, method="per_image"),
        dynamic(boxes, scores, classes),
    ):
        np.testing.assert_array_equal(got[0].numpy(), expected[0].numpy())
        np.testing.assert_array_equal(got[1].numpy(), expected[1].numpy())


def test_bad_method_and_threshold():
    boxes, scores = np.zeros((1, 2, 4), np.float32), np.zeros((1, 2), np.float32)
    with pytest.raises(ValueError, match="NMS method must be one of"):
        N.non_max_suppression_padded(boxes, scores, 2, method="x")
    with pytest.raises(ValueError, match=r"NMS iou_threshold must be in \[0, 1\]"):
        N.non_max_suppression_padded(boxes, scores, 2, iou_threshold=1.2)


@pytest.mark.parametrize("method", N.NMS_METHODS)
def test_threshold_one_suppresses_nothing(method):
    boxes, scores = _scene(3, batch=1, num=40, ties=True)  # duplicates included: IoU exactly 1
    indices, count = N.non_max_suppression_padded(boxes, scores, 40, 1.0, method=method)
    assert int(count[0]) == 40
    np.testing.assert_array_equal(indices[0].numpy(), np.argsort(-scores[0], kind="stable"))


@pytest.mark.parametrize("scene", ["random", "ties", "zero_area"])
def test_litert_builtin_nms_equals_padded(scene, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    boxes, scores = _scene(10, batch=1, num=300, ties=scene == "ties")
    if scene == "zero_area":
        boxes, scores = _zero_area(np.concatenate([boxes, boxes]), np.concatenate([scores, scores]))
        boxes, scores = boxes[:1], scores[:1]
    classes = np.random.default_rng(11).integers(0, 3, scores.shape).astype(np.int32)

    signature = [tf.TensorSpec(boxes.shape), tf.TensorSpec(scores.shape), tf.TensorSpec(scores.shape, tf.int32)]

    @tf.function(input_signature=signature)
    def nms(b, s, c):
        indices, count = N.batched_multiclass_nms(b, s, c, 60, 0.5, 0.05, method="per_image")
        return {"indices": indices, "count": count}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([nms.get_concrete_function()], tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    path = tmp_path / "nms.tflite"
    path.write_bytes(converter.convert())
    interpreter = Interpreter(model_path=str(path))
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "NON_MAX_SUPPRESSION_V4" in ops and "WHILE" not in ops, ops
    out = interpreter.get_signature_runner()(b=boxes, s=scores, c=classes)
    expected_indices, expected_count = N.batched_multiclass_nms(boxes, scores, classes, 60, 0.5, 0.05, method="padded")
    np.testing.assert_array_equal(out["count"], expected_count.numpy())
    np.testing.assert_array_equal(out["indices"], expected_indices.numpy())
