"""A small COCO-format set shared by the COCO tests (test_coco_reader, test_coco_writer): shapes in 40 x 56 images,
non-contiguous category ids, every segmentation format, and the problems the reader must drop and count."""

import json

import numpy as np
from PIL import Image

from kzoo.data.coco_categories import CocoCategories
from kzoo.data.coco_writer import write_coco_json
from kzoo.data.shapes import render_shape

H, W = 40, 56
CATEGORIES = CocoCategories((1, 5, 90), ("circle", "square", "triangle"))  # non-contiguous ids


def example(image_id, shapes, crowd=()):
    masks = (
        np.stack([render_shape(kind, center, r, (H, W)) for kind, center, r in shapes])
        if shapes
        else (np.zeros((0, H, W), bool))
    )
    labels = [("circle", "square", "triangle").index(kind) + 1 for kind, _, _ in shapes]
    rng = np.random.default_rng(image_id)
    return {
        "image_id": image_id,
        "file_name": f"img{image_id}.png",
        "image": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "classes": np.array(labels, np.int32),
        "masks": masks,
        "is_crowd": np.array([i in crowd for i in range(len(shapes))], bool),
    }


EXAMPLES = [
    example(1, [("circle", (12, 12), 7), ("square", (12, 40), 6), ("triangle", (30, 26), 8)]),
    example(2, [("square", (20, 20), 10), ("circle", (20, 44), 6)], crowd=(0,)),
    example(3, []),  # no instances: a negative
    example(4, [("circle", (20, 20), 8)]),  # its file will be missing
    example(5, [("square", (20, 20), 8)]),  # its file will be garbage
    example(6, [("square", (20, 20), 8)]),  # its file will have the wrong size
]
FORMATS = ("polygon", "uncompressed_rle", "rle")


def write_coco_set(root):
    """The set under ``root``: ``(json path, image folder, the json's dict)``."""
    images = root / "images"
    images.mkdir()
    for ex in EXAMPLES[:3]:
        Image.fromarray(ex["image"]).save(images / ex["file_name"])
    (images / "img5.png").write_bytes(b"this is not a png")
    Image.fromarray(np.zeros((H + 1, W, 3), np.uint8)).save(images / "img6.png")
    path = root / "annotations" / "instances.json"
    data = write_coco_json(EXAMPLES, CATEGORIES, str(path), segmentation_format=FORMATS)
    # problems that the loader must drop and count
    bad = [
        {"image_id": 1, "category_id": 5, "bbox": [3, 4, 0, 5], "segmentation": [[3, 4, 3, 9, 3, 4]]},  # zero width
        {"image_id": 2, "category_id": 5, "bbox": [W + 5, 3, 4, 4], "segmentation": [[60, 3, 64, 3, 64, 7]]},  # outside
        {"image_id": 1, "category_id": 7, "bbox": [3, 4, 5, 5], "segmentation": [[3, 4, 8, 4, 8, 9]]},  # unknown id
        {"image_id": 2, "category_id": 1, "bbox": [3, 4, 5, 5], "segmentation": [[3, 4, 8, 4]]},  # 2-point polygon
    ]
    for i, ann in enumerate(bad):
        data["annotations"].append({"id": 100 + i, "iscrowd": 0, "area": 1.0, **ann})
    path.write_text(json.dumps(data))
    return str(path), str(images), data
