"""kzoo.models.training_step.apply_training_step: the one replica step, against float64 NumPy references on a
linear model whose gradient is known in closed form."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.models.training_step import apply_training_step


class LinearModel(keras.Model):
    """y = x w; ``training_losses`` is the mean squared error, and it records the seed it was given."""

    def __init__(self, weights, regularization: float = 0.0):
        super().__init__()
        self.w = self.add_weight(shape=weights.shape, initializer=keras.initializers.Constant(weights), name="w")
        self.regularization = regularization
        self.seeds = []

    def call(self, x):
        if self.regularization:  # a loss Keras collects in model.losses
            self.add_loss(self.regularization * tf.reduce_sum(tf.square(self.w)))
        return tf.matmul(x, self.w)

    def training_losses(self, batch, seed=None, scale=1.0):
        x, y = batch
        self.seeds.append(seed)
        error = self(x) - y
        return {"total": scale * tf.reduce_mean(tf.square(error)), "error": tf.reduce_mean(error)}


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8, 3))
    w_true = rng.normal(size=(3, 1))
    return x, x @ w_true + 0.1 * rng.normal(size=(8, 1))


def _gradient(x, y, w, scale=1.0):
    """d/dw of scale * mean((x w - y)^2), float64."""
    return scale * 2.0 * x.T @ (x @ w - y) / len(x)


W0 = np.array([[0.5], [-1.0], [2.0]])


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_applies_the_gradient_of_the_total_loss(scale):
    x, y = _batch()
    model = LinearModel(W0.astype(np.float32))
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    losses = apply_training_step(model, (x.astype(np.float32), y.astype(np.float32)), optimizer, scale=scale)
    expected = W0 - 0.1 * _gradient(x, y, W0, scale)
    np.testing.assert_allclose(model.w.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert float(losses["total"]) == pytest.approx(scale * np.mean((x @ W0 - y) ** 2), rel=1e-5)
    assert float(losses["error"]) == pytest.approx(np.mean(x @ W0 - y), rel=1e-4, abs=1e-6)


def test_clips_the_global_norm():
    x, y = _batch(1)
    model = LinearModel(W0.astype(np.float32))
    optimizer = keras.optimizers.SGD(1.0)
    optimizer.build(model.trainable_variables)
    gradient = _gradient(x, y, W0)
    clip = 0.25 * np.linalg.norm(gradient)
    apply_training_step(model, (x.astype(np.float32), y.astype(np.float32)), optimizer, gradient_clip_norm=clip)
    np.testing.assert_allclose(model.w.numpy(), W0 - gradient * clip / np.linalg.norm(gradient), rtol=1e-5, atol=1e-6)


def test_a_loss_scale_optimizer_takes_the_same_step_clipped_or_not():
    x, y = _batch(2)
    gradient = _gradient(x, y, W0)
    for clip in (None, 0.5 * np.linalg.norm(gradient)):
        model = LinearModel(W0.astype(np.float32))
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(1.0), initial_scale=1024.0)
        optimizer.build(model.trainable_variables)
        apply_training_step(model, (x.astype(np.float32), y.astype(np.float32)), optimizer, gradient_clip_norm=clip)
        step = gradient if clip is None else gradient * clip / np.linalg.norm(gradient)
        np.testing.assert_allclose(model.w.numpy(), W0 - step, rtol=1e-4, atol=1e-5)


def test_adds_the_model_losses_and_seeds_with_the_iteration():
    x, y = _batch(3)
    model = LinearModel(W0.astype(np.float32), regularization=0.5)
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    for _ in range(2):
        apply_training_step(model, (x.astype(np.float32), y.astype(np.float32)), optimizer, seed=7)
    expected = W0 - 0.1 * (_gradient(x, y, W0) + 0.5 * 2.0 * W0)
    expected = expected - 0.1 * (_gradient(x, y, expected) + 0.5 * 2.0 * expected)
    np.testing.assert_allclose(model.w.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert [s.numpy().tolist() for s in model.seeds] == [[7, 0], [7, 1]]
