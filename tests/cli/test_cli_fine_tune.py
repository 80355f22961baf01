"""The COCO path end to end, from the command line: a torchvision-format R50-FPN checkpoint (random weights: no
internet here) converted, a 2-class model started from it, its heads fine-tuned on Penn-Fudan photographs from a
config, evaluated, exported as a SavedModel and as an int8 TFLite file."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from kzoo.cli import main

PENN_FUDAN = Path(__file__).resolve().parents[3] / "shared" / "data" / "PennFudanPed"
TORCH_SAVE = """
torch.manual_seed(3)
model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
torch.save(model.state_dict(), str(inputs["path"]))
"""


@pytest.mark.slow
def test_coco_weights_fine_tuned_on_penn_fudan_then_evaluated_and_exported(torch_run, tmp_path, capsys):
    if not PENN_FUDAN.is_dir():
        pytest.skip(f"Penn-Fudan is not at {PENN_FUDAN} (see ../shared/data/README.md)")
    pth = tmp_path / "maskrcnn_resnet50_fpn_coco.pth"
    torch_run(TORCH_SAVE, path=np.array(str(pth)))
    coco = tmp_path / "coco.weights.h5"
    assert main(["convert", "torchvision", str(pth), str(coco)]) == 0
    capsys.readouterr()

    annotations = PENN_FUDAN / "annotations"
    config = {
        "task": "mask_rcnn",
        "name": "pedestrians",
        "output_dir": str(tmp_path / "run"),
        # plain BatchNorm2d in a model built with weights=None: eps 1e-5
        "model": {
            "preset": "torchvision",
            "num_classes": 2,
            "init_weights": str(coco),
            "backbone": {"norm_epsilon": 1e-5},
            "input": {"min_size": 128, "max_size": 128},
            "rpn": {
                "pre_nms_top_k_train": 200,
                "post_nms_top_k_train": 100,
                "pre_nms_top_k_test": 100,
                "post_nms_top_k_test": 50,
            },
            "roi_sampling": {"samples_per_image": 64},
            "detection": {"pre_nms_top_k": 200},
        },
        "data": {
            "source": "coco",
            "train_annotations": str(annotations / "instances_train.json"),
            "train_images": str(PENN_FUDAN / "PNGImages"),
            "eval_annotations": str(annotations / "instances_val.json"),
            "eval_images": str(PENN_FUDAN / "PNGImages"),
            "train_examples": 4,
            "eval_examples": 4,
            "max_instances": 16,
            "mask_size": 28,
        },
        "train": {
            "epochs": 1,
            "batch_size": 2,
            "learning_rate": 0.001,
            "schedule": "constant",
            "warmup_epochs": 0,
            "trainable_layers": "heads",
            "gradient_clip_norm": 10.0,
        },
    }
    path = tmp_path / "pedestrians.yaml"
    path.write_text(yaml.safe_dump(config))

    assert main(["train", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "freshly initialized (other class count): box_head/bbox_pred, box_head/cls_score" in out
    assert "COCO AP on 4 images" in out
    assert main(["evaluate", str(path)]) == 0
    assert "kzoo evaluate pedestrians: COCO AP on 4 images" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["class_names"] == ["person"] and np.isfinite(metrics["loss_total"])

    assert main(["export", str(path), "--format", "saved_model"]) == 0
    assert (tmp_path / "run" / "export" / "pedestrians" / "1" / "saved_model.pb").is_file()
    assert main(["export", str(path), "--format", "tflite", "--quantize", "int8"]) == 0
    out = capsys.readouterr().out
    tflite = tmp_path / "run" / "export" / "pedestrians_int8.tflite"
    assert tflite.is_file() and os.path.getsize(tflite) > 10e6 and "TFLite int8" in out
