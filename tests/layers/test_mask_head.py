"""kzoo.layers.mask_head: shapes against a float64 NumPy reference; the heads together under tf.function."""

import keras
import numpy as np
import tensorflow as tf
from layer_references import LEVEL_SHAPES, assert_config_round_trip, conv_same_reference, random_features, randomize

from kzoo.layers.box_head import BoxHead
from kzoo.layers.fpn import FeaturePyramidNetwork
from kzoo.layers.mask_head import MaskHead
from kzoo.layers.rpn_head import RPNHead


def conv_transpose_2x2_reference(x, kernel, bias):
    """Stride-2 2x2 transposed conv, Keras kernel [kh, kw, out, in]: out[2y+i, 2x+j] = x[y, x] @ K[i, j].T."""
    n, h, w, _ = x.shape
    y = np.zeros((n, 2 * h, 2 * w, kernel.shape[2]))
    for i in range(2):
        for j in range(2):
            y[:, i::2, j::2] = x @ kernel[i, j].T
    return y + bias


def test_mask_head_shapes_and_numpy_reference():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 3, 14, 14, 4)).astype(np.float32)
    head = MaskHead(num_classes=5, num_convs=2, num_channels=6, name="mask")
    logits = head(x)
    assert logits.shape == (2, 3, 28, 28, 5) and logits.dtype == tf.float32
    assert [w.path for w in head.weights][::2] == [
        "mask/mask_fcn1/kernel",
        "mask/mask_fcn2/kernel",
        "mask/conv5_mask/kernel",
        "mask/mask_fcn_logits/kernel",
    ]
    assert tuple(head.conv5_mask.kernel.shape) == (2, 2, 6, 6)
    randomize(head)
    w = head.get_weights()
    f = x.reshape(6, 14, 14, 4).astype(np.float64)
    f = np.maximum(conv_same_reference(f, w[0], w[1]), 0)
    f = np.maximum(conv_same_reference(f, w[2], w[3]), 0)
    f = np.maximum(conv_transpose_2x2_reference(f, w[4], w[5]), 0)
    f = f @ w[6][0, 0] + w[7]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head(x)), f.reshape(2, 3, 28, 28, 5), atol=1e-3, rtol=1e-4)
    assert head(x[0]).shape == (3, 28, 28, 5)
    assert_config_round_trip(head)
    # One class per RoI: that class's channel of the reference, [B, N] and [R] layouts, with a gradient.
    classes = rng.integers(0, 5, size=(2, 3))
    chosen = np.take_along_axis(f.reshape(2, 3, 28, 28, 5), classes[:, :, None, None, None], axis=4)[..., 0]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head(x, classes)), chosen, atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head(x[0], classes[0])), chosen[0], atol=1e-3, rtol=1e-4)
    assert head.compute_output_shape(x.shape, classes.shape) == (2, 3, 28, 28)
    inputs = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        one = head(inputs, classes)
        every = tf.gather(head(inputs), classes, axis=4, batch_dims=2)
    for a, b in zip(
        tape.gradient(one, [inputs] + head.trainable_weights), tape.gradient(every, [inputs] + head.trainable_weights)
    ):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-4, rtol=1e-4)


def test_default_mask_head_is_four_convs_of_256():
    head = MaskHead(num_classes=3)
    assert head(np.zeros((1, 1, 14, 14, 2), np.float32)).shape == (1, 1, 28, 28, 3)
    assert [conv.name for conv in head.convs] == ["mask_fcn1", "mask_fcn2", "mask_fcn3", "mask_fcn4"]
    assert head.convs[0].filters == 256 and head.conv5_mask.filters == 256


def test_heads_under_tf_function_with_static_shapes():
    fpn = FeaturePyramidNetwork(num_channels=4)
    rpn = RPNHead(num_anchors=3, num_channels=4)
    box = BoxHead(num_classes=3, fc_dim=8)
    mask = MaskHead(num_classes=3, num_convs=1, num_channels=4)
    features = random_features(LEVEL_SHAPES, [3, 4, 5, 6], batch=2)
    rois7 = np.ones((2, 5, 7, 7, 4), np.float32)
    rois14 = np.ones((2, 5, 14, 14, 4), np.float32)

    @tf.function(jit_compile=False)
    def step(features, rois7, rois14):
        pyramid = fpn(features)
        objectness, deltas = rpn(pyramid)
        logits, box_deltas = box(rois7)
        return objectness, deltas, logits, box_deltas, mask(rois14)

    objectness, deltas, logits, box_deltas, masks = step(features, rois7, rois14)
    total = sum(h * w * 3 for h, w in LEVEL_SHAPES + [(1, 1)])
    assert objectness.shape == (2, total) and deltas.shape == (2, total, 4)
    assert logits.shape == (2, 5, 3) and box_deltas.shape == (2, 5, 3, 4) and masks.shape == (2, 5, 28, 28, 3)
    concrete = step.get_concrete_function(features, rois7, rois14)
    for out in concrete.structured_outputs:
        assert out.shape.is_fully_defined()
