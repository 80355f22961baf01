"""Batched, fixed-size non-maximum suppression and per-level top-k.

Static output shapes, under ``jit_compile=True`` too, and builtin-only TFLite conversion (unlike
``tf.image.combined_non_max_suppression``, which needs Select TF ops). Boxes are ``[ymin, xmin, ymax, xmax]``
with ``ymin <= ymax`` and ``xmin <= xmax``, any units.

Semantics (those of ``tf.image.non_max_suppression`` and torchvision's ``nms``): greedy in descending
score order; a box is suppressed by a kept box when their IoU is ``> iou_threshold`` (strictly; the
padded and TFLite ops suppress at ``>=``, so the threshold is passed on raised by one float32 ulp); only
boxes with ``score > score_threshold`` take part; the kept indices come in descending score order.

Two kernels (``method``) give the same indices:

* ``"per_image"`` (default, :data:`DEFAULT_NMS_METHOD`): one ``NonMaxSuppressionV4`` op per image. TF's CPU kernel
  is greedy and compares a candidate only with the boxes already kept, where the padded kernel computes the IoU of
  every pair of 512-box tiles in ``WHILE`` loops of small ops; with the RPN's thousands of boxes per image the
  per-image kernel is the faster one (benchmarks/mask_rcnn.py). It also compiles under XLA, and it converts to
  TFLite's single builtin ``NON_MAX_SUPPRESSION_V4`` instead of ``WHILE`` loops, which ``.tflite`` export needs:
  post-training full-integer quantization calibrates and quantizes every float op inside the padded kernel's loops
  (its quantized IoU ``DIV`` then fails at run time on a zero union, and the quantizer cannot keep loop bodies in
  float), whereas the single NMS op stays float. Same suppression rule: TFLite's kernel suppresses at ``IoU >= t``
  like the padded op, so it gets the same one-ulp-raised threshold; TF's own CPU kernel suppresses at ``IoU > t``,
  so in TF the two kernels can only differ for an IoU exactly one ulp above the threshold. TFLite's kernel breaks
  score ties in its own order and mishandles boxes of zero area (it repeats an index once one is selected), so the
  boxes enter the op already in the greedy order with distinct scores, and zero-area boxes are kept out of it and
  merged back in that order: their IoU with any box is 0, so they never suppress and are never suppressed, exactly
  as in the padded kernel. This kernel also fills in no ``+-FLT_MAX`` values (nor does
  :func:`batched_multiclass_nms`, for either kernel): int8 calibration gives a tensor holding them a range of
  ``~1e38``, and every other value of it rounds to 0.
* ``"padded"``: ``tf.image.non_max_suppression_padded`` on the whole batch (the converter lowers its tiled
  algorithm to ``WHILE`` loops of builtins).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from kzoo.ops.kernel_choices import DEFAULT_NMS_METHOD, NMS_METHODS

_FLOAT_MAX = float(np.finfo(np.float32).max)


def _check_batched(boxes: tf.Tensor, scores: tf.Tensor) -> None:
    if boxes.shape.rank != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [B, N, 4], got shape {boxes.shape}")
    if scores.shape.rank != 2:
        raise ValueError(f"scores must be [B, N], got shape {scores.shape}")
    boxes.shape[:2].assert_is_compatible_with(scores.shape)


def non_max_suppression_padded(
    boxes: tf.Tensor,
    scores: tf.Tensor,
    max_output_size: int,
    iou_threshold: float = 0.5,
    score_threshold: float = float("-inf"),
    method: str = DEFAULT_NMS_METHOD,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-image greedy NMS over a batch, padded to ``max_output_size`` results.

    Invalid (padded) inputs should carry a score ``<= score_threshold`` (e.g. ``-inf``); they are
    never selected, also with the default ``score_threshold=-inf``.

    ``tf.image.non_max_suppression_padded`` alone treats a box whose four coordinates are all
    ``<= 0`` as absent (it marks suppressed boxes by zeroing them); this wrapper translates the boxes
    of an image (NMS is translation-invariant) whenever a scoring box lies in that region, so such
    boxes behave like any other.

    Args:
        boxes: float ``[B, N, 4]`` yxyx boxes (cast to float32).
        scores: float ``[B, N]`` (cast to float32).
        max_output_size: ``K``, a Python int: the most boxes kept per image.
        iou_threshold: suppress a box whose IoU with a kept, higher-scoring box exceeds this.
        score_threshold: only boxes with ``score > score_threshold`` are considered.
        method: ``"per_image"`` (default) or ``"padded"``; same indices (see the module docstring).

    Returns:
        ``(indices, num_valid)``: int32 ``[B, K]`` indices into ``N`` in descending score order,
        of which the first ``num_valid[b]`` are valid and the rest are 0; int32 ``[B]``.
    """
    max_output_size = int(max_output_size)
    if max_output_size < 1:
        raise ValueError(f"max_output_size must be a positive int, got {max_output_size}")
    if method not in NMS_METHODS:
        raise ValueError(f"NMS method must be one of {NMS_METHODS}, got {method!r}")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"NMS iou_threshold must be in [0, 1] (1 suppresses nothing), got {iou_threshold}")
    boxes = tf.cast(tf.convert_to_tensor(boxes), tf.float32)
    scores = tf.cast(tf.convert_to_tensor(scores), tf.float32)
    _check_batched(boxes, scores)
    # A finite threshold, so the op's own score filter always runs (it is skipped for -inf).
    threshold = max(float(score_threshold), -_FLOAT_MAX)
    # The op suppresses at IoU >= threshold; one ulp up gives IoU > iou_threshold for float32 IoUs.
    strict_iou = float(np.nextafter(np.float32(iou_threshold), np.float32(np.inf)))
    if method == "per_image":  # no +-FLT_MAX fill-ins: int8 calibration would give their tensors a useless range
        # the op accepts thresholds in [0, 1] only; IoU never exceeds 1, so 1 suppresses nothing in TF either
        return _per_image_nms(boxes, scores, max_output_size, min(strict_iou, 1.0), threshold)
    valid = scores > threshold
    scores = tf.where(valid, scores, tf.fill(tf.shape(scores), -_FLOAT_MAX))
    far_corner = tf.maximum(boxes[..., 2], boxes[..., 3])
    lowest = tf.reduce_min(tf.where(valid, far_corner, tf.fill(tf.shape(far_corner), _FLOAT_MAX)), axis=1)
    shift = tf.where(lowest > 0.0, tf.zeros_like(lowest), 1.0 - lowest)
    boxes = boxes + shift[:, None, None]
    indices, num_valid = tf.image.non_max_suppression_padded(
        boxes,
        scores,
        max_output_size,
        iou_threshold=strict_iou,
        score_threshold=threshold,
        pad_to_max_output_size=True,
        canonicalized_coordinates=True,
    )
    batch = boxes.shape[0]
    indices = tf.reshape(indices, [-1, max_output_size])
    indices.set_shape([batch, max_output_size])
    num_valid = tf.reshape(num_valid, [-1])
    num_valid.set_shape([batch])
    return indices, num_valid


def _per_image_nms(
    boxes: tf.Tensor, scores: tf.Tensor, max_output_size: int, iou_threshold: float, score_threshold: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """The ``"per_image"`` kernel: ``NonMaxSuppressionV4`` on each image (a Python loop over a static batch,
    else ``tf.map_fn``). Only boxes with ``score > score_threshold`` take part."""

    def one_image(args: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        image_boxes, image_scores = args
        return _nms_one_image(image_boxes, image_scores, max_output_size, iou_threshold, score_threshold)

    batch = boxes.shape[0]
    if batch is not None:
        results = [one_image((boxes[b], scores[b])) for b in range(batch)]
        if not results:
            return tf.zeros([0, max_output_size], tf.int32), tf.zeros([0], tf.int32)
        return tf.stack([r[0] for r in results]), tf.stack([r[1] for r in results])
    return tf.map_fn(
        one_image,
        (boxes, scores),
        fn_output_signature=(tf.TensorSpec([max_output_size], tf.int32), tf.TensorSpec([], tf.int32)),
    )


def _nms_one_image(
    boxes: tf.Tensor, scores: tf.Tensor, max_output_size: int, iou_threshold: float, score_threshold: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """Greedy NMS of one image ``[N, 4]`` with one NMS op. Returns int32 ``[K]`` indices (0 after the valid ones)
    and the int32 count.

    The boxes are first put in the greedy order (descending score, the lower index first on ties: the order of
    ``tf.math.top_k``, in TF and in TFLite) and the op gets the distinct scores ``N, N - 1, ..., 1`` in that
    order, so an op whose own sort breaks ties differently (TFLite's does) still visits the boxes in the padded
    kernel's order. Zero-area boxes stay out of the op and are merged back by their position in the order.
    """
    num = boxes.shape[0] if boxes.shape[0] is not None else tf.shape(boxes)[0]
    positive = tf.logical_and(boxes[:, 2] > boxes[:, 0], boxes[:, 3] > boxes[:, 1])
    candidate = scores > score_threshold
    _, order = tf.math.top_k(scores, k=num, sorted=True)  # [N] greedy order
    sorted_candidate = tf.gather(candidate, order)
    sorted_positive = tf.gather(positive, order)
    rank = tf.cast(num - tf.range(num), tf.float32)  # N .. 1, exact in float32 below 2 ** 24 boxes
    nms_scores = tf.where(tf.logical_and(sorted_candidate, sorted_positive), rank, tf.zeros_like(rank))
    op_size = min(max_output_size, num) if isinstance(num, int) else max_output_size  # XLA's op needs <= N
    selected, count = tf.raw_ops.NonMaxSuppressionV4(
        boxes=tf.gather(boxes, order),
        scores=nms_scores,
        max_output_size=op_size,
        iou_threshold=iou_threshold,
        score_threshold=0.5,
        pad_to_max_output_size=True,
    )
    selected = tf.reshape(selected, [op_size])
    picked = tf.cast(tf.range(op_size) < count, tf.int32)
    kept = tf.scatter_nd(selected[:, None], picked, tf.reshape(num, [1])) > 0  # [N], in greedy order
    kept = tf.logical_or(kept, tf.logical_and(sorted_candidate, tf.logical_not(sorted_positive)))
    total = tf.minimum(tf.reduce_sum(tf.cast(kept, tf.int32)), max_output_size)
    top = min(max_output_size, num) if isinstance(num, int) else tf.minimum(max_output_size, num)
    _, first = tf.math.top_k(tf.where(kept, rank, tf.zeros_like(rank)), k=top, sorted=True)  # kept, in order
    indices = tf.gather(order, first)
    indices = tf.pad(indices, [[0, max_output_size - tf.shape(indices)[0]]])
    indices = tf.where(tf.range(max_output_size) < total, indices, 0)
    return tf.reshape(indices, [max_output_size]), total


def batched_multiclass_nms(
    boxes: tf.Tensor,
    scores: tf.Tensor,
    classes: tf.Tensor,
    max_output_size: int,
    iou_threshold: float = 0.5,
    score_threshold: float = float("-inf"),
    method: str = DEFAULT_NMS_METHOD,
) -> tuple[tf.Tensor, tf.Tensor]:
    """NMS within each class (boxes of different classes never suppress each other), as one NMS.

    Each image's scoring boxes are moved by ``class_id * (max_coord - min_coord + 1)`` (a variant of
    torchvision's ``batched_nms`` offset ``class_id * (max_coord + 1)`` that also separates classes
    when coordinates are negative), so boxes of different classes cannot overlap, then one
    :func:`non_max_suppression_padded` runs. Use levels as classes for torchvision's per-level RPN NMS.
    As in torchvision, the offsets grow coordinates to about ``num_classes * image_size``, which
    costs float32 precision on the IoU of very small boxes.

    Args:
        boxes: float ``[B, N, 4]`` yxyx boxes.
        scores: float ``[B, N]``.
        classes: int ``[B, N]`` class ids ``>= 0`` (any value for boxes with ``score <= score_threshold``).
        max_output_size: ``K``, a Python int: the most boxes kept per image, over all classes.
        iou_threshold: suppression IoU, as in :func:`non_max_suppression_padded`.
        score_threshold: only boxes with ``score > score_threshold`` are considered.
        method: the NMS kernel, ``"per_image"`` (default) or ``"padded"`` (see the module docstring).

    Returns:
        ``(indices, num_valid)``: int32 ``[B, K]`` indices into ``N`` in descending score order over
        all classes, the first ``num_valid[b]`` valid and the rest 0; int32 ``[B]``.
    """
    boxes = tf.cast(tf.convert_to_tensor(boxes), tf.float32)
    scores = tf.cast(tf.convert_to_tensor(scores), tf.float32)
    _check_batched(boxes, scores)
    threshold = max(float(score_threshold), -_FLOAT_MAX)
    valid = (scores > threshold)[..., None]  # [B, N, 1]
    # min / max over the valid boxes, with the extremes of all boxes (finite) as the fill-ins rather than +-FLT_MAX,
    # which would leave int8 calibration a useless range; the same values
    lowest = tf.reduce_min(boxes, axis=[1, 2], keepdims=True)
    highest = tf.reduce_max(boxes, axis=[1, 2], keepdims=True)
    lo = tf.reduce_min(tf.where(valid, boxes, highest), axis=[1, 2])
    hi = tf.reduce_max(tf.where(valid, boxes, lowest), axis=[1, 2])
    any_valid = tf.reduce_any(valid, axis=[1, 2])
    lo = tf.where(any_valid, lo, tf.zeros_like(lo))
    hi = tf.where(any_valid, hi, tf.zeros_like(hi))
    span = hi - lo + 1.0
    offsets = tf.cast(classes, tf.float32) * span[:, None]  # [B, N]
    moved = boxes - lo[:, None, None] + offsets[..., None]
    moved = tf.where(valid, moved, tf.zeros_like(moved))
    return non_max_suppression_padded(moved, scores, max_output_size, iou_threshold, score_threshold, method)


def top_k_per_level(scores: tf.Tensor, level_sizes: Sequence[int], k_per_level: int | Sequence[int]) -> tf.Tensor:
    """Indices of the ``k`` best scores of each level, levels concatenated (RPN's pre-NMS top-k).

    The scores of level ``l`` are the slice ``[sum(level_sizes[:l]), sum(level_sizes[:l + 1]))`` of
    ``N`` (the anchor order of :func:`kzoo.ops.anchors.generate_anchors`). Level ``l`` contributes
    ``k_l = min(k_per_level[l], level_sizes[l])`` indices in descending score order, so the output
    shape is static; output columns ``[sum(k[:l]), sum(k[:l + 1]))`` belong to level ``l``.

    Args:
        scores: float ``[B, N]``, ``N = sum(level_sizes)``.
        level_sizes: number of entries of each level (Python ints).
        k_per_level: one int for all levels or one per level.

    Returns:
        int32 ``[B, sum_l k_l]`` indices into ``N``.
    """
    scores = tf.convert_to_tensor(scores)
    if scores.shape.rank != 2:
        raise ValueError(f"scores must be [B, N], got shape {scores.shape}")
    level_sizes = [int(s) for s in level_sizes]
    total = scores.shape[1]
    if total is not None and total != sum(level_sizes):
        raise ValueError(f"level_sizes sum to {sum(level_sizes)} but scores has N={total}")
    if isinstance(k_per_level, Sequence):
        ks = [int(k) for k in k_per_level]
        if len(ks) != len(level_sizes):
            raise ValueError(f"got {len(level_sizes)} levels but {len(ks)} values of k_per_level")
    else:
        ks = [int(k_per_level)] * len(level_sizes)
    out = []
    start = 0
    for size, k in zip(level_sizes, ks):
        k = min(k, size)
        if k > 0:
            _, idx = tf.math.top_k(scores[:, start : start + size], k=k, sorted=True)
            out.append(idx + start)
        start += size
    if not out:
        return tf.zeros([tf.shape(scores)[0], 0], tf.int32)
    return tf.concat(out, axis=1)
