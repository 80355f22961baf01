"""TFLite (LiteRT) conversion of Mask R-CNN, builtin ops only (run the files with :mod:`kzoo.export.litert`).

The ``.tflite`` model has a fixed input: ``images`` uint8 ``[1, H, W, 3]`` RGB pixels, as the SavedModel's
``serving_default`` takes (a ``shape_signature`` without ``-1``; an interpreter resized to another shape fails at
``allocate_tensors`` or ``invoke``; floats cannot be set: see :mod:`kzoo.export.tflite` for this contract and what
the file cannot check, e.g. RGB vs BGR, or a photograph squeezed instead of letterboxed), and the signature
``serving_default`` with the outputs of :class:`kzoo.models.mask_rcnn.MaskRCNNModel`:
``detection_boxes`` float32 ``[1, D, 4]`` (``[ymin, xmin, ymax, xmax]`` in input pixels), ``detection_scores``
float32 ``[1, D]``, ``detection_classes`` int32 ``[1, D]``, ``num_detections`` int32 ``[1]``,
``detection_masks`` float32 ``[1, D, 28, 28]``. Preprocessing (resize, normalization, padding), the RPN,
RoIAlign, NMS and the mask selection are all inside the graph; image decoding and mask pasting are not.

Only TFLite builtin ops are allowed (no Select TF ops, which device runtimes usually lack), so conversion fails
on an unsupported op instead of silently producing a Flex model. For that the model is rebuilt with
``roi_method="gather"`` (``CropAndResize`` is not a builtin; the gather kernel has the same weights and agrees
with it) and ``nms_method="per_image"`` (TFLite's builtin NMS op instead of ``WHILE`` loops; same results, and
full-integer quantization needs it, see :mod:`kzoo.ops.nms`), and the weights are copied.

Quantization (``quantize``): ``"none"`` (float32), ``"float16"`` (float16 weights), ``"dynamic"`` (int8 weights,
float activations), ``"int8"``: the convolutions and fully connected layers (:data:`INT8_OPS`, nearly all of the
compute) run with int8 weights and activations calibrated on ``representative_images``; every other op stays
float32, so the detections stay close to the Keras model's. Letting the converter quantize the whole graph
instead makes the post-processing's box coordinates, class offsets and scores int8 and the detections unusable
(the measured agreement of both: benchmarks/README.md).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from kzoo.export.common import MASK_RCNN_OUTPUT_KEYS, check_image_size
from kzoo.export.tflite import (
    check_output_file,
    check_quantize,
    check_representative_images,
    convert_image_function_to_tflite,
)
from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.models.mask_rcnn_config import MaskRCNNConfig
from kzoo.utils.files import write_bytes

__all__ = ["INPUT_DTYPES", "INT8_OPS", "convert_mask_rcnn_tflite", "tflite_ready_model"]

#: the input dtype of kzoo's ``.tflite`` files (float32 inputs, which let ``[0, 1]`` floats or NaN in unchecked,
#: are no longer written)
INPUT_DTYPES = ("uint8",)
#: the ops that get int8 kernels in the ``"int8"`` variant: the network's convolutions and matrix products
INT8_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def convert_mask_rcnn_tflite(
    model: MaskRCNNModel | MaskRCNNConfig,
    path: str | os.PathLike,
    image_size: tuple[int, int],
    quantize: str = "none",
    representative_images: np.ndarray | None = None,
    weights: str | os.PathLike | None = None,
    input_dtype: str = "uint8",
    overwrite: bool = True,
) -> str:
    """Convert a Mask R-CNN to a builtin-ops-only ``.tflite`` file with a fixed input size.

    Args:
        model: a built :class:`MaskRCNNModel` (its weights are used), or a :class:`MaskRCNNConfig` (random
            weights unless ``weights`` is given). Rebuilt with ``roi_method="gather"`` and ``nms_method="per_image"``
            when it uses other kernels (same weights, same results).
        path: the ``.tflite`` file to write (atomically: a temporary file, then a rename).
        image_size: ``(H, W)`` of the input images. The model resizes them inside as its config says
            (``min_size``/``max_size``); ``min_size == max_size == max(H, W)`` avoids a resize for square inputs.
        quantize: ``"none"``, ``"float16"``, ``"dynamic"`` or ``"int8"`` (see the module docstring).
        representative_images: uint8 (or float) pixels ``[N, H, W, 3]`` in ``0..255`` for the ``"int8"``
            calibration (a few dozen typical images); ignored otherwise.
        weights: a ``.weights.h5`` file to load when ``model`` is a config.
        input_dtype: dtype of the input pixels: ``"uint8"`` only (the argument is kept for older callers).
        overwrite: replace an existing file at ``path`` (atomically); ``False``: refuse it (FileExistsError),
            before any conversion work (``kzoo export`` passes ``False`` unless ``--overwrite``).

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: unknown ``quantize`` or ``input_dtype``, a bad ``image_size``, missing or badly shaped
            ``representative_images`` for ``"int8"``, ``weights`` with a model, or an op that is not a TFLite
            builtin (the message names it).
        FileNotFoundError: a missing ``weights`` file.
        RuntimeError: ``"int8"`` on a TensorFlow release without the quantizer entry point it uses.
    """
    check_quantize(quantize)
    check_output_file(path, overwrite)
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(
            f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}: kzoo's .tflite files take uint8 pixels, "
            "so a caller of the interpreter cannot pass floats in [0, 1] or NaN"
        )
    height, width = check_image_size(image_size)
    if quantize == "int8":
        representative_images = check_representative_images(representative_images, (height, width, 3))
    ready = tflite_ready_model(model, (height, width), weights)

    def detect(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        out = ready(pixels, training=False)
        return {key: out[key] for key in MASK_RCNN_OUTPUT_KEYS}

    flatbuffer = convert_image_function_to_tflite(detect, (height, width, 3), quantize, representative_images, INT8_OPS)
    return write_bytes(check_output_file(path, overwrite), flatbuffer)


def tflite_ready_model(
    model: MaskRCNNModel | MaskRCNNConfig,
    image_size: tuple[int, int],
    weights: str | os.PathLike | None = None,
) -> MaskRCNNModel:
    """``model`` itself when it already uses the TFLite kernels (``roi_method="gather"``, ``nms_method="per_image"``),
    else a model rebuilt with them from its config and given its weights (or ``weights``, or random weights for a
    config). Built on an input of ``image_size``."""
    if isinstance(model, MaskRCNNModel):
        if weights is not None:
            raise ValueError("weights= is for a MaskRCNNConfig; a MaskRCNNModel brings its own weights")
        config = model.config
    elif isinstance(model, MaskRCNNConfig):
        config = model
    else:
        raise TypeError(f"model must be a MaskRCNNModel or a MaskRCNNConfig, got {type(model).__name__}")
    wanted = dataclasses.replace(config, roi_method="gather", nms_method="per_image")
    if isinstance(model, MaskRCNNModel) and wanted == config:
        return model
    ready = MaskRCNNModel(wanted, name=model.name if isinstance(model, MaskRCNNModel) else "mask_rcnn")
    ready(np.zeros((1, *image_size, 3), np.uint8))  # build every weight
    if isinstance(model, MaskRCNNModel):
        values = model.get_weights()
        if len(values) != len(ready.weights):
            raise ValueError(f"cannot copy {len(values)} weights into the rebuilt model's {len(ready.weights)}")
        ready.set_weights(values)
    elif weights is not None:
        from kzoo.models.weight_files import load_weights_file

        load_weights_file(ready, weights)  # FileNotFoundError, or one line naming the first layer that differs
    return ready
