"""Fixtures of tests/data: the labelme, VIA and YOLO sets of the converter tests (written once per test module)."""

import base64
import io
import json

import pytest
from annotation_examples import (
    EMBEDDED_SIZE,
    GROUP_A,
    GROUP_B,
    LABELME_SHAPES,
    VIA_REGIONS,
    YOLO_POLYGON,
    H,
    W,
    normalized,
    save_image,
)
from PIL import Image


@pytest.fixture(scope="module")
def labelme_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelme")
    save_image(str(root / "images" / "a.png"))
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
    embedded = save_image(buffer, *EMBEDDED_SIZE, seed=1, format="PNG")
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


@pytest.fixture(scope="module")
def via_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("via")
    save_image(str(root / "images" / "v1.png"))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 60 wide x 40 high, shown rotated: 40 wide x 60 high
    save_image(str(root / "images" / "rotated.jpg"), 40, 60, format="JPEG", exif=exif.tobytes())
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


@pytest.fixture(scope="module")
def yolo_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("yolo")
    save_image(str(root / "images" / "train" / "y1.png"))
    save_image(str(root / "images" / "train" / "y2.png"), seed=2)  # no label file: a negative
    (root / "labels" / "train").mkdir(parents=True)
    lines = [
        f"0 {normalized(YOLO_POLYGON)}",
        f"1 {normalized(GROUP_A)}",
        f"1 {355 / W} {80 / H} {210 / W} {140 / H}",  # a detection box (cx cy w h)
        "1 0.1 abc 0.2 0.3 0.4 0.5",  # non-numeric
        "0 0.1 0.2 0.3",  # odd count
        f"5 {normalized(GROUP_B)}",  # no class 5
        "",
    ]
    (root / "labels" / "train" / "y1.txt").write_text("\n".join(lines))
    (root / "labels" / "train" / "y3.txt").write_text(f"0 {normalized(GROUP_B)}\n")  # no image
    (root / "list.yaml").write_text("path: .\ntrain: images/train\nnames:\n  - cat\n  - dog\n")
    (root / "dict.yaml").write_text("names:\n  0: cat\n  1: dog\n")
    return root
