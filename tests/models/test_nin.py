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
    model = NIN(variant=variant, input_shape=input_shape, classes=classes)
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
    model = NIN(variant="custom", blocks=blocks, input_shape=(16, 16, 3), classes=4, use_batch_norm=True)
    scores, maps = class_map_model(model)(np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32))
    assert scores.shape == (2, 4) and maps.shape == (2, 8, 8, 4)
    # the head's scores are the softmax of the maps' spatial means
    mean = keras.ops.convert_to_numpy(maps).mean(axis=(1, 2))
    expected = np.exp(mean) / np.exp(mean).sum(-1, keepdims=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scores), expected, atol=1e-5)


def test_block_spec_errors():
    with pytest.raises(ValueError, match="unknown config key 'block."):
        BlockSpec.from_dict({"filters": [3], "size": 3})
    with pytest.raises(ValueError, match="no 'filters'"):
        BlockSpec.from_dict({"kernel_size": 3})
    with pytest.raises(ValueError, match="unknown NIN variant"):
        resolve_blocks("resnet", None)
