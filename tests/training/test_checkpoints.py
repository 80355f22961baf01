"""Epoch checkpoints: resume from the newest intact one, whatever happened to the state file or the newest files."""

import os

import keras
import numpy as np
import pytest

from kzoo.training.checkpoints import EpochCheckpointer


def _model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def _saved_run(directory) -> list[np.ndarray]:
    """Checkpoints of epochs 1 and 2 (max_to_keep=2); returns the kernel saved at each epoch."""
    model = _model(0)
    checkpointer = EpochCheckpointer(str(directory), chief=True, model=model)
    kernels = []
    for epoch in (1, 2):
        model.layers[-1].kernel.assign(np.full((3, 2), float(epoch), np.float32))
        checkpointer.save(epoch)
        kernels.append(np.full((3, 2), float(epoch), np.float32))
    return kernels


def _restore(directory):
    model = _model(1)
    epoch = EpochCheckpointer(str(directory), chief=True, model=model).restore_latest()
    return epoch, keras.ops.convert_to_numpy(model.layers[-1].kernel)


def test_newest_checkpoint_is_restored(tmp_path):
    kernels = _saved_run(tmp_path)
    epoch, kernel = _restore(tmp_path)
    assert epoch == 2 and np.array_equal(kernel, kernels[1])


def test_missing_state_file_still_resumes_and_keeps_older_checkpoints(tmp_path):
    _saved_run(tmp_path)
    os.remove(tmp_path / "checkpoint")
    epoch, _ = _restore(tmp_path)
    assert epoch == 2  # not a silent restart at epoch 0
    model = _model(2)
    checkpointer = EpochCheckpointer(str(tmp_path), chief=True, model=model)
    assert checkpointer.restore_latest() == 2
    checkpointer.save(3)
    assert all((tmp_path / f"ckpt-{n}.index").exists() for n in (1, 2, 3))  # nothing rotated away


@pytest.mark.parametrize("damage", ["truncated", "garbage", "no_data"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage, capsys):
    kernels = _saved_run(tmp_path)
    data = tmp_path / "ckpt-2.data-00000-of-00001"
    if damage == "truncated":
        data.write_bytes(data.read_bytes()[:10])
    elif damage == "garbage":
        (tmp_path / "ckpt-2.index").write_bytes(b"\x00garbage" * 20)
    else:
        data.unlink()
    epoch, kernel = _restore(tmp_path)
    assert epoch == 1 and np.array_equal(kernel, kernels[0])
    assert f"checkpoint {tmp_path / 'ckpt-2'} (epoch 2) cannot be read" in capsys.readouterr().out


def test_no_intact_checkpoint_is_a_clear_error(tmp_path):
    _saved_run(tmp_path)
    for number in (1, 2):
        (tmp_path / f"ckpt-{number}.index").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"no intact checkpoint in .* \(2 damaged\); pass --fresh"):
        _restore(tmp_path)
