"""Mixed precision training runs (bfloat16, float16 with loss scaling) and leaves the global policy alone."""

import keras
import pytest

from kzoo.config import ConfigError, config_from_dict
from kzoo.tasks import train


def _config(tmp_path, precision):
    return config_from_dict(
        {
            "output_dir": str(tmp_path),
            "precision": precision,
            "model": {
                "variant": "custom",
                "blocks": [{"filters": [8, 8]}, {"filters": [8], "pool": False}],
                "num_classes": 5,
                "input_shape": [16, 16, 3],
                "use_batch_norm": True,
            },
            "data": {"source": "shapes", "train_examples": 64, "eval_examples": 32, "image_size": 16},
            "train": {"epochs": 1, "batch_size": 32},
        }
    )


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_trains_and_restores_policy(precision, tmp_path, monkeypatch):
    config = _config(tmp_path, precision)

    def refuse(policy):
        raise AssertionError(f"the process-wide Keras policy was set to {policy}")

    monkeypatch.setattr(keras.mixed_precision, "set_global_policy", refuse)  # the model takes dtype= instead
    metrics = train(config, verbose=0)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert metrics["eval_examples"] == 32 and metrics["train_loss"] > 0


def test_unknown_precision_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config key 'precision' must be one of .* got 'int4'"):
        config_from_dict({"output_dir": str(tmp_path), "precision": "int4"})
    with pytest.raises(ConfigError, match="'train.mixed_precision' has moved: use the top-level key 'precision'"):
        config_from_dict({"output_dir": str(tmp_path), "train": {"mixed_precision": "bfloat16"}})


@pytest.mark.parametrize(
    "precision,policy", [("float32", "float32"), ("bfloat16", "mixed_bfloat16"), ("float16", "mixed_float16")]
)
def test_the_training_model_takes_the_precision_and_the_trained_model_float32(precision, policy, tmp_path):
    from kzoo.tasks.classification import ClassificationTask

    task = ClassificationTask(_config(tmp_path, precision))
    model = task.build_model()
    assert model.get_layer("block1").dtype_policy.name == policy
    assert model.get_layer("block1").convs[0].dtype_policy.name == policy
    assert model.get_layer("head").dtype_policy.name == "float32"
    assert all(weight.dtype == "float32" for weight in model.weights)
    model.save_weights(tmp_path / "model.weights.h5")
    trained = task.trained_model()  # evaluation, export and prediction run in float32
    assert {layer.dtype_policy.name for layer in trained.layers} == {"float32"}
    assert keras.mixed_precision.global_policy().name == "float32"
