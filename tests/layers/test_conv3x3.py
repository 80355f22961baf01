"""kzoo.layers.Conv2D3x3: a drop-in for keras.layers.Conv2D(filters, 3, padding="same")."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.layers import FeaturePyramidNetwork, RPNHead
from kzoo.layers.conv3x3 import Conv2D3x3
from kzoo.ops.conv import MATMUL_GRADIENT_MIN_POSITIONS

SIDE = int(np.ceil(np.sqrt(MATMUL_GRADIENT_MIN_POSITIONS)))  # large enough for the matmul kernel gradient


def _pair(activation=None, dtype=None):
    ours = Conv2D3x3(4, activation=activation, dtype=dtype, name="conv")
    stock = keras.layers.Conv2D(4, 3, padding="same", activation=activation, dtype=dtype, name="conv")
    ours.build((None, SIDE, SIDE, 3))
    stock.build((None, SIDE, SIDE, 3))
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in stock.weights]
    ours.set_weights(weights)
    stock.set_weights(weights)
    return ours, stock


def _output_and_gradients(layer, x, training=True):
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(out, tf.float32) * tf.cast(out, tf.float32))
    return out, tape.gradient(loss, [x, *layer.trainable_weights])


@pytest.mark.parametrize("activation", [None, "relu"])
def test_matches_keras_conv2d_forward_and_gradients(activation):
    ours, stock = _pair(activation)
    assert [w.path for w in ours.weights] == [w.path for w in stock.weights]
    x = tf.constant(np.random.default_rng(1).standard_normal((2, SIDE, SIDE - 3, 3)).astype(np.float32))
    out, grads = _output_and_gradients(ours, x)
    want_out, want_grads = _output_and_gradients(stock, x)
    np.testing.assert_array_equal(out.numpy(), want_out.numpy())  # the same forward kernel
    for got, want in zip(grads, want_grads, strict=True):
        scale = np.max(np.abs(want.numpy()))
        np.testing.assert_allclose(got.numpy() / scale, want.numpy() / scale, rtol=0, atol=1e-5)


def _training_graph_op_types(training) -> set[str]:
    """Op types of the gradient graph of an FPN and an RPN head, whose largest level takes the matmul path."""
    fpn, rpn = FeaturePyramidNetwork(8), RPNHead(3, 8)
    levels = [tf.TensorSpec((1, SIDE // 2**i, SIDE // 2**i, 4)) for i in range(4)]

    @tf.function(input_signature=[levels])
    def gradients(inputs):
        with tf.GradientTape() as tape:
            features = fpn(inputs, training=training)
            objectness, deltas = rpn(features, training=training)
            loss = tf.reduce_sum(objectness) + tf.reduce_sum(deltas) + tf.reduce_sum(features[0])
        return tape.gradient(loss, fpn.trainable_weights + rpn.trainable_weights)

    return {op.type for op in gradients.get_concrete_function().graph.get_operations()}


def test_fpn_and_rpn_train_with_the_matmul_gradient_and_infer_with_keras_conv2d():
    training = _training_graph_op_types(True)
    assert "IdentityN" in training and "MatMul" in training  # the custom gradient on the largest level
    for inference in (_training_graph_op_types(False), _training_graph_op_types(None)):
        assert "IdentityN" not in inference and "MatMul" not in inference


@pytest.mark.parametrize("training", [False, None])
def test_inference_calls_are_keras_conv2d(training):
    ours, stock = _pair()
    x = tf.constant(np.random.default_rng(3).standard_normal((1, SIDE, SIDE, 3)).astype(np.float32))
    out, grads = _output_and_gradients(ours, x, training)
    want_out, want_grads = _output_and_gradients(stock, x, training)
    np.testing.assert_array_equal(out.numpy(), want_out.numpy())
    for got, want in zip(grads, want_grads, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_a_frozen_layer_trains_through_keras_conv2d():
    layer = Conv2D3x3(2, trainable=False)
    inputs = tf.TensorSpec((1, SIDE, SIDE, 2))

    @tf.function(input_signature=[inputs])
    def input_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True))
        return tape.gradient(loss, x)

    assert "IdentityN" not in {op.type for op in input_gradient.get_concrete_function().graph.get_operations()}


def test_mixed_bfloat16_policy():
    ours, stock = _pair(dtype="mixed_bfloat16")
    x = tf.constant(np.random.default_rng(2).standard_normal((1, SIDE, SIDE, 3)).astype(np.float32))
    out, grads = _output_and_gradients(ours, x)
    want_out, want_grads = _output_and_gradients(stock, x)
    assert out.dtype == tf.bfloat16 and ours.kernel.dtype == "float32"
    np.testing.assert_array_equal(out.numpy(), want_out.numpy())
    kernel, want_kernel = grads[1].numpy(), want_grads[1].numpy()
    assert kernel.dtype == np.float32
    np.testing.assert_allclose(kernel / np.abs(want_kernel).max(), want_kernel / np.abs(want_kernel).max(), atol=2e-2)


def test_config_round_trip_and_serialization():
    layer = Conv2D3x3(8, activation="relu", use_bias=False, name="c")
    config = layer.get_config()
    assert config["kernel_size"] == (3, 3) and config["padding"] == "same"
    again = Conv2D3x3.from_config(config)
    assert again.filters == 8 and again.use_bias is False and again.get_config() == config
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, Conv2D3x3) and restored.get_config() == config


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kernel_size": 5}, "kernel_size"),
        ({"strides": 2}, "strides"),
        ({"padding": "valid"}, "padding"),
        ({"dilation_rate": (2, 2)}, "dilation_rate"),
        ({"groups": 2}, "groups"),
        ({"data_format": "channels_first"}, "channels_last only"),
    ],
)
def test_rejects_other_convolutions(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Conv2D3x3(4, **kwargs)


def test_accepts_its_own_fixed_values_spelled_differently():
    layer = Conv2D3x3(4, kernel_size=[3, 3], strides=1, padding="SAME", dilation_rate=1, groups=1)
    assert layer.kernel_size == (3, 3) and layer.strides == (1, 1)
