"""kzoo.applications.torchvision.checkpoint: .pth files read by torch in a child process."""

import numpy as np
import pytest

from kzoo.applications import torchvision as tv
from kzoo.applications.torchvision import checkpoint


def test_missing_file_and_missing_torch(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        tv.read_torchvision_checkpoint(tmp_path / "none.pth")
    monkeypatch.setattr(checkpoint, "torch_available", lambda: False)
    (tmp_path / "model.pth").write_bytes(b"x")
    with pytest.raises(ImportError, match="needs torch"):
        tv.read_torchvision_checkpoint(tmp_path / "model.pth")


TORCH_SAVE_SMALL = r"""
from collections import OrderedDict

state = OrderedDict(b=torch.arange(6, dtype=torch.float64).reshape(2, 3), a=torch.tensor([1, 2], dtype=torch.int64),
                    c=torch.ones(2, dtype=torch.float16))
torch.save(state, str(inputs["plain"]))
torch.save({"model": state, "epoch": 3, "args": {"lr": 0.1}}, str(inputs["training"]),
           _use_new_zipfile_serialization=False)
torch.save({"epoch": 3}, str(inputs["empty"]))
"""


def test_reads_state_dicts_and_training_checkpoints(torch_run, tmp_path):
    paths = {name: tmp_path / f"{name}.pth" for name in ("plain", "training", "empty")}
    torch_run(TORCH_SAVE_SMALL, **{name: np.array(str(path)) for name, path in paths.items()})
    for name in ("plain", "training"):
        state = tv.read_torchvision_checkpoint(paths[name])
        assert list(state) == ["b", "a", "c"], name  # the file's order; non-tensor entries are dropped
        np.testing.assert_array_equal(state["b"], np.arange(6).reshape(2, 3))
        assert (state["b"].dtype, state["a"].dtype, state["c"].dtype) == (np.float32, np.int64, np.float32)
    with pytest.raises(ValueError, match=r"(?s)cannot read .*empty\.pth.*no tensors"):
        tv.read_torchvision_checkpoint(paths["empty"])
