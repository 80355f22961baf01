"""Users' annotation folders end to end: labelme and VIA files train for an epoch from the CLI; convert writes
COCO json that the coco source reads."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from kzoo.cli import main
from kzoo.data.coco_masks import mask_to_polygons
from kzoo.data.shapes import SHAPES_INSTANCE_CLASSES, make_shapes_instances


def _write_labelme(folder, examples):
    folder.mkdir(parents=True)
    for index, example in enumerate(examples):
        name = f"photo{index}.png"
        Image.fromarray(example["image"]).save(folder / name)
        shapes = []
        for group, (mask, label) in enumerate(zip(example["masks"], example["classes"])):
            for polygon in mask_to_polygons(mask):
                points = np.asarray(polygon, float).reshape(-1, 2).tolist()
                shapes.append(
                    {
                        "label": SHAPES_INSTANCE_CLASSES[label - 1],
                        "points": points,
                        "group_id": group,
                        "shape_type": "polygon",
                        "flags": {},
                    }
                )
        height, width = example["image"].shape[:2]
        (folder / f"photo{index}.json").write_text(
            json.dumps(
                {
                    "version": "5.4.1",
                    "flags": {},
                    "shapes": shapes,
                    "imagePath": name,
                    "imageData": None,
                    "imageHeight": height,
                    "imageWidth": width,
                }
            )
        )


def _write_via(path, image_dir, examples):
    image_dir.mkdir(parents=True)
    metadata = {}
    for index, example in enumerate(examples):
        name = f"img{index}.png"
        Image.fromarray(example["image"]).save(image_dir / name)
        size = (image_dir / name).stat().st_size
        regions = []
        for mask, label in zip(example["masks"], example["classes"]):
            polygon = np.asarray(max(mask_to_polygons(mask), key=len)).reshape(-1, 2)
            regions.append(
                {
                    "shape_attributes": {
                        "name": "polygon",
                        "all_points_x": polygon[:, 0].tolist(),
                        "all_points_y": polygon[:, 1].tolist(),
                    },
                    "region_attributes": {"shape": SHAPES_INSTANCE_CLASSES[label - 1]},
                }
            )
        metadata[f"{name}{size}"] = {"filename": name, "size": size, "regions": regions, "file_attributes": {}}
    path.write_text(
        json.dumps(
            {
                "_via_settings": {},
                "_via_img_metadata": metadata,
                "_via_attributes": {"region": {"shape": {"type": "text"}}, "file": {}},
            }
        )
    )


def _config(tmp_path, tiny_mask_rcnn, data):
    values = tiny_mask_rcnn(tmp_path / "run")
    values["data"] = {
        **{k: v for k, v in values["data"].items() if not k.startswith("shapes_")},
        **data,
        "train_examples": None,
        "eval_examples": None,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("tool", ["labelme", "via"])
def test_annotation_folders_train_from_the_cli(tool, tmp_path, tiny_mask_rcnn, capsys):
    train, evaluation = make_shapes_instances(8, 64, 3, seed=1), make_shapes_instances(4, 64, 3, seed=2)
    if tool == "labelme":
        _write_labelme(tmp_path / "train", train)
        _write_labelme(tmp_path / "val", evaluation)
        data = {
            "source": "labelme",
            "train_annotations": str(tmp_path / "train"),
            "eval_annotations": str(tmp_path / "val"),
        }
    else:
        _write_via(tmp_path / "train.json", tmp_path / "train_images", train)
        _write_via(tmp_path / "val.json", tmp_path / "val_images", evaluation)
        data = {
            "source": "via",
            "train_annotations": str(tmp_path / "train.json"),
            "train_images": str(tmp_path / "train_images"),
            "eval_annotations": str(tmp_path / "val.json"),
            "eval_images": str(tmp_path / "val_images"),
        }
    config = _config(tmp_path, tiny_mask_rcnn, {**data, "class_names": list(SHAPES_INSTANCE_CLASSES)})
    assert main(["train", str(config), "--quiet"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "COCO AP on 4 images" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["class_names"] == list(SHAPES_INSTANCE_CLASSES) and metrics["epochs"] == 1

    # convert: a COCO json that the coco source (and pycocotools) reads, with every instance
    output = tmp_path / "instances.json"
    args = ["convert", tool, data["eval_annotations"], "--output", str(output)]
    args += ["--images", data["eval_images"]] if tool == "via" else []
    assert main(args + ["--class-names", ",".join(SHAPES_INSTANCE_CLASSES)]) == 0
    coco = json.loads(output.read_text())
    assert len(coco["images"]) == 4 and len(coco["annotations"]) == sum(len(e["classes"]) for e in evaluation)
    assert [c["name"] for c in coco["categories"]] == list(SHAPES_INSTANCE_CLASSES)
    assert "instances" in capsys.readouterr().out
