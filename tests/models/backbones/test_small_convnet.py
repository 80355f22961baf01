"""kzoo.models.backbones.small_convnet: feature shapes (ceil division on odd sides), channels by width, group norm
that is the same in training and inference, dtype policies, and named argument errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kzoo.models.backbones.small_convnet import small_convnet_backbone, small_convnet_feature_channels


@pytest.mark.parametrize("width", [0.25, 1.0])
def test_feature_shapes_and_channels(width):
    model = small_convnet_backbone((None, None, 3), width=width)
    channels = small_convnet_feature_channels(width)
    outputs = model(np.zeros((2, 45, 64, 3), np.float32))
    for key, stride in (("C2", 4), ("C3", 8), ("C4", 16), ("C5", 32)):
        assert tuple(outputs[key].shape) == (2, -(-45 // stride), 64 // stride, channels[key])
    assert channels == (
        {"C2": 32, "C3": 64, "C4": 128, "C5": 256} if width == 1.0 else {"C2": 8, "C3": 16, "C4": 32, "C5": 64}
    )


def test_group_norm_is_the_same_in_training_and_inference():
    model = small_convnet_backbone((32, 32, 3), width=0.25)
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    trained = keras.ops.convert_to_numpy(model(images, training=True)["C5"])
    inferred = keras.ops.convert_to_numpy(model(images, training=False)["C5"])
    np.testing.assert_allclose(trained, inferred, rtol=1e-5, atol=1e-6)
    batch = small_convnet_backbone((32, 32, 3), width=0.25, norm="batch")
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in batch.layers)


def test_layers_take_the_dtype_policy():
    model = small_convnet_backbone((32, 32, 3), width=0.25, dtype=keras.DTypePolicy("mixed_bfloat16"))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(c.compute_dtype == "bfloat16" and c.variable_dtype == "float32" for c in convs)
    assert model(np.zeros((1, 32, 32, 3), np.float32))["C5"].dtype == "bfloat16"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"width": 0}, "width must be > 0"),
        ({"convs_per_stage": 0}, "convs_per_stage must be >= 1"),
        ({"norm": "layer"}, "norm must be 'group' or 'batch'"),
        ({"width": 0.3, "groups": 8}, "groups=8 must divide every stage's channels"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_convnet_backbone((32, 32, 3), **kwargs)
