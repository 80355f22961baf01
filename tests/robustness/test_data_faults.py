"""A truncated image in a COCO-format set: a clear error naming the file (and image id), never a bare TF error."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
import yaml
from PIL import Image

from kzoo.cli import main
from kzoo.data.coco_reader import load_coco_instances
from kzoo.data.decode_errors import ImageDecodeError, naming_undecodable_images
from kzoo.data.detection_pipeline import make_detection_pipeline

SIDE = 64


def _image_bytes(seed: int, fmt: str) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)  # noise: PNG and JPEG data well past the header
    pixels[16:40, 16:40] = (255, 0, 0)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def write_coco_set(root, name: str, count: int, truncated: int | None = None, fmt: str = "PNG") -> tuple[str, str]:
    """``count`` images with one square each, as a COCO json and an image folder; image ``truncated`` (0-based)
    keeps a valid header but loses the second half of its bytes. Returns ``(json path, image folder)``."""
    folder = root / f"{name}_images"
    folder.mkdir()
    images, annotations = [], []
    suffix = "png" if fmt == "PNG" else "jpg"
    for i in range(count):
        data = _image_bytes(i, fmt)
        if i == truncated:
            data = data[: len(data) // 2]
        (folder / f"img{i}.{suffix}").write_bytes(data)
        images.append({"id": 100 + i, "file_name": f"img{i}.{suffix}", "height": SIDE, "width": SIDE})
        annotations.append(
            {
                "id": 1000 + i,
                "image_id": 100 + i,
                "category_id": 1,
                "bbox": [16, 16, 24, 24],
                "area": 576,
                "iscrowd": 0,
                "segmentation": [[16, 16, 40, 16, 40, 40, 16, 40]],
            }
        )
    path = root / f"{name}.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "square"}]})
    )
    return str(path), str(folder)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_pipeline_error_names_the_truncated_file(tmp_path, fmt):
    annotations, folder = write_coco_set(tmp_path, "train", 3, truncated=1, fmt=fmt)
    instances = load_coco_instances(annotations, folder)  # check_images: header (the default) lets it through
    assert len(instances.records) == 3
    dataset = make_detection_pipeline(instances, 1, training=False, image_size=SIDE, max_instances=2, mask_size=8)
    with pytest.raises(ImageDecodeError) as raised, naming_undecodable_images(instances, "training"):
        for _ in dataset:
            pass
    message = str(raised.value)
    assert "img1." in message and f"{folder}/img1." in message and "(image id 101)" in message
    assert "truncated or corrupt" in message and "\n" not in message


def test_check_images_full_drops_the_truncated_file_before_training(tmp_path, caplog):
    annotations, folder = write_coco_set(tmp_path, "train", 3, truncated=1)
    with caplog.at_level(logging.WARNING):
        instances = load_coco_instances(annotations, folder, check_images="full")
    assert [r.image_id for r in instances.records] == [100, 102] and instances.counts["corrupt_images"] == 1
    assert f"{folder}/img1.png" in caplog.text


@pytest.mark.slow
def test_training_on_a_truncated_image_fails_naming_it(tmp_path, capsys, tiny_mask_rcnn):
    """``kzoo train`` on a COCO set with a truncated PNG: exit 2, one line naming the file and its image id, no
    checkpoint or results written (``data.check_images: full`` drops the file before training: the test above)."""
    train_json, train_images = write_coco_set(tmp_path, "train", 4, truncated=2)
    eval_json, eval_images = write_coco_set(tmp_path, "eval", 2)
    config = tiny_mask_rcnn(
        tmp_path / "run",
        data={
            "source": "coco",
            "train_annotations": train_json,
            "train_images": train_images,
            "eval_annotations": eval_json,
            "eval_images": eval_images,
        },
    )
    config["model"]["num_classes"] = 2
    path = tmp_path / "coco.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{train_images}/img2.png (image id 102) cannot be decoded" in err and err.count("\n") == 1, err
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.json").exists()
