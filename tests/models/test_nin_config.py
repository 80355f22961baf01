"""NIN's block specifications, variants and trainable presets: pure Python, read before TensorFlow is imported."""

import subprocess
import sys

import pytest

from kzoo.models.nin_config import DEFAULT_INPUT_SHAPES, NIN_TRAINABLE_PRESETS, VARIANTS, BlockSpec


def test_block_spec_errors():
    with pytest.raises(ValueError, match="unknown config key 'block."):
        BlockSpec.from_dict({"filters": [3], "size": 3})
    with pytest.raises(ValueError, match="no 'filters'"):
        BlockSpec.from_dict({"kernel_size": 3})


def test_block_spec_from_a_mapping():
    spec = BlockSpec.from_dict({"filters": [192, 160, 96], "kernel_size": 5, "pool": False})
    assert spec == BlockSpec((192, 160, 96), kernel_size=5, pool=False)
    assert BlockSpec.from_dict(spec) is spec


def test_every_variant_has_an_input_shape_and_cifar100_is_cifar10():
    assert set(VARIANTS) == set(DEFAULT_INPUT_SHAPES)
    assert VARIANTS["cifar100"] == VARIANTS["cifar10"]
    assert [len(blocks) for blocks in VARIANTS.values()] == [3, 3, 3, 4, 3]


def test_presets_and_the_config_choices_come_from_the_models():
    from kzoo.config import TRAINABLE_LAYERS
    from kzoo.models.mask_rcnn_config import MASK_RCNN_TRAINABLE_PRESETS

    assert NIN_TRAINABLE_PRESETS == ("all", "heads")
    assert TRAINABLE_LAYERS == ("all", "heads", "3+", "4+", "5+")
    assert set(NIN_TRAINABLE_PRESETS) | set(MASK_RCNN_TRAINABLE_PRESETS) == set(TRAINABLE_LAYERS)


def test_imports_without_tensorflow():
    code = "import sys, kzoo.models.nin_config; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
