"""The training loop: one custom loop that serves every task and every ``tf.distribute`` strategy.

Keras 3's ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), so kzoo runs its
own loop: the dataset distributed by the strategy, the task's step run by ``strategy.run`` inside a
``tf.function``, model and optimizer created (and the optimizer built) in the strategy's scope.

The loop owns what every task shares: the precision policy, the strategy and global batch, the optimizer and
its schedule, resuming from the newest epoch checkpoint (and skipping the batches already seen), the progress
bar, the divergence check, TensorBoard summaries, per-epoch checkpoints, evaluation every
``train.eval_every_epochs`` epochs and after the last, and the run's files (written atomically). A task
(:class:`TrainableTask`, see ``kzoo.tasks``) says how to build the model, the data and the step.

Each epoch's checkpoint is saved before its evaluation, with a record beside it (``checkpoints/epoch_record.json``:
the epoch's running metrics, whether its evaluation is due, its results once done): an evaluation that fails (an
error, Ctrl-C, a full disk) loses no training, and the next run evaluates the restored model before going on, so
that its ``metrics.json`` is the uninterrupted run's (timings aside).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, cast

import keras
import numpy as np
import tensorflow as tf
import yaml

from kzoo.config import ConfigError, config_to_dict
from kzoo.training.checkpoints import EpochCheckpointer
from kzoo.training.optimizers import SGD
from kzoo.training.run_lock import RunLockedError, run_lock
from kzoo.training.schedules import PhasedSchedule, WarmupSchedule
from kzoo.training.strategy import is_chief, make_strategy, task_id, will_be_chief
from kzoo.utils import files

#: The Keras dtype policy of each ``precision``.
PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
#: Files of a run in its ``output_dir`` (what ``fresh=True`` removes; exports and pictures stay).
RUN_FILES = (
    "checkpoints",
    "logs",
    "metrics.json",
    "model.weights.h5",
    "model.keras",
    "config.yaml",
    "demo_results.json",
)
WEIGHTS_FILE = "model.weights.h5"
METRICS_FILE = "metrics.json"


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainableTask(Protocol):
    """What the loop needs from a task (``kzoo.tasks.classification``, ``kzoo.tasks.instance_segmentation``)."""

    config: Any
    #: the Keras global dtype policy while the model is built and trained
    keras_policy: str
    #: the names of :meth:`step_metrics`, in order; the first is the loss
    metric_names: tuple[str, ...]

    def training_data(self, global_batch: int) -> tuple[tf.data.Dataset, int]:
        """``(dataset, steps_per_epoch)``: batches of ``global_batch`` examples, repeating forever."""

    def build_model(self) -> keras.Model:
        """A new model with its variables created (called inside the strategy's scope)."""

    def make_train_step(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        strategy: tf.distribute.Strategy,
        global_batch: int,
    ) -> Callable[[Iterator], tf.Tensor]:
        """``step(distributed_iterator) -> float32 [N]``: one global batch's sums, summed over the replicas."""

    def step_metrics(self, totals: np.ndarray, steps: int) -> dict[str, float]:
        """The epoch's running metrics (:attr:`metric_names`) from the step's summed outputs."""

    def set_trainable(self, model: keras.Model, preset: str) -> None:
        """Make the layers of ``preset`` (one of ``kzoo.config.TRAINABLE_LAYERS``) trainable, freeze the others."""

    def evaluate(self, model: keras.Model, strategy: tf.distribute.Strategy) -> dict[str, float]:
        """Metrics on the evaluation split (stored with an ``eval_`` prefix)."""

    def run_summary(self) -> dict[str, Any]:
        """Extra entries for ``metrics.json`` (e.g. ``class_names``)."""

    # optional: ``explain_data_error(error: tf.errors.OpError) -> Exception | None``, a clearer exception for an
    # error the training data raised (e.g. naming an image file that cannot be decoded), or None


@contextlib.contextmanager
def keras_policy(name: str) -> Iterator[None]:
    """Set Keras's global dtype policy for the block, then restore the previous one (it is process-wide)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def phases(train_config: Any) -> list[Any]:
    """The phases of a run (:class:`kzoo.config.PhaseConfig`): ``train.phases``, or one phase of ``train.epochs``
    with ``train.trainable_layers``."""
    from kzoo.config import PhaseConfig

    return list(train_config.phases) or [PhaseConfig(train_config.epochs, train_config.trainable_layers)]


def phase_of(train_config: Any, epoch: int) -> tuple[int, Any]:
    """``(index, phase)`` of the phase that 0-based ``epoch`` belongs to."""
    end = 0
    for index, phase in enumerate(phases(train_config)):
        end += phase.epochs
        if epoch < end:
            return index, phase
    return index, phase


def learning_rate_schedule(train_config: Any, steps_per_epoch: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """The warmup schedule of ``train_config``; with phases, one per phase (``step_epochs`` counted within the
    phase, warmup in the first) joined by a :class:`PhasedSchedule`."""
    schedules, starts, start = [], [], 0
    for index, phase in enumerate(phases(train_config)):
        schedules.append(
            WarmupSchedule(
                peak=phase.learning_rate or train_config.learning_rate,
                total_steps=max(phase.epochs * steps_per_epoch, 1),
                warmup_steps=int(round(train_config.warmup_epochs * steps_per_epoch)) if index == 0 else 0,
                kind=train_config.schedule,
                step_boundaries=[e * steps_per_epoch for e in train_config.step_epochs if e < phase.epochs],
                step_factor=train_config.step_factor,
            )
        )
        starts.append(start)
        start += phase.epochs * steps_per_epoch
    return schedules[0] if len(schedules) == 1 else PhasedSchedule(starts, schedules)


def build_optimizer(train_config: Any, steps_per_epoch: int, loss_scale: bool = False) -> keras.optimizers.Optimizer:
    """The optimizer of ``train_config`` (a :class:`kzoo.config.TrainConfig`) with its warmup schedule(s); weight
    decay skips biases and normalization parameters; ``loss_scale`` wraps it for float16 mixed precision. SGD is
    :class:`kzoo.training.optimizers.SGD` (Keras's, with an in-place momentum step)."""
    schedule = learning_rate_schedule(train_config, steps_per_epoch)
    if train_config.optimizer == "sgd":
        optimizer = SGD(
            schedule,
            momentum=train_config.momentum,
            nesterov=train_config.nesterov,
            weight_decay=train_config.weight_decay or None,
        )
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=train_config.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scale else optimizer


def read_run_metrics(output_dir: str) -> dict | None:
    """The ``metrics.json`` of a finished run, or ``None``."""
    path = os.path.join(output_dir, METRICS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def clear_run(output_dir: str) -> None:
    """Remove a run's checkpoints, logs, weights and metrics from ``output_dir`` (``--fresh``), holding the run's
    lock (re-entrant: :func:`train` already holds it).

    Raises:
        RunLockedError: another process trains in ``output_dir``; nothing was deleted.
    """
    if not os.path.isdir(output_dir):
        return
    with run_lock(output_dir, "--fresh", _command_line()):
        for name in RUN_FILES:
            path = os.path.join(output_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)


def check_same_model(config: Any, output_dir: str) -> None:
    """ConfigError when ``output_dir`` holds a run of another model (its ``config.yaml`` differs in ``task`` or
    ``model``): resuming would restore weights of other shapes."""
    path = os.path.join(output_dir, "config.yaml")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        try:
            previous = yaml.safe_load(f) or {}
        except yaml.YAMLError:
            return
    current = config_to_dict(config)
    for section in ("task", "model"):
        before, now = previous.get(section, current[section]), current[section]
        if isinstance(before, dict) and isinstance(now, dict):  # where the weights started is not the model
            # (nor a class count still to be taken from the data: the data will say)
            skip = {"init_weights"} | ({"num_classes"} if now.get("num_classes") is None else set())
            before, now = ({k: v for k, v in d.items() if k not in skip} for d in (before, now))
        if before == now:
            continue
        if isinstance(before, dict) and isinstance(now, dict):
            key = next(k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k))
            change = f"model.{key} was {before.get(key)!r}, now {now.get(key)!r}"
        else:
            change = f"{section} was {before!r}, now {now!r}"
        raise ConfigError(
            f"output directory {output_dir} holds a run of another model ({change}); "
            "use another output_dir, or --fresh to delete that run and start over"
        )


def _start_run(config: Any, strategy: tf.distribute.Strategy, model: keras.Model, optimizer, verbose: int):
    """Restore the newest epoch checkpoint (every worker reads the chief's); on the chief, open the TensorBoard
    writer and write ``config.yaml``. Returns ``(checkpointer, start_epoch, writer)``."""
    chief = is_chief(strategy)
    checkpointer = EpochCheckpointer(
        os.path.join(config.output_dir, "checkpoints"), chief, task_id(strategy), model=model, optimizer=optimizer
    )
    start_epoch = checkpointer.restore_latest()
    if chief and verbose and 0 < start_epoch < config.train.epochs:
        print(
            f"resuming {config.output_dir} after epoch {start_epoch} of {config.train.epochs} "
            f"(checkpoint {checkpointer.restored})"
        )
    writer = tf.summary.create_file_writer(os.path.join(config.output_dir, "logs")) if chief else None
    if chief:
        files.write_text(
            os.path.join(config.output_dir, "config.yaml"), yaml.safe_dump(config_to_dict(config), sort_keys=False)
        )
    return checkpointer, start_epoch, writer


def train(
    task: TrainableTask, verbose: int = 1, strategy: tf.distribute.Strategy | None = None, fresh: bool = False
) -> dict:
    """Train ``task.config`` as it says, resuming from ``output_dir`` when a checkpoint is there.

    Writes to ``config.output_dir`` (chief only): ``checkpoints/`` (every epoch), ``logs/`` (TensorBoard),
    ``config.yaml``, ``model.weights.h5`` and ``metrics.json`` (atomically).

    Args:
        task: the task (model, data, step).
        verbose: 0 silent, 1 progress bars, 2 one line per epoch.
        strategy: a ``tf.distribute`` strategy (default: ``config.strategy``).
        fresh: delete the run in ``output_dir`` first and start from scratch.

    Returns:
        The final metrics: the last epoch's running metrics, ``eval_*`` metrics, epochs, replicas, wall time and
        throughput. A run that had already finished returns its stored metrics with ``already_finished=True``
        and writes nothing.

    One run, one writer: the chief holds the lock of ``output_dir`` (:mod:`kzoo.training.run_lock`) from before
    ``fresh`` deletes anything until it returns or raises; the other workers of a multi-worker job share it. Any
    exception (``KeyboardInterrupt`` included) leaves with a :class:`RunProgress` in its ``kzoo_run`` attribute:
    the folder and the epoch of its newest checkpoint.

    Raises:
        TrainingDivergedError: the loss became NaN or infinite.
        ConfigError: ``output_dir`` holds a run of another model.
        RunLockedError: another process trains in ``output_dir`` (named; nothing was deleted or written).
    """
    config = task.config
    chief = is_chief(strategy) if strategy is not None else will_be_chief(config.strategy.kind)
    try:
        files.make_directory(config.output_dir)  # before any work: a file in the way or no permission fails now
        purpose = "--fresh" if fresh else "training"
        with run_lock(config.output_dir, purpose, _command_line()) if chief else contextlib.nullcontext():
            if fresh and chief:
                clear_run(config.output_dir)
            if chief or not fresh:  # a worker of a --fresh job must not judge the run the chief is deleting
                check_same_model(config, config.output_dir)
            with keras_policy(task.keras_policy):
                return _train(task, verbose, strategy)
    except BaseException as error:
        if not isinstance(error, RunLockedError) and getattr(error, "kzoo_run", None) is None:
            with contextlib.suppress(AttributeError, TypeError):
                cast(Any, error).kzoo_run = RunProgress(config.output_dir, last_checkpoint_epoch(config.output_dir))
        raise


@dataclasses.dataclass(frozen=True)
class RunProgress:
    """Where an interrupted or failed run stands (attached to the exception as ``kzoo_run`` by :func:`train`).

    Attributes:
        output_dir: the run folder.
        checkpoint_epoch: the completed epochs of the newest checkpoint in ``output_dir/checkpoints`` (what the
            same command resumes from), or ``None`` when there is none yet.
    """

    output_dir: str
    checkpoint_epoch: int | None


def last_checkpoint_epoch(output_dir: str) -> int | None:
    """The number of the newest epoch checkpoint (``checkpoints/ckpt-N.index``) of the run in ``output_dir``, or
    ``None``. Checkpoints are written to temporary names and renamed, so the newest complete one is intact."""
    try:
        names = os.listdir(os.path.join(output_dir, "checkpoints"))
    except OSError:
        return None
    numbers = [int(m[1]) for name in names if (m := re.fullmatch(r"ckpt-(\d+)\.index", name))]
    return max(numbers) if numbers else None


def _command_line() -> str:
    """This process's command line, short (recorded in the run lock for whoever is refused)."""
    argv = [os.path.basename(sys.argv[0] or "python")] + sys.argv[1:] if sys.argv else ["python"]
    return " ".join(argv)[:200]


def _train(task: TrainableTask, verbose: int, strategy: tf.distribute.Strategy | None) -> dict:
    config, train_config = task.config, task.config.train
    keras.utils.set_random_seed(train_config.seed)
    strategy = strategy or make_strategy(config.strategy.kind, config.strategy.devices)
    chief = is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    global_batch = train_config.batch_size * replicas
    train_dataset, steps_per_epoch = task.training_data(global_batch)
    config = task.config  # the data may have completed it (a class count taken from the data)

    with strategy.scope():
        model = task.build_model()
        optimizer = build_optimizer(train_config, steps_per_epoch, loss_scale=config.precision == "float16")
        # built on every variable any phase trains, so that its slots (and checkpoints) do not depend on the phase
        task.set_trainable(model, "all")
        optimizer.build(model.trainable_variables)
    checkpointer, start_epoch, writer = _start_run(config, strategy, model, optimizer, verbose)
    if start_epoch >= train_config.epochs:
        finished = read_run_metrics(config.output_dir)
        if finished is not None:
            return {**finished, "already_finished": True}

    phase_index: int | None = None
    train_step: Any = None  # the phase's step, made at the first epoch
    # a resumed run skips the batches of the epochs it already has, so that it sees what the uninterrupted run
    # would (the training set is reshuffled every epoch, deterministically given the seed)
    train_dataset = train_dataset.skip(start_epoch * steps_per_epoch)
    iterator = iter(strategy.experimental_distribute_dataset(train_dataset))
    history: dict[str, float] = {}
    evaluation: dict[str, float] | None = None
    train_seconds, trained_images = 0.0, 0
    # the record saved with the checkpoint restored: its epoch's metrics and, when that epoch's evaluation failed
    # (an error, Ctrl-C, a full disk), the evaluation still to run: run it on the restored model, not the epoch
    record = checkpointer.read_record(start_epoch) if start_epoch else None
    if record is not None:
        history = dict(record.get("history") or {})
        if not record.get("done"):
            if record.get("evaluation_due") and record.get("evaluation") is None:
                if chief and verbose:
                    print(f"evaluating epoch {start_epoch} first (its evaluation did not finish)")
                record["evaluation"] = _json_ready(task.evaluate(model, strategy))
            _report_epoch(checkpointer, writer, start_epoch, record, chief, verbose)
        evaluation = record.get("evaluation")
    for epoch in range(start_epoch, train_config.epochs):
        index, phase = phase_of(train_config, epoch)
        if index != phase_index:  # a new phase (or the one a resumed run is in): new trainable set, new step
            task.set_trainable(model, phase.trainable_layers)
            train_step = task.make_train_step(model, optimizer, strategy, global_batch)
            phase_index = index
            if chief and verbose and train_config.phases:
                print(
                    f"phase {index + 1}/{len(train_config.phases)}: {phase.epochs} epochs, trainable layers "
                    f"{phase.trainable_layers}, learning rate {phase.learning_rate or train_config.learning_rate}"
                )
        if chief and verbose:
            print(f"Epoch {epoch + 1}/{train_config.epochs}")
        progbar = keras.utils.Progbar(
            steps_per_epoch, verbose=verbose if chief else 0, stateful_metrics=task.metric_names
        )
        totals: np.ndarray | None = None
        started = time.perf_counter()
        for step in range(steps_per_epoch):
            try:
                values = train_step(iterator).numpy()
            except tf.errors.OpError as error:  # e.g. an image file that cannot be decoded: let the task name it
                explained = task.explain_data_error(error) if hasattr(task, "explain_data_error") else None
                if explained is None:
                    raise
                raise explained from error
            totals = values if totals is None else totals + values
            running = task.step_metrics(totals, step + 1)
            loss = next(iter(running.values()))
            if not math.isfinite(loss):
                raise TrainingDivergedError(
                    f"training loss became {loss} at epoch {epoch + 1}, step {step + 1} "
                    f"({ {k: round(v, 4) for k, v in running.items()} }); lower train.learning_rate, add warmup "
                    "or set train.gradient_clip_norm"
                )
            progbar.update(step + 1, list(running.items()), finalize=False)
        epoch_seconds = time.perf_counter() - started
        train_seconds += epoch_seconds
        trained_images += steps_per_epoch * global_batch
        history = {
            **running,
            "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
            "epoch_seconds": epoch_seconds,
        }
        last = epoch + 1 == train_config.epochs
        every = train_config.eval_every_epochs
        due = bool(last or (every and (epoch + 1) % every == 0))
        # the checkpoint first, with a record saying what is left of the epoch: an evaluation that fails (an error,
        # Ctrl-C, a full disk during a long COCO evaluation) loses no training; the next run evaluates it
        record = {"history": _json_ready(history), "evaluation_due": due, "evaluation": None, "done": False}
        checkpointer.save(epoch + 1, record)
        if due:
            evaluation = record["evaluation"] = _json_ready(task.evaluate(model, strategy))
        progbar.update(steps_per_epoch, list(running.items()), finalize=True)
        _report_epoch(checkpointer, writer, epoch + 1, record, chief, verbose)

    if evaluation is None:  # nothing left to train and no metrics stored: evaluate the restored model
        evaluation = task.evaluate(model, strategy)
    metrics = {
        "name": config.name,
        "epochs": train_config.epochs,
        "replicas": replicas,
        "global_batch_size": global_batch,
        **{k: v for k, v in history.items() if not k.startswith("eval_")},
        **{f"eval_{k}": v for k, v in evaluation.items()},
        "train_seconds_this_run": train_seconds,
        "train_images_per_second": trained_images / train_seconds if train_seconds else None,
        **task.run_summary(),
    }
    if chief:
        with files.atomic_path(os.path.join(config.output_dir, WEIGHTS_FILE)) as temp_path:
            model.save_weights(temp_path)
        files.write_json(os.path.join(config.output_dir, METRICS_FILE), metrics, sort_keys=True)
    return metrics


def _json_ready(values: dict) -> dict:
    """``values`` with NumPy scalars as Python numbers (the epoch record is json; json floats round-trip exactly)."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in values.items()}


def _report_epoch(
    checkpointer: EpochCheckpointer, writer, completed: int, record: dict, chief: bool, verbose: int
) -> None:
    """The end of epoch ``completed`` once its checkpoint is saved and its evaluation (if due) ran: print the
    evaluation, write the TensorBoard summaries (running metrics and ``eval_*``), mark the record done."""
    evaluation = record.get("evaluation")
    if chief and verbose and evaluation is not None:
        print(
            "  eval: "
            + "  ".join(f"{k} {v:.4f}" for k, v in evaluation.items() if isinstance(v, float) and "/" not in k)
        )
    if writer is not None:
        summaries = {**record["history"], **{f"eval_{k}": v for k, v in (evaluation or {}).items()}}
        with writer.as_default(step=completed):
            for key, value in summaries.items():
                tf.summary.scalar(key, value)
        writer.flush()
    record["done"] = True
    checkpointer.write_record(completed, record)
