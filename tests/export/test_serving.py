"""kzoo.export.serving: the argument checks every export shares."""

import numpy as np
import pytest

from kzoo.export.serving import check_max_image_pixels


def test_max_image_pixels_is_a_positive_int64():
    assert check_max_image_pixels(40_000_000) == 40_000_000
    assert check_max_image_pixels(np.int64(5)) == 5 and check_max_image_pixels(2**63 - 1) == 2**63 - 1
    for bad in (0, -1, 2**63, 10**30, True, 1.5, "100", None):
        with pytest.raises(ValueError, match="max_image_pixels must be a positive int of at most 2\\*\\*63 - 1"):
            check_max_image_pixels(bad)
