"""Every hyper-parameter of Mask R-CNN in one frozen dataclass (defaults: the paper's R50-FPN)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from kzoo.ops.kernel_choices import (
    DEFAULT_NMS_METHOD,
    LEVEL_EPS_PLACEMENTS,
    NMS_METHODS,
    ROI_ALIGN_BORDERS,
    ROI_ALIGN_METHODS,
)
from kzoo.utils.structs import ConfigError, check_choice, check_count, check_finite, check_fraction

ANCHOR_STRIDES = ("nominal", "torchvision")
ROI_LEVEL_EPS = LEVEL_EPS_PLACEMENTS
#: ``backbone`` names (kzoo.models.backbones.BACKBONES) and every backbone's ``norm`` choices together
BACKBONE_NAMES = ("resnet50", "resnet101", "mobilenet_v2", "small_convnet")
NORMS = ("frozen", "batch", "sync_batch", "group")
FLATTEN_ORDERS = ("nhwc", "nchw")


@dataclasses.dataclass(frozen=True)
class MaskRCNNConfig:
    """Hyper-parameters of a Mask R-CNN; the defaults are those of the paper's ResNet-50-FPN
    (and of torchvision's ``maskrcnn_resnet50_fpn``).

    Class ids: ``num_classes`` counts the background, which is class 0.
    Boxes: ``[ymin, xmin, ymax, xmax]`` in pixels; box deltas ``(ty, tx, th, tw)`` scaled by the weights.
    """

    presets: ClassVar[dict[str, Any]]  # PRESETS, set below (not a field)

    # counts the background; None only in an experiment config whose data gives it (the task sets it, see
    # kzoo.config.config_from_dict): a model cannot be built before
    num_classes: int | None = 91
    # backbone
    backbone: str = "resnet50"  # resnet50 | resnet101 | mobilenet_v2 | small_convnet
    backbone_width: float = 1.0  # width multiplier of mobilenet_v2 (alpha) and small_convnet
    stride_in_1x1: bool = False  # False: stride in the 3x3 conv (torchvision); True: in the 1x1 (Caffe)
    norm: str = "frozen"  # resnet: frozen | batch | sync_batch; small_convnet: group | batch
    norm_epsilon: float = 1e-5
    frozen_stages: int = 2  # 0 none, 1 stem, 2 stem + first residual stage (torchvision's default)
    # feature pyramid
    fpn_channels: int = 256
    # anchors and RPN
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)  # one per level P2..P6
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # height / width
    anchor_offset: float = 0.0  # 0: centers at k * stride (torchvision); 0.5: at (k + 0.5) * stride
    # nominal: level l's anchors step 2**l pixels; torchvision: canvas side // feature side (its AnchorGenerator),
    # which differs only on P6 when canvas side / 32 is odd (e.g. 800 -> 13 cells of stride 61, not 64)
    anchor_strides: str = "nominal"
    rpn_box_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    rpn_pre_nms_top_k_train: int = 2000
    rpn_pre_nms_top_k_test: int = 1000
    rpn_post_nms_top_k_train: int = 2000
    rpn_post_nms_top_k_test: int = 1000
    rpn_nms_threshold: float = 0.7
    rpn_min_size: float = 1e-3
    # training targets (torchvision's defaults)
    rpn_positive_iou: float = 0.7
    rpn_negative_iou: float = 0.3
    rpn_samples_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    roi_positive_iou: float = 0.5
    roi_negative_iou: float = 0.5
    roi_samples_per_image: int = 512
    roi_positive_fraction: float = 0.25
    # RoIAlign
    box_roi_size: int = 7
    mask_roi_size: int = 14
    roi_sampling_ratio: int = 2
    roi_aligned: bool = False
    roi_border: str = "torchvision"
    roi_method: str = "crop_and_resize"  # crop_and_resize | gather (TFLite builtins, XLA)
    canonical_size: float = 224.0
    canonical_level: int = 4
    # in_log: floor(4 + log2(s / 224 + 1e-6)); after_log: floor(4 + log2(s / 224) + 1e-6), torchvision's LevelMapper
    roi_level_eps: str = "in_log"
    # box head and detections
    box_fc_dim: int = 1024
    box_flatten_order: str = "nhwc"  # nchw for torchvision weights
    box_weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)
    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    max_detections: int = 100
    min_box_size: float = 1e-2
    # NMS candidates per image after the score threshold (None: all, torchvision's exact rule). The cap matters for
    # the padded NMS kernel, which walks every 512-box tile when fewer than max_detections survive (see
    # DetectionGenerator); the per-image default compares a box only with the kept ones.
    detection_pre_nms_top_k: int | None = 1000
    # NMS kernel of the RPN and the detections: per_image (the faster on CPU; TFLite's builtin NMS op, which
    # full-integer .tflite export needs) | padded (batched); same results (kzoo.ops.nms)
    nms_method: str = DEFAULT_NMS_METHOD
    # mask head
    mask_num_convs: int = 4
    mask_channels: int = 256
    # numerics: "bfloat16" runs the backbone, FPN and heads in bfloat16 (float32 variables; anchors, proposals,
    # RoIAlign sampling, box decoding, NMS and outputs stay float32): faster on CPUs with AVX512-BF16
    compute_dtype: str = "float32"  # float32 | bfloat16
    # input
    min_size: int = 800
    max_size: int = 1333
    size_divisible: int = 32
    image_mean: tuple[float, ...] = (0.485, 0.456, 0.406)  # of pixels scaled to [0, 1], RGB
    image_std: tuple[float, ...] = (0.229, 0.224, 0.225)
    # training configs: the weights training starts from, "coco" or a .weights.h5 file of this architecture with
    # any class count (the class-specific predictors are reset when it differs); the model itself ignores it
    init_weights: str | None = None

    def __post_init__(self) -> None:
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {self.num_classes}")
        if len(self.anchor_sizes) != 5:
            raise ValueError(f"anchor_sizes needs one size per level P2..P6 (5), got {self.anchor_sizes}")
        for name in ("rpn_box_weights", "box_weights"):
            if len(getattr(self, name)) != 4:
                raise ValueError(f"{name} needs 4 values (ty, tx, th, tw), got {getattr(self, name)}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("image_mean and image_std need 3 values (RGB)")
        if self.min_size < 1 or self.max_size < self.min_size:
            raise ValueError(f"need 1 <= min_size <= max_size, got {self.min_size}, {self.max_size}")
        if self.anchor_strides not in ANCHOR_STRIDES:
            raise ValueError(f"anchor_strides must be one of {ANCHOR_STRIDES}, got {self.anchor_strides!r}")
        if self.roi_level_eps not in ROI_LEVEL_EPS:
            raise ValueError(f"roi_level_eps must be one of {ROI_LEVEL_EPS}, got {self.roi_level_eps!r}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"compute_dtype must be 'float32' or 'bfloat16', got {self.compute_dtype!r}")
        for name, value in (("rpn_nms_threshold", self.rpn_nms_threshold), ("nms_threshold", self.nms_threshold)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is an IoU and must be in [0, 1] (1 suppresses nothing), got {value}")
        if self.roi_method not in ROI_ALIGN_METHODS:
            raise ValueError(f"roi_method must be one of {ROI_ALIGN_METHODS}, got {self.roi_method!r}")
        if self.roi_border not in ROI_ALIGN_BORDERS:
            raise ValueError(f"roi_border must be one of {ROI_ALIGN_BORDERS}, got {self.roi_border!r}")
        if self.nms_method not in NMS_METHODS:
            raise ValueError(f"nms_method must be one of {NMS_METHODS}, got {self.nms_method!r}")
        if self.size_divisible % 32:
            raise ValueError(f"size_divisible must be a multiple of 32 (the stride of P5), got {self.size_divisible}")
        self._check_ranges()

    def _check_ranges(self) -> None:
        """Every number in its range (ConfigError naming ``model.<field>``): probabilities, IoU thresholds and
        fractions finite in [0, 1]; counts positive and within int32 (they become tensor sizes); sizes, widths and
        weights finite and positive."""
        check_choice("model.backbone", self.backbone, BACKBONE_NAMES)
        check_choice("model.norm", self.norm, NORMS)
        check_choice("model.box_flatten_order", self.box_flatten_order, FLATTEN_ORDERS)
        check_count("model.num_classes", self.num_classes, 2)
        check_count("model.frozen_stages", self.frozen_stages, 0, 5)
        for key in (
            "fpn_channels",
            "rpn_pre_nms_top_k_train",
            "rpn_pre_nms_top_k_test",
            "rpn_post_nms_top_k_train",
            "rpn_post_nms_top_k_test",
            "rpn_samples_per_image",
            "roi_samples_per_image",
            "box_roi_size",
            "mask_roi_size",
            "roi_sampling_ratio",
            "box_fc_dim",
            "max_detections",
            "detection_pre_nms_top_k",
            "mask_channels",
            "min_size",
            "max_size",
            "size_divisible",
        ):
            check_count(f"model.{key}", getattr(self, key))
        check_count("model.mask_num_convs", self.mask_num_convs, 0)
        check_count("model.canonical_level", self.canonical_level, 2, 6)  # within the pyramid P2..P6
        for key in (
            "rpn_nms_threshold",
            "rpn_positive_iou",
            "rpn_negative_iou",
            "rpn_positive_fraction",
            "roi_positive_iou",
            "roi_negative_iou",
            "roi_positive_fraction",
            "score_threshold",
            "nms_threshold",
            "anchor_offset",
        ):
            check_fraction(f"model.{key}", getattr(self, key))
        for low, high in (("rpn_negative_iou", "rpn_positive_iou"), ("roi_negative_iou", "roi_positive_iou")):
            if getattr(self, low) > getattr(self, high):
                raise ConfigError(
                    f"config key 'model.{low}' ({getattr(self, low)}) must be <= 'model.{high}' ({getattr(self, high)})"
                )
        for key in ("backbone_width", "canonical_size"):
            check_finite(f"model.{key}", getattr(self, key), 0.0, low_open=True)
        for key in ("norm_epsilon", "rpn_min_size", "min_box_size"):
            check_finite(f"model.{key}", getattr(self, key), 0.0)
        for key in ("anchor_sizes", "aspect_ratios", "rpn_box_weights", "box_weights", "image_std"):
            if not getattr(self, key):
                raise ConfigError(f"config key 'model.{key}' must hold at least one value")
            for value in getattr(self, key):
                check_finite(f"model.{key}", value, 0.0, low_open=True)
        for value in self.image_mean:
            check_finite("model.image_mean", value)


def torchvision_config(num_classes: int = 91, **overrides: Any) -> MaskRCNNConfig:
    """The :class:`MaskRCNNConfig` that computes exactly what torchvision's ``maskrcnn_resnet50_fpn`` computes.

    Every rule is spelled out (not left to defaults): ResNet-50 with the stride in the 3x3 conv and symmetric
    padding; frozen BatchNorm with ``eps = 0.0`` (torchvision overwrites the eps of its COCO_V1 weights to 0;
    pass ``norm_epsilon=1e-5`` for a model built with ``weights=None, weights_backbone=None``, whose plain
    ``BatchNorm2d`` layers use 1e-5 in eval mode); FPN P2-P5 plus the max-pool P6; anchors 32..512 with
    ratios 0.5/1/2, centers at ``k * stride`` and torchvision's strides ``canvas // feature size``; RPN
    1000/1000 (test) and 2000/2000 (train) proposals, NMS 0.7, min size 1e-3; RoIAlign 7 (box) / 14 (mask),
    sampling ratio 2, ``aligned=False``, torchvision's border rule and level mapping
    ``floor(4 + log2(sqrt(area) / 224) + 1e-6)``; box head flattened in NCHW order, box weights 10/10/5/5,
    score > 0.05, NMS 0.5, 100 detections, boxes >= 1e-2, every candidate into NMS
    (``detection_pre_nms_top_k=None``); ImageNet mean/std normalization (before the resize) and the
    800/1333 resize, padding to multiples of 32.

    Args:
        num_classes: classes including the background (91: COCO category ids).
        **overrides: any other :class:`MaskRCNNConfig` field (``min_size``, ``score_threshold``...).

    Returns:
        A frozen :class:`MaskRCNNConfig`.

    Raises:
        ValueError: an unknown field.
    """
    values: dict[str, Any] = dict(
        num_classes=num_classes,
        backbone="resnet50",
        stride_in_1x1=False,
        norm="frozen",
        norm_epsilon=0.0,
        frozen_stages=2,  # trainable_backbone_layers=3
        fpn_channels=256,
        anchor_sizes=(32, 64, 128, 256, 512),
        aspect_ratios=(0.5, 1.0, 2.0),
        anchor_offset=0.0,
        anchor_strides="torchvision",
        rpn_box_weights=(1.0, 1.0, 1.0, 1.0),
        rpn_pre_nms_top_k_train=2000,
        rpn_pre_nms_top_k_test=1000,
        rpn_post_nms_top_k_train=2000,
        rpn_post_nms_top_k_test=1000,
        rpn_nms_threshold=0.7,
        rpn_min_size=1e-3,
        rpn_positive_iou=0.7,
        rpn_negative_iou=0.3,
        rpn_samples_per_image=256,
        rpn_positive_fraction=0.5,
        roi_positive_iou=0.5,
        roi_negative_iou=0.5,
        roi_samples_per_image=512,
        roi_positive_fraction=0.25,
        box_roi_size=7,
        mask_roi_size=14,
        roi_sampling_ratio=2,
        roi_aligned=False,
        roi_border="torchvision",
        canonical_size=224.0,
        canonical_level=4,
        roi_level_eps="after_log",
        box_fc_dim=1024,
        box_flatten_order="nchw",
        box_weights=(10.0, 10.0, 5.0, 5.0),
        score_threshold=0.05,
        nms_threshold=0.5,
        max_detections=100,
        min_box_size=1e-2,
        detection_pre_nms_top_k=None,
        mask_num_convs=4,
        mask_channels=256,
        min_size=800,
        max_size=1333,
        size_divisible=32,
        image_mean=(0.485, 0.456, 0.406),
        image_std=(0.229, 0.224, 0.225),
    )
    fields = {f.name for f in dataclasses.fields(MaskRCNNConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown MaskRCNNConfig field(s) {unknown}")
    values.update(overrides)
    return MaskRCNNConfig(**values)


#: Named starting points for a ``model:`` section (``preset: torchvision`` in a YAML config): each maps
#: keyword overrides to a :class:`MaskRCNNConfig`.
PRESETS = {"torchvision": torchvision_config}
MaskRCNNConfig.presets = PRESETS  # read by kzoo.utils.structs.dataclass_from_dict ("preset: torchvision")
