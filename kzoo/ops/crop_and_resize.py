"""Bilinear ``tf.image.crop_and_resize`` with a race-free gradient for the image.

TensorFlow's CPU kernel for the image gradient (``CropAndResizeGradImage``) splits the boxes across threads
and adds into the image gradient without atomics: when two boxes handled by different threads sample the
same pixel, updates are lost. Its source says so ("Sharding introduces nondeterminism when the gradients
associated with more than two crops backprop into the same element"), but the effect is wrong values, not
only a different summation order (a measured case is on the benchmarks page, benchmarks/README.md). Mask
R-CNN's RoIs overlap heavily, so training on CPU with the stock gradient corrupts the feature gradients.

:func:`crop_and_resize_bilinear` runs the stock forward kernel, followed by RoIAlign's average pooling of
``pool x pool`` samples per bin when asked (the boxes cropped in groups, so that the unpooled crops are never all
held at once). On CPU it computes the image gradient itself: every sample sends its four bilinear weights
times the incoming gradient (its bin's, divided by ``pool**2``) to its four neighbouring pixels. That is a
sparse ``[pixels, bins]`` matrix of weights times the dense ``[bins, C]`` gradient, one
``tf.sparse.sparse_dense_matmul`` (TF's CPU kernel walks the non-zeros in order on one thread: race-free and
deterministic). No weighted copy of the gradient is ever made, so the memory is one image-sized output plus
the indices. A sample outside the image has weight 0 (the crops of one RoIAlign level lie inside its map, so
compacting the few outside samples away would cost more than it saves). On a GPU, TF's own gradient kernel is
kept: it adds atomically, so it is correct there, and it is faster.
"""

from __future__ import annotations

import tensorflow as tf

from kzoo.ops.devices import runs_on_gpu


def crop_and_resize_sample_coordinates(first, last, extent, count: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Sample coordinates of ``tf.image.crop_and_resize`` along one axis, in its float32 arithmetic.

    ``in = first * extent + i * (last - first) * extent / (count - 1)`` for ``i < count``; the middle
    ``0.5 * (first + last) * extent`` when ``count == 1``.

    Args:
        first, last: ``[...]`` float32 normalized box ends (``y1``, ``y2`` or ``x1``, ``x2``).
        extent: float32 ``image size - 1``, a scalar or shaped like ``first``.
        count: number of samples (crop size along the axis), a Python int >= 1.

    Returns:
        ``(coordinates, valid)``: float32 and bool ``[..., count]``; ``valid`` is ``0 <= in <= extent``.
    """
    first = first[..., None]
    last = last[..., None]
    extent = tf.convert_to_tensor(extent, tf.float32)
    if extent.shape.rank:
        extent = extent[..., None]
    if count > 1:
        step = (last - first) * extent / float(count - 1)
        coordinates = first * extent + tf.range(count, dtype=tf.float32) * step
    else:
        coordinates = 0.5 * (first + last) * extent
    valid = tf.logical_and(coordinates >= 0.0, coordinates <= extent)
    return coordinates, valid


def crop_and_resize_image_gradient(
    grads: tf.Tensor,
    boxes: tf.Tensor,
    box_indices: tf.Tensor,
    image_shape: tf.Tensor,
    pool: int = 1,
    edge_pad: bool = False,
) -> tf.Tensor:
    """Gradient with respect to the image of bilinear ``crop_and_resize`` (extrapolation value 0) to
    ``(pool * h, pool * w)`` samples followed by ``pool x pool`` average pooling (no pooling when ``pool == 1``).
    With ``edge_pad`` the crops were taken from the image padded by one copy of its edge pixels on every side
    (``tf.pad(image, ..., "SYMMETRIC")``): a sample reading a pad pixel sends its weight to the edge pixel it
    copies, so the gradient is the unpadded image's and the padded one is never made.

    The pooling is folded in (each sample receives ``1 / pool**2`` of its bin's gradient; the pooling's own
    gradient is never made). The ``4 * K * pool**2 * h * w`` (pixel, bin, weight) triples form a sparse matrix
    that multiplies the ``[K * h * w, C]`` gradient.

    Args:
        grads: ``[K, h, w, C]`` float32, the gradient of the pooled crops.
        boxes: ``[K, 4]`` float32 normalized ``[y1, x1, y2, x2]`` (to the padded image with ``edge_pad``).
        box_indices: ``[K]`` int32 image of each box.
        image_shape: int32 ``[4]``, ``[B, H, W, C]`` (unpadded).
        pool: samples per bin side, a Python int >= 1.
        edge_pad: a Python bool.

    Returns:
        ``[B, H, W, C]`` float32.
    """
    grads = tf.convert_to_tensor(grads, tf.float32)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    crop_h, crop_w = grads.shape[1], grads.shape[2]
    if crop_h is None or crop_w is None:
        raise ValueError(f"crop_and_resize_image_gradient needs a static crop size, got grads {grads.shape}")
    batch, height, width = image_shape[0], image_shape[1], image_shape[2]
    channels = tf.shape(grads)[3]
    pad = 1 if edge_pad else 0
    y, y_valid = crop_and_resize_sample_coordinates(
        boxes[:, 0], boxes[:, 2], tf.cast(height + (2 * pad - 1), tf.float32), pool * crop_h
    )
    x, x_valid = crop_and_resize_sample_coordinates(
        boxes[:, 1], boxes[:, 3], tf.cast(width + (2 * pad - 1), tf.float32), pool * crop_w
    )
    # separable bilinear weights; a sample outside the image gets weight 0 (its indices are clamped into range)
    y_lerp, top, bottom = _axis_neighbours(y, height, pad)
    x_lerp, left, right = _axis_neighbours(x, width, pad)
    y_on, x_on = tf.cast(y_valid, tf.float32) / float(pool * pool), tf.cast(x_valid, tf.float32)
    rows = ((top, (1.0 - y_lerp) * y_on), (bottom, y_lerp * y_on))  # each [K, pool * h]
    cols = ((left, (1.0 - x_lerp) * x_on), (right, x_lerp * x_on))  # each [K, pool * w]
    first_row = (tf.cast(box_indices, tf.int32) * height)[:, None, None]
    count = tf.shape(grads)[0]
    # the bin of every sample: [K, pool * h, pool * w] int32 into the flattened [K * h * w] bins
    bins = tf.reshape(tf.range(count * crop_h * crop_w), tf.stack([count, crop_h, crop_w]))
    bins = tf.reshape(tf.repeat(tf.repeat(bins, pool, axis=1), pool, axis=2), [-1])
    pixels, weights = [], []
    for row, row_weight in rows:
        for col, col_weight in cols:
            pixels.append(tf.reshape((first_row + row[:, :, None]) * width + col[:, None, :], [-1]))
            weights.append(tf.reshape(row_weight[:, :, None] * col_weight[:, None, :], [-1]))
    indices = tf.stack([tf.concat(pixels, 0), tf.tile(bins, [len(pixels)])], axis=1)
    spread = tf.SparseTensor(
        tf.cast(indices, tf.int64),
        tf.concat(weights, 0),
        tf.cast(tf.stack([batch * height * width, count * crop_h * crop_w]), tf.int64),
    )
    flat = tf.sparse.sparse_dense_matmul(spread, tf.reshape(grads, tf.stack([-1, channels])))
    return tf.reshape(flat, tf.stack([batch, height, width, channels]))


def _axis_neighbours(coordinates: tf.Tensor, size: tf.Tensor, pad: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(lerp, low, high)`` of sample coordinates ``[K, n]`` on an axis of ``size + 2 * pad`` pixels (``size``
    padded by ``pad`` edge copies on each side), as crop_and_resize reads them: ``low = floor``,
    ``high = ceil``, as int32 indices into the unpadded axis (``index - pad`` clamped to ``[0, size - 1]``: a
    pad pixel is the edge pixel; samples outside the padded axis are clamped too, their weight is 0)."""
    low = tf.floor(coordinates)
    lerp = coordinates - low
    last = size - 1
    low_index = tf.clip_by_value(tf.cast(low, tf.int32) - pad, 0, last)
    high_index = tf.clip_by_value(tf.cast(tf.math.ceil(coordinates), tf.int32) - pad, 0, last)
    return lerp, low_index, high_index


def crop_and_resize_bilinear(
    image: tf.Tensor,
    boxes: tf.Tensor,
    box_indices: tf.Tensor,
    crop_size: tuple[int, int],
    pool: int = 1,
    edge_pad: bool = False,
) -> tf.Tensor:
    """``tf.image.crop_and_resize(image, boxes, box_indices, crop_size)`` (bilinear, extrapolation 0), average
    pooled ``pool x pool`` (RoIAlign's bins of ``pool x pool`` samples) when ``pool > 1``. With ``edge_pad`` the
    image is first padded by one copy of its edge pixels on every side (``tf.pad(..., "SYMMETRIC")``; ``boxes``
    are normalized to the padded image) and the gradient goes to the unpadded image directly.

    The forward pass is TF's kernel (and ``tf.nn.avg_pool2d``). The gradient with respect to ``image`` is
    :func:`crop_and_resize_image_gradient` on CPU (race-free, see the module docstring; the pooling folded in)
    and TF's ``CropAndResizeGradImage`` on GPU (atomic adds there). ``boxes`` and ``box_indices`` get no
    gradient: they are treated as constants, as RoIAlign treats its boxes (torchvision's ``roi_align`` has no
    box gradient either).

    Args:
        image: ``[B, H, W, C]`` float32.
        boxes: ``[K, 4]`` float32 normalized ``[y1, x1, y2, x2]``.
        box_indices: ``[K]`` int32 in ``[0, B)``.
        crop_size: ``(h, w)`` Python ints, samples per box side, multiples of ``pool``.
        pool: a Python int >= 1.
        edge_pad: a Python bool.

    Returns:
        ``[K, h / pool, w / pool, C]`` float32.
    """
    crop_size = (int(crop_size[0]), int(crop_size[1]))
    pool = int(pool)
    if pool < 1 or crop_size[0] % pool or crop_size[1] % pool:
        raise ValueError(f"crop size {crop_size} must be a multiple of pool {pool} (>= 1)")
    boxes = tf.stop_gradient(boxes)
    pooled_size = (crop_size[0] // pool, crop_size[1] // pool)
    edge_pad = bool(edge_pad)
    paddings = [[0, 0], [1, 1], [1, 1], [0, 0]]

    @tf.custom_gradient
    def crop(image):
        crops = _pooled_crops(
            tf.pad(image, paddings, mode="SYMMETRIC") if edge_pad else image, boxes, box_indices, crop_size, pool
        )
        crops = tf.ensure_shape(crops, [boxes.shape[0], *pooled_size, image.shape[-1]])
        image_shape = tf.shape(image)

        def grad(upstream):
            if runs_on_gpu(upstream):  # TF's GPU kernel adds atomically: correct, and faster than ours
                if pool > 1:
                    upstream = tf.repeat(tf.repeat(upstream, pool, axis=1), pool, axis=2) / float(pool * pool)
                cropped_shape = image_shape + tf.constant([0, 2, 2, 0]) if edge_pad else image_shape
                gradient = tf.raw_ops.CropAndResizeGradImage(
                    grads=upstream, boxes=boxes, box_ind=box_indices, image_size=cropped_shape, T=tf.float32
                )
                if edge_pad:
                    gradient = tf.raw_ops.MirrorPadGrad(input=gradient, paddings=paddings, mode="SYMMETRIC")
                return gradient
            upstream = tf.ensure_shape(upstream, [None, *pooled_size, None])
            return crop_and_resize_image_gradient(upstream, boxes, box_indices, image_shape, pool, edge_pad)

        return crops, grad

    return crop(tf.convert_to_tensor(image, tf.float32))


def _pooled_crops(image, boxes, box_indices, crop_size: tuple[int, int], pool: int) -> tf.Tensor:
    """``avg_pool2d(crop_and_resize(...), pool)``, the boxes cropped in ``pool ** 2`` groups one after the other,
    so that the unpooled crops held at once are no larger than the pooled result."""
    if pool == 1:
        return tf.image.crop_and_resize(image, boxes, box_indices, crop_size, extrapolation_value=0.0)
    groups = pool * pool
    count = boxes.shape[0] if boxes.shape[0] is not None else tf.shape(boxes)[0]
    pooled: list[tf.Tensor] = []
    for group in range(groups):
        start, stop = count * group // groups, count * (group + 1) // groups
        # the executor would otherwise run every group's crop before the first pooling
        with tf.control_dependencies(pooled[-1:]):
            crops = tf.image.crop_and_resize(
                image, boxes[start:stop], box_indices[start:stop], crop_size, extrapolation_value=0.0
            )
        pooled.append(tf.nn.avg_pool2d(crops, pool, pool, "VALID"))
    return tf.concat(pooled, axis=0)
