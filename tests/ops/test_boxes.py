import math

import numpy as np
import pytest
import tensorflow as tf

from kzoo.ops import boxes as B


def _random_boxes(rng, shape, size=100.0):
    yx = rng.uniform(-10, size, shape + (2,))
    hw = rng.uniform(0, size / 2, shape + (2,))
    hw[..., :3, :] = 0.0  # some empty boxes
    return np.concatenate([yx, yx + hw], -1).astype(np.float32)


def _iou_loop(a, b):
    out = np.zeros((len(a), len(b)), np.float64)
    for i, p in enumerate(a.astype(np.float64)):
        for j, q in enumerate(b.astype(np.float64)):
            ih = max(min(p[2], q[2]) - max(p[0], q[0]), 0.0)
            iw = max(min(p[3], q[3]) - max(p[1], q[1]), 0.0)
            inter = ih * iw
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def test_area():
    boxes = tf.constant([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 1.0, 5.0], [5.0, 5.0, 4.0, 9.0]])
    np.testing.assert_allclose(B.area(boxes).numpy(), [6.0, 0.0, 0.0])


def test_iou_matches_float64_loop_batched_and_broadcast():
    rng = np.random.default_rng(0)
    a = _random_boxes(rng, (2, 17))
    b = _random_boxes(rng, (2, 11))
    b[0, 5] = a[0, 7]  # an identical pair
    got = B.iou_matrix(a, b).numpy()
    assert got.shape == (2, 17, 11) and got.dtype == np.float32
    for k in range(2):
        np.testing.assert_allclose(got[k], _iou_loop(a[k], b[k]), atol=1e-6)
    assert got[0, 7, 5] == pytest.approx(1.0)
    np.testing.assert_allclose(B.iou_matrix(a[0], b[1]).numpy(), _iou_loop(a[0], b[1]), atol=1e-6)
    np.testing.assert_allclose(B.iou_matrix(a, b[1]).numpy()[1], _iou_loop(a[1], b[1]), atol=1e-6)


def test_iou_empty_boxes_zero_and_finite_gradient():
    a = tf.constant([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 4.0, 4.0]])
    with tf.GradientTape() as tape:
        tape.watch(a)
        iou = B.iou_matrix(a, a)
    np.testing.assert_array_equal(iou.numpy(), np.diag([0.0, 0.0, 1.0]))
    assert np.all(np.isfinite(tape.gradient(iou, a).numpy()))


def test_clip_boxes_pair_and_per_image():
    boxes = tf.constant([[[-5.0, -1.0, 50.0, 70.0]], [[3.0, 4.0, 5.0, 6.0]]])
    np.testing.assert_allclose(B.clip_boxes(boxes, (40, 60)).numpy(), [[[0, 0, 40, 60]], [[3, 4, 5, 6]]])
    per_image = tf.constant([[40, 60], [4, 5]])
    np.testing.assert_allclose(B.clip_boxes(boxes, per_image).numpy(), [[[0, 0, 40, 60]], [[3, 4, 4, 5]]])
    class_boxes = tf.tile(boxes[:, :, None, :], [1, 1, 3, 1])  # [B, N, C, 4]
    np.testing.assert_allclose(B.clip_boxes(class_boxes, per_image).numpy()[1, 0, 2], [3, 4, 4, 5])


def test_encode_hand_computed():
    anchor = tf.constant([0.0, 0.0, 10.0, 20.0])  # center (5, 10), h 10, w 20
    shifted = tf.constant([2.0, 4.0, 12.0, 24.0])  # center (7, 14), same size
    np.testing.assert_allclose(B.encode_boxes(shifted, anchor).numpy(), [0.2, 0.2, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(B.encode_boxes(shifted, anchor, (10, 10, 5, 5)).numpy(), [2.0, 2.0, 0.0, 0.0], atol=1e-6)
    tall = tf.constant([0.0, 0.0, 20.0, 10.0])  # center (10, 5), h 20, w 10
    np.testing.assert_allclose(
        B.encode_boxes(tall, anchor).numpy(), [0.5, -0.25, math.log(2.0), math.log(0.5)], atol=1e-6
    )
    np.testing.assert_allclose(B.decode_boxes(B.encode_boxes(tall, anchor), anchor).numpy(), tall.numpy(), atol=1e-5)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_decode_round_trip(weights):
    # sizes within a factor 62.5 (the clamp) of each other, coordinates up to ~400 px
    rng = np.random.default_rng(1)

    def boxes(shape):
        yx = rng.uniform(-20, 300, shape + (2,))
        return np.concatenate([yx, yx + rng.uniform(4, 120, shape + (2,))], -1).astype(np.float32)

    anchors, targets = boxes((2, 64)), boxes((2, 64))
    deltas = B.encode_boxes(targets, anchors, weights)
    assert deltas.shape == (2, 64, 4) and deltas.dtype == tf.float32
    np.testing.assert_allclose(B.decode_boxes(deltas, anchors, weights).numpy(), targets, atol=1e-4, rtol=0)


def test_encode_empty_boxes_is_finite():
    deltas = B.encode_boxes(tf.zeros([3, 4]), tf.zeros([3, 4]))
    assert np.all(np.isfinite(deltas.numpy()))


def test_decode_matches_torchvision_formula_with_permuted_deltas():
    rng = np.random.default_rng(2)
    anchors = _random_boxes(rng, (50,), size=500.0)
    anchors[:, 2:] += 1.0
    tv_deltas = rng.normal(0, 2, (50, 4)).astype(np.float32)  # (dx, dy, dw, dh), large enough to clamp
    wx, wy, ww, wh = 10.0, 10.0, 5.0, 5.0
    # torchvision BoxCoder.decode_single on xyxy boxes
    x1, y1, x2, y2 = anchors[:, 1], anchors[:, 0], anchors[:, 3], anchors[:, 2]
    widths, heights = x2 - x1, y2 - y1
    ctr_x, ctr_y = x1 + 0.5 * widths, y1 + 0.5 * heights
    dx, dy = tv_deltas[:, 0] / wx, tv_deltas[:, 1] / wy
    dw = np.minimum(tv_deltas[:, 2] / ww, math.log(1000.0 / 16))
    dh = np.minimum(tv_deltas[:, 3] / wh, math.log(1000.0 / 16))
    px, py = dx * widths + ctr_x, dy * heights + ctr_y
    pw, ph = np.exp(dw) * widths, np.exp(dh) * heights
    expected = np.stack([py - 0.5 * ph, px - 0.5 * pw, py + 0.5 * ph, px + 0.5 * pw], 1)
    ours = tv_deltas[:, [1, 0, 3, 2]]  # (dx, dy, dw, dh) -> (ty, tx, th, tw)
    got = B.decode_boxes(ours, anchors, (wy, wx, wh, ww)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_decode_clamp():
    anchor = tf.constant([[0.0, 0.0, 16.0, 16.0]])
    deltas = tf.constant([[0.0, 0.0, 10.0, 20.0]])
    out = B.decode_boxes(deltas, anchor).numpy()[0]
    np.testing.assert_allclose([out[2] - out[0], out[3] - out[1]], [1000.0, 1000.0], rtol=1e-5)
    np.testing.assert_allclose((out[0] + out[2]) / 2, 8.0, atol=1e-3)
    out = B.decode_boxes(deltas, anchor, clamp=None).numpy()[0]
    np.testing.assert_allclose(out[2] - out[0], 16 * math.exp(10.0), rtol=1e-5)
    # broadcast: [N, 1, 4] anchors against class-specific [N, C, 4] deltas
    per_class = B.decode_boxes(tf.zeros([1, 3, 4]), anchor[:, None, :], (10, 10, 5, 5))
    np.testing.assert_allclose(per_class.numpy(), np.tile(anchor.numpy()[:, None], [1, 3, 1]))


def test_boxes_larger_than_is_inclusive():
    boxes = tf.constant([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 5.0], [0.0, 0.0, 5.0, 0.999], [2.0, 2.0, 9.0, 9.0]])
    np.testing.assert_array_equal(B.boxes_larger_than(boxes, 1.0).numpy(), [True, False, False, True])


def test_xywh_converters():
    yxyx = np.array([[10.0, 20.0, 40.0, 25.0]], np.float32)
    xywh = B.yxyx_to_xywh(yxyx)
    assert isinstance(xywh, np.ndarray)
    np.testing.assert_array_equal(xywh, [[20.0, 10.0, 5.0, 30.0]])
    np.testing.assert_array_equal(B.xywh_to_yxyx(xywh), yxyx)
    back = B.xywh_to_yxyx(tf.constant(xywh))
    assert isinstance(back, tf.Tensor)
    np.testing.assert_array_equal(back.numpy(), yxyx)
