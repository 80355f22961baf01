"""Evaluation faults: bad geometry must never reach pycocotools unchecked (it crashes the process), and a failed
evaluation during training loses no training (the epoch's checkpoint is saved first; the next run evaluates the
restored model instead of training the epoch again)."""

from __future__ import annotations

import copy
import errno
import json
from pathlib import Path

import pytest

from kzoo.config import config_from_dict
from kzoo.tasks import task_for
from kzoo.training import loop
from kzoo.training.checkpoints import EPOCH_RECORD

REPO_ROOT = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------------------------------- training loop

# a deterministic tiny NIN (no dropout, batch norm or augmentation): 2 steps per epoch
TINY_NIN = {
    "name": "tiny",
    "model": {"variant": "custom", "classes": 5, "input_shape": [16, 16, 3], "dropout_rate": 0.0,
              "use_batch_norm": False,
              "blocks": [{"filters": [8, 8]}, {"filters": [8], "pool": False, "dropout": False}]},
    "data": {"source": "shapes", "train_examples": 64, "eval_examples": 20, "image_size": 16, "crop_padding": 0,
             "horizontal_flip": False},
    "train": {"epochs": 2, "batch_size": 32, "learning_rate": 0.05, "schedule": "constant", "warmup_epochs": 0.0,
              "eval_every_epochs": 1},
}  # fmt: skip
TIMING_KEYS = ("epoch_seconds", "train_seconds_this_run", "train_images_per_second")


def _task(output_dir: Path, fail_with: BaseException | None = None, **train):
    """The tiny NIN's task, counting its train steps and evaluations (``task.counts``); with ``fail_with``, its
    first evaluation raises that instead."""
    values = copy.deepcopy(TINY_NIN)
    values["train"].update(train)
    task = task_for(config_from_dict({**values, "output_dir": str(output_dir)}))
    task.counts = {"steps": 0, "evaluations": 0}
    make_train_step, evaluate = task.make_train_step, task.evaluate

    def counting_make_train_step(*args, **kwargs):
        step = make_train_step(*args, **kwargs)

        def counted(iterator):
            task.counts["steps"] += 1
            return step(iterator)

        return counted

    def failing_evaluate(*args, **kwargs):
        task.counts["evaluations"] += 1
        if fail_with is not None and task.counts["evaluations"] == 1:
            raise fail_with
        return evaluate(*args, **kwargs)

    task.make_train_step, task.evaluate = counting_make_train_step, failing_evaluate
    return task


def _without_timings(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING_KEYS}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """``metrics.json`` of the tiny NIN trained without a fault."""
    output = tmp_path_factory.mktemp("uninterrupted")
    task = _task(output)
    loop.train(task, verbose=0)
    assert task.counts == {"steps": 4, "evaluations": 2}
    return json.loads((output / loop.METRICS_FILE).read_text())


@pytest.mark.parametrize("fault", [
    RuntimeError("the evaluation crashed"),
    KeyboardInterrupt(),
    OSError(errno.ENOSPC, "No space left on device"),
], ids=["error", "ctrl-c", "full-disk"])  # fmt: skip
def test_failed_evaluation_resumes_by_evaluating_not_retraining(fault, uninterrupted, tmp_path):
    """Epoch 1's evaluation fails: its checkpoint is there; the next run evaluates epoch 1 before training epoch 2
    (2 train steps, not 4) and ends with the uninterrupted run's metrics."""
    failing = _task(tmp_path, fail_with=fault)
    with pytest.raises(type(fault)):
        loop.train(failing, verbose=0)
    assert failing.counts == {"steps": 2, "evaluations": 1}
    assert (tmp_path / "checkpoints" / "ckpt-1.index").exists() and not (tmp_path / loop.METRICS_FILE).exists()
    record = json.loads((tmp_path / "checkpoints" / EPOCH_RECORD).read_text())
    assert record["epoch"] == 1 and record["evaluation_due"] and record["evaluation"] is None and not record["done"]

    resumed = _task(tmp_path)
    metrics = loop.train(resumed, verbose=0)
    assert resumed.counts == {"steps": 2, "evaluations": 2}  # epoch 1's evaluation, epoch 2 trained and evaluated
    stored = json.loads((tmp_path / loop.METRICS_FILE).read_text())
    assert _without_timings(stored) == _without_timings(uninterrupted)
    assert _without_timings(metrics) == _without_timings(uninterrupted)


def test_failed_last_evaluation_trains_nothing_again(uninterrupted, tmp_path, capsys):
    """The last epoch's evaluation fails: the next run restores the last checkpoint, trains no step, evaluates once,
    and writes the uninterrupted run's metrics (the epoch's running metrics come from the checkpoint's record)."""
    failing = _task(tmp_path, fail_with=RuntimeError("the evaluation crashed"), eval_every_epochs=0)
    failing.counts["evaluations"] = 0
    with pytest.raises(RuntimeError, match="the evaluation crashed"):
        loop.train(failing, verbose=0)
    assert failing.counts == {"steps": 4, "evaluations": 1}
    assert (tmp_path / "checkpoints" / "ckpt-2.index").exists()

    resumed = _task(tmp_path, eval_every_epochs=0)
    metrics = loop.train(resumed, verbose=1)
    assert resumed.counts == {"steps": 0, "evaluations": 1}
    out = capsys.readouterr().out
    assert "evaluating epoch 2 first (its evaluation did not finish)" in out and "Epoch 2/2" not in out
    expected = {k: v for k, v in _without_timings(uninterrupted).items()}
    assert _without_timings(metrics) == expected
    # finished: a third run returns the stored metrics, trains and evaluates nothing
    again = _task(tmp_path, eval_every_epochs=0)
    assert loop.train(again, verbose=0)["already_finished"] is True and again.counts == {"steps": 0,
                                                                                        "evaluations": 0}


def test_a_record_of_an_unsaved_checkpoint_is_ignored(tmp_path):
    """Killed between writing epoch 2's record and saving its checkpoint: the run resumes from checkpoint 1 and
    trains epoch 2 again (the record, of another epoch, is not used)."""
    import keras

    from kzoo.training.checkpoints import EpochCheckpointer

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    checkpointer = EpochCheckpointer(str(tmp_path), chief=True, model=model)
    checkpointer.save(1, {"history": {"loss": 1.0}, "done": True})
    checkpointer.write_record(2, {"history": {"loss": 0.5}, "done": False})
    restored = EpochCheckpointer(str(tmp_path), chief=True, model=model)
    assert restored.restore_latest() == 1
    assert restored.read_record(1) is None and restored.read_record(2) == {"history": {"loss": 0.5}, "done": False}
    (tmp_path / EPOCH_RECORD).write_text("{not json")
    assert restored.read_record(2) is None
