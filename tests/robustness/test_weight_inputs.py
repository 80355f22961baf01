"""Trained weights of another class count or another architecture (``kzoo evaluate / export / predict --weights``):
one line naming the first weight that differs, its layer and both shapes, never Keras's "A total of N objects
could not be loaded"."""

from __future__ import annotations

import copy
import pathlib
import re

import keras
import pytest
import yaml
from test_run_lock import TINY

from kzoo.cli import main
from kzoo.config import config_from_dict
from kzoo.models.weight_files import first_difference, load_weights_file
from kzoo.tasks import task_for


def _nin(tmp_path, classes: int) -> tuple[str, object]:
    values = copy.deepcopy(TINY)
    values["model"]["num_classes"] = classes
    values["output_dir"] = str(tmp_path / f"nin{classes}")
    path = tmp_path / f"nin{classes}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path), task_for(config_from_dict(values))


def _mask_rcnn(tmp_path, tiny_mask_rcnn, num_classes: int) -> tuple[str, object]:
    values = tiny_mask_rcnn(tmp_path / f"mrcnn{num_classes}")
    values["model"]["num_classes"] = num_classes
    values["data"]["shapes_classes"] = ["circle", "square", "triangle", "cross", "ring"][: num_classes - 1]
    path = tmp_path / f"mrcnn{num_classes}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path), task_for(config_from_dict(values))


@pytest.fixture
def weights(tmp_path, tiny_mask_rcnn):
    """Weights files of a 5-class NIN and of a 4-class Mask R-CNN, and the configs of their kin."""
    keras.utils.set_random_seed(0)
    files = {}
    _, nin5 = _nin(tmp_path, 5)
    files["nin5"] = str(tmp_path / "nin5.weights.h5")
    nin5.build_model().save_weights(files["nin5"])
    _, mrcnn4 = _mask_rcnn(tmp_path, tiny_mask_rcnn, 4)
    files["mrcnn4"] = str(tmp_path / "mrcnn4.weights.h5")
    mrcnn4.build_model().save_weights(files["mrcnn4"])
    files["nin3_config"], files["nin3"] = _nin(tmp_path, 3)
    files["mrcnn3_config"], files["mrcnn3"] = _mask_rcnn(tmp_path, tiny_mask_rcnn, 3)
    return files


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "could not be loaded" not in err and "Traceback" not in err, err
    return lines[0]


def test_nin_of_another_class_count(weights, capsys):
    for command in ("evaluate", "export"):
        assert main([command, weights["nin3_config"], "--weights", weights["nin5"]]) == 2
        line = _one_line(capsys.readouterr().err)
        assert line.startswith(
            f"kzoo {command}: error: cannot load weights file {weights['nin5']} into model "
            "'nin_custom' (another architecture or class count): "
        ), line
        # the class stage: a 1 x 1 convolution from 4 channels to 3 classes here, to 5 in the file
        assert re.search(
            r"first difference at layer '[^']+' \([^)]+/vars/\d\): the model has shape \[(1, 1, 4, )?3\], "
            r"the file shape \[(1, 1, 4, )?5\]$",
            line,
        ), line


def test_mask_rcnn_of_another_class_count(weights, capsys):
    for command in ("evaluate", "export"):
        assert main([command, weights["mrcnn3_config"], "--weights", weights["mrcnn4"]]) == 2
        line = _one_line(capsys.readouterr().err)
        assert "(another architecture or class count): first difference" in line, line
        # the class-specific box predictor: 3 classes (12 box deltas) in the model, 4 (16) in the file
        assert re.search(
            r"first difference at layer 'box_head/bbox_pred' \(box_head/bbox_pred/vars/0\): the model "
            r"has shape \[32, 12\], the file shape \[32, 16\]$",
            line,
        ), line


def test_another_architecture(weights, capsys):
    """NIN weights for a Mask R-CNN, and Mask R-CNN weights for a NIN: a weight the model has and the file lacks."""
    assert main(["evaluate", weights["mrcnn3_config"], "--weights", weights["nin5"]]) == 2
    line = _one_line(capsys.readouterr().err)
    assert re.search(
        r"first difference at layer '[^']+' \([^)]+\): the model has shape \[[\d, ]+\], the file no such "
        r"weight$",
        line,
    ), line
    assert main(["evaluate", weights["nin3_config"], "--weights", weights["mrcnn4"]]) == 2
    assert "first difference at layer" in _one_line(capsys.readouterr().err)


def test_the_loader_itself(weights):
    model = weights["mrcnn3"].build_model()
    with pytest.raises(ValueError, match=r"layer 'box_head/bbox_pred' .* \[32, 12\], the file shape \[32, 16\]"):
        load_weights_file(model, weights["mrcnn4"])
    nin = weights["nin3"].build_model()
    assert first_difference(nin, weights["nin5"]) is not None
    same = _nin(pathlib.Path(weights["nin5"]).parent, 5)[1].build_model()
    assert first_difference(same, weights["nin5"]) is None
    load_weights_file(same, weights["nin5"])  # the right file loads
