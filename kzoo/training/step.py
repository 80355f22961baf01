"""The distributed training step, written once for every task: each replica runs
:func:`kzoo.models.training_step.apply_training_step` on its share of the global batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import tensorflow as tf

from kzoo.models.training_step import apply_training_step


def make_train_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    strategy: tf.distribute.Strategy,
    outputs: Sequence[str],
    seed: int = 0,
    gradient_clip_norm: float | None = None,
    jit_compile: bool = False,
    **loss_options: Any,
) -> Callable[[Iterator], tf.Tensor]:
    """The compiled step: ``train_step(distributed_iterator) -> float32 [len(outputs)]``.

    Pulls one global batch, runs :func:`~kzoo.models.training_step.apply_training_step` on every replica and
    returns the global batch's value of each of ``outputs`` (keys of the model's ``training_losses``): the mean over
    the replicas of each replica's batch mean.

    Args:
        model: a model with ``training_losses`` (see :func:`~kzoo.models.training_step.apply_training_step`).
        optimizer: a built optimizer, created in ``strategy``'s scope.
        strategy: the ``tf.distribute`` strategy the iterator comes from.
        outputs: the losses and metrics to return, in order (``("total", "accuracy")``...).
        seed: the run's seed (sampling seeds are ``(seed, optimizer.iterations)``).
        gradient_clip_norm: clip the all-reduced gradients' global norm.
        jit_compile: compile the replica step with XLA.
        **loss_options: passed to the model's ``training_losses``.
    """
    replicas = strategy.num_replicas_in_sync

    def replica_step(batch):
        losses = apply_training_step(model, batch, optimizer, seed, gradient_clip_norm, **loss_options)
        return tf.stack([tf.cast(losses[name], tf.float32) / replicas for name in outputs])

    replica_fn = tf.function(replica_step, jit_compile=True) if jit_compile else replica_step

    @tf.function
    def train_step(iterator):
        batch = next(iterator)
        values = strategy.run(replica_fn, args=(batch,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None)

    return train_step
