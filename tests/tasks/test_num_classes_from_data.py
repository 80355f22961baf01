"""A Mask R-CNN config may leave out ``model.num_classes``: the built-in shapes' classes + 1, or a file source's
categories + 1 once the task reads them; a wrong count names the categories."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from kzoo.config import load_config
from kzoo.tasks import task_for

TINY_MODEL = {
    "backbone": {"name": "small_convnet", "width": 0.25, "norm": "group"},
    "fpn": {"channels": 16},
    "box_head": {"fc_dim": 32},
    "mask_head": {"num_convs": 1, "channels": 8},
    "rpn": {"pre_nms_top_k_train": 50, "post_nms_top_k_train": 20, "pre_nms_top_k_test": 50, "post_nms_top_k_test": 20},
    "roi_sampling": {"samples_per_image": 16},
    "detection": {"max_detections": 5},
    "input": {"min_size": 64, "max_size": 64},
}


def _coco_folder(root):
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for i in range(2):
        Image.fromarray(np.full((64, 64, 3), 50 * i, np.uint8)).save(root / "images" / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": 64, "width": 64})
        for j, category in enumerate((3, 7)):
            x = 5 + 25 * j
            annotations.append(
                {
                    "id": 2 * i + j + 1,
                    "image_id": i + 1,
                    "category_id": category,
                    "iscrowd": 0,
                    "bbox": [x, 5, 20, 20],
                    "area": 400,
                    "segmentation": [[x, 5, x + 20, 5, x + 20, 25, x, 25]],
                }
            )
    categories = [{"id": 3, "name": "apple"}, {"id": 7, "name": "pear"}]
    (root / "train.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return root


def _config(tmp_path, model, **data):
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "task": "mask_rcnn",
                "name": "fruit",
                "output_dir": str(tmp_path / "run"),
                "model": model,
                "data": data,
                "train": {"epochs": 1, "batch_size": 2},
            }
        )
    )
    return path


def test_shapes_give_their_class_count(tmp_path):
    assert load_config(_config(tmp_path, TINY_MODEL, source="shapes")).model.num_classes == 4  # 3 default shapes
    two = load_config(_config(tmp_path, TINY_MODEL, source="shapes", shapes_classes=["circle", "ring"]))
    assert two.model.num_classes == 3
    assert load_config(_config(tmp_path, {**TINY_MODEL, "num_classes": 6}, source="shapes")).model.num_classes == 6


def test_file_source_takes_the_categories(tmp_path):
    root = _coco_folder(tmp_path / "data")
    files = {
        "source": "coco",
        "train_annotations": str(root / "train.json"),
        "train_images": str(root / "images"),
        "eval_annotations": str(root / "train.json"),
        "eval_images": str(root / "images"),
    }
    config = load_config(_config(tmp_path, TINY_MODEL, **files))
    assert config.model.num_classes is None
    task = task_for(config)
    assert task.data.categories.names == ("apple", "pear") and task.config.model.num_classes == 3
    dataset, steps = task.training_data(2)
    assert steps == 1 and task.build_model().config.num_classes == 3

    # a wrong count names the categories and what to do
    wrong = task_for(load_config(_config(tmp_path, {**TINY_MODEL, "num_classes": 5}, **files)))
    with pytest.raises(ValueError, match=r"has 2 categories \(apple, pear\).*leave it out"):
        wrong.training_data(2)


@pytest.mark.slow
def test_train_then_evaluate_without_num_classes(tmp_path):
    from kzoo.cli import main

    root = _coco_folder(tmp_path / "data")
    files = {
        "source": "coco",
        "train_annotations": str(root / "train.json"),
        "train_images": str(root / "images"),
        "eval_annotations": str(root / "train.json"),
        "eval_images": str(root / "images"),
    }
    config = _config(tmp_path, TINY_MODEL, **files)
    assert main(["train", str(config), "--quiet"]) == 0
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["model"]["num_classes"] == 3  # the run's config holds the count it was trained with
    assert main(["train", str(config), "--quiet"]) == 0  # resumes as finished: the same model
    assert main(["evaluate", str(config)]) == 0
    assert main(["evaluate", str(tmp_path / "run")]) == 0
