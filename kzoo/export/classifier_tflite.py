"""TFLite (LiteRT) conversion of NIN classifiers, builtin ops only (run the files with
:func:`kzoo.export.litert.run_tflite_classifier`).

The ``.tflite`` model takes uint8 pixels ``images`` ``[1, H, W, C]`` (the normalization to ``[-1, 1]`` is inside
the graph; the input's dtype and fixed shape are the file's own contract, see :mod:`kzoo.export.tflite`) and returns
``probabilities`` ``[1, K]`` float32, whatever the quantization, so one runner serves every variant. Image decoding
stays outside the graph. The conversion is
:func:`kzoo.export.tflite.convert_function_to_tflite`'s (builtin ops only; for ``"int8"`` every op gets an int8
kernel: NIN has no op without one).
"""

from __future__ import annotations

import os
from typing import cast

import keras
import numpy as np
import tensorflow as tf

from kzoo.export.tflite import QUANTIZE_MODES, check_output_file, check_quantize, convert_image_function_to_tflite
from kzoo.ops.images import normalize_images
from kzoo.utils.files import write_bytes

__all__ = ["QUANTIZE_MODES", "convert_classifier_tflite"]


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
