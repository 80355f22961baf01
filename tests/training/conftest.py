"""Fixtures for the training tests: tiny configs and training runs in their own processes.

Each run executes ``tests/training/run_training.py`` (``kzoo.training.loop.train`` plus a record
of the weights before and after) in a fresh Python: logical CPU devices and multi-worker collectives
must be configured before TensorFlow runs its first op, which a shared pytest process cannot promise.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parent / "run_training.py"
TIMEOUT_S = 300  # per run; generous because the test machine may be busy
FAILURE_GRACE_S = 30  # how long the other runs may go on once one has failed

# A NIN of about 1.5k parameters on 16 x 16 shapes, without dropout, batch norm or augmentation,
# so that one step is a deterministic function of the initial weights and the batch.
TINY_CONFIG = {
    "name": "tiny",
    "model": {
        "variant": "custom",
        "blocks": [
            {"filters": [8, 8], "kernel_size": 3},
            {"filters": [8], "kernel_size": 3, "pool": False, "dropout": False},
        ],
        "num_classes": 5,
        "input_shape": [16, 16, 3],
        "dropout_rate": 0.0,
        "use_batch_norm": False,
    },
    "data": {
        "source": "shapes",
        "train_examples": 32,
        "eval_examples": 20,
        "image_size": 16,
        "crop_padding": 0,
        "horizontal_flip": False,
    },
    "train": {
        "epochs": 1,
        "batch_size": 32,
        "optimizer": "sgd",
        "learning_rate": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "constant",
        "warmup_epochs": 0.0,
        "seed": 0,
    },
    "strategy": {"kind": "auto"},
}


def tiny_config(output_dir: str | os.PathLike, **sections: dict) -> dict:
    """``TINY_CONFIG`` writing to ``output_dir``, with some keys of its sections replaced."""
    config = copy.deepcopy(TINY_CONFIG)
    config["output_dir"] = os.fspath(output_dir)
    for section, values in sections.items():
        config[section].update(values)
    return config


class TrainingRun:
    """One ``run_training.py`` process, its logs and its recorded result."""

    def __init__(self, directory: Path, name: str, spec: dict, env: dict) -> None:
        self.name = name
        self.stdout_path = directory / f"{name}.stdout"
        self.stderr_path = directory / f"{name}.stderr"
        self.result_prefix = directory / f"{name}.result"
        spec_path = directory / f"{name}.spec.json"
        spec_path.write_text(json.dumps({**spec, "result": os.fspath(self.result_prefix)}))
        with open(self.stdout_path, "w") as stdout, open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, os.fspath(RUNNER), os.fspath(spec_path)],
                cwd=REPO_ROOT,
                env=env,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr_tail(self, chars: int = 4000) -> str:
        return self.stderr_path.read_text()[-chars:]

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only this run and its children
            self.process.wait()

    def result(self) -> tuple[dict, list[np.ndarray], list[np.ndarray]]:
        """The recorded metrics/iterations and the weights before and after training."""
        summary = json.loads(Path(f"{self.result_prefix}.json").read_text())
        with np.load(f"{self.result_prefix}.npz") as arrays:
            count = sum(1 for key in arrays.files if key.startswith("final_"))
            initial = [arrays[f"initial_{i}"] for i in range(count)]
            final = [arrays[f"final_{i}"] for i in range(count)]
        return summary, initial, final


class TrainingRuns:
    """Starts training runs in ``directory`` and waits for them (the ``training`` fixture)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.runs: list[TrainingRun] = []

    config = staticmethod(tiny_config)

    def start(self, name: str, config: dict, env: dict | None = None, **spec) -> TrainingRun:
        """Start ``run_training.py`` on ``config``; ``spec`` adds ``logical_cpus``, ``step_sleep``..."""
        environment = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
        environment.update(
            PYTHONPATH=os.pathsep.join(filter(None, [os.fspath(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            TF_CPP_MIN_LOG_LEVEL="3",
            **(env or {}),
        )
        run = TrainingRun(self.directory, name, {"config": config, **spec}, environment)
        self.runs.append(run)
        return run

    @staticmethod
    def wait(runs: list[TrainingRun], timeout_s: float = TIMEOUT_S) -> None:
        """Wait for every run to exit 0; on a timeout or a failure kill them all and fail with their stderr."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(run.process.poll() is None for run in runs):
            if any(run.process.poll() not in (None, 0) for run in runs):
                # a crashed worker leaves its peers blocked in collectives: give them a moment, not the full timeout
                deadline = min(deadline, time.monotonic() + FAILURE_GRACE_S)
            time.sleep(0.2)
        timed_out = [run.name for run in runs if run.process.poll() is None]
        for run in runs:
            run.kill()
        failed = [run.name for run in runs if run.process.returncode != 0]
        if timed_out or failed:
            report = "\n".join(
                f"--- {run.name} (exit {run.process.returncode}) stderr:\n{run.stderr_tail()}" for run in runs
            )
            problem = f"timed out after {timeout_s:.0f} s: {timed_out}" if timed_out else f"failed: {failed}"
            pytest.fail(f"{problem}\n{report}")

    def kill_all(self) -> None:
        for run in self.runs:
            run.kill()


@pytest.fixture
def training(tmp_path):
    """A ``TrainingRuns`` in a temporary folder; whatever still runs at teardown is killed."""
    runs = TrainingRuns(tmp_path)
    yield runs
    runs.kill_all()
