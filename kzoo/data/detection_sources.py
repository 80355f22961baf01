"""The sources of the detection pipeline (:func:`kzoo.data.detection_pipeline.make_detection_pipeline`), each
adapted to one contract: unbatched "instance" dicts (:data:`INSTANCE_SPEC`).

- in-memory examples: a list of dicts with ``image`` uint8 ``[H, W, 3]``, ``boxes`` ``[n, 4]``,
  ``classes`` ``[n]`` (labels 1..K), ``masks`` bool ``[n, H, W]``, optionally ``is_crowd`` ``[n]`` and
  ``image_id`` (default: position + 1), as :func:`kzoo.data.shapes.make_shapes_instances` makes them;
  or a callable returning an iterator of such dicts (read through ``tf.data.Dataset.from_generator``);
- a COCO-format set, :func:`kzoo.data.coco_reader.load_coco_instances`'s result (images and masks decoded
  lazily, in parallel), which the annotation tools' files also load as (:mod:`kzoo.data.annotation_tools`);
- a TFDS builder through :func:`load_tfds_instances`;
- any ``tf.data.Dataset`` of unbatched instance dicts.

Boxes are ``[ymin, xmin, ymax, xmax]`` float32 absolute pixels (pixel ``(r, c)`` covering
``[r, r + 1) x [c, c + 1)``) everywhere; labels are 1..K with 0 the background.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from kzoo.data.coco_categories import COCO_CATEGORIES, CocoCategories
from kzoo.data.coco_reader import CocoInstances, CocoRecord

#: One unbatched example as it enters the common transform.
INSTANCE_SPEC = {
    "image": tf.TensorSpec([None, None, 3], tf.uint8),
    "boxes": tf.TensorSpec([None, 4], tf.float32),
    "classes": tf.TensorSpec([None], tf.int32),
    "is_crowd": tf.TensorSpec([None], tf.bool),
    "masks": tf.TensorSpec([None, None, None], tf.uint8),
    "image_id": tf.TensorSpec([], tf.int64),
}


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


def instance_dataset(source) -> tuple[tf.data.Dataset, Callable | None, int | None]:
    """Any source of the module docstring as a ``tf.data`` dataset the pipeline maps.

    Args:
        source: example dicts, a function returning an iterator of them, :class:`CocoInstances` (or a list of
            :class:`CocoRecord` s), :class:`TfdsInstances` or a ``tf.data.Dataset`` of instance dicts.

    Returns:
        ``(dataset, loader, count)``: for list sources, a dataset of int64 indices with ``loader`` (index -> instance
        dict, :data:`INSTANCE_SPEC`) and their ``count``; otherwise a dataset of instance dicts, ``loader`` ``None``
        and ``count`` the dataset's cardinality when known (``None`` for generators).

    Raises:
        ValueError: an empty list, a list mixing dicts and records, an example without its keys, a dataset of other
            elements. TypeError: any other kind of source.
    """
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


# --------------------------------------------------------------------------------------------------------- TFDS


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
    ``coco/2017_panoptic`` (or a COCO json with :func:`kzoo.data.coco_reader.load_coco_instances`), or pass
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
    mask_source = _tfds_mask_source(name, features, key, box_masks)
    categories = _tfds_categories(name, list(features[key]["label"].names))
    try:
        num_examples = int(builder.info.splits[split].num_examples)
    except Exception:  # noqa: BLE001 - unknown split sizes (e.g. metadata not generated)
        num_examples = None
    dataset = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=shuffle_files)
    convert = _tfds_converter(key, mask_source, categories.num_classes)
    dataset = dataset.enumerate().map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    if skip_empty:
        dataset = dataset.filter(lambda example: tf.shape(example["classes"])[0] > 0)
    return TfdsInstances(dataset, categories, num_examples, mask_source)


def _tfds_mask_source(name: str, features, key: str, box_masks: bool) -> str:
    """Where a TFDS builder's masks come from (see :func:`load_tfds_instances`); ValueError naming what to use
    instead when it has none and ``box_masks`` is False."""
    objects = features[key]
    if "panoptic_image" in features:
        return "panoptic"
    if "segmentation" in objects:
        return "segmentation"
    if "mask" in objects:
        return "mask"
    if box_masks:
        return "box"
    raise ValueError(
        f"TFDS {name} has no instance masks (its objects have {sorted(objects.keys())}); use "
        "'coco/2017_panoptic' (masks from the panoptic PNGs), a builder with objects/segmentation such as "
        "'lvis', a COCO json through load_coco_instances, or pass box_masks=True for box-only training"
    )


def _tfds_categories(name: str, label_names: list[str]) -> CocoCategories:
    """The categories of a TFDS builder's labels: COCO's 80 thing ids for ``coco*`` builders (label ``i + 1`` is
    ``sorted(COCO_CATEGORIES)[i]``), else ids equal to the labels."""
    if name.split("/")[0] == "coco":
        return CocoCategories(_COCO_THING_IDS, tuple(label_names[: len(_COCO_THING_IDS)]))
    return CocoCategories.from_names(label_names)


def _tfds_converter(key: str, mask_source: str, num_classes: int) -> Callable[[tf.Tensor, dict], dict]:
    """``(index, TFDS example) -> instance dict``: boxes in absolute pixels, labels 1..K, masks from
    ``mask_source``; objects of a label beyond ``num_classes`` (COCO panoptic's stuff) or of an empty box dropped."""

    def convert(index, example):
        obj = example[key]
        image = example["image"]
        if image.shape.rank == 3 and image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        height_width = tf.cast(tf.shape(image)[:2], tf.float32)
        boxes = obj["bbox"] * tf.concat([height_width, height_width], 0)
        labels = tf.cast(obj["label"], tf.int32)
        keep = (labels < num_classes) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        masks = _tfds_masks(example, obj, image, boxes, mask_source)
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

    return convert


def _tfds_masks(example: dict, obj: dict, image: tf.Tensor, boxes: tf.Tensor, mask_source: str) -> tf.Tensor:
    """uint8 ``[n, H, W]`` 0/1 masks of a TFDS example's objects: the panoptic PNG's segments (id
    ``R + 256 G + 256^2 B``), a per-object mask feature, or each box filled."""
    if mask_source == "panoptic":
        segment = tf.cast(example["panoptic_image"], tf.int64)
        segment = segment[..., 0] + 256 * segment[..., 1] + 256 * 256 * segment[..., 2]
        return tf.cast(tf.equal(segment[None], tf.cast(obj["id"], tf.int64)[:, None, None]), tf.uint8)
    if mask_source in ("segmentation", "mask"):
        masks = tf.cast(obj[mask_source], tf.uint8)
        if masks.shape.rank == 4:
            masks = masks[..., 0]
        return tf.cast(masks > 0, tf.uint8)
    ys = tf.range(tf.shape(image)[0], dtype=tf.float32)[None, :, None] + 0.5
    xs = tf.range(tf.shape(image)[1], dtype=tf.float32)[None, None, :] + 0.5
    b = boxes[:, :, None, None]
    return tf.cast((ys >= b[:, 0]) & (ys < b[:, 2]) & (xs >= b[:, 1]) & (xs < b[:, 3]), tf.uint8)
