"""kzoo.layers.frozen_batch_norm: a float64 NumPy reference, gradients, the one-to-one map to Keras'
BatchNormalization."""

import keras
import numpy as np
import pytest

from kzoo.layers.frozen_batch_norm import FrozenBatchNormalization


def _random_bn_weights(rng, channels):
    return [
        rng.uniform(0.5, 1.5, channels),  # gamma
        rng.uniform(-0.5, 0.5, channels),  # beta
        rng.uniform(-1.0, 1.0, channels),  # moving_mean
        rng.uniform(0.1, 2.0, channels),  # moving_variance
    ]


@pytest.mark.parametrize("epsilon", [1e-5, 0.0])
def test_frozen_batch_norm_matches_numpy_and_ignores_training(epsilon):
    rng = np.random.default_rng(0)
    gamma, beta, mean, var = weights = _random_bn_weights(rng, 6)
    x = rng.normal(size=(2, 3, 5, 6)).astype(np.float32)
    layer = FrozenBatchNormalization(epsilon=epsilon)
    layer.build(x.shape)
    layer.set_weights([w.astype(np.float32) for w in weights])
    expected = (x.astype(np.float64) - mean) / np.sqrt(var + epsilon) * gamma + beta
    for training in (None, False, True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, training=training)), expected, atol=1e-5)
    # nothing trainable, nothing updated by a training call
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 4
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.moving_mean), mean.astype(np.float32))


@pytest.mark.parametrize("epsilon", [1e-5, 0.0])
def test_frozen_batch_norm_image_path_gradient_and_tiny_variance(epsilon):
    """The 4-D path (one fused op, gradient dy * scale) against float64 NumPy, with variances far below the
    fused op's own epsilon floor, in float32 and bfloat16."""
    import tensorflow as tf

    rng = np.random.default_rng(2)
    channels = 5
    gamma, beta, mean, _ = _random_bn_weights(rng, channels)
    var = rng.uniform(1e-9, 1e-6, channels)  # far below 1e-5: the divisor must be sqrt(var + epsilon) exactly
    x = rng.normal(size=(2, 4, 3, channels)).astype(np.float32)
    upstream = rng.normal(size=x.shape).astype(np.float32)
    scale = gamma / np.sqrt(var + epsilon)
    expected = (x.astype(np.float64) - mean) * scale + beta
    # bfloat16: the upstream gradient, the scale and their product are each rounded to 8 significant bits
    for dtype, rtol in (("float32", 1e-5), ("bfloat16", 3e-2)):
        layer = FrozenBatchNormalization(epsilon=epsilon, dtype=dtype)
        layer.build(x.shape)
        layer.set_weights([w.astype(np.float32) for w in (gamma, beta, mean, var)])
        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs)
            loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * upstream)
        assert outputs.dtype == dtype
        scale_error = np.abs(tf.cast(outputs, tf.float64).numpy() - expected).max() / np.abs(expected).max()
        assert scale_error < rtol
        np.testing.assert_allclose(tape.gradient(loss, inputs).numpy(), upstream * scale, rtol=rtol, atol=0)


def test_frozen_batch_norm_maps_one_to_one_to_keras_batch_norm():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 7)).astype(np.float32)
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    bn.build(x.shape)
    bn.set_weights([w.astype(np.float32) for w in _random_bn_weights(rng, 7)])
    frozen = FrozenBatchNormalization(epsilon=1e-3)
    frozen.build(x.shape)
    frozen.set_weights(bn.get_weights())
    assert [v.name for v in frozen.weights] == [v.name for v in bn.weights]
    assert [v.name for v in frozen.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(frozen(x)), keras.ops.convert_to_numpy(bn(x, training=False)), atol=1e-5
    )


def test_frozen_batch_norm_serializes():
    layer = FrozenBatchNormalization(epsilon=0.0, name="bn")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, FrozenBatchNormalization) and clone.epsilon == 0.0 and clone.name == "bn"
    with pytest.raises(ValueError, match="epsilon"):
        FrozenBatchNormalization(epsilon=-1.0)
