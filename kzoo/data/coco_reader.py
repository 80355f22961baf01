"""Reading a COCO-format instance-segmentation set (json + image folder) for the detection pipeline.

Category ids (COCO's are 1..90 with gaps) map to contiguous labels 1..K (0 = background) through
:class:`kzoo.data.coco_categories.CocoCategories`, in increasing id order. :func:`load_coco_instances` returns a
light description of the set (image paths, sizes, boxes, labels and the raw segmentations); images and masks are
decoded lazily by the tf.data pipeline (:func:`kzoo.data.detection_pipeline.make_detection_pipeline`), masks with
:func:`kzoo.data.coco_masks.segmentation_to_mask`. Every annotation is checked as :mod:`kzoo.data.coco_validation`
says.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
from collections.abc import Mapping

import numpy as np

from kzoo.data.coco_categories import CocoCategories
from kzoo.data.coco_masks import segmentation_to_mask
from kzoo.data.coco_validation import PROBLEMS, check_annotation, check_required_keys, duplicate_image_ids, image_size
from kzoo.data.images import DECODABLE_FORMATS
from kzoo.data.options import CHECK_IMAGES
from kzoo.data.problems import ProblemCounter

LOG = logging.getLogger(__name__)

#: What :func:`load_coco_instances` counts beside the problems (``CocoInstances.counts``).
COUNT_KEYS = ("images", "instances", "crowd_instances", "empty_images")


@dataclasses.dataclass(frozen=True)
class CocoRecord:
    """One image of a COCO-format set, not decoded.

    Attributes:
        image_id: the json's image id.
        file_path: path of the image file.
        height, width: the image size (checked against the file's header unless ``check_images="exists"``).
        boxes: float32 ``[n, 4]`` ``[ymin, xmin, ymax, xmax]`` absolute pixels, clipped to the image.
        classes: int32 ``[n]`` contiguous labels 1..K.
        is_crowd: bool ``[n]``: ``iscrowd`` regions (to be ignored in matching, never positives).
        segmentations: ``n`` raw COCO segmentations (polygon lists, uncompressed or compressed RLE dicts);
            :func:`segmentation_to_mask` decodes one.
        annotation_ids: ``n`` json annotation ids.
    """

    image_id: int
    file_path: str
    height: int
    width: int
    boxes: np.ndarray
    classes: np.ndarray
    is_crowd: np.ndarray
    segmentations: tuple
    annotation_ids: tuple[int, ...]

    @property
    def num_instances(self) -> int:
        return len(self.classes)

    def masks(self) -> np.ndarray:
        """uint8 ``[n, height, width]`` 0/1 instance masks."""
        out = np.zeros((self.num_instances, self.height, self.width), np.uint8)
        for index, segmentation in enumerate(self.segmentations):
            out[index] = segmentation_to_mask(segmentation, self.height, self.width)
        return out


@dataclasses.dataclass(frozen=True)
class CocoInstances:
    """A loaded COCO-format set: records, categories and what was counted while loading.

    Attributes:
        records: one :class:`CocoRecord` per kept image, in increasing image id order.
        categories: the id <-> label mapping.
        counts: ``images`` and ``instances`` kept, ``crowd_instances``, ``empty_images`` (kept or skipped),
            and the problems and repairs (each also logged as one warning): ``missing_images``, ``corrupt_images``,
            ``skipped_empty_images``, ``degenerate_boxes``, ``outside_image``, ``unknown_category``,
            ``bad_segmentation``, ``duplicate_annotations``, ``unknown_image``, ``bad_image_size``,
            ``dropped_polygons``, ``clipped_segmentations``.
        annotation_file: the json it came from (``""`` when loaded from an in-memory COCO dict).
    """

    records: list[CocoRecord]
    categories: CocoCategories
    counts: dict[str, int]
    annotation_file: str = ""

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_instances(self) -> int:
        return sum(r.num_instances for r in self.records)

    def ground_truth(self) -> dict:
        """The COCO instances dict of exactly what this set holds (its records, in order; boxes as loaded, areas as
        pycocotools rasterizes the segmentations), for :class:`kzoo.evaluation.coco.CocoEvaluator` /
        :func:`kzoo.evaluation.coco.evaluate_coco` (e.g. of a set converted from an annotation tool, or capped)."""
        from pycocotools import mask as mask_utils

        images, annotations = [], []
        for record in self.records:
            images.append(
                {"id": record.image_id, "file_name": record.file_path, "height": record.height, "width": record.width}
            )
            classes = record.classes.astype(np.int64)
            category_ids = self.categories.to_category_id(classes) if len(classes) else []
            for i, segmentation in enumerate(record.segmentations):
                ymin, xmin, ymax, xmax = (float(v) for v in record.boxes[i])
                if isinstance(segmentation, list):
                    rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, record.height, record.width))
                elif isinstance(segmentation.get("counts"), list):
                    rle = mask_utils.frPyObjects(segmentation, record.height, record.width)
                else:
                    counts = segmentation["counts"]
                    rle = {
                        "size": list(segmentation["size"]),
                        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
                    }
                annotations.append(
                    {
                        "id": int(record.annotation_ids[i]),
                        "image_id": record.image_id,
                        "category_id": int(category_ids[i]),
                        "segmentation": segmentation,
                        "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                        "area": float(mask_utils.area(rle)),
                        "iscrowd": int(record.is_crowd[i]),
                    }
                )
        return {"images": images, "annotations": annotations, "categories": self.categories.to_coco()}


def _check_image(path: str, height: int, width: int, check: str) -> str | None:
    """``None`` when the image is usable, else the problem (``missing_images`` or ``corrupt_images``; a FIFO,
    socket or device is no regular file, so unusable, and is never opened: reading it could block)."""
    if not os.path.exists(path):
        return "missing_images"
    if not os.path.isfile(path):
        return "corrupt_images"
    if check == "exists":
        return None
    from PIL import Image

    from kzoo.data.images import inspect_image_file

    try:
        with Image.open(path) as image:
            if image.format not in DECODABLE_FORMATS or image.size != (width, height):
                return "corrupt_images"
        if check == "full":
            inspect_image_file(path)  # every pixel, strictly (kzoo.data.images: the one strict decoder)
    except Exception:  # noqa: BLE001 - any failure to read the file makes it unusable
        return "corrupt_images"
    return None


def load_coco_instances(
    annotation_file: str | os.PathLike | Mapping,
    image_dir: str,
    skip_empty: bool = False,
    check_images: str = "header",
) -> CocoInstances:
    """Load a COCO-format instance-segmentation set (``instances_*.json`` + an image folder).

    Segmentations may be polygons, uncompressed RLE or compressed RLE (all decoded later, lazily, by
    :func:`segmentation_to_mask`). ``iscrowd`` regions are kept and flagged (``is_crowd``). Images with no
    (usable) instances are kept as negatives unless ``skip_empty``. Nothing here raises on bad data: each
    problem below drops what it concerns, is counted in ``counts`` and logged as one warning per kind.

    - an instance whose box has a zero, negative or non-finite width or height (``degenerate_boxes``);
    - an instance whose box does not overlap the image (``outside_image``); boxes crossing the border are
      clipped to it;
    - an instance of a category the json does not list (``unknown_category``), or with a missing or
      malformed segmentation (``bad_segmentation``: no polygon of 3 points or more, non-finite or non-numeric
      polygon coordinates, RLE of the wrong size or with run lengths that do not add up to it);
    - an annotation of an image id the json does not list (``unknown_image``); a repeated annotation id
      (``duplicate_annotations``, kept once);
    - an image whose file is missing (``missing_images``) or unreadable (``corrupt_images``: not an image,
      a format ``tf.io.decode_image`` cannot read, or not of the size the json gives), or whose json
      ``height``/``width`` is missing or not a positive integer (``bad_image_size``).

    Two repairs keep the instance but change it, and are counted and warned about the same way: polygons of
    under 3 points or an odd coordinate count are removed from an instance that has others
    (``dropped_polygons``), and polygon vertices more than a pixel outside the image are moved onto
    ``[-1, width + 1] x [-1, height + 1]`` before anything is rasterized (``clipped_segmentations``: the label
    changed, e.g. a vertex at ``1e9`` turns the instance into a mask over much of the image).
    :func:`validate_coco_dict` applies the same checks to a json without its images (the evaluation's ground
    truth).

    Args:
        annotation_file: the COCO json, or the COCO dict itself (e.g. converted from another format; not
            copied: leave it unchanged while the result is in use). ``CocoInstances.annotation_file`` is
            ``""`` for a dict.
        image_dir: the folder ``file_name`` is relative to.
        skip_empty: drop images without instances (counted as ``skipped_empty_images``).
        check_images: ``"exists"`` (the file is there), ``"header"`` (also: PIL reads its header, the format
            is decodable and the size matches the json; the default, cheap) or ``"full"`` (also: the whole
            image decodes; reads every image once, catches truncated files).

    Returns:
        :class:`CocoInstances`.

    Raises:
        FileNotFoundError: ``annotation_file`` or ``image_dir`` does not exist.
        ValueError: the json is not a COCO instances file (named), or ``check_images`` is unknown.
    """
    if check_images not in CHECK_IMAGES:
        raise ValueError(f"unknown check_images {check_images!r}; choose one of {CHECK_IMAGES}")
    in_memory = isinstance(annotation_file, Mapping)
    name = "COCO dict" if isinstance(annotation_file, Mapping) else os.fspath(annotation_file)
    if not isinstance(annotation_file, Mapping) and not os.path.isfile(annotation_file):
        raise FileNotFoundError(f"COCO annotation file not found: {annotation_file}")
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"image folder not found: {image_dir}")
    coco = _read_coco(annotation_file, name)
    categories = CocoCategories.from_coco(coco.dataset.get("categories", []))
    problems = ProblemCounter(PROBLEMS, COUNT_KEYS)
    joined, duplicates = _joined_image_ids(coco.dataset["images"], problems)
    known = set(categories.ids)
    seen_annotations: set = set()
    records = []
    for image_id in sorted(coco.imgs):
        if image_id in duplicates:
            continue
        record = _read_image(
            coco, image_id, joined, image_dir, check_images, categories, known, seen_annotations, problems
        )
        if record is None or not _keep_record(record, skip_empty, problems):
            continue
        records.append(record)
        problems.counts["instances"] += record.num_instances
        problems.counts["crowd_instances"] += int(record.is_crowd.sum())
    problems.counts["images"] = len(records)
    for ann in coco.dataset.get("annotations", []):
        if ann.get("image_id") not in coco.imgs:
            problems.add("unknown_image", ann.get("id"))
    problems.warn(LOG, name)
    return CocoInstances(records, categories, dict(problems.counts), "" if in_memory else name)


def _read_coco(annotation_file: str | os.PathLike | Mapping, name: str):
    """A ``pycocotools.coco.COCO`` of the json file (or dict), quietly (it prints progress); ValueError naming
    ``name`` when it is no COCO instances json (:func:`kzoo.data.coco_validation.check_required_keys`)."""
    from pycocotools.coco import COCO

    in_memory = isinstance(annotation_file, Mapping)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress
            if isinstance(annotation_file, Mapping):  # in_memory
                coco = COCO()
                coco.dataset = dict(annotation_file)
                coco.createIndex()
            else:
                coco = COCO(name)
    except (ValueError, KeyError, TypeError, AssertionError) as error:
        raise ValueError(f"{name} is not a COCO instances {'dict' if in_memory else 'json'}: {error!r}") from error
    check_required_keys(coco.dataset, name)
    return coco


def _joined_image_ids(images: list, problems: ProblemCounter) -> tuple[dict, set]:
    """``(joined, duplicates)``: ``{first id: [the ids listing its file again, same size]}`` (their annotations join
    it) and every repeated id (skipped as images; counted as ``duplicate_image_files``)."""
    merged, skipped = duplicate_image_ids(images)
    joined: dict = {}  # first id -> the ids whose annotations join it
    for image_id, first_id in merged.items():
        joined.setdefault(first_id, []).append(image_id)
    for image_id in (*merged, *skipped):
        problems.add("duplicate_image_files", image_id)
    return joined, {*merged, *skipped}


def _read_image(
    coco, image_id, joined: dict, image_dir: str, check_images: str, categories, known, seen: set, problems
) -> CocoRecord | None:
    """The record of one json image and its usable annotations (with those of the ids ``joined`` to it); ``None``
    when the image itself is unusable (counted). ``seen`` holds the annotation ids met so far (a repeat is
    dropped)."""
    info = coco.imgs[image_id]
    size = image_size(info)
    if size is None:
        problems.add("bad_image_size", image_id)
        return None
    height, width = size
    path = os.path.join(image_dir, info["file_name"])
    issue = _check_image(path, height, width, check_images)
    if issue:
        problems.add(issue, path)
        return None
    own = [a for i in (image_id, *joined.get(image_id, ())) for a in coco.imgToAnns.get(i, [])]
    instances = _usable_instances(own, height, width, known, seen, problems)
    boxes, category_ids, crowd, segmentations, ann_ids = list(zip(*instances)) or [()] * 5
    return CocoRecord(
        image_id=int(image_id),
        file_path=path,
        height=height,
        width=width,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        classes=np.asarray(categories.to_label(np.asarray(category_ids, np.int64)), np.int32).reshape(-1),
        is_crowd=np.asarray(crowd, bool).reshape(-1),
        segmentations=tuple(segmentations),
        annotation_ids=tuple(ann_ids),
    )


def _usable_instances(annotations: list, height: int, width: int, known, seen: set, problems) -> list[tuple]:
    """``(box, category id, is crowd, segmentation, annotation id)`` of each usable annotation of one image, in
    annotation id order: checked (:func:`kzoo.data.coco_validation.check_annotation`; problems and repairs
    counted), repeated ids dropped, and a crowd region repeated once per category (kzoo's labelme
    ``__ignore__``, written so for COCOeval) kept once."""
    instances = []
    crowd_regions: set[str] = set()
    for ann in sorted(annotations, key=lambda a: a["id"]):
        if ann["id"] in seen:
            problems.add("duplicate_annotations", ann["id"])
            continue
        seen.add(ann["id"])
        issue, box, segmentation, repairs = check_annotation(ann, height, width, known)
        if issue:
            problems.add(issue, ann["id"])
            continue
        for repair in repairs:
            problems.add(repair, ann["id"])
        if ann.get("iscrowd", 0):
            # an ignore region written once per category is one region for training: crowd boxes are left out of
            # matching whatever their class
            region = json.dumps([np.asarray(box).round(3).tolist(), segmentation], sort_keys=True, default=str)
            if region in crowd_regions:
                continue
            crowd_regions.add(region)
        instances.append((box, ann["category_id"], bool(ann.get("iscrowd", 0)), segmentation, int(ann["id"])))
    return instances


def _keep_record(record: CocoRecord, skip_empty: bool, problems: ProblemCounter) -> bool:
    """Whether the record is kept: an image without instances is counted (``empty_images``) and, with
    ``skip_empty``, skipped (``skipped_empty_images``)."""
    if record.num_instances:
        return True
    problems.counts["empty_images"] += 1
    if skip_empty:
        problems.add("skipped_empty_images", record.image_id)
        return False
    return True
