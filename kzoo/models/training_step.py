"""One replica's training step, written once for every model: the model computes its losses
(``model.training_losses(batch, seed=...)``), this differentiates and applies them."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


def apply_training_step(
    model: keras.Model,
    batch: Any,
    optimizer: keras.optimizers.Optimizer,
    seed: int = 0,
    gradient_clip_norm: float | None = None,
    **loss_options: Any,
) -> dict[str, tf.Tensor]:
    """One replica's step, shared by ``model.fit`` and kzoo's custom loop (:func:`kzoo.training.step.make_train_step`).

    The replica's ``total`` loss (the mean over its batch) plus ``model.losses`` (scaled per replica), divided by
    the replica count, is differentiated, so the all-reduced gradient is the global batch's mean. With
    ``gradient_clip_norm`` the gradients are all-reduced, clipped by their global norm and divided by the replica
    count before the optimizer applies them (it all-reduces with a sum again). A ``LossScaleOptimizer`` (float16)
    scales the loss and unscales the gradients; the clip norm is scaled alike. Sampling seeds are
    ``(seed, optimizer.iterations)``, so a resumed run samples what the uninterrupted one would.

    Args:
        model: a model with ``training_losses(batch, seed=int32 [2], **loss_options) -> dict`` holding ``"total"``
            (a float32 scalar) and any other per-replica means it reports.
        batch: one replica's batch, as the model's ``training_losses`` takes it.
        optimizer: a built optimizer.
        seed: the run's seed.
        gradient_clip_norm: clip the global gradient norm; ``None`` or 0: no clipping.
        **loss_options: passed to ``training_losses`` (``label_smoothing``...).

    Returns:
        The model's losses on ``batch`` (float32 scalars, the replica's means).
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    step_seed = tf.stack([tf.constant(seed, tf.int32), tf.cast(optimizer.iterations, tf.int32)])
    with tf.GradientTape() as tape:
        losses = model.training_losses(batch, seed=step_seed, **loss_options)
        loss = losses["total"] / replicas
        if model.losses:
            loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        objective = optimizer.scale_loss(loss)
    variables = model.trainable_variables
    gradients = tape.gradient(objective, variables)
    if gradient_clip_norm:
        context = tf.distribute.get_replica_context()
        gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        scale = getattr(optimizer, "dynamic_scale", None)  # the loss scale of a LossScaleOptimizer
        clip_norm = gradient_clip_norm if scale is None else gradient_clip_norm * tf.cast(scale, tf.float32)
        gradients, _ = tf.clip_by_global_norm(gradients, clip_norm)
        gradients = [g / replicas for g in gradients]
    optimizer.apply_gradients(zip(gradients, variables))
    return losses
