"""The one training loop: finished runs, --fresh, and output folders that hold another model's run."""

import json
import os

import pytest

from kzoo.config import ConfigError, config_from_dict
from kzoo.tasks import train

TINY_NIN = {
    "model": {
        "variant": "custom",
        "blocks": [{"filters": [8, 8]}, {"filters": [8], "pool": False}],
        "classes": 5,
        "input_shape": [16, 16, 3],
    },
    "data": {"source": "shapes", "train_examples": 64, "eval_examples": 32, "image_size": 16},
    "train": {"epochs": 1, "batch_size": 32},
}


def _config(output_dir, **model):
    values = json.loads(json.dumps(TINY_NIN))
    values["model"].update(model)
    return config_from_dict({**values, "output_dir": str(output_dir)})


def test_a_finished_run_returns_its_results_and_writes_nothing(tmp_path):
    first = train(_config(tmp_path), verbose=0)
    stamp = os.stat(tmp_path / "metrics.json").st_mtime_ns
    again = train(_config(tmp_path), verbose=0)
    assert again["already_finished"] is True
    assert again["train_loss"] == pytest.approx(first["train_loss"])  # the stored losses, not a KeyError
    assert os.stat(tmp_path / "metrics.json").st_mtime_ns == stamp
    fresh = train(_config(tmp_path), verbose=0, fresh=True)
    assert "already_finished" not in fresh and os.stat(tmp_path / "metrics.json").st_mtime_ns != stamp


def test_a_run_of_another_model_is_a_clear_error(tmp_path):
    train(_config(tmp_path), verbose=0)
    with pytest.raises(
        ConfigError,
        match=f"output directory {tmp_path} holds a run of another model "
        r"\(model.classes was 5, now 3\)",
    ):
        train(_config(tmp_path, classes=3), verbose=0)
    # --fresh replaces it (the data set has 5 classes, so build a 5-class model of another width)
    metrics = train(
        _config(tmp_path, blocks=[{"filters": [4, 4]}, {"filters": [4], "pool": False}]), verbose=0, fresh=True
    )
    assert metrics["epochs"] == 1
