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
        "num_classes": 5,
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
        r"\(model.num_classes was 5, now 3\)",
    ):
        train(_config(tmp_path, num_classes=3), verbose=0)
    # --fresh replaces it (the data set has 5 classes, so build a 5-class model of another width)
    metrics = train(
        _config(tmp_path, blocks=[{"filters": [4, 4]}, {"filters": [4], "pool": False}]), verbose=0, fresh=True
    )
    assert metrics["epochs"] == 1


def test_phases_and_the_phase_of_each_epoch():
    from kzoo.config import PhaseConfig, TrainConfig
    from kzoo.training.loop import phase_of, phases

    single = TrainConfig(epochs=3, trainable_layers="heads")
    assert phases(single) == [PhaseConfig(3, "heads")]
    two = TrainConfig(phases=(PhaseConfig(2, "heads"), PhaseConfig(3, "all", learning_rate=0.01)))
    assert two.epochs == 5
    assert [phase_of(two, epoch)[0] for epoch in range(5)] == [0, 0, 1, 1, 1]
    assert phase_of(two, 4)[1].learning_rate == 0.01


def test_learning_rate_schedule_per_phase():
    import numpy as np

    from kzoo.config import PhaseConfig, TrainConfig
    from kzoo.training.loop import learning_rate_schedule
    from kzoo.training.schedules import PhasedSchedule, WarmupSchedule

    one = learning_rate_schedule(TrainConfig(epochs=2, learning_rate=0.1, warmup_epochs=0.5), steps_per_epoch=10)
    assert isinstance(one, WarmupSchedule) and (one.total_steps, one.warmup_steps, one.peak) == (20, 5, 0.1)
    config = TrainConfig(
        learning_rate=0.1,
        warmup_epochs=1,
        schedule="constant",
        phases=(PhaseConfig(1, "heads"), PhaseConfig(2, "all", learning_rate=0.01)),
    )
    phased = learning_rate_schedule(config, steps_per_epoch=4)
    assert isinstance(phased, PhasedSchedule) and phased.starts == [0, 4]
    assert [s.warmup_steps for s in phased.schedules] == [4, 0]  # warmup in the first phase only
    np.testing.assert_allclose([float(phased(s)) for s in (0, 3, 4, 11)], [0.025, 0.1, 0.01, 0.01], rtol=1e-6)
