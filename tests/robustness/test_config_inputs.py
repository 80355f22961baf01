"""Config paths, names and every number of the config dataclasses, and the CLI's numeric flags: out of range is a
one-line error naming the key or flag, at load time or at argument parsing, never a silent run."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing

import pytest
import yaml

from kzoo.cli import main
from kzoo.config import (
    ConfigError,
    DataConfig,
    DetectionDataConfig,
    ExperimentConfig,
    MaskRCNNExperimentConfig,
    ModelConfig,
    PhaseConfig,
    StrategyConfig,
    TrainConfig,
    config_from_dict,
    load_config,
    resolve_config_path,
)
from kzoo.models.mask_rcnn_config import MaskRCNNConfig
from kzoo.models.nin_config import BlockSpec

NAN, INF = float("nan"), float("inf")
INT32_OVER, INT64_OVER = 2**31, 2**63

# -- config paths --------------------------------------------------------------------------------------------------


def test_only_bare_names_and_configs_slash_name_resolve_to_shipped_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here: only the shipped copies can answer
    for path in ("nin_shapes.yaml", "nin_shapes", "configs/nin_shapes.yaml", "./configs/nin_shapes.yaml"):
        assert resolve_config_path(path).endswith(os.path.join("", "nin_shapes.yaml")), path
        assert load_config(path).name == "nin_shapes"
    for path in (
        "my/nin_shapes.yaml",
        "my/configs/nin_shapes.yaml",
        str(tmp_path / "configs" / "nin_shapes.yaml"),
        "configs/sub/nin_shapes.yaml",
        "../configs/nin_shapes.yaml",
    ):
        with pytest.raises(FileNotFoundError) as caught:
            resolve_config_path(path)
        assert str(caught.value) == f"config file not found: {path}", caught.value
    with pytest.raises(FileNotFoundError, match=r"config file not found: nin_shape\.yaml \(kzoo ships: .*nin_shapes"):
        resolve_config_path("nin_shape.yaml")
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(IsADirectoryError, match="folder.yaml is a folder"):
        resolve_config_path("folder.yaml")


def test_a_local_file_wins_over_the_shipped_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nin_shapes.yaml").write_text("name: mine\n")
    assert load_config("nin_shapes.yaml").name == "mine"


def test_cli_missing_config_with_a_folder_is_an_error(tmp_path, capsys):
    path = str(tmp_path / "nowhere" / "mask_rcnn_shapes.yaml")
    assert main(["train", path]) == 2
    err = capsys.readouterr().err
    assert err == f"kzoo train: error: config file not found: {path}\n", err
    assert main(["demo", "--config", path]) == 2
    assert f"config file not found: {path}" in capsys.readouterr().err


# -- names -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../escape", "a\\b", " x", "x y", "/abs", "na\x00me", "ü"])
@pytest.mark.parametrize("task", ["classification", "mask_rcnn"])
def test_config_name_must_be_plain(task, name):
    with pytest.raises(ConfigError, match=r"config key 'name' must be a plain name"):
        config_from_dict({"task": task, "name": name})


@pytest.mark.parametrize("name", ["nin_shapes", "Run-2.v1", "a", "..a", "a.."])
def test_plain_names_pass(name):
    assert config_from_dict({"name": name}).name == name


def test_demo_with_a_bad_name_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"name": ".."}))
    assert main(["demo", "--config", "bad.yaml"]) == 2
    assert "config key 'name' must be a plain name" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["bad.yaml"]


def test_empty_output_dir_is_refused():
    with pytest.raises(ConfigError, match="'output_dir' must be a folder path"):
        config_from_dict({"output_dir": ""})


# -- every number of every config dataclass ----------------------------------------------------------------------------

# dotted key -> values that must be refused (None marks the classification task's keys apart: see _task)
NIN_BAD: dict[str, list] = {
    "model.num_classes": [1, 0, INT32_OVER],
    "model.dropout_rate": [-0.1, 1.0, 1.5, NAN, INF],
    "model.input_shape": [[0, 16, 3], [16, 16], [INT32_OVER, 16, 3]],
    "model.blocks": [
        [{"filters": [0]}],
        [{"filters": [8], "kernel_size": 0}],
        [{"filters": [8], "strides": 0}],
        [{"filters": [INT32_OVER]}],
        [{"filters": [8], "padding": "full"}],
    ],
    "data.train_examples": [0, -1, INT32_OVER],
    "data.eval_examples": [0, INT32_OVER],
    "data.image_size": [0, 8, INT32_OVER],
    "data.crop_padding": [-1, INT32_OVER],
    "data.shuffle_buffer": [0, -5, INT64_OVER],
    "train.epochs": [0, INT32_OVER],
    "train.batch_size": [0, INT32_OVER],
    "train.learning_rate": [0.0, -0.1, NAN, INF],
    "train.momentum": [-0.1, 1.5, NAN],
    "train.weight_decay": [-1e-4, INF],
    "train.warmup_epochs": [-1.0, NAN],
    "train.step_epochs": [[0], [INT32_OVER]],
    "train.step_factor": [0.0, 1.5, NAN],
    "train.label_smoothing": [-0.1, 1.1, NAN],
    "train.gradient_clip_norm": [0.0, -1.0, INF],
    "train.eval_every_epochs": [-1, INT32_OVER],
    "train.seed": [-1, 2**32],
    "train.phases": [[{"epochs": 0}], [{"epochs": 1, "learning_rate": 0.0}], [{"epochs": INT32_OVER}]],
    "strategy.devices": [[]],
}
MASK_RCNN_BAD: dict[str, list] = {
    **{
        f"model.{key}": [-0.1, 1.5, NAN, INF]
        for key in (
            "detection.score_threshold",
            "detection.nms_threshold",
            "rpn.nms_threshold",
            "rpn.positive_iou",
            "rpn.negative_iou",
            "rpn.positive_fraction",
            "roi_sampling.positive_iou",
            "roi_sampling.negative_iou",
            "roi_sampling.positive_fraction",
            "anchors.offset",
        )
    },
    **{
        f"model.{key}": [0, -1, INT32_OVER]
        for key in (
            "fpn.channels",
            "rpn.pre_nms_top_k_train",
            "rpn.pre_nms_top_k_test",
            "rpn.post_nms_top_k_train",
            "rpn.post_nms_top_k_test",
            "rpn.samples_per_image",
            "roi_sampling.samples_per_image",
            "roi_align.box_size",
            "roi_align.mask_size",
            "roi_align.sampling_ratio",
            "box_head.fc_dim",
            "detection.max_detections",
            "detection.pre_nms_top_k",
            "mask_head.channels",
            "input.min_size",
        )
    },
    "model.num_classes": [1, 0, INT32_OVER],
    "model.input.max_size": [0, 10, INT32_OVER],
    "model.input.size_divisible": [0, 16, -32, INT32_OVER + 1],
    "model.backbone.frozen_stages": [-1, 6],
    "model.mask_head.num_convs": [-1, INT32_OVER],
    "model.roi_align.canonical_level": [0, 1, 7],
    "model.backbone.width": [0.0, -1.0, NAN, INF],
    "model.roi_align.canonical_size": [0.0, -224.0, INF],
    "model.backbone.norm_epsilon": [-1e-5, NAN],
    "model.rpn.min_size": [-1.0, INF],
    "model.detection.min_box_size": [-1.0, NAN],
    "model.anchors.sizes": [[0, 64, 128, 256, 512], [32, 64, 128, 256], [32, 64, 128, 256, INF]],
    "model.anchors.aspect_ratios": [[], [0.0], [-1.0, 1.0], [NAN]],
    "model.rpn.box_weights": [[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0]],
    "model.box_head.box_weights": [[10.0, 10.0, 5.0, -5.0], [10.0, 10.0, 5.0, NAN]],
    "model.input.image_mean": [[0.5, 0.5, NAN], [0.5, 0.5]],
    "model.input.image_std": [[0.2, 0.2, 0.0], [0.2, 0.2, -0.2], [0.2, 0.2]],
    "data.shapes_image_size": [0, 16, INT32_OVER],
    "data.shapes_max_instances": [0, INT32_OVER],
    "data.shapes_classes": [[], ["hexagon"], ["circle", "circle"]],
    "data.train_examples": [0, INT32_OVER],
    "data.eval_examples": [0, INT32_OVER],
    "data.max_instances": [0, INT32_OVER],
    "data.mask_size": [0, INT32_OVER],
    "data.shuffle_buffer": [0, INT64_OVER],
    "data.min_box_size": [-1.0, NAN],
    "data.brightness": [-0.1, 1.5, NAN],
    "data.contrast": [-0.1, 1.5],
    "data.saturation": [-0.1, 1.5],
    "data.hue": [-0.1, 0.6, NAN],
    "data.scale_jitter": [[0.0, 1.0], [-1.0, 2.0], [2.0, 1.0], [0.5, INF]],
}
CASES = [("classification", key, value) for key, values in NIN_BAD.items() for value in values] + [
    ("mask_rcnn", key, value) for key, values in MASK_RCNN_BAD.items() for value in values
]
#: Keys shared by both tasks (TrainConfig, StrategyConfig): checked through the classification task.
SHARED = ("train.", "strategy.")


def _nested(dotted: str, value) -> dict:
    tree: dict = {}
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return tree


@pytest.mark.parametrize("task, key, value", CASES, ids=[f"{t}:{k}={v}" for t, k, v in CASES])
def test_out_of_range_config_values_are_refused_naming_the_key(task, key, value):
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"task": task, **_nested(key, value)})
    # a Mask R-CNN model key by its full dotted path (model.rpn.nms_threshold), the others by their leaf
    named = key if task == "mask_rcnn" and key.startswith("model.") else key.split(".")[-1]
    assert named in str(caught.value) and "\n" not in str(caught.value), caught.value


def _number_fields(cls, prefix: str = "") -> set[str]:
    """Dotted keys of every int / float field (or tuple of them, or optional) of a config dataclass, recursively;
    a field of nested dataclasses in a tuple (blocks, phases) counts as one key."""
    keys = set()
    for field in dataclasses.fields(cls):
        annotation = typing.get_type_hints(cls)[field.name]
        inner = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
        kinds = set()
        for a in inner:
            args = typing.get_args(a)
            kinds |= set(args) if typing.get_origin(a) is tuple else {a}
        if dataclasses.is_dataclass(annotation):
            keys |= _number_fields(annotation, f"{prefix}{field.name}.")
        elif kinds & {int, float} or any(dataclasses.is_dataclass(k) for k in kinds):
            keys.add(prefix + field.name)
    return keys


def test_every_number_of_every_config_dataclass_is_checked():
    """The tables above cover every numeric field (a field added later without range checks fails here)."""
    nin = _number_fields(ExperimentConfig)
    mask_rcnn = _number_fields(MaskRCNNExperimentConfig)
    assert nin - set(NIN_BAD) == set(), "numeric NIN config keys without a bad-value case"
    missing = {key for key in mask_rcnn - set(MASK_RCNN_BAD) if not key.startswith(SHARED)}
    assert missing == set(), "numeric Mask R-CNN config keys without a bad-value case"
    # the dataclasses the walk went through
    for cls in (
        ModelConfig,
        DataConfig,
        TrainConfig,
        PhaseConfig,
        StrategyConfig,
        DetectionDataConfig,
        MaskRCNNConfig,
        BlockSpec,
    ):
        assert dataclasses.is_dataclass(cls)


@pytest.mark.parametrize(
    "task, key, value",
    [
        ("mask_rcnn", "model.detection.score_threshold", 0.0),
        ("mask_rcnn", "model.detection.score_threshold", 1.0),
        ("mask_rcnn", "model.rpn.positive_fraction", 1.0),
        ("mask_rcnn", "model.mask_head.num_convs", 0),
        ("mask_rcnn", "model.detection.pre_nms_top_k", None),
        ("mask_rcnn", "data.hue", 0.5),
        ("classification", "model.dropout_rate", 0.0),
        ("classification", "data.shuffle_buffer", 2**63 - 1),
        ("classification", "train.seed", 2**32 - 1),
        ("classification", "train.momentum", 1.0),
        ("classification", "model.input_shape", [2**31 - 1, 16, 3]),
    ],
)
def test_boundary_values_pass(task, key, value):
    config_from_dict({"task": task, **_nested(key, value)})


def test_mask_rcnn_config_refuses_out_of_range_in_python_too():
    with pytest.raises(ValueError, match=r"'model.detection.score_threshold' must be in \[0, 1\], got 2"):
        MaskRCNNConfig().replace(detection={"score_threshold": 2})
    with pytest.raises(ValueError, match="'model.rpn.negative_iou' .* must be <= 'model.rpn.positive_iou'"):
        MaskRCNNConfig().replace(rpn={"negative_iou": 0.8})
    with pytest.raises(ValueError, match="'model.dropout_rate'"):
        ModelConfig(dropout_rate=math.nan)


# -- CLI flags ---------------------------------------------------------------------------------------------------------

FLAG_CASES = [
    (["predict", "a.png", "--mask-rcnn", "mask_rcnn_shapes.yaml", "--score-threshold", "5"], "--score-threshold"),
    (["predict", "a.png", "--mask-rcnn", "mask_rcnn_shapes.yaml", "--score-threshold", "-1"], "--score-threshold"),
    (["predict", "a.png", "--mask-rcnn", "mask_rcnn_shapes.yaml", "--score-threshold", "nan"], "--score-threshold"),
    (["predict", "a.png", "--mask-rcnn", "mask_rcnn_shapes.yaml", "--score-threshold", "inf"], "--score-threshold"),
    (["predict", "a.png", "--mask-rcnn", "mask_rcnn_shapes.yaml", "--score-threshold", "high"], "--score-threshold"),
    (["predict", "a.png", "--saved-model", "m", "--top", "0"], "--top"),
    (["predict", "a.png", "--saved-model", "m", "--top", str(INT32_OVER)], "--top"),
    (["export", "nin_shapes.yaml", "--max-image-pixels", str(INT64_OVER)], "--max-image-pixels"),
    (["export", "nin_shapes.yaml", "--max-image-pixels", "-5"], "--max-image-pixels"),
    (["export", "nin_shapes.yaml", "--max-image-pixels", "1e9"], "--max-image-pixels"),
    (["export", "nin_shapes.yaml", "--version", "0"], "--version"),
    (["export", "nin_shapes.yaml", "--version", str(INT64_OVER)], "--version"),
    (["export", "nin_shapes.yaml", "--warmup", "-1"], "--warmup"),
    (["export", "nin_shapes.yaml", "--eval-examples", "0"], "--eval-examples"),
    (["convert", "torchvision", "a.pth", "b.weights.h5", "--num-classes", "1"], "--num-classes"),
    (["convert", "torchvision", "a.pth", "b.weights.h5", "--num-classes", str(INT32_OVER)], "--num-classes"),
]


@pytest.mark.parametrize("args, flag", FLAG_CASES, ids=[" ".join(a[-2:]) for a, _ in FLAG_CASES])
def test_out_of_range_flags_are_usage_errors(args, flag, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kzoo {args[0]}: error: {flag} must be ") and err.count("\n") == 1, err
    assert args[-1] in err or repr(args[-1]) in err, err


def test_score_threshold_override_out_of_range(capsys, tmp_path):
    for command in (
        ["evaluate", "mask_rcnn_shapes.yaml"],
        ["predict", "a.png", "--mask-rcnn", "mask_rcnn_shapes.yaml"],
    ):
        assert main([*command, "--set", "model.detection.score_threshold=2"]) == 2
        err = capsys.readouterr().err
        assert re.search(r"'model.detection.score_threshold' must be in \[0, 1\], got 2(\.0)?$", err.strip()), err
    assert not (tmp_path / "predictions").exists()
