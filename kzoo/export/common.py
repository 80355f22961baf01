"""Pieces shared by kzoo's exporters (NIN and Mask R-CNN).

- TF Serving layout: ``<base_dir>/<model_name>/<version>/``, versions numbered 1, 2, ..., each written into a
  temporary directory and renamed into place (:func:`kzoo.utils.files.atomic_directory`: ``0755`` directories,
  ``0644`` files), so a failed export leaves nothing behind.
- TF Serving warmup files: a TFRecord of ``PredictionLog`` records (``tensorflow-serving-api`` protos).
- Encoded-image checks for the ``serving_bytes`` signatures.
- The Mask R-CNN outputs every export keeps, and the check of a fixed input size.

The TFLite converter and its quantization settings are :mod:`kzoo.export.tflite`'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from kzoo.utils.files import atomic_path, make_directory, write_text

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
CLASS_NAMES_FILE = os.path.join("assets.extra", "class_names.txt")  # one name per line, in class order
MASK_RCNN_OUTPUT_KEYS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections",
                         "detection_masks")  # fmt: skip
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- TF Serving layout --------------------------------------------------------------------------------------------


def check_model_name(model_name: str) -> str:
    """``model_name`` if it is a plain file name (no folder part, not ``.``/``..``, no NUL): exports named after it
    stay inside their output folder. ValueError otherwise."""
    name = str(model_name)
    if not name or name in (".", "..") or "\0" in name or os.path.basename(name) != name or "/" in name or (
            os.altsep and os.altsep in name):
        raise ValueError(f"model name must be a plain name without folders, got {model_name!r}")
    return name


def new_version_dir(base_dir: str | os.PathLike, model_name: str, version: int | None = None) -> str:
    """The version directory an export will create: ``base_dir/model_name/<version>`` (not created yet).

    ``base_dir/model_name`` is created if missing. ``version=None`` picks one more than the largest numeric
    version directory there, or 1.

    Raises:
        ValueError: ``model_name`` is not a plain directory name, or ``version`` is not a positive int.
        FileExistsError: the version directory exists already.
    """
    check_model_name(model_name)
    model_dir = os.path.join(os.fspath(base_dir), model_name)
    if version is not None and (isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1):
        raise ValueError(f"version must be a positive integer, got {version!r}")
    make_directory(model_dir)
    if version is None:
        version = next_version(model_dir)
    version_dir = os.path.join(model_dir, str(int(version)))
    if os.path.exists(version_dir):
        raise FileExistsError(f"version directory {version_dir} exists already; refusing to overwrite it")
    return version_dir


def latest_version_dir(model_dir: str | os.PathLike) -> str | None:
    """The highest numeric version folder of a TF Serving model folder, or ``None``."""
    model_dir = os.fspath(model_dir)
    if not os.path.isdir(model_dir):
        return None
    version = next_version(model_dir) - 1
    return os.path.join(model_dir, str(version)) if version else None


def next_version(model_dir: str) -> int:
    """One more than the largest numeric subdirectory of ``model_dir``, or 1."""
    versions = [
        int(name) for name in os.listdir(model_dir)
        if name.isdigit() and os.path.isdir(os.path.join(model_dir, name))
    ]  # fmt: skip
    return max(versions, default=0) + 1


def write_class_names(export_dir: str, class_names: Sequence[str]) -> None:
    """Write ``assets.extra/class_names.txt`` (one name per line, in class order) inside ``export_dir``."""
    write_text(os.path.join(export_dir, CLASS_NAMES_FILE), "\n".join(class_names) + "\n")


def write_prediction_logs(
    path: str | os.PathLike,
    model_name: str,
    requests: Iterable[tuple[str, Mapping[str, np.ndarray]]],
) -> int:
    """Write a TF Serving warmup file: one ``PredictionLog`` (a ``PredictRequest``) per request.

    Args:
        path: the file to write (atomically, through :func:`kzoo.utils.files.atomic_path`; parent directories are
            created).
        model_name: ``model_spec.name`` of the requests.
        requests: ``(signature_name, {input_name: array})`` pairs.

    Returns:
        The number of records written.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    count = 0
    with atomic_path(path) as temp_path, tf.io.TFRecordWriter(temp_path) as writer:
        for signature_name, inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name),
            )
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
            count += 1
    return count


def unless_empty(fn: Callable[[tf.Tensor], object], batch: tf.Tensor, empty: Callable[[], object]) -> object:
    """``fn(batch)``, or ``empty()`` (the outputs of an empty batch) when ``batch`` has 0 items: TF's oneDNN
    convolution fails on a batch of 0 images with a misleading "input depth must be evenly divisible" error."""
    return tf.cond(tf.shape(batch)[0] > 0, lambda: fn(batch), empty)


# -- encoded images -----------------------------------------------------------------------------------------------


def is_jpeg_or_png(image_bytes: tf.Tensor) -> tf.Tensor:
    """bool tensor of ``image_bytes``' shape: each string starts like a JPEG or a PNG file."""
    is_png = tf.equal(tf.strings.substr(image_bytes, 0, len(_PNG_SIGNATURE)), _PNG_SIGNATURE)
    return tf.logical_or(tf.io.is_jpeg(image_bytes), is_png)


def check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` as positive ints, or a ValueError naming ``image_size``."""
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return height, width
