"""kzoo.utils.native_output: native libraries' lines (the TFLite converter's, LiteRT's XNNPACK delegate's) stay off
the terminal, while Python's own errors still arrive."""

import os

import keras
import numpy as np
import pytest

from kzoo.utils.native_output import native_stderr_silenced


def test_descriptor_2_is_silenced_and_restored(capfd):
    with native_stderr_silenced():
        os.write(2, b"native chatter\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    with pytest.raises(RuntimeError, match="still raised"), native_stderr_silenced():
        raise RuntimeError("still raised")
    os.write(2, b"restored\n")
    assert capfd.readouterr().err == "restored\n"


def test_nested_blocks(capfd):
    with native_stderr_silenced():
        with native_stderr_silenced():
            os.write(2, b"inner\n")
        os.write(2, b"outer\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_kept_when_asked(capfd, monkeypatch):
    monkeypatch.setenv("KZOO_NATIVE_LOGS", "1")
    with native_stderr_silenced():
        os.write(2, b"debugging\n")
    assert capfd.readouterr().err == "debugging\n"


def test_tflite_conversion_and_litert_say_nothing(tmp_path, capfd):
    from kzoo.export import convert_classifier_tflite, run_classifier_tflite
    from kzoo.models.nin import build_nin, resolve_blocks

    keras.utils.set_random_seed(0)
    blocks = resolve_blocks("custom", [{"filters": [8]}, {"filters": [8], "pool": False, "dropout": False}])
    model = build_nin(keras.Input((16, 16, 3)), blocks, num_classes=3)
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    capfd.readouterr()
    for mode in ("none", "int8"):
        path = convert_classifier_tflite(model, tmp_path / f"m_{mode}.tflite", mode, representative_images=images)
        assert run_classifier_tflite(path, images).shape == (8, 3)
    err = capfd.readouterr().err
    assert "XNNPACK" not in err and "fully_quantize" not in err, err
