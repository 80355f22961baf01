"""NIN classifiers: SavedModel export in the TF Serving layout, TFLite (LiteRT) conversion, and running the
``.tflite`` files.

SavedModel (:func:`export_classifier_saved_model`, tag ``serve``) in ``<base_dir>/<model_name>/<version>/``
(:mod:`kzoo.export.serving`), with three signatures, all taking raw pixels (``0..255``) and normalizing inside the
graph, so it runs with TensorFlow alone (no kzoo import). The input contract (:mod:`kzoo.ops.image_checks`) is
checked inside: float ``images`` with NaN or inf, values outside ``[0, 255]`` or a batch that looks like ``[0, 1]``
are an error status (``InvalidArgumentError``) naming the problem, never a silent result. A ``uint8`` export takes
uint8 tensors only: a client that converts floats to uint8 itself (TF Serving's REST API does) wraps them before
the model sees them, so export ``float32`` (the default) to have every value checked.

- ``serving_default``: ``images`` ``[B, H, W, C]`` float32 or uint8 ->
  ``probabilities`` ``[B, K]`` float32, ``classes`` ``[B]`` int64 (top class),
  ``class_names`` ``[B]`` string (name of the top class).
- ``serving_bytes``: ``image_bytes`` ``[B]`` string, each an encoded JPEG, PNG, GIF, BMP or WebP (REST clients
  send ``{"b64": "..."}``), decoded to ``C`` channels (:func:`kzoo.export.serving.decode_image`: an image over
  ``max_image_pixels`` is refused before decoding; every error names ``image_bytes[i]`` and the problem, corrupt or
  truncated data included; an input of another rank is refused, saying a 1-D string tensor is needed) and resized
  (bilinear) to ``H x W`` -> same outputs.
- ``class_maps``: ``images`` like ``serving_default`` -> ``class_maps`` ``[B, h, w, K]`` float32, the
  class confidence maps that NIN's global-average-pooling head averages (for class activation maps).

TFLite (:func:`convert_classifier_tflite`, builtin ops only; run the files with :func:`run_classifier_tflite`): the
``.tflite`` model takes uint8 pixels ``images`` ``[1, H, W, C]`` (the normalization to ``[-1, 1]`` is inside the
graph; the input's dtype and fixed shape are the file's own contract, see :mod:`kzoo.export.tflite`) and returns
``probabilities`` ``[1, K]`` float32, whatever the quantization, so one runner serves every variant. Image decoding
stays outside the graph. The conversion is :func:`kzoo.export.tflite.convert_function_to_tflite`'s (builtin ops
only; for ``"int8"`` every op gets an int8 kernel: NIN has no op without one).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import cast

import keras
import numpy as np
import tensorflow as tf

from kzoo.export.serving import (
    DEFAULT_MAX_IMAGE_PIXELS,
    WARMUP_FILE,
    check_image_bytes,
    check_max_image_pixels,
    decode_image,
    new_version_dir,
    probe_images,
    unless_empty,
    write_class_names,
    write_prediction_logs,
)
from kzoo.export.tflite import (
    FIXED_SIZE_HINT,
    check_output_file,
    check_quantize,
    convert_image_function_to_tflite,
    load_interpreter,
)
from kzoo.models.nin import class_map_model
from kzoo.ops.image_checks import assert_image_shape, assert_image_values, check_images_np
from kzoo.ops.images import normalize_images
from kzoo.utils.files import atomic_directory, write_bytes

__all__ = [
    "INPUT_DTYPES",
    "convert_classifier_tflite",
    "export_classifier_saved_model",
    "run_classifier_tflite",
    "write_classifier_warmup_requests",
]

INPUT_DTYPES = ("float32", "uint8")

WARMUP_BATCH_SIZE = 2


# -- SavedModel --------------------------------------------------------------------------------------------------------


def export_classifier_saved_model(
    model: keras.Model,
    base_dir: str | os.PathLike,
    model_name: str,
    class_names: Sequence[str],
    version: int | None = None,
    input_dtype: str = "float32",
    warmup_examples: int = 0,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> str:
    """Export a NIN classifier as a SavedModel in the TF Serving layout.

    Everything is written to a temporary directory inside ``base_dir/model_name`` and renamed into
    place at the end, so a failed export leaves no version directory behind.

    Args:
        model: a Keras classifier taking float32 images ``[B, H, W, C]`` in ``[-1, 1]`` and returning
            probabilities ``[B, K]`` float32; it must have NIN's layer named ``"head"``
            (``build_nin(..., include_top=True)``). ``H, W, C`` must be known.
        base_dir: the TF Serving model base directory; created if missing.
        model_name: the model's directory name inside ``base_dir``.
        class_names: ``K`` class names, in the model's class order.
        version: the version number (a positive int); default: one more than the largest existing
            numeric version directory, or 1.
        input_dtype: dtype of the ``images`` inputs: ``"float32"`` or ``"uint8"`` (pixels ``0..255``
            either way).
        warmup_examples: number of ``PredictionLog`` records (each a ``serving_default`` request with
            ``WARMUP_BATCH_SIZE`` random images) written to ``assets.extra/tf_serving_warmup_requests``.
            The class names are always written to ``assets.extra/class_names.txt`` (one per line).
        max_image_pixels: ``serving_bytes`` refuses an image whose height x width (read from its header before
            decoding; WebP after) exceeds this, with an error naming its index, size and the cap.

    Returns:
        The version directory, ``base_dir/model_name/<version>``.

    Raises:
        ValueError: bad arguments (unknown ``input_dtype``, class count mismatch, unknown input
            shape, no ``"head"`` layer, bad version or model name, bad ``max_image_pixels``).
        FileExistsError: the version directory exists already.
    """
    height, width, channels, num_classes = _check_classifier(model)
    class_names = [str(name) for name in class_names]
    if len(class_names) != num_classes:
        raise ValueError(f"the model has {num_classes} classes but {len(class_names)} class_names were given")
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
    if int(warmup_examples) < 0:
        raise ValueError(f"warmup_examples must be >= 0, got {warmup_examples}")
    max_image_pixels = check_max_image_pixels(max_image_pixels)
    version_dir = new_version_dir(base_dir, model_name, version)

    with atomic_directory(version_dir) as temp_dir:
        module = _serving_module(model, (height, width, channels), class_names, input_dtype, max_image_pixels)
        signatures = {name: getattr(module, name) for name in ("serving_default", "serving_bytes", "class_maps")}
        tf.saved_model.save(module, temp_dir, signatures=signatures)
        write_class_names(temp_dir, class_names)
        if warmup_examples:
            write_classifier_warmup_requests(
                os.path.join(temp_dir, WARMUP_FILE),
                model_name,
                (height, width, channels),
                input_dtype,
                int(warmup_examples),
            )
    return version_dir


def write_classifier_warmup_requests(
    path: str | os.PathLike,
    model_name: str,
    image_shape: tuple[int, int, int],
    input_dtype: str,
    num_examples: int,
    batch_size: int = WARMUP_BATCH_SIZE,
    seed: int = 0,
) -> None:
    """Write a TF Serving warmup file: a TFRecord of ``PredictionLog`` records.

    Each record is a ``PredictRequest`` for the ``serving_default`` signature of ``model_name`` whose
    input ``images`` is a batch of random pixels, ``[batch_size, H, W, C]`` of ``input_dtype``
    (values in ``0..255``).

    Args:
        path: the file to write (parent directories are created).
        model_name: ``model_spec.name`` of the requests.
        image_shape: ``(H, W, C)``.
        input_dtype: ``"float32"`` or ``"uint8"``.
        num_examples: number of records.
        batch_size: images per request.
        seed: seed of the random pixels.
    """
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
    rng = np.random.default_rng(seed)
    requests = (
        ("serving_default", {"images": rng.integers(0, 256, size=(batch_size, *image_shape)).astype(input_dtype)})
        for _ in range(num_examples)
    )
    write_prediction_logs(path, model_name, requests)


def _check_classifier(model: keras.Model) -> tuple[int, int, int, int]:
    """``(H, W, C, K)`` of a classifier, or a ValueError naming what is wrong."""
    input_shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if input_shape is None or len(input_shape) != 4 or any(d is None for d in input_shape[1:]):
        raise ValueError(
            f"the model must have one image input (batch, height, width, channels) with known sizes, "
            f"got input shape {model.input_shape}"
        )
    output_shape = tuple(model.output_shape) if not isinstance(model.output_shape, list) else None
    if output_shape is None or len(output_shape) != 2 or output_shape[1] is None:
        raise ValueError(f"the model must output probabilities (batch, classes), got output shape {model.output_shape}")
    height, width, channels = (int(d) for d in input_shape[1:])
    return height, width, channels, int(output_shape[1])


def _serving_module(
    model: keras.Model,
    image_shape: tuple[int, int, int],
    class_names: list[str],
    input_dtype: str,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tf.Module:
    """A ``tf.Module`` with the model's variables and the ``serving_default``, ``serving_bytes`` and
    ``class_maps`` functions.

    Not ``keras.export.ExportArchive``: it saves every variable twice (as the Keras variables it tracks and as the
    TF variables the endpoints use), doubling the SavedModel.
    """
    height, width, channels = image_shape
    maps_model = class_map_model(model)  # the same layers, so the same variables
    names = tf.constant(class_names, dtype=tf.string)

    module = tf.Module()
    module.model_variables = [variable.value for variable in model.variables]  # the tf.Variables the graph reads

    num_classes = len(class_names)
    maps_shape = tuple(int(d) for d in maps_model.output_shape[1][1:])

    def zeros(*shape: int):
        return lambda: tf.zeros([0, *shape], tf.float32)

    def probabilities_of(pixels: tf.Tensor) -> tf.Tensor:
        return tf.cast(model(normalize_images(pixels), training=False), tf.float32)

    def maps_of(pixels: tf.Tensor) -> tf.Tensor:
        return tf.cast(maps_model(normalize_images(pixels), training=False)[1], tf.float32)

    def classify(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = unless_empty(probabilities_of, pixels, zeros(num_classes))
        classes = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {"probabilities": probabilities, "classes": classes, "class_names": tf.gather(names, classes)}

    def decode(args: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> tf.Tensor:
        data, index, decodable = args
        image = decode_image(data, index, channels=channels, max_pixels=max_pixels, decodable=decodable)
        return tf.image.resize(image, [height, width], method="bilinear")

    def checked(images: tf.Tensor) -> tf.Tensor:
        images = assert_image_shape(images, channels=channels, height=height, width=width)
        return assert_image_values(images)

    def serving_default(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return classify(checked(images))

    def serving_bytes(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        image_bytes = check_image_bytes(image_bytes)
        decodable, _ = probe_images(image_bytes, max_pixels)
        pixels = tf.map_fn(
            decode,
            (image_bytes, tf.range(tf.size(image_bytes)), decodable),
            fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32),
        )
        return classify(pixels)

    def class_maps(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"class_maps": unless_empty(maps_of, checked(images), zeros(*maps_shape))}

    images_spec = tf.TensorSpec([None, height, width, channels], tf.as_dtype(input_dtype), name="images")
    bytes_spec = tf.TensorSpec(None, tf.string, name="image_bytes")  # any rank: others are refused by name
    module.serving_default = tf.function(serving_default, input_signature=[images_spec], autograph=False)
    module.serving_bytes = tf.function(serving_bytes, input_signature=[bytes_spec], autograph=False)
    module.class_maps = tf.function(class_maps, input_signature=[images_spec], autograph=False)
    return module


# -- TFLite ------------------------------------------------------------------------------------------------------------


def convert_classifier_tflite(
    model: keras.Model,
    path: str | os.PathLike,
    quantize: str = "none",
    representative_images: np.ndarray | None = None,
    overwrite: bool = True,
) -> str:
    """Convert a classifier to a builtin-ops-only ``.tflite`` file.

    Args:
        model: a Keras classifier taking float32 images ``[B, H, W, C]`` in ``[-1, 1]`` and returning
            probabilities ``[B, K]``; ``H, W, C`` must be known.
        path: the ``.tflite`` file to write (atomically, ``0644``: :func:`kzoo.utils.files.write_bytes`).
        quantize: ``"none"`` (float32 weights), ``"float16"`` (float16 weights),
            ``"dynamic"`` (int8 weights, float activations) or ``"int8"`` (full-integer kernels,
            calibrated on ``representative_images``; uint8 input and float32 output are kept).
        representative_images: uint8 (or float) pixels ``[N, H, W, C]`` in ``0..255``; required
            for ``"int8"``, ignored otherwise.
        overwrite: replace an existing file at ``path`` (atomically); ``False``: refuse it (FileExistsError),
            before any conversion work (``kzoo export`` passes ``False`` unless ``--overwrite``).

    Returns:
        ``path`` as a string. The model's input is uint8 pixels ``images`` ``[1, H, W, C]`` (a fixed shape: another
        one fails at ``allocate_tensors`` or ``invoke``), its output ``probabilities`` ``[1, K]`` float32 (signature
        ``serving_default``).

    Raises:
        ValueError: unknown ``quantize``, missing or badly shaped ``representative_images`` for
            ``"int8"``, or a model without a fully known image input shape.
    """
    check_quantize(quantize)
    check_output_file(path, overwrite)
    image_shape = _image_shape(model)

    def classify(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": tf.cast(model(normalize_images(pixels), training=False), tf.float32)}

    flatbuffer = convert_image_function_to_tflite(classify, image_shape, quantize, representative_images, "all")
    return write_bytes(check_output_file(path, overwrite), flatbuffer)


def _image_shape(model: keras.Model) -> tuple[int, int, int]:
    """``(H, W, C)`` of a single-input image model, or a ValueError."""
    shape = model.input_shape
    if isinstance(shape, list) or len(shape) != 4 or any(d is None for d in shape[1:]):
        raise ValueError(
            f"the model must have one image input (batch, height, width, channels) with known sizes, got {shape}"
        )
    return cast(tuple[int, int, int], tuple(int(d) for d in shape[1:]))  # 3 sides: the rank is 4


def run_classifier_tflite(path: str | os.PathLike, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Run a ``.tflite`` classifier written by ``convert_classifier_tflite`` with LiteRT.

    Args:
        path: the ``.tflite`` file.
        images: uint8 or float pixels ``[N, H, W, C]`` in ``0..255``, of the file's input size (the input
            contract of :mod:`kzoo.ops.image_checks`; ``N = 0`` gives ``[0, K]``).
        batch_size: images per interpreter call, for files whose batch size is not fixed (``-1`` in the input's
            ``shape_signature``; the input tensor is resized to it); kzoo's files have a fixed batch of 1, and if
            the model refuses the resize, images run one at a time.

    Returns:
        probabilities ``[N, K]`` float32.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``images`` break the input contract (rank, dtype, values) or do not match the model's
            ``[H, W, C]`` (both sizes named), or the model's input is neither uint8 (kzoo's files; float pixels are
            rounded) nor float32 (older files).
    """
    interpreter = load_interpreter(path)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    input_detail = interpreter.get_input_details()[0]
    expected = tuple(int(d) for d in input_detail["shape"][1:])
    height, width, channels = expected
    images = check_images_np(
        images, channels=channels, height=height, width=width, allow_empty=True, hint=FIXED_SIZE_HINT
    )
    dtype = np.dtype(input_detail["dtype"])
    if dtype not in (np.uint8, np.float32):
        raise ValueError(f"the TFLite model's input must be uint8 or float32 pixels, got {dtype}")
    if dtype == np.uint8 and images.dtype != np.uint8:
        images = np.clip(np.round(images), 0, 255)
    images = images.astype(dtype)

    batch_size = min(batch_size, max(len(images), 1))
    signature = input_detail.get("shape_signature")
    if signature is not None and len(signature) and signature[0] != -1:
        batch_size = 1  # a fixed batch (kzoo's files): resizing it fails by design
    try:
        if batch_size != 1:
            interpreter.resize_tensor_input(input_detail["index"], [batch_size, *expected])
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError):
        batch_size = 1
        interpreter = load_interpreter(path)
        interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_detail = interpreter.get_output_details()[0]

    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        count = len(batch)
        if count < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - count, *expected), dtype)])
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_tensor(output_detail["index"]), dtype=np.float32)[:count])
    if not outputs:
        return np.zeros((0, int(output_detail["shape"][-1])), np.float32)
    return np.concatenate(outputs)
