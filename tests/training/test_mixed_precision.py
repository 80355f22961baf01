"""Mixed precision training runs (bfloat16, float16 with loss scaling) and leaves the global policy alone."""

import keras
import pytest

from kzoo.config import ConfigError, config_from_dict
from kzoo.tasks import train


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_trains_and_restores_policy(precision, tmp_path):
    config = config_from_dict(
        {
            "output_dir": str(tmp_path),
            "precision": precision,
            "model": {
                "variant": "custom",
                "blocks": [{"filters": [8, 8]}, {"filters": [8], "pool": False}],
                "classes": 5,
                "input_shape": [16, 16, 3],
                "use_batch_norm": True,
            },
            "data": {"source": "shapes", "train_examples": 64, "eval_examples": 32, "image_size": 16},
            "train": {"epochs": 1, "batch_size": 32},
        }
    )
    metrics = train(config, verbose=0)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert metrics["eval_examples"] == 32 and metrics["train_loss"] > 0


def test_unknown_precision_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config key 'precision' must be one of .* got 'int4'"):
        config_from_dict({"output_dir": str(tmp_path), "precision": "int4"})
    with pytest.raises(ConfigError, match="'train.mixed_precision' has moved: use the top-level key 'precision'"):
        config_from_dict({"output_dir": str(tmp_path), "train": {"mixed_precision": "bfloat16"}})
