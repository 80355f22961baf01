"""kzoo.data.options: the data choices (one tuple each, the config's and the readers' alike, TF-free) and the
augmentation and resize rules the config and the pipeline share."""

import math
import subprocess
import sys

import numpy as np
import pytest

from kzoo import config
from kzoo.data import options
from kzoo.data.annotation_tools import TOOLS
from kzoo.data.options import augmentation_problem, check_resize_rule


def test_the_config_takes_its_choices_from_here():
    assert config.CLASSIFICATION_SOURCES is options.CLASSIFICATION_SOURCES
    assert config.DETECTION_SOURCES is options.DETECTION_SOURCES
    assert config.CHECK_IMAGES is options.CHECK_IMAGES
    assert tuple(TOOLS) == options.ANNOTATION_TOOLS
    assert set(options.ANNOTATION_TOOLS) < set(options.DETECTION_SOURCES)


def test_importing_it_imports_neither_tensorflow_nor_numpy():
    code = "import sys, kzoo.data.options; print('tensorflow' in sys.modules, 'numpy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"scale_jitter": (0.5, 2.0)},
        {"scale_jitter": [1, 1]},
        {"scale_jitter": np.array([0.1, 2.0], np.float32)},
        {"min_box_size": 0},
        {"brightness": 1.0, "contrast": 0.0, "saturation": np.float32(0.2), "hue": 0.5},
    ],
)
def test_values_in_range_pass(values):
    assert augmentation_problem(**values) is None


@pytest.mark.parametrize(
    "values, name",
    [
        ({"scale_jitter": (2.0, 1.0)}, "scale_jitter"),
        ({"scale_jitter": (0.0, 1.0)}, "scale_jitter"),
        ({"scale_jitter": (0.5, math.inf)}, "scale_jitter"),
        ({"scale_jitter": (0.5,)}, "scale_jitter"),
        ({"min_box_size": -1.0}, "min_box_size"),
        ({"min_box_size": math.nan}, "min_box_size"),
        ({"brightness": -0.1}, "brightness"),
        ({"contrast": 1.5}, "contrast"),
        ({"saturation": math.nan}, "saturation"),
        ({"hue": 0.6}, "hue"),
        ({"hue": True}, "hue"),
    ],
)
def test_the_first_value_out_of_range_is_named(values, name):
    found, message = augmentation_problem(**values)
    assert found == name and "must" in message


def test_the_config_and_the_pipeline_name_the_same_problem():
    with pytest.raises(config.ConfigError, match=r"config key 'data.hue' must be in \[0, 0.5\], got 0.7"):
        config.config_from_dict({"task": "mask_rcnn", "data": {"hue": 0.7}})


def test_resize_rule():
    check_resize_rule(1, 1)
    check_resize_rule(800, 1333)
    for low, high in ((0, 10), (20, 10)):
        with pytest.raises(ValueError, match=r"need 1 <= min_size <= max_size"):
            check_resize_rule(low, high)
