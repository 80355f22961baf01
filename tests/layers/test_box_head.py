"""kzoo.layers.box_head: shapes, weight names, config, and the NCHW flatten order of torchvision weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_references import assert_config_round_trip, randomize

from kzoo.layers.box_head import BoxHead


def test_box_head_shapes_names_config():
    head = BoxHead(num_classes=5, fc_dim=16, name="box")
    logits, deltas = head(np.zeros((2, 3, 7, 7, 4), np.float32))
    assert logits.shape == (2, 3, 5) and deltas.shape == (2, 3, 5, 4)
    assert logits.dtype == deltas.dtype == tf.float32
    assert [w.path for w in head.weights] == [
        "box/fc6/kernel",
        "box/fc6/bias",
        "box/fc7/kernel",
        "box/fc7/bias",
        "box/cls_score/kernel",
        "box/cls_score/bias",
        "box/bbox_pred/kernel",
        "box/bbox_pred/bias",
    ]
    assert tuple(head.fc6.kernel.shape) == (7 * 7 * 4, 16) and tuple(head.bbox_pred.kernel.shape) == (16, 20)
    flat_logits, flat_deltas = head(np.zeros((6, 7, 7, 4), np.float32))
    assert flat_logits.shape == (6, 5) and flat_deltas.shape == (6, 5, 4)
    assert_config_round_trip(head)
    assert_config_round_trip(BoxHead(3, fc_dim=8, flatten_order="nchw"))
    with pytest.raises(ValueError, match="flatten_order"):
        BoxHead(3, flatten_order="chw")


def test_box_head_nchw_equals_nhwc_with_permuted_fc6():
    rng = np.random.default_rng(3)
    s, c, f = 7, 3, 8
    x = rng.normal(size=(2, 4, s, s, c)).astype(np.float32)
    nchw = BoxHead(num_classes=4, fc_dim=f, flatten_order="nchw")
    nhwc = BoxHead(num_classes=4, fc_dim=f, flatten_order="nhwc")
    nchw(x)
    nhwc(x)
    randomize(nchw)
    weights = nchw.get_weights()
    # fc6 row c*S*S + h*S + w (torchvision) -> row h*S*C + w*C + c (Keras Flatten on NHWC).
    weights[0] = weights[0].reshape(c, s, s, f).transpose(1, 2, 0, 3).reshape(s * s * c, f)
    nhwc.set_weights(weights)
    for a, b in zip(nchw(x), nhwc(x)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-5)
    # And the nchw head really computes fc6 on the torch-order flattening.
    fc6 = np.maximum(x.transpose(0, 1, 4, 2, 3).reshape(2, 4, -1) @ nchw.get_weights()[0] + nchw.get_weights()[1], 0)
    fc7 = np.maximum(fc6 @ nchw.get_weights()[2] + nchw.get_weights()[3], 0)
    logits = fc7 @ nchw.get_weights()[4] + nchw.get_weights()[5]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(nchw(x)[0]), logits, atol=1e-4, rtol=1e-5)
