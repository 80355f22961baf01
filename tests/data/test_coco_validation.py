"""kzoo.data.coco_validation (the checks the reader and the ground-truth check share): a json without its top-level
lists is named, not read as 0 records; one image file listed under two ids is one image (merged, counted) in training
and in the evaluation's ground truth alike."""

import json

import numpy as np
import pytest
from PIL import Image

from kzoo.data.coco_reader import load_coco_instances
from kzoo.data.coco_validation import validate_coco_dict


def _ann(ann_id, image_id, x):
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "bbox": [x, 5, 10, 10],
        "area": 100,
        "segmentation": [[x, 5, x + 10, 5, x + 10, 15, x, 15]],
    }


def _dataset(tmp_path):
    (tmp_path / "images").mkdir(exist_ok=True)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 40, "width": 50},
            {"id": 2, "file_name": "./a.png", "height": 40, "width": 50},  # the same file again
            {"id": 3, "file_name": "a.png", "height": 20, "width": 50},
        ],  # and again, of another size
        "annotations": [_ann(1, 1, 5), _ann(2, 2, 25), _ann(3, 3, 30)],
        "categories": [{"id": 1, "name": "cat"}],
    }


@pytest.mark.parametrize("missing", ["images", "annotations", "categories"])
def test_a_json_without_a_top_level_list_is_named(tmp_path, missing):
    dataset = _dataset(tmp_path)
    del dataset[missing]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(dataset))
    for source in (path, dataset):
        with pytest.raises(ValueError, match=f"is not a COCO instances json: it has no '{missing}' list"):
            load_coco_instances(source, str(tmp_path / "images"))
        with pytest.raises(ValueError, match=f"it has no '{missing}' list"):
            validate_coco_dict(source)
    dataset[missing] = {"not": "a list"}
    with pytest.raises(ValueError, match=f"it has a dict as '{missing}' list"):
        validate_coco_dict(dataset)


def test_one_file_under_two_ids_is_one_image(tmp_path):
    dataset = _dataset(tmp_path)
    instances = load_coco_instances(dataset, str(tmp_path / "images"))
    (record,) = instances.records
    assert record.image_id == 1 and list(record.annotation_ids) == [1, 2]  # id 2's annotation joined id 1
    assert instances.counts["duplicate_image_files"] == 2  # id 2 merged, id 3 (another size) skipped
    checked, counts = validate_coco_dict(dataset)
    assert [image["id"] for image in checked["images"]] == [1]
    assert [(a["id"], a["image_id"]) for a in checked["annotations"]] == [(1, 1), (2, 1)]
    assert counts["duplicate_image_files"] == 2
