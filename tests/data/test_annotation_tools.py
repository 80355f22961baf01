"""kzoo.data.annotation_tools: one registry of the tools, their files loaded as COCO instances (and the ground truth
of exactly those), written as a COCO json."""

import json
import os
import stat

import numpy as np
import pytest
from annotation_examples import H, W

from kzoo.data.annotation_tools import (
    TOOLS,
    annotation_tool,
    annotation_tool_to_coco,
    load_annotation_tool_instances,
    write_coco_from_tool,
)
from kzoo.data.coco_reader import load_coco_instances


def test_labelme_loads_through_coco_loader(labelme_set, tmp_path):
    root, _ = labelme_set
    loaded = load_annotation_tool_instances(
        "labelme", str(root / "ann"), None, class_names=["cat", "dog"], cache_dir=str(tmp_path)
    )
    assert len(loaded) == 2 and loaded.num_instances == 6 and loaded.annotation_file == ""
    assert loaded.categories.names == ("cat", "dog")
    np.testing.assert_array_equal(loaded.records[0].classes, [1, 2, 1, 2, 1])
    masks = loaded.records[0].masks()  # the 1e9 polygon included
    assert masks.shape == (5, H, W) and masks[4].sum() > 0
    assert not loaded.records[0].is_crowd.any()
    assert loaded.counts["unknown_labels"] == 1 and loaded.counts["missing_images"] == 1

    from kzoo.data.coco_masks import mask_to_rle
    from kzoo.evaluation.coco import evaluate_coco

    truth = loaded.ground_truth()
    results = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
            "segmentation": mask_to_rle(m),
        }
        for a, m in zip(truth["annotations"], (m for r in loaded.records for m in r.masks()))
    ]
    metrics = evaluate_coco(truth, results)
    assert metrics["bbox_AP"] == pytest.approx(1.0) and metrics["segm_AP"] == pytest.approx(1.0)


def test_write_coco_from_tool(yolo_set, tmp_path):
    output = tmp_path / "out" / "instances.json"
    summary = write_coco_from_tool(
        "yolo",
        str(yolo_set / "labels"),
        str(output),
        images=str(yolo_set / "images"),
        yolo_data_yaml=str(yolo_set / "dict.yaml"),
    )
    assert summary["images"] == 2 and summary["instances"] == 3 and summary["categories"] == ["cat", "dog"]
    assert summary["problems"] == {"malformed_shapes": 2, "unknown_labels": 1, "missing_images": 1}
    assert stat.S_IMODE(os.stat(output).st_mode) == 0o644
    loaded = load_coco_instances(str(output), summary["image_dir"])
    assert len(loaded) == 2 and loaded.num_instances == 3
    assert (
        json.loads(output.read_text())
        == annotation_tool_to_coco(
            "yolo", str(yolo_set / "labels"), str(yolo_set / "images"), yolo_data_yaml=str(yolo_set / "dict.yaml")
        )[0]
    )
    with pytest.raises(ValueError, match="unknown annotation tool"):
        annotation_tool_to_coco("cvat", str(yolo_set))


def test_one_registry_serves_convert_and_the_config(yolo_set):
    from kzoo.data.options import ANNOTATION_TOOLS, DETECTION_SOURCES

    assert tuple(TOOLS) == ANNOTATION_TOOLS and set(TOOLS) < set(DETECTION_SOURCES)
    assert [name for name, tool in TOOLS.items() if not tool.needs_images] == ["labelme"]
    assert annotation_tool("via").options == ("class_attribute",)
    assert annotation_tool("yolo").options == ("yolo_data_yaml",)
    with pytest.raises(ValueError, match=r"unknown annotation tool 'cvat'; choose one of \('labelme', 'via', 'yolo'\)"):
        annotation_tool("cvat")
    with pytest.raises(ValueError, match="class_attribute .* is for VIA projects, not yolo"):
        annotation_tool_to_coco("yolo", str(yolo_set / "labels"), str(yolo_set / "images"), class_attribute="class")
    with pytest.raises(ValueError, match="YOLO labels need their images folder"):
        annotation_tool_to_coco("yolo", str(yolo_set / "labels"))
