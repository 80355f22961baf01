"""One task contract, found by registry: a toy third task, written here in a few lines, is trained, evaluated,
exported and run through the CLI without any change to ``cli.py``."""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from PIL import Image

from kzoo.cli import main
from kzoo.config import StrategyConfig, TrainConfig, load_config
from kzoo.tasks import TASKS, Task, register_task, task_for


@dataclasses.dataclass(frozen=True)
class ToyModel:
    init_weights: str | None = None


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """y = 2 x0 - x1 + 0.5, learned by one Dense layer."""

    task: str = "toy_regression"
    name: str = "toy"
    output_dir: str = "runs/toy"
    precision: str = "float32"
    model: ToyModel = ToyModel()
    train: TrainConfig = TrainConfig()
    strategy: StrategyConfig = StrategyConfig()


def _data(count=64, seed=0):
    x = np.random.default_rng(seed).uniform(-1, 1, (count, 2)).astype(np.float32)
    return x, (2 * x[:, :1] - x[:, 1:] + 0.5).astype(np.float32)


@register_task
class ToyTask(Task):
    name = "toy_regression"
    config_class = ToyConfig

    def training_data(self, global_batch):
        x, y = _data()
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch, drop_remainder=True).repeat(), len(
            x
        ) // global_batch

    def build_model(self, init_weights=True):
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)], name="toy")

    def make_train_step(self, model, optimizer, strategy, global_batch):
        def replica(x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(model(x) - y)) / global_batch
            optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
            return tf.stack([loss])

        @tf.function
        def step(iterator):
            return strategy.reduce("SUM", strategy.run(replica, args=next(iterator)), axis=None)

        return step

    def step_metrics(self, totals, steps):
        return {"loss": float(totals[0]) / steps}

    def set_trainable(self, model, preset):
        model.trainable = True

    def evaluate(self, model=None, strategy=None, weights=None, results=None, verbose=0):
        model = model if model is not None else self.trained_model(weights)
        x, y = _data(32, seed=1)
        return {"mse": float(np.mean((keras.ops.convert_to_numpy(model(x)) - y) ** 2))}

    def export(self, format, weights=None, output=None, **options):
        path = os.path.join(output or os.path.join(self.config.output_dir, "export"), "toy")
        self.trained_model(weights).export(path, format="tf_saved_model", verbose=False)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(path) for f in names)
        return [{"path": path, "bytes": size}]

    def predict(self, inputs, output_dir, weights=None, verbose=1):
        model, results = self.trained_model(weights), []
        os.makedirs(output_dir, exist_ok=True)
        for path in inputs:
            pixels = np.asarray(Image.open(path), np.float32) / 255.0
            value = float(keras.ops.convert_to_numpy(model(np.array([[pixels.mean(), 0.0]])))[0, 0])
            output = os.path.join(output_dir, os.path.basename(path) + ".txt")
            with open(output, "w") as f:
                f.write(f"{value}\n")
            results.append({"image": path, "output": output, "frames": 1, "seconds": 0.0})
        return results

    saved_model_outputs = frozenset({"output_0"})  # what Keras' tf_saved_model export names the Dense output

    @classmethod
    def predict_saved_model(cls, saved_model, inputs, output_dir=None, verbose=1):
        loaded = tf.saved_model.load(saved_model)
        results = []
        for path in inputs:
            pixels = np.asarray(Image.open(path), np.float32) / 255.0
            value = float(loaded.serve(np.array([[pixels.mean(), 0.0]], np.float32)).numpy()[0, 0])
            results.append({"image": path, "output": f"{value:.4f}", "frames": 1, "seconds": 0.0})
        return results


def test_registered_and_found_from_the_config(tmp_path):
    assert TASKS["toy_regression"] is ToyTask
    config_file = tmp_path / "toy.yaml"
    config_file.write_text(yaml.safe_dump({"task": "toy_regression", "output_dir": str(tmp_path / "run")}))
    config = load_config(config_file)
    assert isinstance(config, ToyConfig) and isinstance(task_for(config), ToyTask)
    with pytest.raises(ValueError, match="no task 'nope' is registered"):
        task_for(dataclasses.replace(config, task="nope"))


def test_the_cli_drives_a_task_it_does_not_know(tmp_path, capsys):
    config = tmp_path / "toy.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "toy_regression",
                "name": "toy",
                "output_dir": str(tmp_path / "run"),
                "train": {"epochs": 3, "batch_size": 8, "learning_rate": 0.05, "warmup_epochs": 0},
            }
        )
    )
    assert main(["train", str(config), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "kzoo train toy" in out and "eval_mse" in out
    assert (tmp_path / "run" / "model.weights.h5").is_file() and (tmp_path / "run" / "checkpoints").is_dir()
    assert main(["evaluate", str(config)]) == 0
    assert "mse" in capsys.readouterr().out
    assert main(["export", str(config), "--format", "saved_model"]) == 0
    assert (tmp_path / "run" / "export" / "toy" / "saved_model.pb").is_file()
    image = tmp_path / "gray.png"
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(image)
    assert main(["predict", str(image), "--config", str(config), "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "gray.png.txt").is_file()
    # an option the task's predict does not take is named, not ignored
    assert main(["predict", str(image), "--config", str(config), "--score-threshold", "0.3"]) == 2
    assert "--score-threshold is not an option of the toy_regression task's predict" in capsys.readouterr().err
    # its exported SavedModel is found by its outputs, run by the task, again without touching cli.py
    with open(tmp_path / "out" / "gray.png.txt") as f:
        expected = float(f.read())
    assert main(["predict", str(image), "--saved-model", str(tmp_path / "run" / "export" / "toy")]) == 0
    assert f"{expected:.4f}" in capsys.readouterr().out
    assert main(["predict", str(image), "--saved-model", str(tmp_path / "run" / "export" / "toy"), "--top", "2"]) == 2
    assert "--top is not an option of the toy_regression task's predict_saved_model" in capsys.readouterr().err


def test_a_saved_model_no_task_wrote_is_named(tmp_path):
    from kzoo.tasks.registry import task_class_for_saved_model

    with pytest.raises(FileNotFoundError, match="no SavedModel in"):
        task_class_for_saved_model(str(tmp_path))
    module = tf.Module()
    module.f = tf.function(lambda x: {"something": x * 2}, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "other" / "1"), signatures={"serving_default": module.f})
    with pytest.raises(
        ValueError, match=r"not a SavedModel kzoo exported \(serving_default outputs: \['something'\]\)"
    ):
        task_class_for_saved_model(str(tmp_path / "other"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "saved_model.pb").write_bytes(b"\xff not a protobuf")
    with pytest.raises(ValueError, match="not a readable SavedModel"):
        task_class_for_saved_model(str(tmp_path / "broken"))


def test_a_task_that_does_not_run_its_saved_models_says_what_to_give(tmp_path, capsys):
    module = tf.Module()
    outputs = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
    module.f = tf.function(lambda x: {k: x for k in outputs}, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "mrcnn" / "1"), signatures={"serving_default": module.f})
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert main(["predict", str(image), "--saved-model", str(tmp_path / "mrcnn")]) == 2
    err = capsys.readouterr().err
    assert "does not run mask_rcnn SavedModels" in err and "--config CONFIG" in err
