"""Annotation inputs as the real tools write them, and nothing lost, nothing silent (issue 25): an empty result is an
error naming where kzoo looked; ``kzoo convert`` never writes over one of its inputs; a VIA region's class comes
only from the class attribute; negative VIA rectangles are dropped, counted; one image in two labelme files is
one COCO image; byte-order marks and CRLF line ends read; an empty split is named as such."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml
from PIL import Image

from kzoo.cli import main
from kzoo.data.annotation_builder import NoInstancesError
from kzoo.data.annotation_tools import annotation_tool_to_coco, write_coco_from_tool
from kzoo.data.detection_pipeline import make_detection_pipeline
from kzoo.data.via import via_to_coco
from kzoo.data.yolo import yolo_to_coco

W, H = 40, 30
SQUARE = [[5.0, 5.0], [25.0, 5.0], [25.0, 20.0], [5.0, 20.0]]


def _image(path, seed: int = 0) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def _labelme(folder, name: str, image_path: str, shapes: list[dict]) -> str:
    """A labelme 5.x json (as labelme saves it: imageData null, the size, flags)."""
    path = folder / name
    path.write_text(
        json.dumps(
            {
                "version": "5.4.1",
                "flags": {},
                "shapes": shapes,
                "imagePath": image_path,
                "imageData": None,
                "imageHeight": H,
                "imageWidth": W,
            },
            indent=2,
        )
    )
    return str(path)


def _shape(label: str, points=SQUARE, shape_type: str = "polygon") -> dict:
    return {
        "label": label,
        "points": points,
        "group_id": None,
        "description": "",
        "shape_type": shape_type,
        "flags": {},
        "mask": None,
    }


def _via_project(path, regions_by_file: dict[str, list[dict]], attributes: dict[str, dict]) -> str:
    """A VIA 2.0.x project json: ``_via_settings``, ``_via_img_metadata`` keyed by filename + size,
    ``_via_attributes`` and ``_via_image_id_list``."""
    metadata = {}
    for filename, regions in regions_by_file.items():
        size = os.path.getsize(os.path.join(os.path.dirname(path), filename))
        metadata[f"{filename}{size}"] = {"filename": filename, "size": size, "regions": regions, "file_attributes": {}}
    project = {
        "_via_settings": {"ui": {}, "core": {"buffer_size": 18}, "project": {"name": "p"}},
        "_via_img_metadata": metadata,
        "_via_attributes": {"region": attributes, "file": {}},
        "_via_data_format_version": "2.0.10",
        "_via_image_id_list": list(metadata),
    }
    path.write_text(json.dumps(project))
    return str(path)


def _polygon_region(attributes: dict) -> dict:
    xs, ys = [p[0] for p in SQUARE], [p[1] for p in SQUARE]
    return {
        "shape_attributes": {"name": "polygon", "all_points_x": xs, "all_points_y": ys},
        "region_attributes": attributes,
    }


def _yolo_set(root, lines: list[str] | None, names=("cat", "dog")) -> tuple[str, str, str]:
    """``root/images/train/a.png``, ``root/labels/train/a.txt`` (unless ``lines`` is None) and ``root/data.yaml``."""
    _image(root / "images" / "train" / "a.png")
    (root / "labels" / "train").mkdir(parents=True)
    if lines is not None:
        (root / "labels" / "train" / "a.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(
        yaml.safe_dump(
            {"path": str(root), "train": "images/train", "val": "images/train", "names": dict(enumerate(names))}
        )
    )
    return str(root / "labels"), str(root / "images"), str(root / "data.yaml")


def _yolo_line(index: int) -> str:
    return f"{index} " + " ".join(f"{x / W:.6f} {y / H:.6f}" for x, y in SQUARE)


# ---------------------------------------------------------------------------- 1. empty results are errors


def test_convert_an_empty_labelme_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    output = tmp_path / "out.json"
    assert main(["convert", "labelme", str(tmp_path / "empty"), "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert "no instances found" in err and f"*.json under {tmp_path / 'empty'}" in err
    assert "0 annotation files" in err and not output.exists()


def test_convert_yolo_without_label_files_is_an_error(tmp_path, capsys):
    labels, images, data_yaml = _yolo_set(tmp_path, None)
    output = tmp_path / "out.json"
    args = ["convert", "yolo", labels, "--images", images, "--data-yaml", data_yaml, "--output", str(output)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no instances found" in err and "0 label files, 1 images" in err and labels in err
    assert not output.exists()


def test_yolo_labels_all_out_of_range_is_an_error_naming_what_was_dropped(tmp_path):
    labels, images, data_yaml = _yolo_set(tmp_path, [_yolo_line(5), _yolo_line(7)])
    with pytest.raises(NoInstancesError) as raised:
        write_coco_from_tool("yolo", labels, str(tmp_path / "out.json"), images=images, yolo_data_yaml=data_yaml)
    message = str(raised.value)
    assert "2 shapes of a label not in class_names" in message and "class index 5 (the names cover 0..1)" in message
    assert "1 label files" in message and not (tmp_path / "out.json").exists()


def test_labelme_shapes_all_dropped_is_an_error(tmp_path):
    _image(tmp_path / "a.png")
    _labelme(tmp_path, "a.json", "a.png", [_shape("cat", [[1, 1], [5, 5]], "line")])
    with pytest.raises(NoInstancesError, match=r"1 annotation files.*shapes that enclose no area"):
        annotation_tool_to_coco("labelme", str(tmp_path))


def test_a_training_pipeline_without_instances_is_an_error():
    examples = [
        {
            "image": np.zeros((16, 16, 3), np.uint8),
            "boxes": np.zeros((0, 4), np.float32),
            "classes": np.zeros(0, np.int32),
            "masks": np.zeros((0, 16, 16), bool),
        }
    ] * 2
    with pytest.raises(ValueError, match=r"training source has no instances \(2 images, 0 instances\)"):
        make_detection_pipeline(examples, 1, training=True, image_size=16, mask_size=8)
    make_detection_pipeline(examples, 1, training=False, image_size=16, mask_size=8)  # negatives: fine to score


def _coco_json(path, annotated: bool, folder) -> str:
    _image(folder / "a.png")
    annotations = (
        [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [5, 5, 20, 15],
                "area": 300,
                "iscrowd": 0,
                "segmentation": [[5, 5, 25, 5, 25, 20, 5, 20]],
            }
        ]
        if annotated
        else []
    )
    path.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
                "annotations": annotations,
                "categories": [{"id": 1, "name": "cat"}] if annotated else [],
            }
        )
    )
    return str(path)


@pytest.mark.parametrize("empty", ["training", "evaluation"])
def test_a_split_with_no_annotations_says_so_before_training(tmp_path, tiny_mask_rcnn, capsys, empty):
    """6.: not "the categories of A and B differ: () vs (...)", and nothing trained."""
    train = _coco_json(tmp_path / "train.json", empty != "training", tmp_path / "train")
    evaluation = _coco_json(tmp_path / "eval.json", empty != "evaluation", tmp_path / "eval")
    config = tiny_mask_rcnn(
        tmp_path / "run",
        data={
            "source": "coco",
            "train_annotations": train,
            "train_images": str(tmp_path / "train"),
            "eval_annotations": evaluation,
            "eval_images": str(tmp_path / "eval"),
        },
    )
    config["model"]["num_classes"] = 2
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    expected = train if empty == "training" else evaluation
    assert f"the {empty} split of {expected} has no annotations" in err and "differ" not in err, err
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.json").exists()


def test_a_labelme_split_with_no_instances_names_the_split(tmp_path, tiny_mask_rcnn, capsys):
    for split, label in (("train", "cat"), ("val", None)):
        folder = tmp_path / split
        folder.mkdir()
        _image(folder / "a.png")
        _labelme(folder, "a.json", "a.png", [_shape(label)] if label else [])
    config = tiny_mask_rcnn(
        tmp_path / "run",
        data={
            "source": "labelme",
            "train_annotations": str(tmp_path / "train"),
            "eval_annotations": str(tmp_path / "val"),
        },
    )
    config["model"]["num_classes"] = 2
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"the evaluation split of {tmp_path / 'val'} has no annotations" in err and "differ" not in err, err


# ------------------------------------------------------------------ 2. never write over one of the inputs


def _inputs(tmp_path):
    """A labelme folder, a VIA project and a YOLO set, sharing nothing."""
    labelme = tmp_path / "labelme"
    labelme.mkdir()
    _image(labelme / "a.png")
    _labelme(labelme, "a.json", "a.png", [_shape("cat")])
    via = tmp_path / "via"
    via.mkdir()
    _image(via / "v.png")
    _via_project(via / "project.json", {"v.png": [_polygon_region({"class": "cat"})]}, {"class": {"type": "text"}})
    yolo = tmp_path / "yolo"
    yolo.mkdir()
    _yolo_set(yolo, [_yolo_line(0)])
    return {
        "labelme json": (["labelme", str(labelme)], labelme / "a.json"),
        "labelme image": (["labelme", str(labelme)], labelme / "a.png"),
        "via project": (["via", str(via / "project.json"), "--images", str(via)], via / "project.json"),
        "via image": (["via", str(via / "project.json")], via / "v.png"),
        "yolo label": (
            ["yolo", str(yolo / "labels"), "--images", str(yolo / "images"), "--data-yaml", str(yolo / "data.yaml")],
            yolo / "labels" / "train" / "a.txt",
        ),
        "yolo data.yaml": (
            ["yolo", str(yolo / "labels"), "--images", str(yolo / "images"), "--data-yaml", str(yolo / "data.yaml")],
            yolo / "data.yaml",
        ),
        "yolo image": (
            ["yolo", str(yolo / "labels"), "--images", str(yolo / "images"), "--data-yaml", str(yolo / "data.yaml")],
            yolo / "images" / "train" / "a.png",
        ),
    }


@pytest.mark.parametrize(
    "which", ["labelme json", "labelme image", "via project", "via image", "yolo label", "yolo data.yaml", "yolo image"]
)
@pytest.mark.parametrize("spelled", ["as is", "through a link"])
def test_convert_refuses_an_output_that_is_one_of_its_inputs(tmp_path, capsys, which, spelled):
    args, target = _inputs(tmp_path)[which]
    before = target.read_bytes()
    output = target
    if spelled == "through a link":
        output = tmp_path / "link.json"
        output.symlink_to(target)
    assert main(["convert", *args, "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert f"refusing to write {output}" in err and "which writing it would overwrite" in err, err
    assert target.read_bytes() == before
    assert not any(p.name.endswith("_images") for p in tmp_path.rglob("*"))  # nothing written beside it either


def test_convert_torchvision_refuses_to_write_over_its_checkpoint(tmp_path, capsys):
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"not read")
    assert main(["convert", "torchvision", str(checkpoint), str(checkpoint)]) == 2
    assert f"refusing to write {checkpoint}: it is the checkpoint" in capsys.readouterr().err
    assert checkpoint.read_bytes() == b"not read"


def test_convert_writes_beside_its_inputs(tmp_path, capsys):
    args, target = _inputs(tmp_path)["labelme json"]
    output = target.parent / "instances.json"
    assert main(["convert", *args, "--output", str(output)]) == 0
    assert len(json.loads(output.read_text())["annotations"]) == 1


# ------------------------------------------------------------ 3. VIA class attribute, negative rects, merging


def _via_two_attributes(tmp_path, regions, attributes=("class", "note")):
    _image(tmp_path / "v.png")
    return _via_project(
        tmp_path / "project.json",
        {"v.png": regions},
        {name: {"type": "text", "description": "", "default_value": ""} for name in attributes},
    )


def test_via_region_without_the_class_attribute_is_dropped_not_classed_by_its_note(tmp_path):
    project = _via_two_attributes(
        tmp_path, [_polygon_region({"class": "cat", "note": ""}), _polygon_region({"note": "blurry"})]
    )
    coco, _, counts = via_to_coco(project)
    assert [c["name"] for c in coco["categories"]] == ["cat"] and len(coco["annotations"]) == 1
    assert counts["missing_class_attribute"] == 1


def test_via_ambiguous_attributes_are_an_error_listing_them(tmp_path, capsys):
    project = _via_two_attributes(
        tmp_path, [_polygon_region({"species": "cat", "note": "blurry"})], attributes=("species", "note")
    )
    with pytest.raises(ValueError, match=r"several: \['species', 'note'\].*--class-attribute"):
        via_to_coco(project)
    with pytest.raises(ValueError, match=r"'kind' is not a region attribute.*\['species', 'note'\]"):
        via_to_coco(project, class_attribute="kind")
    output = tmp_path / "out.json"
    assert main(["convert", "via", project, "--output", str(output), "--class-attribute", "species"]) == 0
    assert [c["name"] for c in json.loads(output.read_text())["categories"]] == ["cat"]
    assert main(["convert", "via", project, "--output", str(tmp_path / "other.json")]) == 2
    assert "['species', 'note']" in capsys.readouterr().err and not (tmp_path / "other.json").exists()


def test_training_names_the_via_class_attribute_in_the_config(tmp_path):
    from kzoo.config import load_config
    from kzoo.tasks import task_for

    project = _via_two_attributes(
        tmp_path, [_polygon_region({"species": "cat", "note": "blurry"})], attributes=("species", "note")
    )
    data = [
        "data.source=via",
        f"data.train_annotations={project}",
        f"data.train_images={tmp_path}",
        f"data.eval_annotations={project}",
        f"data.eval_images={tmp_path}",
        f"output_dir={tmp_path / 'run'}",
    ]
    with pytest.raises(ValueError, match=r"several: \['species', 'note'\]"):
        task_for(load_config("configs/mask_rcnn_shapes.yaml", data)).data  # noqa: B018
    task = task_for(load_config("configs/mask_rcnn_shapes.yaml", [*data, "data.class_attribute=species"]))
    assert task.data.categories.names == ("cat",)


def test_via_negative_rect_is_dropped_and_counted_not_mirrored(tmp_path):
    regions = [
        _polygon_region({"class": "cat"}),
        {
            "shape_attributes": {"name": "rect", "x": 30, "y": 25, "width": -20, "height": -15},
            "region_attributes": {"class": "dog"},
        },
        {"shape_attributes": {"name": "circle", "cx": 20, "cy": 15, "r": -4}, "region_attributes": {"class": "dog"}},
    ]
    project = _via_two_attributes(tmp_path, regions, attributes=("class",))
    coco, _, counts = via_to_coco(project)
    assert [c["name"] for c in coco["categories"]] == ["cat"] and len(coco["annotations"]) == 1
    assert counts["negative_sizes"] == 2


def test_one_image_in_two_labelme_files_is_one_coco_image(tmp_path, capsys):
    folder = tmp_path / "ann"
    folder.mkdir()
    _image(tmp_path / "photo.png")
    _labelme(folder, "first.json", "../photo.png", [_shape("cat")])
    (folder / "sub").mkdir()
    _labelme(folder / "sub", "second.json", "../../photo.png", [_shape("dog", [[1, 1], [10, 1], [10, 10]])])
    coco, _, counts = annotation_tool_to_coco("labelme", str(folder))
    assert len(coco["images"]) == 1 and counts["merged_images"] == 1
    assert {a["image_id"] for a in coco["annotations"]} == {1} and len(coco["annotations"]) == 2
    output = tmp_path / "out.json"
    assert main(["convert", "labelme", str(folder), "--output", str(output)]) == 0
    assert "merged: images annotated in several files" in capsys.readouterr().out


# --------------------------------------------------------------------------- 4. byte-order marks and CRLF


def test_yolo_labels_with_bom_crlf_and_trailing_blanks(tmp_path):
    labels, images, data_yaml = _yolo_set(tmp_path, None)
    text = "\r\n".join([_yolo_line(0) + "  ", _yolo_line(1) + "\t", "   ", ""]) + "\r\n"
    (tmp_path / "labels" / "train" / "a.txt").write_bytes(b"\xef\xbb\xbf" + text.encode())
    yaml_text = (tmp_path / "data.yaml").read_text().replace("\n", "\r\n")
    (tmp_path / "data.yaml").write_bytes(b"\xef\xbb\xbf" + yaml_text.encode())
    coco, _, counts = yolo_to_coco(labels, images, data_yaml=data_yaml)
    assert [a["category_id"] for a in coco["annotations"]] == [1, 2]
    assert counts["malformed_shapes"] == 0 and counts["malformed_files"] == 0
    (tmp_path / "data.yaml").unlink()  # classes.txt with a BOM too
    (tmp_path / "labels" / "classes.txt").write_bytes(b"\xef\xbb\xbfcat\r\ndog\r\n")
    coco, _, _ = yolo_to_coco(str(tmp_path / "labels"), images)
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"] and len(coco["annotations"]) == 2


def test_labelme_and_via_json_with_a_bom(tmp_path):
    _image(tmp_path / "a.png")
    path = _labelme(tmp_path, "a.json", "a.png", [_shape("cat")])
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"))
    coco, _, counts = annotation_tool_to_coco("labelme", str(tmp_path))
    assert len(coco["annotations"]) == 1 and counts["malformed_files"] == 0
    (tmp_path / "via").mkdir()
    project = _via_two_attributes(tmp_path / "via", [_polygon_region({"class": "cat"})], attributes=("class",))
    with open(project, "rb") as f:
        data = f.read()
    with open(project, "wb") as f:
        f.write(b"\xef\xbb\xbf" + data)
    assert len(via_to_coco(project)[0]["annotations"]) == 1
