"""Training augmentation for instance segmentation, as graph functions for ``tf.data``: scale jitter and color jitter.

Scale jitter (TF Model Garden's): the image is resized by the resize rule with ``min_size`` and ``max_size``
multiplied by a random factor ``s`` (so it is the image fitted to the canvas, scaled by ``s``; one resize from the
input, :mod:`kzoo.ops.resize`'s rule), then a canvas-sized window is cut from it at a random offset (``s > 1``) or
the whole scaled image is kept and padded (``s < 1``). :func:`random_scale_window` draws that; the window is mapped
back to the input image (:func:`window_in_input`) so that instances are cut there, on the full-resolution masks
(:func:`clip_instances_to_window`): a cut instance gets the tight box of its mask inside the window, and its
box-cropped mask is then cropped from the full mask to that new box, with no resampling of an earlier crop.

Color jitter follows torchvision's ``ColorJitter`` (brightness, contrast, saturation as blends with black, the mean
gray level and the grayscale image, factors drawn from ``[1 - x, 1 + x]``; hue shifted by up to ``x`` of the color
wheel), on float images in ``[0, max_value]``, clipped after each step, in a fixed order.

Every random draw is stateless, from a ``[2]`` int64 key (``tf.random.experimental.stateless_fold_in`` of the
element's key), so a pipeline is reproducible from its seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import tensorflow as tf

from kzoo.ops.resize import resize_scale, resized_size

__all__ = [
    "ScaleWindow",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "clip_instances_to_window",
    "color_jitter",
    "mask_extent",
    "random_scale_window",
    "window_in_input",
]

# grayscale weights of torchvision's rgb_to_grayscale (ITU-R 601-2 luma)
_GRAY = (0.299, 0.587, 0.114)


class ScaleWindow(NamedTuple):
    """One scale-jitter draw for an image.

    Attributes:
        scale: float64 scalar, the resize factor of the input (the rule's factor times the jitter factor).
        scaled_size: int32 ``[2]``, the resized image's ``(height, width)`` before the crop.
        offset: int32 ``[2]``, the window's top left in the resized image.
        window: int32 ``[2]``, the window's ``(height, width)``: the part of the canvas the image covers.
    """

    scale: tf.Tensor
    scaled_size: tf.Tensor
    offset: tf.Tensor
    window: tf.Tensor


def random_scale_window(
    key: tf.Tensor,
    input_size: tf.Tensor,
    min_size: int,
    max_size: int,
    canvas: Sequence[int],
    scale_range: Sequence[float],
) -> ScaleWindow:
    """Draw a jitter factor ``s`` in ``scale_range`` and a window of the canvas' size in the rescaled image.

    The image is resized by :func:`kzoo.ops.resize.resized_size` with ``min_size * s`` and ``max_size * s`` (the size
    it gets fitted to the canvas, times ``s``). Per axis, where it is larger than the canvas a canvas-long window
    starts at a uniform integer offset in ``[0, scaled - canvas]``; where it is not the window is the whole side.

    Args:
        key: int64 ``[2]`` stateless seed.
        input_size: int32 ``[2]`` ``(height, width)`` of the input image.
        min_size, max_size: the resize rule.
        canvas: ``(Hc, Wc)``.
        scale_range: ``(low, high)``, ``0 < low <= high``.
    """
    low, high = float(scale_range[0]), float(scale_range[1])
    draws = tf.random.stateless_uniform([3], seed=key, dtype=tf.float64)
    factor = low + (high - low) * draws[0]
    height, width = input_size[0], input_size[1]
    scale = resize_scale(height, width, min_size * factor, max_size * factor)
    scaled = resized_size(height, width, min_size * factor, max_size * factor)
    canvas = tf.constant([int(canvas[0]), int(canvas[1])], tf.int32)
    window = tf.minimum(scaled, canvas)
    slack = tf.maximum(scaled - canvas, 0)
    offset = tf.cast(tf.floor(draws[1:] * tf.cast(slack + 1, tf.float64)), tf.int32)
    return ScaleWindow(scale, scaled, tf.minimum(offset, slack), window)


def window_in_input(offset: tf.Tensor, window: tf.Tensor, scaled_size: tf.Tensor, input_size: tf.Tensor) -> tf.Tensor:
    """The window ``[offset, offset + window)`` of the resized image as a float32 box ``[y0, x0, y1, x1]`` in the
    input image's pixels (per axis ``input / resized``, as :func:`kzoo.ops.resize.scale_boxes`; computed in float64,
    so a window reaching the resized image's border maps exactly onto the input's border)."""
    size, scaled = tf.cast(input_size, tf.float64), tf.cast(scaled_size, tf.float64)
    edges = tf.cast(tf.concat([offset, offset + window], 0), tf.float64) * tf.tile(size, [2]) / tf.tile(scaled, [2])
    return tf.cast(edges, tf.float32)


def mask_extent(masks: tf.Tensor, region: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The tight box of each mask's part inside ``region``.

    A mask is a union of unit pixel squares; its part inside the box ``region`` is that union intersected with the
    region, whose box is the rows and columns of mask pixels that overlap the region, clipped to it.

    Args:
        masks: ``[n, H, W]`` 0/1 masks (uint8, bool or float).
        region: float32 ``[4]`` ``[y0, x0, y1, x1]`` pixels of the masks (fractional edges allowed).

    Returns:
        ``boxes`` float32 ``[n, 4]`` (zeros for an empty part) and ``nonempty`` bool ``[n]``.
    """
    masks = tf.cast(masks, tf.bool)
    shape = tf.shape(masks)
    y0, x0, y1, x1 = tf.unstack(tf.cast(region, tf.float32), num=4)

    def overlapping(size, start, end):
        edges = tf.range(size, dtype=tf.float32)
        return (edges + 1.0 > start) & (edges < end)

    rows_in, cols_in = overlapping(shape[1], y0, y1), overlapping(shape[2], x0, x1)
    inside = masks & rows_in[None, :, None] & cols_in[None, None, :]
    rows, cols = tf.reduce_any(inside, axis=2), tf.reduce_any(inside, axis=1)

    def first_last(hits, size):
        first = tf.argmax(tf.cast(hits, tf.int32), axis=1, output_type=tf.int32)
        last = size - tf.argmax(tf.cast(hits[:, ::-1], tf.int32), axis=1, output_type=tf.int32)
        return tf.cast(first, tf.float32), tf.cast(last, tf.float32)

    top, bottom = first_last(rows, shape[1])
    left, right = first_last(cols, shape[2])
    boxes = tf.stack([tf.maximum(top, y0), tf.maximum(left, x0), tf.minimum(bottom, y1), tf.minimum(right, x1)], -1)
    nonempty = tf.reduce_any(rows, axis=1)
    return tf.where(nonempty[:, None], boxes, tf.zeros_like(boxes)), nonempty


def clip_instances_to_window(boxes: tf.Tensor, masks: tf.Tensor, region: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Boxes clipped to a window; the ones the window cuts get the tight box of their mask inside it.

    An instance is *cut* when its box reaches outside ``region``. Its new box is the tight box of its mask's part
    inside the window (:func:`mask_extent`) intersected with its clipped box (so a source box looser or tighter than
    its mask stays within itself); a cut instance with no mask inside the window gets an empty box. Boxes inside the
    window are returned unchanged.

    Args:
        boxes: float32 ``[n, 4]`` ``[ymin, xmin, ymax, xmax]`` pixels of the masks.
        masks: ``[n, H, W]`` full-image 0/1 masks.
        region: float32 ``[4]`` the window in the same pixels.

    Returns:
        ``boxes`` float32 ``[n, 4]`` inside ``region`` (``ymax - ymin <= 0`` or ``xmax - xmin <= 0``: nothing of
        the instance is left) and ``cut`` bool ``[n]``.
    """
    boxes = tf.cast(boxes, tf.float32)
    region = tf.cast(region, tf.float32)
    clipped = tf.minimum(tf.maximum(boxes, tf.tile(region[:2], [2])), tf.tile(region[2:], [2]))
    cut = tf.reduce_any(tf.not_equal(clipped, boxes), axis=-1)
    tight, nonempty = mask_extent(masks, region)
    tight = tf.concat([tf.maximum(tight[:, :2], clipped[:, :2]), tf.minimum(tight[:, 2:], clipped[:, 2:])], -1)
    tight = tf.where(nonempty[:, None], tight, tf.zeros_like(tight))
    return tf.where(cut[:, None], tight, clipped), cut


# ---------------------------------------------------------------------------------------------------- color


def _blend(image: tf.Tensor, other: tf.Tensor, factor: tf.Tensor, max_value: float) -> tf.Tensor:
    """``factor * image + (1 - factor) * other``, clipped to ``[0, max_value]`` (torchvision's ``_blend``)."""
    factor = tf.cast(factor, image.dtype)
    return tf.clip_by_value(factor * image + (1.0 - factor) * other, 0.0, max_value)


def _grayscale(image: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(image * tf.constant(_GRAY, image.dtype), axis=-1, keepdims=True)


def adjust_brightness(image: tf.Tensor, factor, max_value: float = 255.0) -> tf.Tensor:
    """``image * factor``, clipped (a blend with black)."""
    return _blend(image, tf.zeros_like(image), factor, max_value)


def adjust_contrast(image: tf.Tensor, factor, max_value: float = 255.0) -> tf.Tensor:
    """A blend with the mean gray level of the whole image (``[H, W, 3]``), clipped."""
    mean = tf.reduce_mean(_grayscale(image))
    return _blend(image, mean, factor, max_value)


def adjust_saturation(image: tf.Tensor, factor, max_value: float = 255.0) -> tf.Tensor:
    """A blend with the image's grayscale version, clipped."""
    return _blend(image, _grayscale(image), factor, max_value)


def adjust_hue(image: tf.Tensor, delta, max_value: float = 255.0) -> tf.Tensor:
    """Hue rotated by ``delta`` (a fraction of the color wheel, in ``[-0.5, 0.5]``) in HSV, clipped."""
    rotated = tf.image.adjust_hue(image / max_value, tf.cast(delta, tf.float32)) * max_value
    return tf.clip_by_value(rotated, 0.0, max_value)


def color_jitter(
    image: tf.Tensor,
    key: tf.Tensor,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    hue: float = 0.0,
    max_value: float = 255.0,
) -> tf.Tensor:
    """torchvision's ``ColorJitter`` on a float ``[H, W, 3]`` image in ``[0, max_value]``, in the fixed order
    brightness, contrast, saturation, hue.

    Brightness, contrast and saturation factors are drawn uniformly from ``[max(0, 1 - x), 1 + x]``, the hue shift
    from ``[-hue, hue]``; a jitter of 0 leaves the image as it is (bit for bit when all are 0).

    Args:
        image: float32 ``[H, W, 3]``.
        key: int64 ``[2]`` stateless seed.
        brightness, contrast, saturation: ``x >= 0``.
        hue: in ``[0, 0.5]``.
        max_value: the top of the value range (255 for pixels, 1 for ``[0, 1]`` images).

    Returns:
        float32 ``[H, W, 3]`` in ``[0, max_value]``.
    """
    draws = tf.random.stateless_uniform([4], seed=key, dtype=tf.float32)

    def factor(index, amount):
        low = max(0.0, 1.0 - amount)
        return low + (1.0 + amount - low) * draws[index]

    if brightness > 0:
        image = adjust_brightness(image, factor(0, brightness), max_value)
    if contrast > 0:
        image = adjust_contrast(image, factor(1, contrast), max_value)
    if saturation > 0:
        image = adjust_saturation(image, factor(2, saturation), max_value)
    if hue > 0:
        image = adjust_hue(image, hue * (2.0 * draws[3] - 1.0), max_value)
    return image
