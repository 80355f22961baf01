"""The checks of COCO instance annotations, shared by the reader (:func:`kzoo.data.coco_reader.load_coco_instances`)
and the ground-truth check of the evaluation (:func:`validate_coco_dict`): which problems drop an annotation or an
image, which repair one, and the json's required keys. Inside kzoo a box is ``[ymin, xmin, ymax, xmax]`` in absolute
pixels; COCO's ``bbox`` ``[x, y, width, height]`` is converted here, at the edge.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

from kzoo.data.coco_masks import clean_segmentation, segmentation_to_mask
from kzoo.data.problems import ProblemCounter

LOG = logging.getLogger(__name__)

PROBLEMS = {
    "missing_images": "image files missing (images skipped)",
    "corrupt_images": "image files unreadable, of a format tf.io.decode_image cannot read, or not of the size "
    "the json gives (images skipped)",
    "skipped_empty_images": "images without instances (skipped: skip_empty=True)",
    "degenerate_boxes": "instances with a zero, negative or non-finite box width/height (dropped)",
    "outside_image": "instances whose box lies outside the image (dropped)",
    "unknown_category": "instances of a category id the json does not list (dropped)",
    "bad_segmentation": "instances with a missing or malformed segmentation (dropped)",
    "duplicate_annotations": "annotations repeating an earlier annotation's id (dropped: kept once)",
    "unknown_image": "annotations of an image id the json does not list (dropped)",
    "bad_image_size": "images whose json height/width is missing or not a positive integer (skipped)",
    "dropped_polygons": "instances that lost polygons of under 3 points or of an odd coordinate count (kept with "
    "their other polygons)",
    "clipped_segmentations": "instances with polygon vertices more than a pixel outside the image, moved onto its "
    "border (kept, but the label changed: the mask may now cover much of the image)",
    "duplicate_image_files": "image ids whose file another id lists already (merged into the first id with their "
    "annotations; one of another size is skipped with them)",
}


#: The problems above that repair an instance rather than drop it.
REPAIRS = ("dropped_polygons", "clipped_segmentations")


#: The top-level lists a COCO instances json must have.
REQUIRED_KEYS = ("images", "annotations", "categories")


def check_required_keys(dataset, name: str) -> None:
    """ValueError naming the first of :data:`REQUIRED_KEYS` that ``dataset`` lacks or holds as no list (a json
    without ``annotations`` would otherwise load as 0 instances without a word)."""
    if not isinstance(dataset, Mapping):
        raise ValueError(f"{name} is not a COCO instances json: it holds a {type(dataset).__name__}, not an object")
    for key in REQUIRED_KEYS:
        if not isinstance(dataset.get(key), list):
            what = "has no" if key not in dataset else f"has a {type(dataset[key]).__name__} as"
            raise ValueError(
                f"{name} is not a COCO instances json: it {what} '{key}' list "
                f"(a COCO json has {', '.join(REQUIRED_KEYS)})"
            )


def duplicate_image_ids(images: list) -> tuple[dict, dict]:
    """``(merged, skipped)``: image ids whose ``file_name`` an earlier id (json order) lists already, each mapped to
    that first id; ``merged`` when the sizes agree (their annotations join it), ``skipped`` when they do not."""
    first: dict[str, Any] = {}
    merged: dict[Any, Any] = {}
    skipped: dict[Any, Any] = {}
    for image in images:
        if not isinstance(image, Mapping) or not isinstance(image.get("file_name"), str):
            continue
        key = os.path.normpath(image["file_name"])
        if key not in first:
            first[key] = image
            continue
        earlier = first[key]
        target = merged if image_size(image) == image_size(earlier) else skipped
        target[image.get("id")] = earlier.get("id")
    return merged, skipped


def image_size(info) -> tuple[int, int] | None:
    """``(height, width)`` of a json image entry, or ``None`` when either is missing or not a positive integer."""
    try:
        height, width = info["height"], info["width"]
        if float(height) != int(height) or float(width) != int(width) or int(height) < 1 or int(width) < 1:
            return None
        return int(height), int(width)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def check_annotation(ann, height: int, width: int, known) -> tuple[str | None, list[float] | None, Any, list[str]]:
    """One json annotation checked against its image's size and the known category ids, as
    :func:`kzoo.data.coco_reader.load_coco_instances` checks it (see there).

    Returns:
        ``(problem, box, segmentation, repairs)``: ``problem`` the key of :data:`PROBLEMS` that drops the
        annotation, or ``None``; then ``box`` ``[ymin, xmin, ymax, xmax]`` clipped to the image, the cleaned
        segmentation and the repairs made (keys of :data:`REPAIRS`).
    """
    try:
        values = ann.get("bbox", (math.nan,) * 4)
        x, y, w, h = (float(v) for v in values) if len(values) == 4 else (math.nan,) * 4
    except (TypeError, ValueError, OverflowError):
        x = y = w = h = math.nan
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return "degenerate_boxes", None, None, []
    box = [min(max(y, 0.0), height), min(max(x, 0.0), width), min(y + h, height), min(x + w, width)]
    if box[2] <= box[0] or box[3] <= box[1]:
        return "outside_image", None, None, []
    try:
        if ann.get("category_id") not in known:
            return "unknown_category", None, None, []
    except TypeError:  # unhashable
        return "unknown_category", None, None, []
    segmentation, repairs = clean_segmentation(ann.get("segmentation"), height, width)
    if segmentation is None:
        return "bad_segmentation", None, None, []
    return None, box, segmentation, repairs


def validate_coco_dict(
    annotation_file: str | os.PathLike | Mapping, name: str | None = None
) -> tuple[dict, dict[str, int]]:
    """A COCO instances json (or dict) with every annotation checked as
    :func:`kzoo.data.coco_reader.load_coco_instances` checks it, without the image files: what pycocotools may be
    given (e.g. as ``COCOeval``'s ground truth).

    The same problems drop the same annotations (``degenerate_boxes``, ``outside_image``, ``unknown_category``,
    ``bad_segmentation``, ``duplicate_annotations``, and ``unknown_image``: an annotation of an image the json
    does not list), images without a valid ``height``/``width`` are dropped with their annotations
    (``bad_image_size``), and polygons are repaired the same way (``dropped_polygons``,
    ``clipped_segmentations``); each kind is counted and logged as one warning naming a few annotation ids.
    Kept annotations keep their fields (``iscrowd`` 0 where missing, as the reader takes it), except:
    ``segmentation`` as cleaned (polygon coordinates as floats),
    ``bbox`` clipped to the image where it crosses its border, and ``area`` recomputed from the segmentation
    where the segmentation was repaired or the area is missing, not a number or negative.

    Args:
        annotation_file: a COCO json path or dict (not modified).
        name: what the warnings call it (default: the path, or ``"COCO dict"``).

    Returns:
        ``(dataset, counts)``: a new dict (``images``, ``annotations``, ``categories`` and any other top-level keys
        of the input; annotations in json order) and ``{problem: count}`` for every key of the problems above
        (zeros included), plus ``annotations`` (the kept count).

    Raises:
        FileNotFoundError: the json does not exist.
        ValueError: it is not a COCO instances json (named).
    """
    dataset, name = _read_dataset(annotation_file, name)
    try:
        images = list(dataset.get("images", []))
        annotations = list(dataset.get("annotations", []))
        known = {int(c["id"]) for c in dataset.get("categories", [])}
        ids = {image["id"] for image in images}
        order = sorted(range(len(annotations)), key=lambda i: (annotations[i]["image_id"], annotations[i]["id"]))
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{name} is not a COCO instances json or dict: {error!r}") from error
    problems = ProblemCounter({key: PROBLEMS[key] for key in VALIDATION_PROBLEMS})
    merged, sizes = _image_sizes(images, problems)
    kept: dict[int, dict] = {}
    seen: set = set()
    for index in order:  # the reader's order (image id, then annotation id) decides which repeated id is kept
        ann = annotations[index]
        if ann["image_id"] in merged:  # the same file under another id: its annotations join the first id
            ann = {**ann, "image_id": merged[ann["image_id"]]}
        if ann["image_id"] not in sizes:
            if ann["image_id"] not in ids:
                problems.add("unknown_image", ann["id"])
            continue
        if ann["id"] in seen:
            problems.add("duplicate_annotations", ann["id"])
            continue
        seen.add(ann["id"])
        height, width = sizes[ann["image_id"]]
        cleaned = _cleaned_annotation(ann, height, width, known, problems)
        if cleaned is not None:
            kept[index] = cleaned
    out = {key: value for key, value in dataset.items() if key not in ("images", "annotations")}
    out["images"] = [image for image in images if image["id"] in sizes]
    out["annotations"] = [kept[i] for i in sorted(kept)]
    problems.warn(LOG, name)
    return out, {**problems.counts, "annotations": len(out["annotations"])}


#: The problems :func:`validate_coco_dict` counts (those of the reader that need no image file), in warning order.
VALIDATION_PROBLEMS = (
    "unknown_image",
    "bad_image_size",
    "degenerate_boxes",
    "outside_image",
    "unknown_category",
    "bad_segmentation",
    "duplicate_annotations",
    "duplicate_image_files",
    *REPAIRS,
)


def _read_dataset(annotation_file: str | os.PathLike | Mapping, name: str | None) -> tuple[Mapping, str]:
    """``(dataset, name)``: the COCO dict (read from the json file, or the dict given) and what warnings call it;
    FileNotFoundError or a ValueError naming it when it is no COCO instances json (:func:`check_required_keys`)."""
    if isinstance(annotation_file, Mapping):
        dataset, name = annotation_file, name or "COCO dict"
    else:
        name = name or os.fspath(annotation_file)
        if not os.path.isfile(annotation_file):
            raise FileNotFoundError(f"COCO annotation file not found: {annotation_file}")
        try:
            with open(annotation_file) as f:
                dataset = json.load(f)
        except ValueError as error:
            raise ValueError(f"{name} is not a COCO instances json: {error}") from error
    check_required_keys(dataset, name)
    return dataset, name


def _image_sizes(images: list, problems: ProblemCounter) -> tuple[dict, dict]:
    """``(merged, sizes)``: the ids whose file an earlier id lists (-> that id, see :func:`duplicate_image_ids`) and
    ``{id: (height, width)}`` of the images kept (a valid size, no repeated file); the others counted."""
    merged, skipped = duplicate_image_ids(images)
    for image_id in (*merged, *skipped):
        problems.add("duplicate_image_files", image_id)
    sizes = {}
    for image in images:
        size = image_size(image)
        if size is None:
            problems.add("bad_image_size", image.get("id"))
        elif image["id"] not in merged and image["id"] not in skipped:
            sizes[image["id"]] = size
    return merged, sizes


def _cleaned_annotation(ann: dict, height: int, width: int, known, problems: ProblemCounter) -> dict | None:
    """A copy of the annotation as :func:`validate_coco_dict` keeps it (see there), or ``None`` when it is dropped;
    its problem or repairs counted."""
    issue, _, segmentation, repairs = check_annotation(ann, height, width, known)
    if issue:
        problems.add(issue, ann["id"])
        return None
    for repair in repairs:
        problems.add(repair, ann["id"])
    cleaned = {"iscrowd": 0, **ann, "segmentation": segmentation}  # COCOeval needs iscrowd; the reader's default
    x, y, w, h = (float(v) for v in ann["bbox"])
    if x < 0 or y < 0 or x + w > width or y + h > height:
        x0, y0 = max(x, 0.0), max(y, 0.0)
        cleaned["bbox"] = [x0, y0, min(x + w, width) - x0, min(y + h, height) - y0]
    area = ann.get("area")
    if repairs or not isinstance(area, (int, float)) or not math.isfinite(area) or area < 0:
        cleaned["area"] = float(segmentation_to_mask(segmentation, height, width).sum())
    return cleaned
