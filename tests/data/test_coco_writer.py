"""kzoo.data.coco_writer: a written json round-trips through pycocotools (polygons, uncompressed and compressed RLE)."""

import numpy as np
import pytest
from coco_examples import CATEGORIES, EXAMPLES, write_coco_set
from pycocotools.coco import COCO

from kzoo.data.shapes import mask_to_box


@pytest.fixture(scope="module")
def coco_set(tmp_path_factory):
    return write_coco_set(tmp_path_factory.mktemp("coco"))


def test_written_json_round_trips_through_pycocotools(coco_set):
    path, _, data = coco_set
    coco = COCO(path)
    formats = {}
    for ann in data["annotations"][: sum(len(ex["classes"]) for ex in EXAMPLES)]:
        ex = EXAMPLES[ann["image_id"] - 1]
        index = [a["id"] for a in data["annotations"] if a["image_id"] == ann["image_id"]].index(ann["id"])
        mask = ex["masks"][index]
        np.testing.assert_array_equal(coco.annToMask(coco.anns[ann["id"]]), mask)
        assert ann["area"] == mask.sum()
        x, y, w, h = ann["bbox"]
        np.testing.assert_array_equal([y, x, y + h, x + w], mask_to_box(mask))
        assert ann["category_id"] == CATEGORIES.to_category_id(int(ex["classes"][index]))
        seg = ann["segmentation"]
        formats[ann["id"]] = "polygon" if isinstance(seg, list) else type(seg["counts"]).__name__
    assert set(formats.values()) == {"polygon", "list", "str"}  # polygons, uncompressed RLE, compressed RLE
