"""kzoo.models.backbones: the registry and build_backbone's routing of the config's fields (and dtype) to each
backbone."""

import keras
import pytest

from kzoo.models.backbones import (
    RESNET_FEATURE_CHANNELS,
    build_backbone,
    mobilenet_v2_feature_channels,
    small_convnet_feature_channels,
)


def _feature_shapes(model):
    return {k: tuple(t.shape[1:]) for k, t in model.output.items()}


def test_build_backbone_registry():
    model, channels = build_backbone("resnet50", (64, 64, 3), stride_in_1x1=True, frozen_stages=0)
    assert channels == RESNET_FEATURE_CHANNELS == {"C2": 256, "C3": 512, "C4": 1024, "C5": 2048}
    assert model.get_layer("layer2_0_conv1").strides == (2, 2) and model.get_layer("conv1").trainable
    model, channels = build_backbone("resnet101", (64, 64, 3))
    assert channels == RESNET_FEATURE_CHANNELS and model.name == "resnet101"
    assert (
        len([layer for layer in model.layers if layer.name.startswith("layer3_") and layer.name.endswith("_add")]) == 23
    )
    model, channels = build_backbone("mobilenet_v2", (64, 64, 3), width=0.5)
    assert channels == mobilenet_v2_feature_channels(0.5) == {"C2": 16, "C3": 16, "C4": 48, "C5": 1280}
    assert _feature_shapes(model)["C4"] == (4, 4, 48)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg16", (64, 64, 3))


def test_build_backbone_routes_the_config_fields_and_the_dtype():
    from kzoo.models.mask_rcnn_config import BackboneConfig

    config = BackboneConfig(name="small_convnet", width=0.5, norm="batch")
    model, channels = build_backbone(config, (64, 64, 3), dtype=keras.DTypePolicy("mixed_bfloat16"))
    assert channels == small_convnet_feature_channels(0.5) and model.get_layer("c2_0_bn") is not None
    assert {layer.compute_dtype for layer in model.layers[1:]} == {"bfloat16"}
    assert {w.dtype for w in model.weights} == {"float32"}
    assert keras.mixed_precision.global_policy().name == "float32"
    mobile, _ = build_backbone(BackboneConfig(name="mobilenet_v2", width=0.35), (64, 64, 3), dtype="mixed_bfloat16")
    plain, _ = build_backbone(BackboneConfig(name="mobilenet_v2", width=0.35), (64, 64, 3))
    assert mobile.get_layer("Conv1").compute_dtype == "bfloat16" and plain.get_layer("Conv1").compute_dtype == "float32"
    assert [w.path for w in mobile.weights] == [w.path for w in plain.weights]
    frozen, _ = build_backbone(BackboneConfig(frozen_stages=0), (64, 64, 3), norm="batch")
    assert frozen.get_layer("conv1").trainable and isinstance(frozen.get_layer("bn1"), keras.layers.BatchNormalization)
