"""Bad command-line inputs, one by one: each exits with code 2 and one line on stderr naming the problem (the CLI's
``main`` in this process: no TensorFlow start-up per case)."""

from __future__ import annotations

import json

import pytest
import yaml

from kzoo.cli import main

TINY = {
    "name": "tiny",
    "model": {
        "variant": "custom",
        "blocks": [{"filters": [8, 8], "kernel_size": 3}, {"filters": [8], "pool": False, "dropout": False}],
        "num_classes": 5,
        "input_shape": [16, 16, 3],
    },
    "data": {"source": "shapes", "train_examples": 64, "eval_examples": 32, "image_size": 16},
    "train": {"epochs": 1, "batch_size": 32, "learning_rate": 0.05},
}
COCO = {
    "task": "mask_rcnn",
    "name": "tiny_coco",
    "model": {
        "num_classes": 2,
        "backbone": {"name": "small_convnet", "width": 0.25, "norm": "group"},
        "fpn": {"channels": 16},
        "input": {"min_size": 64, "max_size": 64},
    },
    "data": {
        "source": "coco",
        "train_annotations": "{root}/train.json",
        "train_images": "{root}/images",
        "eval_annotations": "{root}/train.json",
        "eval_images": "{root}/images",
    },
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder with a tiny NIN config, a COCO config, an image folder and a few bad files."""
    import keras
    import numpy as np
    from PIL import Image

    from kzoo.models.nin import build_nin, resolve_blocks

    root = tmp_path_factory.mktemp("inputs")
    (root / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "output_dir": str(root / "run")}))
    coco = json.loads(json.dumps(COCO).replace("{root}", str(root)))
    (root / "coco.yaml").write_text(yaml.safe_dump({**coco, "output_dir": str(root / "coco_run")}))
    (root / "images").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(root / "images" / "a.png")
    (root / "train.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.png", "height": 64, "width": 64}],
                "annotations": [
                    {
                        "id": 1,
                        "image_id": 1,
                        "category_id": 1,
                        "bbox": [8, 8, 16, 16],
                        "iscrowd": 0,
                        "area": 256,
                        "segmentation": [[8, 8, 24, 8, 24, 24, 8, 24]],
                    }
                ],
                "categories": [{"id": 1, "name": "thing"}],
            }
        )
    )
    (root / "broken.yaml").write_text("name: tiny\nmodel:\n  classes: 5\n   blocks: [\n")
    (root / "notes.png").write_text("hello, not an image")
    (root / "a_file").write_text("in the way")
    model = build_nin(keras.Input((16, 16, 3)), resolve_blocks("custom", TINY["model"]["blocks"]), num_classes=5)
    model.save_weights(root / "full.weights.h5")
    data = (root / "full.weights.h5").read_bytes()
    (root / "truncated.weights.h5").write_bytes(data[: len(data) // 2])
    return root


# (case id, arguments with {root} for the fixture's folder, words that must appear in the message)
CASES = [
    ("config missing", ["train", "{root}/missing.yaml"], ["config file not found: {root}/missing.yaml"]),
    ("yaml syntax", ["train", "{root}/broken.yaml"], ["{root}/broken.yaml is not valid YAML at line 4"]),
    ("unknown key", ["train", "{root}/tiny.yaml", "--set", "train.epoch=2"], ["unknown config key 'train.epoch'"]),
    (
        "wrong type",
        ["train", "{root}/tiny.yaml", "--set", "train.batch_size=many"],
        ["'train.batch_size' must be int, got 'many'"],
    ),
    ("epochs 0", ["train", "{root}/tiny.yaml", "--set", "train.epochs=0"], ["'train.epochs' must be >= 1, got 0"]),
    (
        "epochs negative",
        ["train", "{root}/tiny.yaml", "--set", "train.epochs=-3"],
        ["'train.epochs' must be >= 1, got -3"],
    ),
    (
        "learning rate negative",
        ["train", "{root}/tiny.yaml", "--set", "train.learning_rate=-0.1"],
        ["'train.learning_rate' must be > 0.0, got -0.1"],
    ),
    ("batch size 0", ["train", "{root}/tiny.yaml", "--set", "train.batch_size=0"], ["'train.batch_size' must be >= 1"]),
    (
        "unknown source",
        ["train", "{root}/tiny.yaml", "--set", "data.source=imagenet21k"],
        ["'data.source' must be one of", "'imagenet21k'"],
    ),
    (
        "annotation file missing",
        ["train", "{root}/coco.yaml", "--set", "data.train_annotations={root}/none.json"],
        ["data.train_annotations file or folder not found: {root}/none.json"],
    ),
    (
        "image folder missing",
        ["train", "{root}/coco.yaml", "--set", "data.train_images={root}/no_images"],
        ["data.train_images folder not found: {root}/no_images"],
    ),
    ("top 0", ["predict", "{root}/images/a.png", "--saved-model", "{root}", "--top", "0"], ["--top must be >= 1"]),
    ("image missing", ["predict", "{root}/none.png", "--saved-model", "{root}"], ["image not found: {root}/none.png"]),
    (
        "not an image",
        ["predict", "{root}/notes.png", "--saved-model", "{root}"],
        ["{root}/notes.png is not a JPEG, PNG"],
    ),
    (
        "export under a file",
        ["export", "{root}/tiny.yaml", "--weights", "{root}/full.weights.h5", "--output", "{root}/a_file/export"],
        ["{root}/a_file is a file"],
    ),
    (
        "weights truncated",
        ["evaluate", "{root}/tiny.yaml", "--weights", "{root}/truncated.weights.h5"],
        ["cannot load weights file {root}/truncated.weights.h5", "truncated file"],
    ),
    (
        "pattern matching no image",
        ["predict", "{root}/images/*.gif", "--saved-model", "{root}"],
        ["no image files match", "{root}/images/*.gif"],
    ),
    ("override without =", ["train", "{root}/tiny.yaml", "--set", "train.epochs"], ["train.epochs"]),
    (
        "max image pixels 0",
        ["export", "{root}/tiny.yaml", "--weights", "{root}/full.weights.h5", "--max-image-pixels", "0"],
        ["--max-image-pixels must be >= 1, got 0"],
    ),
    (
        "model name with ../",
        ["export", "{root}/tiny.yaml", "--weights", "{root}/full.weights.h5", "--model-name", "../escape"],
        ["model name must be a plain name", "../escape"],
    ),
]


@pytest.mark.parametrize("args, words", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_a_one_line_error(inputs, capsys, args, words):
    command = [arg.replace("{root}", str(inputs)) for arg in args]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kzoo {command[0]}: error: ") and err.count("\n") == 1 and len(err) < 600, err
    for word in words:
        assert word.replace("{root}", str(inputs)) in err, err
    assert not (inputs / "escape").exists() and not (inputs.parent / "escape").exists()
