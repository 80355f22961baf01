"""kzoo.export.serving: the argument checks every export shares."""

import os

import numpy as np
import pytest

from kzoo.export.serving import check_max_image_pixels, check_model_name, latest_version_dir, new_version_dir


def test_max_image_pixels_is_a_positive_int64():
    assert check_max_image_pixels(40_000_000) == 40_000_000
    assert check_max_image_pixels(np.int64(5)) == 5 and check_max_image_pixels(2**63 - 1) == 2**63 - 1
    for bad in (0, -1, 2**63, 10**30, True, 1.5, "100", None):
        with pytest.raises(ValueError, match="max_image_pixels must be a positive int of at most 2\\*\\*63 - 1"):
            check_max_image_pixels(bad)


def test_model_names_are_plain(tmp_path):
    assert check_model_name("nin_cifar10") == "nin_cifar10"
    for bad in ("", ".", "..", "a/b", "../x", "a\0b", "/abs"):
        with pytest.raises(ValueError, match="model name must be a plain name without folders"):
            check_model_name(bad)


def test_versions_count_up_and_are_never_replaced(tmp_path):
    assert latest_version_dir(tmp_path / "m") is None
    first = new_version_dir(tmp_path, "m")
    assert first == os.path.join(tmp_path, "m", "1") and not os.path.exists(first)  # not created yet
    os.makedirs(first)
    os.makedirs(tmp_path / "m" / "7")
    os.makedirs(tmp_path / "m" / "tmp-9")  # not a version
    assert new_version_dir(tmp_path, "m") == os.path.join(tmp_path, "m", "8")
    assert latest_version_dir(tmp_path / "m") == os.path.join(tmp_path, "m", "7")
    with pytest.raises(FileExistsError, match=r"never replaced.*give another version.*\(8\)"):
        new_version_dir(tmp_path, "m", 7)
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="version must be a positive integer"):
            new_version_dir(tmp_path, "m", bad)
