"""Fast R-CNN box head of Mask R-CNN with FPN: two fully connected layers, classifier and box regressor."""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

FLATTEN_ORDERS = ("nhwc", "nchw")


@keras.saving.register_keras_serializable(package="kzoo")
class BoxHead(keras.layers.Layer):
    """TwoMLPHead + FastRCNNPredictor: per-RoI class logits and class-specific box deltas.

    Each RoI's pooled features ``[S, S, C]`` are flattened, then ``fc6`` (``fc_dim``) + ReLU, ``fc7``
    (``fc_dim``) + ReLU, then ``cls_score`` (``num_classes`` logits, background at index 0) and ``bbox_pred``
    (``4 * num_classes`` deltas ``(ty, tx, th, tw)`` per class, to be decoded with weights ``(10, 10, 5, 5)``).

    ``flatten_order`` decides the feature index that ``fc6``'s kernel rows follow:

    * ``"nhwc"``: Keras ``Flatten`` order, ``h * S * C + w * C + c``;
    * ``"nchw"``: torchvision's order ``c * S * S + h * S + w`` (the RoI features are transposed to
      ``[C, S, S]`` before flattening). Use it with converted torchvision weights.

    Both orders describe the same function class; a kernel for one converts to the other by permuting its
    rows (``kernel_nhwc = kernel_nchw.reshape(C, S, S, F).transpose(1, 2, 0, 3).reshape(S*S*C, F)``).

    Weight names and torchvision conversion (prefixes ``roi_heads.box_head.`` for fc6/fc7 and
    ``roi_heads.box_predictor.`` for cls_score/bbox_pred; Linear ``[O, I]`` -> Keras ``[I, O]``)::

        fc6/kernel       [S*S*C, fc_dim] <- fc6.weight.T   (flatten_order="nchw")
        fc7/kernel       [fc_dim, fc_dim] <- fc7.weight.T
        cls_score/kernel [fc_dim, K]     <- cls_score.weight.T
        bbox_pred/kernel [fc_dim, 4K]    <- bbox_pred.weight[perm].T,  bbox_pred/bias <- bbox_pred.bias[perm]

    (every ``bias`` copies directly) with ``perm = [4 * k + (1, 0, 3, 2)[j] for k in range(K) for j in
    range(4)]``: torchvision's rows are ``(dx, dy, dw, dh)`` per class. Initialization follows torchvision:
    fc6/fc7 PyTorch ``Linear`` default (uniform, bound ``1/sqrt(fan_in)`` for kernel and bias), cls_score
    normal std 0.01, bbox_pred normal std 0.001, their biases 0.

    Args:
        num_classes: ``K``, including the background class 0 (91 for torchvision's COCO).
        fc_dim: width of fc6 and fc7 (1024).
        flatten_order: ``"nhwc"`` or ``"nchw"`` (see above).

    Input:
        RoI features, float ``[B, N, S, S, C]`` (``S = 7``), or ``[R, S, S, C]``.

    Output:
        ``(class_logits, box_deltas)``: ``[B, N, K]`` and ``[B, N, K, 4]`` (``[R, K]``, ``[R, K, 4]`` for 4-D
        input), in the layer's compute dtype.
    """

    def __init__(self, num_classes: int, fc_dim: int = 1024, flatten_order: str = "nhwc", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        num_classes, fc_dim = int(num_classes), int(fc_dim)
        if num_classes < 2:
            raise ValueError(f"BoxHead num_classes counts the background and must be >= 2, got {num_classes}")
        if fc_dim <= 0:
            raise ValueError(f"BoxHead fc_dim must be positive, got {fc_dim}")
        if flatten_order not in FLATTEN_ORDERS:
            raise ValueError(f"BoxHead flatten_order must be one of {FLATTEN_ORDERS}, got {flatten_order!r}")
        self.num_classes = num_classes
        self.fc_dim = fc_dim
        self.flatten_order = flatten_order
        # Sublayers are created in build (fc6's PyTorch-style initializer needs its fan-in), in weight order.
        self.fc6: Any = None
        self.fc7: Any = None
        self.cls_score: Any = None
        self.bbox_pred: Any = None

    def _torch_linear(self, units: int, fan_in: int, name: str) -> keras.layers.Dense:
        """A Dense initialized like PyTorch's ``nn.Linear`` (kaiming_uniform a=sqrt(5); bias U(+-1/sqrt(fan_in)))."""
        bound = 1.0 / math.sqrt(fan_in)
        return keras.layers.Dense(
            units,
            kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
            bias_initializer=keras.initializers.RandomUniform(-bound, bound),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, input_shape: tuple) -> None:
        input_shape = tuple(input_shape)
        if len(input_shape) not in (4, 5) or None in input_shape[-3:]:
            raise ValueError(f"BoxHead expects RoI features [B, N, S, S, C] with static S and C, got {input_shape}")
        flat = input_shape[-3] * input_shape[-2] * input_shape[-1]
        self.fc6 = self._torch_linear(self.fc_dim, flat, "fc6")
        self.fc7 = self._torch_linear(self.fc_dim, self.fc_dim, "fc7")
        self.cls_score = keras.layers.Dense(
            self.num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            bias_initializer="zeros",
            dtype=self.dtype_policy,
            name="cls_score",
        )
        self.bbox_pred = keras.layers.Dense(
            4 * self.num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
            bias_initializer="zeros",
            dtype=self.dtype_policy,
            name="bbox_pred",
        )
        self.fc6.build(input_shape[:-3] + (flat,))
        self.fc7.build(input_shape[:-3] + (self.fc_dim,))
        self.cls_score.build(input_shape[:-3] + (self.fc_dim,))
        self.bbox_pred.build(input_shape[:-3] + (self.fc_dim,))
        self.built = True

    def call(self, inputs) -> tuple:
        x = inputs
        rank = len(x.shape)
        h, w, c = x.shape[-3:]
        if self.flatten_order == "nchw":
            perm = list(range(rank - 3)) + [rank - 1, rank - 3, rank - 2]
            x = tf.transpose(x, perm)
        lead = [d if d is not None else tf.shape(x)[i] for i, d in enumerate(x.shape[:-3])]
        x = tf.reshape(x, lead + [h * w * c])
        x = keras.ops.relu(self.fc6(x))
        x = keras.ops.relu(self.fc7(x))
        logits = self.cls_score(x)
        deltas = tf.reshape(self.bbox_pred(x), lead + [self.num_classes, 4])
        return logits, deltas

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        lead = tuple(input_shape)[:-3]
        return lead + (self.num_classes,), lead + (self.num_classes, 4)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_classes=self.num_classes, fc_dim=self.fc_dim, flatten_order=self.flatten_order)
        return config
