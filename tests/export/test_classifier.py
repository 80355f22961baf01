"""kzoo.export.classifier: NIN's SavedModel (signatures, serving_bytes, warmup, versions, atomic writes, running
without kzoo) and its TFLite conversion and runner."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from tensorflow_serving.apis import prediction_log_pb2

import kzoo.export.classifier as classifier_module
import kzoo.utils.files as files_module
from kzoo.export import QUANTIZE_MODES, convert_classifier_tflite, export_classifier_saved_model, run_classifier_tflite
from kzoo.models.nin import build_nin, resolve_blocks

# -- SavedModel --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exports(class_names, model, tmp_path_factory):
    """One export per input dtype: {dtype: (version_dir, loaded SavedModel)}."""
    base = tmp_path_factory.mktemp("serving")
    result = {}
    for dtype in ("float32", "uint8"):
        path = export_classifier_saved_model(
            model, base, f"nin_{dtype}", class_names, input_dtype=dtype, warmup_examples=3
        )
        result[dtype] = (path, tf.saved_model.load(path))
    return result


def test_variables_are_saved_once(model, exports):
    directory = os.path.join(exports["uint8"][0], "variables")
    stored = sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory))
    float_values = sum(int(np.prod(v.shape)) for v in model.variables)
    assert stored < 1.1 * 4 * float_values + 20_000  # float32, once (ExportArchive saved them twice)


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_serving_default_matches_keras(class_names, keras_probabilities, model, images, exports, dtype):
    _, loaded = exports[dtype]
    signature = loaded.signatures["serving_default"]
    assert signature.structured_input_signature[1]["images"].dtype == tf.as_dtype(dtype)
    outputs = signature(images=tf.constant(images.astype(dtype)))
    expected = keras_probabilities(model, images)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
    assert outputs["probabilities"].dtype == tf.float32
    assert outputs["classes"].dtype == tf.int64
    np.testing.assert_array_equal(outputs["classes"].numpy(), expected.argmax(axis=1))
    names = [name.decode() for name in outputs["class_names"].numpy()]
    assert names == [class_names[i] for i in expected.argmax(axis=1)]


def test_any_batch_size(keras_probabilities, model, images, exports):
    signature = exports["uint8"][1].signatures["serving_default"]
    for batch in (1, 5):
        probabilities = signature(images=tf.constant(images[:batch]))["probabilities"].numpy()
        np.testing.assert_allclose(probabilities, keras_probabilities(model, images[:batch]), atol=1e-5)


def test_empty_batch(exports):
    loaded = exports["uint8"][1]
    empty = tf.zeros([0, 16, 16, 3], tf.uint8)
    assert loaded.signatures["serving_default"](images=empty)["probabilities"].shape == (0, 3)
    assert loaded.signatures["serving_bytes"](image_bytes=tf.constant([], tf.string))["classes"].shape == (0,)
    assert loaded.signatures["class_maps"](images=empty)["class_maps"].shape == (0, 8, 8, 3)


def test_serving_bytes_png_matches_serving_default(exports, images):
    loaded = exports["float32"][1]
    encoded = [tf.io.encode_png(image).numpy() for image in images[:8]]
    from_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
    from_pixels = loaded.signatures["serving_default"](images=tf.constant(images[:8].astype(np.float32)))
    np.testing.assert_allclose(from_bytes["probabilities"].numpy(), from_pixels["probabilities"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(from_bytes["classes"].numpy(), from_pixels["classes"].numpy())
    np.testing.assert_array_equal(from_bytes["class_names"].numpy(), from_pixels["class_names"].numpy())


def test_serving_bytes_jpeg_decodes_like_tensorflow(exports, images):
    loaded = exports["uint8"][1]
    encoded = [tf.io.encode_jpeg(image, quality=90).numpy() for image in images[:8]]
    from_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
    decoded = tf.stack([tf.io.decode_jpeg(data, channels=3) for data in encoded])
    from_pixels = loaded.signatures["serving_default"](images=decoded)
    np.testing.assert_allclose(from_bytes["probabilities"].numpy(), from_pixels["probabilities"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(from_bytes["classes"].numpy(), from_pixels["classes"].numpy())


def test_serving_bytes_resizes_and_converts_channels(exports, images):
    loaded = exports["float32"][1]
    large = tf.image.resize(images[:2], [40, 24], method="nearest").numpy().astype(np.uint8)
    gray = tf.image.rgb_to_grayscale(images[2:3]).numpy()
    encoded = [tf.io.encode_png(image).numpy() for image in (*large, *gray)]
    outputs = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
    resized = tf.image.resize(large, [16, 16], method="bilinear")
    gray_as_rgb = tf.cast(tf.image.grayscale_to_rgb(tf.constant(gray)), tf.float32)
    expected_pixels = tf.concat([resized, gray_as_rgb], 0)
    expected = loaded.signatures["serving_default"](images=expected_pixels)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected["probabilities"].numpy(), atol=1e-5)


def test_serving_bytes_rejects_non_images(exports, images):
    signature = exports["float32"][1].signatures["serving_bytes"]
    good = tf.io.encode_png(images[0]).numpy()
    for bad, message in (
        (b"this is not an image", r"image_bytes\[1\] is not a JPEG, PNG, GIF, BMP or WebP image"),
        (b"", r"image_bytes\[1\] is empty"),
        (b"GIF89a" + b"\0" * 32, r"image_bytes\[1\] is a corrupt or truncated GIF image"),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            signature(image_bytes=tf.constant([good, bad]))
    # A corrupt file with a valid signature fails in the decoder: the error names the image and the format.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[0\] is a corrupt or truncated PNG"):
        signature(image_bytes=tf.constant([good[:20]]))


def test_class_maps(class_names, keras_probabilities, model, images, exports):
    loaded = exports["uint8"][1]
    maps = loaded.signatures["class_maps"](images=tf.constant(images[:4]))["class_maps"].numpy()
    assert maps.shape == (4, 8, 8, len(class_names)) and maps.dtype == np.float32
    head_input = keras.Model(model.input, model.get_layer("head").input)
    expected = keras.ops.convert_to_numpy(head_input(images[:4].astype(np.float32) / 127.5 - 1.0))
    np.testing.assert_allclose(maps, expected, atol=1e-5)
    # The head averages the maps, then applies softmax.
    np.testing.assert_allclose(
        tf.nn.softmax(maps.mean(axis=(1, 2))).numpy(), keras_probabilities(model, images[:4]), atol=1e-5
    )


def test_grayscale_model(class_names, tiny_nin, keras_probabilities, tmp_path):
    gray_model = tiny_nin(channels=1)
    path = export_classifier_saved_model(gray_model, tmp_path, "gray", class_names, input_dtype="uint8")
    loaded = tf.saved_model.load(path)
    rgb = np.random.default_rng(2).integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    encoded = [tf.io.encode_png(image).numpy() for image in rgb]
    outputs = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
    # The graph converts RGB to gray in the decoder, as tf.io.decode_png(channels=1) does.
    gray = np.stack([tf.io.decode_png(data, channels=1).numpy() for data in encoded])
    np.testing.assert_allclose(outputs["probabilities"].numpy(), keras_probabilities(gray_model, gray), atol=1e-5)


def test_warmup_requests(class_names, images, exports):
    path, loaded = exports["uint8"]
    warmup = os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
    records = list(tf.data.TFRecordDataset(warmup).as_numpy_iterator())
    assert len(records) == 3
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        assert request.model_spec.name == "nin_uint8"
        assert request.model_spec.signature_name == "serving_default"
        assert list(request.inputs) == ["images"]
        batch = tf.make_ndarray(request.inputs["images"])
        assert batch.dtype == np.uint8 and batch.shape[1:] == (16, 16, 3)
        outputs = loaded.signatures["serving_default"](images=tf.constant(batch))
        assert outputs["probabilities"].shape == (batch.shape[0], len(class_names))


def test_no_warmup_file_by_default_but_class_names(class_names, model, tmp_path):
    path = export_classifier_saved_model(model, tmp_path, "nin", class_names)
    assert os.listdir(os.path.join(path, "assets.extra")) == ["class_names.txt"]
    with open(os.path.join(path, "assets.extra", "class_names.txt")) as f:
        assert f.read().splitlines() == list(class_names)


def test_version_numbering(class_names, model, tmp_path):
    (tmp_path / "nin" / "notes").mkdir(parents=True)
    first = export_classifier_saved_model(model, tmp_path, "nin", class_names)
    second = export_classifier_saved_model(model, tmp_path, "nin", class_names)
    assert first == os.path.join(tmp_path, "nin", "1") and second == os.path.join(tmp_path, "nin", "2")
    assert export_classifier_saved_model(model, tmp_path, "nin", class_names, version=7).endswith(os.sep + "7")
    assert export_classifier_saved_model(model, tmp_path, "nin", class_names).endswith(os.sep + "8")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        export_classifier_saved_model(model, tmp_path, "nin", class_names, version=2)
    assert sorted(os.listdir(tmp_path / "nin")) == ["1", "2", "7", "8", "notes"]


def _fail_after_saving(monkeypatch):
    original = tf.saved_model.save

    def save_then_fail(*args, **kwargs):
        original(*args, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(classifier_module.tf.saved_model, "save", save_then_fail)


def _fail_in_warmup(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(classifier_module, "write_classifier_warmup_requests", fail)


@pytest.mark.parametrize("break_export", [_fail_after_saving, _fail_in_warmup])
def test_failed_export_leaves_nothing(class_names, model, tmp_path, monkeypatch, break_export):
    export_classifier_saved_model(model, tmp_path, "nin", class_names)
    break_export(monkeypatch)
    with pytest.raises(RuntimeError, match="disk full"):
        export_classifier_saved_model(model, tmp_path, "nin", class_names, warmup_examples=1)
    assert os.listdir(tmp_path / "nin") == ["1"]


def test_bad_arguments(class_names, model, tmp_path):
    with pytest.raises(ValueError, match="3 classes but 2 class_names"):
        export_classifier_saved_model(model, tmp_path, "nin", class_names[:2])
    with pytest.raises(ValueError, match="input_dtype"):
        export_classifier_saved_model(model, tmp_path, "nin", class_names, input_dtype="float16")
    with pytest.raises(ValueError, match="version must be a positive integer"):
        export_classifier_saved_model(model, tmp_path, "nin", class_names, version=0)
    blocks = resolve_blocks("custom", [{"filters": [8], "pool": False, "dropout": False}])
    headless = build_nin(keras.Input((16, 16, 3)), blocks, num_classes=3, include_top=False, pooling="avg")
    with pytest.raises(ValueError, match="include_top=True"):
        export_classifier_saved_model(headless, tmp_path, "headless", ["a"] * 8)
    variable_size = build_nin(keras.Input((None, None, 3)), blocks, num_classes=3)
    with pytest.raises(ValueError, match="known sizes"):
        export_classifier_saved_model(variable_size, tmp_path, "variable", class_names)
    assert not any(name.isdigit() for d in tmp_path.iterdir() for name in os.listdir(d))


def test_loads_without_kzoo(keras_probabilities, run_without_kzoo, model, images, exports, tmp_path):
    path = exports["uint8"][0]
    np.save(tmp_path / "images.npy", images[:4])
    run_without_kzoo(
        f"""
        import numpy as np
        import tensorflow as tf

        loaded = tf.saved_model.load({str(path)!r})
        images = np.load({str(tmp_path / "images.npy")!r})
        outputs = loaded.signatures["serving_default"](images=tf.constant(images))
        png = [tf.io.encode_png(image).numpy() for image in images]
        from_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant(png))
        np.save({str(tmp_path / "out.npy")!r}, np.stack([outputs["probabilities"], from_bytes["probabilities"]]))
        """,
        tmp_path,
    )
    out = np.load(tmp_path / "out.npy")
    expected = keras_probabilities(model, images[:4])
    np.testing.assert_allclose(out[0], expected, atol=1e-5)
    np.testing.assert_allclose(out[1], expected, atol=1e-5)


def test_saved_model_cli_lists_signatures(exports):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed next to this Python")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [cli, "show", "--dir", exports["uint8"][0], "--all"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for expected in (
        "signature_def['serving_default']",
        "signature_def['serving_bytes']",
        "signature_def['class_maps']",
        "inputs['images']",
        "inputs['image_bytes']",
        "outputs['probabilities']",
        "outputs['classes']",
        "outputs['class_names']",
        "outputs['class_maps']",
        "tag-set: 'serve'",
    ):
        assert expected in result.stdout, expected


def test_export_is_readable_by_others(class_names, model, tmp_path, umask_022, file_modes):
    # atomic_directory's temporary directory is 0700 and its files 0600 by default: TF Serving running as another
    # user could not read them; the export makes directories 0755 and files 0644
    path = export_classifier_saved_model(model, tmp_path, "nin", class_names, warmup_examples=1)
    modes = file_modes(path)
    assert {
        "variables",
        os.path.join("assets.extra", "tf_serving_warmup_requests"),
        os.path.join("assets.extra", "class_names.txt"),
        "saved_model.pb",
    } <= set(modes)
    for name, mode in modes.items():
        expected = 0o755 if os.path.isdir(os.path.join(path, name)) else 0o644
        assert mode == expected, (name, oct(mode))
    assert os.stat(os.path.join(tmp_path, "nin")).st_mode & 0o777 == 0o755


# -- TFLite ------------------------------------------------------------------------------------------------------------

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
def test_tflite_builtin_ops_only(converted, mode):
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
def test_tflite_matches_keras(keras_probabilities, tflite_model, images, converted, mode):
    atol, min_agreement = TOLERANCES[mode]
    expected = keras_probabilities(tflite_model, images)
    probabilities = run_classifier_tflite(converted[mode], images)
    assert probabilities.shape == (32, 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, expected, atol=atol)
    assert np.mean(probabilities.argmax(axis=1) == expected.argmax(axis=1)) >= min_agreement


def test_tflite_quantized_weights(converted):
    def weight_dtypes(path):
        interpreter = Interpreter(model_path=path)
        return {d["dtype"] for d in interpreter.get_tensor_details() if "convolution" in d["name"]}

    assert weight_dtypes(converted["none"]) == {np.float32}
    assert np.int8 in weight_dtypes(converted["dynamic"])
    assert np.int8 in weight_dtypes(converted["int8"])
    sizes = {mode: os.path.getsize(path) for mode, path in converted.items()}
    assert sizes["float16"] < sizes["none"] and sizes["dynamic"] < sizes["none"] and sizes["int8"] < sizes["none"]


def test_tflite_batching_and_dtypes(converted, images):
    path = converted["int8"]
    one_by_one = run_classifier_tflite(path, images, batch_size=1)
    np.testing.assert_allclose(run_classifier_tflite(path, images, batch_size=7), one_by_one, atol=1e-6)
    np.testing.assert_allclose(
        run_classifier_tflite(path, images.astype(np.float64), batch_size=64), one_by_one, atol=1e-6
    )
    assert run_classifier_tflite(path, images[:0]).shape == (0, 3)


def test_tflite_run_errors(converted, images, tmp_path):
    with pytest.raises(ValueError, match=r"images must be \[batch, 16, 16, 3\], got height 8"):
        run_classifier_tflite(converted["none"], images[:, :8])
    with pytest.raises(ValueError, match=r"images must be a batch of images \[batch, 16, 16, 3\] \(rank 4\)"):
        run_classifier_tflite(converted["none"], images[0])
    with pytest.raises(FileNotFoundError, match="no TFLite model"):
        run_classifier_tflite(tmp_path / "missing.tflite", images)


def test_tflite_convert_errors(model, images, tmp_path):
    with pytest.raises(ValueError, match="quantize must be one of"):
        convert_classifier_tflite(model, tmp_path / "m.tflite", "int4")
    with pytest.raises(ValueError, match="needs representative_images"):
        convert_classifier_tflite(model, tmp_path / "m.tflite", "int8")
    with pytest.raises(ValueError, match=r"representative_images must have shape \[N, 16, 16, 3\]"):
        convert_classifier_tflite(model, tmp_path / "m.tflite", "int8", representative_images=images[:, :8])
    assert os.listdir(tmp_path) == []


def test_tflite_atomic_write(model, tmp_path, monkeypatch):
    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(files_module.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        convert_classifier_tflite(model, tmp_path / "m.tflite")
    assert os.listdir(tmp_path) == []


def test_tflite_file_is_readable_by_others(model, tmp_path, umask_022):
    path = convert_classifier_tflite(model, tmp_path / "m.tflite")
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["m.tflite"]
