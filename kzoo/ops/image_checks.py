"""kzoo's input contract for images: the one owner of the rule, called by every surface (the Keras models, the
SavedModel signatures, the LiteRT helpers).

The contract: a batch of images ``[batch, height, width, channels]`` (NHWC, RGB or grayscale), ``batch >= 1``, of the
model's channel count, whose pixels are ``uint8``, or float (``float16``, ``bfloat16``, ``float32``, ``float64``)
in ``[0, 255]``, finite. A float batch that looks like ``[0, 1]`` pixels (every value in ``[0, 1]`` and some value
strictly between 0 and 1) is refused: multiply it by 255. All-black and constant images pass.

Shape and dtype problems are ``ValueError`` at trace time (:func:`check_image_spec`, shapes known while tracing);
value problems are ``tf.errors.InvalidArgumentError`` when the graph runs (:func:`assert_image_values`), or
``ValueError`` for NumPy arrays (:func:`check_images_np`). The messages contain the phrases below (stable: tests
and users may match them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

PIXEL_RANGE = (0.0, 255.0)
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
PIXEL_DTYPES = ("uint8", *FLOAT_DTYPES)

NON_FINITE = "non-finite pixel values (NaN or inf)"
OUT_OF_RANGE = "pixel values outside"
UNIT_RANGE = "look like pixels in [0, 1]"
EMPTY_BATCH = "empty batch"

__all__ = [
    "EMPTY_BATCH",
    "FLOAT_DTYPES",
    "NON_FINITE",
    "OUT_OF_RANGE",
    "PIXEL_DTYPES",
    "PIXEL_RANGE",
    "UNIT_RANGE",
    "assert_image_shape",
    "assert_image_values",
    "check_image_spec",
    "check_images_np",
    "check_pixel_dtype",
    "check_values_np",
    "dtype_name",
]


def _dims(shape) -> list[int | None]:
    return [None if d is None else int(d) for d in tf.TensorShape(shape).as_list()]


def _layout(channels: int | None, height: int | None = None, width: int | None = None) -> str:
    return f"[batch, {height or 'height'}, {width or 'width'}, {channels or 'channels'}]"


def dtype_name(dtype) -> str:
    """The name of a TF, NumPy or Keras dtype (``"uint8"``, ``"float32"``...); ``str(dtype)`` for strings and
    objects, which no image rule accepts."""
    if isinstance(dtype, str):
        return dtype
    numpy_dtype = np.dtype(dtype) if isinstance(dtype, (np.dtype, type)) else None
    if numpy_dtype is not None:
        return numpy_dtype.name if numpy_dtype.kind in "uifb" else str(numpy_dtype)
    try:
        return tf.as_dtype(dtype).name
    except TypeError:
        return str(dtype)


def check_pixel_dtype(dtype, *, dtypes: Sequence[str] = PIXEL_DTYPES, name: str = "images", detail: str = "") -> str:
    """``dtype``'s name, or a ``ValueError`` naming it when it is not one of ``dtypes`` (``detail`` is appended)."""
    found = dtype_name(dtype)
    if found not in dtypes:
        raise ValueError(f"{name} must be {' or '.join(dtypes)} pixels, got dtype {found}{detail}")
    return found


def check_image_spec(
    shape: Sequence[int | None] | tf.TensorShape,
    dtype: tf.DType | np.dtype | str,
    *,
    channels: int | None = None,
    height: int | None = None,
    width: int | None = None,
    dtypes: Sequence[str] = PIXEL_DTYPES,
    name: str = "images",
    allow_empty: bool = False,
    hint: str = "",
) -> None:
    """Check the static shape and dtype of an image batch; a ``ValueError`` naming the shape or dtype and what is
    expected.

    Args:
        shape: the batch's shape, ``[batch, height, width, channels]`` (``None`` for unknown sizes).
        dtype: its dtype.
        channels, height, width: the sizes the model needs (``None``: any).
        dtypes: the accepted dtype names (default: uint8 and floats).
        name: the input's name in the messages.
        allow_empty: accept a batch of 0 images.
        hint: appended to every message (what to do instead).

    Raises:
        ValueError: rank not 4, wrong channels or size, a dtype outside ``dtypes`` (strings, bools, ints...), or
            (without ``allow_empty``) a batch known to hold 0 images.
    """
    dims = _dims(shape)
    expected = _layout(channels, height, width)
    if len(dims) != 4:
        one = "; for one image add a batch axis (images[None])" if len(dims) == 3 else ""
        raise ValueError(
            f"{name} must be a batch of images {expected} (rank 4), got shape {dims} (rank {len(dims)}){one}{hint}"
        )
    check_pixel_dtype(dtype, dtypes=dtypes, name=name, detail=f" (shape {dims}){hint}")
    if channels is not None and dims[3] is not None and dims[3] != channels:
        raise ValueError(
            f"{name} must have {channels} channel(s) {expected}, got {dims[3]} channels (shape {dims}){hint}"
        )
    for side, want, got in (("height", height, dims[1]), ("width", width, dims[2])):
        if want is not None and got is not None and got != want:
            raise ValueError(f"{name} must be {expected}, got {side} {got} (shape {dims}){hint}")
    if not allow_empty and dims[0] == 0:
        raise ValueError(f"{name} is an {EMPTY_BATCH} (0 images, shape {dims}); pass at least one image")


def assert_image_shape(
    images: tf.Tensor,
    *,
    channels: int | None = None,
    height: int | None = None,
    width: int | None = None,
    name: str = "images",
) -> tf.Tensor:
    """The run-time twin of :func:`check_image_spec`'s shape rules, for inputs whose static shape is a promise the
    caller may not keep (SavedModel signatures: a loaded signature called with another shape runs the graph on it).

    Args:
        images: a tensor meant to be ``[batch, height, width, channels]``.
        channels, height, width: the sizes the model needs (``None``: any).
        name: the input's name in the message.

    Returns:
        ``images`` with static shape ``[None, height, width, channels]``, after the check when the graph runs.

    Raises:
        tf.errors.InvalidArgumentError: when run, for another rank or size; the message names the layout expected
            and the observed shape.
    """
    shape = tf.shape(images)
    padded = tf.concat([shape, [-1, -1, -1, -1]], 0)[:4]
    ok = tf.equal(tf.size(shape), 4)
    for axis, want in ((1, height), (2, width), (3, channels)):
        if want is not None:
            ok = tf.logical_and(ok, tf.equal(padded[axis], want))
    check = tf.debugging.Assert(
        ok, [f"{name} must be a batch of images {_layout(channels, height, width)}; got shape", shape], summarize=8
    )
    with tf.control_dependencies([check]):
        return tf.ensure_shape(tf.identity(images), [None, height, width, channels])


def assert_image_values(
    images: tf.Tensor,
    *,
    value_range: tuple[float, float] = PIXEL_RANGE,
    refuse_unit_range: bool = True,
    name: str = "images",
    hint: str = "",
) -> tf.Tensor:
    """``images`` with assertions attached (graph or eager): finite values in ``value_range`` and, for float
    pixels in ``[0, 255]``, not a batch that looks like ``[0, 1]``.

    One reduction pass (min, max, finiteness, one "strictly inside (0, 1)" test) over the batch; nothing for uint8
    images in ``[0, 255]`` (always valid). The assertions hold string constants only, so the function is safe
    inside XLA clusters (where TF drops assertions) and TFLite conversion (which removes them).

    Args:
        images: ``[batch, height, width, channels]`` (any shape works) uint8 or float tensor.
        value_range: ``(low, high)``, inclusive.
        refuse_unit_range: refuse float batches whose values all lie in ``[0, 1]`` with one strictly inside.
        name: the input's name in the messages.
        hint: appended to the range message (what to do instead).

    Returns:
        ``images`` unchanged (same dtype and shape), after the checks when the graph runs.

    Raises:
        tf.errors.InvalidArgumentError: when run, with ``NON_FINITE``, ``OUT_OF_RANGE`` (and the observed min and
            max) or ``UNIT_RANGE`` in the message; exactly one of them per failing batch.
    """
    images = tf.convert_to_tensor(images)
    low, high = (float(v) for v in value_range)
    if images.dtype == tf.uint8 and low <= 0 and high >= 255:
        return images
    values = tf.cast(images, tf.float32)
    finite = tf.reduce_all(tf.math.is_finite(values)) if images.dtype.is_floating else tf.constant(True)
    lowest, highest = tf.reduce_min(values), tf.reduce_max(values)
    in_range = tf.logical_and(lowest >= low, highest <= high)
    checks = [
        tf.debugging.Assert(finite, [f"{name}: {NON_FINITE}"]),
        tf.debugging.Assert(
            tf.logical_or(tf.logical_not(finite), in_range),
            [f"{name}: {OUT_OF_RANGE} [{low:g}, {high:g}]{hint}; observed min and max:", lowest, highest],
        ),
    ]
    if refuse_unit_range and images.dtype.is_floating and (low, high) == PIXEL_RANGE:
        inside = tf.reduce_any(tf.logical_and(values > 0.0, values < 1.0))
        unit_like = tf.logical_and(tf.logical_and(finite, in_range), tf.logical_and(highest <= 1.0, inside))
        checks.append(tf.debugging.Assert(tf.logical_not(unit_like), [f"{name}: {_unit_message()}"]))
    with tf.control_dependencies(checks):
        return tf.identity(images)


def _unit_message() -> str:
    return (
        f"float pixels that {UNIT_RANGE} (max <= 1): kzoo takes pixels in [0, 255], uint8 or float; "
        "multiply the images by 255"
    )


def check_images_np(
    images: np.ndarray,
    *,
    channels: int | None = None,
    height: int | None = None,
    width: int | None = None,
    name: str = "images",
    allow_empty: bool = False,
    value_range: tuple[float, float] = PIXEL_RANGE,
    refuse_unit_range: bool = True,
    hint: str = "",
) -> np.ndarray:
    """The NumPy twin of :func:`check_image_spec` plus :func:`assert_image_values`, for code outside TF graphs
    (the LiteRT helpers).

    Args:
        images: ``[batch, height, width, channels]`` array-like.
        channels, height, width, name, allow_empty, hint: as :func:`check_image_spec` (``hint`` goes with the
            shape and dtype messages only).
        value_range, refuse_unit_range: as :func:`assert_image_values`.

    Returns:
        ``images`` as a NumPy array (not copied when it is one).

    Raises:
        ValueError: the problems of both functions, with the same phrases.
    """
    images = np.asarray(images)
    check_image_spec(
        images.shape,
        images.dtype,
        channels=channels,
        height=height,
        width=width,
        name=name,
        allow_empty=allow_empty,
        hint=hint,
    )
    check_values_np(images, name=name, value_range=value_range, refuse_unit_range=refuse_unit_range)
    return images


def check_values_np(
    images: np.ndarray,
    *,
    name: str = "images",
    value_range: tuple[float, float] = PIXEL_RANGE,
    refuse_unit_range: bool = True,
    hint: str = "",
) -> None:
    """The value rules of :func:`assert_image_values` for a NumPy array of any shape; a ``ValueError``."""
    images = np.asarray(images)
    if images.size == 0 or (images.dtype == np.uint8 and value_range[0] <= 0 and value_range[1] >= 255):
        return
    low, high = (float(v) for v in value_range)
    floating = images.dtype.kind == "f"
    if floating and not np.all(np.isfinite(images)):
        raise ValueError(f"{name}: {NON_FINITE}")
    lowest, highest = float(np.min(images)), float(np.max(images))
    if lowest < low or highest > high:
        raise ValueError(
            f"{name}: {OUT_OF_RANGE} [{low:g}, {high:g}]{hint}; observed min and max: {lowest:g}, {highest:g}"
        )
    if refuse_unit_range and floating and (low, high) == PIXEL_RANGE and highest <= 1.0:
        if np.any((images > 0) & (images < 1)):
            raise ValueError(f"{name}: {_unit_message()}")
