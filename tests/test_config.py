import pytest

from kzoo.config import ConfigError, load_config, parse_overrides


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


def test_nin_class_count_has_mask_rcnn_name_and_the_old_key_still_loads():
    from kzoo.config import config_from_dict

    new = config_from_dict({"model": {"num_classes": 7}})
    with pytest.warns(DeprecationWarning, match="'model.classes' has moved to 'model.num_classes'"):
        old = config_from_dict({"model": {"classes": 7}})
    assert new == old and new.model.num_classes == 7
    with pytest.warns(DeprecationWarning), pytest.raises(ConfigError, match="given too: keep one"):
        config_from_dict({"model": {"classes": 7, "num_classes": 7}})
