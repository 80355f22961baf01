"""Mask R-CNN training: the same custom loop as the classifier's, for every ``tf.distribute`` strategy.

Per step each replica computes :meth:`MaskRCNNModel.training_losses` on its share of the global batch
(targets sampled with a stateless seed from ``(train.seed, step)``), the gradients are all-reduced, clipped
by their global norm, and applied by SGD with momentum under a warmup + step (or cosine) schedule with
decoupled weight decay that skips biases and normalization parameters.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from kzoo.config import MaskRCNNExperimentConfig
from kzoo.data.coco import CocoCategories, coco_dict, load_coco_instances
from kzoo.data.detection import load_tfds_instances, make_detection_pipeline
from kzoo.data.shapes import SHAPES_INSTANCE_CLASSES, make_shapes_instances
from kzoo.evaluation.coco import CocoEvaluator
from kzoo.evaluation.detection import evaluate_mask_rcnn
from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.ops.resize import padded_size
from kzoo.training.strategy import is_chief, make_strategy
from kzoo.training.trainer import (
    PRECISION_POLICIES,
    TrainingDivergedError,
    _write_json_atomic,
    build_optimizer,
    start_run,
)

LOSS_NAMES = ("total", "rpn_objectness", "rpn_box", "classification", "box", "mask")


class DetectionData:
    """The training source, the evaluation source with its COCO ground truth, and the categories."""

    def __init__(self, train, eval, ground_truth, categories: CocoCategories, num_train: int | None):
        self.train, self.eval, self.ground_truth = train, eval, ground_truth
        self.categories, self.num_train = categories, num_train


def load_detection_data(config: MaskRCNNExperimentConfig) -> DetectionData:
    """The sources of ``config.data`` (see :class:`kzoo.config.DetectionDataConfig`)."""
    data = config.data
    if data.source == "shapes":
        train = make_shapes_instances(
            data.train_examples or 2000, data.shapes_image_size, data.shapes_max_instances, seed=config.train.seed
        )
        evaluation = make_shapes_instances(
            data.eval_examples or 200, data.shapes_image_size, data.shapes_max_instances, seed=config.train.seed + 1
        )
        categories = CocoCategories.from_names(SHAPES_INSTANCE_CLASSES)
        return DetectionData(train, evaluation, coco_dict(evaluation, categories), categories, len(train))
    if data.source == "coco":
        for key in ("train_annotations", "train_images", "eval_annotations", "eval_images"):
            if not getattr(data, key):
                raise ValueError(f"data.source 'coco' needs data.{key}")
        train = load_coco_instances(data.train_annotations, data.train_images, skip_empty=data.skip_empty)
        evaluation = load_coco_instances(data.eval_annotations, data.eval_images)
        if train.categories != evaluation.categories:
            raise ValueError(
                f"the categories of {data.train_annotations} and {data.eval_annotations} differ: "
                f"{train.categories.names} vs {evaluation.categories.names}"
            )
        if data.train_examples is not None:
            train = dataclasses.replace(train, records=train.records[: data.train_examples])
        if data.eval_examples is not None:
            evaluation = dataclasses.replace(evaluation, records=evaluation.records[: data.eval_examples])
        return DetectionData(train, evaluation, data.eval_annotations, train.categories, len(train))
    if data.source == "tfds":
        if not data.tfds_name:
            raise ValueError("data.source 'tfds' needs data.tfds_name (e.g. coco/2017_panoptic)")
        train = load_tfds_instances(data.tfds_name, data.train_split, data.data_dir, skip_empty=data.skip_empty)
        evaluation = load_tfds_instances(data.tfds_name, data.eval_split, data.data_dir)
        eval_dataset = evaluation.dataset.take(data.eval_examples or -1)
        eval_examples = [
            {"image": e["image"], "boxes": e["boxes"], "classes": e["classes"], "masks": e["masks"].astype(bool),
             "is_crowd": e["is_crowd"], "image_id": int(e["image_id"])}
            for e in eval_dataset.as_numpy_iterator()
        ]  # fmt: skip
        train_dataset = train.dataset.take(data.train_examples or -1)
        num_train = data.train_examples or train.num_examples
        ground_truth = coco_dict(eval_examples, evaluation.categories)
        return DetectionData(train_dataset, eval_examples, ground_truth, evaluation.categories, num_train)
    raise ValueError(f"unknown data.source {data.source!r}; use 'shapes', 'coco' or 'tfds'")


def canvas_size(config: MaskRCNNExperimentConfig) -> int:
    """The side of the square training canvas: ``max_size`` rounded up to ``size_divisible``."""
    return int(padded_size(config.model.max_size, config.model.max_size, config.model.size_divisible)[0])


def make_pipelines(config: MaskRCNNExperimentConfig, data: DetectionData, global_batch: int):
    """``(train, eval)`` datasets of :func:`make_detection_pipeline` batches (train repeats forever)."""
    model, data_config = config.model, config.data
    common = dict(
        image_size=canvas_size(config), min_size=model.min_size, max_size=model.max_size,
        max_instances=data_config.max_instances, mask_size=data_config.mask_size,
    )  # fmt: skip
    train = make_detection_pipeline(
        data.train, global_batch, training=True, horizontal_flip=data_config.horizontal_flip,
        shuffle_buffer=data_config.shuffle_buffer, seed=config.train.seed, **common,
    ).repeat()  # fmt: skip
    evaluation = make_detection_pipeline(data.eval, global_batch, training=False, **common)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return train.with_options(options), evaluation


def build_mask_rcnn(config: MaskRCNNExperimentConfig) -> MaskRCNNModel:
    """The model of ``config.model``, built (variables created) on a canvas of the training size."""
    if config.train.jit_compile and config.model.roi_method != "gather":
        raise ValueError("train.jit_compile needs model.roi_method: gather (CropAndResize has no XLA kernel)")
    model = MaskRCNNModel(config.model, name=config.name)
    side = canvas_size(config)
    model(tf.zeros([1, side, side, 3], tf.float32))
    return model


def train_mask_rcnn(
    config: MaskRCNNExperimentConfig, verbose: int = 1, strategy: tf.distribute.Strategy | None = None
) -> dict:
    """Train a Mask R-CNN as ``config`` says, resuming from ``output_dir`` when a checkpoint is there.

    Writes to ``config.output_dir`` (chief only): ``checkpoints/`` (every epoch), ``logs/`` (TensorBoard: every
    loss and the learning rate per epoch, COCO AP when evaluated), ``config.yaml``, ``model.weights.h5`` and
    ``metrics.json`` (atomically).

    Returns:
        The final metrics: the last epoch's mean losses, COCO bbox/segm AP on the evaluation split, wall time
        and throughput.

    Raises:
        TrainingDivergedError: the loss became NaN or infinite.
    """
    if config.train.mixed_precision not in PRECISION_POLICIES:
        raise ValueError(
            f"unknown mixed_precision {config.train.mixed_precision!r}; use {sorted(PRECISION_POLICIES)}"
        )
    if config.train.mixed_precision == "float16" and config.train.gradient_clip_norm:
        raise ValueError("train.mixed_precision float16 (loss scaling) cannot be combined with gradient_clip_norm")
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[config.train.mixed_precision])
    try:
        return _train(config, verbose, strategy)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(config: MaskRCNNExperimentConfig, verbose: int, strategy: tf.distribute.Strategy | None) -> dict:
    train_config = config.train
    keras.utils.set_random_seed(train_config.seed)
    strategy = strategy or make_strategy(config.strategy.kind, config.strategy.devices)
    chief = is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    global_batch = train_config.batch_size * replicas

    data = load_detection_data(config)
    if data.categories.num_classes + 1 != config.model.num_classes:
        raise ValueError(
            f"model.num_classes is {config.model.num_classes} but the data set has {data.categories.num_classes} "
            f"categories (+1 for the background = {data.categories.num_classes + 1})"
        )
    if not data.num_train:
        raise ValueError("the size of the training set is unknown: set data.train_examples")
    steps_per_epoch = data.num_train // global_batch
    if steps_per_epoch < 1:
        raise ValueError(f"{data.num_train} training images are fewer than one global batch ({global_batch})")
    train_dataset, eval_dataset = make_pipelines(config, data, global_batch)

    with strategy.scope():
        model = build_mask_rcnn(config)
        optimizer = build_optimizer(config, steps_per_epoch)
        optimizer.build(model.trainable_variables)
    checkpointer, start_epoch, writer = start_run(config, strategy, model, optimizer, verbose)

    train_step = make_mask_rcnn_train_step(model, optimizer, strategy, train_config.gradient_clip_norm,
                                           train_config.seed, train_config.jit_compile,
                                           scale_loss=train_config.mixed_precision == "float16")  # fmt: skip
    train_dataset = train_dataset.skip(start_epoch * steps_per_epoch)  # see the classifier's trainer
    iterator = iter(strategy.experimental_distribute_dataset(train_dataset))
    history: dict = {}
    evaluation: dict | None = None
    train_seconds = 0.0
    trained_images = 0
    for epoch in range(start_epoch, train_config.epochs):
        progbar = keras.utils.Progbar(steps_per_epoch, verbose=verbose if chief else 0, stateful_metrics=LOSS_NAMES)
        if chief and verbose:
            print(f"Epoch {epoch + 1}/{train_config.epochs}")
        totals = np.zeros(len(LOSS_NAMES))
        started = time.perf_counter()
        for step in range(steps_per_epoch):
            totals += train_step(iterator).numpy()
            means = totals / (step + 1)
            if not math.isfinite(means[0]):
                raise TrainingDivergedError(
                    f"training loss became {means[0]} at epoch {epoch + 1}, step {step + 1} "
                    f"({dict(zip(LOSS_NAMES, (totals / (step + 1)).round(4)))}); lower train.learning_rate, "
                    "add warmup or set train.gradient_clip_norm"
                )
            progbar.update(step + 1, list(zip(LOSS_NAMES, means)), finalize=False)
        epoch_seconds = time.perf_counter() - started
        train_seconds += epoch_seconds
        trained_images += steps_per_epoch * global_batch
        history = {f"loss_{name}": float(value) for name, value in zip(LOSS_NAMES, means)}
        history["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        history["epoch_seconds"] = epoch_seconds
        last = epoch + 1 == train_config.epochs
        every = train_config.eval_every_epochs
        if last or (every and (epoch + 1) % every == 0):
            evaluation = evaluate_mask_rcnn(
                model, eval_dataset, CocoEvaluator(data.ground_truth, data.categories), verbose=0
            )
            history.update({f"eval_{k}": v for k, v in evaluation.items()})
        progbar.update(steps_per_epoch, list(zip(LOSS_NAMES, means)), finalize=True)
        if chief and verbose and evaluation is not None and "eval_bbox_AP" in history:
            print("  eval: " + "  ".join(f"{k} {evaluation[k]:.3f}" for k in (
                "bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50")))  # fmt: skip
        if writer is not None:
            with writer.as_default(step=epoch + 1):
                for key, value in history.items():
                    tf.summary.scalar(key, value)
            writer.flush()
        checkpointer.save(epoch + 1)

    if evaluation is None:  # nothing left to train: evaluate the restored model
        evaluation = evaluate_mask_rcnn(model, eval_dataset, CocoEvaluator(data.ground_truth, data.categories))
    metrics = {
        "name": config.name,
        "epochs": train_config.epochs,
        "replicas": replicas,
        "global_batch_size": global_batch,
        **{k: v for k, v in history.items() if k.startswith("loss_")},
        **{f"eval_{k}": v for k, v in evaluation.items()},
        "train_seconds_this_run": train_seconds,
        "train_images_per_second": trained_images / train_seconds if train_seconds else None,
        "class_names": list(data.categories.names),
    }
    if chief:
        model.save_weights(os.path.join(config.output_dir, "model.weights.h5"))
        _write_json_atomic(os.path.join(config.output_dir, "metrics.json"), metrics)
    return metrics


def make_mask_rcnn_train_step(
    model: MaskRCNNModel,
    optimizer: keras.optimizers.Optimizer,
    strategy: tf.distribute.Strategy,
    gradient_clip_norm: float | None = None,
    seed: int = 0,
    jit_compile: bool = False,
    scale_loss: bool = False,
):
    """The compiled step: ``train_step(iterator) -> float32 [6]``, the global batch's losses in
    ``LOSS_NAMES`` order (each the mean over the replicas of the replica's batch loss).

    Every replica's loss is divided by the number of replicas, so the summed gradients are those of the mean
    loss. Gradients are all-reduced here, clipped by their global norm (``gradient_clip_norm``), and handed to
    the optimizer divided by the replica count (it all-reduces with a sum again). Sampling seeds are
    ``(seed, optimizer.iterations)``, so a resumed run samples what the uninterrupted one would.
    """
    replicas = strategy.num_replicas_in_sync

    def replica_step(batch):
        step_seed = tf.stack([tf.constant(seed, tf.int32), tf.cast(optimizer.iterations, tf.int32)])
        with tf.GradientTape() as tape:
            losses = model.training_losses(batch, seed=step_seed)
            loss = losses["total"] / replicas
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            objective = optimizer.scale_loss(loss) if scale_loss else loss
        variables = model.trainable_variables
        gradients = tape.gradient(objective, variables)
        if gradient_clip_norm:
            context = tf.distribute.get_replica_context()
            gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
            gradients, _ = tf.clip_by_global_norm(gradients, gradient_clip_norm)
            gradients = [g / replicas for g in gradients]
        optimizer.apply_gradients(zip(gradients, variables))
        return tf.stack([losses[name] / replicas for name in LOSS_NAMES])

    replica_fn = tf.function(replica_step, jit_compile=True) if jit_compile else replica_step

    @tf.function
    def train_step(iterator):
        batch = next(iterator)
        values = strategy.run(replica_fn, args=(batch,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None)

    return train_step
