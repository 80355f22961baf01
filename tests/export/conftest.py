"""Fixtures of the export tests: a tiny NIN and its Keras reference probabilities, random images, and running code
in a Python without kzoo. Helpers are fixtures (no test imports another test module or edits ``sys.path``)."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from kzoo.models.nin import build_nin, resolve_blocks

_CLASS_NAMES = ("circle", "square", "triangle")

_BLOCK_KZOO = """
import importlib.abc, sys

class NoKzoo(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "kzoo" or name.startswith("kzoo."):
            raise ImportError("kzoo is blocked in this process")
        return None

sys.meta_path.insert(0, NoKzoo())
try:
    import kzoo
except ImportError:
    pass
else:
    raise SystemExit("kzoo was importable")
"""


@pytest.fixture(scope="session")
def class_names() -> list[str]:
    """The 3 class names of the tiny NIN."""
    return list(_CLASS_NAMES)


@pytest.fixture(scope="session")
def tiny_nin():
    """``tiny_nin(channels=3, width=8, seed=0)``: a NIN on 16 x 16 x ``channels`` images, 3 classes (907 parameters
    at width 8, 3091 at width 16)."""

    def build(channels: int = 3, width: int = 8, seed: int = 0) -> keras.Model:
        keras.utils.set_random_seed(seed)
        blocks = resolve_blocks(
            "custom",
            [
                {"filters": [width, width], "kernel_size": 3},
                {"filters": [width], "kernel_size": 3, "pool": False, "dropout": False},
            ],
        )
        return build_nin(keras.Input((16, 16, channels)), blocks, num_classes=len(_CLASS_NAMES))

    return build


@pytest.fixture(scope="session")
def keras_probabilities():
    """``keras_probabilities(model, pixels)``: the Keras model's probabilities [N, K] for pixels [N, H, W, C] in
    0..255."""

    def probabilities(model: keras.Model, pixels: np.ndarray) -> np.ndarray:
        return keras.ops.convert_to_numpy(model(pixels.astype(np.float32) / 127.5 - 1.0, training=False))

    return probabilities


@pytest.fixture(scope="session")
def run_without_kzoo():
    """``run_without_kzoo(code, cwd)``: run Python ``code`` in a subprocess in which ``import kzoo`` fails (a meta
    path finder blocks it), and check that it exits cleanly without having imported any kzoo module."""

    def run(code: str, cwd) -> None:
        script = (
            _BLOCK_KZOO + textwrap.dedent(code) + "\nassert not any(name.startswith('kzoo') for name in sys.modules)\n"
        )
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]

    return run


@pytest.fixture(scope="session")
def model(tiny_nin) -> keras.Model:
    return tiny_nin()


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """32 random uint8 images [32, 16, 16, 3]."""
    return np.random.default_rng(1).integers(0, 256, size=(32, 16, 16, 3), dtype=np.uint8)


def tree_modes(root) -> dict[str, int]:
    """Permission bits of ``root`` and everything under it, by path relative to ``root``."""
    modes = {".": os.stat(root).st_mode & 0o777}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            modes[os.path.relpath(path, root)] = os.stat(path).st_mode & 0o777
    return modes


@pytest.fixture(scope="session")
def file_modes():
    """``file_modes(root)``: ``{relative path: permission bits}`` of ``root`` and everything under it."""
    return tree_modes
