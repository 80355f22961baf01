"""Running kzoo's ``.tflite`` files with LiteRT (``ai_edge_litert``): NIN classifiers and Mask R-CNN, plus the
letterbox that fits photographs of any size into a Mask R-CNN file's fixed input.

The files come from :func:`kzoo.export.convert_classifier_tflite` and :func:`kzoo.export.convert_mask_rcnn_tflite`.
Resizing and the inverse box mapping are :mod:`kzoo.ops.resize`'s (the model's own rule, floor rounding).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from kzoo.export.common import MASK_RCNN_OUTPUT_KEYS, check_image_size
from kzoo.ops import resize
from kzoo.ops.image_checks import check_images_np

_FIXED_SIZE_HINT = " (the .tflite file's fixed input size: resize the images, or letterbox photographs, first)"

__all__ = ["detect_photos_tflite", "letterbox", "run_mask_rcnn_tflite", "run_tflite_classifier"]


def _interpreter(path: str | os.PathLike, **kwargs):
    from ai_edge_litert.interpreter import Interpreter

    from kzoo.utils.native_output import native_stderr_silenced

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no TFLite model at {path}")
    with native_stderr_silenced():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
        interpreter = Interpreter(model_path=path, **kwargs)
        interpreter.allocate_tensors()
    return interpreter


# -- NIN classifiers ----------------------------------------------------------------------------------------------


def run_tflite_classifier(path: str | os.PathLike, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
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
    interpreter = _interpreter(path)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    input_detail = interpreter.get_input_details()[0]
    expected = tuple(int(d) for d in input_detail["shape"][1:])
    height, width, channels = expected
    images = check_images_np(
        images, channels=channels, height=height, width=width, allow_empty=True, hint=_FIXED_SIZE_HINT
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
        interpreter = _interpreter(path)
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


# -- Mask R-CNN ---------------------------------------------------------------------------------------------------


def run_mask_rcnn_tflite(
    path: str | os.PathLike, images: np.ndarray, num_threads: int | None = None
) -> dict[str, np.ndarray]:
    """Run a ``.tflite`` Mask R-CNN written by ``convert_mask_rcnn_tflite`` with LiteRT, one image at a time.

    Args:
        path: the ``.tflite`` file.
        images: pixels ``[N, H, W, 3]`` (or one image ``[H, W, 3]``) in ``0..255``, uint8 or float (the input
            contract of :mod:`kzoo.ops.image_checks`), of the model's input size (other sizes are refused: see
            :func:`detect_photos_tflite`); cast (rounded, for a uint8 input) to the model's input dtype.
        num_threads: LiteRT CPU threads (``None``: its default).

    Returns:
        ``detection_boxes`` float32 ``[N, D, 4]``, ``detection_scores`` float32 ``[N, D]``,
        ``detection_classes`` int32 ``[N, D]``, ``num_detections`` int32 ``[N]``, ``detection_masks`` float32
        ``[N, D, 28, 28]``. Outputs are found by signature name, or (for a file without signatures) by
        rank and dtype.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``images`` break the input contract (rank, channels, dtype, values) or do not match the
            model's input size (both sizes named).
    """
    interpreter = _interpreter(path, num_threads=num_threads)
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    expected = tuple(int(d) for d in input_detail["shape"][1:])
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[np.newaxis]
    height, width, channels = expected
    check_images_np(images, channels=channels, height=height, width=width, allow_empty=True, hint=_FIXED_SIZE_HINT)
    dtype = np.dtype(input_detail["dtype"])
    if dtype == np.uint8 and images.dtype != np.uint8:
        images = np.clip(np.round(images), 0, 255)
    images = images.astype(dtype)

    signatures = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner("serving_default") if "serving_default" in signatures else None
    by_kind = outputs_by_kind(interpreter)
    results: list[dict[str, np.ndarray]] = []
    for image in images:
        if runner is not None:
            (input_name,) = signatures["serving_default"]["inputs"]
            out = runner(**{input_name: image[np.newaxis]})
        else:
            interpreter.set_tensor(input_detail["index"], image[np.newaxis])
            interpreter.invoke()
            out = {key: interpreter.get_tensor(detail["index"]) for key, detail in by_kind.items()}
        results.append({key: np.array(out[key])[0] for key in MASK_RCNN_OUTPUT_KEYS})
    if not results:
        return {key: np.zeros((0, *detail["shape"][1:]), np.dtype(detail["dtype"])) for key, detail in by_kind.items()}
    return {key: np.stack([r[key] for r in results]) for key in MASK_RCNN_OUTPUT_KEYS}


def letterbox(
    image: np.ndarray, size: tuple[int, int], min_size: int | None = None, max_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fit one image into a fixed input size the way kzoo's model and training pipeline resize
    (:func:`kzoo.ops.resize.letterbox`: aspect ratio kept, ``floor`` of the scaled sides, bilinear, zero padding at
    the bottom and right).

    Args:
        image: uint8 (or float) pixels ``[H, W, 3]`` in ``0..255``.
        size: ``(height, width)`` of the canvas, e.g. a ``.tflite`` file's input size.
        min_size, max_size: the resize rule (default ``max(size)``: the image just fits the canvas); the resized
            image is capped to the canvas in any case.

    Returns:
        ``(canvas, scales)``: uint8 ``[height, width, 3]``, and float64 ``[2]``, the vertical and horizontal factors
        from image to canvas pixels (the resized size over the image size, which the floor makes differ slightly).
        :func:`kzoo.ops.resize.boxes_to_input` (with the resized size ``scales * image size``) maps canvas boxes
        back into the image.

    Raises:
        ValueError: ``image`` is not ``[H, W, 3]`` with ``H, W >= 1``, or a bad ``size``.
    """
    image = np.asarray(image)
    canvas, (new_h, new_w) = _letterbox(image, size, min_size, max_size)
    return canvas, np.array([new_h / image.shape[0], new_w / image.shape[1]])


def _letterbox(image: np.ndarray, size, min_size=None, max_size=None) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`letterbox`'s uint8 canvas and the resized ``(h, w)``."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"image must be [H, W, 3] with H, W >= 1, got {list(image.shape)}")
    check_images_np(image[np.newaxis], channels=3, name="image")
    padded, resized = resize.letterbox(image.astype(np.float32), check_image_size(size), min_size, max_size)
    return np.clip(np.round(padded.numpy()), 0, 255).astype(np.uint8), resized


def detect_photos_tflite(
    path: str | os.PathLike,
    photos: Sequence[np.ndarray],
    num_threads: int | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Run a ``.tflite`` Mask R-CNN on images of any sizes: each is letterboxed to the file's input size
    (:func:`letterbox`) and its boxes are mapped back into its own pixels (:func:`kzoo.ops.resize.boxes_to_input`).

    Args:
        path: the ``.tflite`` file.
        photos: ``N`` images ``[H_i, W_i, 3]``, uint8 (or float in ``0..255``), each of its own size (the input
            contract of :mod:`kzoo.ops.image_checks`, checked per photo: errors name ``photos[i]``).
        num_threads: LiteRT CPU threads.
        min_size, max_size: :func:`letterbox`'s resize rule (default: each photo just fits the input).

    Returns:
        As :func:`run_mask_rcnn_tflite`, with ``detection_boxes`` float32 ``[N, D, 4]`` in each image's pixels
        (clipped to it); ``detection_masks`` stay in the box frame (paste them with
        :func:`kzoo.ops.masks.paste_masks` at each image's size).

    Raises:
        ValueError: a photo that breaks the input contract, named by its index.
    """
    (detail,) = _interpreter(path).get_input_details()
    size = (int(detail["shape"][1]), int(detail["shape"][2]))
    for index, photo in enumerate(photos):
        photo = np.asarray(photo)
        if photo.ndim != 3:
            raise ValueError(f"photos[{index}] must be one image [height, width, 3], got shape {list(photo.shape)}")
        check_images_np(photo[np.newaxis], channels=3, name=f"photos[{index}]")
    boxed = [_letterbox(photo, size, min_size, max_size) for photo in photos]
    if not boxed:
        return run_mask_rcnn_tflite(path, np.zeros((0, *size, 3), np.uint8), num_threads)
    out = run_mask_rcnn_tflite(path, np.stack([canvas for canvas, _ in boxed]), num_threads)
    resized = np.array([hw for _, hw in boxed])
    originals = np.array([np.shape(photo)[:2] for photo in photos])
    out["detection_boxes"] = resize.boxes_to_input(out["detection_boxes"], resized, originals, clip=True)
    out["detection_boxes"] = out["detection_boxes"].astype(np.float32)
    return out


_OUTPUT_KINDS = {  # (rank, integer dtype) -> output: unique, so outputs are found without names
    (3, False): "detection_boxes",
    (2, False): "detection_scores",
    (2, True): "detection_classes",
    (1, True): "num_detections",
    (4, False): "detection_masks",
}


def outputs_by_kind(interpreter) -> dict[str, dict]:
    """A Mask R-CNN interpreter's output details by output name, told apart by rank and dtype."""
    out = {}
    for detail in interpreter.get_output_details():
        kind = (len(detail["shape"]), bool(np.issubdtype(np.dtype(detail["dtype"]), np.integer)))
        if kind not in _OUTPUT_KINDS or _OUTPUT_KINDS[kind] in out:
            raise ValueError(
                f"not a kzoo Mask R-CNN .tflite file: unexpected output {detail['name']} {list(detail['shape'])} "
                f"{np.dtype(detail['dtype'])}"
            )
        out[_OUTPUT_KINDS[kind]] = detail
    if len(out) != len(MASK_RCNN_OUTPUT_KEYS):
        raise ValueError(
            f"not a kzoo Mask R-CNN .tflite file: outputs {sorted(out)}, expected {list(MASK_RCNN_OUTPUT_KEYS)}"
        )
    return out
