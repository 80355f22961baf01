"""RoIAlign kernels (Mask R-CNN) as pure TensorFlow functions with no weights.

Boxes are ``[ymin, xmin, ymax, xmax]`` float32 in absolute image pixels. A box is sampled on a feature map
of stride ``1 / scale`` exactly as ``torchvision.ops.roi_align`` does: with ``n = sampling_ratio *
output_size`` samples per side, sample ``i`` of the y axis lies at ``Y1 + (i + 0.5) * h / n`` in feature-map
pixels, where ``Y1 = ymin * scale - offset``, ``h = ymax * scale - offset - Y1``, ``offset = 0.5`` when
``aligned`` (pixel centres at half-integers) and ``0`` otherwise, and ``h`` is raised to at least 1 when not
``aligned`` (torchvision's legacy rule). Each output bin is the mean of its ``sampling_ratio ** 2`` bilinear
samples.

Border rules for a sample at ``(y, x)`` on an ``H x W`` map:

* ``"torchvision"``: a sample with ``y < -1``, ``y > H``, ``x < -1`` or ``x > W`` contributes 0; otherwise
  the coordinates are clamped to ``[0, H - 1] x [0, W - 1]`` (a sample within one pixel of the map reads the
  edge row/column). Implemented as bilinear interpolation on the map padded by one pixel with edge
  replication, with every coordinate shifted by +1.
* ``"zero"``: plain ``tf.image.crop_and_resize`` semantics, a sample outside ``[0, H - 1] x [0, W - 1]``
  contributes 0.

Two kernels compute the same thing:

* ``roi_align_crop_and_resize``: ``tf.image.crop_and_resize`` to ``(n, n)`` then ``s x s`` average pooling,
  with a race-free image gradient (:mod:`kzoo.ops.crop_and_resize`; TF's CPU gradient kernel loses updates).
  The box is mapped to crop_and_resize's normalized coordinates so that its ``n`` evenly spaced samples
  (``y1n * (H - 1) + i * (y2n - y1n) * (H - 1) / (n - 1)``) land on RoIAlign's sample points:
  ``a = Y1 + 0.5 * h / n``, ``b = Y1 + h - 0.5 * h / n``, ``y1n = a / (H - 1)``, ``y2n = b / (H - 1)``.
  ``CropAndResize`` is not a TFLite builtin.
* ``roi_align_gather``: explicit bilinear sampling with gathers over the flattened pyramid, built from
  TFLite builtin ops only. It reproduces crop_and_resize's float32 arithmetic step by step (same normalized
  boxes, same ``in_y = y1n * (H - 1) + i * height_scale``, same lerp order), so the two kernels agree to
  float32 rounding of the final average.

Every function here takes static sizes where it can; shapes of the outputs are static when the inputs' are.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from kzoo.ops.crop_and_resize import crop_and_resize_bilinear, crop_and_resize_sample_coordinates
from kzoo.ops.kernel_choices import LEVEL_EPS_PLACEMENTS
from kzoo.ops.kernel_choices import ROI_ALIGN_BORDERS as BORDERS


def fpn_levels(
    boxes: tf.Tensor,
    min_level: int,
    max_level: int,
    canonical_size: float = 224.0,
    canonical_level: int = 4,
    eps_placement: str = "in_log",
) -> tf.Tensor:
    """FPN level of each box (Lin et al., FPN, eq. 1), as torchvision's ``LevelMapper``.

    ``k = floor(canonical_level + log2(sqrt(w * h) / canonical_size + 1e-6))`` (``eps_placement="in_log"``)
    or ``k = floor(canonical_level + log2(sqrt(w * h) / canonical_size) + 1e-6)`` (``"after_log"``, exactly
    torchvision's ``LevelMapper``), clamped to ``[min_level, max_level]``; ``w``, ``h`` in image pixels. The
    two differ only for boxes within about 1e-6 (relative) of a level boundary. Degenerate or inverted boxes
    (area <= 0, e.g. padding) get ``min_level`` instead of a NaN.

    Args:
        boxes: ``[..., 4]`` float ``[ymin, xmin, ymax, xmax]`` in image pixels.
        eps_placement: ``"in_log"`` or ``"after_log"`` (see above).

    Returns:
        ``[...]`` int32 levels in ``[min_level, max_level]``.
    """
    if eps_placement not in LEVEL_EPS_PLACEMENTS:
        raise ValueError(f"eps_placement must be one of {LEVEL_EPS_PLACEMENTS}, got {eps_placement!r}")
    boxes = tf.cast(boxes, tf.float32)
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    area = tf.maximum(height * width, 0.0)
    if eps_placement == "in_log":
        log2 = tf.math.log(tf.sqrt(area) / float(canonical_size) + 1e-6) / tf.math.log(2.0)
        level = tf.floor(float(canonical_level) + log2)
    else:  # the maximum keeps empty boxes finite (they are clamped to min_level anyway)
        ratio = tf.maximum(tf.sqrt(area) / float(canonical_size), 1e-30)
        level = tf.floor(float(canonical_level) + tf.math.log(ratio) / tf.math.log(2.0) + 1e-6)
    level = tf.clip_by_value(level, float(min_level), float(max_level))
    return tf.cast(level, tf.int32)


def normalized_sample_boxes(
    boxes: tf.Tensor,
    scale,
    height,
    width,
    samples: tuple[int, int],
    aligned: bool,
    border: str,
) -> tf.Tensor:
    """crop_and_resize boxes whose evenly spaced samples are RoIAlign's sample points.

    Args:
        boxes: ``[..., 4]`` float32 ``[ymin, xmin, ymax, xmax]`` in image pixels.
        scale: feature-map pixels per image pixel (``1 / stride``), a float or a tensor broadcastable to
            ``boxes[..., 0]``.
        height, width: the (unpadded) feature-map size, ints or float tensors like ``scale``.
        samples: ``(n_y, n_x)`` samples per RoI side (``sampling_ratio * output_size``).
        aligned: torchvision's ``aligned`` (half-pixel offset; no minimum RoI size).
        border: ``"torchvision"`` (coordinates refer to the map padded by one pixel on every side) or
            ``"zero"`` (the map itself).

    Returns:
        ``[..., 4]`` float32 normalized ``[y1n, x1n, y2n, x2n]`` for ``tf.image.crop_and_resize`` on the
        (padded, for ``"torchvision"``) map.
    """
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    offset = 0.5 if aligned else 0.0
    pad = 2.0 if border == "torchvision" else 0.0
    shift = 1.0 if border == "torchvision" else 0.0

    def one_axis(low, high, size, count):
        start = low * scale - offset
        end = high * scale - offset
        length = end - start
        if not aligned:
            length = tf.maximum(length, 1.0)
        half = 0.5 * length / float(count)
        first = start + half + shift
        last = start + length - half + shift
        denominator = tf.cast(size, tf.float32) + (pad - 1.0)
        return first / denominator, last / denominator

    boxes = tf.cast(boxes, tf.float32)
    y1n, y2n = one_axis(boxes[..., 0], boxes[..., 2], height, samples[0])
    x1n, x2n = one_axis(boxes[..., 1], boxes[..., 3], width, samples[1])
    return tf.stack([y1n, x1n, y2n, x2n], axis=-1)


def _static_or_dynamic_hw(feature: tf.Tensor) -> tuple:
    static = feature.shape
    dynamic = tf.shape(feature)
    height = static[1] if static[1] is not None else dynamic[1]
    width = static[2] if static[2] is not None else dynamic[2]
    return height, width


def _restore_shape(pooled, boxes, output_size, static_channels, batch, count, channels) -> tf.Tensor:
    out = tf.reshape(pooled, [batch, count, output_size[0], output_size[1], channels])
    out.set_shape([boxes.shape[0], boxes.shape[1], output_size[0], output_size[1], static_channels])
    return out


def _pool(crops: tf.Tensor, sampling_ratio: int) -> tf.Tensor:
    if sampling_ratio == 1:
        return crops
    return tf.nn.avg_pool2d(crops, sampling_ratio, sampling_ratio, "VALID")


def roi_align_crop_and_resize(
    features: Sequence[tf.Tensor],
    boxes: tf.Tensor,
    levels: tf.Tensor | None,
    scales: Sequence[float],
    output_size: tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
    border: str,
) -> tf.Tensor:
    """RoIAlign with ``tf.image.crop_and_resize`` (the fast TF kernel; not a TFLite builtin).

    Multi-level cost choice: the RoIs are partitioned by level (``tf.dynamic_partition``), each level's map is
    sampled for its own RoIs only (one crop_and_resize call per level) and the pooled results are put back in
    the RoIs' order (``tf.dynamic_stitch``). Bilinear work and the ``n x n`` crops exist once per RoI, never for
    the other levels, so time and peak memory do not grow with the number of levels.

    Gradients flow to ``features`` only (race-free on CPU, see :mod:`kzoo.ops.crop_and_resize`); ``boxes``
    are constants.

    Args:
        features: ``L`` maps ``[B, H_l, W_l, C]`` float32.
        boxes: ``[B, N, 4]`` float32 image pixels.
        levels: ``[B, N]`` int32 index into ``features`` (0-based) or ``None`` when ``L == 1``.
        scales: ``L`` floats, ``1 / stride`` of each map.

    Returns:
        ``[B, N, out_h, out_w, C]`` float32.
    """
    samples = (sampling_ratio * output_size[0], sampling_ratio * output_size[1])
    batch = tf.shape(boxes)[0]
    count = tf.shape(boxes)[1]
    channels = features[0].shape[-1] if features[0].shape[-1] is not None else tf.shape(features[0])[-1]
    flat_boxes = tf.reshape(boxes, [-1, 4])
    box_indices = tf.reshape(tf.repeat(tf.range(batch, dtype=tf.int32), count), [-1])
    if levels is not None and len(features) > 1:
        positions = tf.dynamic_partition(tf.range(batch * count), tf.reshape(levels, [-1]), len(features))
    else:
        positions = [tf.range(batch * count)]
    pooled = []
    for feature, scale, where in zip(features, scales, positions):
        height, width = _static_or_dynamic_hw(feature)
        crop_boxes = normalized_sample_boxes(
            tf.gather(flat_boxes, where), scale, height, width, samples, aligned, border
        )
        pooled.append(
            crop_and_resize_bilinear(
                feature,
                crop_boxes,
                tf.gather(box_indices, where),
                samples,
                sampling_ratio,
                edge_pad=border == "torchvision",
            )
        )
    total = pooled[0] if len(pooled) == 1 else tf.dynamic_stitch(positions, pooled)
    return _restore_shape(total, boxes, output_size, features[0].shape[-1], batch, count, channels)


def _axis_samples(first, last, size, count: int, border: str):
    """Sample coordinates, validity and the two neighbour indices along one axis, like crop_and_resize.

    ``first``/``last``: ``[B, N]`` normalized box ends; ``size``: ``[B, N]`` float unpadded map size.
    Returns ``(low_index, high_index, lerp, valid)``, each ``[B, N, count]`` (indices int32 into the
    unpadded map, already clamped).
    """
    extent = size + (1.0 if border == "torchvision" else -1.0)  # (padded size) - 1, as crop_and_resize sees it
    coord, valid = crop_and_resize_sample_coordinates(first, last, extent, count)
    extent = extent[..., None]
    clamped = tf.clip_by_value(coord, 0.0, extent)  # keeps gathers in range; invalid samples are masked
    low = tf.floor(clamped)
    high = tf.math.ceil(clamped)
    lerp = coord - low
    last_index = size[..., None] - 1.0
    if border == "torchvision":  # padded index p reads unpadded index clamp(p - 1): edge replication
        low, high = low - 1.0, high - 1.0
    low = tf.cast(tf.clip_by_value(low, 0.0, last_index), tf.int32)
    high = tf.cast(tf.clip_by_value(high, 0.0, last_index), tf.int32)
    return low, high, lerp, valid


def roi_align_gather(
    features: Sequence[tf.Tensor],
    boxes: tf.Tensor,
    levels: tf.Tensor | None,
    scales: Sequence[float],
    output_size: tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
    border: str,
) -> tf.Tensor:
    """RoIAlign by explicit bilinear gathers over the flattened pyramid (TFLite builtin ops only).

    Multi-level cost choice: all levels are flattened and concatenated into one ``[B * S, C]`` table
    (``S = sum_l H_l * W_l``); each RoI looks up its own level's size, scale and row offset, and its
    ``n * n`` samples gather 4 neighbours each from that level only. Work and memory are
    ``O(4 * B * N * n * n * C)`` whatever the number of levels; nothing is computed for the other levels.

    Ops used: GATHER, FLOOR, CEIL, CAST, MINIMUM/MAXIMUM, comparisons, SELECT_V2, arithmetic, RESHAPE,
    CONCATENATION, AVERAGE_POOL_2D.

    Args and returns: as ``roi_align_crop_and_resize``.
    """
    samples = (sampling_ratio * output_size[0], sampling_ratio * output_size[1])
    batch = tf.shape(boxes)[0]
    count = tf.shape(boxes)[1]
    channels = features[0].shape[-1]
    if channels is None:
        channels = tf.shape(features[0])[-1]

    heights, widths, offsets, flat = [], [], [], []
    offset = 0
    for feature in features:
        height, width = _static_or_dynamic_hw(feature)
        heights.append(height)
        widths.append(width)
        offsets.append(offset)
        offset = offset + height * width
        flat.append(tf.reshape(feature, [batch, height * width, channels]))
    table = tf.concat(flat, axis=1) if len(flat) > 1 else flat[0]
    per_image = offset  # S
    table = tf.reshape(table, [-1, channels])

    if levels is None or len(features) == 1:
        ones = tf.ones_like(boxes[..., 0])
        scale = float(scales[0])
        height = tf.cast(heights[0], tf.float32) * ones
        width = tf.cast(widths[0], tf.float32) * ones
        row_offset = tf.zeros_like(boxes[..., 0], dtype=tf.int32) + tf.cast(offsets[0], tf.int32)
    else:
        scale = tf.gather(tf.constant([float(s) for s in scales], tf.float32), levels)
        height = tf.gather(tf.cast(tf.stack(heights), tf.float32), levels)
        width = tf.gather(tf.cast(tf.stack(widths), tf.float32), levels)
        row_offset = tf.gather(tf.cast(tf.stack(offsets), tf.int32), levels)

    norm = normalized_sample_boxes(boxes, scale, height, width, samples, aligned, border)
    y_low, y_high, y_lerp, y_valid = _axis_samples(norm[..., 0], norm[..., 2], height, samples[0], border)
    x_low, x_high, x_lerp, x_valid = _axis_samples(norm[..., 1], norm[..., 3], width, samples[1], border)

    image_offset = tf.range(batch, dtype=tf.int32)[:, None] * tf.cast(per_image, tf.int32)
    base = (image_offset + row_offset)[..., None, None]  # [B, N, 1, 1]
    row_width = tf.cast(width, tf.int32)[..., None, None]
    top = base + y_low[..., :, None] * row_width  # [B, N, n_y, 1]
    bottom = base + y_high[..., :, None] * row_width
    left = x_low[..., None, :]  # [B, N, 1, n_x]
    right = x_high[..., None, :]

    def corner(rows, cols):
        return tf.gather(table, rows + cols)  # [B, N, n_y, n_x, C]

    x_w = x_lerp[..., None, :, None]
    y_w = y_lerp[..., :, None, None]
    top_left = corner(top, left)
    upper = top_left + (corner(top, right) - top_left) * x_w
    bottom_left = corner(bottom, left)
    lower = bottom_left + (corner(bottom, right) - bottom_left) * x_w
    values = upper + (lower - upper) * y_w
    valid = tf.logical_and(y_valid[..., :, None], x_valid[..., None, :])[..., None]
    values = tf.where(valid, values, 0.0)

    crops = tf.reshape(values, [-1, samples[0], samples[1], channels])
    pooled = _pool(crops, sampling_ratio)
    return _restore_shape(pooled, boxes, output_size, features[0].shape[-1], batch, count, channels)
