import keras
import numpy as np
import pytest

from kzoo.applications import NIN
from kzoo.models.nin import BlockSpec, class_map_model, resolve_blocks


@pytest.mark.parametrize(
    "variant,input_shape,classes,expected",
    [
        ("cifar10", (32, 32, 3), 10, 966_986),
        ("cifar100", (32, 32, 3), 100, 984_356),
        ("svhn", (32, 32, 3), 10, 1_986_026),
        ("mnist", (28, 28, 1), 10, 349_674),
        ("imagenet", (224, 224, 3), 1000, 7_595_176),
    ],
)
def test_variant_parameter_counts(variant, input_shape, classes, expected):
    model = NIN(variant=variant, input_shape=input_shape, num_classes=classes)
    assert model.count_params() == expected
    assert model.output_shape == (None, classes)


def test_cifar100_count_is_cifar10_plus_class_stage():
    # only the last 1x1 stage (192 -> classes) changes: 90 more classes x (192 weights + 1 bias)
    assert 984_356 - 966_986 == 90 * 193


def test_cifar10_structure_follows_the_paper():
    model = NIN(variant="cifar10")
    names = [layer.name for layer in model.layers]
    assert names == ["images", "block1", "pool1", "dropout1", "block2", "pool2", "dropout2", "block3", "head"]
    assert model.get_layer("block3").filters == [192, 192, 10]
    assert model.get_layer("pool1").output.shape[1:3] == (16, 16)
    assert model.get_layer("dropout1").rate == 0.5


def test_custom_blocks_batch_norm_and_class_maps():
    blocks = [{"filters": [8, 8], "kernel_size": 3}, {"filters": [8], "pool": False, "dropout": False}]
    model = NIN(variant="custom", blocks=blocks, input_shape=(16, 16, 3), num_classes=4, use_batch_norm=True)
    scores, maps = class_map_model(model)(np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32))
    assert scores.shape == (2, 4) and maps.shape == (2, 8, 8, 4)
    # the head's scores are the softmax of the maps' spatial means
    mean = keras.ops.convert_to_numpy(maps).mean(axis=(1, 2))
    expected = np.exp(mean) / np.exp(mean).sum(-1, keepdims=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scores), expected, atol=1e-5)


def test_unknown_variant_and_empty_custom_blocks():
    with pytest.raises(ValueError, match="unknown NIN variant"):
        resolve_blocks("resnet", None)
    with pytest.raises(ValueError, match="a custom NIN needs at least one block"):
        resolve_blocks("custom", [])
    assert resolve_blocks("cifar10", None)[0] == BlockSpec((192, 160, 96), kernel_size=5)


def _tiny_nin(classes: int = 4, **options):
    from kzoo.models.nin import build_nin

    blocks = resolve_blocks("custom", [{"filters": [8, 8]}, {"filters": [8], "pool": False}])
    return build_nin(keras.Input((16, 16, 3)), blocks, num_classes=classes, use_batch_norm=True, **options)


def test_dtype_policy_reaches_every_layer_and_leaves_the_global_policy_alone():
    model = _tiny_nin(dtype=keras.DTypePolicy("mixed_bfloat16"))
    assert keras.mixed_precision.global_policy().name == "float32"
    inner = [
        layer for layer in model._flatten_layers(include_self=False) if not isinstance(layer, keras.layers.InputLayer)
    ]
    for layer in inner:
        if layer.name == "head":  # averages and activates in float32 whatever the policy
            assert layer.compute_dtype == "float32"
        else:
            assert (layer.compute_dtype, layer.variable_dtype) == ("bfloat16", "float32"), layer.name
    assert all(weight.dtype == "float32" for weight in model.weights)
    images = np.random.default_rng(0).uniform(-1, 1, size=(2, 16, 16, 3)).astype(np.float32)
    scores = model(images)
    assert keras.ops.convert_to_numpy(scores).dtype == np.float32
    assert model.get_layer("block2").output.dtype == "bfloat16"
    # the same weights in float32 give nearly the same scores
    reference = _tiny_nin()
    reference.set_weights(model.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(scores), keras.ops.convert_to_numpy(reference(images)), atol=0.02
    )


def test_class_specific_weights_are_the_class_stage():
    model = _tiny_nin()
    stage = model.get_layer("block2")
    assert [w.path for w in model.class_specific_weights()] == [
        w.path for w in (*stage.convs[-1].weights, *stage.norms[-1].weights)
    ]
    assert [tuple(w.shape) for w in model.class_specific_weights()][:2] == [(1, 1, 8, 4), (4,)]
    headless = _tiny_nin(include_top=False, pooling="avg")  # no class count, no class-specific weight
    assert headless.class_specific_weights() == []


def test_trainable_presets():
    from kzoo.models.nin import NINModel

    assert NINModel.TRAINABLE_PRESETS == ("all", "heads")
    model = _tiny_nin()
    model.set_trainable_preset("heads")
    assert [layer.name for layer in model.layers if layer.trainable_weights] == ["block2"]
    model.set_trainable_preset("all")
    assert [layer.name for layer in model.layers if layer.trainable_weights] == ["block1", "block2"]
    with pytest.raises(ValueError, match=r"NIN trainable preset must be one of \['all', 'heads'\], got '4\+'"):
        model.set_trainable_preset("4+")
