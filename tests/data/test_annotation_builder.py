"""kzoo.data.annotation_builder and the annotation tools' own conventions: labelme's ``__ignore__`` and
``_background_`` regions are crowd (ignore) regions, polygons are judged by their drawn area, a polygon wholly
outside the image is counted once, and the convert table tells repairs from drops and stays terminal-wide."""

import json

import numpy as np
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from kzoo.cli import main
from kzoo.data.annotation_builder import REPAIRS, spans_area
from kzoo.data.coco_masks import segmentation_to_mask
from kzoo.data.labelme import labelme_to_coco

H, W = 120, 160


def _labelme(folder, name, shapes, seed=0):
    folder.mkdir(exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / f"{name}.png")
    doc = {
        "version": "5.4.1",
        "flags": {},
        "imagePath": f"{name}.png",
        "imageData": None,
        "imageHeight": H,
        "imageWidth": W,
        "shapes": [
            {
                "label": label,
                "points": points,
                "group_id": None,
                "description": "",
                "shape_type": kind,
                "flags": {},
                "mask": None,
            }
            for label, kind, points in shapes
        ],
    }
    (folder / f"{name}.json").write_text(json.dumps(doc))


def test_spans_area():
    assert spans_area(np.array([[0, 0], [10, 10], [10, 0], [0, 10]]))  # a bow tie: shoelace area 0
    assert not spans_area(np.array([[0, 0], [5, 5], [10, 10]]))  # collinear
    assert not spans_area(np.array([[0, 0], [1, 0]]))
    assert spans_area(np.array([[0, 0], [1e-3, 0], [0, 1e-3]]))


def test_ignore_and_background_are_crowd_regions_ignored_in_evaluation(tmp_path):
    folder = tmp_path / "labelme"
    _labelme(
        folder,
        "a",
        [
            ("cat", "rectangle", [[10, 10], [50, 60]]),
            ("__ignore__", "rectangle", [[90, 20], [150, 100]]),
            ("dog", "polygon", [[60, 70], [80, 70], [80, 110], [60, 110]]),
            ("_background_", "polygon", [[0, 100], [30, 100], [30, 119], [0, 119]]),
        ],
    )
    # labelme's labels.txt starts with __ignore__ and _background_: they are no class
    coco, _, counts = labelme_to_coco(str(folder), class_names=["__ignore__", "_background_", "cat", "dog"])
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]
    assert counts["instances"] == 2 and counts["ignore_regions"] == 2
    crowd = [a for a in coco["annotations"] if a["iscrowd"]]
    assert len(crowd) == 4 and {a["category_id"] for a in crowd} == {1, 2}  # one copy per category
    assert all(a["iscrowd"] == 0 for a in coco["annotations"] if a not in crowd)
    # labels default to the ones seen: the ignore labels are not among them
    coco_default, _, _ = labelme_to_coco(str(folder))
    assert [c["name"] for c in coco_default["categories"]] == ["cat", "dog"]

    # COCO evaluation: a confident detection of either class on the ignore region is no false positive
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps({**coco, "images": [{**i, "file_name": i["file_name"]} for i in coco["images"]]}))
    ground_truth = COCO(str(gt_path))
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 50], "score": 0.6},
        {"image_id": 1, "category_id": 2, "bbox": [60, 70, 20, 40], "score": 0.6},
        {"image_id": 1, "category_id": 1, "bbox": [95, 25, 50, 70], "score": 0.99},  # inside the ignore region
        {"image_id": 1, "category_id": 2, "bbox": [92, 22, 55, 75], "score": 0.98},
    ]
    evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[1] > 0.99  # AP50: the ignored detections cost nothing


def test_bow_tie_is_kept_by_its_drawn_area(tmp_path):
    folder = tmp_path / "labelme"
    bow_tie = [[20, 20], [60, 60], [60, 20], [20, 60]]  # self-crossing: signed areas cancel
    _labelme(folder, "a", [("cat", "polygon", bow_tie)])
    coco, _, counts = labelme_to_coco(str(folder))
    (annotation,) = coco["annotations"]
    mask = segmentation_to_mask(annotation["segmentation"], H, W)
    assert annotation["area"] == mask.sum() > 600  # two triangles of 800 px^2 each, as pycocotools fills them
    assert counts["degenerate_polygons"] == 0


def test_polygon_outside_the_image_is_counted_once_and_clipping_is_a_repair(tmp_path, capsys):
    folder = tmp_path / "labelme"
    _labelme(
        folder,
        "a",
        [
            ("cat", "polygon", [[500, 500], [600, 500], [600, 600]]),  # wholly outside
            ("cat", "polygon", [[-50, 10], [50, 10], [50, 50], [-50, 50]]),  # clipped, kept
            ("dog", "rectangle", [[70, 70], [100, 100]]),
        ],
    )
    coco, _, counts = labelme_to_coco(str(folder))
    assert counts["outside_image"] == 1 and counts["clipped_polygons"] == 1 and counts["instances"] == 2
    assert "clipped_polygons" in REPAIRS and "outside_image" not in REPAIRS
    assert main(["convert", "labelme", str(folder), "--output", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "repaired (kept): clipped_polygons | 1" in out and "dropped: outside_image" in out
    assert "dropped: clipped_polygons" not in out


def test_convert_table_stays_terminal_wide_with_80_classes(tmp_path, capsys):
    folder = tmp_path / "labelme"
    names = [f"class_number_{i:02d}" for i in range(80)]
    shapes = [
        (name, "rectangle", [[2 * (i % 40), 40 * (i // 40)], [2 * (i % 40) + 30, 40 * (i // 40) + 30]])
        for i, name in enumerate(names)
    ]
    _labelme(folder, "a", shapes)
    assert main(["convert", "labelme", str(folder), "--output", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "categories (80)" in out and "class_number_79" in out
    path_width = len(str(tmp_path / "out.json")) + len(str(tmp_path)) + 40
    assert max(len(line) for line in out.splitlines()) <= max(110, path_width)


def test_ignore_regions_train_as_one_crowd_box_each(tmp_path):
    from kzoo.data.annotation_tools import load_annotation_tool_instances

    folder = tmp_path / "labelme"
    _labelme(
        folder,
        "a",
        [
            ("cat", "rectangle", [[10, 10], [50, 60]]),
            ("dog", "rectangle", [[60, 10], [80, 60]]),
            ("bird", "rectangle", [[100, 10], [120, 60]]),
            ("__ignore__", "rectangle", [[90, 70], [150, 110]]),
        ],
    )
    instances = load_annotation_tool_instances("labelme", str(folder), None)
    (record,) = instances.records
    assert record.is_crowd.tolist() == [False, False, False, True]  # 3 crowd copies in the json, 1 region here
    np.testing.assert_allclose(record.boxes[3], [70, 90, 110, 150])  # [ymin, xmin, ymax, xmax]


def test_coco_reader_counts_a_fifo_image_as_unusable_without_opening_it(tmp_path):
    import os

    from kzoo.data.coco_reader import load_coco_instances

    (tmp_path / "images").mkdir()
    os.mkfifo(tmp_path / "images" / "a.png")
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [1, 1, 10, 10],
                "iscrowd": 0,
                "segmentation": [[1, 1, 11, 1, 11, 11]],
                "area": 50,
            }
        ],
        "categories": [{"id": 1, "name": "cat"}],
    }
    for check in ("exists", "header", "full"):
        instances = load_coco_instances(coco, str(tmp_path / "images"), check_images=check)
        assert instances.counts["corrupt_images"] == 1 and instances.counts["missing_images"] == 0, check
