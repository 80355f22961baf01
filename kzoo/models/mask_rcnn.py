"""Mask R-CNN (He, Gkioxari, Dollar, Girshick) assembled from kzoo's layers: inference graph.

images -> resize (keep aspect ratio) + normalize + pad -> backbone C2..C5 -> FPN P2..P6 -> RPN head ->
proposals -> RoIAlign 7x7 -> box head -> detections (class-specific decode, per-class NMS) ->
RoIAlign 14x14 on the detections -> mask head -> the detected class's 28x28 mask.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, ClassVar, cast

import keras
import numpy as np
import tensorflow as tf

from kzoo.layers import (
    BoxHead,
    DetectionGenerator,
    FeaturePyramidNetwork,
    MaskHead,
    ProposalGenerator,
    RoIAlign,
    RPNHead,
)
from kzoo.models.backbones import build_backbone
from kzoo.models.mask_rcnn_config import MASK_RCNN_TRAINABLE_PRESETS, RESNET_STAGE_PRESETS, MaskRCNNConfig
from kzoo.models.training_step import apply_training_step
from kzoo.ops.anchors import generate_anchors, num_anchors_per_location
from kzoo.ops.image_checks import assert_image_values, check_image_spec
from kzoo.ops.losses import box_losses, mask_loss, rpn_losses
from kzoo.ops.resize import boxes_to_input, padded_size, resize_and_pad, resized_size
from kzoo.ops.targets import mask_targets, roi_targets, rpn_targets
from kzoo.utils.structs import dataclass_from_dict

PYRAMID_STRIDES = (4, 8, 16, 32, 64)  # P2..P6
#: How many compiled inference graphs (one per canvas size and input dtype) an eager model keeps.
COMPILED_GRAPHS_KEPT = 8

#: The losses of :meth:`MaskRCNNModel.training_losses` that ``model.fit`` reports (the metrics' names, in order).
LOSS_NAMES = ("total", "rpn_objectness", "rpn_box", "classification", "box", "mask")


def compute_policy(compute_dtype: str) -> keras.DTypePolicy | None:
    """The ``dtype=`` of the layers that run in ``compute_dtype`` (:attr:`MaskRCNNConfig.compute_dtype`):
    ``mixed_bfloat16`` (float32 variables, bfloat16 computation) for ``"bfloat16"``; ``None`` (Keras' default,
    float32) for ``"float32"``."""
    return keras.DTypePolicy("mixed_bfloat16") if compute_dtype == "bfloat16" else None


def _mean_over_images(loss_fn, *tensors: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """``loss_fn`` (batched tensors -> tuple of scalar losses) applied to each image's slice ``[i : i + 1]`` of the
    ``[B, ...]`` tensors, averaged over the static batch ``B`` (the whole batch at once when ``B`` is unknown)."""
    batch = tensors[0].shape[0]
    if batch is None:
        return tuple(loss_fn(*tensors))
    per_image = [loss_fn(*(t[i : i + 1] for t in tensors)) for i in range(batch)]
    return tuple(tf.add_n(list(values)) / batch for values in zip(*per_image))


def _in_xla_context() -> bool:
    """Whether the graph being traced is compiled by XLA (``jit_compile=True``), which needs static shapes."""
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # private module moved: stay on the static-shape path
        return True
    return not tf.executing_eagerly() and control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def _mask_branch_rois(positive: tf.Tensor, samples_per_image: int, positive_fraction: float) -> int | tf.Tensor:
    """How many of the positives-first sampled RoIs ``[B, R]`` the mask branch runs on during training.

    The most positives any image of the batch has (at least 1), so the mask head's work scales with the positives
    as in torchvision; under XLA, which needs static shapes, the whole prefix that can hold them
    (``int(R * positive_fraction)``). The loss is the same either way: slots after an image's positives are
    masked out of it.
    """
    prefix = max(1, int(samples_per_image * positive_fraction))
    if _in_xla_context():
        return prefix
    count = tf.reduce_max(tf.reduce_sum(tf.cast(positive[:, :prefix], tf.int32), axis=1))
    return tf.maximum(count, 1)


@keras.saving.register_keras_serializable(package="kzoo")
class MaskRCNNModel(keras.Model):
    """Mask R-CNN inference model.

    Call on images ``[B, H, W, 3]``, uint8 or float32 RGB pixels in ``[0, 255]``, of any size (one size
    per batch), or on images of mixed sizes as a Python list of ``[H_i, W_i, 3]`` arrays or a ``tf.RaggedTensor``
    ``[B, (H_i), (W_i), 3]`` (eager): one result row per image, in order, each image resized by the rule below and
    its boxes in its own pixels. ``predict`` takes the same (images of one size are batched together) and returns
    empty outputs (``B = 0``) for an empty batch. Inside, each batch is resized so the short side is
    ``input.min_size`` (the long side at most ``input.max_size``), normalized with ``input.image_mean`` /
    ``input.image_std`` and zero-padded at the bottom/right to a multiple of ``input.size_divisible`` (a static
    canvas: the input's size when it is known while tracing, else ``input.max_size`` x ``input.max_size``), so
    every shape after the resize is static.

    Called eagerly (``model(images)``, outside ``fit``/``predict``/a ``tf.function``) for inference, the model
    runs a compiled graph (``tf.function``), as ``predict`` does, instead of op by op: as fast and as lean in memory.
    Sizes are bucketed by canvas: one graph per (canvas size, input dtype), whatever the batch size, so every
    input whose resized image pads to the same canvas (photos of one aspect ratio, whatever their resolution:
    480x640 and 960x1280 both give 800x1088 with the paper's 800/1333) shares one; the first call of a canvas
    traces it (see :data:`COMPILED_GRAPHS_KEPT`).

    Returns a dict:
        ``detection_boxes`` float32 ``[B, D, 4]`` ``[ymin, xmin, ymax, xmax]`` in input-image pixels,
        ``detection_scores`` float32 ``[B, D]``, ``detection_classes`` int32 ``[B, D]`` (``1..K-1``,
        0 for padding), ``num_detections`` int32 ``[B]``, ``detection_masks`` float32
        ``[B, D, 28, 28]`` (probabilities of the detected class, in the box's frame; paste them with
        :func:`kzoo.ops.masks.paste_masks`). Rows at and after ``num_detections`` are zeros.
        ``D = config.detection.max_detections``.

    Training with Keras' ``fit`` (see :meth:`compile` and :meth:`train_step`): build the model by calling it on
    images (under the strategy's scope for a ``tf.distribute`` strategy), ``model.compile(optimizer=...)``, then
    ``model.fit(dataset, ...)`` on batches of :func:`kzoo.data.detection_pipeline.make_detection_pipeline` (dicts).
    Every loss of ``LOSS_NAMES`` is a metric (progress bar, ``History``; ``monitor="total"`` for callbacks).
    """

    built: bool  # keras.Layer's

    def __init__(
        self, config: MaskRCNNConfig | dict | None = None, input_shape: Sequence[int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        #: ``(H, W, 3)``: the one input size this model takes (static shapes; see kzoo.applications.MaskRCNN), or
        #: None for any size
        self.image_shape: tuple[int, int, int] | None = check_input_shape(input_shape)
        if isinstance(config, dict):
            config = dataclass_from_dict(MaskRCNNConfig, config)  # from get_config() (lists for tuples)
        self.config = config = config or MaskRCNNConfig()
        # None (a config whose data gives it) is not a model's: the heads raise a TypeError
        num_classes = cast(int, config.num_classes)
        # the convolutional parts in the compute dtype (keras-hub's dtype= plumbing, no global policy); anchors,
        # proposals, RoIAlign, decoding and NMS in float32
        dtype = compute_policy(config.compute_dtype)
        self.backbone, _ = build_backbone(config.backbone, (None, None, 3), dtype=dtype)
        self.fpn = FeaturePyramidNetwork(config.fpn.channels, dtype=dtype, name="fpn")
        anchors = config.anchors
        self.num_anchors = num_anchors_per_location([(s,) for s in anchors.sizes], anchors.aspect_ratios)[0]
        self.rpn_head = RPNHead(self.num_anchors, config.fpn.channels, dtype=dtype, name="rpn_head")
        rpn = config.rpn
        self.proposal_generator = ProposalGenerator(
            pre_nms_top_k_train=rpn.pre_nms_top_k_train,
            pre_nms_top_k_test=rpn.pre_nms_top_k_test,
            post_nms_top_k_train=rpn.post_nms_top_k_train,
            post_nms_top_k_test=rpn.post_nms_top_k_test,
            nms_iou_threshold=rpn.nms_threshold,
            min_size=rpn.min_size,
            box_weights=rpn.box_weights,
            nms_method=config.nms_method,
            name="proposal_generator",
        )
        align = config.roi_align
        roi: dict[str, Any] = dict(
            sampling_ratio=align.sampling_ratio,
            aligned=align.aligned,
            min_level=2,
            max_level=5,
            canonical_size=align.canonical_size,
            canonical_level=align.canonical_level,
            border=align.border,
            method=align.method,
            level_eps=align.level_eps,
        )
        self.box_roi_align = RoIAlign(align.box_size, name="box_roi_align", **roi)
        self.mask_roi_align = RoIAlign(align.mask_size, name="mask_roi_align", **roi)
        self.box_head = BoxHead(
            num_classes,
            config.box_head.fc_dim,
            flatten_order=config.box_head.flatten_order,
            dtype=dtype,
            name="box_head",
        )
        detection = config.detection
        self.detection_generator = DetectionGenerator(
            num_classes,
            box_weights=config.box_head.box_weights,
            score_threshold=detection.score_threshold,
            nms_iou_threshold=detection.nms_threshold,
            max_detections=detection.max_detections,
            min_box_size=detection.min_box_size,
            pre_nms_top_k=detection.pre_nms_top_k,
            nms_method=config.nms_method,
            name="detection_generator",
        )
        self.mask_head = MaskHead(
            num_classes, config.mask_head.num_convs, config.mask_head.channels, dtype=dtype, name="mask_head"
        )

    def build(self, input_shape=None) -> None:
        """Create every weight, whatever ``input_shape`` (``[B, H, W, 3]``; the weights do not depend on it).

        The backbone, FPN and RPN head run once on a zero ``128 x 128`` canvas and the box and mask heads on one
        zero RoI, so building costs no full-size forward pass (calling the model on an image resized to
        ``input.min_size`` would, and its buffers would stay in the process's peak memory).
        """
        if self.built:
            return
        features = self.pyramid(tf.zeros([1, 128, 128, 3]))
        self.rpn_head(features)
        channels = self.config.fpn.channels
        self.box_head(tf.zeros([1, 1, self.config.roi_align.box_size, self.config.roi_align.box_size, channels]))
        self.mask_head(tf.zeros([1, 1, self.config.roi_align.mask_size, self.config.roi_align.mask_size, channels]))
        self.built = True

    # -- stages -------------------------------------------------------------------------------------------

    def preprocess(self, images, canvas: tuple[int, int] | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """Images ``[B, H, W, 3]`` (pixels) -> normalized padded canvas ``[B, H', W', 3]`` and the resized
        size ``(h, w)`` int32 ``[2]``; ``canvas`` is the padded size for an input of unknown size (default
        ``input.max_size`` square, see :func:`kzoo.ops.resize.resize_and_pad`).

        The input contract of :mod:`kzoo.ops.image_checks`: ``ValueError`` for a rank other than 4, other than 3
        channels, a dtype other than uint8 or float, an empty batch (at trace time); ``InvalidArgumentError`` for
        non-finite values, values outside ``[0, 255]`` or a float batch that looks like ``[0, 1]`` (when run).
        """
        images = tf.convert_to_tensor(images)
        check_image_spec(images.shape, images.dtype, channels=3, name="MaskRCNN RGB images")
        images = _check_fixed_size(images, self.image_shape)
        images = assert_image_values(images, name="MaskRCNN images")
        config = self.config
        return resize_and_pad(
            self.normalize(images),
            config.input.min_size,
            config.input.max_size,
            config.input.size_divisible,
            canvas=canvas,
        )

    def normalize(self, images) -> tf.Tensor:
        """Pixels ``[B, H, W, 3]`` in ``[0, 255]`` -> float32 ``(x / 255 - image_mean) / image_std``."""
        pixels = tf.cast(images, tf.float32) / 255.0
        return (pixels - tf.constant(self.config.input.image_mean)) / tf.constant(self.config.input.image_std)

    def pyramid(self, canvas: tf.Tensor, training: bool = False) -> list[tf.Tensor]:
        """Normalized canvas -> ``[P2, P3, P4, P5, P6]``, each ``[B, h_l, w_l, fpn_channels]``."""
        c = self.backbone(canvas, training=training)
        return self.fpn([c["C2"], c["C3"], c["C4"], c["C5"]], training=training)

    def anchors(self, features: list[tf.Tensor]) -> tuple[np.ndarray, list[int]]:
        """Anchors ``[A_total, 4]`` for the static feature sizes, and the anchor count of each level.

        With ``anchor_strides="torchvision"`` a level's stride is ``canvas side // feature side`` per axis
        (torchvision's ``AnchorGenerator``; the canvas is ``4 x`` P2's size), else the nominal ``2 ** level``.
        """
        shapes = [(int(f.shape[1]), int(f.shape[2])) for f in features]
        strides: list = list(PYRAMID_STRIDES)
        if self.config.anchors.strides == "torchvision":
            canvas = (PYRAMID_STRIDES[0] * shapes[0][0], PYRAMID_STRIDES[0] * shapes[0][1])
            strides = [(canvas[0] // h, canvas[1] // w) for h, w in shapes]
        anchors = generate_anchors(
            shapes, strides, self.config.anchors.sizes, self.config.anchors.aspect_ratios, self.config.anchors.offset
        )
        return anchors, [h * w * self.num_anchors for h, w in shapes]

    def propose(self, features: list[tf.Tensor], image_size: tf.Tensor, training: bool = False) -> dict:
        """RPN: ``proposals [B, P, 4]``, ``proposal_scores [B, P]``, ``num_proposals [B]`` plus the raw
        ``objectness [B, A_total]`` and ``rpn_deltas [B, A_total, 4]`` and the ``anchors``.
        ``image_size`` is int32 ``[B, 2]``, each image's resized ``(height, width)``."""
        objectness, deltas = self.rpn_head(features, training=training)
        anchors, level_sizes = self.anchors(features)
        out = self.proposal_generator(
            objectness, deltas, anchors, image_size, level_sizes=level_sizes, training=training
        )
        return {**out, "objectness": objectness, "rpn_deltas": deltas, "anchors": anchors}

    def detect(self, features: list[tf.Tensor], proposals: dict, image_size: tf.Tensor) -> dict:
        """Box branch on the proposals -> detections in resized-image pixels (``image_size`` ``[B, 2]``)."""
        rois = self.box_roi_align(features[:4], proposals["proposals"])
        class_logits, box_deltas = self.box_head(rois)
        return self.detection_generator(
            class_logits, box_deltas, proposals["proposals"], image_size, proposals["num_proposals"]
        )

    def segment(self, features: list[tf.Tensor], boxes: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
        """Mask branch on boxes ``[B, D, 4]`` -> probabilities ``[B, D, 28, 28]`` of ``classes [B, D]``."""
        rois = self.mask_roi_align(features[:4], boxes)
        return tf.sigmoid(tf.cast(self.mask_head(rois, classes), tf.float32))

    # -- training -----------------------------------------------------------------------------------------

    def training_losses(self, batch: dict, seed=None) -> dict[str, tf.Tensor]:
        """The Mask R-CNN losses of one batch of :func:`kzoo.data.detection_pipeline.make_detection_pipeline`.

        Args:
            batch: ``images`` float32 ``[B, Hc, Wc, 3]`` pixels in ``[0, 255]``, already resized and padded to a
                canvas whose sides are multiples of ``input.size_divisible``; ``image_size`` int32 ``[B, 2]``; ground
                truth ``boxes`` float32 ``[B, M, 4]`` (yxyx pixels of the resized image), ``classes`` int32
                ``[B, M]`` (1..K-1), ``is_crowd`` and ``valid`` bool ``[B, M]``, ``masks`` float32
                ``[B, M, S, S]`` (cropped to the boxes).
            seed: int ``[2]`` seed for the anchor and RoI sampling (stateless, reproducible), or ``None``.

        Returns:
            float32 scalars: ``rpn_objectness``, ``rpn_box``, ``classification``, ``box``, ``mask`` and their sum
            ``total`` (without weight decay). Each image's losses are normalized as torchvision normalizes
            them for one image (by its sampled anchors, sampled RoIs, positive RoIs' mask pixels); the batch's
            loss is the mean over its images. So the loss, and the gradient, of a global batch do not depend on how
            it is split over replicas (torchvision instead normalizes over the batch's concatenated samples, which
            weights an image by its sample counts; the two agree when every image fills its sampling budget).
        """
        config = self.config
        canvas = tf.convert_to_tensor(batch["images"])
        for axis in (1, 2):
            if canvas.shape[axis] is None or canvas.shape[axis] % config.input.size_divisible:
                raise ValueError(
                    f"training images need a static canvas whose sides are multiples of {config.input.size_divisible}, "
                    f"got shape {canvas.shape}"
                )
        image_size = tf.cast(batch["image_size"], tf.int32)
        gt_boxes = tf.cast(batch["boxes"], tf.float32)
        gt_classes = tf.cast(batch["classes"], tf.int32)
        gt_valid = tf.cast(batch["valid"], tf.bool)
        gt_crowd = tf.cast(batch["is_crowd"], tf.bool)
        seeds = [None, None] if seed is None else [tf.cast(seed, tf.int32) + [0, i] for i in (1, 2)]

        features = self.pyramid(self.normalize(canvas), training=True)
        objectness, rpn_deltas = self.rpn_head(features, training=True)
        anchors, level_sizes = self.anchors(features)
        proposals = self.proposal_generator(
            tf.stop_gradient(objectness),
            tf.stop_gradient(rpn_deltas),
            anchors,
            image_size,
            level_sizes=level_sizes,
            training=True,
        )
        rpn = rpn_targets(
            tf.constant(anchors, tf.float32),
            gt_boxes,
            gt_valid,
            gt_crowd,
            image_size,
            positive_threshold=config.rpn.positive_iou,
            negative_threshold=config.rpn.negative_iou,
            num_samples=config.rpn.samples_per_image,
            positive_fraction=config.rpn.positive_fraction,
            seed=seeds[0],
        )
        rpn_objectness, rpn_box = _mean_over_images(
            rpn_losses, objectness, rpn_deltas, rpn.labels, rpn.sampled, rpn.box_targets
        )

        rois = roi_targets(
            proposals["proposals"],
            proposals["num_proposals"],
            gt_boxes,
            gt_classes,
            gt_valid,
            gt_crowd,
            num_samples=config.roi_sampling.samples_per_image,
            positive_fraction=config.roi_sampling.positive_fraction,
            positive_threshold=config.roi_sampling.positive_iou,
            negative_threshold=config.roi_sampling.negative_iou,
            box_weights=config.box_head.box_weights,
            seed=seeds[1],
        )
        class_logits, box_deltas = self.box_head(self.box_roi_align(features[:4], rois.rois), training=True)
        classification, box = _mean_over_images(
            box_losses, class_logits, box_deltas, rois.labels, rois.box_targets, rois.sampled
        )

        prefix = _mask_branch_rois(
            rois.positive, config.roi_sampling.samples_per_image, config.roi_sampling.positive_fraction
        )
        mask_rois = rois.rois[:, :prefix]
        targets = mask_targets(
            mask_rois,
            rois.matched_gt_index[:, :prefix],
            gt_boxes,
            tf.cast(batch["masks"], tf.float32),
            output_size=2 * config.roi_align.mask_size,
            aligned=config.roi_align.aligned,
        )
        mask_labels = tf.where(rois.positive[:, :prefix], rois.labels[:, :prefix], 0)
        mask_logits = self.mask_head(self.mask_roi_align(features[:4], mask_rois), mask_labels, training=True)
        (mask,) = _mean_over_images(
            lambda *args: (mask_loss(*args),), mask_logits, rois.labels[:, :prefix], targets, rois.positive[:, :prefix]
        )
        losses = {
            "rpn_objectness": rpn_objectness,
            "rpn_box": rpn_box,
            "classification": classification,
            "box": box,
            "mask": mask,
        }
        losses["total"] = tf.add_n(list(losses.values()))
        return losses

    # -- Keras fit ----------------------------------------------------------------------------------------

    def compile(
        self, optimizer="rmsprop", *, seed: int = 0, gradient_clip_norm: float | None = None, **kwargs: Any
    ) -> None:
        """Configure ``model.fit`` training: Keras' ``compile`` plus two Mask R-CNN arguments.

        Args:
            optimizer: a Keras optimizer (or its name).
            seed: the anchor and RoI sampling seeds of step ``i`` are ``(seed, i)`` with ``i`` the optimizer's
                iteration count, as in :func:`kzoo.training.step.make_train_step`.
            gradient_clip_norm: clip the global batch's gradient (all-reduced over the replicas) by its global
                norm. On one device the optimizer's ``global_clipnorm`` does the same; under a multi-replica
                strategy Keras 3 clips each replica's gradient before the all-reduce instead (a different
                update), so use this argument there.
            **kwargs: Keras ``compile`` arguments (``run_eagerly``, ``steps_per_execution``, ``jit_compile``...);
                ``loss`` and ``metrics`` are not supported: the model computes its own losses. ``jit_compile``
                defaults to ``False`` (Keras' ``"auto"`` turns XLA on where a GPU is, and XLA needs
                ``roi_align.method: gather``), as the custom loop's ``train.jit_compile`` does.
        """
        for key in ("loss", "loss_weights", "metrics", "weighted_metrics"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"MaskRCNNModel.compile: '{key}' is not supported (the model computes its losses "
                    f"itself: {', '.join(LOSS_NAMES)})"
                )
        if gradient_clip_norm is not None and not gradient_clip_norm > 0:
            raise ValueError(f"gradient_clip_norm must be positive or None, got {gradient_clip_norm}")
        if kwargs.get("jit_compile", "auto") == "auto":
            kwargs["jit_compile"] = False
        super().compile(optimizer=optimizer, **kwargs)
        self._train_seed = int(seed)
        self._gradient_clip_norm = float(gradient_clip_norm) if gradient_clip_norm else None
        with self.distribute_strategy.scope():
            trackers = [keras.metrics.Mean(name=name) for name in LOSS_NAMES]
        # like Keras' own loss tracker: not part of the model's tracked state (weights, checkpoints)
        object.__setattr__(self, "_loss_trackers", trackers)

    def get_compile_config(self) -> dict | None:
        config = super().get_compile_config()
        if config is not None:
            config = {**config, "seed": self._train_seed, "gradient_clip_norm": self._gradient_clip_norm}
        return config

    def compile_from_config(self, config: dict) -> None:
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self) -> list:
        """One ``keras.metrics.Mean`` per loss of ``LOSS_NAMES`` (after :meth:`compile`; Keras resets them every
        epoch)."""
        return list(getattr(self, "_loss_trackers", None) or [])

    def _maybe_symbolic_build(self, iterator=None, data_batch=None) -> None:
        # Keras 3 (TF backend) builds a model created under a strategy's scope by calling it symbolically on the
        # first batch of fit's data; this model's inputs are images and fit's batches are dicts of training
        # targets, so the model must be built beforehand (called on images); only the optimizer is built here.
        if not self.built:
            raise ValueError(
                "build MaskRCNNModel before fit: call it on images first, or build it with kzoo.applications.MaskRCNN"
            )
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def train_step(self, data: dict) -> dict[str, tf.Tensor]:
        """One replica's step of ``model.fit`` on a batch of
        :func:`kzoo.data.detection_pipeline.make_detection_pipeline`.

        The step of kzoo's own loop (:func:`kzoo.models.training_step.apply_training_step`, with ``seed`` and
        ``gradient_clip_norm`` from :meth:`compile`). Returns the metrics' running means (the mean over the
        replicas).
        """
        if isinstance(data, (list, tuple)):
            data = data[0]  # (x,) or (x, None) as Keras may pack a dict
        losses = apply_training_step(self, data, self.optimizer, self._train_seed, self._gradient_clip_norm)
        for tracker in self._loss_trackers:
            tracker.update_state(losses[tracker.name])
        return {tracker.name: tracker.result() for tracker in self._loss_trackers}

    # -- the whole graph ----------------------------------------------------------------------------------

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None) -> dict[str, np.ndarray]:
        """Keras' ``predict``, plus: a list (or ``tf.RaggedTensor``) of images of mixed sizes, one result row per
        image in order (images of one size run as one batch), and empty outputs of the right shapes for an empty
        batch or list (Keras itself fails on 0 samples with an ``UnboundLocalError``). Arrays run in batches of
        ``batch_size`` (default 32) through the compiled graph of their canvas, the one ``model(images)`` runs, so
        both give the same results whatever shapes came before (Keras' own ``predict`` retraces for a second
        input size with unknown sizes, which pads to the largest canvas); datasets go to Keras' ``predict``."""

        def check(shape, dtype, name: str) -> None:  # here too: Keras retraces its predict function with unknown
            # sizes for a second input shape, where the call's static check sees no sizes
            check_image_spec(
                tuple(shape), keras.backend.standardize_dtype(dtype), channels=3, name=name, allow_empty=True
            )

        if not _is_image_list(x):
            if hasattr(x, "shape") and hasattr(x, "dtype"):
                check(x.shape, x.dtype, "MaskRCNN RGB images")
                if x.shape[0] == 0:
                    return self.empty_outputs()
                return self._predict_batches(x, batch_size)
            return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks)
        images = _image_list(x)
        if not images:
            return self.empty_outputs()
        rows: dict[int, dict[str, np.ndarray]] = {}
        by_size: dict[tuple, list[int]] = {}
        for index, image in enumerate(images):
            by_size.setdefault((tuple(image.shape), str(image.dtype)), []).append(index)
        for indices in by_size.values():
            batch = np.stack([images[i] for i in indices])
            check(batch.shape, batch.dtype, f"images[{indices[0]}]")
            out = self._predict_batches(batch, batch_size)
            for row, index in enumerate(indices):
                rows[index] = {key: value[row] for key, value in out.items()}
        return {key: np.stack([rows[i][key] for i in range(len(images))]) for key in rows[0]}

    def _predict_batches(self, images, batch_size: int | None) -> dict[str, np.ndarray]:
        """Images ``[B, H, W, 3]`` (one size) in batches through :meth:`_compiled_inference`, as NumPy arrays."""
        step = int(batch_size or 32)
        parts = [self._compiled_inference(images[start : start + step]) for start in range(0, len(images), step)]
        return {key: np.concatenate([keras.ops.convert_to_numpy(part[key]) for part in parts]) for key in parts[0]}

    def empty_outputs(self) -> dict[str, np.ndarray]:
        """The outputs of a batch of 0 images (NumPy, the dtypes of :meth:`call`'s)."""
        detections, mask_size = self.config.detection.max_detections, 2 * self.config.roi_align.mask_size
        return {
            "detection_boxes": np.zeros((0, detections, 4), np.float32),
            "detection_scores": np.zeros((0, detections), np.float32),
            "detection_classes": np.zeros((0, detections), np.int32),
            "num_detections": np.zeros((0,), np.int32),
            "detection_masks": np.zeros((0, detections, mask_size, mask_size), np.float32),
        }

    def call(self, images, training: bool = False) -> dict:
        if isinstance(images, (list, tuple, tf.RaggedTensor)):  # mixed sizes: one image at a time
            parts = [self.call(image[None], training=training) for image in _image_list(images, tensors=True)]
            if not parts:
                raise ValueError("MaskRCNN got an empty list of images; model.predict([]) returns empty outputs")
            return {key: tf.concat([part[key] for part in parts], 0) for key in parts[0]}
        if not training and tf.executing_eagerly():
            return self._compiled_inference(images)
        return self._inference(images)

    def _inference(self, images, canvas: tuple[int, int] | None = None) -> dict:
        input_size = tf.shape(images)[1:3]
        padded, image_size = self.preprocess(images, canvas)
        batch_image_size = tf.tile(image_size[None], [tf.shape(padded)[0], 1])
        out = self.detect_resized(padded, batch_image_size, normalized=True)
        out["detection_boxes"] = boxes_to_input(out["detection_boxes"], image_size, input_size)
        return out

    def _compiled_inference(self, images) -> dict:
        """An eager inference call through the compiled graph of its canvas (see the class docstring)."""
        images = tf.convert_to_tensor(images)
        check_image_spec(images.shape, images.dtype, channels=3, name="MaskRCNN RGB images")
        _check_fixed_size(images, self.image_shape)
        config = self.config
        resized: tuple[int, int] = resized_size(
            int(images.shape[1]), int(images.shape[2]), config.input.min_size, config.input.max_size
        )  # Python ints in, Python ints out
        canvas = padded_size(*resized, config.input.size_divisible)
        graphs = self.__dict__.setdefault("_kzoo_compiled_graphs", collections.OrderedDict())  # not tracked
        key = (canvas, images.dtype.name)
        if key not in graphs:
            graphs[key] = tf.function(
                functools.partial(self._inference, canvas=canvas),
                input_signature=[tf.TensorSpec([None, None, None, 3], images.dtype)],
            )
            while len(graphs) > COMPILED_GRAPHS_KEPT:
                graphs.popitem(last=False)
        graphs.move_to_end(key)
        return graphs[key](images)

    def detect_resized(self, images, image_size, normalized: bool = False) -> dict:
        """Inference on images already resized and padded (the training pipeline's batches).

        Args:
            images: float32 ``[B, Hc, Wc, 3]`` pixels in ``[0, 255]`` (or normalized, with ``normalized``) on
                a canvas whose sides are multiples of ``input.size_divisible``.
            image_size: int32 ``[B, 2]``, each image's ``(height, width)`` inside the canvas.
            normalized: the images are already normalized.

        Returns:
            The outputs of :meth:`call`, with boxes in the resized images' pixels.
        """
        canvas = tf.convert_to_tensor(images, tf.float32)
        canvas = canvas if normalized else self.normalize(canvas)
        image_size = tf.cast(image_size, tf.int32)
        features = self.pyramid(canvas)
        proposals = self.propose(features, image_size)
        detections = self.detect(features, proposals, image_size)
        valid = tf.sequence_mask(detections["num_detections"], tf.shape(detections["scores"])[1])
        masks = self.segment(features, detections["boxes"], detections["classes"])
        masks = tf.where(valid[..., None, None], masks, 0.0)
        return {
            "detection_boxes": detections["boxes"],
            "detection_scores": detections["scores"],
            "detection_classes": detections["classes"],
            "num_detections": detections["num_detections"],
            "detection_masks": masks,
        }

    def get_config(self) -> dict:
        fixed = {"input_shape": list(self.image_shape)} if self.image_shape else {}
        return {"name": self.name, "config": dataclasses.asdict(self.config), **fixed}

    @classmethod
    def from_config(cls, config: dict) -> MaskRCNNModel:
        return cls(**config)

    # -- what only the model knows: its class-specific weights and trainable presets --------------------------------

    #: ``train.trainable_layers`` presets (:meth:`set_trainable_preset`).
    TRAINABLE_PRESETS: ClassVar[tuple[str, ...]] = MASK_RCNN_TRAINABLE_PRESETS
    #: Backbone layer name prefix of each ResNet stage (res2..res5 = torchvision's layer1..layer4).
    RESNET_STAGE_PREFIXES: ClassVar[dict[int, str]] = {2: "layer1_", 3: "layer2_", 4: "layer3_", 5: "layer4_"}

    def class_specific_weights(self) -> list[keras.Variable]:
        """The weights whose shapes depend on the class count (reset when weights of another class count are
        loaded, :func:`kzoo.models.weight_files.load_weights_transferring`): the predictors of the class scores
        (K logits), the box deltas (4K) and the mask logits (K channels)."""
        predictors = (self.box_head.cls_score, self.box_head.bbox_pred, self.mask_head.mask_fcn_logits)
        return [weight for layer in predictors for weight in layer.weights]

    def set_trainable_preset(self, preset: str) -> None:
        """Train what ``preset`` (one of :attr:`TRAINABLE_PRESETS`) names and freeze the rest: ``all`` everything,
        ``heads`` the RPN, box and mask heads, ``3+`` / ``4+`` / ``5+`` the ResNet stages from that one up, the FPN
        and the heads. A backbone layer built frozen (``frozen_stages``, frozen BatchNorm) stays frozen whatever
        the preset: the flags the backbone had before the first preset are kept."""
        if preset not in self.TRAINABLE_PRESETS:
            raise ValueError(
                f"Mask R-CNN trainable preset must be one of {list(self.TRAINABLE_PRESETS)}, got {preset!r}"
            )
        if "_kzoo_built_trainable" not in self.__dict__:  # not tracked by Keras
            self.__dict__["_kzoo_built_trainable"] = {layer.name: layer.trainable for layer in self.backbone.layers}
        built_trainable = self.__dict__["_kzoo_built_trainable"]
        first_stage = RESNET_STAGE_PRESETS.get(preset)
        stages = tuple(p for stage, p in self.RESNET_STAGE_PREFIXES.items() if first_stage and stage >= first_stage)
        for layer in self.backbone.layers:
            wanted = preset == "all" or (preset != "heads" and layer.name.startswith(stages))
            layer.trainable = built_trainable.get(layer.name, True) and wanted
        self.fpn.trainable = preset != "heads"


def check_input_shape(input_shape: Sequence[int | None] | None) -> tuple[int, int, int] | None:
    """``(H, W, 3)`` of a fixed input size, ``None`` for ``None`` or ``(None, None, 3)`` (any size).

    Raises:
        ValueError: not ``(height, width, 3)``, one side fixed and not the other, or a side that is not a positive
            integer.
    """
    if input_shape is None:
        return None
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape}")
    height, width = shape[:2]
    if height is None and width is None:
        return None
    if height is None or width is None:
        raise ValueError(
            f"input_shape {input_shape} fixes one side only: give both (a fixed size, static shapes) or neither"
        )
    for side in (height, width):
        if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < 1:
            raise ValueError(f"input_shape sides must be positive integers or None, got {input_shape}")
    return int(height), int(width), 3


def _check_fixed_size(images: tf.Tensor, image_shape: tuple[int, int, int] | None) -> tf.Tensor:
    """``images`` ``[B, H, W, 3]`` of the model's fixed size (static from here on); ValueError naming both sizes
    for another static size; a size unknown while tracing is checked when the graph runs."""
    if image_shape is None:
        return images
    height, width = image_shape[:2]
    got = tuple(images.shape[1:3])
    if any(side is not None and side != fixed for side, fixed in zip(got, (height, width))):
        raise ValueError(
            f"this MaskRCNN takes {height}x{width} images (input_shape={image_shape}), got "
            f"{'x'.join(str(side) for side in got)}: resize them, or build the model with input_shape=(None, None, 3) "
            "for any size"
        )
    return tf.ensure_shape(images, [None, height, width, 3])


def _is_image_list(images) -> bool:
    """Whether ``images`` is a Python list/tuple of images or a ``tf.RaggedTensor`` (not one array)."""
    return isinstance(images, (list, tuple, tf.RaggedTensor))


def _image_list(images, tensors: bool = False, name: str = "images") -> list:
    """A list/tuple of images ``[H_i, W_i, 3]`` or a ``tf.RaggedTensor`` ``[B, (H), (W), 3]`` -> a list of NumPy
    arrays (or, with ``tensors``, tensors), each checked to be one image; errors name ``images[i]``."""
    if isinstance(images, tf.RaggedTensor):
        if not tf.executing_eagerly():
            raise ValueError(
                f"a tf.RaggedTensor of {name} is taken eagerly only (model(...) or model.predict outside a "
                "tf.function); inside one, pass images of one size per call, or a Python list of images"
            )
        images = [images[i] for i in range(int(images.nrows()))]
        images = [image.to_tensor() if isinstance(image, tf.RaggedTensor) else image for image in images]
    out = []
    for index, image in enumerate(images):
        if not tensors:
            image = np.asarray(keras.ops.convert_to_numpy(image))
        elif not isinstance(image, tf.Tensor):
            image = tf.convert_to_tensor(image)
        if len(image.shape) != 3:
            raise ValueError(
                f"{name}[{index}] must be one image [height, width, 3] (a list holds one image per entry; pass a "
                f"batch [B, H, W, 3] of one size as one array), got shape {list(image.shape)}"
            )
        out.append(image)
    return out
