"""The tf.data pipeline for detection and instance segmentation, shared by every source.

Sources (all give the same batches):

- in-memory examples: a list of dicts with ``image`` uint8 ``[H, W, 3]``, ``boxes`` ``[n, 4]``,
  ``classes`` ``[n]`` (labels 1..K), ``masks`` bool ``[n, H, W]``, optionally ``is_crowd`` ``[n]`` and
  ``image_id`` (default: position + 1), as :func:`kzoo.data.shapes.make_shapes_instances` makes them;
  or a callable returning an iterator of such dicts (read through ``tf.data.Dataset.from_generator``);
- a COCO-format set, :func:`kzoo.data.coco.load_coco_instances`'s result (images and masks decoded
  lazily, in parallel);
- a TFDS builder through :func:`load_tfds_instances`;
- any ``tf.data.Dataset`` of unbatched "instance" dicts (``INSTANCE_SPEC``).

Boxes are ``[ymin, xmin, ymax, xmax]`` float32 absolute pixels (pixel ``(r, c)`` covering
``[r, r + 1) x [c, c + 1)``) everywhere; labels are 1..K with 0 the background.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import tensorflow as tf

from kzoo.data import augment
from kzoo.data.coco import CocoCategories, CocoInstances, CocoRecord
from kzoo.data.coco_categories import COCO_CATEGORIES
from kzoo.ops.resize import resize_scale, resized_size, scale_boxes

#: One unbatched example as it enters the common transform.
INSTANCE_SPEC = {
    "image": tf.TensorSpec([None, None, 3], tf.uint8),
    "boxes": tf.TensorSpec([None, 4], tf.float32),
    "classes": tf.TensorSpec([None], tf.int32),
    "is_crowd": tf.TensorSpec([None], tf.bool),
    "masks": tf.TensorSpec([None, None, None], tf.uint8),
    "image_id": tf.TensorSpec([], tf.int64),
}

# ------------------------------------------------------------------------------------------------ sources


def _example_arrays(example: dict, index: int) -> dict:
    """One in-memory example, checked and converted to ``INSTANCE_SPEC``'s dtypes (NumPy)."""
    if "image" not in example or "classes" not in example:
        raise ValueError(f"example {index}: needs 'image' and 'classes' (and 'boxes', 'masks')")
    image = np.asarray(example["image"])
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or image.dtype != np.uint8:
        raise ValueError(f"example {index}: image must be uint8 [H, W, 1|3|4], got {image.dtype} {image.shape}")
    image = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    height, width = image.shape[:2]
    classes = np.asarray(example["classes"], np.int32).reshape(-1)
    n = len(classes)
    boxes = np.asarray(example.get("boxes", np.zeros((0, 4))), np.float32).reshape(-1, 4)
    masks = np.asarray(example["masks"]) if "masks" in example else None
    if masks is None:
        raise ValueError(f"example {index}: needs 'masks' bool [n, H, W]")
    if masks.shape != (n, height, width):
        raise ValueError(f"example {index}: masks {masks.shape} for {n} instances of an image {height}x{width}")
    if len(boxes) != n:
        raise ValueError(f"example {index}: {len(boxes)} boxes for {n} classes")
    is_crowd = np.asarray(example.get("is_crowd", np.zeros(n, bool)), bool).reshape(-1)
    if len(is_crowd) != n:
        raise ValueError(f"example {index}: {len(is_crowd)} is_crowd flags for {n} classes")
    return {
        "image": np.ascontiguousarray(image),
        "boxes": boxes,
        "classes": classes,
        "is_crowd": is_crowd,
        "masks": masks.astype(np.uint8),
        "image_id": np.int64(example.get("image_id", index + 1)),
    }


_KEYS = tuple(INSTANCE_SPEC)
_DTYPES = tuple(INSTANCE_SPEC[k].dtype for k in _KEYS)


def _with_shapes(values: Sequence[tf.Tensor]) -> dict:
    out = dict(zip(_KEYS, values))
    for key in _KEYS:
        out[key].set_shape(INSTANCE_SPEC[key].shape)
    return out


def _python_loader(load: Callable[[int], dict]) -> Callable[[tf.Tensor], dict]:
    """Index -> instance dict, through ``tf.numpy_function`` (arrays produced by ``load(index)``)."""

    def call(index):
        arrays = load(int(index))
        return tuple(arrays[k] for k in _KEYS)

    return lambda index: _with_shapes(tf.numpy_function(call, [index], _DTYPES, stateful=False))


def _coco_loader(records: Sequence[CocoRecord]) -> Callable[[tf.Tensor], dict]:
    """Index -> instance dict: the image file read and decoded by TF, the masks by pycocotools."""
    paths = tf.constant([r.file_path for r in records], tf.string)

    def annotations(index):
        record = records[int(index)]
        return record.boxes, record.classes, record.is_crowd, record.masks(), np.int64(record.image_id)

    def load(index):
        image = tf.io.decode_image(tf.io.read_file(tf.gather(paths, index)), channels=3, expand_animations=False)
        boxes, classes, is_crowd, masks, image_id = tf.numpy_function(
            annotations, [index], [tf.float32, tf.int32, tf.bool, tf.uint8, tf.int64], stateful=False
        )
        return _with_shapes([image, boxes, classes, is_crowd, masks, image_id])

    return load


class ImageDecodeError(ValueError):
    """An image file of a data set cannot be decoded (truncated or corrupt); the message names the file."""


#: Messages of TF's image decoders (``DecodeImage`` and the per-format kernels it calls).
_DECODE_MESSAGES = re.compile(
    r"Decode(Image|Png|Jpeg|Gif|Bmp)|Invalid (PNG|JPEG|GIF|BMP)|jpeg::|image format|"
    r"Input is empty|truncated|corrupt",
    re.IGNORECASE,
)


def _decode_problem(path: str) -> str | None:
    """``None`` when TF decodes the file as the pipeline does, else the first line of TF's error."""
    try:
        tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    except tf.errors.OpError as error:
        return (error.message.strip().splitlines() or [type(error).__name__])[0]
    return None


def find_undecodable_image(
    records: Sequence[CocoRecord], workers: int = 4, chunk: int = 64
) -> tuple[CocoRecord, str] | None:
    """The first record (in order) whose image file ``tf.io.decode_image`` cannot decode, with TF's message.

    Decodes every file (a few in parallel, stopping at the first failure): for error reports, not the hot path.

    Args:
        records: the records of a COCO-format source (``CocoInstances.records``).
        workers: decoding threads.
        chunk: files decoded per round (the scan stops after the round holding the first failure).

    Returns:
        ``(record, message)``, or ``None`` when every file decodes.
    """
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(records), chunk):
            part = records[start : start + chunk]
            for record, problem in zip(part, pool.map(lambda r: _decode_problem(r.file_path), part)):
                if problem is not None:
                    return record, problem
    return None


def explain_image_error(source, error: BaseException, split: str = "data") -> ImageDecodeError | None:
    """When ``error`` (raised while iterating a pipeline of ``source``) is TF failing to decode an image file of
    a COCO-format ``source``, an :class:`ImageDecodeError` naming the file and its image id; else ``None``.

    TF's decode error does not say which file it was reading, so the files are decoded again, in order, to find
    it (only when this happens: the pipeline itself is not slowed down).

    Args:
        source: the pipeline's source (:class:`CocoInstances` or a list of :class:`CocoRecord`; others: ``None``).
        error: the exception the pipeline raised.
        split: a word for the message (``"training"``, ``"evaluation"``).
    """
    records = source.records if isinstance(source, CocoInstances) else source
    if not (isinstance(records, Sequence) and records and all(isinstance(r, CocoRecord) for r in records)):
        return None
    if not isinstance(error, (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.UnknownError)):
        return None
    if not _DECODE_MESSAGES.search(str(error)):
        return None
    if len(records) > 1000:
        print(f"an image of the {split} set cannot be decoded; decoding its {len(records)} images to find which")
    found = find_undecodable_image(records)
    if found is None:
        return None
    record, problem = found
    return ImageDecodeError(
        f"{split} image {record.file_path} (image id {record.image_id}) cannot be decoded ({problem}): the file is "
        "truncated or corrupt; replace or remove it (data.check_images: full finds such files before training "
        "and drops them with a warning)"
    )


@contextlib.contextmanager
def naming_undecodable_images(source, split: str = "data") -> Iterator[None]:
    """Run the block (which iterates a pipeline of ``source``); an image decode error of a COCO-format source comes
    out as an :class:`ImageDecodeError` naming the file (:func:`explain_image_error`), anything else unchanged."""
    try:
        yield
    except tf.errors.OpError as error:
        explained = explain_image_error(source, error, split)
        if explained is None:
            raise
        raise explained from error


def _source(source) -> tuple[tf.data.Dataset, Callable | None, int | None]:
    """``(dataset, loader, count)``: a dataset of indices with a loader, or of instance dicts (no loader)."""
    if isinstance(source, TfdsInstances):
        source = source.dataset
    if isinstance(source, tf.data.Dataset):
        spec = source.element_spec
        if not isinstance(spec, dict) or set(spec) != set(INSTANCE_SPEC):
            raise ValueError(f"a tf.data source must yield dicts with keys {sorted(INSTANCE_SPEC)}, got {spec}")
        cardinality = int(source.cardinality())
        return source, None, cardinality if cardinality >= 0 else None
    if isinstance(source, CocoInstances):
        source = source.records
    if callable(source):

        def generate():
            for index, example in enumerate(source()):
                yield _example_arrays(example, index)

        return tf.data.Dataset.from_generator(generate, output_signature=INSTANCE_SPEC), None, None
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        if len(source) == 0:
            raise ValueError("the source has no examples")
        if all(isinstance(r, CocoRecord) for r in source):
            loader = _coco_loader(list(source))
        elif all(isinstance(e, dict) for e in source):
            arrays = [_example_arrays(e, i) for i, e in enumerate(source)]
            loader = _python_loader(arrays.__getitem__)
        else:
            raise ValueError("a list source must hold only example dicts or only CocoRecords")
        return tf.data.Dataset.range(len(source)), loader, len(source)
    raise TypeError(
        f"unsupported source {type(source).__name__}: give example dicts, a generator function, "
        "CocoInstances, TfdsInstances or a tf.data.Dataset of instance dicts"
    )


def count_instances(source) -> int | None:
    """The number of instances (crowd regions included) of a list source (example dicts, :class:`CocoRecord` s,
    :class:`CocoInstances`); ``None`` for sources that cannot be counted without reading them (generators,
    ``tf.data``)."""
    if isinstance(source, CocoInstances):
        source = source.records
    if not isinstance(source, Sequence) or isinstance(source, (str, bytes)):
        return None
    total = 0
    for item in source:
        if isinstance(item, CocoRecord):
            total += len(item.classes)
        elif isinstance(item, dict) and "classes" in item:
            total += len(np.asarray(item["classes"]).reshape(-1))
        else:
            return None
    return total


# ------------------------------------------------------------------------------------------ the transform


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
    image = example["image"]
    original = tf.shape(image)[:2]
    tf.debugging.assert_positive(tf.reduce_min(original), message="cannot resize an empty image")
    scale = resize_scale(original[0], original[1], cfg.min_size, cfg.max_size)
    size = resized_size(original[0], original[1], cfg.min_size, cfg.max_size)
    tf.debugging.assert_less_equal(
        size,
        tf.constant(cfg.canvas, tf.int32),
        message=f"resized image larger than the canvas {cfg.canvas}: use a square image_size >= max_size",
    )
    if cfg.scale_jitter is None:
        resized = tf.image.resize(image, size, method="bilinear", antialias=False)
        count = tf.minimum(tf.shape(example["classes"])[0], cfg.max_instances)
        original_f = tf.cast(original, tf.float32)
        limits = tf.concat([original_f, original_f], 0)
        boxes = tf.minimum(tf.maximum(example["boxes"][:count], 0.0), limits)
        masks = crop_masks_to_boxes(example["masks"][:count], boxes, cfg.mask_size, cfg.mask_samples)
        boxes = scale_boxes(boxes, original, size)  # per axis, as the image content moved
        classes = example["classes"][:count]
        is_crowd = example["is_crowd"][:count]
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
        resized = tf.image.resize(image, jitter.scaled_size, method="bilinear", antialias=False)
        resized = tf.slice(resized, tf.concat([jitter.offset, [0]], 0), tf.concat([jitter.window, [3]], 0))
        # instances are cut in the input's pixels, on the full masks: a cut one gets its mask's tight box in the
        # window, and its box-cropped mask is cropped from the full mask to that box
        region = augment.window_in_input(jitter.offset, jitter.window, jitter.scaled_size, original)
        original_f = tf.cast(original, tf.float32)
        limits = tf.concat([original_f, original_f], 0)
        boxes = tf.minimum(tf.maximum(example["boxes"], 0.0), limits)
        boxes, cut = augment.clip_instances_to_window(boxes, example["masks"], region)
        offset = tf.cast(tf.tile(jitter.offset, [2]), tf.float32)
        window = tf.cast(tf.tile(jitter.window, [2]), tf.float32)
        moved = tf.minimum(tf.maximum(scale_boxes(boxes, original, jitter.scaled_size) - offset, 0.0), window)
        sides = tf.minimum(moved[:, 2] - moved[:, 0], moved[:, 3] - moved[:, 1])
        keep = tf.logical_not(cut) | ((sides > 0.0) & (sides >= cfg.min_box_size))
        kept = tf.where(keep)[:, 0][: cfg.max_instances]
        count = tf.shape(kept)[0]
        masks = crop_masks_to_boxes(
            tf.gather(example["masks"], kept), tf.gather(boxes, kept), cfg.mask_size, cfg.mask_samples
        )
        boxes = tf.gather(moved, kept)
        classes = tf.gather(example["classes"], kept)
        is_crowd = tf.gather(example["is_crowd"], kept)

    width = tf.cast(size[1], tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(boxes, num=4, axis=-1)
    flipped = tf.stack([ymin, width - xmax, ymax, width - xmin], axis=-1)
    resized = tf.cond(flip, lambda: tf.reverse(resized, [1]), lambda: resized)
    boxes = tf.cond(flip, lambda: flipped, lambda: boxes)
    masks = tf.cond(flip, lambda: tf.reverse(masks, [2]), lambda: masks)
    if cfg.color_jitter:
        resized = augment.color_jitter(
            resized, tf.random.experimental.stateless_fold_in(key, 2), *cfg.color_jitter, max_value=255.0
        )

    pad = cfg.max_instances - count
    out = {
        "images": tf.image.pad_to_bounding_box(resized, 0, 0, cfg.canvas[0], cfg.canvas[1]),
        "image_size": size,
        "original_size": tf.cast(original, tf.int32),
        "scale": tf.cast(scale, tf.float32),
        "boxes": tf.pad(boxes, [[0, pad], [0, 0]]),
        "classes": tf.pad(classes, [[0, pad]]),
        "is_crowd": tf.pad(is_crowd, [[0, pad]]),
        "valid": tf.range(cfg.max_instances) < count,
        "masks": tf.pad(masks, [[0, pad], [0, 0], [0, 0]]),
        "image_id": tf.cast(example["image_id"], tf.int64),
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

    Args:
        source: see the module docstring.
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
        brightness, contrast, saturation: training color jitter, factors from ``[1 - x, 1 + x]``; 0 is off.
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
    size: Any = image_size  # an int (NumPy's too) or a (height, width) pair
    canvas = (int(size), int(size)) if np.ndim(size) == 0 else tuple(int(s) for s in size)
    if len(canvas) != 2 or min(canvas) < 1:
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    max_size = int(max_size or max(canvas))
    min_size = int(min_size or max_size)
    if not 1 <= min_size <= max_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
    if max_size > max(canvas):
        raise ValueError(f"max_size {max_size} does not fit the canvas {canvas}")
    if batch_size < 1 or max_instances < 1 or mask_size < 1 or mask_samples < 1:
        raise ValueError(
            f"need batch_size, max_instances, mask_size, mask_samples >= 1, "
            f"got {batch_size}, {max_instances}, {mask_size}, {mask_samples}"
        )
    if scale_jitter is not None:
        scale_jitter = tuple(float(v) for v in scale_jitter)
        if len(scale_jitter) != 2 or not 0 < scale_jitter[0] <= scale_jitter[1]:
            raise ValueError(f"scale_jitter must be (low, high) with 0 < low <= high, got {scale_jitter!r}")
    if min_box_size < 0:
        raise ValueError(f"min_box_size must be >= 0, got {min_box_size}")
    colors = (float(brightness), float(contrast), float(saturation), float(hue))
    if min(colors) < 0 or hue > 0.5:
        raise ValueError(f"need brightness, contrast, saturation >= 0 and 0 <= hue <= 0.5, got {colors}")
    augmented = training and (scale_jitter is not None or any(colors))
    cfg = _Config(
        canvas,
        min_size,
        max_size,
        max_instances,
        mask_size,
        mask_samples,
        scale_jitter=scale_jitter if training else None,
        min_box_size=float(min_box_size),
        color_jitter=colors if training and any(colors) else (),
    )
    dataset, loader, count = _source(source)
    if training and count and count_instances(source) == 0:  # a full run on nothing would end "successfully"
        raise ValueError(
            f"the training source has no instances ({count} images, 0 instances): nothing to learn "
            "from; check its annotations"
        )
    if training:
        # a source with a loader is a list: its count is known
        buffer = cast(int, count) if loader is not None else min(shuffle_buffer, count or shuffle_buffer)
        dataset = dataset.shuffle(max(buffer, 1), seed=seed, reshuffle_each_iteration=True)
    if training and (horizontal_flip or augmented):
        randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    else:
        randoms = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).repeat()
    do_flip = training and horizontal_flip

    def transform(element, random):
        example = loader(element) if loader is not None else element
        # the element's key: the flip draws from it, the other augmentations from keys folded from it
        key = tf.stack([random, tf.constant(seed, tf.int64)])
        flip = tf.random.stateless_uniform([], seed=key) < 0.5 if do_flip else tf.constant(False)
        return _prepare(example, key, flip, cfg)

    dataset = tf.data.Dataset.zip(dataset, randoms)
    dataset = dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    if not training and pad_last_batch:
        dataset = dataset.map(lambda batch: _pad_batch(batch, cfg, batch_size), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------------------------- TFDS


@dataclasses.dataclass(frozen=True)
class TfdsInstances:
    """A TFDS split adapted to the instance contract.

    Attributes:
        dataset: unbatched instance dicts (``INSTANCE_SPEC``), a source for :func:`make_detection_pipeline`.
        categories: the label <-> source category id mapping.
        num_examples: the split's size when TFDS knows it (before ``skip_empty``), else ``None``.
        mask_source: where masks come from: ``"panoptic"``, ``"segmentation"``, ``"mask"`` or ``"box"``.
    """

    dataset: tf.data.Dataset
    categories: CocoCategories
    num_examples: int | None
    mask_source: str


#: COCO's 80 thing categories in id order: TFDS's ``coco`` labels 0..79 (and ``coco/*_panoptic`` 0..79,
#: whose 53 "stuff" labels 80..132 come after the things).
_COCO_THING_IDS = tuple(sorted(COCO_CATEGORIES))


def load_tfds_instances(
    name: str = "coco/2017",
    split: str = "validation",
    data_dir: str | None = None,
    skip_empty: bool = False,
    box_masks: bool = False,
    shuffle_files: bool = False,
) -> TfdsInstances:
    """A TFDS detection builder (``objects/bbox``, normalized ``[ymin, xmin, ymax, xmax]``) as instances.

    Masks come from, in order: the panoptic PNG of ``coco/*_panoptic`` (segment id ``R + 256 G + 256^2 B``
    matched to ``panoptic_objects/id``; only the 80 thing classes are kept, the stuff classes dropped),
    a per-object full-image mask feature ``objects/segmentation`` (e.g. ``lvis``) or ``objects/mask``.
    TFDS's plain ``coco/2017`` has boxes and labels but **no instance masks**: use
    ``coco/2017_panoptic`` (or a COCO json with :func:`kzoo.data.coco.load_coco_instances`), or pass
    ``box_masks=True`` to fill each box as its mask (box-only training; mask targets then mean nothing).

    Labels: for ``coco*`` builders TFDS label ``i`` is COCO's ``i``-th thing category by id, so label
    ``i + 1`` maps to COCO id ``sorted(COCO_CATEGORIES)[i]``; elsewhere label ``i + 1`` maps to id ``i + 1``.
    Boxes are scaled to absolute pixels; boxes with zero height or width are dropped.

    Raises:
        ValueError: the builder has no ``objects``/``panoptic_objects`` with ``bbox`` and ``label``, or no
            masks and ``box_masks`` is False (names the builder and what to use instead).
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    key = "panoptic_objects" if "panoptic_objects" in features else "objects"
    if key not in features or "bbox" not in features[key] or "label" not in features[key]:
        raise ValueError(f"TFDS {name} has no objects/bbox and objects/label features: not a detection set")
    objects = features[key]
    if "panoptic_image" in features:
        mask_source = "panoptic"
    elif "segmentation" in objects:
        mask_source = "segmentation"
    elif "mask" in objects:
        mask_source = "mask"
    elif box_masks:
        mask_source = "box"
    else:
        raise ValueError(
            f"TFDS {name} has no instance masks (its objects have {sorted(objects.keys())}); use "
            "'coco/2017_panoptic' (masks from the panoptic PNGs), a builder with objects/segmentation such as "
            "'lvis', a COCO json through load_coco_instances, or pass box_masks=True for box-only training"
        )
    label_names = list(objects["label"].names)
    if name.split("/")[0] == "coco":
        num_classes = len(_COCO_THING_IDS)
        categories = CocoCategories(_COCO_THING_IDS, tuple(label_names[:num_classes]))
    else:
        num_classes = len(label_names)
        categories = CocoCategories.from_names(label_names)
    try:
        num_examples = int(builder.info.splits[split].num_examples)
    except Exception:  # noqa: BLE001 - unknown split sizes (e.g. metadata not generated)
        num_examples = None
    dataset = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=shuffle_files)

    def convert(index, example):
        obj = example[key]
        image = example["image"]
        if image.shape.rank == 3 and image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        height_width = tf.cast(tf.shape(image)[:2], tf.float32)
        boxes = obj["bbox"] * tf.concat([height_width, height_width], 0)
        labels = tf.cast(obj["label"], tf.int32)
        keep = (labels < num_classes) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if mask_source == "panoptic":
            segment = tf.cast(example["panoptic_image"], tf.int64)
            segment = segment[..., 0] + 256 * segment[..., 1] + 256 * 256 * segment[..., 2]
            masks = tf.cast(tf.equal(segment[None], tf.cast(obj["id"], tf.int64)[:, None, None]), tf.uint8)
        elif mask_source in ("segmentation", "mask"):
            masks = tf.cast(obj[mask_source], tf.uint8)
            if masks.shape.rank == 4:
                masks = masks[..., 0]
            masks = tf.cast(masks > 0, tf.uint8)
        else:
            ys = tf.range(tf.shape(image)[0], dtype=tf.float32)[None, :, None] + 0.5
            xs = tf.range(tf.shape(image)[1], dtype=tf.float32)[None, None, :] + 0.5
            b = boxes[:, :, None, None]
            masks = tf.cast((ys >= b[:, 0]) & (ys < b[:, 2]) & (xs >= b[:, 1]) & (xs < b[:, 3]), tf.uint8)
        is_crowd = tf.cast(obj["is_crowd"], tf.bool) if "is_crowd" in obj else tf.zeros_like(labels, tf.bool)
        image_id = tf.cast(example["image/id"], tf.int64) if "image/id" in example else index + 1
        return {
            "image": image,
            "boxes": tf.boolean_mask(boxes, keep),
            "classes": tf.boolean_mask(labels, keep) + 1,
            "is_crowd": tf.boolean_mask(is_crowd, keep),
            "masks": tf.boolean_mask(masks, keep),
            "image_id": image_id,
        }

    dataset = dataset.enumerate().map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    if skip_empty:
        dataset = dataset.filter(lambda example: tf.shape(example["classes"])[0] > 0)
    return TfdsInstances(dataset, categories, num_examples, mask_source)
