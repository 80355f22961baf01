"""RoIAlign (He, Gkioxari, Dollar, Girshick, *Mask R-CNN*), single-level and multi-level FPN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from kzoo.ops.kernel_choices import LEVEL_EPS_PLACEMENTS
from kzoo.ops.kernel_choices import ROI_ALIGN_BORDERS as BORDERS
from kzoo.ops.kernel_choices import ROI_ALIGN_METHODS as METHODS
from kzoo.ops.roi_align_ops import fpn_levels, roi_align_crop_and_resize, roi_align_gather


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        pair = (value, value)
    elif isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"RoIAlign {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) <= 0:
        raise ValueError(f"RoIAlign {name} must be positive, got {value!r}")
    return pair


@keras.saving.register_keras_serializable(package="kzoo")
class RoIAlign(keras.layers.Layer):
    """RoIAlign: bilinear sampling at regular points in each bin of each RoI, no quantization, averaged.

    Call as ``layer(features, boxes)``. For every RoI and every one of the ``output_size x output_size``
    bins, ``sampling_ratio x sampling_ratio`` points are sampled at regular positions inside the bin
    (``Y1 + (i + 0.5) * h / n`` along y with ``n = sampling_ratio * output_size`` samples per RoI side,
    same along x), each by bilinear interpolation of the feature map, and averaged. Coordinates follow
    ``torchvision.ops.roi_align`` exactly: a box is mapped to feature-map pixels by ``Y1 = ymin * scale -
    offset``, ``Y2 = ymax * scale - offset`` with ``scale = 1 / stride``; ``offset = 0.5`` when ``aligned``
    (pixel centres at half-integers, the correct geometry), ``0`` when not; with ``aligned=False`` the RoI
    height and width are raised to at least 1 feature-map pixel (torchvision's legacy rule, which the
    published torchvision Mask R-CNN weights were trained with).

    Border rule (``border``), for a sample at ``(y, x)`` on an ``H x W`` map:

    * ``"torchvision"`` (default): if ``y < -1`` or ``y > H`` or ``x < -1`` or ``x > W`` the sample is 0;
      otherwise ``y`` is clamped to ``[0, H - 1]`` and ``x`` to ``[0, W - 1]`` before interpolating, so a
      sample within one pixel outside the map reads the edge row/column. Implemented by padding each map
      by one pixel with edge replication and shifting the boxes by +1 pixel.
    * ``"zero"``: ``tf.image.crop_and_resize``'s own rule: a sample outside ``[0, H - 1] x [0, W - 1]`` is 0
      (including samples between the last row and ``H``).

    Multi-level (FPN, the default): ``features`` is the list ``[P_min_level, ..., P_max_level]`` with
    strides ``2 ** level``; each RoI is pooled from the level the FPN rule gives it
    (:func:`kzoo.ops.roi_align_ops.fpn_levels`, the one place that rule is written: torchvision's
    ``MultiScaleRoIAlign`` / ``LevelMapper``, ``level_eps`` placing its ``1e-6`` inside or after the ``log2``).
    Single level: pass ``scale`` (``1 / stride``) and one feature map (a tensor or a one-element list).

    Kernels (``method``): the gather kernel repeats crop_and_resize's float32 arithmetic step by step, so the
    two agree in TF on CPU, and the TFLite gather model with them (the differences: benchmarks/README.md):

    * ``"crop_and_resize"`` (default): ``tf.image.crop_and_resize`` to ``(s * m, s * m)`` then ``s x s``
      average pooling, with the box mapping ``a = Y1 + 0.5 * h / n``, ``b = Y1 + h - 0.5 * h / n``,
      ``y1n = a / (H' - 1)``, ``y2n = b / (H' - 1)`` (``H'`` the padded height). One call per level on
      that level's RoIs only (partitioned by level, put back in order afterwards).
      ``CropAndResize`` is not a TFLite builtin op. Its feature gradient on CPU is kzoo's own
      (:mod:`kzoo.ops.crop_and_resize`): TF's CPU gradient kernel loses updates when RoIs overlap.
    * ``"gather"``: explicit bilinear sampling by gathers from the flattened pyramid, each RoI reading its
      own level only; TFLite builtin ops only (use it for ``.tflite`` export).

    Boxes are treated as constants: no gradient flows to them (as in torchvision and the paper's training).
    Features are computed in float32; the output has the layer's compute dtype.

    Args:
        output_size: ``m``, output bins per side, an int or ``(height, width)`` (7 for the box head, 14 for
            the mask head).
        sampling_ratio: samples per bin side ``s`` (the paper and torchvision use 2). Must be > 0:
            torchvision's adaptive ``<= 0`` mode makes the shapes data dependent.
        aligned: half-pixel offset (see above).
        min_level, max_level: the pyramid levels in ``features`` (strides ``2 ** level``).
        canonical_size, canonical_level: the FPN level assignment (224 and 4 in the FPN paper).
        level_eps: ``"in_log"`` (default) or ``"after_log"`` (torchvision's exact rule), see above.
        border: ``"torchvision"`` or ``"zero"``.
        method: ``"crop_and_resize"`` or ``"gather"``.
        scale: single-level mode when set: feature-map pixels per image pixel (``1 / stride``).

    Input shapes:
        features: a list of ``max_level - min_level + 1`` tensors ``[B, H_l, W_l, C]`` (NHWC, float), or
            one such tensor with ``scale``.
        boxes: ``[B, N, 4]`` float ``[ymin, xmin, ymax, xmax]`` in absolute image pixels (cast to float32).

    Output shape:
        ``[B, N, output_height, output_width, C]`` in the layer's compute dtype.
    """

    def __init__(
        self,
        output_size: int | Sequence[int] = 7,
        sampling_ratio: int = 2,
        aligned: bool = False,
        min_level: int = 2,
        max_level: int = 5,
        canonical_size: float = 224.0,
        canonical_level: int = 4,
        border: str = "torchvision",
        method: str = "crop_and_resize",
        scale: float | None = None,
        level_eps: str = "in_log",
        **kwargs: Any,
    ) -> None:
        # Boxes are pixel coordinates: never autocast them to float16/bfloat16 under mixed precision.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.output_size = _pair(output_size, "output_size")
        if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int) or sampling_ratio <= 0:
            raise ValueError(
                f"RoIAlign sampling_ratio must be a positive int (samples per bin side), got {sampling_ratio!r}; "
                "torchvision's adaptive sampling_ratio <= 0 is not supported because it makes shapes data dependent"
            )
        if border not in BORDERS:
            raise ValueError(f"RoIAlign border must be one of {BORDERS}, got {border!r}")
        if method not in METHODS:
            raise ValueError(f"RoIAlign method must be one of {METHODS}, got {method!r}")
        if level_eps not in LEVEL_EPS_PLACEMENTS:
            raise ValueError(f"RoIAlign level_eps must be one of {LEVEL_EPS_PLACEMENTS}, got {level_eps!r}")
        if int(min_level) > int(max_level):
            raise ValueError(f"RoIAlign min_level ({min_level}) must be <= max_level ({max_level})")
        if scale is not None and not float(scale) > 0:
            raise ValueError(f"RoIAlign scale must be > 0, got {scale!r}")
        if not float(canonical_size) > 0:
            raise ValueError(f"RoIAlign canonical_size must be > 0, got {canonical_size!r}")
        self.sampling_ratio = sampling_ratio
        self.aligned = bool(aligned)
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        self.canonical_size = float(canonical_size)
        self.canonical_level = int(canonical_level)
        self.border = border
        self.method = method
        self.scale = None if scale is None else float(scale)
        self.level_eps = level_eps

    @property
    def num_levels(self) -> int:
        return 1 if self.scale is not None else self.max_level - self.min_level + 1

    def _as_list(self, features, is_list: bool) -> list:
        if is_list:
            return list(features)
        if self.scale is None and self.num_levels != 1:
            raise ValueError(
                f"RoIAlign got a single feature map but is configured for levels {self.min_level}..{self.max_level}: "
                "pass a list of feature maps, or set scale= (1 / stride) for single-level use"
            )
        return [features]

    def _check_shapes(self, feature_shapes: list, boxes_shape) -> None:
        if len(feature_shapes) != self.num_levels:
            where = (
                f"levels {self.min_level}..{self.max_level}" if self.scale is None else "single-level mode (scale set)"
            )
            raise ValueError(
                f"RoIAlign expects {self.num_levels} feature map(s) for {where}, got {len(feature_shapes)}"
            )
        channels = None
        for index, shape in enumerate(feature_shapes):
            if shape is None or len(shape) != 4:
                raise ValueError(
                    f"RoIAlign feature map {index} must be 4-D [batch, height, width, channels], got shape {shape}"
                )
            if shape[-1] is not None:
                if channels is not None and shape[-1] != channels:
                    raise ValueError(f"RoIAlign feature maps must have the same channels, got {feature_shapes}")
                channels = shape[-1]
            if self.border == "zero" and any(d is not None and d < 2 for d in shape[1:3]):
                raise ValueError(f"RoIAlign border='zero' needs maps of at least 2 x 2, got shape {shape}")
        if boxes_shape is None or len(boxes_shape) != 3 or (boxes_shape[-1] is not None and boxes_shape[-1] != 4):
            raise ValueError(
                f"RoIAlign boxes must have shape [batch, num_boxes, 4] ([ymin, xmin, ymax, xmax] in image pixels), "
                f"got shape {boxes_shape}"
            )

    def build(self, features_shape, boxes_shape) -> None:
        shapes = self._as_list(features_shape, _is_shape_list(features_shape))
        self._check_shapes([tuple(s) if s is not None else None for s in shapes], boxes_shape)
        self.built = True

    def call(self, features, boxes):
        features = self._as_list(features, isinstance(features, (list, tuple)))
        self._check_shapes([tuple(f.shape) for f in features], tuple(boxes.shape))
        for index, feature in enumerate(features):
            if not feature.dtype.is_floating:
                raise TypeError(f"RoIAlign feature map {index} must be a float tensor, got {feature.dtype.name}")
        features = [tf.cast(f, tf.float32) for f in features]
        boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
        if self.scale is not None:
            scales = [self.scale]
            levels = None
        else:
            scales = [2.0**-level for level in range(self.min_level, self.max_level + 1)]
            levels = None
            if self.num_levels > 1:
                levels = self.levels(boxes) - self.min_level
        kernel = roi_align_gather if self.method == "gather" else roi_align_crop_and_resize
        out = kernel(features, boxes, levels, scales, self.output_size, self.sampling_ratio, self.aligned, self.border)
        return tf.cast(out, self.compute_dtype)

    def levels(self, boxes) -> tf.Tensor:
        """The FPN level (``min_level``..``max_level``, int32 ``[B, N]``) each box is pooled from."""
        return fpn_levels(
            boxes, self.min_level, self.max_level, self.canonical_size, self.canonical_level, self.level_eps
        )

    def compute_output_shape(self, features_shape, boxes_shape) -> tuple:
        shapes = self._as_list(features_shape, _is_shape_list(features_shape))
        channels = shapes[0][-1]
        return (boxes_shape[0], boxes_shape[1], self.output_size[0], self.output_size[1], channels)

    def compute_output_spec(self, features, boxes):
        features = self._as_list(features, isinstance(features, (list, tuple)))
        self._check_shapes([tuple(f.shape) for f in features], tuple(boxes.shape))
        shape = self.compute_output_shape([f.shape for f in features], boxes.shape)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            output_size=list(self.output_size),
            sampling_ratio=self.sampling_ratio,
            aligned=self.aligned,
            min_level=self.min_level,
            max_level=self.max_level,
            canonical_size=self.canonical_size,
            canonical_level=self.canonical_level,
            border=self.border,
            method=self.method,
            scale=self.scale,
            level_eps=self.level_eps,
        )
        return config


def _is_shape_list(shape) -> bool:
    """True for a list of shapes (multi-level), False for one shape (a tuple/list of ints or None)."""
    return isinstance(shape, (list, tuple)) and len(shape) > 0 and isinstance(shape[0], (list, tuple))
