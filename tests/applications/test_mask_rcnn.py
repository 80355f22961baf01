"""kzoo.applications.mask_rcnn: ``MaskRCNN``, the one builder (keywords, a config, a preset, a YAML file read by
kzoo.config), its fixed ``input_shape``, the class-count name shared with NIN, and the deprecated aliases."""

import inspect

import numpy as np
import pytest
import tensorflow as tf
import yaml

from kzoo.applications import NIN, MaskRCNN, mask_rcnn
from kzoo.config import ConfigError, config_from_dict, load_config
from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.models.mask_rcnn_config import MaskRCNNConfig, torchvision_config
from kzoo.tasks import instance_segmentation as seg

#: A tiny Mask R-CNN (small_convnet, 64 x 64) as a config file's model: section.
TINY_MODEL = {
    "num_classes": 4,
    "backbone": {"name": "small_convnet", "width": 0.25, "norm": "group"},
    "fpn": {"channels": 16},
    "anchors": {"sizes": [8, 16, 32, 64, 128], "aspect_ratios": [1.0]},
    "rpn": {"pre_nms_top_k_test": 50, "post_nms_top_k_test": 20},
    "box_head": {"fc_dim": 32},
    "mask_head": {"num_convs": 1, "channels": 16},
    "detection": {"max_detections": 10},
    "input": {"min_size": 64, "max_size": 64},
}


@pytest.fixture(scope="module")
def tiny_config() -> MaskRCNNConfig:
    """:data:`TINY_MODEL` as the experiment config loader reads it."""
    return config_from_dict({"task": "mask_rcnn", "model": TINY_MODEL}).model


@pytest.fixture(scope="module")
def fixed(tiny_config) -> MaskRCNNModel:
    """A tiny model taking 48 x 64 images only; resized to 64 x 85, on a 64 x 96 canvas."""
    return MaskRCNN(
        config=tiny_config, input_shape=(48, 64, 3), min_size=64, max_size=96, detection={"score_threshold": 0.0}
    )


# -- one builder -------------------------------------------------------------------------------------------------------


def test_keywords_left_out_keep_the_config_s_values(tiny_config):
    model = MaskRCNN(config=tiny_config)
    assert isinstance(model, MaskRCNNModel) and model.built
    assert model.config == tiny_config  # backbone, num_classes, min_size, max_size: the config's, not defaults
    assert model.image_shape is None  # any size
    other = MaskRCNN(config=tiny_config, num_classes=7, min_size=32)
    assert (other.config.num_classes, other.config.input.min_size) == (7, 32)
    assert other.config.input.max_size == tiny_config.input.max_size
    assert other.config.backbone == tiny_config.backbone


def test_defaults_without_a_config_are_the_paper_s():
    params = inspect.signature(MaskRCNN).parameters
    assert list(params)[:8] == [
        "backbone",
        "num_classes",
        "weights",
        "input_shape",
        "min_size",
        "max_size",
        "config",
        "name",
    ]
    config = mask_rcnn._base_config(None, None)
    assert config == MaskRCNNConfig()
    assert (config.backbone.name, config.num_classes, config.input.min_size, config.input.max_size) == (
        "resnet50",
        91,
        800,
        1333,
    )
    assert mask_rcnn._base_config("torchvision", None) == torchvision_config()  # a preset name


def test_a_yaml_file_is_read_by_the_experiment_config_loader(tiny_config, tmp_path):
    model_only = tmp_path / "model.yaml"  # a model config: a model: section, no task: key
    model_only.write_text(yaml.safe_dump({"model": TINY_MODEL}))
    assert load_config(model_only, task="mask_rcnn").model == tiny_config
    assert MaskRCNN(config=str(model_only)).config == tiny_config
    experiment = tmp_path / "experiment.yaml"  # a whole experiment: its model: section
    experiment.write_text(yaml.safe_dump({"task": "mask_rcnn", "output_dir": str(tmp_path), "model": TINY_MODEL}))
    assert MaskRCNN(config=experiment, min_size=32).config == tiny_config.replace(input={"min_size": 32})
    # the shipped model configs, by name as the CLI takes them
    assert mask_rcnn._base_config("configs/mask_rcnn_r50_fpn.yaml", None) == MaskRCNNConfig()
    assert mask_rcnn._base_config("mask_rcnn_mobilenet_v2_fpn", None).backbone.name == "mobilenet_v2"
    classifier = tmp_path / "nin.yaml"
    classifier.write_text("task: classification\nmodel:\n  variant: mnist\n")
    with pytest.raises(ValueError, match=r"nin.yaml is not a Mask R-CNN config \(task: classification\)"):
        MaskRCNN(config=classifier)
    with pytest.raises(ConfigError, match="unknown config key 'model.variant'"):  # no task: key, read as mask_rcnn
        MaskRCNN(config="configs/nin_shapes.yaml")
    with pytest.raises(FileNotFoundError, match="config file not found"):
        MaskRCNN(config=str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  anchor_size: [1]\n")
    with pytest.raises(Exception, match="model.anchor_size"):
        MaskRCNN(config=bad)
    with pytest.raises(TypeError, match="config must be a MaskRCNNConfig"):
        MaskRCNN(config=3)


def test_a_config_that_leaves_the_class_count_to_its_data(tiny_config, tmp_path):
    path = tmp_path / "coco.yaml"
    path.write_text("task: mask_rcnn\nmodel:\n  backbone: {name: small_convnet}\ndata:\n  source: coco\n")
    assert load_config(path).model.num_classes is None
    with pytest.raises(ValueError, match="pass num_classes="):
        MaskRCNN(config=path)


def test_the_task_builds_through_maskrcnn(tmp_path, tiny_mask_rcnn, monkeypatch):
    calls = []

    def spy(**kwargs):
        calls.append(kwargs)
        return MaskRCNN(**kwargs)

    monkeypatch.setattr(seg, "MaskRCNN", spy)
    experiment = config_from_dict(tiny_mask_rcnn(tmp_path))
    task = seg.InstanceSegmentationTask(experiment)
    model = task.build_model(init_weights=False)
    assert calls == [{"config": experiment.model, "name": experiment.name}]
    assert model.config == experiment.model and model.name == experiment.name
    model.save_weights(str(tmp_path / "model.weights.h5"))
    trained = task.trained_model(detection={"score_threshold": 0.9})
    assert calls[-1]["detection"] == {"score_threshold": 0.9}
    assert trained.config.detection.score_threshold == 0.9
    assert not hasattr(seg, "build_mask_rcnn")  # the task's own builder is gone


def test_deprecated_aliases_warn_and_build_the_same(tiny_config, tmp_path):
    with pytest.warns(DeprecationWarning, match="mask_rcnn_from_config is deprecated"):
        model = mask_rcnn.mask_rcnn_from_config(tiny_config, input_shape=(64, 64, 3), name="old")
    assert model.config == tiny_config and model.name == "old" and model.image_shape == (64, 64, 3)
    with pytest.warns(DeprecationWarning, match="load_mask_rcnn_config is deprecated"):
        config = mask_rcnn.load_mask_rcnn_config("configs/mask_rcnn_r50_fpn.yaml")
    assert config == load_config("configs/mask_rcnn_r50_fpn.yaml", task="mask_rcnn").model == MaskRCNNConfig()
    top_level = tmp_path / "flat.yaml"  # the old top-level form still reads
    top_level.write_text("num_classes: 5\n")
    with pytest.warns(DeprecationWarning):
        assert mask_rcnn.load_mask_rcnn_config(top_level).num_classes == 5


# -- input_shape fixes the input size ----------------------------------------------------------------------------------


def test_a_fixed_input_shape_gives_static_shapes(fixed, tiny_config):
    assert fixed.image_shape == (48, 64, 3)

    def canvas(model):
        trace = tf.function(lambda images: model.preprocess(images)[0])
        return tuple(trace.get_concrete_function(tf.TensorSpec([None, None, None, 3], tf.uint8)).output_shapes)

    assert canvas(fixed) == (None, 64, 96, 3)  # the resized 64 x 85, padded to a multiple of 32
    free = MaskRCNN(config=tiny_config, min_size=64, max_size=96, detection={"score_threshold": 0.0})
    assert free.image_shape is None
    assert canvas(free) == (None, 96, 96, 3)  # unknown while tracing: the max_size square
    free.set_weights(fixed.get_weights())
    images = np.random.default_rng(0).integers(0, 256, (2, 48, 64, 3)).astype(np.uint8)
    for key, value in fixed(images).items():
        np.testing.assert_allclose(value.numpy(), free(images)[key].numpy(), atol=1e-5)
    again = MaskRCNNModel.from_config(fixed.get_config())
    assert again.image_shape == (48, 64, 3) and again.config == fixed.config


def test_another_size_is_an_error_naming_both(fixed):
    message = r"takes 48x64 images \(input_shape=\(48, 64, 3\)\), got 64x48"
    with pytest.raises(ValueError, match=message):
        fixed(np.zeros((1, 64, 48, 3), np.uint8))
    with pytest.raises(ValueError, match=message):
        fixed.predict(np.zeros((2, 64, 48, 3), np.uint8))
    with pytest.raises(ValueError, match=message):
        fixed.predict([np.zeros((48, 64, 3), np.uint8), np.zeros((64, 48, 3), np.uint8)])
    with pytest.raises(ValueError, match=message):
        tf.function(fixed.call).get_concrete_function(tf.TensorSpec([None, 64, 48, 3], tf.uint8))
    assert fixed.predict([np.zeros((48, 64, 3), np.uint8)])["num_detections"].shape == (1,)
    # a size unknown while tracing is checked when the graph runs
    graph = tf.function(fixed.call, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    assert graph(tf.zeros((1, 48, 64, 3), tf.uint8))["num_detections"].shape == (1,)
    with pytest.raises(tf.errors.InvalidArgumentError):
        graph(tf.zeros((1, 64, 48, 3), tf.uint8))


@pytest.mark.parametrize(
    "shape,message",
    [
        ((64, 64), "must be \\(height, width, 3\\)"),
        ((64, 64, 1), "must be \\(height, width, 3\\)"),
        ((64, None, 3), "fixes one side only"),
        ((0, 64, 3), "positive integers"),
        ((64.5, 64, 3), "positive integers"),
    ],
)
def test_bad_input_shapes(tiny_config, shape, message):
    with pytest.raises(ValueError, match=message):
        MaskRCNN(config=tiny_config, input_shape=shape)


# -- one class-count name and meaning ----------------------------------------------------------------------------------


def test_num_classes_is_the_class_count_of_both_families():
    for build in (NIN, MaskRCNN):
        assert "num_classes" in inspect.signature(build).parameters
        assert "score output" in build.__doc__  # one stated meaning: the width of the classifier's scores
    assert "counts the background" in MaskRCNN.__doc__
    assert NIN(num_classes=3, variant="mnist").output_shape == (None, 3)
    assert NIN(variant="mnist").output_shape == (None, 10)  # the default


def test_nin_classes_is_deprecated_but_works():
    with pytest.warns(DeprecationWarning, match=r"NIN\(classes=...\) is deprecated.*num_classes"):
        model = NIN(classes=4, variant="mnist")
    assert model.output_shape == (None, 4)
    with pytest.warns(DeprecationWarning):
        assert NIN(classes=4, num_classes=4, variant="mnist").output_shape == (None, 4)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="classes=4 and num_classes=5"):
        NIN(classes=4, num_classes=5, variant="mnist")
    with pytest.raises(ValueError, match="10 classes, got num_classes=5"):
        NIN(weights="fashion_mnist", input_shape=(28, 28, 1), num_classes=5)


def test_tflite_export_takes_the_fixed_size_by_default(fixed, tiny_config, tmp_path):
    from kzoo.export import convert_mask_rcnn_tflite
    from kzoo.export.tflite import load_interpreter

    path = convert_mask_rcnn_tflite(fixed, tmp_path / "fixed.tflite")
    (detail,) = load_interpreter(path).get_input_details()
    assert list(detail["shape"]) == [1, 48, 64, 3]
    free = MaskRCNN(config=tiny_config)
    with pytest.raises(ValueError, match=r"image_size=\(H, W\) is needed"):
        convert_mask_rcnn_tflite(free, tmp_path / "free.tflite")
