"""Resizing images the Mask R-CNN way, and mapping boxes back: the one owner of the rule.

The rule (torchvision's ``GeneralizedRCNNTransform``, ``interpolate(scale_factor=scale, recompute_scale_factor=True)``):

    scale = min(min_size / short side, max_size / long side),    resized side = max(floor(side * scale), 1)

computed in float64 both in Python (:func:`resize_scale` / :func:`resized_size` on ints) and in the graph (the same
functions on tensors), so the model's resize, the data pipeline's and the TFLite letterbox agree to the pixel. The
resized image sits at the top left of a zero canvas (padding at the bottom and right), so a box maps between the
input and the resized image by the per-axis factor ``resized / input`` (:func:`scale_boxes`,
:func:`boxes_to_input`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

__all__ = [
    "boxes_to_input",
    "canvas_size",
    "letterbox",
    "padded_size",
    "resize_and_pad",
    "resize_scale",
    "resized_size",
    "scale_boxes",
]


def _is_tensor(*values) -> bool:
    return any(isinstance(value, (tf.Tensor, tf.Variable)) for value in values)


def _scale(height, width, min_size, max_size, canvas, minimum, maximum):
    """The one formula, for Python numbers (``min``/``max``) and float64 tensors (``tf.minimum``/``tf.maximum``)."""
    scale = minimum(min_size / minimum(height, width), max_size / maximum(height, width))
    if canvas is not None:  # also fit the canvas (binds only for a canvas smaller than the rule's result)
        scale = minimum(scale, minimum(canvas[0] / height, canvas[1] / width))
    return scale


def resize_scale(height, width, min_size: int, max_size: int, canvas: Sequence[int] | None = None):
    """The resize factor: ``min(min_size / min(h, w), max_size / max(h, w))``, and with ``canvas`` (``(Hc, Wc)``) at
    most ``min(Hc / h, Wc / w)`` too, so the resized image fits it.

    ``height`` and ``width`` are Python ints (the result is a float) or scalar tensors (a float64 scalar tensor, the
    same value to the bit).

    Raises:
        ValueError: a static size below 1 (in the graph: an assertion).
    """
    if _is_tensor(height, width):
        height, width = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
        check = tf.debugging.assert_positive(tf.minimum(height, width), message="cannot resize an empty image")
        with tf.control_dependencies([check]):
            return tf.identity(_scale(height, width, min_size, max_size, canvas, tf.minimum, tf.maximum))
    if height < 1 or width < 1:
        raise ValueError(f"cannot resize an empty image of size {height}x{width}")
    return _scale(height, width, min_size, max_size, canvas, min, max)


def resized_size(height, width, min_size: int, max_size: int, canvas: Sequence[int] | None = None):
    """The resized ``(height, width)``: ``max(floor(side * scale), 1)`` with :func:`resize_scale`'s ``scale``.

    Python ints give a tuple of ints; tensors give int32 ``[2]`` (the same values).
    """
    scale = resize_scale(height, width, min_size, max_size, canvas)
    if _is_tensor(height, width):
        sides = tf.cast(tf.stack([height, width]), tf.float64)
        return tf.maximum(tf.cast(tf.floor(sides * scale), tf.int32), 1)
    return max(int(math.floor(height * scale)), 1), max(int(math.floor(width * scale)), 1)


def padded_size(height: int, width: int, size_divisible: int) -> tuple[int, int]:
    """``(height, width)`` rounded up to multiples of ``size_divisible``."""
    return (-(-height // size_divisible) * size_divisible, -(-width // size_divisible) * size_divisible)


def canvas_size(max_size: int, size_divisible: int) -> tuple[int, int]:
    """The fixed square canvas that holds every image resized with ``max_size``: its side is ``max_size`` rounded up
    to a multiple of ``size_divisible``."""
    return padded_size(max_size, max_size, size_divisible)


def _place(images: tf.Tensor, size, canvas: Sequence[int]) -> tf.Tensor:
    """Resize ``images`` (bilinear, no antialiasing) to ``size`` and pad them at the bottom/right to ``canvas``."""
    resized = tf.image.resize(images, size, method="bilinear", antialias=False)
    return tf.image.pad_to_bounding_box(resized, 0, 0, int(canvas[0]), int(canvas[1]))


def _static_hw(images: tf.Tensor) -> tuple[int | None, int | None]:
    if images.shape.rank not in (3, 4):
        raise ValueError(f"images must be [H, W, C] or [B, H, W, C], got shape {images.shape}")
    return images.shape[-3], images.shape[-2]


def _dynamic_hw(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    shape = tf.shape(images)
    return shape[-3], shape[-2]


def resize_and_pad(
    images: tf.Tensor, min_size: int, max_size: int, size_divisible: int = 32, canvas: Sequence[int] | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """Resize a batch keeping its aspect ratio (:func:`resized_size`) and pad it at the bottom/right with zeros.

    With a static input size the output size is static too (the resized size padded up to a multiple of
    ``size_divisible``). With an unknown input size the resized size is computed in the graph (the same value, to
    the bit) and the batch is padded to ``canvas``, by default the fixed canvas :func:`canvas_size`, so the rest of
    the graph keeps static shapes.

    Args:
        images: float32 ``[B, H, W, C]``.
        min_size, max_size: the target short side and the cap on the long side.
        size_divisible: the canvas is a multiple of this (32 = the stride of P5).
        canvas: ``(Hc, Wc)`` for an unknown input size (a graph shared by every input size that pads to it);
            ignored for a static size.

    Returns:
        ``padded`` float32 ``[B, H', W', C]`` and ``image_size`` int32 ``[2]``, the ``(height, width)`` of
        the resized (un-padded) images, shared by the batch.
    """
    height, width = _static_hw(images)
    if height is not None and width is not None:
        new_h, new_w = resized_size(height, width, min_size, max_size)
        padded = _place(images, (new_h, new_w), padded_size(new_h, new_w, size_divisible))
        return padded, tf.constant([new_h, new_w], tf.int32)
    canvas = tuple(canvas) if canvas is not None else canvas_size(max_size, size_divisible)
    size = tf.minimum(resized_size(*_dynamic_hw(images), min_size, max_size), tf.constant(canvas, tf.int32))
    return _place(images, size, canvas), size


def letterbox(
    images, canvas: Sequence[int], min_size: int | None = None, max_size: int | None = None
) -> tuple[tf.Tensor, tf.Tensor | tuple[int, int]]:
    """Resize keeping the aspect ratio and pad at the bottom/right to a fixed ``canvas``.

    The size follows :func:`resized_size` with the ``canvas`` cap, so the image always fits. ``min_size`` and
    ``max_size`` default to ``max(canvas)``: the image then just fits the canvas (for a square canvas of side ``S``
    that is the model's own rule with ``min_size = max_size = S``).

    Args:
        images: ``[H, W, C]`` or ``[B, H, W, C]`` pixels (uint8 or float; a NumPy array or a tensor).
        canvas: ``(Hc, Wc)``, positive.
        min_size, max_size: the resize rule.

    Returns:
        ``(padded, size)``: float32 ``[..., Hc, Wc, C]`` and the resized ``(height, width)`` (Python ints for a
        static input size, else int32 ``[2]``).

    Raises:
        ValueError: a non-positive canvas, an input that is not an image (batch), or a static empty image.
    """
    try:
        canvas = tuple(int(v) for v in canvas)
    except (TypeError, ValueError):
        raise ValueError(f"canvas must be (height, width), got {canvas!r}") from None
    if len(canvas) != 2 or min(canvas) < 1:
        raise ValueError(f"canvas must be positive (height, width), got {canvas!r}")
    max_size = max(canvas) if max_size is None else max_size
    min_size = max_size if min_size is None else min_size
    images = tf.convert_to_tensor(images)
    height, width = _static_hw(images)
    if height is None or width is None:
        height, width = _dynamic_hw(images)
    size = resized_size(height, width, min_size, max_size, canvas)
    return _place(images, size, canvas), size


def scale_boxes(boxes, from_size, to_size):
    """Boxes ``[..., 4]`` (``[ymin, xmin, ymax, xmax]`` pixels) of an image of ``from_size`` -> the same content's
    pixels at ``to_size`` (top-left aligned, per-axis factor ``to / from``).

    ``from_size`` and ``to_size`` are ``(height, width)`` ``[2]`` (shared) or ``[B, 2]`` for boxes ``[B, D, 4]``.
    Tensors (any of the three) give a tensor of ``boxes``' float dtype; NumPy / Python values give float64.
    """
    if _is_tensor(boxes, from_size, to_size):
        boxes = tf.convert_to_tensor(boxes)
        dtype = boxes.dtype if boxes.dtype.is_floating else tf.float32
        boxes = tf.cast(boxes, dtype)
        ratio = tf.cast(to_size, dtype) / tf.cast(from_size, dtype)
        ratio = tf.concat([ratio, ratio], axis=-1)
        if ratio.shape.rank == 2 and boxes.shape.rank == 3:
            ratio = ratio[:, None, :]
        return boxes * ratio
    boxes = np.asarray(boxes, np.float64)
    ratio = np.asarray(to_size, np.float64) / np.asarray(from_size, np.float64)
    ratio = np.concatenate([ratio, ratio], axis=-1)
    if ratio.ndim == 2 and boxes.ndim == 3:
        ratio = ratio[:, None, :]
    return boxes * ratio


def boxes_to_input(boxes, resized_size, input_size, clip: bool = False):
    """Map boxes from the resized image's pixels (what the detector sees inside its canvas) back to the input
    image's pixels: the inverse of the resize, per axis ``input / resized``.

    Args:
        boxes: ``[..., 4]`` ``[ymin, xmin, ymax, xmax]`` in resized-image pixels (a tensor or an array).
        resized_size: ``(h, w)`` ``[2]`` or ``[B, 2]`` (for boxes ``[B, D, 4]``), the resized size inside the canvas.
        input_size: ``(H, W)`` of the input image(s), same shape as ``resized_size``.
        clip: clip the boxes to ``[0, H] x [0, W]``.

    Returns:
        The boxes in input pixels: a tensor of ``boxes``' float dtype, or a float64 array for NumPy inputs.
    """
    out = scale_boxes(boxes, resized_size, input_size)
    if not clip:
        return out
    if isinstance(out, tf.Tensor):
        limits = tf.cast(input_size, out.dtype)
        limits = tf.concat([limits, limits], axis=-1)
        if limits.shape.rank == 2 and out.shape.rank == 3:
            limits = limits[:, None, :]
        return tf.minimum(tf.maximum(out, 0.0), limits)
    limits = np.asarray(input_size, np.float64)
    limits = np.concatenate([limits, limits], axis=-1)
    if limits.ndim == 2 and out.ndim == 3:
        limits = limits[:, None, :]
    return np.clip(out, 0.0, limits)
