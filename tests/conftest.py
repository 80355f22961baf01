import copy
import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TORCH_AVAILABLE = all(importlib.util.find_spec(name) for name in ("torch", "torchvision"))

_PRELUDE = """
import sys
import numpy as np
import torch
import torchvision
torch.set_grad_enabled(False)
inputs = dict(np.load(sys.argv[1]))
outputs = {}
"""
_EPILOGUE = """
np.savez(sys.argv[2], **{k: np.asarray(v) for k, v in outputs.items()})
"""


@pytest.fixture
def torch_run(tmp_path):
    """Run torch/torchvision code in a subprocess and return its ``outputs`` dict of arrays.

    TensorFlow and torch crash (segfault) when both compute in one process here, so reference values
    from torchvision are computed in a separate Python. The code sees ``inputs`` (the keyword arrays),
    ``np``, ``torch``, ``torchvision`` and fills ``outputs``. Skips when torch/torchvision are absent.
    """
    if not TORCH_AVAILABLE:
        pytest.skip("torch and torchvision are not installed (pip install torch==2.14.1 torchvision==0.29.1)")

    def run(code: str, **arrays: np.ndarray) -> dict[str, np.ndarray]:
        in_path, out_path = tmp_path / "torch_in.npz", tmp_path / "torch_out.npz"
        np.savez(in_path, **arrays)
        script = _PRELUDE + textwrap.dedent(code) + _EPILOGUE
        done = subprocess.run(
            [sys.executable, "-c", script, str(in_path), str(out_path)], capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            pytest.fail(f"torch reference failed:\n{done.stderr[-3000:]}")
        return dict(np.load(out_path))

    return run


# A Mask R-CNN of ~60k parameters on 64 x 64 shapes. Every anchor and every RoI candidate is sampled
# (sample budgets above the candidate counts, positive fractions 1), so a step does not depend on how the
# sampling draws and one device and two replicas must agree.
TINY_MASK_RCNN = {
    "task": "mask_rcnn",
    "name": "tiny_mask_rcnn",
    "model": {
        "num_classes": 4,
        "backbone": {"name": "small_convnet", "width": 0.25, "norm": "group"},
        "fpn": {"channels": 16},
        "anchors": {"sizes": [8, 16, 32, 64, 128], "aspect_ratios": [1.0]},
        "rpn": {
            "pre_nms_top_k_train": 50,
            "post_nms_top_k_train": 30,
            "pre_nms_top_k_test": 50,
            "post_nms_top_k_test": 20,
            "samples_per_image": 2000,
            "positive_fraction": 1.0,
        },
        "roi_sampling": {"samples_per_image": 64, "positive_fraction": 1.0},
        "box_head": {"fc_dim": 32},
        "mask_head": {"num_convs": 1, "channels": 16},
        "detection": {"max_detections": 10},
        "input": {"min_size": 64, "max_size": 64},
    },
    "data": {
        "source": "shapes",
        "shapes_image_size": 64,
        "train_examples": 8,
        "eval_examples": 4,
        "max_instances": 4,
        "mask_size": 28,
        "horizontal_flip": False,
    },
    "train": {
        "epochs": 1,
        "batch_size": 2,
        "learning_rate": 0.01,
        "weight_decay": 1e-4,
        "schedule": "constant",
        "warmup_epochs": 0.0,
        "gradient_clip_norm": 10.0,
        "seed": 0,
    },
    "strategy": {"kind": "auto"},
}


def _tiny_mask_rcnn(output_dir, **sections) -> dict:
    config = copy.deepcopy(TINY_MASK_RCNN)
    config["output_dir"] = str(output_dir)
    for section, values in sections.items():
        config[section].update(values)
    return config


@pytest.fixture
def tiny_mask_rcnn():
    """``tiny_mask_rcnn(output_dir, **sections) -> dict``: ``TINY_MASK_RCNN`` writing to ``output_dir``, with some
    keys of its sections replaced."""
    return _tiny_mask_rcnn


@pytest.fixture
def umask_022():
    """Run the test under the usual umask 022 (files 0644, folders 0755), whatever the runner's umask."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)
