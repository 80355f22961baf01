"""Every hyper-parameter of Mask R-CNN in one frozen dataclass, nested by part (defaults: the paper's R50-FPN).

:class:`MaskRCNNConfig` holds one frozen section per part of the model, as TF Model Garden's configs do::

    MaskRCNNConfig
      num_classes, nms_method, compute_dtype, init_weights
      backbone      BackboneConfig       name, width, stride_in_1x1, norm, norm_epsilon, frozen_stages
      fpn           FPNConfig            channels
      anchors       AnchorConfig         sizes, aspect_ratios, offset, strides
      rpn           RPNConfig            box_weights, pre/post_nms_top_k_train/test, nms_threshold, min_size,
                                         positive_iou, negative_iou, samples_per_image, positive_fraction
      roi_sampling  RoISamplingConfig    positive_iou, negative_iou, samples_per_image, positive_fraction
      roi_align     RoIAlignConfig       box_size, mask_size, sampling_ratio, aligned, border, method,
                                         canonical_size, canonical_level, level_eps
      box_head      BoxHeadConfig        fc_dim, flatten_order, box_weights
      mask_head     MaskHeadConfig       num_convs, channels
      detection     DetectionConfig      score_threshold, nms_threshold, max_detections, min_box_size,
                                         pre_nms_top_k
      input         InputConfig          min_size, max_size, size_divisible, image_mean, image_std

In YAML: ``model: {rpn: {nms_threshold: 0.6}}``. The flat keys of kzoo 0.x (``rpn_nms_threshold: 0.6``) are still
read, with a ``DeprecationWarning`` naming where each moved (:data:`MOVED_FIELDS`). Every section checks its own
values; a ``ConfigError`` names the full dotted key (``model.rpn.nms_threshold``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from kzoo.ops.kernel_choices import (
    DEFAULT_NMS_METHOD,
    LEVEL_EPS_PLACEMENTS,
    NMS_METHODS,
    ROI_ALIGN_BORDERS,
    ROI_ALIGN_METHODS,
)
from kzoo.utils.structs import (
    ConfigError,
    check_choice,
    check_count,
    check_finite,
    check_fraction,
    move_flat_keys,
)

#: ``anchors.strides``: ``nominal`` (level l steps 2**l pixels) or ``torchvision`` (canvas side // feature side)
ANCHOR_STRIDES = ("nominal", "torchvision")
#: ``backbone.name`` (kzoo.models.backbones.BACKBONES) and every backbone's ``norm`` choices together
BACKBONE_NAMES = ("resnet50", "resnet101", "mobilenet_v2", "small_convnet")
NORMS = ("frozen", "batch", "sync_batch", "group")
FLATTEN_ORDERS = ("nhwc", "nchw")
#: ``train.trainable_layers`` presets of Mask R-CNN (:meth:`kzoo.models.mask_rcnn.MaskRCNNModel.set_trainable_preset`;
#: matterport's ``layers=``, torchvision's ``trainable_backbone_layers``): ``heads`` the RPN, box and mask heads;
#: ``3+`` / ``4+`` / ``5+`` the ResNet stages from that one up (res3 = torchvision's layer2), the FPN and the heads;
#: ``all`` every layer the model trains.
MASK_RCNN_TRAINABLE_PRESETS = ("all", "heads", "3+", "4+", "5+")
#: The presets that name a ResNet stage: the first stage they train.
RESNET_STAGE_PRESETS = {"3+": 3, "4+": 4, "5+": 5}
COMPUTE_DTYPES = ("float32", "bfloat16")


def check_length(key: str, values: tuple, count: int | None = None, what: str = "") -> None:
    """ConfigError naming ``key`` unless ``values`` holds ``count`` values (``what`` they are), or at least one."""
    if count is not None and len(values) != count:
        raise ConfigError(f"config key '{key}' needs {count} values ({what}), got {list(values)}")
    if not values:
        raise ConfigError(f"config key '{key}' must hold at least one value")


def check_iou(key: str, value: float) -> None:
    """ConfigError naming ``key`` unless ``value`` is an IoU threshold in ``[0, 1]``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not 0.0 <= value <= 1.0:
        raise ConfigError(f"config key '{key}' is an IoU and must be in [0, 1] (1 suppresses nothing), got {value!r}")
    check_fraction(key, value)


def _check_ious(section: str, negative: float, positive: float) -> None:
    if negative > positive:
        raise ConfigError(
            f"config key '{section}.negative_iou' ({negative}) must be <= '{section}.positive_iou' ({positive})"
        )


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """``model.backbone``: the network from images to the features C2..C5
    (:func:`kzoo.models.backbones.build_backbone`)."""

    name: str = "resnet50"  # resnet50 | resnet101 | mobilenet_v2 | small_convnet
    width: float = 1.0  # width multiplier of mobilenet_v2 (alpha) and small_convnet
    stride_in_1x1: bool = False  # resnet. False: stride in the 3x3 conv (torchvision); True: in the 1x1 (Caffe)
    norm: str = "frozen"  # resnet: frozen | batch | sync_batch; small_convnet: group | batch
    norm_epsilon: float = 1e-5  # resnet
    frozen_stages: int = 2  # resnet. 0 none, 1 stem, 2 stem + first residual stage (torchvision's default)

    def __post_init__(self) -> None:
        check_choice("model.backbone.name", self.name, BACKBONE_NAMES)
        check_choice("model.backbone.norm", self.norm, NORMS)
        check_finite("model.backbone.width", self.width, 0.0, low_open=True)
        check_finite("model.backbone.norm_epsilon", self.norm_epsilon, 0.0)
        check_count("model.backbone.frozen_stages", self.frozen_stages, 0, 5)


@dataclasses.dataclass(frozen=True)
class FPNConfig:
    """``model.fpn``: the feature pyramid P2..P6 (:class:`kzoo.layers.FeaturePyramidNetwork`)."""

    channels: int = 256

    def __post_init__(self) -> None:
        check_count("model.fpn.channels", self.channels)


@dataclasses.dataclass(frozen=True)
class AnchorConfig:
    """``model.anchors``: the RPN's anchors on P2..P6 (:func:`kzoo.ops.anchors.generate_anchors`)."""

    sizes: tuple[int, ...] = (32, 64, 128, 256, 512)  # one per level P2..P6
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # height / width
    offset: float = 0.0  # 0: centers at k * stride (torchvision); 0.5: at (k + 0.5) * stride
    # nominal: level l's anchors step 2**l pixels; torchvision: canvas side // feature side (its AnchorGenerator),
    # which differs only on P6 when canvas side / 32 is odd (e.g. 800 -> 13 cells of stride 61, not 64)
    strides: str = "nominal"

    def __post_init__(self) -> None:
        check_length("model.anchors.sizes", self.sizes, 5, "one size per level P2..P6")
        for size in self.sizes:
            check_finite("model.anchors.sizes", size, 0.0, low_open=True)
        check_length("model.anchors.aspect_ratios", self.aspect_ratios)
        for value in self.aspect_ratios:
            check_finite("model.anchors.aspect_ratios", value, 0.0, low_open=True)
        check_fraction("model.anchors.offset", self.offset)
        check_choice("model.anchors.strides", self.strides, ANCHOR_STRIDES)


@dataclasses.dataclass(frozen=True)
class RPNConfig:
    """``model.rpn``: proposals (:class:`kzoo.layers.ProposalGenerator`) and the RPN's training targets
    (:func:`kzoo.ops.targets.rpn_targets`; torchvision's defaults)."""

    box_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)  # (ty, tx, th, tw)
    pre_nms_top_k_train: int = 2000
    pre_nms_top_k_test: int = 1000
    post_nms_top_k_train: int = 2000
    post_nms_top_k_test: int = 1000
    nms_threshold: float = 0.7  # an IoU; 1 suppresses nothing
    min_size: float = 1e-3  # proposals with a smaller side (pixels) are dropped
    positive_iou: float = 0.7
    negative_iou: float = 0.3
    samples_per_image: int = 256
    positive_fraction: float = 0.5

    def __post_init__(self) -> None:
        check_length("model.rpn.box_weights", self.box_weights, 4, "ty, tx, th, tw")
        for value in self.box_weights:
            check_finite("model.rpn.box_weights", value, 0.0, low_open=True)
        for key in (
            "pre_nms_top_k_train",
            "pre_nms_top_k_test",
            "post_nms_top_k_train",
            "post_nms_top_k_test",
            "samples_per_image",
        ):
            check_count(f"model.rpn.{key}", getattr(self, key))
        check_iou("model.rpn.nms_threshold", self.nms_threshold)
        for key in ("positive_iou", "negative_iou", "positive_fraction"):
            check_fraction(f"model.rpn.{key}", getattr(self, key))
        check_finite("model.rpn.min_size", self.min_size, 0.0)
        _check_ious("model.rpn", self.negative_iou, self.positive_iou)


@dataclasses.dataclass(frozen=True)
class RoISamplingConfig:
    """``model.roi_sampling``: the proposals sampled for the box and mask heads' training targets
    (:func:`kzoo.ops.targets.roi_targets`; torchvision's defaults)."""

    positive_iou: float = 0.5
    negative_iou: float = 0.5
    samples_per_image: int = 512
    positive_fraction: float = 0.25

    def __post_init__(self) -> None:
        check_count("model.roi_sampling.samples_per_image", self.samples_per_image)
        for key in ("positive_iou", "negative_iou", "positive_fraction"):
            check_fraction(f"model.roi_sampling.{key}", getattr(self, key))
        _check_ious("model.roi_sampling", self.negative_iou, self.positive_iou)


@dataclasses.dataclass(frozen=True)
class RoIAlignConfig:
    """``model.roi_align``: how the box and mask heads' RoIs are pooled from P2..P5
    (:class:`kzoo.layers.RoIAlign`)."""

    box_size: int = 7
    mask_size: int = 14  # the predicted masks are 2 x mask_size square
    sampling_ratio: int = 2
    aligned: bool = False
    border: str = "torchvision"  # torchvision | zero
    method: str = "crop_and_resize"  # crop_and_resize | gather (TFLite builtins, XLA)
    canonical_size: float = 224.0
    canonical_level: int = 4
    # in_log: floor(4 + log2(s / 224 + 1e-6)); after_log: floor(4 + log2(s / 224) + 1e-6), torchvision's LevelMapper
    # (the rule: kzoo.ops.roi_align_ops.fpn_levels)
    level_eps: str = "in_log"

    def __post_init__(self) -> None:
        for key in ("box_size", "mask_size", "sampling_ratio"):
            check_count(f"model.roi_align.{key}", getattr(self, key))
        check_choice("model.roi_align.border", self.border, ROI_ALIGN_BORDERS)
        check_choice("model.roi_align.method", self.method, ROI_ALIGN_METHODS)
        check_finite("model.roi_align.canonical_size", self.canonical_size, 0.0, low_open=True)
        check_count("model.roi_align.canonical_level", self.canonical_level, 2, 6)  # within the pyramid P2..P6
        check_choice("model.roi_align.level_eps", self.level_eps, LEVEL_EPS_PLACEMENTS)


@dataclasses.dataclass(frozen=True)
class BoxHeadConfig:
    """``model.box_head``: the two-layer MLP box head (:class:`kzoo.layers.BoxHead`) and its box coding."""

    fc_dim: int = 1024
    flatten_order: str = "nhwc"  # nchw for torchvision weights
    box_weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)  # (ty, tx, th, tw), of the targets and the decoding

    def __post_init__(self) -> None:
        check_count("model.box_head.fc_dim", self.fc_dim)
        check_choice("model.box_head.flatten_order", self.flatten_order, FLATTEN_ORDERS)
        check_length("model.box_head.box_weights", self.box_weights, 4, "ty, tx, th, tw")
        for value in self.box_weights:
            check_finite("model.box_head.box_weights", value, 0.0, low_open=True)


@dataclasses.dataclass(frozen=True)
class MaskHeadConfig:
    """``model.mask_head``: the FCN mask head (:class:`kzoo.layers.MaskHead`)."""

    num_convs: int = 4
    channels: int = 256

    def __post_init__(self) -> None:
        check_count("model.mask_head.num_convs", self.num_convs, 0)
        check_count("model.mask_head.channels", self.channels)


@dataclasses.dataclass(frozen=True)
class DetectionConfig:
    """``model.detection``: from box-head outputs to detections (:class:`kzoo.layers.DetectionGenerator`)."""

    score_threshold: float = 0.05
    nms_threshold: float = 0.5  # an IoU; 1 suppresses nothing
    max_detections: int = 100
    min_box_size: float = 1e-2
    # NMS candidates per image after the score threshold (None: all, torchvision's exact rule). The cap matters for
    # the padded NMS kernel, which walks every 512-box tile when fewer than max_detections survive (see
    # DetectionGenerator); the per-image default compares a box only with the kept ones.
    pre_nms_top_k: int | None = 1000

    def __post_init__(self) -> None:
        check_fraction("model.detection.score_threshold", self.score_threshold)
        check_iou("model.detection.nms_threshold", self.nms_threshold)
        check_count("model.detection.max_detections", self.max_detections)
        check_finite("model.detection.min_box_size", self.min_box_size, 0.0)
        check_count("model.detection.pre_nms_top_k", self.pre_nms_top_k)


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """``model.input``: the resize, normalization and padding inside the model
    (:func:`kzoo.ops.resize.resize_and_pad`)."""

    min_size: int = 800
    max_size: int = 1333
    size_divisible: int = 32
    image_mean: tuple[float, ...] = (0.485, 0.456, 0.406)  # of pixels scaled to [0, 1], RGB
    image_std: tuple[float, ...] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        for key in ("min_size", "max_size", "size_divisible"):
            check_count(f"model.input.{key}", getattr(self, key))
        if self.max_size < self.min_size:
            raise ConfigError(
                f"config key 'model.input.max_size' ({self.max_size}) must be >= 'model.input.min_size' "
                f"({self.min_size})"
            )
        if self.size_divisible % 32:
            raise ConfigError(
                f"config key 'model.input.size_divisible' must be a multiple of 32 (the stride of P5), "
                f"got {self.size_divisible}"
            )
        check_length("model.input.image_mean", self.image_mean, 3, "RGB")
        for value in self.image_mean:
            check_finite("model.input.image_mean", value)
        check_length("model.input.image_std", self.image_std, 3, "RGB")
        for value in self.image_std:
            check_finite("model.input.image_std", value, 0.0, low_open=True)


#: The flat keys of kzoo 0.x -> where they are now (read with a DeprecationWarning, see the module doc).
MOVED_FIELDS: dict[str, str] = {
    "backbone": "backbone.name",
    "backbone_width": "backbone.width",
    "stride_in_1x1": "backbone.stride_in_1x1",
    "norm": "backbone.norm",
    "norm_epsilon": "backbone.norm_epsilon",
    "frozen_stages": "backbone.frozen_stages",
    "fpn_channels": "fpn.channels",
    "anchor_sizes": "anchors.sizes",
    "aspect_ratios": "anchors.aspect_ratios",
    "anchor_offset": "anchors.offset",
    "anchor_strides": "anchors.strides",
    "rpn_box_weights": "rpn.box_weights",
    "rpn_pre_nms_top_k_train": "rpn.pre_nms_top_k_train",
    "rpn_pre_nms_top_k_test": "rpn.pre_nms_top_k_test",
    "rpn_post_nms_top_k_train": "rpn.post_nms_top_k_train",
    "rpn_post_nms_top_k_test": "rpn.post_nms_top_k_test",
    "rpn_nms_threshold": "rpn.nms_threshold",
    "rpn_min_size": "rpn.min_size",
    "rpn_positive_iou": "rpn.positive_iou",
    "rpn_negative_iou": "rpn.negative_iou",
    "rpn_samples_per_image": "rpn.samples_per_image",
    "rpn_positive_fraction": "rpn.positive_fraction",
    "roi_positive_iou": "roi_sampling.positive_iou",
    "roi_negative_iou": "roi_sampling.negative_iou",
    "roi_samples_per_image": "roi_sampling.samples_per_image",
    "roi_positive_fraction": "roi_sampling.positive_fraction",
    "box_roi_size": "roi_align.box_size",
    "mask_roi_size": "roi_align.mask_size",
    "roi_sampling_ratio": "roi_align.sampling_ratio",
    "roi_aligned": "roi_align.aligned",
    "roi_border": "roi_align.border",
    "roi_method": "roi_align.method",
    "canonical_size": "roi_align.canonical_size",
    "canonical_level": "roi_align.canonical_level",
    "roi_level_eps": "roi_align.level_eps",
    "box_fc_dim": "box_head.fc_dim",
    "box_flatten_order": "box_head.flatten_order",
    "box_weights": "box_head.box_weights",
    "score_threshold": "detection.score_threshold",
    "nms_threshold": "detection.nms_threshold",
    "max_detections": "detection.max_detections",
    "min_box_size": "detection.min_box_size",
    "detection_pre_nms_top_k": "detection.pre_nms_top_k",
    "mask_num_convs": "mask_head.num_convs",
    "mask_channels": "mask_head.channels",
    "min_size": "input.min_size",
    "max_size": "input.max_size",
    "size_divisible": "input.size_divisible",
    "image_mean": "input.image_mean",
    "image_std": "input.image_std",
}


@dataclasses.dataclass(frozen=True)
class MaskRCNNConfig:
    """Hyper-parameters of a Mask R-CNN, one frozen section per part (see the module doc); the defaults are those
    of the paper's ResNet-50-FPN (and of torchvision's ``maskrcnn_resnet50_fpn``).

    Class ids: ``num_classes`` counts the background, which is class 0.
    Boxes: ``[ymin, xmin, ymax, xmax]`` in pixels; box deltas ``(ty, tx, th, tw)`` scaled by the weights.
    Change a few values with :meth:`replace` (``config.replace(rpn={"nms_threshold": 0.6})``).
    """

    presets: ClassVar[dict[str, Any]]  # PRESETS, set below (not a field)
    #: read by kzoo.utils.structs.dataclass_from_dict: the flat keys of kzoo 0.x
    moved_fields: ClassVar[dict[str, str]] = MOVED_FIELDS

    # counts the background; None only in an experiment config whose data gives it (the task sets it, see
    # kzoo.config.config_from_dict): a model cannot be built before
    num_classes: int | None = 91
    backbone: BackboneConfig = BackboneConfig()
    fpn: FPNConfig = FPNConfig()
    anchors: AnchorConfig = AnchorConfig()
    rpn: RPNConfig = RPNConfig()
    roi_sampling: RoISamplingConfig = RoISamplingConfig()
    roi_align: RoIAlignConfig = RoIAlignConfig()
    box_head: BoxHeadConfig = BoxHeadConfig()
    mask_head: MaskHeadConfig = MaskHeadConfig()
    detection: DetectionConfig = DetectionConfig()
    input: InputConfig = InputConfig()
    # NMS kernel of the RPN and the detections: per_image (the faster on CPU; TFLite's builtin NMS op, which
    # full-integer .tflite export needs) | padded (batched); same results (kzoo.ops.nms)
    nms_method: str = DEFAULT_NMS_METHOD
    # numerics: "bfloat16" runs the backbone, FPN and heads in bfloat16 (float32 variables; anchors, proposals,
    # RoIAlign sampling, box decoding, NMS and outputs stay float32): faster on CPUs with AVX512-BF16. An
    # experiment config sets it from its top-level ``precision``.
    compute_dtype: str = "float32"  # float32 | bfloat16
    # training configs: the weights training starts from, "coco" or a .weights.h5 file of this architecture with
    # any class count (the class-specific predictors are reset when it differs); the model itself ignores it
    init_weights: str | None = None

    def __post_init__(self) -> None:
        check_count("model.num_classes", self.num_classes, 2)  # counts the background
        check_choice("model.nms_method", self.nms_method, NMS_METHODS)
        check_choice("model.compute_dtype", self.compute_dtype, COMPUTE_DTYPES)
        for field in dataclasses.fields(self):
            kind = type(field.default)
            if dataclasses.is_dataclass(field.default) and not isinstance(getattr(self, field.name), kind):
                raise ConfigError(
                    f"config key 'model.{field.name}' must be a {kind.__name__} (to change some of its fields: "
                    f"config.replace({field.name}={{...}})), got {getattr(self, field.name)!r}"
                )

    def replace(self, **changes: Any) -> MaskRCNNConfig:
        """A copy with ``changes``: top-level fields (``num_classes=5``), a section as a mapping of the fields to
        change in it (``rpn={"nms_threshold": 0.6}``; the others keep their values) or as a whole section
        dataclass, or a flat key of kzoo 0.x (``rpn_nms_threshold=0.6``, with a ``DeprecationWarning``).

        Raises:
            ValueError: an unknown field (``"unknown MaskRCNNConfig field(s)"``), or a value a section refuses
                (a :class:`kzoo.utils.structs.ConfigError` naming the dotted key).
        """
        changes = move_flat_keys(changes, MOVED_FIELDS, "model.", stacklevel=3)
        sections = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(sections))
        unknown += sorted(
            f"{name}.{key}"
            for name, value in changes.items()
            if name in sections and isinstance(value, Mapping) and dataclasses.is_dataclass(getattr(self, name))
            for key in set(value) - {f.name for f in dataclasses.fields(getattr(self, name))}
        )
        if unknown:
            raise ValueError(f"unknown MaskRCNNConfig field(s) {unknown}")
        for name, value in changes.items():
            if isinstance(value, Mapping) and dataclasses.is_dataclass(getattr(self, name)):
                changes[name] = dataclasses.replace(getattr(self, name), **value)
        return dataclasses.replace(self, **changes)


#: torchvision's ``maskrcnn_resnet50_fpn``: what differs from the :class:`MaskRCNNConfig` defaults.
TORCHVISION_CHANGES: dict[str, dict[str, Any]] = {
    # its COCO_V1 weights' FrozenBatchNorm2d eps is overwritten to 0
    "backbone": {"norm_epsilon": 0.0},
    "anchors": {"strides": "torchvision"},  # canvas // feature size (its AnchorGenerator)
    "roi_align": {"level_eps": "after_log"},  # its LevelMapper
    "box_head": {"flatten_order": "nchw"},
    "detection": {"pre_nms_top_k": None},  # every candidate into NMS
}


def torchvision_config(num_classes: int = 91, **overrides: Any) -> MaskRCNNConfig:
    """The :class:`MaskRCNNConfig` that computes exactly what torchvision's ``maskrcnn_resnet50_fpn`` computes.

    The defaults are torchvision's choices but for :data:`TORCHVISION_CHANGES`: frozen BatchNorm with
    ``eps = 0.0`` (torchvision overwrites the eps of its COCO_V1 weights to 0; pass
    ``backbone={"norm_epsilon": 1e-5}`` for a model built with ``weights=None, weights_backbone=None``, whose
    plain ``BatchNorm2d`` layers use 1e-5 in eval mode); torchvision's anchor strides ``canvas // feature size``;
    its level mapping ``floor(4 + log2(sqrt(area) / 224) + 1e-6)``; the box head flattened in NCHW order; every
    candidate into NMS (``detection.pre_nms_top_k=None``). The rest, as the defaults: ResNet-50 with the stride in
    the 3x3 conv and symmetric padding, ``frozen_stages=2`` (``trainable_backbone_layers=3``); FPN P2-P5 plus the
    max-pool P6; anchors 32..512 with ratios 0.5/1/2, centers at ``k * stride``; RPN 1000/1000 (test) and
    2000/2000 (train) proposals, NMS 0.7, min size 1e-3; RoIAlign 7 (box) / 14 (mask), sampling ratio 2,
    ``aligned=False``, torchvision's border rule; box weights 10/10/5/5, score > 0.05, NMS 0.5, 100 detections,
    boxes >= 1e-2; ImageNet mean/std normalization (before the resize) and the 800/1333 resize, padding to
    multiples of 32. ``tests/models/test_mask_rcnn_config.py`` pins every value.

    Args:
        num_classes: classes including the background (91: COCO category ids).
        **overrides: changes as :meth:`MaskRCNNConfig.replace` takes them (``input={"min_size": 512}``, ...).

    Returns:
        A frozen :class:`MaskRCNNConfig`.

    Raises:
        ValueError: an unknown field.
    """
    return MaskRCNNConfig().replace(**TORCHVISION_CHANGES).replace(num_classes=num_classes, **overrides)


#: Named starting points for a ``model:`` section (``preset: torchvision`` in a YAML config): each maps
#: keyword overrides to a :class:`MaskRCNNConfig`.
PRESETS = {"torchvision": torchvision_config}
MaskRCNNConfig.presets = PRESETS  # read by kzoo.utils.structs.dataclass_from_dict ("preset: torchvision")
