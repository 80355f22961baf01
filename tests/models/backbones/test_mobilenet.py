"""kzoo.models.backbones.mobilenet: strides, channels, width multiplier, and TFLite builtins."""

import numpy as np
import pytest

from kzoo.models.backbones import (
    FEATURE_STRIDES,
    mobilenet_v2_backbone,
    mobilenet_v2_feature_channels,
)


def _feature_shapes(model):
    return {k: tuple(t.shape[1:]) for k, t in model.output.items()}


@pytest.mark.parametrize("size", [(64, 64), (128, 96)])
def test_mobilenet_v2_strides_and_channels(size):
    model = mobilenet_v2_backbone(input_shape=(*size, 3))
    channels = mobilenet_v2_feature_channels(1.0)
    assert channels == {"C2": 24, "C3": 32, "C4": 96, "C5": 1280}
    assert _feature_shapes(model) == {
        key: (size[0] // stride, size[1] // stride, channels[key]) for key, stride in FEATURE_STRIDES.items()
    }


def test_mobilenet_v2_alpha_dynamic_shape_forward():
    model = mobilenet_v2_backbone(input_shape=(None, None, 3), alpha=0.35)
    channels = mobilenet_v2_feature_channels(0.35)
    assert channels == {"C2": 8, "C3": 16, "C4": 32, "C5": 1280}
    out = model(np.zeros((1, 64, 96, 3), np.float32))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "C2": (1, 16, 24, 8),
        "C3": (1, 8, 12, 16),
        "C4": (1, 4, 6, 32),
        "C5": (1, 2, 3, 1280),
    }
    assert mobilenet_v2_feature_channels(1.4)["C5"] == 1792
    with pytest.raises(ValueError, match="alpha"):
        mobilenet_v2_backbone(alpha=0)


def test_mobilenet_v2_converts_to_tflite_builtins():
    import tensorflow as tf

    model = mobilenet_v2_backbone(input_shape=(64, 64, 3), alpha=0.35)

    @tf.function(input_signature=[tf.TensorSpec([1, 64, 64, 3], tf.float32)])
    def features(images):
        return model(images, training=False)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([features.get_concrete_function()], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # fails on any non-builtin op
    assert len(converter.convert()) > 100_000
