"""Files of the annotation tools for the converter tests (test_labelme, test_via, test_yolo, test_annotation_tools):
image and mask helpers, the shapes each set holds and what they must become. The sets are fixtures of conftest.py."""

import math
import os

import numpy as np
from PIL import Image, ImageDraw

from kzoo.data.coco_masks import segmentation_to_mask

H, W = 360, 480


def save_image(path, height=H, width=W, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if isinstance(path, str):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return pixels


def pil_polygon(points, height=H, width=W):
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).polygon([tuple(map(float, p)) for p in points], fill=1, outline=1)
    return np.asarray(image, np.uint8)


def pil_ellipse(cx, cy, r, height=H, width=W):
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).ellipse([cx - r, cy - r, cx + r, cy + r], fill=1, outline=1)
    return np.asarray(image, np.uint8)


def rotated_ellipse(cx, cy, rx, ry, theta, height=H, width=W):
    """Pixel centers inside the ellipse (an independent rasterization)."""
    y, x = np.mgrid[0:height, 0:width] + 0.5
    dx, dy = x - cx, y - cy
    u = dx * math.cos(theta) + dy * math.sin(theta)
    v = -dx * math.sin(theta) + dy * math.cos(theta)
    return ((u / rx) ** 2 + (v / ry) ** 2 <= 1.0).astype(np.uint8)


def iou(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return (a & b).sum() / max((a | b).sum(), 1)


def check_annotation(ann, image, expected_mask):
    """Box tight to the polygons' mask, crowd 0, area the mask's, mask equal to the expected one."""
    height, width = image["height"], image["width"]
    mask = segmentation_to_mask(ann["segmentation"], height, width)
    assert iou(mask, expected_mask) >= 0.98
    rows, cols = np.nonzero(mask)
    x, y, w, h = ann["bbox"]
    assert abs(x - cols.min()) <= 1 and abs(y - rows.min()) <= 1
    assert abs(x + w - (cols.max() + 1)) <= 1 and abs(y + h - (rows.max() + 1)) <= 1
    assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
    assert ann["iscrowd"] == 0 and ann["area"] == mask.sum()


def by_category(coco):
    names = {c["id"]: c["name"] for c in coco["categories"]}
    return [(names[a["category_id"]], a) for a in coco["annotations"]]


def normalized(points):
    return " ".join(f"{x / W:.6f} {y / H:.6f}" for x, y in points)


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
    pil_polygon([[20, 20], [220, 30], [210, 180], [30, 170]]),
    pil_polygon([[250, 10], [460, 10], [460, 150], [250, 150]]),
    pil_ellipse(380, 260, 80),
    rotated_ellipse(130, 270, 100, 50, 0.5),
]

YOLO_POLYGON = [[20, 20], [220, 30], [210, 180], [30, 170]]
