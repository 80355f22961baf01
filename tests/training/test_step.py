"""kzoo.training.step.make_train_step: the compiled distributed step returns the global batch's outputs in order
and trains as apply_training_step does, with and without XLA."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.training.step import make_train_step


class LinearModel(keras.Model):
    def __init__(self):
        super().__init__()
        self.w = self.add_weight(shape=(2, 1), initializer="zeros", name="w")

    def call(self, x):
        return tf.matmul(x, self.w)

    def training_losses(self, batch, seed=None, offset=0.0):
        x, y = batch
        error = self(x) - y
        return {"total": tf.reduce_mean(tf.square(error)), "bias": tf.reduce_mean(error) + offset}


@pytest.mark.parametrize("jit_compile", [False, True])
def test_returns_the_outputs_in_order_and_trains(jit_compile):
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]], np.float32)
    y = x @ np.array([[1.0], [-2.0]], np.float32)
    strategy = tf.distribute.get_strategy()
    model = LinearModel()
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    step = make_train_step(model, optimizer, strategy, ("bias", "total"), jit_compile=jit_compile, offset=10.0)
    iterator = iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors((x, y)).repeat()))
    first = step(iterator).numpy()
    assert first.dtype == np.float32 and first.shape == (2,)
    assert first[0] == pytest.approx(np.mean(-y) + 10.0) and first[1] == pytest.approx(np.mean(y**2))
    losses = [step(iterator).numpy()[1] for _ in range(30)]
    assert losses[-1] < 0.05 * first[1]
    assert int(optimizer.iterations.numpy()) == 31
