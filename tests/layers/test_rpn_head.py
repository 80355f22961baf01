"""kzoo.layers.rpn_head: shapes, dtypes, weight names, the anchor order and torchvision's delta order."""

import keras
import numpy as np
import tensorflow as tf
from layer_references import LEVEL_SHAPES, assert_config_round_trip

from kzoo.layers.rpn_head import TORCH_DELTA_ORDER, RPNHead
from kzoo.ops.anchors import generate_anchors


def test_rpn_head_shapes_dtypes_names():
    levels = [np.zeros((2, h, w, 4), np.float32) for h, w in LEVEL_SHAPES + [(1, 1)]]
    head = RPNHead(num_anchors=3, num_channels=4, name="rpn")
    objectness, deltas = head(levels)
    total = sum(h * w * 3 for h, w in LEVEL_SHAPES + [(1, 1)])
    assert objectness.shape == (2, total) and deltas.shape == (2, total, 4)
    assert objectness.dtype == deltas.dtype == tf.float32
    assert [w.path for w in head.weights] == [
        "rpn/conv/kernel",
        "rpn/conv/bias",
        "rpn/cls_logits/kernel",
        "rpn/cls_logits/bias",
        "rpn/bbox_pred/kernel",
        "rpn/bbox_pred/bias",
    ]
    assert tuple(head.bbox_pred.kernel.shape) == (1, 1, 4, 12)
    single_o, single_d = head(levels[0])
    assert single_o.shape == (2, 13 * 13 * 3) and single_d.shape == (2, 13 * 13 * 3, 4)
    assert_config_round_trip(head)
    assert head.compute_output_shape([(2, 3, 4, 4), (2, 2, 2, 4)]) == ((2, 48), (2, 48, 4))


def test_rpn_output_order_matches_generate_anchors():
    """Encode (level, i, j, a, k) into the head's outputs and read it back at each anchor's row."""
    shapes = [(5, 7), (3, 4), (2, 2)]
    strides = [8, 16, 32]
    sizes = [32, 64, 128]
    ratios = (0.5, 1.0, 2.0)
    num_anchors = 3
    # Input channels (level, i, j, 1) at every position.
    levels = []
    for level, (h, w) in enumerate(shapes):
        i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        levels.append(np.stack([np.full((h, w), level), i, j, np.ones((h, w))], -1)[None].astype(np.float32))
    head = RPNHead(num_anchors=num_anchors, num_channels=4)
    head(levels)
    conv = np.zeros((3, 3, 4, 4), np.float32)
    conv[1, 1] = np.eye(4)
    cls = np.zeros((1, 1, 4, num_anchors), np.float32)
    box = np.zeros((1, 1, 4, 4 * num_anchors), np.float32)
    for a in range(num_anchors):
        cls[0, 0, :, a] = [100.0, 10.0, 1.0, 0.1 * a]
        for k in range(4):
            box[0, 0, :, 4 * a + k] = [0.0, 10.0, 1.0, 0.1 * a + 0.01 * k]
    zeros = np.zeros
    head.set_weights([conv, zeros(4), cls, zeros(num_anchors), box, zeros(4 * num_anchors)])
    objectness, deltas = (keras.ops.convert_to_numpy(t)[0] for t in head(levels))

    anchors = generate_anchors(shapes, strides, sizes, ratios)
    assert anchors.shape[0] == objectness.shape[0] == deltas.shape[0]
    height = anchors[:, 2] - anchors[:, 0]
    width = anchors[:, 3] - anchors[:, 1]
    level = np.rint(np.log2(np.sqrt(height * width) / sizes[0])).astype(int)
    stride = np.asarray(strides)[level]
    i = np.rint((anchors[:, 0] + anchors[:, 2]) / 2 / stride)
    j = np.rint((anchors[:, 1] + anchors[:, 3]) / 2 / stride)
    a = np.argmin(np.abs(np.log(height / width)[:, None] - np.log(ratios)[None, :]), axis=1)
    np.testing.assert_allclose(objectness, 100.0 * level + 10.0 * i + j + 0.1 * a, atol=1e-3)
    for k in range(4):
        np.testing.assert_allclose(deltas[:, k], 10.0 * i + j + 0.1 * a + 0.01 * k, atol=1e-3)


def test_rpn_torch_delta_permutation():
    """Keras channel 4a+k = torchvision channel 4a+perm[k]: (ty, tx, th, tw) from (dx, dy, dw, dh)."""
    torch_rows = ["dx", "dy", "dw", "dh"]
    assert [torch_rows[p] for p in TORCH_DELTA_ORDER] == ["dy", "dx", "dh", "dw"]
