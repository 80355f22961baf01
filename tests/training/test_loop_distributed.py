"""The trainer under tf.distribute: two mirrored replicas match one device; two loopback workers train.

Every training run is a subprocess (see ``conftest.py``): logical devices and multi-worker collectives
must be configured before TensorFlow's first op.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-6


def test_two_mirrored_replicas_match_one_device(training, tmp_path):
    """One SGD step on a global batch of 32: 2 x 16 on MirroredStrategy(cpu:0, cpu:1) vs 32 on cpu:0."""
    one_device = {"kind": "one_device", "devices": ["/cpu:0"]}
    mirrored = {"kind": "mirrored", "devices": ["/cpu:0", "/cpu:1"]}
    # both processes see two logical CPUs; the one-device run uses only the first
    one = training.start(
        "one_device", training.config(tmp_path / "one", train={"batch_size": 32}, strategy=one_device), logical_cpus=2
    )
    two = training.start(
        "mirrored", training.config(tmp_path / "two", train={"batch_size": 16}, strategy=mirrored), logical_cpus=2
    )
    training.wait([one, two])
    one_summary, one_initial, one_final = one.result()
    two_summary, two_initial, two_final = two.result()

    for summary, replicas in ((one_summary, 1), (two_summary, 2)):
        assert summary["metrics"]["replicas"] == replicas
        assert summary["variable_copies"] == replicas
        assert summary["metrics"]["global_batch_size"] == 32
        assert summary["steps_per_epoch"] == 1 and summary["iterations"] == 1
    # the two replicas hold the same values after the (all-reduced) update
    assert two_summary["replica_spread"] == 0.0

    # same start: the seed fixes the initial weights whatever the strategy
    assert len(one_initial) == len(two_initial) == 8
    for a, b in zip(one_initial, two_initial, strict=True):
        np.testing.assert_array_equal(a, b)

    loss_one, loss_two = one_summary["metrics"]["train_loss"], two_summary["metrics"]["train_loss"]
    np.testing.assert_allclose(loss_two, loss_one, rtol=LOSS_RTOL)
    for index, (initial, a, b) in enumerate(zip(one_initial, one_final, two_final, strict=True)):
        # the step moved every variable far more than the tolerance, so the comparison means something
        assert np.max(np.abs(a - initial)) > 100 * WEIGHT_ATOL, f"variable {index} did not move"
        np.testing.assert_allclose(b, a, rtol=0, atol=WEIGHT_ATOL, err_msg=f"variable {index}")
    weight_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(one_final, two_final, strict=True))
    print(f"1 vs 2 replicas: loss {loss_one!r} vs {loss_two!r}, largest weight difference {weight_diff:.3g}")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start_workers(training, name: str, config: dict) -> list:
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return [
        training.start(
            f"{name}_worker{index}",
            config,
            env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})},
        )
        for index in range(2)
    ]


@pytest.mark.slow
def test_multi_worker_mirrored_two_loopback_workers(training, tmp_path):
    """Two workers train an epoch, then resume the same job for a second epoch from the chief's checkpoint."""
    output = tmp_path / "mwms"
    config = training.config(
        output,
        data={"train_examples": 64},  # a global batch of 2 x 16: 2 steps per epoch
        train={"batch_size": 16},
        strategy={"kind": "multi_worker"},
    )
    workers = _start_workers(training, "epoch1", config)
    training.wait(workers)

    summaries = [worker.result() for worker in workers]
    for summary, _, _ in summaries:
        assert summary["metrics"]["replicas"] == 2
        assert summary["steps_per_epoch"] == 2 and summary["iterations"] == 2
        assert summary["metrics"]["eval_examples"] == 20  # the partial eval batch is counted once
    # the workers' copies of the model agree
    for a, b in zip(summaries[0][2], summaries[1][2], strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=WEIGHT_ATOL)

    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["epochs"] == 1 and np.isfinite(metrics["train_loss"])
    assert (output / "checkpoints" / "ckpt-1.index").exists()
    assert (output / "model.weights.h5").exists() and (output / "metrics.json").exists()
    assert _leftovers(output) == []

    # a second epoch: both workers must resume at epoch 1 (from the chief's folder) or their collectives mismatch
    workers = _start_workers(training, "epoch2", {**config, "train": {**config["train"], "epochs": 2}})
    training.wait(workers)
    assert "after epoch 1 of 2" in workers[0].stdout
    for worker in workers:
        summary, _, _ = worker.result()
        assert summary["iterations"] == 2 * summary["steps_per_epoch"], worker.name
    assert (output / "checkpoints" / "ckpt-2.index").exists()
    assert json.loads((output / "metrics.json").read_text())["epochs"] == 2
    assert _leftovers(output) == []


def _leftovers(output: Path) -> list[str]:
    """Temporary checkpoint folders of non-chief workers (which must be gone)."""
    return sorted(str(p.relative_to(output)) for p in output.rglob(".worker_*"))
