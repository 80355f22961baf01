"""MaskRCNNConfig nested by part: torchvision_config's values pinned, the flat keys of kzoo 0.x still read (with a
warning saying where each moved), replace(), saved configs round-trip and old run folders resume."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import yaml

from kzoo.config import ConfigError, config_from_dict, config_to_dict, load_config
from kzoo.models.mask_rcnn_config import (
    MOVED_FIELDS,
    TORCHVISION_CHANGES,
    BackboneConfig,
    MaskRCNNConfig,
    RPNConfig,
    torchvision_config,
)
from kzoo.utils.structs import dataclass_from_dict

#: Every value of torchvision_config() as its function listed them before the config was nested (the flat field
#: names mapped to their new places); the nested function states only what differs from the defaults.
TORCHVISION_VALUES = {
    "num_classes": 91,
    "backbone.name": "resnet50",
    "backbone.width": 1.0,
    "backbone.stride_in_1x1": False,
    "backbone.norm": "frozen",
    "backbone.norm_epsilon": 0.0,
    "backbone.frozen_stages": 2,
    "fpn.channels": 256,
    "anchors.sizes": (32, 64, 128, 256, 512),
    "anchors.aspect_ratios": (0.5, 1.0, 2.0),
    "anchors.offset": 0.0,
    "anchors.strides": "torchvision",
    "rpn.box_weights": (1.0, 1.0, 1.0, 1.0),
    "rpn.pre_nms_top_k_train": 2000,
    "rpn.pre_nms_top_k_test": 1000,
    "rpn.post_nms_top_k_train": 2000,
    "rpn.post_nms_top_k_test": 1000,
    "rpn.nms_threshold": 0.7,
    "rpn.min_size": 0.001,
    "rpn.positive_iou": 0.7,
    "rpn.negative_iou": 0.3,
    "rpn.samples_per_image": 256,
    "rpn.positive_fraction": 0.5,
    "roi_sampling.positive_iou": 0.5,
    "roi_sampling.negative_iou": 0.5,
    "roi_sampling.samples_per_image": 512,
    "roi_sampling.positive_fraction": 0.25,
    "roi_align.box_size": 7,
    "roi_align.mask_size": 14,
    "roi_align.sampling_ratio": 2,
    "roi_align.aligned": False,
    "roi_align.border": "torchvision",
    "roi_align.method": "crop_and_resize",
    "roi_align.canonical_size": 224.0,
    "roi_align.canonical_level": 4,
    "roi_align.level_eps": "after_log",
    "box_head.fc_dim": 1024,
    "box_head.flatten_order": "nchw",
    "box_head.box_weights": (10.0, 10.0, 5.0, 5.0),
    "detection.score_threshold": 0.05,
    "detection.nms_threshold": 0.5,
    "detection.max_detections": 100,
    "detection.min_box_size": 0.01,
    "detection.pre_nms_top_k": None,
    "nms_method": "per_image",
    "mask_head.num_convs": 4,
    "mask_head.channels": 256,
    "compute_dtype": "float32",
    "input.min_size": 800,
    "input.max_size": 1333,
    "input.size_divisible": 32,
    "input.image_mean": (0.485, 0.456, 0.406),
    "input.image_std": (0.229, 0.224, 0.225),
    "init_weights": None,
}


def _flat(config, prefix: str = "") -> dict:
    values = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            values.update(_flat(value, f"{prefix}{field.name}."))
        else:
            values[prefix + field.name] = value
    return values


def test_torchvision_config_pins_every_value():
    assert _flat(torchvision_config()) == TORCHVISION_VALUES
    # it states only what differs from the defaults
    defaults = _flat(MaskRCNNConfig())
    changed = {key for key, value in TORCHVISION_VALUES.items() if defaults[key] != value}
    assert changed == {f"{section}.{key}" for section, keys in TORCHVISION_CHANGES.items() for key in keys}


def test_every_old_flat_field_has_a_new_place():
    fields = _flat(MaskRCNNConfig())
    assert set(MOVED_FIELDS.values()) <= set(fields)
    assert len(set(MOVED_FIELDS.values())) == len(MOVED_FIELDS)
    # every nested field but the top-level ones was a flat field
    top = {f.name for f in dataclasses.fields(MaskRCNNConfig) if not dataclasses.is_dataclass(f.default)}
    assert set(fields) - set(MOVED_FIELDS.values()) == top


def test_flat_yaml_keys_are_read_where_they_moved_with_a_warning():
    with pytest.warns(DeprecationWarning, match=r"'model.rpn_nms_threshold' has moved to 'model.rpn.nms_threshold'"):
        config = config_from_dict({"task": "mask_rcnn", "model": {"rpn_nms_threshold": 0.6, "backbone": "resnet101"}})
    assert config.model.rpn == RPNConfig(nms_threshold=0.6)
    assert config.model.backbone == BackboneConfig(name="resnet101")
    nested = config_from_dict(
        {"task": "mask_rcnn", "model": {"rpn": {"nms_threshold": 0.6}, "backbone": {"name": "resnet101"}}}
    )
    assert nested == config
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the nested form warns nothing
        config_from_dict({"task": "mask_rcnn", "model": {"rpn": {"nms_threshold": 0.6}}})
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(ConfigError, match="'model.rpn.nms_threshold', which is given too"),
    ):
        config_from_dict({"task": "mask_rcnn", "model": {"rpn_nms_threshold": 0.6, "rpn": {"nms_threshold": 0.5}}})
    with pytest.warns(DeprecationWarning):  # an old key beside other keys of its new section: merged
        both = dataclass_from_dict(MaskRCNNConfig, {"rpn_min_size": 0.5, "rpn": {"nms_threshold": 0.6}}, "model.")
    assert (both.rpn.min_size, both.rpn.nms_threshold) == (0.5, 0.6)


def test_an_old_flat_config_file_loads_as_the_shipped_nested_one(tmp_path):
    flat = {
        "task": "mask_rcnn",
        "model": {
            "num_classes": 4,
            "backbone": "small_convnet",
            "norm": "group",
            "fpn_channels": 64,
            "anchor_sizes": [8, 16, 32, 64, 128],
            "rpn_pre_nms_top_k_train": 500,
            "rpn_post_nms_top_k_train": 300,
            "rpn_pre_nms_top_k_test": 300,
            "rpn_post_nms_top_k_test": 100,
            "roi_samples_per_image": 64,
            "box_fc_dim": 256,
            "mask_num_convs": 2,
            "mask_channels": 64,
            "max_detections": 20,
            "min_size": 128,
            "max_size": 128,
        },
    }
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(flat))
    with pytest.warns(DeprecationWarning):
        old = load_config(str(path))
    assert old.model == load_config("configs/mask_rcnn_shapes.yaml").model


def test_preset_keys_change_the_preset_field_by_field():
    config = config_from_dict(
        {"task": "mask_rcnn", "model": {"preset": "torchvision", "num_classes": 5, "rpn": {"nms_threshold": 0.6}}}
    )
    assert config.model == torchvision_config(5, rpn={"nms_threshold": 0.6})
    assert config.model.anchors.strides == "torchvision" and config.model.rpn.pre_nms_top_k_test == 1000


def test_replace_merges_sections_and_reads_old_names():
    config = MaskRCNNConfig().replace(num_classes=5, rpn={"nms_threshold": 0.6}, input={"min_size": 512})
    assert (config.num_classes, config.rpn.nms_threshold, config.input.min_size) == (5, 0.6, 512)
    assert config.rpn.pre_nms_top_k_test == 1000 and config.input.max_size == 1333
    assert config.replace(backbone=BackboneConfig(name="resnet101")).backbone.name == "resnet101"
    with pytest.warns(
        DeprecationWarning, match="'model.score_threshold' has moved to 'model.detection.score_threshold'"
    ):
        assert MaskRCNNConfig().replace(score_threshold=0.3).detection.score_threshold == 0.3
    with pytest.raises(ValueError, match=r"unknown MaskRCNNConfig field\(s\) \['rpn.threshold'\]"):
        MaskRCNNConfig().replace(rpn={"threshold": 0.6})
    with pytest.raises(ConfigError, match=r"'model.rpn' must be a RPNConfig .*config.replace\(rpn="):
        MaskRCNNConfig(rpn={"nms_threshold": 0.6})  # type: ignore[arg-type]


def test_errors_name_the_full_dotted_key():
    for section, values, key in (
        ("rpn", {"nms_threshold": 1.5}, "model.rpn.nms_threshold"),
        ("anchors", {"sizes": (32, 64)}, "model.anchors.sizes"),
        ("roi_align", {"level_eps": "odd"}, "model.roi_align.level_eps"),
        ("backbone", {"name": "vgg"}, "model.backbone.name"),
        ("input", {"size_divisible": 16}, "model.input.size_divisible"),
        ("box_head", {"box_weights": (1.0,)}, "model.box_head.box_weights"),
    ):
        with pytest.raises(ConfigError, match=f"'{key}'"):
            MaskRCNNConfig().replace(**{section: values})


def test_saved_config_round_trips_and_precision_sets_compute_dtype(tmp_path):
    config = load_config("configs/mask_rcnn_penn_fudan.yaml", ["precision=bfloat16"])
    assert config.model.compute_dtype == "bfloat16"
    saved = config_to_dict(config)
    assert "compute_dtype" not in saved["model"] and saved["model"]["rpn"]["post_nms_top_k_test"] == 200
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(saved))) == config
    with pytest.raises(ConfigError, match="'model.compute_dtype' has moved: use the top-level key 'precision'"):
        config_from_dict({"task": "mask_rcnn", "model": {"compute_dtype": "bfloat16"}})
    with pytest.raises(ConfigError, match="must be the top-level 'precision'"):
        dataclasses.replace(config, precision="float32")


def test_an_old_run_folder_with_flat_keys_resumes(tmp_path):
    from kzoo.training.loop import check_same_model

    config = config_from_dict({"task": "mask_rcnn", "output_dir": str(tmp_path), "model": {"num_classes": 4}})
    flat = config_to_dict(config)
    flat["model"] = {"num_classes": 4, "rpn_nms_threshold": 0.7, "backbone": "resnet50", "min_size": 800}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(flat))
    with pytest.warns(DeprecationWarning):
        check_same_model(config, str(tmp_path))  # the same model in the old spelling
    flat["model"]["rpn_nms_threshold"] = 0.6
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(flat))
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(ConfigError, match=r"model.rpn.nms_threshold was 0.6, now 0.7"),
    ):
        check_same_model(config, str(tmp_path))
