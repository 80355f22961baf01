"""Writing in-memory examples as a COCO instances json (:func:`write_coco_json`, :func:`coco_dict`).

kzoo's boxes ``[ymin, xmin, ymax, xmax]`` (absolute pixels) become COCO's ``bbox`` ``[x, y, width, height]``, labels
1..K become category ids (:class:`kzoo.data.coco_categories.CocoCategories`) and masks become segmentations
(:mod:`kzoo.data.coco_masks`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kzoo.data.coco_categories import CocoCategories
from kzoo.data.coco_masks import (
    SEGMENTATION_FORMATS,
    mask_to_polygons,
    mask_to_rle,
    mask_to_uncompressed_rle,
    segmentation_to_mask,
)
from kzoo.utils import files


def _formats(segmentation_format) -> tuple[str, ...]:
    formats = (segmentation_format,) if isinstance(segmentation_format, str) else tuple(segmentation_format)
    unknown = [f for f in formats if f not in SEGMENTATION_FORMATS]
    if not formats or unknown:
        raise ValueError(f"unknown segmentation format(s) {unknown or formats}; choose from {SEGMENTATION_FORMATS}")
    return formats


def _example_size(example: dict, index: int) -> tuple[int, int]:
    if "height" in example and "width" in example:
        return int(example["height"]), int(example["width"])
    for key in ("image", "masks"):
        if key in example and np.ndim(example[key]) >= 2 + (key == "masks"):
            shape = np.shape(example[key])
            return (int(shape[0]), int(shape[1])) if key == "image" else (int(shape[1]), int(shape[2]))
    raise ValueError(f"example {index}: cannot tell the image size (give 'image', 'masks' or 'height'/'width')")


def coco_dict(examples: Sequence[dict], categories: CocoCategories, segmentation_format="rle") -> dict:
    """The COCO json dict of in-memory examples (see :func:`write_coco_json`)."""
    formats = _formats(segmentation_format)
    images: list[dict] = []
    annotations: list[dict] = []
    for index, example in enumerate(examples):
        image_id = int(example.get("image_id", index + 1))
        height, width = _example_size(example, index)
        images.append(
            {
                "id": image_id,
                "file_name": str(example.get("file_name", f"{image_id:012d}.png")),
                "height": height,
                "width": width,
            }
        )
        classes = np.asarray(example["classes"]).reshape(-1)
        masks, boxes = _example_masks_and_boxes(example, index, len(classes), height, width)
        crowd = np.asarray(example.get("is_crowd", np.zeros(len(classes), bool)), bool).reshape(-1)
        given = example.get("segmentations")
        category_ids = categories.to_category_id(classes.astype(np.int64)) if len(classes) else []
        for i in range(len(classes)):
            ymin, xmin, ymax, xmax = (float(v) for v in boxes[i])
            fmt = formats[len(annotations) % len(formats)]
            if given is not None and given[i] is not None:
                segmentation = given[i]
                area = float(segmentation_to_mask(segmentation, height, width).sum())
            elif masks is None:  # a box-only example: the box as a polygon
                segmentation = [[xmin, ymin, xmax, ymin, xmax, ymax, xmin, ymax]]
                area = (ymax - ymin) * (xmax - xmin)
            else:
                segmentation, area = _encoded(masks[i], fmt), float(masks[i].sum())
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(category_ids[i]),
                    "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                    "area": area,
                    "iscrowd": int(crowd[i]) if i < len(crowd) else 0,
                    "segmentation": segmentation,
                }
            )
    return {"images": images, "annotations": annotations, "categories": categories.to_coco()}


def _example_masks_and_boxes(
    example: dict, index: int, n: int, height: int, width: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """``(masks, boxes)`` of an example's ``n`` instances: bool ``[n, H, W]`` masks or ``None``, float64 ``[n, 4]``
    boxes (given, or the masks' tight boxes); ValueError naming the example when they do not fit."""
    masks = np.asarray(example["masks"], bool) if "masks" in example else None
    if masks is not None and masks.shape != (n, height, width):
        raise ValueError(f"example {index}: masks {masks.shape} for {n} instances of an image {height}x{width}")
    if "boxes" in example:
        boxes = np.asarray(example["boxes"], np.float64).reshape(-1, 4)
    elif masks is not None:
        from kzoo.data.shapes import mask_to_box

        boxes = np.stack([mask_to_box(m) for m in masks]).astype(np.float64) if n else np.zeros((0, 4))
    else:
        raise ValueError(f"example {index}: give 'boxes' or 'masks'")
    if len(boxes) != n:
        raise ValueError(f"example {index}: {len(boxes)} boxes for {n} classes")
    return masks, boxes


def _encoded(mask: np.ndarray, segmentation_format: str):
    """A ``[H, W]`` mask as a COCO segmentation of ``segmentation_format`` (one of ``SEGMENTATION_FORMATS``)."""
    if segmentation_format == "rle":
        return mask_to_rle(mask)
    if segmentation_format == "uncompressed_rle":
        return mask_to_uncompressed_rle(mask)
    return mask_to_polygons(mask)


def write_coco_json(examples: Sequence[dict], categories: CocoCategories, path: str, segmentation_format="rle") -> dict:
    """Write in-memory examples as a COCO instances json (atomically: temp file, then rename).

    Args:
        examples: dicts with ``classes`` (labels 1..K, ``[n]``), ``masks`` (bool ``[n, H, W]``) and/or
            ``boxes`` (``[n, 4]`` ``[ymin, xmin, ymax, xmax]`` absolute pixels; default: the masks' tight
            boxes), optionally ``is_crowd`` ``[n]``, ``image_id`` (default: position + 1), ``file_name``
            (default ``f"{image_id:012d}.png"``), ``height``/``width`` (default: from ``image`` or
            ``masks``) and ``segmentations`` (``n`` ready-made COCO segmentations, ``None`` entries
            falling back to the masks). Examples without masks get their boxes as polygons.
            :func:`kzoo.data.shapes.make_shapes_instances`'s examples qualify as they are.
        categories: the label <-> category id mapping (labels become category ids).
        path: the json to write.
        segmentation_format: ``"rle"`` (compressed, the default), ``"uncompressed_rle"``, ``"polygon"``
            (pixel-edge outlines, holes filled, see :func:`mask_to_polygons`), or a sequence of them used
            in turn, one annotation after the other (for mixed-format files).

    Returns:
        The written dict. Annotation ids run 1, 2, ... (pycocotools' evaluation treats id 0 as unmatched).
    """
    data = coco_dict(examples, categories, segmentation_format)
    files.write_json(path, data, indent=None)
    return data
