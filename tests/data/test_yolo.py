"""kzoo.data.yolo: YOLO segmentation lines (and detection boxes) -> COCO polygons, class names from data.yaml or
class_names."""

import logging

import pytest
from annotation_examples import GROUP_A, YOLO_POLYGON, by_category, check_annotation, pil_polygon

from kzoo.data.yolo import yolo_to_coco


@pytest.mark.parametrize("data_yaml", ["list.yaml", "dict.yaml"])
def test_yolo_lines_become_polygons(yolo_set, data_yaml, caplog):
    with caplog.at_level(logging.WARNING):
        coco, _, counts = yolo_to_coco(
            str(yolo_set / "labels"), str(yolo_set / "images"), data_yaml=str(yolo_set / data_yaml)
        )
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]
    assert [i["file_name"] for i in coco["images"]] == ["train/y1.png", "train/y2.png"]
    image = coco["images"][0]
    found = by_category(coco)
    assert [n for n, _ in found] == ["cat", "dog", "dog"] and all(a["image_id"] == 1 for _, a in found)
    expected = [
        pil_polygon(YOLO_POLYGON),
        pil_polygon(GROUP_A),
        pil_polygon([[250, 10], [460, 10], [460, 150], [250, 150]]),
    ]
    for (_, ann), mask in zip(found, expected):
        check_annotation(ann, image, mask)
    expected_counts = {"malformed_shapes": 2, "unknown_labels": 1, "missing_images": 1}
    assert {k: counts[k] for k in expected_counts} == expected_counts
    assert "y1.txt: line 4" in caplog.text and "y3.txt" in caplog.text


def test_yolo_class_names_select_and_order(yolo_set):
    coco, _, counts = yolo_to_coco(
        str(yolo_set / "labels"), str(yolo_set / "images"), class_names=["dog"], data_yaml=str(yolo_set / "list.yaml")
    )
    assert coco["categories"][0]["name"] == "dog" and {a["category_id"] for a in coco["annotations"]} == {1}
    assert counts["unknown_labels"] == 2 and counts["instances"] == 2
    named, _, _ = yolo_to_coco(str(yolo_set / "labels"), str(yolo_set / "images"), class_names=["a", "b"])
    assert [c["name"] for c in named["categories"]] == ["a", "b"]
    with pytest.raises(ValueError, match="data.yaml"):
        yolo_to_coco(str(yolo_set / "labels"), str(yolo_set / "images"))
