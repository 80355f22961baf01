"""kzoo.data.coco_reader: crowd flags, empty images, dropped and counted problems, in-memory dicts, polygon
coordinates checked before rasterizing, repeated annotation ids."""

import json
import logging

import numpy as np
import pytest
from coco_examples import CATEGORIES, EXAMPLES, H, W, write_coco_set
from coco_examples import example as make_example
from PIL import Image

from kzoo.data.coco_categories import CocoCategories
from kzoo.data.coco_masks import segmentation_to_mask
from kzoo.data.coco_reader import load_coco_instances
from kzoo.data.coco_writer import write_coco_json
from kzoo.data.shapes import mask_to_box


@pytest.fixture(scope="module")
def coco_set(tmp_path_factory):
    return write_coco_set(tmp_path_factory.mktemp("coco"))


def test_load_keeps_instances_and_masks_exactly(coco_set):
    path, images, _ = coco_set
    loaded = load_coco_instances(path, images)
    assert [r.image_id for r in loaded.records] == [1, 2, 3]
    assert loaded.categories == CATEGORIES
    for record in loaded.records:
        ex = EXAMPLES[record.image_id - 1]
        assert (record.height, record.width) == (H, W) and record.file_path.endswith(ex["file_name"])
        np.testing.assert_array_equal(record.classes, ex["classes"])
        assert record.classes.dtype == np.int32 and record.boxes.dtype == np.float32
        np.testing.assert_array_equal(record.masks(), ex["masks"].astype(np.uint8))
        expected = np.stack([mask_to_box(m) for m in ex["masks"]]) if len(ex["masks"]) else np.zeros((0, 4))
        np.testing.assert_array_equal(record.boxes, expected)


def test_crowd_regions_are_kept_and_flagged(coco_set):
    loaded = load_coco_instances(*coco_set[:2])
    np.testing.assert_array_equal(loaded.records[1].is_crowd, [True, False])
    assert not loaded.records[0].is_crowd.any()
    assert loaded.counts["crowd_instances"] == 1 and loaded.counts["instances"] == 5


def test_empty_images_kept_or_skipped(coco_set):
    kept = load_coco_instances(*coco_set[:2])
    assert kept.records[2].num_instances == 0 and kept.records[2].masks().shape == (0, H, W)
    assert kept.counts["empty_images"] == 1 and kept.counts["skipped_empty_images"] == 0
    skipped = load_coco_instances(*coco_set[:2], skip_empty=True)
    assert [r.image_id for r in skipped.records] == [1, 2]
    assert skipped.counts["skipped_empty_images"] == 1 and skipped.counts["images"] == 2


def test_problems_are_dropped_counted_and_warned(coco_set, caplog):
    with caplog.at_level(logging.WARNING, logger="kzoo.data.coco_reader"):
        loaded = load_coco_instances(*coco_set[:2])
    expected = {
        "missing_images": 1,
        "corrupt_images": 2,
        "degenerate_boxes": 1,
        "outside_image": 1,
        "unknown_category": 1,
        "bad_segmentation": 1,
    }
    assert {k: loaded.counts[k] for k in expected} == expected
    text = caplog.text
    for word in ("missing", "unreadable", "zero", "outside", "category", "segmentation"):
        assert word in text
    exists_only = load_coco_instances(*coco_set[:2], check_images="exists")
    assert exists_only.counts["corrupt_images"] == 0 and len(exists_only) == 5  # garbage not detected


def test_truncated_image_caught_by_full_check(tmp_path):
    ex = make_example(1, [("circle", (12, 12), 7)])
    Image.fromarray(ex["image"]).save(tmp_path / "img1.png")
    data = (tmp_path / "img1.png").read_bytes()
    (tmp_path / "img1.png").write_bytes(data[: len(data) // 2])
    write_coco_json([ex], CATEGORIES, str(tmp_path / "a.json"))
    assert len(load_coco_instances(str(tmp_path / "a.json"), str(tmp_path))) == 1  # the header is fine
    full = load_coco_instances(str(tmp_path / "a.json"), str(tmp_path), check_images="full")
    assert len(full) == 0 and full.counts["corrupt_images"] == 1


def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation"):
        load_coco_instances(str(tmp_path / "nope.json"), str(tmp_path))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a COCO"):
        load_coco_instances(str(tmp_path / "bad.json"), str(tmp_path))


def test_load_from_an_in_memory_dict(coco_set):
    path, images, _ = coco_set
    data = json.loads(open(path).read())
    from_dict = load_coco_instances(data, images)
    from_file = load_coco_instances(path, images)
    assert from_dict.annotation_file == "" and from_file.annotation_file == path
    assert from_dict.counts == from_file.counts and from_dict.categories == from_file.categories
    for a, b in zip(from_dict.records, from_file.records, strict=True):
        assert a.image_id == b.image_id and a.file_path == b.file_path
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.masks(), b.masks())
    with pytest.raises(ValueError, match="not a COCO"):
        load_coco_instances({"images": [{"id": 1}], "annotations": [{"id": 1}]}, images)


def test_polygon_coordinates_checked_before_rasterizing(tmp_path):
    ex = make_example(1, [])
    Image.fromarray(ex["image"]).save(tmp_path / "img1.png")
    far = [[5, 5, 1e9, 5, 5, 30]]  # pycocotools alone: a segfault or memory exhausted
    anns = [
        {"bbox": [5, 5, 51, 25], "segmentation": far},
        {"bbox": [5, 5, 20, 20], "segmentation": [[5, 5, float("nan"), 5, 5, 20]]},
        {"bbox": [5, 5, 20, 20], "segmentation": [[5, 5, 25, 5, 25, 25], [1, 1, float("inf"), 1, 1, 9]]},
    ]
    data = {
        "images": [{"id": 1, "file_name": "img1.png", "height": H, "width": W}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 1.0, **a} for i, a in enumerate(anns)
        ],
        "categories": CATEGORIES.to_coco(),
    }
    loaded = load_coco_instances(data, str(tmp_path))
    assert loaded.num_instances == 1 and loaded.counts["bad_segmentation"] == 2  # non-finite: the whole instance
    (polygon,) = loaded.records[0].segmentations[0]
    assert max(polygon[0::2]) == W + 1 and max(polygon[1::2]) <= H + 1
    mask = loaded.records[0].masks()[0]
    np.testing.assert_array_equal(mask, segmentation_to_mask([[5, 5, W + 1, 5, 5, 30]], H, W))
    assert mask[5, W - 1] == 1 and mask.sum() > 0
    np.testing.assert_array_equal(segmentation_to_mask(far, H, W), mask)  # the direct call clips too
    with pytest.raises(ValueError, match="non-finite"):
        segmentation_to_mask([[5, 5, float("nan"), 5, 5, 20]], H, W)


def test_repeated_annotation_ids_count_once_in_training_and_evaluation(tmp_path):
    from kzoo.data.coco_writer import coco_dict
    from kzoo.data.shapes import SHAPES_INSTANCE_CLASSES, make_shapes_instances
    from kzoo.evaluation.coco import load_ground_truth

    examples = make_shapes_instances(2, 64, 2, seed=4)
    images = tmp_path / "images"
    images.mkdir()
    for index, example in enumerate(examples):
        Image.fromarray(example["image"]).save(images / f"{index + 1:012d}.png")
    data = coco_dict(examples, CocoCategories.from_names(SHAPES_INSTANCE_CLASSES))
    count = len(data["annotations"])
    data["annotations"].append(dict(data["annotations"][0]))  # the same annotation twice (same id)
    loaded = load_coco_instances(data, str(images))
    assert loaded.num_instances == count and loaded.counts["duplicate_annotations"] == 1
    assert len(load_ground_truth(data).getAnnIds()) == count


def test_ground_truth_is_what_the_set_holds(coco_set):
    from pycocotools import mask as mask_utils

    loaded = load_coco_instances(*coco_set[:2])
    truth = loaded.ground_truth()
    assert [image["id"] for image in truth["images"]] == [r.image_id for r in loaded.records]
    assert truth["categories"] == CATEGORIES.to_coco()
    annotations = {ann["id"]: ann for ann in truth["annotations"]}
    assert len(annotations) == loaded.num_instances
    for record in loaded.records:
        masks = record.masks()
        for i, ann_id in enumerate(record.annotation_ids):
            ann = annotations[ann_id]
            assert ann["iscrowd"] == int(record.is_crowd[i])
            assert ann["category_id"] == CATEGORIES.to_category_id(int(record.classes[i]))
            assert ann["area"] == masks[i].sum() == mask_utils.area(mask_utils.encode(np.asfortranarray(masks[i])))
            ymin, xmin, ymax, xmax = record.boxes[i]
            np.testing.assert_allclose(ann["bbox"], [xmin, ymin, xmax - xmin, ymax - ymin])
