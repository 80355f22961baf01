"""The training loop: one custom loop that serves every task and every ``tf.distribute`` strategy.

Keras 3's ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), so kzoo runs its
own loop: the dataset distributed by the strategy, the task's step run by ``strategy.run`` inside a
``tf.function``, model and optimizer created (and the optimizer built) in the strategy's scope.

The loop owns what every task shares: the strategy and global batch, the optimizer and its schedule (with loss
scaling for ``precision: float16``), resuming from the newest epoch checkpoint (and skipping the batches already
seen), the progress bar, the divergence check, TensorBoard summaries, per-epoch checkpoints, evaluation every
``train.eval_every_epochs`` epochs and after the last, and the run's files (written atomically). A task
(:class:`TrainableTask`, see ``kzoo.tasks``) says how to build the model (in its precision: ``dtype=``, no
process-wide Keras policy), the data and the step.

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

from kzoo.config import ConfigError, config_to_dict, dataclass_from_dict
from kzoo.training.checkpoints import EpochCheckpointer
from kzoo.training.optimizers import SGD
from kzoo.training.run_lock import RunLockedError, run_lock
from kzoo.training.schedules import PhasedSchedule, WarmupSchedule
from kzoo.training.strategy import is_chief, make_strategy, task_id, will_be_chief
from kzoo.utils import files
from kzoo.utils.interrupts import raise_pending_stop

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
    #: the names of :meth:`step_metrics`, in order; the first is the loss
    metric_names: tuple[str, ...]

    def training_data(self, global_batch: int) -> tuple[tf.data.Dataset, int]:
        """``(dataset, steps_per_epoch)``: batches of ``global_batch`` examples, repeating forever."""

    def build_model(self) -> keras.Model:
        """A new model with its variables created, in the dtype policy of ``config.precision`` (called inside the
        strategy's scope; no process-wide policy is set)."""

    def make_train_step(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        strategy: tf.distribute.Strategy,
        global_batch: int,
    ) -> Callable[[Iterator], tf.Tensor]:
        """``step(distributed_iterator) -> float32 [N]``: one global batch's outputs (:class:`kzoo.tasks.base.Task`
        writes it once, :func:`kzoo.training.step.make_train_step`)."""

    def step_metrics(self, totals: np.ndarray, steps: int) -> dict[str, float]:
        """The epoch's running metrics (:attr:`metric_names`) from the sum of ``steps`` steps' outputs."""

    def set_trainable(self, model: keras.Model, preset: str) -> None:
        """Make the layers of ``preset`` (one of ``kzoo.config.TRAINABLE_LAYERS``) trainable, freeze the others."""

    def evaluate(self, model: keras.Model, strategy: tf.distribute.Strategy) -> dict[str, float]:
        """Metrics on the evaluation split (stored with an ``eval_`` prefix)."""

    def run_summary(self) -> dict[str, Any]:
        """Extra entries for ``metrics.json`` (e.g. ``class_names``)."""

    # optional: ``explain_data_error(error: tf.errors.OpError) -> Exception | None``, a clearer exception for an
    # error the training data raised (e.g. naming an image file that cannot be decoded), or None


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


def _respelled_model(config: Any, saved: dict, current: dict) -> dict:
    """A run folder's saved ``model`` section in today's keys (a config saved before keys moved, e.g. the flat
    Mask R-CNN keys of kzoo 0.x, is read as the config loader reads it); as saved when it no longer loads."""
    try:
        model = dataclass_from_dict(type(config.model), saved, "model.")
    except (ConfigError, TypeError, ValueError):
        return saved
    return {key: value for key, value in config_to_dict(model).items() if key in current}


def _dotted(values: dict, prefix: str = "") -> dict:
    """Nested sections flattened to dotted keys (``{"rpn": {"nms_threshold": 0.7}}`` -> ``rpn.nms_threshold``)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


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
    if isinstance(previous.get("model"), dict):
        previous = {**previous, "model": _respelled_model(config, previous["model"], current["model"])}
    for section in ("task", "model"):
        before, now = previous.get(section, current[section]), current[section]
        if isinstance(before, dict) and isinstance(now, dict):  # where the weights started is not the model
            # (nor a class count still to be taken from the data: the data will say)
            skip = {"init_weights"} | ({"num_classes"} if now.get("num_classes") is None else set())
            before, now = ({k: v for k, v in _dotted(d).items() if k not in skip} for d in (before, now))
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


@dataclasses.dataclass
class _Run:
    """One call of :func:`train`: what its steps (:func:`_train`) share."""

    task: TrainableTask
    config: Any  # the task's config, once its data completed it (a class count taken from the data)
    strategy: tf.distribute.Strategy
    chief: bool  # this process writes the run's files (see kzoo.training.strategy.is_chief)
    verbose: int
    global_batch: int
    steps_per_epoch: int
    dataset: tf.data.Dataset
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    checkpointer: EpochCheckpointer
    writer: Any  # the chief's TensorBoard writer, else None
    start_epoch: int  # the epochs of the checkpoint restored
    phase_index: int | None = None
    train_step: Any = None  # the phase's step, made at its first epoch
    history: dict[str, float] = dataclasses.field(default_factory=dict)  # the last epoch's running metrics
    evaluation: dict[str, float] | None = None  # the last evaluation
    train_seconds: float = 0.0
    trained_images: int = 0

    @property
    def talks(self) -> bool:
        """Whether this process prints progress (the chief, when verbose)."""
        return bool(self.chief and self.verbose)


def _train(task: TrainableTask, verbose: int, strategy: tf.distribute.Strategy | None) -> dict:
    """:func:`train` once the run's folder is locked and checked: set up (or resume), finish the epoch restored
    if its evaluation did not, train the epochs left, write the weights and metrics."""
    run = _set_up(task, verbose, strategy)
    if run.start_epoch >= run.config.train.epochs:
        finished = read_run_metrics(run.config.output_dir)
        if finished is not None:
            return {**finished, "already_finished": True}
    batches = _batches(run)
    _finish_restored_epoch(run)
    for epoch in range(run.start_epoch, run.config.train.epochs):
        _enter_phase(run, epoch)
        running, progbar, seconds = _train_epoch(run, epoch, batches)
        _end_epoch(run, epoch, running, progbar, seconds)
    return _write_results(run)


def _set_up(task: TrainableTask, verbose: int, strategy: tf.distribute.Strategy | None) -> _Run:
    """Seed, strategy, data, and in the strategy's scope the model and the optimizer (built on every variable any
    phase trains, so that its slots and checkpoints do not depend on the phase); then the newest checkpoint
    restored (:func:`_start_run`)."""
    train_config = task.config.train
    keras.utils.set_random_seed(train_config.seed)
    strategy = strategy or make_strategy(task.config.strategy.kind, task.config.strategy.devices)
    global_batch = train_config.batch_size * strategy.num_replicas_in_sync
    dataset, steps_per_epoch = task.training_data(global_batch)
    config = task.config  # the data may have completed it (a class count taken from the data)
    with strategy.scope():
        model = task.build_model()
        optimizer = build_optimizer(train_config, steps_per_epoch, loss_scale=config.precision == "float16")
        task.set_trainable(model, "all")
        optimizer.build(model.trainable_variables)
    checkpointer, start_epoch, writer = _start_run(config, strategy, model, optimizer, verbose)
    return _Run(
        task=task,
        config=config,
        strategy=strategy,
        chief=is_chief(strategy),
        verbose=verbose,
        global_batch=global_batch,
        steps_per_epoch=steps_per_epoch,
        dataset=dataset,
        model=model,
        optimizer=optimizer,
        checkpointer=checkpointer,
        writer=writer,
        start_epoch=start_epoch,
    )


def _batches(run: _Run) -> Iterator:
    """The distributed iterator over the training batches left: a resumed run skips the batches of the epochs it
    already has, so that it sees what the uninterrupted run would (the training set is reshuffled every epoch,
    deterministically given the seed)."""
    dataset = run.dataset.skip(run.start_epoch * run.steps_per_epoch)
    return iter(run.strategy.experimental_distribute_dataset(dataset))


def _finish_restored_epoch(run: _Run) -> None:
    """Take the running metrics and evaluation from the record saved with the checkpoint restored; when that
    epoch's evaluation failed (an error, Ctrl-C, a full disk), run it now, on the restored model, and report the
    epoch."""
    record = run.checkpointer.read_record(run.start_epoch) if run.start_epoch else None
    if record is None:
        return
    run.history = dict(record.get("history") or {})
    if not record.get("done"):
        if record.get("evaluation_due") and record.get("evaluation") is None:
            if run.talks:
                print(f"evaluating epoch {run.start_epoch} first (its evaluation did not finish)")
            record["evaluation"] = _json_ready(run.task.evaluate(run.model, run.strategy))
        _report_epoch(run.checkpointer, run.writer, run.start_epoch, record, run.chief, run.verbose)
    run.evaluation = record.get("evaluation")


def _enter_phase(run: _Run, epoch: int) -> None:
    """At the first epoch of a phase (or the one a resumed run is in): its trainable layers and a new step."""
    train_config = run.config.train
    index, phase = phase_of(train_config, epoch)
    if index == run.phase_index:
        return
    run.task.set_trainable(run.model, phase.trainable_layers)
    run.train_step = run.task.make_train_step(run.model, run.optimizer, run.strategy, run.global_batch)
    run.phase_index = index
    if run.talks and train_config.phases:
        print(
            f"phase {index + 1}/{len(train_config.phases)}: {phase.epochs} epochs, trainable layers "
            f"{phase.trainable_layers}, learning rate {phase.learning_rate or train_config.learning_rate}"
        )


def _train_epoch(run: _Run, epoch: int, batches: Iterator) -> tuple[dict[str, float], Any, float]:
    """The steps of 0-based ``epoch``, with the progress bar and the divergence check.

    Returns:
        ``(running metrics, progress bar (not finalized), seconds)``.

    Raises:
        TrainingDivergedError: the loss became NaN or infinite.
    """
    task, train_config = run.task, run.config.train
    if run.talks:
        print(f"Epoch {epoch + 1}/{train_config.epochs}")
    progbar = keras.utils.Progbar(
        run.steps_per_epoch, verbose=run.verbose if run.chief else 0, stateful_metrics=task.metric_names
    )
    totals: np.ndarray | None = None
    running: dict[str, float] = {}
    started = time.perf_counter()
    for step in range(run.steps_per_epoch):
        try:
            values = run.train_step(batches).numpy()
        except tf.errors.OpError as error:  # e.g. an image file that cannot be decoded: let the task name it
            explained = task.explain_data_error(error) if hasattr(task, "explain_data_error") else None
            if explained is None:
                raise
            raise explained from error
        raise_pending_stop()  # a Ctrl-C whose KeyboardInterrupt TensorFlow's callbacks dropped
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
    return running, progbar, time.perf_counter() - started


def _end_epoch(run: _Run, epoch: int, running: dict[str, float], progbar: Any, seconds: float) -> None:
    """After the steps of 0-based ``epoch``: the checkpoint first, with a record saying what is left of the epoch
    (an evaluation that fails, e.g. an error, Ctrl-C or a full disk during a long COCO evaluation, loses no
    training: the next run evaluates it), then the evaluation if due, then the report."""
    train_config = run.config.train
    run.train_seconds += seconds
    run.trained_images += run.steps_per_epoch * run.global_batch
    run.history = {
        **running,
        "learning_rate": float(keras.ops.convert_to_numpy(run.optimizer.learning_rate)),
        "epoch_seconds": seconds,
    }
    every = train_config.eval_every_epochs
    due = bool(epoch + 1 == train_config.epochs or (every and (epoch + 1) % every == 0))
    record = {"history": _json_ready(run.history), "evaluation_due": due, "evaluation": None, "done": False}
    run.checkpointer.save(epoch + 1, record)
    if due:
        run.evaluation = record["evaluation"] = _json_ready(run.task.evaluate(run.model, run.strategy))
    progbar.update(run.steps_per_epoch, list(running.items()), finalize=True)
    _report_epoch(run.checkpointer, run.writer, epoch + 1, record, run.chief, run.verbose)


def _write_results(run: _Run) -> dict:
    """The run's final metrics; the chief writes them (``metrics.json``) and the weights, atomically. A run with
    nothing left to train and no evaluation stored evaluates the restored model first."""
    config, train_config = run.config, run.config.train
    evaluation = run.evaluation if run.evaluation is not None else run.task.evaluate(run.model, run.strategy)
    metrics = {
        "name": config.name,
        "epochs": train_config.epochs,
        "replicas": run.strategy.num_replicas_in_sync,
        "global_batch_size": run.global_batch,
        **{k: v for k, v in run.history.items() if not k.startswith("eval_")},
        **{f"eval_{k}": v for k, v in evaluation.items()},
        "train_seconds_this_run": run.train_seconds,
        "train_images_per_second": run.trained_images / run.train_seconds if run.train_seconds else None,
        **run.task.run_summary(),
    }
    if run.chief:
        with files.atomic_path(os.path.join(config.output_dir, WEIGHTS_FILE)) as temp_path:
            run.model.save_weights(temp_path)
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
