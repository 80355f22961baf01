"""The command line end to end on a tiny config: train, evaluate, export, predict; and its errors."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import yaml

from kzoo.cli import main
from kzoo.data.shapes import make_shapes_classification

TINY = {
    "name": "tiny",
    "model": {
        "variant": "custom",
        "blocks": [{"filters": [8, 8], "kernel_size": 3}, {"filters": [8], "pool": False, "dropout": False}],
        "num_classes": 5,
        "input_shape": [16, 16, 3],
        "use_batch_norm": True,
    },
    "data": {"source": "shapes", "train_examples": 256, "eval_examples": 64, "image_size": 16},
    "train": {"epochs": 1, "batch_size": 32, "learning_rate": 0.05},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "output_dir": str(root / "run")}))
    assert main(["train", str(config), "--quiet"]) == 0
    return root, config


def test_train_writes_results(trained, capsys):
    root, _ = trained
    metrics = json.loads((root / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["eval_examples"] == 64
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    assert (root / "run" / "checkpoints" / "checkpoint").is_file()
    assert any(name.startswith("events") for name in os.listdir(root / "run" / "logs"))


def test_evaluate_export_predict(trained, capsys):
    root, config = trained
    assert main(["evaluate", str(config)]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["export", str(config), "--format", "saved_model", "--warmup", "1", "--input-dtype", "uint8"]) == 0
    version_dir = root / "run" / "export" / "tiny" / "1"
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "assets.extra" / "tf_serving_warmup_requests").is_file()
    assert main(["export", str(config), "--format", "tflite", "--quantize", "none", "int8"]) == 0
    out = capsys.readouterr().out
    assert "tiny_none.tflite" in out and "tiny_int8.tflite" in out and "(SavedModel)" in out

    images, _ = make_shapes_classification(2, 16, seed=7)
    paths = []
    for i, image in enumerate(images):
        path = root / f"img{i}.png"
        tf.io.write_file(str(path), tf.io.encode_png(image))
        paths.append(str(path))
    gray = root / "gray.jpg"  # a grayscale JPEG of another size is converted and resized in the graph
    tf.io.write_file(str(gray), tf.io.encode_jpeg(np.full((40, 30, 1), 128, np.uint8)))
    cam_dir = root / "cams"
    assert (
        main(
            [
                "predict",
                *paths,
                str(gray),
                "--saved-model",
                str(root / "run" / "export" / "tiny"),
                "--top",
                "2",
                "--cam",
                str(cam_dir),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "img0.png" in out and "gray.jpg" in out
    cam = tf.io.decode_png(tf.io.read_file(str(cam_dir / "img0_cam.png"))).numpy()
    assert cam.shape[0] == 512 and cam.shape[1] > 512 and cam.shape[2] == 3  # enlarged 32x, with a colour bar

    # a pixel cap set at export: the 40 x 30 JPEG (1,200 pixels) is refused, the 16 x 16 PNGs pass
    assert main(["export", str(config), "--format", "saved_model", "--max-image-pixels", "1000"]) == 0
    serving_bytes = tf.saved_model.load(str(root / "run" / "export" / "tiny" / "2")).signatures["serving_bytes"]
    assert serving_bytes(image_bytes=tf.constant([tf.io.read_file(paths[0]).numpy()]))["probabilities"].shape[0] == 1
    with pytest.raises(tf.errors.InvalidArgumentError, match="over the cap of 1000 pixels"):
        serving_bytes(image_bytes=tf.constant([tf.io.read_file(str(gray)).numpy()]))


def test_cli_errors_name_the_problem(trained, tmp_path, capsys):
    _, config = trained
    assert main(["train", str(config), "--set", "train.epoch=2"]) == 2
    assert "unknown config key 'train.epoch'" in capsys.readouterr().err
    assert main(["train", str(config), "--set", "model.num_classes=10"]) == 2
    assert "holds a run of another model (model.num_classes was 5, now 10)" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                str(config),
                "--set",
                "data.source=fashion_mnist",
                "--set",
                f"output_dir={tmp_path / 'fm'}",
                "--set",
                f"data.data_dir={tmp_path / 'missing'}",
                "--set",
                "model.num_classes=10",
            ]
        )
        == 2
    )
    assert "Fashion-MNIST directory not found" in capsys.readouterr().err
    assert main(["evaluate", str(config), "--weights", str(tmp_path / "none.weights.h5")]) == 2
    assert "weights file not found" in capsys.readouterr().err
    # weights of another model: the same one-line error, naming the file, in every command
    import keras

    from kzoo.models.nin import build_nin, resolve_blocks

    other = tmp_path / "other.weights.h5"
    build_nin(keras.Input((16, 16, 3)), resolve_blocks("custom", [{"filters": [4]}]), num_classes=5).save_weights(other)
    for command in (["evaluate", str(config)], ["export", str(config), "--format", "saved_model"]):
        assert main([*command, "--weights", str(other)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(other) in err and len(err) < 600, err
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    assert main(["predict", str(not_image), "--saved-model", str(tmp_path)]) == 2
    assert "is not a JPEG, PNG, GIF, BMP, WebP or TIFF image" in capsys.readouterr().err


def test_predict_with_mask_rcnn_uses_the_runs_weights_and_class_names(tmp_path, capsys):
    from PIL import Image

    from kzoo.config import load_config
    from kzoo.tasks.instance_segmentation import InstanceSegmentationTask

    config = tmp_path / "tiny_mask_rcnn.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "mask_rcnn",
                "output_dir": str(tmp_path / "run"),
                "model": {
                    "backbone": {"name": "mobilenet_v2"},
                    "num_classes": 4,
                    "fpn": {"channels": 16},
                    "box_head": {"fc_dim": 32},
                    "mask_head": {"channels": 8, "num_convs": 1},
                    "rpn": {"pre_nms_top_k_test": 50, "post_nms_top_k_test": 20},
                    "detection": {"max_detections": 5},
                    "input": {"min_size": 64, "max_size": 96},
                },
            }
        )
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    rgb, gray, deep = tmp_path / "a" / "street.png", tmp_path / "b" / "street.png", tmp_path / "deep.png"
    Image.fromarray(np.full((48, 80, 3), 90, np.uint8)).save(rgb)
    Image.fromarray(np.full((40, 50), 200, np.uint8), mode="L").save(gray)  # grayscale
    Image.fromarray(np.full((30, 60), 40000, np.uint16)).save(deep)  # 16-bit grayscale
    out_dir = tmp_path / "out"
    args = [
        "predict",
        str(rgb),
        str(gray),
        str(deep),
        "--mask-rcnn",
        str(config),
        "--output",
        str(out_dir),
        "--score-threshold",
        "0",
    ]
    assert main(args) == 2  # no trained weights yet: refuse, do not draw a random model's detections
    err = capsys.readouterr().err
    assert "no trained weights for this config" in err and str(tmp_path / "run" / "model.weights.h5") in err
    (tmp_path / "run").mkdir()
    InstanceSegmentationTask(load_config(config)).build_model(init_weights=False).save_weights(
        str(tmp_path / "run" / "model.weights.h5")
    )
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "street.png" in out and "deep.png" in out
    assert any(name in out for name in ("circle", "square", "triangle"))  # the config's class names, not numbers
    written = {p.name: tf.io.decode_png(tf.io.read_file(str(p))).numpy().shape for p in out_dir.glob("*.png")}
    # two inputs named street.png do not overwrite each other
    # drawn at a readable size: each enlarged by a whole factor to at least 512 px on the shorter side
    assert sorted(written.values()) == [(520, 650, 3), (528, 880, 3), (540, 1080, 3)], written
    assert main(["predict", str(rgb)]) == 2
    assert "--saved-model" in capsys.readouterr().err


def test_convert_torchvision_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    from kzoo.cli import main

    assert main(["convert", "torchvision", str(tmp_path / "missing.pth"), str(tmp_path / "out.weights.h5")]) == 2
    err = capsys.readouterr().err
    assert "kzoo convert: error" in err and "missing.pth" in err
    assert not (tmp_path / "out.weights.h5").exists()


def test_export_mask_rcnn_saved_model_and_tflite(tmp_path, capsys, tiny_mask_rcnn):

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_mask_rcnn(tmp_path / "run")))
    assert main(["train", str(path), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["export", str(path), "--format", "saved_model", "--warmup", "1", "--full-image-masks"]) == 0
    assert "SavedModel (TF Serving)" in capsys.readouterr().out
    version_dir = tmp_path / "run" / "export" / "tiny_mask_rcnn" / "1"
    assert (version_dir / "saved_model.pb").exists()
    assert (version_dir / "assets.extra" / "tf_serving_warmup_requests").exists()
    assert main(["export", str(path), "--format", "tflite", "--quantize", "none", "dynamic"]) == 0
    out = capsys.readouterr().out
    assert "TFLite none" in out and "TFLite dynamic" in out and "vs Keras on" in out
    # the float32 file reproduces the Keras model on the eval images: every detection matched, same classes
    (none_row,) = [line for line in out.splitlines() if line.startswith("TFLite none")]
    cells = [cell.strip() for cell in none_row.split("|")]
    assert cells[2:4] == ["1.000", "1.000"] and float(cells[4]) > 0.999, none_row
    assert (tmp_path / "run" / "export" / "tiny_mask_rcnn_dynamic.tflite").exists()
