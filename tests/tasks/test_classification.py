"""kzoo.tasks.classification: the NIN task's data checks, its loss options and step, and its tables."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import tensorflow as tf

from kzoo.config import config_from_dict
from kzoo.tasks import task_for
from kzoo.tasks.classification import ClassificationTask, ranked_table

TINY_NIN = {
    "model": {
        "variant": "custom",
        "blocks": [{"filters": [8, 8]}, {"filters": [8], "pool": False}],
        "num_classes": 5,
        "input_shape": [16, 16, 3],
    },
    "data": {"source": "shapes", "train_examples": 64, "eval_examples": 32, "image_size": 16},
    "train": {"epochs": 1, "batch_size": 32, "label_smoothing": 0.1},
}


def _task(tmp_path, **model) -> ClassificationTask:
    values = copy.deepcopy(TINY_NIN)
    values["model"].update(model)
    task = task_for(config_from_dict({**values, "output_dir": str(tmp_path / "run")}))
    assert isinstance(task, ClassificationTask)
    return task


def test_ranked_table_puts_the_image_and_picture_on_the_first_rank_only():
    title, rows = ranked_table(
        "t",
        [
            {"image": "a.png", "top": [(3, "cat", 0.91234), (1, "dog", 0.05)], "cam": "a_cam.png"},
            {"image": "b.png", "top": [(0, "ant", 0.5)]},
        ],
    )
    assert title == "t"
    assert rows == [
        ("image", "rank", "class", "probability", "class map"),
        ("a.png", 1, "3 cat", "0.9123", "a_cam.png"),
        ("", 2, "1 dog", "0.0500", ""),
        ("b.png", 1, "0 ant", "0.5000", ""),
    ]


def test_loss_options_and_step_outputs_match_the_model(tmp_path):
    task = _task(tmp_path)
    assert task.loss_options() == {"label_smoothing": pytest.approx(0.1)}
    model = task.build_model(init_weights=False)
    images = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    losses = model.training_losses((images, np.array([0, 1, 2, 3])), **task.loss_options())
    assert set(task.step_outputs) == set(losses)
    assert 0.0 <= float(losses["accuracy"]) <= 1.0 and float(losses["total"]) > 0


def test_one_training_step_reports_loss_and_accuracy(tmp_path):
    task = _task(tmp_path)
    strategy = tf.distribute.get_strategy()
    dataset, steps = task.training_data(32)
    assert steps == 2
    model = task.build_model(init_weights=False)
    optimizer = tf.keras.optimizers.SGD(0.01)
    optimizer.build(model.trainable_variables)
    step = task.make_train_step(model, optimizer, strategy, 32)
    totals = step(iter(strategy.experimental_distribute_dataset(dataset))).numpy()
    metrics = task.step_metrics(totals, 1)
    assert list(metrics) == ["train_loss", "train_accuracy"]
    assert np.log(5) * 0.5 < metrics["train_loss"] < np.log(5) * 2 and 0.0 <= metrics["train_accuracy"] <= 1.0


def test_a_class_count_other_than_the_data_is_named(tmp_path):
    task = _task(tmp_path, num_classes=7)
    with pytest.raises(ValueError, match="model.num_classes is 7 but the data set has 5 classes"):
        task.training_data(32)
