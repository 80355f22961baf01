"""Nothing lost, nothing silent: Ctrl-C, SIGTERM, a full disk or a refused write during ``kzoo train`` give one
line (what happened, the intact checkpoint and its epoch, how to resume) and a non-zero exit, never a traceback."""

from __future__ import annotations

import errno
import re
import signal
import subprocess
import sys

import pytest
import tensorflow as tf
from test_run_lock import REPO_ROOT, _env, _wait_for, write_config

from kzoo.cli import main
from kzoo.training import loop
from kzoo.training.checkpoints import EpochCheckpointer
from kzoo.training.run_lock import LOCK_FILE
from kzoo.utils import files


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.slow
def test_ctrl_c_while_training_one_line_and_the_run_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    config = write_config(tmp_path, run, epochs=100000)
    process = subprocess.Popen(
        [sys.executable, "-m", "kzoo.cli", "train", str(config), "--quiet"],
        env=_env(),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: list((run / "checkpoints").glob("ckpt-*.index")), process=process)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    line = _one_line(err)
    epoch = loop.last_checkpoint_epoch(str(run))
    assert line == (
        f"kzoo train: interrupted (Ctrl-C); the last checkpoint (epoch {epoch}, in {run}/checkpoints) "
        "is intact: the same command resumes from it"
    ), line
    assert not (run / LOCK_FILE).exists()
    # it does: one more epoch from there
    assert main(["train", str(config), "--set", f"train.epochs={epoch + 1}"]) == 0
    assert f"after epoch {epoch} of {epoch + 1}" in capsys.readouterr().out


def test_interrupt_before_the_first_checkpoint(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_train", interrupted)
    config = write_config(tmp_path, tmp_path / "run")
    assert main(["train", str(config), "--quiet", "--fresh"]) == 130
    line = _one_line(capsys.readouterr().err)
    assert "interrupted (Ctrl-C)" in line and "no checkpoint yet" in line and "without --fresh starts over" in line


def _fail_second_save(monkeypatch, error: BaseException) -> None:
    """Make the epoch-2 checkpoint save raise ``error`` (epoch 1's is written)."""
    save = EpochCheckpointer.save

    def failing_save(self, completed_epochs, *args, **kwargs):
        if completed_epochs == 2:
            raise error
        return save(self, completed_epochs, *args, **kwargs)

    monkeypatch.setattr(EpochCheckpointer, "save", failing_save)


@pytest.mark.parametrize(
    "error, words",
    [
        (OSError(errno.ENOSPC, "No space left on device", "run/checkpoints/ckpt-2_temp"), "no space left on device"),
        (
            tf.errors.ResourceExhaustedError(None, None, "ckpt-2_temp/part-0; No space left on device"),
            "no space left on device",
        ),
        (PermissionError(errno.EACCES, "Permission denied", "run/checkpoints"), "permission denied"),
        (
            tf.errors.PermissionDeniedError(None, None, "run/checkpoints/ckpt-2_temp; Permission denied"),
            "permission denied",
        ),
    ],
    ids=["ENOSPC", "tf-ENOSPC", "EACCES", "tf-EACCES"],
)
def test_full_disk_or_refused_write_while_saving(tmp_path, capsys, monkeypatch, error, words):
    run = tmp_path / "run"
    config = write_config(tmp_path, run, epochs=3)
    _fail_second_save(monkeypatch, error)
    assert main(["train", str(config), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    fix = "free some space" if "space" in words else "fix the permissions"
    assert line.startswith(f"kzoo train: error: {words}: "), line
    assert re.search(
        rf"the last checkpoint \(epoch 1, in {re.escape(str(run))}/checkpoints\) is intact: the same "
        rf"command resumes from it once you {fix}$",
        line,
    ), line
    assert not (run / LOCK_FILE).exists()
    monkeypatch.undo()
    assert main(["train", str(config), "--quiet"]) == 0  # the same command, with the disk fixed
    assert loop.read_run_metrics(str(run))["epochs"] == 3


def test_refused_write_of_the_results(tmp_path, capsys, monkeypatch):
    """EACCES writing metrics.json after the last epoch: its checkpoint is named."""
    write_json = files.write_json

    def refused(path, *args, **kwargs):
        if str(path).endswith("metrics.json"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return write_json(path, *args, **kwargs)

    monkeypatch.setattr(files, "write_json", refused)
    config = write_config(tmp_path, tmp_path / "run", epochs=2)
    assert main(["train", str(config), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "permission denied" in line and "metrics.json" in line and "(epoch 2," in line, line


def test_other_commands_interrupted(tmp_path, capsys, monkeypatch):
    """Ctrl-C outside training: one line, 130, nothing about checkpoints."""
    import kzoo.cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(kzoo.cli, "cmd_evaluate", interrupted)
    parser = kzoo.cli.build_parser
    monkeypatch.setattr(kzoo.cli, "build_parser", lambda: _with_func(parser(), "evaluate", interrupted))
    assert main(["evaluate", "configs/nin_shapes.yaml"]) == 130  # a config that loads: the command is reached
    assert _one_line(capsys.readouterr().err) == "kzoo evaluate: interrupted (Ctrl-C)"


def _with_func(parser, command, func):
    parser._subparsers._group_actions[0].choices[command].set_defaults(func=func)
    return parser
