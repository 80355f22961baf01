"""kzoo's SGD: the in-place fused momentum step against a float64 NumPy SGD and against Keras's own SGD."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.config import TrainConfig
from kzoo.training.loop import build_optimizer
from kzoo.training.optimizers import SGD

RTOL = 1e-5  # float32 updates against the float64 reference over a few steps
ATOL = 1e-6


def _numpy_sgd(weights, gradients, lr, momentum, nesterov, weight_decay):
    """Keras's SGD from its definition, float64: decoupled decay ``w -= lr * wd * w``, then
    ``m = momentum * m - lr * g``; ``w += m`` (``w += momentum * m - lr * g`` with Nesterov)."""
    w = weights.astype(np.float64)
    m = np.zeros_like(w)
    for g in gradients:
        g = g.astype(np.float64)
        w = w - lr * weight_decay * w
        m = momentum * m - lr * g
        w = w + (momentum * m - lr * g if nesterov else m)
    return w, m


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("weight_decay", [None, 0.01])
def test_sgd_matches_numpy_reference_and_keras(nesterov, weight_decay):
    rng = np.random.default_rng(0)
    initial = rng.normal(size=(6, 4)).astype(np.float32)
    gradients = [rng.normal(size=(6, 4)).astype(np.float32) for _ in range(5)]
    ours, theirs = keras.Variable(initial), keras.Variable(initial)
    fused = SGD(0.1, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay)
    stock = keras.optimizers.SGD(0.1, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay)
    fused.build([ours])
    stock.build([theirs])

    @tf.function
    def step(gradient):
        fused.apply([gradient], [ours])
        stock.apply([gradient], [theirs])

    for gradient in gradients:
        step(tf.constant(gradient))
    expected_w, expected_m = _numpy_sgd(initial, gradients, 0.1, 0.9, nesterov, weight_decay or 0.0)
    np.testing.assert_allclose(ours.numpy(), expected_w, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(fused.momentums[0].numpy(), expected_m, rtol=RTOL, atol=ATOL)
    # the same float32 arithmetic as Keras's step
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    np.testing.assert_array_equal(fused.momentums[0].numpy(), stock.momentums[0].numpy())


def test_sgd_updates_in_place_and_casts_a_bfloat16_gradient():
    """The step rewrites the variable's and the momentum's buffers (no new buffers per step); a bfloat16 gradient
    (mixed precision) is cast to the float32 variable's dtype."""
    variable = keras.Variable(np.ones((3, 2), np.float32))
    optimizer = SGD(0.5, momentum=0.9)
    optimizer.build([variable])
    optimizer.apply([tf.cast(tf.fill((3, 2), 2.0), tf.bfloat16)], [variable])
    np.testing.assert_array_equal(optimizer.momentums[0].numpy(), np.full((3, 2), -1.0, np.float32))
    np.testing.assert_array_equal(variable.numpy(), np.zeros((3, 2), np.float32))
    assert variable.dtype == "float32"


def test_sgd_without_momentum_and_with_sparse_gradients_takes_keras_step():
    table, reference = keras.Variable(np.ones((4, 2), np.float32)), keras.Variable(np.ones((4, 2), np.float32))
    ours, stock = SGD(0.5, momentum=0.9), keras.optimizers.SGD(0.5, momentum=0.9)
    ours.build([table])
    stock.build([reference])
    sparse = tf.IndexedSlices(tf.constant([[1.0, 2.0]]), tf.constant([2]), tf.constant([4, 2]))
    ours.apply([sparse], [table])
    stock.apply([sparse], [reference])
    np.testing.assert_array_equal(table.numpy(), reference.numpy())
    assert not np.array_equal(table.numpy(), np.ones((4, 2)))

    plain = keras.Variable(np.ones((2,), np.float32))
    optimizer = SGD(0.5)
    optimizer.build([plain])
    optimizer.apply([tf.constant([1.0, -1.0])], [plain])
    np.testing.assert_array_equal(plain.numpy(), [0.5, 1.5])


def test_sgd_serializes_and_is_the_training_loops_sgd():
    optimizer = SGD(0.2, momentum=0.8, nesterov=True, weight_decay=1e-4)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is SGD
    assert (restored.momentum, restored.nesterov, restored.weight_decay) == (0.8, True, 1e-4)

    assert isinstance(build_optimizer(TrainConfig(optimizer="sgd", momentum=0.9), steps_per_epoch=4), SGD)


def test_sgd_checkpoint_of_keras_sgd_restores(tmp_path):
    """Same variables as ``keras.optimizers.SGD``: a ``tf.train.Checkpoint`` (what the training loop writes) of a
    run with Keras's SGD restores into kzoo's, momentum included."""
    variable = keras.Variable(np.ones((2, 2), np.float32))
    stock = keras.optimizers.SGD(0.1, momentum=0.9)
    stock.build([variable])
    stock.apply([tf.ones((2, 2))], [variable])
    path = tf.train.Checkpoint(optimizer=stock).write(str(tmp_path / "stock"))
    ours = SGD(0.1, momentum=0.9)
    ours.build([keras.Variable(np.zeros((2, 2), np.float32))])
    tf.train.Checkpoint(optimizer=ours).read(path).assert_consumed()
    np.testing.assert_array_equal(ours.momentums[0].numpy(), np.full((2, 2), -0.1, np.float32))
    assert int(ours.iterations.numpy()) == 1
