"""Killed runs resume from their last completed epoch; diverging runs stop with an error."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kzoo.config import config_from_dict
from kzoo.tasks import train
from kzoo.training.loop import TrainingDivergedError


@pytest.mark.slow
def test_killed_run_resumes_from_last_epoch_and_matches_uninterrupted_run(training, tmp_path):
    """SIGKILL in the middle of epoch 2, restart: epoch 1 is kept and the end result is the uninterrupted one."""
    sections = {
        # 4 steps per epoch, reshuffled every epoch; cosine schedule with warmup: the step count matters
        "data": {"train_examples": 128},
        "train": {"epochs": 2, "schedule": "cosine", "warmup_epochs": 0.5},
    }
    uninterrupted = training.start("uninterrupted", training.config(tmp_path / "uninterrupted", **sections))
    output = tmp_path / "interrupted"
    config = training.config(output, **sections)
    # after the first step of epoch 2 the run stalls (so it is killed with unsaved progress in memory)
    doomed = training.start("doomed", config, step_sleep=[4 + 1, 600])
    deadline = time.monotonic() + 300
    while "sleeping before step 6" not in doomed.stdout:
        if doomed.process.poll() is not None or time.monotonic() > deadline:
            doomed.kill()
            pytest.fail(f"the run to kill ended or stalled (exit {doomed.process.poll()}):\n{doomed.stderr_tail()}")
        time.sleep(0.2)
    assert (output / "checkpoints" / "ckpt-1.index").exists()
    doomed.kill()
    assert not (output / "checkpoints" / "ckpt-2.index").exists()
    assert not (output / "metrics.json").exists()

    resumed = training.start("resumed", config)
    training.wait([uninterrupted, resumed])
    assert "after epoch 1 of 2" in resumed.stdout
    assert "Epoch 1/2" not in resumed.stdout and "Epoch 2/2" in resumed.stdout
    summary, _, final = resumed.result()
    reference_summary, _, reference_final = uninterrupted.result()
    assert summary["steps_per_epoch"] == 4
    assert summary["iterations"] == reference_summary["iterations"] == 2 * 4
    assert (output / "checkpoints" / "ckpt-2.index").exists() and (output / "metrics.json").exists()
    # same optimizer state and schedule position (restored) and same batches (the trainer skips the epochs a
    # resumed run already has; a fresh iterator would replay epoch 1's shuffle order); no dropout, no
    # augmentation and CPU kernels that are deterministic run to run: bitwise the same weights
    for index, (a, b) in enumerate(zip(final, reference_final, strict=True)):
        np.testing.assert_array_equal(a, b, err_msg=f"variable {index}")
    assert summary["metrics"]["train_loss"] == reference_summary["metrics"]["train_loss"]


def test_diverging_run_raises(training, tmp_path):
    """A learning rate of 1e12 blows the weights up in one step (the next forward pass overflows float32, for every
    seed tried; 1e6 can instead kill every ReLU and leave a finite loss): a clear error, no checkpoint, no results."""
    output = tmp_path / "diverge"
    config = training.config(
        output,
        data={"train_examples": 256},
        train={"epochs": 2, "learning_rate": 1e12, "weight_decay": 0.0, "schedule": "constant", "warmup_epochs": 0.0},
    )
    with pytest.raises(
        TrainingDivergedError, match=r"training loss became (nan|inf) at epoch 1, step \d+ \(.*\); lower"
    ):
        train(config_from_dict(config), verbose=0)
    assert not (output / "checkpoints").exists()
    assert not (output / "metrics.json").exists()
