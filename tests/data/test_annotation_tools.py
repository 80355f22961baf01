"""labelme, VIA 2.x and YOLO segmentation files -> COCO dicts: polygons, boxes, classes and masks right, bad
annotations dropped and counted (never a crash), images cached where the pipeline needs them, the loaded set
and its ground truth."""

import base64
import io
import json
import logging
import math
import os
import stat

import numpy as np
import pytest
from PIL import Image, ImageDraw

from kzoo.data.annotation_tools import (
    annotation_tool_to_coco,
    load_annotation_tool_instances,
    write_coco_from_tool,
)
from kzoo.data.coco_masks import segmentation_to_mask
from kzoo.data.coco_reader import load_coco_instances
from kzoo.data.labelme import labelme_to_coco
from kzoo.data.via import via_to_coco
from kzoo.data.yolo import yolo_to_coco

H, W = 360, 480


# ------------------------------------------------------------------------------------------------ helpers


def _save_image(path, height=H, width=W, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if isinstance(path, str):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return pixels


def _pil_polygon(points, height=H, width=W):
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).polygon([tuple(map(float, p)) for p in points], fill=1, outline=1)
    return np.asarray(image, np.uint8)


def _pil_ellipse(cx, cy, r, height=H, width=W):
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).ellipse([cx - r, cy - r, cx + r, cy + r], fill=1, outline=1)
    return np.asarray(image, np.uint8)


def _rotated_ellipse(cx, cy, rx, ry, theta, height=H, width=W):
    """Pixel centers inside the ellipse (an independent rasterization)."""
    y, x = np.mgrid[0:height, 0:width] + 0.5
    dx, dy = x - cx, y - cy
    u = dx * math.cos(theta) + dy * math.sin(theta)
    v = -dx * math.sin(theta) + dy * math.cos(theta)
    return ((u / rx) ** 2 + (v / ry) ** 2 <= 1.0).astype(np.uint8)


def _iou(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return (a & b).sum() / max((a | b).sum(), 1)


def _check_annotation(ann, image, expected_mask):
    """Box tight to the polygons' mask, crowd 0, area the mask's, mask equal to the expected one."""
    height, width = image["height"], image["width"]
    mask = segmentation_to_mask(ann["segmentation"], height, width)
    assert _iou(mask, expected_mask) >= 0.98
    rows, cols = np.nonzero(mask)
    x, y, w, h = ann["bbox"]
    assert abs(x - cols.min()) <= 1 and abs(y - rows.min()) <= 1
    assert abs(x + w - (cols.max() + 1)) <= 1 and abs(y + h - (rows.max() + 1)) <= 1
    assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
    assert ann["iscrowd"] == 0 and ann["area"] == mask.sum()


def _by_category(coco):
    names = {c["id"]: c["name"] for c in coco["categories"]}
    return [(names[a["category_id"]], a) for a in coco["annotations"]]


# ------------------------------------------------------------------------------------------------ labelme

GROUP_A = [[10, 200], [120, 200], [120, 350], [10, 350]]
GROUP_B = [[130, 200], [230, 200], [230, 350], [130, 350]]
LABELME_SHAPES = [
    {"label": "cat", "points": [[20, 20], [220, 30], [210, 180], [30, 170]], "shape_type": "polygon"},
    {"label": "dog", "points": [[460, 150], [250, 10]], "shape_type": "rectangle"},
    {"label": "cat", "points": [[380, 260], [380, 340]], "shape_type": "circle"},
    {"label": "dog", "points": GROUP_A, "shape_type": "polygon", "group_id": 1},
    {"label": "dog", "points": GROUP_B, "shape_type": "polygon", "group_id": 1},
    {"label": "cat", "points": [[5, 5], [50, 50]], "shape_type": "polygon"},  # 2 points: dropped
    {"label": "cat", "points": [[250, 170], [1e9, 200], [250, 230]], "shape_type": "polygon"},  # clipped
    {"label": "bird", "points": [[300, 300], [320, 300], [310, 320]], "shape_type": "polygon"},  # unknown
    {"label": "cat", "points": [[100, 100]], "shape_type": "point"},  # no area
]
EMBEDDED_SIZE = (100, 120)


@pytest.fixture(scope="module")
def labelme_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelme")
    _save_image(str(root / "images" / "a.png"))
    (root / "ann").mkdir()

    def write(name, **data):
        (root / "ann" / name).write_text(json.dumps({"version": "5.5.0", "flags": {}, **data}))

    write(
        "a.json",
        shapes=[{"group_id": None, "flags": {}, **s} for s in LABELME_SHAPES],
        imagePath="../images/a.png",
        imageData=None,
        imageHeight=H,
        imageWidth=W,
    )
    buffer = io.BytesIO()
    embedded = _save_image(buffer, *EMBEDDED_SIZE, seed=1, format="PNG")
    write(
        "b.json",
        shapes=[{"label": "dog", "points": [[10, 10], [90, 10], [90, 80]], "shape_type": "polygon"}],
        imagePath="gone.png",
        imageData=base64.b64encode(buffer.getvalue()).decode("ascii"),
        imageHeight=EMBEDDED_SIZE[0],
        imageWidth=EMBEDDED_SIZE[1],
    )
    (root / "ann" / "c.json").write_text("{not json")
    write("d.json", shapes=[], imagePath="nowhere.png", imageData=None, imageHeight=H, imageWidth=W)
    return root, embedded


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
    found = [(name, a) for name, a in _by_category(coco) if a["image_id"] == image["id"]]
    assert [name for name, _ in found] == ["cat", "dog", "cat", "dog", "cat"]
    expected = [
        _pil_polygon(LABELME_SHAPES[0]["points"]),
        _pil_polygon([[250, 10], [460, 10], [460, 150], [250, 150]]),
        _pil_ellipse(380, 260, 80),
        _pil_polygon(GROUP_A) | _pil_polygon(GROUP_B),
        _pil_polygon([[250, 170], [W, 170], [W, 230], [250, 230]]),
    ]
    for (_, ann), mask in zip(found, expected):
        _check_annotation(ann, image, mask)
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


# ---------------------------------------------------------------------------------------------------- VIA

VIA_REGIONS = [
    ({"name": "polygon", "all_points_x": [20, 220, 210, 30], "all_points_y": [20, 30, 180, 170]}, "cat"),
    ({"name": "rect", "x": 250, "y": 10, "width": 210, "height": 140}, "dog"),
    ({"name": "circle", "cx": 380, "cy": 260, "r": 80}, "cat"),
    ({"name": "ellipse", "cx": 130, "cy": 270, "rx": 100, "ry": 50, "theta": 0.5}, "dog"),
    ({"name": "point", "cx": 5, "cy": 5}, "cat"),  # no area
    ({"name": "polygon", "all_points_x": [1, 2], "all_points_y": [1, 2]}, "cat"),  # 2 points
    ({"name": "rect", "x": 1, "y": 1, "width": 5, "height": 5}, ""),  # no class
]
VIA_EXPECTED = [
    _pil_polygon([[20, 20], [220, 30], [210, 180], [30, 170]]),
    _pil_polygon([[250, 10], [460, 10], [460, 150], [250, 150]]),
    _pil_ellipse(380, 260, 80),
    _rotated_ellipse(130, 270, 100, 50, 0.5),
]


@pytest.fixture(scope="module")
def via_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("via")
    _save_image(str(root / "images" / "v1.png"))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 60 wide x 40 high, shown rotated: 40 wide x 60 high
    _save_image(str(root / "images" / "rotated.jpg"), 40, 60, format="JPEG", exif=exif.tobytes())
    metadata = {
        "v1.png1234": {
            "filename": "v1.png",
            "size": 1234,
            "file_attributes": {},
            "regions": [
                {"shape_attributes": shape, "region_attributes": {"species": label, "notes": "x"}}
                for shape, label in VIA_REGIONS
            ],
        },
        "rotated.jpg99": {
            "filename": "rotated.jpg",
            "size": 99,
            "file_attributes": {},
            "regions": [
                {
                    "shape_attributes": {"name": "rect", "x": 5, "y": 10, "width": 30, "height": 40},
                    "region_attributes": {"species": "dog", "notes": ""},
                }
            ],
        },
        "lost.png7": {"filename": "lost.png", "size": 7, "file_attributes": {}, "regions": []},
    }
    project = {
        "_via_settings": {"project": {"name": "test"}},
        "_via_img_metadata": metadata,
        "_via_attributes": {"region": {"species": {"type": "text"}, "notes": {"type": "text"}}, "file": {}},
        "_via_image_id_list": list(metadata),
    }
    (root / "project.json").write_text(json.dumps(project))
    export = {
        key: {
            **entry,
            "regions": [
                {**r, "region_attributes": {"class": r["region_attributes"]["species"]}} for r in entry["regions"]
            ],
        }
        for key, entry in metadata.items()
    }
    (root / "export.json").write_text(json.dumps(export))
    return root


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
    found = [(n, a) for n, a in _by_category(coco) if a["image_id"] == image["id"]]
    assert [n for n, _ in found] == ["cat", "dog", "cat", "dog"]
    for (_, ann), mask in zip(found, VIA_EXPECTED):
        _check_annotation(ann, image, mask)
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


# --------------------------------------------------------------------------------------------------- YOLO

YOLO_POLYGON = [[20, 20], [220, 30], [210, 180], [30, 170]]


def _normalized(points):
    return " ".join(f"{x / W:.6f} {y / H:.6f}" for x, y in points)


@pytest.fixture(scope="module")
def yolo_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("yolo")
    _save_image(str(root / "images" / "train" / "y1.png"))
    _save_image(str(root / "images" / "train" / "y2.png"), seed=2)  # no label file: a negative
    (root / "labels" / "train").mkdir(parents=True)
    lines = [
        f"0 {_normalized(YOLO_POLYGON)}",
        f"1 {_normalized(GROUP_A)}",
        f"1 {355 / W} {80 / H} {210 / W} {140 / H}",  # a detection box (cx cy w h)
        "1 0.1 abc 0.2 0.3 0.4 0.5",  # non-numeric
        "0 0.1 0.2 0.3",  # odd count
        f"5 {_normalized(GROUP_B)}",  # no class 5
        "",
    ]
    (root / "labels" / "train" / "y1.txt").write_text("\n".join(lines))
    (root / "labels" / "train" / "y3.txt").write_text(f"0 {_normalized(GROUP_B)}\n")  # no image
    (root / "list.yaml").write_text("path: .\ntrain: images/train\nnames:\n  - cat\n  - dog\n")
    (root / "dict.yaml").write_text("names:\n  0: cat\n  1: dog\n")
    return root


@pytest.mark.parametrize("data_yaml", ["list.yaml", "dict.yaml"])
def test_yolo_lines_become_polygons(yolo_set, data_yaml, caplog):
    with caplog.at_level(logging.WARNING):
        coco, _, counts = yolo_to_coco(
            str(yolo_set / "labels"), str(yolo_set / "images"), data_yaml=str(yolo_set / data_yaml)
        )
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]
    assert [i["file_name"] for i in coco["images"]] == ["train/y1.png", "train/y2.png"]
    image = coco["images"][0]
    found = _by_category(coco)
    assert [n for n, _ in found] == ["cat", "dog", "dog"] and all(a["image_id"] == 1 for _, a in found)
    expected = [
        _pil_polygon(YOLO_POLYGON),
        _pil_polygon(GROUP_A),
        _pil_polygon([[250, 10], [460, 10], [460, 150], [250, 150]]),
    ]
    for (_, ann), mask in zip(found, expected):
        _check_annotation(ann, image, mask)
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
    from kzoo.data.annotation_tools import TOOLS, annotation_tool
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
