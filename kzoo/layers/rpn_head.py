"""Region Proposal Network head (Ren et al., *Faster R-CNN*), shared over FPN levels, torchvision layout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from kzoo.layers.conv3x3 import Conv2D3x3

#: Keras box-delta channel ``4 * a + k`` reads torchvision's ``bbox_pred`` channel ``4 * a + TORCH_DELTA_ORDER[k]``:
#: kzoo's ``(ty, tx, th, tw)`` are torchvision's ``(dy, dx, dh, dw)`` = its indices ``(1, 0, 3, 2)``.
TORCH_DELTA_ORDER = (1, 0, 3, 2)


@keras.saving.register_keras_serializable(package="kzoo")
class RPNHead(keras.layers.Layer):
    """Objectness logits and box deltas for every anchor of every pyramid level.

    One set of weights is applied to each level: ``h = relu(Conv3x3(P_l))``, ``objectness = Conv1x1(h)``
    (``A`` channels), ``deltas = Conv1x1(h)`` (``4A`` channels). Outputs are flattened level by level, inside
    a level row-major over positions ``(i, j)``, inside a position over the ``A`` anchors: row
    ``sum_{k<l} H_k W_k A + (i * W_l + j) * A + a``, exactly the row order of
    :func:`kzoo.ops.anchors.generate_anchors` (ratio outer, size inner for ``a``). Box-delta channel
    ``4 * a + k`` holds component ``k`` of ``(ty, tx, th, tw)`` for anchor ``a``.

    Weight names and torchvision conversion (``rpn.head.`` prefix; torchvision >= 0.13 names the 3x3 conv
    ``conv.0.0``, the published v1 checkpoint ``conv``)::

        conv/kernel       [3, 3, C, C]  <- conv.weight [O, I, 3, 3].transpose(2, 3, 1, 0)
        conv/bias         [C]           <- conv.bias
        cls_logits/kernel [1, 1, C, A]  <- cls_logits.weight.transpose(2, 3, 1, 0)
        cls_logits/bias   [A]           <- cls_logits.bias
        bbox_pred/kernel  [1, 1, C, 4A] <- bbox_pred.weight[perm].transpose(2, 3, 1, 0)
        bbox_pred/bias    [4A]          <- bbox_pred.bias[perm]

    with ``perm = [4 * a + TORCH_DELTA_ORDER[k] for a in range(A) for k in range(4)]`` (torchvision's rows are
    ``(dx, dy, dw, dh)`` per anchor; swap each pair). torchvision's anchors per position are in the same
    order as kzoo's. Initialization follows torchvision: kernels normal with std 0.01, zero biases.

    Args:
        num_anchors: ``A``, anchors per position (the same on every level; 3 for torchvision).
        num_channels: ``C``, channels of the input levels and of the shared 3x3 conv (256).

    Input:
        a list of levels ``[P_l]``, each float ``[B, H_l, W_l, C]`` (a single tensor counts as one level).

    Output:
        ``(objectness, deltas)``: logits ``[B, sum_l H_l W_l A]`` and ``[B, sum_l H_l W_l A, 4]``
        ``(ty, tx, th, tw)``, in the layer's compute dtype.
    """

    def __init__(self, num_anchors: int, num_channels: int = 256, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        num_anchors, num_channels = int(num_anchors), int(num_channels)
        if num_anchors <= 0 or num_channels <= 0:
            raise ValueError(f"RPNHead num_anchors, num_channels must be positive, got {num_anchors}, {num_channels}")
        self.num_anchors = num_anchors
        self.num_channels = num_channels
        common = dict(
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            bias_initializer="zeros",
            dtype=self.dtype_policy,
        )
        self.conv = Conv2D3x3(num_channels, name="conv", **common)
        self.cls_logits = keras.layers.Conv2D(num_anchors, 1, name="cls_logits", **common)
        self.bbox_pred = keras.layers.Conv2D(4 * num_anchors, 1, name="bbox_pred", **common)

    @staticmethod
    def _as_list(inputs) -> list:
        if isinstance(inputs, Sequence) and not isinstance(inputs, str):
            if not inputs:
                raise ValueError("RPNHead got an empty list of levels")
            return list(inputs)
        return [inputs]

    def build(self, input_shape) -> None:
        if isinstance(input_shape, Sequence) and input_shape and isinstance(input_shape[0], int | type(None)):
            input_shape = [input_shape]
        shape = tuple(input_shape[0])
        for s in input_shape:
            if len(s) != 4 or s[-1] not in (None, self.num_channels):
                raise ValueError(f"RPNHead expects levels [B, H, W, {self.num_channels}], got {tuple(s)}")
        self.conv.build(shape)
        hidden = shape[:3] + (self.num_channels,)
        self.cls_logits.build(hidden)
        self.bbox_pred.build(hidden)
        self.built = True

    def call(self, inputs) -> tuple:
        objectness, deltas = [], []
        for level in self._as_list(inputs):
            h = keras.ops.relu(self.conv(level))
            logits = self.cls_logits(h)  # [B, H, W, A]
            boxes = self.bbox_pred(h)  # [B, H, W, 4A]
            batch = level.shape[0] if level.shape[0] is not None else tf.shape(level)[0]
            objectness.append(tf.reshape(logits, [batch, -1]))
            deltas.append(tf.reshape(boxes, [batch, -1, 4]))
        objectness = tf.concat(objectness, axis=1)
        deltas = tf.concat(deltas, axis=1)
        return objectness, deltas

    def compute_output_shape(self, input_shape) -> tuple:
        if isinstance(input_shape, Sequence) and input_shape and isinstance(input_shape[0], int | type(None)):
            input_shape = [input_shape]
        batch = input_shape[0][0]
        total: int | None = 0
        for s in input_shape:
            if s[1] is None or s[2] is None:
                total = None
                break
            total += s[1] * s[2] * self.num_anchors
        return (batch, total), (batch, total, 4)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_anchors=self.num_anchors, num_channels=self.num_channels)
        return config
