"""kzoo.data.via: VIA 2.x regions (polygons, rectangles, circles, ellipses) -> COCO polygons, the class attribute,
files that are not VIA's."""

import os

import pytest
from annotation_examples import VIA_EXPECTED, H, W, by_category, check_annotation
from PIL import Image

from kzoo.data.via import via_to_coco


@pytest.mark.parametrize("name", ["project.json", "export.json"])
def test_via_regions_become_polygons(via_set, tmp_path, name):
    # the project's regions have two attributes: which is the class must be said (the export has only "class")
    attribute = "species" if name == "project.json" else None
    coco, image_root, counts = via_to_coco(
        str(via_set / name), str(via_set / "images"), class_attribute=attribute, image_dir=str(tmp_path)
    )
    assert image_root == str(via_set / "images") and [c["name"] for c in coco["categories"]] == ["cat", "dog"]
    image = coco["images"][0]
    assert (image["file_name"], image["height"], image["width"]) == ("v1.png", H, W)  # size from the header
    found = [(n, a) for n, a in by_category(coco) if a["image_id"] == image["id"]]
    assert [n for n, _ in found] == ["cat", "dog", "cat", "dog"]
    for (_, ann), mask in zip(found, VIA_EXPECTED):
        check_annotation(ann, image, mask)
    expected_counts = {
        "unsupported_shapes": 1,
        "degenerate_polygons": 1,
        "unlabeled_shapes": 1,
        "missing_images": 1,
        "needs_cache": 0,
    }
    assert {k: counts[k] for k in expected_counts} == expected_counts
    rotated = coco["images"][1]  # EXIF-rotated: written upright into the cache
    assert (rotated["height"], rotated["width"]) == (60, 40)
    path = os.path.normpath(os.path.join(image_root, rotated["file_name"]))
    assert path.startswith(str(tmp_path)) and Image.open(path).size == (40, 60)


def test_via_class_attribute_and_no_cache(via_set):
    coco, _, counts = via_to_coco(str(via_set / "project.json"), str(via_set / "images"), class_attribute="notes")
    assert [c["name"] for c in coco["categories"]] == ["x"]  # "" of the rotated image's region: unlabeled
    assert counts["needs_cache"] == 1 and counts["images"] == 1


def test_via_not_a_via_file(tmp_path):
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a VIA"):
        via_to_coco(str(tmp_path / "bad.json"))
