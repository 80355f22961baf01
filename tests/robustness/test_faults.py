"""Faults around the files kzoo writes: a run or an export killed with SIGKILL, damaged checkpoints, an output path
that cannot be written (a file in the way, no permission), a full disk. What must hold: the next run resumes or
re-exports, every file at a final path is complete and readable, no temporary file is left behind, and every
error is one line naming the path."""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from kzoo.cli import main
from kzoo.utils import files

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "name": "tiny",
    "model": {
        "variant": "custom",
        "blocks": [{"filters": [8, 8], "kernel_size": 3}, {"filters": [8], "pool": False, "dropout": False}],
        "num_classes": 5,
        "input_shape": [16, 16, 3],
        "use_batch_norm": False,
    },
    "data": {"source": "shapes", "train_examples": 64, "eval_examples": 32, "image_size": 16},
    "train": {"epochs": 1, "batch_size": 32, "learning_rate": 0.05},
}
TEMPORARY_MARKS = (files.TEMP_PREFIX, "_temp", ".tempstate", "checkpoint.tmp")


def _write_config(path: Path, output_dir: Path, **sections) -> Path:
    config = {**TINY, "output_dir": str(output_dir)}
    for section, values in sections.items():
        config[section] = {**config[section], **values}
    path.write_text(yaml.safe_dump(config))
    return path


def _start_cli(*args: str, log: Path) -> subprocess.Popen:
    """``python -m kzoo.cli ARGS`` with this worktree's kzoo, in its own session (killed alone)."""
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "kzoo.cli", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _kill_when(process: subprocess.Popen, ready, log: Path, timeout_s: float = 240) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` holds (polled every 5 ms); fail if it ends or stalls first."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            pytest.fail(f"the process to kill ended (exit {process.returncode}) or stalled:\n{log.read_text()[-3000:]}")
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if any(mark in p.name for mark in TEMPORARY_MARKS)]


def _intact_checkpoints(directory: Path) -> list[int]:
    intact = []
    for index in sorted(directory.glob("ckpt-*.index")):
        try:
            tf.train.load_checkpoint(str(index.with_suffix(""))).get_variable_to_shape_map()
        except Exception:  # noqa: BLE001 - a damaged checkpoint
            continue
        intact.append(int(index.stem.split("-")[1]))
    return intact


def _check_run_files(run: Path, epochs: int) -> None:
    """Every file of a finished run is complete in its format; no temporary file is left."""
    assert _leftovers(run) == []
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == epochs and 0.0 <= metrics["eval_accuracy"] <= 1.0
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == epochs
    with h5py.File(run / "model.weights.h5", "r") as weights:
        assert len(weights.keys()) > 0
    assert max(_intact_checkpoints(run / "checkpoints")) == epochs
    state = tf.train.get_checkpoint_state(str(run / "checkpoints"))
    assert state.model_checkpoint_path.endswith(f"ckpt-{epochs}")
    events = list((run / "logs").glob("events.*"))
    assert events
    for path in events:  # readable up to the last record TensorBoard shows
        assert sum(1 for _ in tf.compat.v1.train.summary_iterator(str(path))) >= 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 1-epoch run of the tiny NIN: ``(root, config path, run folder)``."""
    root = tmp_path_factory.mktemp("faults")
    config = _write_config(root / "tiny.yaml", root / "run")
    assert main(["train", str(config), "--quiet"]) == 0
    return root, config, root / "run"


# ------------------------------------------------------------------------------------------------ SIGKILL


@pytest.mark.slow
def test_training_killed_after_a_checkpoint_resumes_from_the_newest_intact_one(tmp_path, capsys):
    epochs = 6
    run = tmp_path / "run"
    config = _write_config(tmp_path / "tiny.yaml", run, data={"train_examples": 2048}, train={"epochs": epochs})
    log = tmp_path / "killed.log"
    process = _start_cli("train", str(config), "--quiet", log=log)
    _kill_when(process, lambda: (run / "checkpoints" / "ckpt-1.index").exists(), log)
    assert not (run / "metrics.json").exists() and not (run / "model.weights.h5").exists()
    on_disk = sorted(int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("ckpt-*.index"))
    intact = _intact_checkpoints(run / "checkpoints")
    # a checkpoint is only rotated away once a newer one is complete: the newest intact one is the newest written
    assert intact and max(intact) == max(on_disk) and len(intact) >= min(len(on_disk), 2) - 1, (on_disk, intact)

    assert main(["train", str(config)]) == 0
    out = capsys.readouterr().out
    newest = max(intact)
    assert (
        f"resuming {run} after epoch {newest} of {epochs} (checkpoint {run / 'checkpoints' / f'ckpt-{newest}'})" in out
    ), out
    _check_run_files(run, epochs)


def _complete_saved_model(version_dir: Path) -> None:
    loaded = tf.saved_model.load(str(version_dir))
    out = loaded.signatures["serving_default"](images=tf.zeros([1, 16, 16, 3], tf.float32))
    assert next(iter(out.values())).shape[0] == 1


def _complete_tflite(path: Path) -> None:
    from kzoo.export import run_classifier_tflite

    assert run_classifier_tflite(path, np.zeros((1, 16, 16, 3), np.uint8)).shape == (1, 5)


@pytest.mark.slow
def test_export_killed_leaves_nothing_half_written_and_reruns(trained, tmp_path, capsys):
    _, config, _ = trained
    out = tmp_path / "export"
    model_dir = out / "tiny"
    # SavedModel: killed while its temporary folder is being written
    log = tmp_path / "saved_model.log"
    process = _start_cli("export", str(config), "--format", "saved_model", "--output", str(out), log=log)
    _kill_when(
        process,
        lambda: model_dir.is_dir() and any(p.name.startswith(files.TEMP_PREFIX) for p in model_dir.iterdir()),
        log,
    )
    assert any(p.name.startswith(files.TEMP_PREFIX) for p in model_dir.iterdir())  # killed mid-write
    finals = [p for p in model_dir.iterdir() if not p.name.startswith(".")]
    for version_dir in finals:  # a final version folder is complete, or absent
        _complete_saved_model(version_dir)
    # TFLite: killed after the first of two files is in place (the second being converted)
    log = tmp_path / "tflite.log"
    process = _start_cli(
        "export", str(config), "--format", "tflite", "--quantize", "none", "dynamic", "--output", str(out), log=log
    )
    _kill_when(process, lambda: (out / "tiny_none.tflite").exists(), log)
    for path in out.glob("*.tflite"):
        _complete_tflite(path)

    # the re-runs succeed and clear the killed runs' temporary files
    assert main(["export", str(config), "--format", "saved_model", "--output", str(out)]) == 0
    # the killed run's first .tflite file is there: kzoo export refuses it without --overwrite
    assert (
        main(
            [
                "export",
                str(config),
                "--format",
                "tflite",
                "--quantize",
                "none",
                "dynamic",
                "--output",
                str(out),
                "--overwrite",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert _leftovers(out) == []
    for version_dir in model_dir.iterdir():
        _complete_saved_model(version_dir)
    for mode in ("none", "dynamic"):
        _complete_tflite(out / f"tiny_{mode}.tflite")


# ------------------------------------------------------------------------------------ damaged checkpoints
# (tests/training/test_checkpoints.py covers: newest data file truncated or missing, garbage index, state file
# missing, no intact checkpoint at all)


def _dense_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def _two_checkpoints(directory: Path) -> None:
    from kzoo.training.checkpoints import EpochCheckpointer

    model = _dense_model(0)
    checkpointer = EpochCheckpointer(str(directory), chief=True, model=model)
    for epoch in (1, 2):
        model.layers[-1].kernel.assign(np.full((3, 2), float(epoch), np.float32))
        checkpointer.save(epoch)


@pytest.mark.parametrize("damage", ["state_empty", "state_garbage", "index_truncated", "interrupted_save"])
def test_damaged_checkpoint_files(tmp_path, damage, capsys):
    from kzoo.training.checkpoints import EpochCheckpointer

    _two_checkpoints(tmp_path)
    expected_epoch = 2
    if damage == "state_empty":
        (tmp_path / "checkpoint").write_bytes(b"")
    elif damage == "state_garbage":
        (tmp_path / "checkpoint").write_text("model_checkpoint_path: {{{ not a proto")
    elif damage == "index_truncated":
        index = tmp_path / "ckpt-2.index"
        index.write_bytes(index.read_bytes()[:20])
        expected_epoch = 1
    else:  # what a save of epoch 3 killed half-way leaves behind
        (tmp_path / "ckpt-3_temp").mkdir()
        (tmp_path / "ckpt-3_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 10)
        (tmp_path / "ckpt-3.index.tempstate123").write_bytes(b"\0" * 10)
        (tmp_path / "checkpoint.tmp0a1b").write_text("partial")
    model = _dense_model(1)
    checkpointer = EpochCheckpointer(str(tmp_path), chief=True, model=model)
    assert checkpointer.restore_latest() == expected_epoch
    assert checkpointer.restored == str(tmp_path / f"ckpt-{expected_epoch}")
    kernel = keras.ops.convert_to_numpy(model.layers[-1].kernel)
    assert np.array_equal(kernel, np.full((3, 2), float(expected_epoch), np.float32))
    out = capsys.readouterr().out
    if damage.startswith("state"):
        assert f"checkpoint state file {tmp_path / 'checkpoint'} is damaged" in out
    if damage == "index_truncated":
        assert f"checkpoint {tmp_path / 'ckpt-2'} (epoch 2) cannot be read (" in out
    assert _leftovers(tmp_path) == []
    checkpointer.save(expected_epoch + 1)  # training goes on: the restored checkpoint stays beside the new one
    assert {expected_epoch, expected_epoch + 1} <= set(_intact_checkpoints(tmp_path))
    assert tf.train.get_checkpoint_state(str(tmp_path)).model_checkpoint_path.endswith(f"ckpt-{expected_epoch + 1}")


def test_run_with_a_damaged_newest_checkpoint_resumes_from_the_one_before(tmp_path, capsys):
    run = tmp_path / "run"
    config = _write_config(tmp_path / "tiny.yaml", run, train={"epochs": 2})
    assert main(["train", str(config), "--quiet"]) == 0
    data = run / "checkpoints" / "ckpt-2.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:16])
    (run / "metrics.json").unlink()  # as if killed right after the damaged checkpoint
    capsys.readouterr()
    assert main(["train", str(config), "--set", "train.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert f"checkpoint {run / 'checkpoints' / 'ckpt-2'} (epoch 2) cannot be read (" in out
    assert f"after epoch 1 of 3 (checkpoint {run / 'checkpoints' / 'ckpt-1'})" in out
    assert "Epoch 2/3" in out and "Epoch 3/3" in out
    assert _intact_checkpoints(run / "checkpoints") == [2, 3]
    _check_run_files(run, 3)


# ------------------------------------------------------------------------------ paths that cannot be written


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 600, err
    for needle in needles:
        assert needle in err, err
    return err


def test_output_paths_blocked_by_a_file(trained, tmp_path, capsys):
    _, config, run = trained
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    # train: output_dir is a file / lies under a file; fails before any work
    assert main(["train", str(config), "--set", f"output_dir={blocker}"]) == 2
    _one_line_error(capsys, f"cannot create the folder {blocker}: {blocker} is a file, not a folder")
    assert main(["train", str(config), "--set", f"output_dir={blocker / 'run'}"]) == 2
    _one_line_error(capsys, f"cannot create the folder {blocker / 'run'}: {blocker} is a file, not a folder")
    # export: the output folder is a file / lies under a file, for both formats
    for output in (blocker, blocker / "sub"):
        assert main(["export", str(config), "--format", "saved_model", "--output", str(output)]) == 2
        _one_line_error(capsys, f"{output / 'tiny'}", f"{blocker} is a file, not a folder")
        assert main(["export", str(config), "--format", "tflite", "--quantize", "none", "--output", str(output)]) == 2
        _one_line_error(capsys, f"cannot write {output / 'tiny_none.tflite'}: {blocker} is a file, not a folder")
    assert blocker.read_text() == "not a folder"
    # the file to write is a folder
    (tmp_path / "out" / "tiny_none.tflite").mkdir(parents=True)
    assert (
        main(["export", str(config), "--format", "tflite", "--quantize", "none", "--output", str(tmp_path / "out")])
        == 2
    )
    _one_line_error(capsys, f"cannot write {tmp_path / 'out' / 'tiny_none.tflite'}: it is a folder")
    assert _leftovers(tmp_path) == []


def _as_nobody(action) -> str:
    """Run ``action()`` in a forked child as user ``nobody`` (65534); returns what it returns (a string)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no TensorFlow here, only kzoo.utils.files
        try:
            os.setgid(65534)
            os.setuid(65534)
            result = action()
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            result = f"child failed: {type(error).__name__}: {error}"
        os.write(write_end, result.encode()[:4000])
        os._exit(0)
    os.close(write_end)
    ready, _, _ = select.select([read_end], [], [], 60)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    result = os.read(read_end, 4096).decode() if ready else "child timed out"
    os.close(read_end)
    os.waitpid(pid, 0)
    return result


def test_read_only_output_folder():
    """No permission to write: a one-line PermissionError naming the path, the old file intact, nothing left.
    As root (CI) permissions do not apply, so the writes run in a forked child as user ``nobody``."""
    root = Path(tempfile.mkdtemp(prefix="kzoo-read-only-"))  # under /tmp: reachable by nobody, unlike tmp_path
    folder = root / "read_only"
    folder.mkdir()
    files.write_json(folder / "metrics.json", {"old": 1})
    os.chmod(folder, 0o555)

    def attempt() -> str:
        messages = []
        for write in (
            lambda: files.write_json(folder / "metrics.json", {"new": 2}),
            lambda: files.make_directory(folder / "run"),
            lambda: files.atomic_directory(folder / "tiny" / "1").__enter__(),
        ):
            try:
                write()
                messages.append("no error")
            except PermissionError as error:
                messages.append(str(error))
        return "\n".join(messages)

    try:
        if os.geteuid() == 0:
            os.chmod(root, 0o755)  # nobody must reach the folder
            for parent in root.parents:
                if not os.stat(parent).st_mode & 0o001:
                    pytest.skip(f"user nobody cannot reach {root} ({parent} is not searchable by others)")
            result = _as_nobody(attempt)
        else:
            result = attempt()
    finally:
        os.chmod(folder, 0o755)
        after = sorted(p.name for p in folder.iterdir())
        old_metrics = json.loads((folder / "metrics.json").read_text())
        shutil.rmtree(root)
    lines = result.split("\n")
    assert len(lines) == 3, result
    assert lines[0] == f"cannot write {folder / 'metrics.json'}: Permission denied", result
    assert lines[1] == f"cannot create the folder {folder / 'run'}: Permission denied", result
    assert lines[2].startswith(f"cannot write {folder / 'tiny' / '1'}: ") and "Permission denied" in lines[2], result
    assert old_metrics == {"old": 1} and after == ["metrics.json"]


# ------------------------------------------------------------------------------------------------ full disk


def _full_disk_after(half: bool = True):
    """A replacement for ``files._write_file`` that writes half the bytes, then fails as a full disk does."""

    def write(path: str, data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2] if half else b"")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write


def test_full_disk_keeps_the_previous_files(trained, tmp_path, capsys, monkeypatch):
    _, config, run = trained
    # a file written through files.write_* (metrics, configs, annotations, TFLite files)
    metrics = tmp_path / "metrics.json"
    files.write_json(metrics, {"old": 1})
    monkeypatch.setattr(files, "_write_file", _full_disk_after())
    with pytest.raises(OSError, match=rf"^cannot write {metrics}: No space left on device$") as raised:
        files.write_json(metrics, {"new": 2})
    assert raised.value.errno == errno.ENOSPC
    assert json.loads(metrics.read_text()) == {"old": 1} and _leftovers(tmp_path) == []

    # a TFLite export over an earlier one
    out = tmp_path / "export"
    monkeypatch.undo()
    assert main(["export", str(config), "--format", "tflite", "--quantize", "none", "--output", str(out)]) == 0
    before = (out / "tiny_none.tflite").read_bytes()
    monkeypatch.setattr(files, "_write_file", _full_disk_after())
    assert (
        main(["export", str(config), "--format", "tflite", "--quantize", "none", "--output", str(out), "--overwrite"])
        == 2
    )
    _one_line_error(capsys, f"cannot write {out / 'tiny_none.tflite'}: No space left on device")
    assert (out / "tiny_none.tflite").read_bytes() == before and _leftovers(out) == []
    monkeypatch.undo()

    # a SavedModel: TensorFlow's file system reports a full disk as a TF error, not an OSError
    save = tf.saved_model.save

    def save_then_fill_the_disk(module, export_dir, **kwargs):
        save(module, export_dir, **kwargs)
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{export_dir}/variables/x.tempstate1; No space left on device"
        )

    monkeypatch.setattr(tf.saved_model, "save", save_then_fill_the_disk)
    assert main(["export", str(config), "--format", "saved_model", "--output", str(out)]) == 2
    _one_line_error(capsys, f"cannot write {out / 'tiny' / '1'}: No space left on device")
    assert sorted(p.name for p in (out / "tiny").iterdir()) == [] and _leftovers(out) == []
    monkeypatch.undo()

    # the final weights of a run (h5py writes them): the earlier weights and metrics stay
    weights_before = (run / "model.weights.h5").read_bytes()
    metrics_before = (run / "metrics.json").read_text()

    def fill_the_disk(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
        raise OSError(
            errno.ENOSPC,
            "Unable to synchronously write data (file write failed: errno = 28, error "
            "message = 'No space left on device')",
        )

    monkeypatch.setattr(keras.Model, "save_weights", fill_the_disk)
    assert main(["train", str(config), "--set", "train.epochs=2", "--quiet"]) == 2
    _one_line_error(capsys, f"cannot write {run / 'model.weights.h5'}: No space left on device")
    assert (run / "model.weights.h5").read_bytes() == weights_before
    assert (run / "metrics.json").read_text() == metrics_before and _leftovers(run) == []


def test_leftovers_of_dead_processes_are_removed_those_of_live_ones_kept(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = files._host()
    stale_file = tmp_path / f"{files.TEMP_PREFIX}{host}-{dead.pid}-abc.json"
    stale_dir = tmp_path / f"{files.TEMP_PREFIX}{host}-{dead.pid}-def"
    live = tmp_path / f"{files.TEMP_PREFIX}{host}-{os.getpid()}-ghi.json"
    other_host = tmp_path / f"{files.TEMP_PREFIX}otherhost-{dead.pid}-jkl.json"
    for path in (stale_file, live, other_host):
        path.write_text("partial")
    stale_dir.mkdir()
    (stale_dir / "saved_model.pb").write_bytes(b"partial")
    files.write_json(tmp_path / "metrics.json", {"ok": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["metrics.json", live.name, other_host.name])
