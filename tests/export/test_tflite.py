"""The generic TFLite converter (kzoo.export.tflite): signature names, builtin ops only, int8 op selection."""

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from kzoo.export import tflite
from kzoo.export.tflite import QUANTIZE_MODES, convert_function_to_tflite, representative_dataset


def _conv_function() -> tf.types.experimental.GenericFunction:
    kernel = tf.Variable(np.random.default_rng(0).normal(size=(3, 3, 3, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32, name="pixels")])
    def function(pixels):
        features = tf.nn.conv2d(pixels, kernel, 1, "SAME")
        return {"features": features, "total": tf.reduce_sum(tf.sigmoid(features), axis=[1, 2, 3])}

    return function


@pytest.fixture(scope="module")
def calibration():
    return representative_dataset(np.random.default_rng(1).uniform(0, 1, size=(4, 8, 8, 3)).astype(np.float32))


def _interpreter(flatbuffer: bytes) -> Interpreter:
    return Interpreter(model_content=flatbuffer)


@pytest.mark.parametrize("mode", QUANTIZE_MODES)
def test_keeps_the_signature_names_and_the_values(mode, calibration):
    function = _conv_function()
    interpreter = _interpreter(convert_function_to_tflite(function, mode, calibration))
    assert interpreter.get_signature_list()["serving_default"] == {
        "inputs": ["pixels"],
        "outputs": ["features", "total"],
    }
    pixels = np.random.default_rng(2).uniform(0, 1, size=(1, 8, 8, 3)).astype(np.float32)
    out = interpreter.get_signature_runner("serving_default")(pixels=pixels)
    expected = function(tf.constant(pixels))
    tolerance = {"none": 1e-5, "float16": 0.05, "dynamic": 0.5, "int8": 0.5}[mode]
    np.testing.assert_allclose(out["features"], expected["features"].numpy(), atol=tolerance)


def test_int8_ops_selects_the_quantized_op_types(calibration):
    function = _conv_function()
    selected = _interpreter(convert_function_to_tflite(function, "int8", calibration, int8_ops=("CONV_2D",)))
    everything = _interpreter(convert_function_to_tflite(function, "int8", calibration, int8_ops="all"))

    def int8_ops(interpreter):
        tensors = {d["index"]: d["dtype"] for d in interpreter.get_tensor_details()}
        return {
            op["op_name"]
            for op in interpreter._get_ops_details()
            if any(tensors.get(i) == np.int8 for i in op["outputs"])
        }

    assert int8_ops(selected) - {"QUANTIZE"} == {"CONV_2D"}  # the input is quantized for the conv
    assert {"CONV_2D", "LOGISTIC"} <= int8_ops(everything)


def test_non_builtin_op_fails_clearly():
    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
    def crop(images):
        boxes = tf.constant([[0.1, 0.1, 0.8, 0.9]])
        return {"crops": tf.image.crop_and_resize(images, boxes, tf.zeros([1], tf.int32), [7, 7])}

    with pytest.raises(ValueError, match="not TFLite builtins.*CropAndResize"):
        convert_function_to_tflite(crop)


def test_int8_without_the_quantizer_entry_point_fails_clearly(monkeypatch):
    from tensorflow.lite.python import convert as lite_convert

    monkeypatch.delattr(lite_convert, "mlir_quantize")
    with pytest.raises(RuntimeError, match="has no tensorflow.lite.python.convert.mlir_quantize"):
        tflite.quantize_only(b"", ("CONV_2D",))


def test_unknown_quantize_mode():
    with pytest.raises(ValueError, match="quantize must be one of"):
        convert_function_to_tflite(_conv_function(), "int4")


def test_load_interpreter(tmp_path):
    path = tmp_path / "conv.tflite"
    path.write_bytes(convert_function_to_tflite(_conv_function()))
    interpreter = tflite.load_interpreter(path, num_threads=1)
    assert [detail["name"] for detail in interpreter.get_input_details()] == ["serving_default_pixels:0"]
    interpreter.get_tensor(interpreter.get_input_details()[0]["index"])  # allocated: readable without a call
    with pytest.raises(FileNotFoundError, match="no TFLite model at .*missing.tflite"):
        tflite.load_interpreter(tmp_path / "missing.tflite")
