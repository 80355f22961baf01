"""kzoo.data.labelme: labelme shapes (polygons, rectangles, circles, groups) -> COCO polygons, bad shapes dropped
and counted, embedded images written to the cache."""

import logging
import os
import stat

import numpy as np
from annotation_examples import (
    EMBEDDED_SIZE,
    GROUP_A,
    GROUP_B,
    LABELME_SHAPES,
    H,
    W,
    by_category,
    check_annotation,
    pil_ellipse,
    pil_polygon,
)
from PIL import Image

from kzoo.data.labelme import labelme_to_coco


def test_labelme_shapes_become_polygons(labelme_set, tmp_path, caplog):
    root, embedded = labelme_set
    with caplog.at_level(logging.WARNING):
        coco, image_root, counts = labelme_to_coco(str(root / "ann"), ["cat", "dog"], image_dir=str(tmp_path))
    assert coco["categories"] == [
        {"id": 1, "name": "cat", "supercategory": ""},
        {"id": 2, "name": "dog", "supercategory": ""},
    ]
    assert [i["file_name"] for i in coco["images"]][0] == "../images/a.png"
    image = coco["images"][0]
    assert (image["height"], image["width"]) == (H, W)
    found = [(name, a) for name, a in by_category(coco) if a["image_id"] == image["id"]]
    assert [name for name, _ in found] == ["cat", "dog", "cat", "dog", "cat"]
    expected = [
        pil_polygon(LABELME_SHAPES[0]["points"]),
        pil_polygon([[250, 10], [460, 10], [460, 150], [250, 150]]),
        pil_ellipse(380, 260, 80),
        pil_polygon(GROUP_A) | pil_polygon(GROUP_B),
        pil_polygon([[250, 170], [W, 170], [W, 230], [250, 230]]),
    ]
    for (_, ann), mask in zip(found, expected):
        check_annotation(ann, image, mask)
    assert len(found[3][1]["segmentation"]) == 2  # the group: one instance, two polygons
    assert max(max(p) for p in found[4][1]["segmentation"]) <= W  # the 1e9 point: clipped to the image
    expected_counts = {
        "degenerate_polygons": 1,
        "unknown_labels": 1,
        "unsupported_shapes": 1,
        "clipped_polygons": 1,
        "malformed_files": 1,
        "missing_images": 1,
    }
    assert {k: counts[k] for k in expected_counts} == expected_counts
    assert counts["images"] == 2 and counts["instances"] == 6 and counts["annotation_files"] == 4
    for word in ("c.json", "nowhere.png", "bird", "distinct", "clipped", "no area"):
        assert word in caplog.text


def test_labelme_embedded_image_written_to_cache(labelme_set, tmp_path):
    root, embedded = labelme_set
    coco, image_root, _ = labelme_to_coco(str(root / "ann"), image_dir=str(tmp_path / "cache"))
    image = coco["images"][1]
    path = os.path.normpath(os.path.join(image_root, image["file_name"]))
    assert path.startswith(str(tmp_path / "cache")) and (image["height"], image["width"]) == EMBEDDED_SIZE
    np.testing.assert_array_equal(np.asarray(Image.open(path)), embedded)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert [c["name"] for c in coco["categories"]] == ["bird", "cat", "dog"]  # discovered, sorted
    without_cache = labelme_to_coco(str(root / "ann"))[2]
    assert without_cache["needs_cache"] == 1 and without_cache["images"] == 1
