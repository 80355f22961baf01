"""RPN proposal generation (torchvision's ``RegionProposalNetwork.filter_proposals``) with static shapes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kzoo.ops.boxes import BBOX_XFORM_CLIP, boxes_larger_than, clip_boxes, decode_boxes
from kzoo.ops.nms import DEFAULT_NMS_METHOD, NMS_METHODS, batched_multiclass_nms, top_k_per_level


def _positive(value, name: str) -> int:
    value = int(value)
    if value < 1:
        raise ValueError(f"ProposalGenerator {name} must be a positive int, got {value}")
    return value


def _optional_positive(value, name: str) -> int | None:
    return None if value is None else _positive(value, name)


@keras.saving.register_keras_serializable(package="kzoo")
class ProposalGenerator(keras.layers.Layer):
    """From RPN outputs over all anchors to a fixed number of proposals per image.

    Call as ``layer(objectness, deltas, anchors, image_shape, level_sizes=None, training=None)``. Per image:

    1. per level, the ``pre_nms_top_k`` anchors with the highest objectness logit
       (:func:`kzoo.ops.nms.top_k_per_level`; all of them for a smaller level);
    2. their deltas decoded on their anchors (:func:`kzoo.ops.boxes.decode_boxes`, weights ``box_weights``,
       ``th, tw`` clamped at ``log(1000/16)``) and clipped to ``image_shape``;
    3. boxes with a side ``< min_size`` are removed;
    4. NMS of the objectness probabilities at ``nms_iou_threshold`` within each level (one NMS with the level
       index as class: torchvision's ``batched_nms(boxes, sigmoid(logits), levels, ...)``), keeping the
       ``post_nms_top_k`` best-scoring boxes over all levels, in descending score order.

    Training and inference use different ``pre_nms_top_k`` / ``post_nms_top_k`` in torchvision (2000/2000
    vs 1000/1000); ``pre_nms_top_k_train`` etc. override the shared values, chosen by ``training``. The
    output size is ``post_nms_top_k`` of the mode, static. No gradient flows through this layer (torchvision
    detaches objectness and deltas here).

    Padding: when fewer than ``post_nms_top_k`` boxes survive, the trailing rows are padding: ``proposals``
    all zeros (an empty box at the origin), ``proposal_scores`` 0, and ``num_proposals`` gives the number of
    valid rows. ``proposal_scores`` are objectness probabilities (sigmoid of the logit) as in torchvision;
    a valid proposal can also have a probability near 0, so use ``num_proposals``, not the score, to mask.

    Args:
        pre_nms_top_k: candidates per level before NMS (torchvision: 1000 at test time, 2000 in training).
        post_nms_top_k: proposals per image after NMS (1000 test / 2000 train).
        nms_iou_threshold: NMS IoU (0.7).
        min_size: smallest proposal side kept, in pixels (1e-3).
        box_weights: ``(wy, wx, wh, ww)`` of the box coder ((1, 1, 1, 1) for the RPN).
        level_sizes: number of anchors of each level, ``H_l * W_l * A`` (Python ints), in the order of the
            anchor rows; may instead be given at call time.
        pre_nms_top_k_train, pre_nms_top_k_test, post_nms_top_k_train, post_nms_top_k_test: per-mode values;
            ``None`` means the shared value.
        nms_method: the NMS kernel, ``"per_image"`` (default: the fastest on CPU, TFLite's builtin NMS op) or
            ``"padded"`` (batched); same results, see :mod:`kzoo.ops.nms`.

    Inputs:
        objectness: float ``[B, A_total]`` logits (:class:`RPNHead` order).
        deltas: float ``[B, A_total, 4]`` ``(ty, tx, th, tw)``.
        anchors: float ``[A_total, 4]`` yxyx anchors in pixels (:func:`kzoo.ops.anchors.generate_anchors`), or
            ``[B, A_total, 4]``.
        image_shape: int or float ``[B, 2]`` ``(height, width)`` of the un-padded resized images (or ``[2]``).

    Output:
        dict of ``proposals`` float32 ``[B, P, 4]`` (yxyx pixels), ``proposal_scores`` float32 ``[B, P]``,
        ``num_proposals`` int32 ``[B]``, with ``P = post_nms_top_k`` of the mode. Computed in float32.
    """

    def __init__(
        self,
        pre_nms_top_k: int = 1000,
        post_nms_top_k: int = 1000,
        nms_iou_threshold: float = 0.7,
        min_size: float = 1e-3,
        box_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        level_sizes: Sequence[int] | None = None,
        pre_nms_top_k_train: int | None = None,
        pre_nms_top_k_test: int | None = None,
        post_nms_top_k_train: int | None = None,
        post_nms_top_k_test: int | None = None,
        nms_method: str = DEFAULT_NMS_METHOD,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if nms_method not in NMS_METHODS:
            raise ValueError(f"ProposalGenerator nms_method must be one of {NMS_METHODS}, got {nms_method!r}")
        self.nms_method = nms_method
        self.pre_nms_top_k = _positive(pre_nms_top_k, "pre_nms_top_k")
        self.post_nms_top_k = _positive(post_nms_top_k, "post_nms_top_k")
        self.pre_nms_top_k_train = _optional_positive(pre_nms_top_k_train, "pre_nms_top_k_train")
        self.pre_nms_top_k_test = _optional_positive(pre_nms_top_k_test, "pre_nms_top_k_test")
        self.post_nms_top_k_train = _optional_positive(post_nms_top_k_train, "post_nms_top_k_train")
        self.post_nms_top_k_test = _optional_positive(post_nms_top_k_test, "post_nms_top_k_test")
        if len(box_weights) != 4:
            raise ValueError(f"ProposalGenerator box_weights must be 4 numbers, got {box_weights!r}")
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.min_size = float(min_size)
        self.box_weights = tuple(float(w) for w in box_weights)
        self.level_sizes = None if level_sizes is None else [int(s) for s in level_sizes]

    def top_k(self, training: bool | None) -> tuple[int, int]:
        """``(pre_nms_top_k, post_nms_top_k)`` for the mode (``training`` true or false/None)."""
        if training:
            pre, post = self.pre_nms_top_k_train, self.post_nms_top_k_train
        else:
            pre, post = self.pre_nms_top_k_test, self.post_nms_top_k_test
        return (self.pre_nms_top_k if pre is None else pre), (self.post_nms_top_k if post is None else post)

    def _level_sizes(self, level_sizes, total) -> list[int]:
        sizes = level_sizes if level_sizes is not None else self.level_sizes
        if sizes is None:
            raise ValueError("ProposalGenerator needs level_sizes (anchors per level) at construction or call")
        sizes = [int(s) for s in sizes]
        if total is not None and sum(sizes) != total:
            raise ValueError(f"ProposalGenerator level_sizes sum to {sum(sizes)} but there are {total} anchors")
        return sizes

    def call(self, objectness, deltas, anchors, image_shape, level_sizes=None, training=None) -> dict:
        objectness = tf.stop_gradient(tf.cast(objectness, tf.float32))
        deltas = tf.stop_gradient(tf.cast(deltas, tf.float32))
        anchors = tf.cast(tf.convert_to_tensor(anchors), tf.float32)
        if objectness.shape.rank != 2:
            raise ValueError(f"ProposalGenerator objectness must be [B, A_total], got {objectness.shape}")
        if deltas.shape.rank != 3 or deltas.shape[-1] != 4:
            raise ValueError(f"ProposalGenerator deltas must be [B, A_total, 4], got {deltas.shape}")
        sizes = self._level_sizes(level_sizes, objectness.shape[1])
        pre, post = self.top_k(training)

        index = top_k_per_level(objectness, sizes, pre)  # [B, M], level by level
        ks = [min(pre, s) for s in sizes]
        levels = tf.constant(np.repeat(np.arange(len(sizes), dtype=np.int32), ks))  # [M]
        scores = tf.gather(objectness, index, batch_dims=1)
        chosen = tf.gather(deltas, index, batch_dims=1)
        if anchors.shape.rank == 2:
            chosen_anchors = tf.gather(anchors, index)
        else:
            chosen_anchors = tf.gather(anchors, index, batch_dims=1)
        boxes = clip_boxes(decode_boxes(chosen, chosen_anchors, self.box_weights, BBOX_XFORM_CLIP), image_shape)
        keep = boxes_larger_than(boxes, self.min_size)
        # NMS ranks the probabilities, as torchvision does (so float32 saturation ties break the same way); removed
        # boxes get -1 rather than -inf: the same NMS input, but int8 calibration sees a finite range (an infinite
        # fill here spread through the same-scale gathers to the objectness conv and zeroed it, *measured*)
        probabilities = tf.where(keep, tf.sigmoid(scores), tf.fill(tf.shape(scores), -1.0))
        classes = tf.broadcast_to(levels[None, :], tf.shape(scores))

        selected, count = batched_multiclass_nms(
            boxes,
            probabilities,
            classes,
            post,
            self.nms_iou_threshold,
            score_threshold=-0.5,
            method=self.nms_method,
        )
        present = tf.range(post)[None, :] < count[:, None]
        proposals = tf.where(present[..., None], tf.gather(boxes, selected, batch_dims=1), 0.0)
        probabilities = tf.where(present, tf.gather(probabilities, selected, batch_dims=1), 0.0)
        return {"proposals": proposals, "proposal_scores": probabilities, "num_proposals": count}

    def compute_output_spec(self, objectness, deltas, anchors, image_shape, level_sizes=None, training=None) -> dict:
        batch = objectness.shape[0]
        _, post = self.top_k(training)
        return {
            "proposals": keras.KerasTensor((batch, post, 4), "float32"),
            "proposal_scores": keras.KerasTensor((batch, post), "float32"),
            "num_proposals": keras.KerasTensor((batch,), "int32"),
        }

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            pre_nms_top_k=self.pre_nms_top_k,
            post_nms_top_k=self.post_nms_top_k,
            nms_iou_threshold=self.nms_iou_threshold,
            min_size=self.min_size,
            box_weights=list(self.box_weights),
            level_sizes=None if self.level_sizes is None else list(self.level_sizes),
            pre_nms_top_k_train=self.pre_nms_top_k_train,
            pre_nms_top_k_test=self.pre_nms_top_k_test,
            post_nms_top_k_train=self.post_nms_top_k_train,
            post_nms_top_k_test=self.post_nms_top_k_test,
            nms_method=self.nms_method,
        )
        return config
