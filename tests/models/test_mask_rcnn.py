"""Mask R-CNN inference graph: shapes, dtypes, parameter counts, odd inputs, jit_compile."""

import numpy as np
import pytest
import tensorflow as tf

from kzoo.applications import MaskRCNN
from kzoo.applications.mask_rcnn import preprocess_input
from kzoo.config import ConfigError, load_config
from kzoo.layers import FrozenBatchNormalization
from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.models.mask_rcnn_config import MaskRCNNConfig

TINY = dict(
    num_classes=4,
    fpn={"channels": 16},
    box_head={"fc_dim": 32},
    mask_head={"channels": 8, "num_convs": 2},
    rpn={"pre_nms_top_k_test": 100, "post_nms_top_k_test": 40},
    detection={"max_detections": 8},
)


def tiny_model(min_size: int = 96, max_size: int = 160, **overrides) -> MaskRCNNModel:
    """A MobileNetV2 Mask R-CNN of :data:`TINY`; ``overrides``: ``MaskRCNN`` keywords, sections as mappings of the
    fields to change (``detection={"score_threshold": 0.0}``)."""
    config = MaskRCNNConfig().replace(**TINY)
    return MaskRCNN("mobilenet_v2_fpn", min_size=min_size, max_size=max_size, config=config, **overrides)


@pytest.fixture(scope="module")
def model():
    return tiny_model(detection={"score_threshold": 0.0})


def test_outputs_shapes_dtypes_and_ranges(model):
    images = np.random.default_rng(0).integers(0, 256, (2, 120, 90, 3)).astype(np.uint8)
    out = model(images)
    assert out["detection_boxes"].shape == (2, 8, 4) and out["detection_boxes"].dtype == tf.float32
    assert out["detection_scores"].shape == (2, 8) and out["detection_classes"].dtype == tf.int32
    assert out["num_detections"].shape == (2,) and out["num_detections"].dtype == tf.int32
    assert out["detection_masks"].shape == (2, 8, 28, 28)
    boxes = out["detection_boxes"].numpy()
    assert boxes.min() >= 0 and boxes[..., 2].max() <= 120 + 1e-3 and boxes[..., 3].max() <= 90 + 1e-3
    masks = out["detection_masks"].numpy()
    assert masks.min() >= 0 and masks.max() <= 1
    classes = out["detection_classes"].numpy()
    for b, count in enumerate(out["num_detections"].numpy()):
        assert (classes[b, :count] >= 1).all() and (classes[b, count:] == 0).all()
        assert (masks[b, count:] == 0).all()
    # float input of the same pixels gives the same detections
    again = model(images.astype(np.float32))
    np.testing.assert_allclose(again["detection_boxes"].numpy(), boxes, atol=1e-4)


def test_tiny_and_extreme_aspect_images_run(model):
    for shape in ((1, 16, 16, 3), (1, 64, 1024, 3), (1, 1024, 64, 3)):
        out = model(np.full(shape, 100, np.uint8))
        assert out["detection_boxes"].shape == (1, 8, 4)
        boxes = out["detection_boxes"].numpy()[0, : int(out["num_detections"][0])]
        assert (boxes[:, 2] <= shape[1] + 1e-3).all() and (boxes[:, 3] <= shape[2] + 1e-3).all()


def test_blank_image_gives_no_confident_detection(model):
    # a randomly initialized box head (torchvision's init) is near-uniform over the 4 classes
    out = model(np.zeros((1, 100, 100, 3), np.uint8))
    scores = out["detection_scores"].numpy()[0, : int(out["num_detections"][0])]
    assert (scores < 0.5).all()


@pytest.mark.slow
def test_unknown_size_graph_matches_static_size():
    model = tiny_model(detection={"score_threshold": 0.0}, min_size=96, max_size=96)
    image = np.random.default_rng(1).integers(0, 256, (1, 96, 96, 3)).astype(np.uint8)
    dynamic = tf.function(model.call, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    a, b = model(image), dynamic(tf.constant(image))
    np.testing.assert_allclose(a["detection_boxes"].numpy(), b["detection_boxes"].numpy(), atol=1e-3)


@pytest.mark.slow
def test_jit_compile_with_gather_roi_align():
    # no NMS and no top-k cut: random initial scores nearly tie, and any rounding difference would change which
    # detections survive; so every candidate is kept, and eager and XLA must agree on all of them
    model = tiny_model(
        roi_align={"method": "gather"},
        detection={"score_threshold": 0.0, "max_detections": 200, "nms_threshold": 1.0, "pre_nms_top_k": 200},
    )
    image = np.random.default_rng(2).integers(0, 256, (1, 96, 128, 3)).astype(np.uint8)
    compiled = tf.function(model.call, jit_compile=True)
    eager = model(image)
    jitted = compiled(tf.constant(image))
    count = int(eager["num_detections"][0])
    assert int(jitted["num_detections"][0]) == count
    assert count > 50

    def ranked(out):  # detections of (near-)equal score may come in either order: compare them sorted by box
        rows = np.concatenate(
            [out["detection_boxes"].numpy()[0, :count], out["detection_scores"].numpy()[0, :count, None]], axis=1
        )
        return rows[np.lexsort(np.round(rows[:, ::-1], 1).T)]

    np.testing.assert_allclose(ranked(jitted), ranked(eager), atol=1e-2)


def test_bad_inputs_are_named(model, tmp_path):
    with pytest.raises(ValueError, match=r"RGB images must have 3 channel\(s\) \[batch, height, width, 3\], got 1"):
        model(np.zeros((1, 32, 32, 1), np.uint8))
    with pytest.raises(ValueError, match=r"RGB images must be a batch of images .* got shape \[32, 32, 3\]"):
        model(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown backbone"):
        MaskRCNN("vgg16")
    with pytest.raises(ValueError, match="unknown MaskRCNN option"):
        MaskRCNN("mobilenet_v2_fpn", anchor_size=3)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        tiny_model(weights=str(tmp_path / "none.weights.h5"))
    with pytest.raises(ValueError, match="num_classes"):
        MaskRCNNConfig(num_classes=1)
    with pytest.raises(ValueError, match=r"detection.nms_threshold' is an IoU and must be in \[0, 1\]"):
        MaskRCNNConfig().replace(detection={"nms_threshold": 1.5})
    with pytest.raises(ValueError, match=r"rpn.nms_threshold' is an IoU and must be in \[0, 1\]"):
        MaskRCNNConfig().replace(rpn={"nms_threshold": -0.1})
    with pytest.raises(ValueError, match="nms_method' must be one of"):
        MaskRCNNConfig(nms_method="fast")


def test_weights_round_trip(model, tmp_path):
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    again = tiny_model(detection={"score_threshold": 0.0}, weights=path)
    image = np.random.default_rng(3).integers(0, 256, (1, 80, 80, 3)).astype(np.uint8)
    np.testing.assert_allclose(again(image)["detection_boxes"].numpy(), model(image)["detection_boxes"].numpy())


def test_build_creates_every_weight_without_a_full_size_pass():
    """``build`` makes the same weights as a first call on images (the application builds this way, so building
    an 800 x 800 model does not run the network at 800 x 800)."""
    config = MaskRCNNConfig().replace(
        backbone={"name": "mobilenet_v2"}, input={"min_size": 96, "max_size": 160}, **TINY
    )
    built = MaskRCNNModel(config)
    built.build((None, 800, 800, 3))
    called = MaskRCNNModel(config)
    called(np.zeros((1, 64, 64, 3), np.uint8))
    assert built.built and [v.shape for v in built.weights] == [v.shape for v in called.weights]
    assert len(built.trainable_variables) == len(called.trainable_variables)
    built.set_weights(called.get_weights())
    image = np.random.default_rng(4).integers(0, 256, (1, 80, 72, 3)).astype(np.uint8)
    np.testing.assert_allclose(built(image)["detection_boxes"].numpy(), called(image)["detection_boxes"].numpy())


@pytest.mark.slow
@pytest.mark.parametrize("backbone,expected", [("resnet50_fpn", 44_401_393), ("resnet101_fpn", 63_341_297)])
def test_resnet_fpn_parameter_counts(backbone, expected):
    """torchvision's maskrcnn_resnet50_fpn has 44,401,393 parameters (its frozen BN statistics are buffers)."""
    model = MaskRCNN(backbone, input_shape=(64, 64, 3), min_size=64, max_size=64)
    frozen_layers = [layer for layer in model._flatten_layers() if isinstance(layer, FrozenBatchNormalization)]
    frozen = sum(int(np.prod(w.shape)) for layer in frozen_layers for w in layer.weights)
    assert model.count_params() - frozen == expected
    print(f"{backbone}: {model.count_params() - frozen:,} parameters (+{frozen:,} frozen BN statistics)")


def test_yaml_configs_and_preprocess_input(tmp_path):
    config = load_config("configs/mask_rcnn_r50_fpn.yaml", task="mask_rcnn").model
    assert config == MaskRCNNConfig()
    light = load_config("configs/mask_rcnn_mobilenet_v2_fpn.yaml", task="mask_rcnn").model
    assert light.backbone.name == "mobilenet_v2" and light.input.min_size == 512
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  anchor_size: [1]\n")
    with pytest.raises(ConfigError, match="model.anchor_size"):
        load_config(bad, task="mask_rcnn")
    assert preprocess_input(np.array([[[0, 128, 255]]], np.uint8)).dtype == np.float32


def test_runs_inside_a_distribution_strategy(model):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    image = tf.constant(np.random.default_rng(4).integers(0, 256, (1, 64, 96, 3)).astype(np.uint8))
    with strategy.scope():
        out = strategy.run(tf.function(model.call), args=(image,))
    expected = model(image)
    np.testing.assert_allclose(out["detection_boxes"].numpy(), expected["detection_boxes"].numpy(), atol=1e-3)
