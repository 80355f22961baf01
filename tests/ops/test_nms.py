"""kzoo.ops.nms: both kernels (padded, per image) against tf.image.non_max_suppression, each other and LiteRT."""

import numpy as np
import pytest
import tensorflow as tf

from kzoo.ops import nms as N


def _random_scene(seed, batch=3, num=200, size=200.0):
    rng = np.random.default_rng(seed)
    yx = rng.uniform(0, size, (batch, num, 2))
    hw = rng.uniform(5, size / 3, (batch, num, 2))
    boxes = np.concatenate([yx, yx + hw], -1).astype(np.float32)
    scores = rng.uniform(0, 1, (batch, num)).astype(np.float32)
    return boxes, scores


def _reference(boxes, scores, max_output_size, iou_threshold, score_threshold):
    return tf.image.non_max_suppression(
        boxes, scores, max_output_size, iou_threshold=iou_threshold, score_threshold=score_threshold
    ).numpy()


@pytest.mark.parametrize(
    ("iou_threshold", "score_threshold", "max_output_size"),
    [(0.5, float("-inf"), 300), (0.3, 0.2, 50), (0.7, 0.5, 20)],
)
@pytest.mark.parametrize("method", N.NMS_METHODS)
def test_matches_tf_image_non_max_suppression(iou_threshold, score_threshold, max_output_size, method):
    boxes, scores = _random_scene(0)
    indices, num_valid = N.non_max_suppression_padded(
        boxes, scores, max_output_size, iou_threshold, score_threshold, method
    )
    assert indices.shape == (3, max_output_size) and indices.dtype == tf.int32
    assert num_valid.shape == (3,) and num_valid.dtype == tf.int32
    for b in range(3):
        expected = _reference(boxes[b], scores[b], max_output_size, iou_threshold, score_threshold)
        n = int(num_valid[b])
        np.testing.assert_array_equal(indices[b, :n].numpy(), expected)  # same set, same (score) order
        assert np.all(indices[b, n:].numpy() == 0)


@pytest.mark.parametrize("method", N.NMS_METHODS)
def test_strict_iou_threshold_and_boxes_at_negative_coordinates(method):
    # IoU(box 0, box 1) is exactly 0.5: kept, as by tf.image.non_max_suppression and torchvision (IoU > t).
    # Boxes 2 and 3 lie at negative coordinates, which the raw padded op would drop.
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 5], [-20, -20, -10, -10], [-20, -20, -11, -10]]], np.float32)
    scores = np.array([[0.9, 0.8, 0.7, 0.6]], np.float32)
    indices, num_valid = N.non_max_suppression_padded(boxes, scores, 4, 0.5, method=method)
    expected = _reference(boxes[0], scores[0], 4, 0.5, float("-inf"))
    np.testing.assert_array_equal(expected, [0, 1, 2])
    assert int(num_valid[0]) == 3
    np.testing.assert_array_equal(indices[0, :3].numpy(), expected)


@pytest.mark.parametrize("method", N.NMS_METHODS)
def test_padded_inputs_are_never_selected(method):
    boxes, scores = _random_scene(1, batch=2, num=20)
    scores[:, 12:] = -np.inf
    boxes[:, 12:] = 0.0
    scores[1] = -np.inf  # an image with nothing
    indices, num_valid = N.non_max_suppression_padded(boxes, scores, 20, 0.5, method=method)
    n0 = int(num_valid[0])
    np.testing.assert_array_equal(indices[0, :n0].numpy(), _reference(boxes[0, :12], scores[0, :12], 20, 0.5, -1.0))
    assert int(num_valid[1]) == 0


def _per_class_reference(boxes, scores, classes, max_output_size, iou_threshold, score_threshold):
    kept = []
    for c in np.unique(classes):
        (members,) = np.nonzero(classes == c)
        sel = _reference(boxes[members], scores[members], len(members), iou_threshold, score_threshold)
        kept.extend(members[sel].tolist())
    kept = np.array(kept, np.int64)
    return kept[np.argsort(-scores[kept], kind="stable")][:max_output_size]


@pytest.mark.parametrize("max_output_size", [400, 30])
@pytest.mark.parametrize("method", N.NMS_METHODS)
def test_multiclass_equals_nms_per_class(max_output_size, method):
    boxes, scores = _random_scene(2, num=300)
    boxes[0] -= 50.0  # negative coordinates in one image
    classes = np.random.default_rng(3).integers(0, 5, scores.shape).astype(np.int32)
    indices, num_valid = N.batched_multiclass_nms(boxes, scores, classes, max_output_size, 0.5, 0.1, method)
    for b in range(3):
        expected = _per_class_reference(boxes[b], scores[b], classes[b], max_output_size, 0.5, 0.1)
        n = int(num_valid[b])
        np.testing.assert_array_equal(indices[b, :n].numpy(), expected)
    # the offset makes a difference: plain NMS keeps fewer
    plain = N.non_max_suppression_padded(boxes, scores, 400, 0.5, 0.1, method)[1].numpy()
    if max_output_size == 400:
        assert np.all(plain < num_valid.numpy())


def test_top_k_per_level():
    rng = np.random.default_rng(4)
    sizes = [10, 3, 7]
    scores = rng.uniform(size=(2, sum(sizes))).astype(np.float32)
    got = N.top_k_per_level(scores, sizes, 4).numpy()
    assert got.shape == (2, 4 + 3 + 4)
    starts = np.cumsum([0] + sizes)
    for b in range(2):
        expected = []
        for level, k in enumerate([4, 3, 4]):
            seg = scores[b, starts[level] : starts[level + 1]]
            expected.extend((np.argsort(-seg)[:k] + starts[level]).tolist())
        np.testing.assert_array_equal(got[b], expected)
    assert N.top_k_per_level(scores, sizes, [1, 5, 2]).shape == (2, 1 + 3 + 2)
    with pytest.raises(ValueError, match="sum"):
        N.top_k_per_level(scores, [10, 3], 2)


@pytest.mark.parametrize("method", N.NMS_METHODS)
@pytest.mark.parametrize("max_output_size", [16, 100])  # also more than the 64 boxes
def test_runs_under_jit_compile(method, max_output_size):
    boxes, scores = _random_scene(5, batch=2, num=64)
    fn = tf.function(
        lambda b, s: N.batched_multiclass_nms(b, s, tf.zeros_like(s, tf.int32), max_output_size, 0.5, 0.2, method),
        jit_compile=True,
    )
    indices, num_valid = fn(boxes, scores)
    ref_indices, ref_valid = N.non_max_suppression_padded(boxes, scores, max_output_size, 0.5, 0.2, "padded")
    np.testing.assert_array_equal(num_valid.numpy(), ref_valid.numpy())
    np.testing.assert_array_equal(indices.numpy(), ref_indices.numpy())


def test_padded_kernel_converts_to_tflite_builtins_and_runs_in_litert(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    boxes, scores = _random_scene(6, batch=2, num=100)
    boxes[1, 0] = [-50.0, -50.0, -10.0, -10.0]  # a box the raw padded op would drop: the shift runs
    fn = tf.function(lambda b, s: N.non_max_suppression_padded(b, s, 25, 0.5, 0.05, method="padded"))
    concrete = fn.get_concrete_function(tf.TensorSpec([2, 100, 4], tf.float32), tf.TensorSpec([2, 100], tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], fn)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    path = tmp_path / "nms.tflite"
    path.write_bytes(converter.convert())

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inputs = sorted(interpreter.get_input_details(), key=lambda d: len(d["shape"]), reverse=True)
    interpreter.set_tensor(inputs[0]["index"], boxes)
    interpreter.set_tensor(inputs[1]["index"], scores)
    interpreter.invoke()
    outputs = {len(d["shape"]): interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    expected_indices, expected_valid = fn(boxes, scores)
    np.testing.assert_array_equal(outputs[1], expected_valid.numpy())
    np.testing.assert_array_equal(outputs[2], expected_indices.numpy())


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
