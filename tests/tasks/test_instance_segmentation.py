"""kzoo.tasks.instance_segmentation: the Mask R-CNN task's tables, class names, canvas and data checks, and its
train step (the model's training_losses through the shared step)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kzoo.config import config_from_dict
from kzoo.data.coco_categories import COCO_CATEGORIES
from kzoo.tasks import task_for
from kzoo.tasks.instance_segmentation import (
    AP_KEYS,
    InstanceSegmentationTask,
    ap_rows,
    canvas_size,
)


def _task(tmp_path, tiny_mask_rcnn, **sections) -> InstanceSegmentationTask:
    task = task_for(config_from_dict(tiny_mask_rcnn(tmp_path / "run", **sections)))
    assert isinstance(task, InstanceSegmentationTask)
    return task


def test_ap_rows_bbox_and_segm_then_one_row_per_class():
    metrics = {f"eval_{kind}_{key}": 0.1 * i for i, key in enumerate(AP_KEYS) for kind in ("bbox", "segm")}
    metrics.update({"eval_bbox_AP/cat": 0.25, "eval_segm_AP/cat": 0.5, "eval_bbox_AP/dog": 0.125})
    rows = ap_rows(metrics, "eval_")
    assert rows[0] == ("metric", "bbox", "segm")
    assert rows[1] == ("AP", "0.000", "0.000") and rows[2] == ("AP50", "0.100", "0.100")
    assert rows[-2:] == [("AP cat", "0.250", "0.500"), ("AP dog", "0.125", "-")]
    assert len(rows) == 1 + len(AP_KEYS) + 2


def test_canvas_is_the_max_size_rounded_up_to_the_stride(tmp_path, tiny_mask_rcnn):
    for max_size, side in ((64, 64), (65, 96), (96, 96)):
        task = _task(tmp_path, tiny_mask_rcnn, model={"input": {"min_size": 64, "max_size": max_size}})
        assert canvas_size(task.config) == side


def test_class_names_from_the_shapes_then_coco_then_numbers(tmp_path, tiny_mask_rcnn):
    task = _task(tmp_path, tiny_mask_rcnn)
    assert task.class_names() == {1: "circle", 2: "square", 3: "triangle"}
    coco = _task(
        tmp_path, tiny_mask_rcnn, model={"num_classes": 91}, data={"source": "labelme", "train_annotations": "x"}
    )
    assert coco.class_names() == dict(COCO_CATEGORIES)
    other = _task(
        tmp_path, tiny_mask_rcnn, model={"num_classes": 3}, data={"source": "labelme", "train_annotations": "x"}
    )
    assert other.class_names() == {1: "1", 2: "2"}


def test_tables(tmp_path, tiny_mask_rcnn):
    task = _task(tmp_path, tiny_mask_rcnn)
    title, rows = task.export_table("saved_model", [{"kind": "SavedModel (TF Serving)", "path": "p/1", "bytes": 3e6}])
    assert title == f"kzoo export {task.config.name}" and rows[1] == ("SavedModel (TF Serving)", "3.00 MB", "p/1")
    title, rows = task.predict_table(
        [
            {
                "image": "a.png",
                "output": "a_d.png",
                "frames": 1,
                "detections": [("cat", 0.6, None), ("dog", 0.9, None)],
            },
            {"image": "v.mp4", "output": "v_d.mp4", "results": "v_d.json", "frames": 3, "detections": []},
        ]
    )
    assert rows[1] == ("a.png", 2, "dog 0.90, cat 0.60", "a_d.png")
    assert rows[2] == ("v.mp4", "0 in 3 frames", "-", "v_d.mp4 + v_d.json")


def test_one_training_step_reports_every_loss(tmp_path, tiny_mask_rcnn):
    task = _task(tmp_path, tiny_mask_rcnn)
    strategy = tf.distribute.get_strategy()
    dataset, steps = task.training_data(2)
    assert steps == 4
    model = task.build_model(init_weights=False)
    optimizer = tf.keras.optimizers.SGD(0.01)
    optimizer.build(model.trainable_variables)
    totals = task.make_train_step(model, optimizer, strategy, 2)(
        iter(strategy.experimental_distribute_dataset(dataset))
    )
    metrics = task.step_metrics(totals.numpy(), 1)
    assert list(metrics) == list(task.metric_names) and all(np.isfinite(v) for v in metrics.values())
    parts = sum(v for k, v in metrics.items() if k != "loss_total")
    assert metrics["loss_total"] == pytest.approx(parts, rel=1e-4)


def test_a_class_count_other_than_the_data_names_the_categories(tmp_path, tiny_mask_rcnn):
    task = _task(tmp_path, tiny_mask_rcnn, model={"num_classes": 6})
    with pytest.raises(ValueError, match=r"model.num_classes is 6 but the data set has 3 categories \(circle"):
        task.training_data(2)
