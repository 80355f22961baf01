"""kzoo.evaluation.classification.evaluate_classifier against float64 NumPy definitions of cross-entropy, top-1
and top-5 accuracy."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.evaluation.classification import evaluate_classifier


def _linear_softmax(weights):
    model = keras.Sequential([keras.Input((weights.shape[0],)), keras.layers.Dense(weights.shape[1], use_bias=False)])
    model.layers[-1].kernel.assign(weights)
    return keras.Sequential([model, keras.layers.Softmax()])


@pytest.mark.parametrize("classes", [3, 8])
def test_matches_numpy_with_a_partial_last_batch(classes):
    rng = np.random.default_rng(classes)
    x = rng.normal(size=(37, 4)).astype(np.float32)
    labels = rng.integers(0, classes, 37)
    weights = rng.normal(size=(4, classes)).astype(np.float32)
    metrics = evaluate_classifier(_linear_softmax(weights), tf.data.Dataset.from_tensor_slices((x, labels)).batch(8))

    logits = x.astype(np.float64) @ weights.astype(np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    loss = -np.log(probs[np.arange(37), labels])
    rank = (probs > probs[np.arange(37), labels][:, None]).sum(-1)  # classes scored above the true one
    assert metrics["examples"] == 37
    assert metrics["loss"] == pytest.approx(loss.mean(), rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(np.mean(rank == 0))
    assert metrics["top5_accuracy"] == pytest.approx(np.mean(rank < 5))
    if classes <= 5:
        assert metrics["top5_accuracy"] == 1.0


def test_an_empty_data_set_counts_nothing():
    model = _linear_softmax(np.eye(3, dtype=np.float32))
    empty = tf.data.Dataset.from_tensor_slices((np.zeros((0, 3), np.float32), np.zeros((0,), np.int64))).batch(4)
    metrics = evaluate_classifier(model, empty)
    assert metrics == {"loss": 0.0, "accuracy": 0.0, "top5_accuracy": 0.0, "examples": 0}
