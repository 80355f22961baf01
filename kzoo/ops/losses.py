"""Mask R-CNN losses on padded, statically shaped batches, normalized as torchvision normalizes them.

Every loss is a float32 scalar over the whole batch (torchvision concatenates the images' samples before
averaging); counts are floored at 1 so a batch with nothing sampled, or no positives, gives a finite loss
(0 for the terms with nothing to sum). Logits may be float16/bfloat16 (mixed precision): they are cast to
float32 first. Box deltas are ``(ty, tx, th, tw)`` (:func:`kzoo.ops.boxes.encode_boxes`).
"""

from __future__ import annotations

import tensorflow as tf

#: torchvision's smooth-L1 ``beta`` for the RPN and the box head.
SMOOTH_L1_BETA = 1.0 / 9.0


def smooth_l1(x: tf.Tensor, beta: float = SMOOTH_L1_BETA) -> tf.Tensor:
    """Element-wise smooth L1 (Huber / beta): ``0.5 x^2 / beta`` where ``|x| < beta``, else ``|x| - 0.5 beta``.

    ``beta = 0`` is plain L1 (as ``torch.nn.functional.smooth_l1_loss``).
    """
    ax = tf.abs(x)
    if beta <= 0:
        return ax
    return tf.where(ax < beta, 0.5 * tf.square(ax) / beta, ax - 0.5 * beta)


def _count(mask: tf.Tensor) -> tf.Tensor:
    return tf.maximum(tf.reduce_sum(tf.cast(mask, tf.float32)), 1.0)


def rpn_losses(
    objectness_logits: tf.Tensor,
    rpn_deltas: tf.Tensor,
    labels: tf.Tensor,
    sampled: tf.Tensor,
    box_targets: tf.Tensor,
    beta: float = SMOOTH_L1_BETA,
) -> tuple[tf.Tensor, tf.Tensor]:
    """RPN objectness and box losses (torchvision's ``RegionProposalNetwork.compute_loss``).

    * objectness: sigmoid binary cross-entropy of the sampled anchors (target ``labels == 1``), averaged over
      the sampled anchors of the batch;
    * box: smooth L1 (``beta``, default 1/9) of ``rpn_deltas - box_targets`` summed over the 4 coordinates and
      the sampled *positive* anchors, divided by the number of sampled anchors (positives and negatives) of
      the batch.

    Args:
        objectness_logits: float ``[B, A]``.
        rpn_deltas: float ``[B, A, 4]`` predicted ``(ty, tx, th, tw)``.
        labels: int ``[B, A]`` 1 / 0 / -1 (:func:`kzoo.ops.targets.rpn_targets`).
        sampled: bool ``[B, A]``.
        box_targets: float ``[B, A, 4]``.
        beta: the smooth-L1 transition point.

    Returns:
        ``(objectness_loss, box_loss)`` float32 scalars; both 0 when nothing is sampled.
    """
    logits = tf.cast(objectness_logits, tf.float32)
    deltas = tf.cast(rpn_deltas, tf.float32)
    box_targets = tf.cast(box_targets, tf.float32)
    sampled = tf.cast(sampled, tf.bool)
    positive = tf.logical_and(sampled, tf.equal(labels, 1))
    count = _count(sampled)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(positive, tf.float32), logits=logits)
    objectness_loss = tf.reduce_sum(tf.where(sampled, bce, 0.0)) / count
    per_anchor = tf.reduce_sum(smooth_l1(deltas - box_targets, beta), axis=-1)
    box_loss = tf.reduce_sum(tf.where(positive, per_anchor, 0.0)) / count
    return objectness_loss, box_loss


def box_losses(
    class_logits: tf.Tensor,
    box_deltas: tf.Tensor,
    labels: tf.Tensor,
    box_targets: tf.Tensor,
    sampled: tf.Tensor,
    beta: float = SMOOTH_L1_BETA,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Box-head classification and regression losses (torchvision's ``fastrcnn_loss``).

    * classification: softmax cross-entropy over the ``K`` classes (0 the background), averaged over the
      sampled RoIs of the batch;
    * box: smooth L1 (``beta``, default 1/9) between the deltas predicted for the RoI's ground-truth class
      and ``box_targets``, summed over the 4 coordinates and the sampled positive RoIs (``labels > 0``),
      divided by the number of sampled RoIs of the batch.

    Args:
        class_logits: float ``[B, R, K]``.
        box_deltas: float ``[B, R, K, 4]`` class-specific ``(ty, tx, th, tw)`` (``[B, R, K * 4]`` is accepted).
        labels: int ``[B, R]`` classes of the RoIs, 0 background (:func:`kzoo.ops.targets.roi_targets`).
        box_targets: float ``[B, R, 4]``.
        sampled: bool ``[B, R]``, the RoIs that count (empty slots excluded).
        beta: the smooth-L1 transition point.

    Returns:
        ``(classification_loss, box_loss)`` float32 scalars; both 0 when nothing is sampled.
    """
    logits = tf.cast(class_logits, tf.float32)
    deltas = tf.cast(box_deltas, tf.float32)
    if deltas.shape.rank == 3:
        deltas = tf.reshape(deltas, tf.concat([tf.shape(deltas)[:2], [-1, 4]], 0))
    labels = tf.cast(labels, tf.int32)
    sampled = tf.cast(sampled, tf.bool)
    safe_labels = tf.where(sampled, labels, 0)
    count = _count(sampled)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels, logits=logits)
    classification_loss = tf.reduce_sum(tf.where(sampled, ce, 0.0)) / count
    positive = tf.logical_and(sampled, labels > 0)
    class_deltas = tf.gather(deltas, safe_labels, axis=2, batch_dims=2)  # [B, R, 4], the label's deltas
    per_roi = tf.reduce_sum(smooth_l1(class_deltas - tf.cast(box_targets, tf.float32), beta), axis=-1)
    box_loss = tf.reduce_sum(tf.where(positive, per_roi, 0.0)) / count
    return classification_loss, box_loss


def mask_loss(
    mask_logits: tf.Tensor,
    labels: tf.Tensor,
    mask_targets: tf.Tensor,
    positive: tf.Tensor,
) -> tf.Tensor:
    """Mask loss (torchvision's ``maskrcnn_loss``): per-pixel sigmoid BCE on the ground-truth class's channel.

    The mean over the positive RoIs of the batch and their ``28 x 28`` pixels of
    ``BCE(sigmoid(mask_logits[..., labels]), mask_targets)``; other classes' channels get no loss.

    Args:
        mask_logits: float ``[B, R, H, W, K]`` (channels last; ``R`` may be a prefix of the sampled RoIs, e.g.
            :func:`kzoo.ops.targets.roi_targets`' positives-first slots, with ``labels``/``positive`` sliced to
            match), or ``[B, R, H, W]``: each RoI's channel of its label already chosen (``MaskHead``'s
            ``classes``).
        labels: int ``[B, R]`` ground-truth classes (1..K-1 where positive).
        mask_targets: float ``[B, R, H, W]`` in ``[0, 1]`` (:func:`kzoo.ops.targets.mask_targets`).
        positive: bool ``[B, R]``.

    Returns:
        float32 scalar; 0 (never NaN) when there is no positive RoI.
    """
    chosen = tf.cast(mask_logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    positive = tf.cast(positive, tf.bool)
    if chosen.shape.rank == 5:
        chosen = tf.gather(chosen, tf.where(positive, labels, 0), axis=4, batch_dims=2)  # [B, R, H, W]
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(mask_targets, tf.float32), logits=chosen)
    per_roi = tf.reduce_sum(bce, axis=[2, 3])
    pixels = tf.cast(tf.shape(chosen)[2] * tf.shape(chosen)[3], tf.float32)
    return tf.reduce_sum(tf.where(positive, per_roi, 0.0)) / (_count(positive) * pixels)
