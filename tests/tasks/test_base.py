"""kzoo.tasks.base.Task: the shared code every task inherits (weights path, trained model, export prelude, the
train step and its metrics, the terminal tables)."""

from __future__ import annotations

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.config import TrainConfig
from kzoo.tasks.base import WEIGHTS_FILE, Task


class LinearModel(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1, kernel_initializer="zeros", name="dense")

    def call(self, x):
        return self.dense(x)

    def training_losses(self, batch, seed=None, weight=1.0):
        x, y = batch
        error = self(x) - y
        return {"total": weight * tf.reduce_mean(tf.square(error)), "mean_error": tf.reduce_mean(error)}


class LinearTask(Task):
    name = "linear_for_base_tests"
    config_class = types.SimpleNamespace
    metric_names = ("loss", "error")
    step_outputs = ("total", "mean_error")

    def build_model(self, init_weights=True):
        model = LinearModel()
        model(np.zeros((1, 2), np.float32))
        return model

    def loss_options(self):
        return {"weight": 2.0}


def _task(tmp_path, **train):
    config = types.SimpleNamespace(name="linear", output_dir=str(tmp_path / "run"), train=TrainConfig(**train))
    return LinearTask(config)


def test_weights_path_defaults_to_the_run_and_says_how_to_get_one(tmp_path):
    task = _task(tmp_path)
    with pytest.raises(FileNotFoundError, match="train first with kzoo train CONFIG, or pass --weights FILE"):
        task.weights_path()
    with pytest.raises(FileNotFoundError) as error:
        task.weights_path(str(tmp_path / "other.weights.h5"))
    assert "train first" not in str(error.value) and "other.weights.h5" in str(error.value)
    (tmp_path / "run").mkdir()
    model = task.build_model()
    model.save_weights(str(tmp_path / "run" / WEIGHTS_FILE))
    assert task.weights_path() == str(tmp_path / "run" / WEIGHTS_FILE)


def test_trained_model_loads_the_run_weights(tmp_path):
    task = _task(tmp_path)
    (tmp_path / "run").mkdir()
    model = task.build_model()
    model.dense.kernel.assign([[3.0], [-1.0]])
    model.save_weights(str(tmp_path / "run" / WEIGHTS_FILE))
    trained = task.trained_model()
    np.testing.assert_array_equal(trained.dense.kernel.numpy(), [[3.0], [-1.0]])


def test_export_target_checks_everything_before_any_work(tmp_path):
    task = _task(tmp_path)
    name, output = task.export_target("saved_model", None, None, (), 10**6, False)
    assert (name, output) == ("linear", str(tmp_path / "run" / "export"))
    with pytest.raises(ValueError, match="plain name"):
        task.export_target("saved_model", None, "../escape", (), 10**6, False)
    with pytest.raises(ValueError, match="max_image_pixels"):
        task.export_target("saved_model", None, None, (), 0, False)
    out = tmp_path / "tflite"
    out.mkdir()
    (out / "linear_int8.tflite").write_bytes(b"old")
    assert task.export_target("tflite", str(out), None, ("float32",), 10**6, False)[1] == str(out)
    with pytest.raises(FileExistsError, match="--overwrite"):
        task.export_target("tflite", str(out), None, ("float32", "int8"), 10**6, False)
    assert task.export_target("tflite", str(out), None, ("int8",), 10**6, True) == ("linear", str(out))
    assert (out / "linear_int8.tflite").read_bytes() == b"old"


def test_the_shared_train_step_reports_the_step_outputs_as_metrics(tmp_path):
    task = _task(tmp_path, seed=5, gradient_clip_norm=None)
    strategy = tf.distribute.get_strategy()
    model = task.build_model()
    optimizer = keras.optimizers.SGD(0.05)
    optimizer.build(model.trainable_variables)
    x = np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 1.0], [1.0, 1.0]], np.float32)
    y = x @ np.array([[0.5], [-0.5]], np.float32)
    iterator = iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors((x, y)).repeat()))
    step = task.make_train_step(model, optimizer, strategy, global_batch=4)
    totals = np.zeros(2)
    for _ in range(3):
        totals += step(iterator).numpy()
    first = 2.0 * np.mean(y**2)  # loss_options: weight 2 on a zero model
    assert totals[0] / 3 < first
    metrics = task.step_metrics(totals, 3)
    assert list(metrics) == ["loss", "error"] and metrics["loss"] == pytest.approx(totals[0] / 3)


def test_tables_format_floats_and_leave_out_lists(tmp_path):
    task = _task(tmp_path)
    title, rows = task.train_table({"accuracy": 0.123456, "epochs": 3, "history": [1, 2]})
    assert title == "kzoo train linear" and rows == [("metric", "value"), ("accuracy", "0.1235"), ("epochs", "3")]
    assert task.evaluate_table({"ap": 0.5})[1][1] == ("ap", "0.5000")
    title, rows = task.export_table("tflite", [{"path": "a.tflite", "bytes": 2_500_000}])
    assert title == "kzoo export linear (tflite)" and rows[1] == ("a.tflite", "2.50 MB")
    assert task.predict_table([{"image": "x.png", "output": "x_out.png"}])[1][1] == ("x.png", "x_out.png")


def test_the_contract_methods_a_task_must_write_say_so(tmp_path):
    task = _task(tmp_path)
    for call in (
        lambda: task.training_data(4),
        lambda: task.evaluate(),
        lambda: task.export("tflite"),
        lambda: task.predict([], str(tmp_path)),
        lambda: task.demo(),
    ):
        with pytest.raises(NotImplementedError):
            call()
    assert task.run_summary() == {}


def test_set_trainable_asks_the_model(tmp_path):
    asked = []
    task = _task(tmp_path)
    task.set_trainable(types.SimpleNamespace(set_trainable_preset=asked.append), "heads")
    assert asked == ["heads"]
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, trainable=False)], name="plain")
    task.set_trainable(plain, "all")  # a model without presets trains as built
    assert not plain.trainable_weights
    with pytest.raises(ValueError, match="model 'plain' has no trainable presets"):
        task.set_trainable(plain, "heads")


def test_pipelines_are_sharded_by_data():
    from kzoo.tasks.base import sharded_by_data

    dataset = sharded_by_data(tf.data.Dataset.range(4))
    policy = dataset.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA and list(dataset.as_numpy_iterator()) == [0, 1, 2, 3]
