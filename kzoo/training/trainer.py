"""The training loop: one custom loop that serves every ``tf.distribute`` strategy.

Keras 3's ``model.fit`` fails under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585), so kzoo runs its own loop: the dataset distributed by
the strategy, ``strategy.run`` inside a ``tf.function``, model and optimizer
created (and the optimizer built) in the strategy's scope.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
import yaml

from kzoo.config import ExperimentConfig, config_to_dict
from kzoo.data.classification import load_classification, make_pipeline
from kzoo.evaluation.classification import evaluate_classifier
from kzoo.models.nin import build_nin, resolve_blocks
from kzoo.training.checkpoints import EpochCheckpointer
from kzoo.training.schedules import WarmupSchedule
from kzoo.training.strategy import is_chief, make_strategy, task_id

PRECISION_POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


def build_model(config: ExperimentConfig) -> keras.Model:
    """The classifier described by ``config.model`` (randomly initialized)."""
    model_config = config.model
    if model_config.family != "nin":
        raise ValueError(f"unknown model family {model_config.family!r}; this trainer builds 'nin'")
    blocks = resolve_blocks(model_config.variant, model_config.blocks)
    return build_nin(
        keras.Input(model_config.input_shape, name="images"),
        blocks,
        classes=model_config.classes,
        dropout_rate=model_config.dropout_rate,
        use_batch_norm=model_config.use_batch_norm,
        name=f"nin_{model_config.variant}",
    )


def build_optimizer(config: ExperimentConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer with its warmup schedule; weight decay skips biases and BatchNorm."""
    train = config.train
    schedule = WarmupSchedule(
        peak=train.learning_rate,
        total_steps=max(train.epochs * steps_per_epoch, 1),
        warmup_steps=int(round(train.warmup_epochs * steps_per_epoch)),
        kind=train.schedule,
        step_boundaries=[e * steps_per_epoch for e in train.step_epochs],
        step_factor=train.step_factor,
    )
    if train.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            schedule, momentum=train.momentum, nesterov=train.nesterov, weight_decay=train.weight_decay or None
        )
    elif train.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=train.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {train.optimizer!r}; use 'sgd' or 'adamw'")
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    if train.mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _write_json_atomic(path: str, payload: dict) -> None:
    directory = os.path.dirname(path) or "."
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False) as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(f.name, path)


def start_run(config, strategy: tf.distribute.Strategy, model: keras.Model, optimizer, verbose: int):
    """Prepare ``config.output_dir`` for a run of either trainer: restore the latest epoch checkpoint (every
    worker reads the chief's) and, on the chief, open the TensorBoard writer and write ``config.yaml``.

    Returns:
        ``(checkpointer, start_epoch, writer)``; ``writer`` is ``None`` on other workers.
    """
    chief = is_chief(strategy)
    os.makedirs(config.output_dir, exist_ok=True)
    checkpointer = EpochCheckpointer(
        os.path.join(config.output_dir, "checkpoints"), chief, task_id(strategy), model=model, optimizer=optimizer
    )
    start_epoch = checkpointer.restore_latest()
    if chief and verbose and start_epoch:
        print(f"resuming from epoch {start_epoch} of {config.train.epochs}")
    writer = tf.summary.create_file_writer(os.path.join(config.output_dir, "logs")) if chief else None
    if chief:
        with open(os.path.join(config.output_dir, "config.yaml"), "w") as f:
            yaml.safe_dump(config_to_dict(config), f, sort_keys=False)
    return checkpointer, start_epoch, writer


def train(config: ExperimentConfig, verbose: int = 1, strategy: tf.distribute.Strategy | None = None) -> dict:
    """Train the configured classifier, resuming from ``output_dir`` when a checkpoint is there.

    Writes to ``config.output_dir`` (chief only): ``checkpoints/`` (every epoch),
    ``logs/`` (TensorBoard), ``config.yaml``, ``model.keras``, ``model.weights.h5``
    and ``metrics.json`` (final metrics, written atomically).

    Returns:
        The final metrics: train loss and accuracy of the last epoch, evaluation
        loss/accuracy, epochs, wall time and training throughput (images/s).
    """
    if config.train.mixed_precision not in PRECISION_POLICIES:
        raise ValueError(
            f"unknown mixed_precision {config.train.mixed_precision!r}; use {sorted(PRECISION_POLICIES)}"
        )
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[config.train.mixed_precision])
    try:
        return _train(config, verbose, strategy)
    finally:  # the policy is process-wide: do not leak it to models built after training
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(config: ExperimentConfig, verbose: int, strategy: tf.distribute.Strategy | None) -> dict:
    train_config = config.train
    keras.utils.set_random_seed(train_config.seed)
    strategy = strategy or make_strategy(config.strategy.kind, config.strategy.devices)
    chief = is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    global_batch = train_config.batch_size * replicas

    data = config.data
    train_split = load_classification(
        data.source, data.train_split, data.data_dir, data.tfds_name, data.train_examples, data.image_size
    )
    eval_split = load_classification(
        data.source, data.eval_split, data.data_dir, data.tfds_name, data.eval_examples, data.image_size
    )
    if len(train_split.class_names) != config.model.classes:
        raise ValueError(
            f"model.classes is {config.model.classes} but the data set has {len(train_split.class_names)} classes"
        )
    steps_per_epoch = train_split.num_examples // global_batch
    if steps_per_epoch < 1:
        raise ValueError(
            f"{train_split.num_examples} training examples are fewer than one global batch ({global_batch})"
        )
    train_dataset = make_pipeline(
        train_split, global_batch, training=True, crop_padding=data.crop_padding,
        horizontal_flip=data.horizontal_flip, shuffle_buffer=data.shuffle_buffer, seed=train_config.seed,
    ).repeat()  # fmt: skip
    eval_dataset = make_pipeline(eval_split, global_batch, training=False)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_dataset = train_dataset.with_options(options)
    eval_dataset = eval_dataset.with_options(options)

    with strategy.scope():
        model = build_model(config)
        optimizer = build_optimizer(config, steps_per_epoch)
        optimizer.build(model.trainable_variables)
    checkpointer, start_epoch, writer = start_run(config, strategy, model, optimizer, verbose)

    train_step = make_train_step(
        model, optimizer, strategy, config.model.classes, global_batch,
        label_smoothing=train_config.label_smoothing, scale_loss=train_config.mixed_precision == "float16",
    )  # fmt: skip
    # a resumed run skips the batches of the epochs it already has, so that it sees what the uninterrupted
    # run would (the training set is reshuffled every epoch, deterministically given the seed)
    train_dataset = train_dataset.skip(start_epoch * steps_per_epoch)
    iterator = iter(strategy.experimental_distribute_dataset(train_dataset))
    history = {}
    evaluation = None
    trained_images = 0
    train_seconds = 0.0
    for epoch in range(start_epoch, train_config.epochs):
        progbar = keras.utils.Progbar(
            steps_per_epoch, verbose=verbose if chief else 0, stateful_metrics=["loss", "accuracy"]
        )
        if chief and verbose:
            print(f"Epoch {epoch + 1}/{train_config.epochs}")
        totals = np.zeros(3)
        started = time.perf_counter()
        for step in range(steps_per_epoch):
            totals += train_step(iterator).numpy()
            loss, accuracy = totals[0] / totals[2], totals[1] / totals[2]
            if not math.isfinite(loss):
                raise TrainingDivergedError(
                    f"training loss became {loss} at epoch {epoch + 1}, step {step + 1}; "
                    "lower train.learning_rate or add warmup"
                )
            progbar.update(step + 1, [("loss", loss), ("accuracy", accuracy)], finalize=False)
        epoch_seconds = time.perf_counter() - started
        train_seconds += epoch_seconds
        trained_images += steps_per_epoch * global_batch
        evaluation = evaluate_classifier(model, eval_dataset, strategy)
        history = {
            "epoch": epoch + 1,
            "train_loss": loss,
            "train_accuracy": accuracy,
            "eval_loss": evaluation["loss"],
            "eval_accuracy": evaluation["accuracy"],
            "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
            "epoch_seconds": epoch_seconds,
        }
        progbar.update(
            steps_per_epoch,
            [("loss", loss), ("accuracy", accuracy), ("val_loss", evaluation["loss"]),
             ("val_accuracy", evaluation["accuracy"])],
            finalize=True,
        )  # fmt: skip
        if writer is not None:
            with writer.as_default(step=epoch + 1):
                for key, value in history.items():
                    if key != "epoch":
                        tf.summary.scalar(key, value)
            writer.flush()
        checkpointer.save(epoch + 1)

    final = evaluation or evaluate_classifier(model, eval_dataset, strategy)  # the last epoch's, when one ran
    metrics = {
        "name": config.name,
        "epochs": train_config.epochs,
        "replicas": replicas,
        "global_batch_size": global_batch,
        "train_loss": history.get("train_loss"),
        "train_accuracy": history.get("train_accuracy"),
        "eval_loss": final["loss"],
        "eval_accuracy": final["accuracy"],
        "eval_top5_accuracy": final["top5_accuracy"],
        "eval_examples": final["examples"],
        "train_seconds_this_run": train_seconds,
        "train_images_per_second": trained_images / train_seconds if train_seconds else None,
        "class_names": list(train_split.class_names),
    }
    if chief:
        model.save_weights(os.path.join(config.output_dir, "model.weights.h5"))
        model.save(os.path.join(config.output_dir, "model.keras"))
        _write_json_atomic(os.path.join(config.output_dir, "metrics.json"), metrics)
    return metrics


def make_train_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    strategy: tf.distribute.Strategy,
    classes: int,
    global_batch: int,
    label_smoothing: float = 0.0,
    scale_loss: bool = False,
):
    """The compiled training step: ``train_step(iterator) -> [loss_sum, correct, count]`` float32 ``[3]``.

    Pulls one global batch ``(images float32 [B, H, W, C], labels int64 [B])`` from a distributed
    iterator, runs forward/backward on every replica (loss: cross-entropy averaged over the global
    batch, plus regularization losses scaled per replica), applies the all-reduced gradients, and
    returns the sums over the global batch of the per-example loss and of the correct predictions,
    and the number of examples. ``scale_loss`` applies a ``LossScaleOptimizer``'s scaling (float16).
    """
    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            probs = tf.cast(model(images, training=True), tf.float32)
            per_example = keras.losses.categorical_crossentropy(
                tf.one_hot(labels, classes), probs, label_smoothing=label_smoothing
            )
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            objective = optimizer.scale_loss(loss) if scale_loss else loss
        variables = model.trainable_variables
        gradients = tape.gradient(objective, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, -1), labels), tf.float32))
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        # the replica's loss is its share of the global mean; times the global batch it sums over replicas
        return tf.stack([loss * float(global_batch), correct, count])

    @tf.function
    def train_step(iterator):
        images, labels = next(iterator)
        sums = strategy.run(replica_step, args=(images, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)

    return train_step
