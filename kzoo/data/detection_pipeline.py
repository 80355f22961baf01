"""The tf.data pipeline for detection and instance segmentation, shared by every source
(:mod:`kzoo.data.detection_sources`): resize, flip and augment, pad to a canvas, crop each instance mask to its box,
batch.

Boxes are ``[ymin, xmin, ymax, xmax]`` float32 absolute pixels (pixel ``(r, c)`` covering
``[r, r + 1) x [c, c + 1)``) everywhere; labels are 1..K with 0 the background.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import tensorflow as tf

from kzoo.data import augment
from kzoo.data.detection_sources import count_instances, instance_dataset
from kzoo.data.options import augmentation_problem, check_resize_rule
from kzoo.ops.resize import resize_scale, resized_size, scale_boxes


def crop_masks_to_boxes(masks: tf.Tensor, boxes: tf.Tensor, mask_size: int, samples: int = 2) -> tf.Tensor:
    """Each full-image mask cropped to its box at ``mask_size x mask_size`` (the mask-target layout).

    Cell ``(i, j)`` of the crop is the fraction of the box's cell ``(i, j)`` (the box split in a
    ``mask_size`` grid) that the mask covers, estimated on ``samples x samples`` regular points per cell,
    each reading the pixel it falls in (a mask is a union of unit pixel squares). So a mask that fills its
    box gives exactly ones, whatever the box's size; the crop does not depend on the image's scale, and
    flipping the image flips the crop. It is one ``tf.image.crop_and_resize`` (nearest, on the masks padded
    by one replicated pixel so that samples in the outer half of border pixels read them) and an average.

    Args:
        masks: ``[n, H, W]`` 0/1 masks (uint8, bool or float).
        boxes: float32 ``[n, 4]`` ``[ymin, xmin, ymax, xmax]`` in the masks' pixels, inside ``[0, H] x [0, W]``.
        mask_size: the output side ``S``.
        samples: points per cell side.

    Returns:
        float32 ``[n, S, S]`` in ``[0, 1]``.
    """
    if masks.dtype == tf.bool:
        masks = tf.cast(masks, tf.uint8)
    n_samples = mask_size * samples
    padded = tf.pad(masks[..., None], [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    size = tf.cast(tf.shape(padded)[1:3], tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(tf.cast(boxes, tf.float32), num=4, axis=-1)
    half_h = 0.5 * (ymax - ymin) / n_samples
    half_w = 0.5 * (xmax - xmin) / n_samples
    # sample k sits at ymin + (k + 0.5) h / N; pixel r (center r + 0.5) is index r + 1 in the padded masks,
    # and nearest sampling rounds the index: round(y - 0.5 + 1) - 1 = floor(y), the pixel y falls in
    normalized = tf.stack(
        [
            (ymin + half_h + 0.5) / (size[0] - 1),
            (xmin + half_w + 0.5) / (size[1] - 1),
            (ymax - half_h + 0.5) / (size[0] - 1),
            (xmax - half_w + 0.5) / (size[1] - 1),
        ],
        axis=-1,
    )
    count = tf.shape(masks)[0]
    crops = tf.image.crop_and_resize(
        padded, normalized, tf.range(count), [n_samples, n_samples], method="nearest", extrapolation_value=0.0
    )
    crops = tf.reshape(crops, [count, mask_size, samples, mask_size, samples])
    return tf.reduce_mean(crops, axis=[2, 4])


def _prepare(example: dict, key: tf.Tensor, flip: tf.Tensor, cfg: _Config) -> dict:
    """One instance dict -> one padded example of the batch (see :func:`make_detection_pipeline`'s result)."""
    original = tf.shape(example["image"])[:2]
    tf.debugging.assert_positive(tf.reduce_min(original), message="cannot resize an empty image")
    size = resized_size(original[0], original[1], cfg.min_size, cfg.max_size)
    tf.debugging.assert_less_equal(
        size,
        tf.constant(cfg.canvas, tf.int32),
        message=f"resized image larger than the canvas {cfg.canvas}: use a square image_size >= max_size",
    )
    if cfg.scale_jitter is None:
        scale = resize_scale(original[0], original[1], cfg.min_size, cfg.max_size)
        resized, instances = _resized(example, original, size, cfg)
    else:
        jitter = augment.random_scale_window(
            tf.random.experimental.stateless_fold_in(key, 1),
            original,
            cfg.min_size,
            cfg.max_size,
            cfg.canvas,
            cfg.scale_jitter,
        )
        scale, size = jitter.scale, jitter.window
        resized, instances = _jittered(example, original, jitter, cfg)
    resized, instances = _flipped(resized, instances, size, flip)
    if cfg.color_jitter:
        resized = augment.color_jitter(
            resized, tf.random.experimental.stateless_fold_in(key, 2), *cfg.color_jitter, max_value=255.0
        )
    return _padded(resized, instances, size, original, scale, example["image_id"], cfg)


def _clipped_boxes(boxes: tf.Tensor, original: tf.Tensor) -> tf.Tensor:
    """Boxes clipped to the input image of size ``original``."""
    original_f = tf.cast(original, tf.float32)
    return tf.minimum(tf.maximum(boxes, 0.0), tf.concat([original_f, original_f], 0))


def _resized(example: dict, original: tf.Tensor, size: tf.Tensor, cfg: _Config) -> tuple[tf.Tensor, dict]:
    """The image resized by the rule to ``size``, and its first ``max_instances`` instances: boxes clipped and scaled
    per axis (as the image content moved), masks cropped to their boxes."""
    resized = tf.image.resize(example["image"], size, method="bilinear", antialias=False)
    count = tf.minimum(tf.shape(example["classes"])[0], cfg.max_instances)
    boxes = _clipped_boxes(example["boxes"][:count], original)
    masks = crop_masks_to_boxes(example["masks"][:count], boxes, cfg.mask_size, cfg.mask_samples)
    return (
        resized,
        {
            "boxes": scale_boxes(boxes, original, size),  # per axis, as the image content moved
            "masks": masks,
            "classes": example["classes"][:count],
            "is_crowd": example["is_crowd"][:count],
        },
    )


def _jittered(example: dict, original: tf.Tensor, jitter: augment.ScaleWindow, cfg: _Config) -> tuple[tf.Tensor, dict]:
    """The image resized by the jitter's scale and cut to its window, and the instances the window keeps (at most
    ``max_instances``): instances are cut in the input's pixels, on the full masks, so a cut one gets its mask's
    tight box in the window and its box-cropped mask is cropped from the full mask to that box; a cut one left with
    a box side under ``min_box_size`` is dropped."""
    resized = tf.image.resize(example["image"], jitter.scaled_size, method="bilinear", antialias=False)
    resized = tf.slice(resized, tf.concat([jitter.offset, [0]], 0), tf.concat([jitter.window, [3]], 0))
    region = augment.window_in_input(jitter.offset, jitter.window, jitter.scaled_size, original)
    boxes = _clipped_boxes(example["boxes"], original)
    boxes, cut = augment.clip_instances_to_window(boxes, example["masks"], region)
    offset = tf.cast(tf.tile(jitter.offset, [2]), tf.float32)
    window = tf.cast(tf.tile(jitter.window, [2]), tf.float32)
    moved = tf.minimum(tf.maximum(scale_boxes(boxes, original, jitter.scaled_size) - offset, 0.0), window)
    sides = tf.minimum(moved[:, 2] - moved[:, 0], moved[:, 3] - moved[:, 1])
    keep = tf.logical_not(cut) | ((sides > 0.0) & (sides >= cfg.min_box_size))
    kept = tf.where(keep)[:, 0][: cfg.max_instances]
    masks = crop_masks_to_boxes(
        tf.gather(example["masks"], kept), tf.gather(boxes, kept), cfg.mask_size, cfg.mask_samples
    )
    return resized, {
        "boxes": tf.gather(moved, kept),
        "masks": masks,
        "classes": tf.gather(example["classes"], kept),
        "is_crowd": tf.gather(example["is_crowd"], kept),
    }


def _flipped(image: tf.Tensor, instances: dict, size: tf.Tensor, flip: tf.Tensor) -> tuple[tf.Tensor, dict]:
    """Image, boxes and box-cropped masks flipped left-right together when ``flip`` (a bool scalar) is true; the
    image covers ``size`` of the canvas."""
    width = tf.cast(size[1], tf.float32)
    boxes, masks = instances["boxes"], instances["masks"]
    ymin, xmin, ymax, xmax = tf.unstack(boxes, num=4, axis=-1)
    flipped = tf.stack([ymin, width - xmax, ymax, width - xmin], axis=-1)
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    boxes = tf.cond(flip, lambda: flipped, lambda: boxes)
    masks = tf.cond(flip, lambda: tf.reverse(masks, [2]), lambda: masks)
    return image, {**instances, "boxes": boxes, "masks": masks}


def _padded(
    image: tf.Tensor, instances: dict, size: tf.Tensor, original: tf.Tensor, scale, image_id, cfg: _Config
) -> dict:
    """The example padded to the canvas and its instances to ``max_instances``, with its static shapes."""
    count = tf.shape(instances["classes"])[0]
    pad = cfg.max_instances - count
    out = {
        "images": tf.image.pad_to_bounding_box(image, 0, 0, cfg.canvas[0], cfg.canvas[1]),
        "image_size": size,
        "original_size": tf.cast(original, tf.int32),
        "scale": tf.cast(scale, tf.float32),
        "boxes": tf.pad(instances["boxes"], [[0, pad], [0, 0]]),
        "classes": tf.pad(instances["classes"], [[0, pad]]),
        "is_crowd": tf.pad(instances["is_crowd"], [[0, pad]]),
        "valid": tf.range(cfg.max_instances) < count,
        "masks": tf.pad(instances["masks"], [[0, pad], [0, 0], [0, 0]]),
        "image_id": tf.cast(image_id, tf.int64),
    }
    for name, shape in _output_shapes(cfg).items():
        out[name] = tf.ensure_shape(out[name], shape)
    return out


def _output_shapes(cfg: _Config) -> dict[str, list[int]]:
    m, s = cfg.max_instances, cfg.mask_size
    return {
        "images": [*cfg.canvas, 3],
        "image_size": [2],
        "original_size": [2],
        "scale": [],
        "boxes": [m, 4],
        "classes": [m],
        "is_crowd": [m],
        "valid": [m],
        "masks": [m, s, s],
        "image_id": [],
    }


def _pad_batch(batch: dict, cfg: _Config, batch_size: int) -> dict:
    """Pad a (last, partial) batch to ``batch_size`` with empty images: ``image_id`` -1, nothing valid."""
    missing = batch_size - tf.shape(batch["image_id"])[0]
    canvas = tf.constant(cfg.canvas, tf.int32)
    fill = {"image_id": tf.constant(-1, tf.int64), "scale": tf.constant(1.0)}
    out = {}
    for key, value in batch.items():
        rank = len(_output_shapes(cfg)[key])
        if key in ("image_size", "original_size"):
            extra = tf.tile(canvas[None], [missing, 1])
            value = tf.concat([value, extra], 0)
        else:
            value = tf.pad(value, [[0, missing]] + [[0, 0]] * rank, constant_values=fill.get(key, 0))
        out[key] = tf.ensure_shape(value, [batch_size, *_output_shapes(cfg)[key]])
    return out


@dataclasses.dataclass(frozen=True)
class _Config:
    canvas: tuple[int, int]
    min_size: int
    max_size: int
    max_instances: int
    mask_size: int
    mask_samples: int
    # training augmentation (None / () when off)
    scale_jitter: tuple[float, float] | None = None
    min_box_size: float = 2.0
    color_jitter: tuple[float, float, float, float] | tuple[()] = ()


def make_detection_pipeline(
    source,
    batch_size: int,
    training: bool,
    image_size: int | Sequence[int] = 512,
    min_size: int | None = None,
    max_size: int | None = None,
    max_instances: int = 100,
    mask_size: int = 56,
    horizontal_flip: bool = True,
    mask_samples: int = 2,
    shuffle_buffer: int = 1000,
    seed: int = 0,
    pad_last_batch: bool = True,
    *,
    scale_jitter: Sequence[float] | None = None,
    min_box_size: float = 2.0,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    hue: float = 0.0,
) -> tf.data.Dataset:
    """Batches of padded images and padded ground truth, with box-cropped instance masks.

    Per example: decode (file sources), resize keeping the aspect ratio so the short side is ``min_size``
    unless the long side would pass ``max_size`` (``kzoo.ops.resize.resized_size``'s rule, bilinear, as the
    model's ``resize_and_pad``), flip horizontally at random in training (image, boxes and masks together),
    pad at the bottom/right to the ``image_size`` canvas, and pad the ground truth to ``max_instances``
    (extra instances beyond it are dropped, first ones kept). Each instance mask is cropped to its box at
    ``mask_size x mask_size`` (:func:`crop_masks_to_boxes`), so a RoI's mask target is one crop_and_resize
    of it. Boxes are clipped to the image and scaled per axis by ``image_size / original_size`` (as the
    image content moved).

    Training pipelines shuffle every epoch (the whole index list for list and COCO sources, a
    ``shuffle_buffer`` of examples otherwise) and drop the last partial batch. Evaluation pipelines keep
    the order and every example; a training source (of examples or records) without a single instance is an
    error. With ``pad_last_batch`` the last batch is filled up with empty images
    (``image_id`` -1, ``valid`` all False, ``image_size`` the canvas) so every batch has the same static
    shape. Random flips are reproducible from ``seed`` (different in each epoch).

    Training augmentation (off by default, never in evaluation; all in the graph, reproducible from ``seed`` and
    different in each epoch, see :mod:`kzoo.data.augment`): ``scale_jitter`` resizes the image by the rule with
    ``min_size`` and ``max_size`` times a random ``s`` in ``[low, high]``, then cuts a canvas-sized window at a
    random place from it (``s > 1``) or pads it (``s < 1``). Instances cut by the window get the tight box of their
    mask's part inside it and their box-cropped mask is cropped to that box from the full mask; cut instances
    left with a box side below ``min_box_size`` pixels (or nothing) are dropped, before the ``max_instances``
    cut. ``image_size`` is then the part of the canvas the image covers, ``scale`` the applied resize factor, and
    ``original_size`` the input's size. The flip is applied inside that part, then the color jitter
    (torchvision's ``ColorJitter``: ``brightness``, ``contrast``, ``saturation``, ``hue``) to it, in ``[0, 255]``.

    The augmentation arguments are checked by the config's rule (:func:`kzoo.data.options.augmentation_problem`).

    Args:
        source: one of :mod:`kzoo.data.detection_sources`' sources (example dicts, a generator function,
            ``CocoInstances``, ``TfdsInstances``, a ``tf.data.Dataset`` of instance dicts).
        batch_size: images per batch ``B``.
        training: shuffle, flip, drop the remainder.
        image_size: the padded canvas ``Hc x Wc``: an int (square) or ``(Hc, Wc)``.
        min_size, max_size: the resize rule; ``max_size`` defaults to ``max(image_size)`` and ``min_size`` to
            ``max_size`` (then the long side fills the canvas). Every resized image must fit the canvas: a
            square canvas of side ``>= max_size`` always does; a non-square one fails at run time on an
            image that does not fit.
        max_instances: ``M``, the ground truth's padded length.
        mask_size: ``S``, the side of the box-cropped masks.
        horizontal_flip: flip half the training images.
        mask_samples: sampling points per mask cell side (see :func:`crop_masks_to_boxes`).
        shuffle_buffer: shuffle buffer for sources that are datasets or generators.
        seed: shuffle and flip seed.
        pad_last_batch: in evaluation, fill the last batch up to ``batch_size``.
        scale_jitter: ``(low, high)`` training scale jitter range (TF Model Garden: ``(0.5, 2.0)``), or ``None``.
        min_box_size: cut instances with a box side (canvas pixels) below this are dropped.
        brightness, contrast, saturation: training color jitter in ``[0, 1]``, factors from ``[1 - x, 1 + x]``; 0
            is off.
        hue: training hue shift of up to ``hue`` (``<= 0.5``) of the color wheel; 0 is off.

    Returns:
        A dataset of dicts: ``images`` float32 ``[B, Hc, Wc, 3]`` (pixels 0..255, not normalized),
        ``image_size`` int32 ``[B, 2]`` (the resized, un-padded ``(height, width)``), ``original_size``
        int32 ``[B, 2]``, ``scale`` float32 ``[B]`` (the resize factor of the rule; per axis the exact
        ratio is ``image_size / original_size``), ``boxes`` float32 ``[B, M, 4]`` (``[ymin, xmin, ymax,
        xmax]`` pixels of the resized image), ``classes`` int32 ``[B, M]`` (1..K, 0 on padding),
        ``is_crowd`` bool ``[B, M]``, ``valid`` bool ``[B, M]``, ``masks`` float32 ``[B, M, S, S]``
        (box-cropped, in ``[0, 1]``) and ``image_id`` int64 ``[B]``.
    """
    cfg = _pipeline_config(
        training,
        image_size,
        min_size,
        max_size,
        (batch_size, max_instances, mask_size, mask_samples),
        scale_jitter,
        min_box_size,
        (brightness, contrast, saturation, hue),
    )
    dataset, loader, count = instance_dataset(source)
    if training and count and count_instances(source) == 0:  # a full run on nothing would end "successfully"
        raise ValueError(
            f"the training source has no instances ({count} images, 0 instances): nothing to learn "
            "from; check its annotations"
        )
    if training:
        # a source with a loader is a list: its count is known
        buffer = cast(int, count) if loader is not None else min(shuffle_buffer, count or shuffle_buffer)
        dataset = dataset.shuffle(max(buffer, 1), seed=seed, reshuffle_each_iteration=True)
    random = training and (horizontal_flip or cfg.scale_jitter is not None or bool(cfg.color_jitter))
    dataset = tf.data.Dataset.zip(dataset, _random_keys(random, seed))
    transform = _transform(loader, cfg, seed, flip=training and horizontal_flip)
    dataset = dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    if not training and pad_last_batch:
        dataset = dataset.map(lambda batch: _pad_batch(batch, cfg, batch_size), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _pipeline_config(
    training: bool,
    image_size,
    min_size: int | None,
    max_size: int | None,
    counts: tuple[int, int, int, int],
    scale_jitter: Sequence[float] | None,
    min_box_size: float,
    colors: tuple[float, float, float, float],
) -> _Config:
    """The checked settings of a pipeline (see :func:`make_detection_pipeline`); the augmentation only in
    training. ``counts``: ``(batch_size, max_instances, mask_size, mask_samples)``; ``colors``: ``(brightness,
    contrast, saturation, hue)``.

    Raises:
        ValueError: a value out of its range (named).
    """
    size: Any = image_size  # an int (NumPy's too) or a (height, width) pair
    canvas = (int(size), int(size)) if np.ndim(size) == 0 else tuple(int(s) for s in size)
    if len(canvas) != 2 or min(canvas) < 1:
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    max_size = int(max_size or max(canvas))
    min_size = int(min_size or max_size)
    check_resize_rule(min_size, max_size)
    if max_size > max(canvas):
        raise ValueError(f"max_size {max_size} does not fit the canvas {canvas}")
    batch_size, max_instances, mask_size, mask_samples = counts
    if min(counts) < 1:
        raise ValueError(
            f"need batch_size, max_instances, mask_size, mask_samples >= 1, "
            f"got {batch_size}, {max_instances}, {mask_size}, {mask_samples}"
        )
    problem = augmentation_problem(scale_jitter, min_box_size, *colors)
    if problem is not None:
        raise ValueError(" ".join(problem))
    colors = cast(tuple[float, float, float, float], tuple(float(c) for c in colors))
    return _Config(
        cast(tuple[int, int], canvas),
        min_size,
        max_size,
        max_instances,
        mask_size,
        mask_samples,
        scale_jitter=(float(scale_jitter[0]), float(scale_jitter[1]))
        if training and scale_jitter is not None
        else None,
        min_box_size=float(min_box_size),
        color_jitter=colors if training and any(colors) else (),
    )


def _random_keys(random: bool, seed: int) -> tf.data.Dataset:
    """One int64 per element: random numbers (different in each epoch, reproducible from ``seed``) when the
    pipeline draws anything, else zeros."""
    if random:
        return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).repeat()


def _transform(loader, cfg: _Config, seed: int, flip: bool):
    """``(element, random) -> example``: the element loaded (when the source has a loader) and prepared; the
    element's key ``(random, seed)`` draws the flip, and keys folded from it the other augmentations."""

    def transform(element, random):
        example = loader(element) if loader is not None else element
        key = tf.stack([random, tf.constant(seed, tf.int64)])
        flipped = tf.random.stateless_uniform([], seed=key) < 0.5 if flip else tf.constant(False)
        return _prepare(example, key, flipped, cfg)

    return transform
