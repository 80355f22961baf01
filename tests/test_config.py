import numpy as np
import pytest

from kzoo.config import ConfigError, load_config, parse_overrides
from kzoo.training.schedules import WarmupSchedule


def test_repo_configs_load():
    for name in ("nin_shapes", "nin_fashion_mnist"):
        config = load_config(f"configs/{name}.yaml")
        assert config.name == name


def test_overrides_and_unknown_keys(tmp_path):
    config = load_config("configs/nin_shapes.yaml", ["train.epochs=3", "model.input_shape=[16, 16, 3]"])
    assert config.train.epochs == 3 and config.model.input_shape == (16, 16, 3)
    with pytest.raises(ConfigError, match="'train.epoch'"):
        load_config("configs/nin_shapes.yaml", ["train.epoch=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  variant: mnist\n  widht: 2\n")
    with pytest.raises(ConfigError, match="'model.widht'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="'train.epochs' must be int"):
        load_config("configs/nin_shapes.yaml", ["train.epochs=many"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["train.epochs"])
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_warmup_cosine_and_step_schedules():
    cosine = WarmupSchedule(1.0, total_steps=110, warmup_steps=10)
    values = [float(cosine(s)) for s in (0, 9, 10, 60, 110)]
    np.testing.assert_allclose(values, [0.1, 1.0, 1.0, 0.5, 0.0], atol=1e-6)
    step = WarmupSchedule(1.0, total_steps=100, kind="step", step_boundaries=[50, 75], step_factor=0.1)
    np.testing.assert_allclose([float(step(s)) for s in (0, 49, 50, 80)], [1.0, 1.0, 0.1, 0.01], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown schedule"):
        WarmupSchedule(1.0, 10, kind="linear")
