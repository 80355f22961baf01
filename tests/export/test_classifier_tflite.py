import os

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import kzoo.utils.files as files_module
from kzoo.export import QUANTIZE_MODES, convert_classifier_tflite, run_tflite_classifier

# Probability tolerance and minimum top-1 agreement with the Keras model, per variant, about 10x the measured
# worst error on these 32 random images of the random 3k-parameter NIN (measured max |dp|: none 1.8e-7,
# float16 9.8e-5, dynamic 3.1e-3, int8 4.6e-3; top-1 agreement 32/32 for every variant).
TOLERANCES = {"none": (1e-5, 1.0), "float16": (1e-3, 1.0), "dynamic": (0.05, 0.9), "int8": (0.05, 0.9)}


@pytest.fixture(scope="module")
def tflite_model(tiny_nin):
    """Wide enough (a 3x3x16x16 kernel) that dynamic-range quantization quantizes a weight (>= 1024 elements)."""
    return tiny_nin(width=16)


@pytest.fixture(scope="module")
def converted(tflite_model, images, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tflite")
    return {
        mode: convert_classifier_tflite(
            tflite_model, directory / f"nin_{mode}.tflite", mode, representative_images=images
        )
        for mode in QUANTIZE_MODES
    }


@pytest.mark.parametrize("mode", QUANTIZE_MODES)
def test_builtin_ops_only(converted, mode):
    interpreter = Interpreter(model_path=converted[mode])
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "CONV_2D" in ops
    assert not any(op.startswith("Flex") or op in ("CUSTOM", "DELEGATE") for op in ops), ops
    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    assert interpreter.get_signature_list()["serving_default"] == {"inputs": ["images"], "outputs": ["probabilities"]}
    assert list(input_detail["shape"]) == [1, 16, 16, 3] and input_detail["dtype"] == np.uint8
    assert list(output_detail["shape"]) == [1, 3] and output_detail["dtype"] == np.float32


@pytest.mark.parametrize("mode", QUANTIZE_MODES)
def test_matches_keras(keras_probabilities, tflite_model, images, converted, mode):
    atol, min_agreement = TOLERANCES[mode]
    expected = keras_probabilities(tflite_model, images)
    probabilities = run_tflite_classifier(converted[mode], images)
    assert probabilities.shape == (32, 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, expected, atol=atol)
    assert np.mean(probabilities.argmax(axis=1) == expected.argmax(axis=1)) >= min_agreement


def test_quantized_weights(converted):
    def weight_dtypes(path):
        interpreter = Interpreter(model_path=path)
        return {d["dtype"] for d in interpreter.get_tensor_details() if "convolution" in d["name"]}

    assert weight_dtypes(converted["none"]) == {np.float32}
    assert np.int8 in weight_dtypes(converted["dynamic"])
    assert np.int8 in weight_dtypes(converted["int8"])
    sizes = {mode: os.path.getsize(path) for mode, path in converted.items()}
    assert sizes["float16"] < sizes["none"] and sizes["dynamic"] < sizes["none"] and sizes["int8"] < sizes["none"]


def test_batching_and_dtypes(converted, images):
    path = converted["int8"]
    one_by_one = run_tflite_classifier(path, images, batch_size=1)
    np.testing.assert_allclose(run_tflite_classifier(path, images, batch_size=7), one_by_one, atol=1e-6)
    np.testing.assert_allclose(
        run_tflite_classifier(path, images.astype(np.float64), batch_size=64), one_by_one, atol=1e-6
    )
    assert run_tflite_classifier(path, images[:0]).shape == (0, 3)


def test_run_errors(converted, images, tmp_path):
    with pytest.raises(ValueError, match=r"images must be \[batch, 16, 16, 3\], got height 8"):
        run_tflite_classifier(converted["none"], images[:, :8])
    with pytest.raises(ValueError, match=r"images must be a batch of images \[batch, 16, 16, 3\] \(rank 4\)"):
        run_tflite_classifier(converted["none"], images[0])
    with pytest.raises(FileNotFoundError, match="no TFLite model"):
        run_tflite_classifier(tmp_path / "missing.tflite", images)


def test_convert_errors(model, images, tmp_path):
    with pytest.raises(ValueError, match="quantize must be one of"):
        convert_classifier_tflite(model, tmp_path / "m.tflite", "int4")
    with pytest.raises(ValueError, match="needs representative_images"):
        convert_classifier_tflite(model, tmp_path / "m.tflite", "int8")
    with pytest.raises(ValueError, match=r"representative_images must have shape \[N, 16, 16, 3\]"):
        convert_classifier_tflite(model, tmp_path / "m.tflite", "int8", representative_images=images[:, :8])
    assert os.listdir(tmp_path) == []


def test_atomic_write(model, tmp_path, monkeypatch):
    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(files_module.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        convert_classifier_tflite(model, tmp_path / "m.tflite")
    assert os.listdir(tmp_path) == []


def test_file_is_readable_by_others(model, tmp_path, umask_022):
    path = convert_classifier_tflite(model, tmp_path / "m.tflite")
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["m.tflite"]
