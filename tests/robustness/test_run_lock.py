"""One run, one writer: the lock of a run folder (``kzoo.training.run_lock``) in ``kzoo train`` / ``kzoo demo``.

Holders are other processes (a lock held by this pytest process would be re-entrant for it): a small Python that
takes the lock and waits, or a real ``kzoo train``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from kzoo.cli import main
from kzoo.training import run_lock
from kzoo.training.run_lock import LOCK_FILE, RunLockedError, read_holder

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "name": "tiny",
    "model": {
        "variant": "custom",
        "blocks": [{"filters": [4], "kernel_size": 3}, {"filters": [4], "pool": False, "dropout": False}],
        "num_classes": 5,
        "input_shape": [16, 16, 3],
        "dropout_rate": 0.0,
    },
    "data": {"source": "shapes", "train_examples": 8, "eval_examples": 4, "image_size": 16},
    "train": {"epochs": 1, "batch_size": 8, "schedule": "constant", "warmup_epochs": 0.0},
}
HOLDER = textwrap.dedent("""
    import sys, time
    from kzoo.training.run_lock import run_lock
    with run_lock(sys.argv[1], "training", "holder script"):
        print("locked", flush=True)
        time.sleep(600)
""")


def _env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }


def write_config(tmp_path: Path, output_dir: Path, **train) -> Path:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], **train}, "output_dir": str(output_dir)}))
    return config


class Holder:
    """A process holding the lock of ``output_dir`` until killed."""

    def __init__(self, output_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(output_dir)],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=REPO_ROOT,
        )
        assert self.process.stdout.readline().strip() == "locked"
        self.pid = self.process.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        self.process.wait(30)


@pytest.fixture
def holder(tmp_path):
    holders = []

    def start(output_dir: Path) -> Holder:
        holders.append(Holder(output_dir))
        return holders[-1]

    yield start
    for h in holders:
        h.kill()


def test_second_writer_is_refused_naming_the_holder(tmp_path, holder):
    run = tmp_path / "run"
    first = holder(run)
    with pytest.raises(RunLockedError) as caught:
        run_lock.acquire(run)
    message = str(caught.value)
    assert f"pid {first.pid}" in message and f"host {socket.gethostname()}" in message and "since 20" in message
    assert "holder script" in message and "\n" not in message
    assert caught.value.holder["pid"] == first.pid
    assert read_holder(run)["pid"] == first.pid


def test_kzoo_train_refused_while_held(tmp_path, holder, capsys):
    """``kzoo train`` (and ``--fresh``) on a folder another process holds: refused before anything is deleted or
    written, with one line naming the holder."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    kept = {"checkpoints/ckpt-3.index": "index", "metrics.json": "{}", "model.weights.h5": "w", "config.yaml": "x"}
    for name, text in kept.items():
        (run / name).write_text(text)
    config = write_config(tmp_path, run)
    first = holder(run)
    for extra in ([], ["--fresh"]):
        assert main(["train", str(config), "--quiet", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert f"pid {first.pid}" in err and "is in use by another kzoo run" in err and "nothing was changed" in err
        assert ("--fresh refused" if extra else "training refused") in err
        for name, text in kept.items():
            assert (run / name).read_text() == text, name
    assert not (run / "logs").exists()
    # the demo too (it trains into its own folder)
    assert main(["demo", "--config", str(config), "--output-dir", str(run), "--fresh"]) == 2
    assert f"pid {first.pid}" in capsys.readouterr().err
    assert (run / "checkpoints" / "ckpt-3.index").exists()


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path, holder):
    run = tmp_path / "run"
    first = holder(run)
    first.kill(signal.SIGKILL)  # no cleanup runs: the lock file stays, naming a dead pid
    assert read_holder(run)["pid"] == first.pid
    with run_lock.run_lock(run, command="taker"):
        assert read_holder(run)["pid"] == os.getpid() and read_holder(run)["command"] == "taker"
    assert not (run / LOCK_FILE).exists()


def test_pid_fallback_without_flock(tmp_path, monkeypatch, holder):
    """Where ``flock`` is missing: a lock file naming a live process of this host refuses; a dead one is stale."""
    monkeypatch.setattr(run_lock, "fcntl", None)
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {"pid": dead.pid, "host": socket.gethostname(), "since": "2026-01-01 00:00:00 UTC", "command": "old"}
    (run / LOCK_FILE).write_text(json.dumps(record))
    with run_lock.run_lock(run):
        assert read_holder(run)["pid"] == os.getpid()
    live = holder(tmp_path / "other")
    (run / LOCK_FILE).write_text(json.dumps({**record, "pid": live.pid}))
    with pytest.raises(RunLockedError, match=f"pid {live.pid} on host"):
        run_lock.acquire(run)


def test_lock_is_released_on_normal_exit_and_on_exceptions(tmp_path, capsys, monkeypatch):
    from kzoo.training import loop

    run = tmp_path / "run"
    config = write_config(tmp_path, run)
    assert main(["train", str(config), "--quiet"]) == 0
    assert not (run / LOCK_FILE).exists() and not run_lock._HELD

    def failing(*args, **kwargs):
        assert read_holder(run)["pid"] == os.getpid()  # held while training
        raise RuntimeError("boom")

    monkeypatch.setattr(loop, "_train", failing)
    with pytest.raises(RuntimeError, match="boom"):
        main(["train", str(config), "--quiet", "--fresh"])
    assert not (run / LOCK_FILE).exists() and not run_lock._HELD
    # and another process can take it now
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from kzoo.training.run_lock import acquire; acquire(sys.argv[1]); print('ok')",
            str(run),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert done.stdout.strip() == "ok", done.stderr
    with run_lock.run_lock(run):  # re-entrant in one process
        with run_lock.run_lock(run):
            pass
        assert (run / LOCK_FILE).exists()
    assert not (run / LOCK_FILE).exists()


def test_multi_worker_non_chief_does_not_take_the_lock(monkeypatch):
    from kzoo.training.strategy import will_be_chief

    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    for task, chief in (({"type": "worker", "index": 0}, True), ({"type": "worker", "index": 1}, False)):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
        assert will_be_chief("multi_worker") is chief
        assert will_be_chief("auto") is True
    with_chief = {**cluster, "chief": ["127.0.0.1:3"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}}))
    assert will_be_chief("multi_worker") is False
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": with_chief, "task": {"type": "chief", "index": 0}}))
    assert will_be_chief("multi_worker") is True


def _wait_for(condition, timeout_s: float = 240.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"the run exited early ({process.returncode}): {process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail("timed out")
        time.sleep(0.2)


@pytest.mark.slow
def test_two_kzoo_train_processes_on_one_folder(tmp_path):
    """A second ``kzoo train`` (here with ``--fresh``) while the first trains: refused, naming the first; the first
    trains on, untouched, and SIGTERM stops it with one line (exit 143)."""
    run = tmp_path / "run"
    config = write_config(tmp_path, run, epochs=100000)
    command = [sys.executable, "-m", "kzoo.cli", "train", str(config), "--quiet"]
    first = subprocess.Popen(
        command, env=_env(), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(lambda: list((run / "checkpoints").glob("ckpt-*.index")), process=first)
        second = subprocess.run(
            command + ["--fresh"], env=_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=240
        )
        assert second.returncode == 2, second.stderr
        err = second.stderr.strip()
        assert len(err.splitlines()) == 1 and f"pid {first.pid} on host" in err and "--fresh refused" in err, err
        assert first.poll() is None and list((run / "checkpoints").glob("ckpt-*.index"))  # nothing was deleted
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 143, err
    assert len(err.strip().splitlines()) == 1 and "stopped by SIGTERM" in err and "resumes" in err, err
    assert not (run / LOCK_FILE).exists()
