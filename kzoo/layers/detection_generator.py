"""Mask R-CNN / Faster R-CNN inference post-processing: from box-head outputs to a fixed number of detections."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kzoo.ops.boxes import BBOX_XFORM_CLIP, boxes_larger_than, clip_boxes, decode_boxes
from kzoo.ops.nms import DEFAULT_NMS_METHOD, NMS_METHODS, batched_multiclass_nms


@keras.saving.register_keras_serializable(package="kzoo")
class DetectionGenerator(keras.layers.Layer):
    """torchvision's ``RoIHeads.postprocess_detections`` with static shapes.

    Call as ``layer(class_logits, box_deltas, proposals, image_shape, num_proposals=None)``. Per image:

    1. ``softmax`` over the ``K`` class logits;
    2. class-specific decoding of each proposal with its class's deltas (:func:`kzoo.ops.boxes.decode_boxes`,
       weights ``box_weights``, ``th, tw`` clamped at ``log(1000/16)``), then clipping to ``image_shape``;
    3. the background column (class 0) is dropped; the ``N * (K - 1)`` (box, score, class) candidates are
       flattened proposal-major (``n * (K - 1) + k - 1``);
    4. a candidate is kept if ``score > score_threshold`` (strict) and both its sides are ``>= min_box_size``
       (and its proposal is among the first ``num_proposals``, when given);
    5. only the best-scoring candidates go on (a static number, see below);
    6. NMS within each class at ``nms_iou_threshold`` (one NMS over class-offset boxes,
       :func:`kzoo.ops.nms.batched_multiclass_nms`), keeping the best ``max_detections`` over all classes in
       descending score order.

    Padded proposals (all-zero boxes, e.g. from :class:`ProposalGenerator`) decode to empty boxes and fail the
    size test of step 4 whenever ``min_box_size > 0``; ``num_proposals`` masks them explicitly.

    Candidate cap: it matters for the ``"padded"`` NMS kernel; the per-image default, which compares a box only with
    the kept ones, stays cheap for all of the counts below. TF's padded NMS walks every 512-box tile of its input
    when fewer than ``max_detections`` boxes survive, at a cost that grows with the square of the number of tiles,
    whether or not the boxes pass the score threshold: seconds per image for the 90,000 candidates of 1000 proposals
    and 91 classes (the timings are on the benchmarks page, benchmarks/README.md).
    Softmax probabilities sum to 1, so at most ``ceil(1 / score_threshold) - 1`` classes of a proposal can pass the
    threshold: only the best ``N * min(K - 1, ceil(1 / score_threshold))`` candidates enter NMS (20,000 for 1000
    proposals at 0.05), which is exact. ``pre_nms_top_k`` caps the number further: ``None`` (default) keeps the
    exact rule; a cap such as 5000 is much faster and changes the result only when the ``max_detections``-th kept
    box ranks beyond the cap (a box never suppresses a higher-scoring one, so dropping the lowest candidates cannot
    change which higher ones are kept).

    Args:
        num_classes: ``K``, including the background class 0.
        box_weights: ``(wy, wx, wh, ww)`` of the box coder ((10, 10, 5, 5) for the Fast R-CNN head).
        score_threshold: minimum class probability (exclusive).
        nms_iou_threshold: IoU above which a lower-scoring box of the same class is suppressed.
        max_detections: ``D``, detections per image (static output size).
        min_box_size: minimum height and width of a kept box, in pixels.
        pre_nms_top_k: optional cap on the NMS candidates per image (see above).
        nms_method: the NMS kernel, ``"per_image"`` (default: the fastest on CPU, TFLite's builtin NMS op) or
            ``"padded"`` (batched); same results, see :mod:`kzoo.ops.nms`.

    Inputs:
        class_logits: float ``[B, N, K]``.
        box_deltas: float ``[B, N, K, 4]`` ``(ty, tx, th, tw)``.
        proposals: float ``[B, N, 4]`` yxyx boxes in absolute pixels of the resized image.
        image_shape: int or float ``[B, 2]``, ``(height, width)`` of each un-padded resized image (the clip
            window), or ``[2]`` shared by the batch.
        num_proposals: optional int ``[B]``: only the first ``num_proposals[b]`` proposals of image ``b`` count.

    Output:
        dict of ``boxes`` float32 ``[B, D, 4]`` (yxyx, absolute pixels, clipped), ``scores`` float32 ``[B, D]``
        (class probabilities, descending), ``classes`` int32 ``[B, D]`` (``1 .. K - 1``, the contiguous
        label), ``num_detections`` int32 ``[B]``; entries at and beyond ``num_detections[b]`` are zeros. The
        layer computes in float32 whatever the global dtype policy.
    """

    def __init__(
        self,
        num_classes: int,
        box_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
        score_threshold: float = 0.05,
        nms_iou_threshold: float = 0.5,
        max_detections: int = 100,
        min_box_size: float = 1e-2,
        pre_nms_top_k: int | None = None,
        nms_method: str = DEFAULT_NMS_METHOD,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        num_classes, max_detections = int(num_classes), int(max_detections)
        if num_classes < 2:
            raise ValueError(f"DetectionGenerator num_classes (with background) must be >= 2, got {num_classes}")
        if max_detections < 1:
            raise ValueError(f"DetectionGenerator max_detections must be positive, got {max_detections}")
        if len(box_weights) != 4:
            raise ValueError(f"DetectionGenerator box_weights must be 4 numbers, got {box_weights!r}")
        if pre_nms_top_k is not None and int(pre_nms_top_k) < 1:
            raise ValueError(f"DetectionGenerator pre_nms_top_k must be positive or None, got {pre_nms_top_k}")
        self.num_classes = num_classes
        self.box_weights = tuple(float(w) for w in box_weights)
        self.score_threshold = float(score_threshold)
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.max_detections = max_detections
        self.min_box_size = float(min_box_size)
        self.pre_nms_top_k = None if pre_nms_top_k is None else int(pre_nms_top_k)
        if nms_method not in NMS_METHODS:
            raise ValueError(f"DetectionGenerator nms_method must be one of {NMS_METHODS}, got {nms_method!r}")
        self.nms_method = nms_method

    def call(self, class_logits, box_deltas, proposals, image_shape, num_proposals=None) -> dict:
        class_logits = tf.cast(class_logits, tf.float32)
        box_deltas = tf.cast(box_deltas, tf.float32)
        proposals = tf.cast(proposals, tf.float32)
        k = self.num_classes
        if class_logits.shape.rank != 3 or class_logits.shape[-1] != k:
            raise ValueError(f"DetectionGenerator class_logits must be [B, N, {k}], got {class_logits.shape}")
        if box_deltas.shape.rank != 4 or tuple(box_deltas.shape[-2:]) != (k, 4):
            raise ValueError(f"DetectionGenerator box_deltas must be [B, N, {k}, 4], got {box_deltas.shape}")
        if proposals.shape.rank != 3 or proposals.shape[-1] != 4:
            raise ValueError(f"DetectionGenerator proposals must be [B, N, 4], got {proposals.shape}")
        batch = class_logits.shape[0] if class_logits.shape[0] is not None else tf.shape(class_logits)[0]
        num = class_logits.shape[1]
        if num is None:
            raise ValueError("DetectionGenerator needs a static number of proposals N")

        scores = tf.nn.softmax(class_logits, axis=-1)[:, :, 1:]  # [B, N, K-1]
        boxes = decode_boxes(box_deltas[:, :, 1:], proposals[:, :, None, :], self.box_weights, BBOX_XFORM_CLIP)
        boxes = clip_boxes(boxes, image_shape)  # [B, N, K-1, 4]
        valid = tf.logical_and(scores > self.score_threshold, boxes_larger_than(boxes, self.min_box_size))
        if num_proposals is not None:
            in_range = tf.range(num)[None, :] < tf.cast(tf.reshape(num_proposals, [-1, 1]), tf.int32)
            valid = tf.logical_and(valid, in_range[:, :, None])

        candidates = num * (k - 1)
        boxes = tf.reshape(boxes, [batch, candidates, 4])
        # Invalid candidates get a finite score at or below the threshold rather than -inf: the same NMS input (it
        # keeps only scores > score_threshold), but a tensor that int8 calibration can give a usable range.
        invalid = min(-1.0, self.score_threshold - 1.0)
        scores = tf.reshape(tf.where(valid, scores, tf.fill(tf.shape(scores), invalid)), [batch, candidates])
        classes = tf.constant(np.tile(np.arange(1, k, dtype=np.int32), num))  # [N * (K-1)]
        classes = tf.broadcast_to(classes[None, :], tf.shape(scores))
        limit = self.nms_candidates(num)
        if limit < candidates:
            scores, top = tf.math.top_k(scores, k=limit, sorted=False)
            boxes = tf.gather(boxes, top, batch_dims=1)
            classes = tf.gather(classes, top, batch_dims=1)

        keep, count = batched_multiclass_nms(
            boxes,
            scores,
            classes,
            self.max_detections,
            self.nms_iou_threshold,
            self.score_threshold,
            method=self.nms_method,
        )
        present = tf.range(self.max_detections)[None, :] < count[:, None]  # [B, D]
        out_boxes = tf.where(present[..., None], tf.gather(boxes, keep, batch_dims=1), 0.0)
        out_scores = tf.where(present, tf.gather(scores, keep, batch_dims=1), 0.0)
        out_classes = tf.where(present, tf.gather(classes, keep, batch_dims=1), 0)
        return {
            "boxes": out_boxes,
            "scores": out_scores,
            "classes": out_classes,
            "num_detections": count,
        }

    def nms_candidates(self, num_proposals: int) -> int:
        """How many of the ``N * (K - 1)`` candidates enter NMS (a static bound; see the class docstring)."""
        per_proposal = self.num_classes - 1
        if self.score_threshold > 0:
            # m classes with softmax p > t need m * t < 1; one more for float32 rounding of the probabilities.
            per_proposal = min(per_proposal, math.ceil(1.0 / self.score_threshold))
        limit = num_proposals * per_proposal
        return limit if self.pre_nms_top_k is None else min(limit, self.pre_nms_top_k)

    def compute_output_spec(self, class_logits, box_deltas, proposals, image_shape, num_proposals=None) -> dict:
        batch = class_logits.shape[0]
        d = self.max_detections
        return {
            "boxes": keras.KerasTensor((batch, d, 4), "float32"),
            "scores": keras.KerasTensor((batch, d), "float32"),
            "classes": keras.KerasTensor((batch, d), "int32"),
            "num_detections": keras.KerasTensor((batch,), "int32"),
        }

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            box_weights=list(self.box_weights),
            score_threshold=self.score_threshold,
            nms_iou_threshold=self.nms_iou_threshold,
            max_detections=self.max_detections,
            min_box_size=self.min_box_size,
            pre_nms_top_k=self.pre_nms_top_k,
            nms_method=self.nms_method,
        )
        return config
