"""Reading torchvision ``.pth`` files without torch in this process.

torch and TensorFlow crash when both compute in one process here, so ``.pth`` files are read by torch in a
child Python process (:func:`read_torchvision_checkpoint`) that hands NumPy arrays back through an ``.npz``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np

#: Why a conversion cannot run; the ``ImportError`` message when torch is missing.
NO_TORCH = (
    "reading torchvision checkpoints needs torch (pip install torch==2.14.1); it is needed once, to convert "
    "the .pth file into a Keras .weights.h5 file"
)

_READ_SCRIPT = """
import sys
import numpy as np
import torch
state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
if isinstance(state, dict) and "model" in state and not torch.is_tensor(state["model"]):
    state = state["model"]  # a training checkpoint (torchvision's references/detection/train.py)
arrays = {k: v.detach().cpu().float().numpy() if v.is_floating_point() else v.detach().cpu().numpy()
          for k, v in state.items() if torch.is_tensor(v)}
if not arrays:
    raise SystemExit("no tensors in the checkpoint")
np.savez(sys.argv[2], **arrays)
"""


def torch_available() -> bool:
    """Whether ``torch`` can be imported (without importing it)."""
    return importlib.util.find_spec("torch") is not None


def read_torchvision_checkpoint(pth_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A torchvision ``.pth`` state dict as NumPy arrays (floating tensors as float32).

    torch reads the file in a child Python process (``torch.load(weights_only=True)``; TensorFlow and torch
    crash when both compute in one process), which writes an ``.npz`` that this process reads.

    Args:
        pth_path: a file written by ``torch.save(model.state_dict(), ...)`` (or a training checkpoint with a
            ``"model"`` entry).

    Returns:
        ``{key: array}`` in the file's order.

    Raises:
        FileNotFoundError: no such file.
        ImportError: torch is not installed.
        ValueError: torch cannot read the file.
    """
    pth_path = os.fspath(pth_path)
    if not os.path.isfile(pth_path):
        raise FileNotFoundError(f"torchvision checkpoint not found: {pth_path}")
    if not torch_available():
        raise ImportError(NO_TORCH)
    with tempfile.TemporaryDirectory(prefix="kzoo-torchvision-") as tmp:
        npz = os.path.join(tmp, "state.npz")
        done = subprocess.run(
            [sys.executable, "-c", _READ_SCRIPT, pth_path, npz], capture_output=True, text=True, check=False
        )
        if done.returncode != 0 or not os.path.isfile(npz):
            raise ValueError(f"cannot read {pth_path} as a torch checkpoint:\n{done.stderr.strip()[-2000:]}")
        with np.load(npz) as data:
            return {key: data[key] for key in data.files}
