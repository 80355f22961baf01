"""COCO-format instance annotations: loading (json + image folder) for the detection pipeline, and writing.

Inside kzoo a box is ``[ymin, xmin, ymax, xmax]`` in absolute pixels (float32, pixel ``(r, c)`` covering
``[r, r + 1) x [c, c + 1)``); COCO's ``bbox`` is ``[x, y, width, height]`` and is converted here, at the edge.
Category ids (COCO's are 1..90 with gaps) map to contiguous labels 1..K (0 = background) through
:class:`CocoCategories`, in increasing id order.

:func:`load_coco_instances` returns a light description of the set (image paths, sizes, boxes, labels and the
raw segmentations); images and masks are decoded lazily by the tf.data pipeline
(:func:`kzoo.data.detection.make_detection_pipeline`), masks with :func:`segmentation_to_mask`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from kzoo.utils import files

LOG = logging.getLogger(__name__)

#: Image formats the pipeline can decode (``tf.io.decode_image``), as PIL names them.
DECODABLE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
CHECK_IMAGES = ("exists", "header", "full")
SEGMENTATION_FORMATS = ("rle", "uncompressed_rle", "polygon")

#: What :func:`load_coco_instances` counts (``CocoInstances.counts``); the problems among them are warned about.
_COUNT_KEYS = ("images", "instances", "crowd_instances", "empty_images")
_PROBLEMS = {
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


def _check_required_keys(dataset, name: str) -> None:
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


def _duplicate_image_ids(images: list) -> tuple[dict, dict]:
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
        target = merged if _image_size(image) == _image_size(earlier) else skipped
        target[image.get("id")] = earlier.get("id")
    return merged, skipped


@dataclasses.dataclass(frozen=True)
class CocoCategories:
    """Source category ids <-> contiguous labels 1..K (0 is the background), in increasing id order.

    Attributes:
        ids: the source's category ids, increasing; label ``k`` is ``ids[k - 1]``.
        names: one name per label (``names[k - 1]`` for label ``k``).
        supercategories: one per label (empty strings where unknown).
    """

    ids: tuple[int, ...]
    names: tuple[str, ...]
    supercategories: tuple[str, ...] = ()

    def __post_init__(self):
        ids = tuple(int(i) for i in self.ids)
        if list(ids) != sorted(set(ids)):
            raise ValueError(f"category ids must be unique and increasing, got {ids}")
        if len(self.names) != len(ids):
            raise ValueError(f"need one name per category id: {len(ids)} ids, {len(self.names)} names")
        supers = tuple(self.supercategories) or ("",) * len(ids)
        if len(supers) != len(ids):
            raise ValueError(f"need one supercategory per category id: {len(ids)} ids, {len(supers)} given")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "supercategories", tuple(str(s) for s in supers))

    @classmethod
    def from_coco(cls, categories: Iterable[dict]) -> CocoCategories:
        """From a COCO json's ``categories`` list (any order)."""
        ordered = sorted(categories, key=lambda c: int(c["id"]))
        return cls(
            tuple(int(c["id"]) for c in ordered),
            tuple(c.get("name", str(c["id"])) for c in ordered),
            tuple(c.get("supercategory", "") for c in ordered),
        )

    @classmethod
    def from_names(cls, names: Sequence[str], ids: Sequence[int] | None = None) -> CocoCategories:
        """Categories named ``names``, with ids ``ids`` (default 1..K, so ids equal labels)."""
        return cls(tuple(ids) if ids is not None else tuple(range(1, len(names) + 1)), tuple(names))

    @property
    def num_classes(self) -> int:
        """K, the number of categories (labels 1..K; a model has K + 1 classes with the background)."""
        return len(self.ids)

    def to_label(self, category_id):
        """Category id(s) -> label(s) 1..K; an int for an int, an int32 array for an array.

        Raises:
            ValueError: an id that is not a category (named).
        """
        values = np.asarray(category_id, np.int64)
        ids = np.asarray(self.ids, np.int64)
        position = np.clip(np.searchsorted(ids, values), 0, max(len(ids) - 1, 0))
        known = (ids[position] == values) if len(ids) else np.zeros(values.shape, bool)
        if not np.all(known):
            raise ValueError(f"unknown category id(s) {np.unique(values[~known]).tolist()}; known: {list(self.ids)}")
        labels = (position + 1).astype(np.int32)
        return int(labels) if labels.ndim == 0 else labels

    def to_category_id(self, label):
        """Label(s) 1..K -> category id(s); an int for an int, an int64 array for an array.

        Raises:
            ValueError: a label outside 1..K (named).
        """
        values = np.asarray(label, np.int64)
        bad = (values < 1) | (values > self.num_classes)
        if np.any(bad):
            raise ValueError(f"label(s) {np.unique(values[bad]).tolist()} outside 1..{self.num_classes}")
        ids = np.asarray(self.ids, np.int64)[values - 1]
        return int(ids) if ids.ndim == 0 else ids

    def name(self, label: int) -> str:
        """The name of label ``label`` (1..K)."""
        if not 1 <= int(label) <= self.num_classes:
            raise ValueError(f"label {label} outside 1..{self.num_classes}")
        return self.names[int(label) - 1]

    def to_coco(self) -> list[dict]:
        """The COCO json ``categories`` list."""
        return [{"id": i, "name": n, "supercategory": s} for i, n, s in zip(self.ids, self.names, self.supercategories)]


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


def segmentation_to_mask(segmentation, height: int, width: int) -> np.ndarray:
    """Decode one COCO segmentation to a uint8 ``[height, width]`` 0/1 mask (as ``COCO.annToMask``).

    Args:
        segmentation: a list of polygons (each ``[x0, y0, x1, y1, ...]`` in pixel-corner coordinates), an
            uncompressed RLE ``{"size": [h, w], "counts": [int, ...]}`` or a compressed RLE
            ``{"size": [h, w], "counts": str | bytes}``.
        height, width: the image size.
    """
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        polygons = [_clipped_polygon(p, height, width) for p in segmentation]
        if any(p is None for p in polygons):
            raise ValueError("cannot draw a polygon with non-numeric or non-finite coordinates (or an odd count)")
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif not _valid_rle(segmentation, height, width):  # pycocotools writes past its buffer on wrong run lengths
        size = segmentation.get("size") if isinstance(segmentation, dict) else None
        raise ValueError(
            f"not a run-length encoding of an image of size {(height, width)} (size {size}, or run "
            "lengths that are negative, malformed or do not add up to height * width)"
        )
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        counts = segmentation["counts"]
        counts = counts.encode("ascii") if isinstance(counts, str) else counts
        rle = {"size": list(segmentation["size"]), "counts": counts}
    mask = mask_utils.decode(rle)
    if mask.shape != (height, width):
        raise ValueError(f"segmentation of size {mask.shape} for an image of size {(height, width)}")
    return mask


def _clipped_polygon(polygon, height: int, width: int) -> list[float] | None:
    """A polygon ``[x0, y0, x1, y1, ...]`` as floats with its coordinates clipped to ``[-1, width + 1] x
    [-1, height + 1]``, or ``None`` when it has non-numeric or non-finite coordinates (or an odd count).

    Checked before any rasterization: pycocotools crashes the process (segfault, or memory exhausted) on
    coordinates far outside the image. Clipping a vertex moves it along the border; inside the image the
    polygon is unchanged wherever its edges do not leave the image.
    """
    try:
        values = np.asarray(polygon, np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    if values.size % 2 or not np.all(np.isfinite(values)):
        return None
    points = values.reshape(-1, 2)
    points = np.clip(points, (-1.0, -1.0), (width + 1.0, height + 1.0))
    return points.reshape(-1).tolist()


def _rle_counts(counts) -> list[int] | None:
    """The run lengths of a compressed RLE ``counts`` string (as pycocotools' ``rleFrString`` reads it), or
    ``None`` when the string is malformed (a character outside ``'0'..'o'``, a run cut off at the end)."""
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            return None
    if not isinstance(counts, bytes):
        return None
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                return None
            c = counts[position] - 48
            if not 0 <= c < 64:
                return None
            value |= (c & 0x1F) << (5 * shift)
            more = bool(c & 0x20)
            position += 1
            shift += 1
            if not more and c & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _valid_rle(segmentation, height: int, width: int) -> bool:
    """Whether ``segmentation`` is an RLE dict (uncompressed or compressed) of a ``height x width`` image whose run
    lengths are non-negative integers adding up to ``height * width`` (pycocotools does not check: longer runs
    make it write past the end of its mask buffer, a crash)."""
    if not isinstance(segmentation, dict) or "counts" not in segmentation or "size" not in segmentation:
        return False
    try:
        if [int(s) for s in segmentation["size"]] != [height, width]:
            return False
    except (TypeError, ValueError):
        return False
    counts = segmentation["counts"]
    if isinstance(counts, list):
        if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in counts):
            return False
        runs = [int(c) for c in counts]
    else:
        decoded = _rle_counts(counts)
        if decoded is None:
            return False
        runs = decoded
    return all(r >= 0 for r in runs) and sum(runs) == height * width


def _valid_segmentation(segmentation, height: int, width: int) -> tuple[Any, list[str]]:
    """``(segmentation, repairs)``: the segmentation cleaned (polygons of under 3 points or an odd coordinate count
    removed, coordinates clipped to ``[-1, width + 1] x [-1, height + 1]``), or ``None`` when unusable (no polygon
    left, any polygon with non-finite or non-numeric coordinates, an RLE of the wrong size or run lengths); and
    the repairs made (keys of :data:`REPAIRS`)."""
    repairs: list[str] = []
    if isinstance(segmentation, list):
        polygons = []
        for polygon in segmentation:
            if not isinstance(polygon, (list, tuple)) or len(polygon) < 6 or len(polygon) % 2:
                repairs.append("dropped_polygons")
                continue
            clipped = _clipped_polygon(polygon, height, width)
            if clipped is None:
                return None, []
            if clipped != np.asarray(polygon, np.float64).reshape(-1).tolist():
                repairs.append("clipped_segmentations")
            polygons.append(clipped)
        return (polygons, sorted(set(repairs))) if polygons else (None, [])
    if _valid_rle(segmentation, height, width):
        return segmentation, []
    return None, []


def _image_size(info) -> tuple[int, int] | None:
    """``(height, width)`` of a json image entry, or ``None`` when either is missing or not a positive integer."""
    try:
        height, width = info["height"], info["width"]
        if float(height) != int(height) or float(width) != int(width) or int(height) < 1 or int(width) < 1:
            return None
        return int(height), int(width)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def _check_annotation(ann, height: int, width: int, known) -> tuple[str | None, list[float] | None, Any, list[str]]:
    """One json annotation checked against its image's size and the known category ids, as
    :func:`load_coco_instances` checks it (see there).

    Returns:
        ``(problem, box, segmentation, repairs)``: ``problem`` the key of :data:`_PROBLEMS` that drops the
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
    segmentation, repairs = _valid_segmentation(ann.get("segmentation"), height, width)
    if segmentation is None:
        return "bad_segmentation", None, None, []
    return None, box, segmentation, repairs


def validate_coco_dict(
    annotation_file: str | os.PathLike | Mapping, name: str | None = None
) -> tuple[dict, dict[str, int]]:
    """A COCO instances json (or dict) with every annotation checked as :func:`load_coco_instances` checks it,
    without the image files: what pycocotools may be given (e.g. as ``COCOeval``'s ground truth).

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
    if isinstance(annotation_file, Mapping):
        dataset, name = annotation_file, name or "COCO dict"
    else:
        name = name or os.fspath(annotation_file)
        if not os.path.isfile(annotation_file):
            raise FileNotFoundError(f"COCO annotation file not found: {annotation_file}")
        import json

        try:
            with open(annotation_file) as f:
                dataset = json.load(f)
        except ValueError as error:
            raise ValueError(f"{name} is not a COCO instances json: {error}") from error
    _check_required_keys(dataset, name)
    try:
        images = list(dataset.get("images", []))
        annotations = list(dataset.get("annotations", []))
        known = {int(c["id"]) for c in dataset.get("categories", [])}
        ids = {image["id"] for image in images}
        order = sorted(range(len(annotations)), key=lambda i: (annotations[i]["image_id"], annotations[i]["id"]))
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{name} is not a COCO instances json or dict: {error!r}") from error
    keys = (
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
    counts = dict.fromkeys(keys, 0)
    examples: dict[str, list] = {key: [] for key in keys}

    def problem(key: str, what) -> None:
        counts[key] += 1
        if len(examples[key]) < 3:
            examples[key].append(what)

    merged, skipped = _duplicate_image_ids(images)
    for image_id in (*merged, *skipped):
        problem("duplicate_image_files", image_id)
    sizes = {}
    for image in images:
        size = _image_size(image)
        if size is None:
            problem("bad_image_size", image.get("id"))
        elif image["id"] not in merged and image["id"] not in skipped:
            sizes[image["id"]] = size
    kept: dict[int, dict] = {}
    seen: set = set()
    for index in order:  # the reader's order (image id, then annotation id) decides which repeated id is kept
        ann = annotations[index]
        if ann["image_id"] in merged:  # the same file under another id: its annotations join the first id
            ann = {**ann, "image_id": merged[ann["image_id"]]}
        if ann["image_id"] not in sizes:
            if ann["image_id"] not in ids:
                problem("unknown_image", ann["id"])
            continue
        if ann["id"] in seen:
            problem("duplicate_annotations", ann["id"])
            continue
        seen.add(ann["id"])
        height, width = sizes[ann["image_id"]]
        issue, _, segmentation, repairs = _check_annotation(ann, height, width, known)
        if issue:
            problem(issue, ann["id"])
            continue
        for repair in repairs:
            problem(repair, ann["id"])
        cleaned = {"iscrowd": 0, **ann, "segmentation": segmentation}  # COCOeval needs iscrowd; the reader's default
        x, y, w, h = (float(v) for v in ann["bbox"])
        if x < 0 or y < 0 or x + w > width or y + h > height:
            x0, y0 = max(x, 0.0), max(y, 0.0)
            cleaned["bbox"] = [x0, y0, min(x + w, width) - x0, min(y + h, height) - y0]
        area = ann.get("area")
        if repairs or not isinstance(area, (int, float)) or not math.isfinite(area) or area < 0:
            cleaned["area"] = float(segmentation_to_mask(segmentation, height, width).sum())
        kept[index] = cleaned
    out = {key: value for key, value in dataset.items() if key not in ("images", "annotations")}
    out["images"] = [image for image in images if image["id"] in sizes]
    out["annotations"] = [kept[i] for i in sorted(kept)]
    for key in keys:
        if counts[key]:
            LOG.warning("%s: %d %s, e.g. %s", name, counts[key], _PROBLEMS[key], examples[key])
    return out, {**counts, "annotations": len(out["annotations"])}


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
    from pycocotools.coco import COCO

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
    _check_required_keys(coco.dataset, name)
    categories = CocoCategories.from_coco(coco.dataset.get("categories", []))
    known = set(categories.ids)
    counts = dict.fromkeys((*_COUNT_KEYS, *_PROBLEMS), 0)
    examples: dict[str, list] = {key: [] for key in _PROBLEMS}

    def problem(key: str, what) -> None:
        counts[key] += 1
        if len(examples[key]) < 3:
            examples[key].append(what)

    records = []
    seen_annotations: set = set()
    merged, skipped = _duplicate_image_ids(coco.dataset["images"])
    joined: dict = {}  # first id -> the ids whose annotations join it
    for image_id, first_id in merged.items():
        joined.setdefault(first_id, []).append(image_id)
    for image_id in (*merged, *skipped):
        problem("duplicate_image_files", image_id)
    for image_id in sorted(coco.imgs):
        if image_id in merged or image_id in skipped:
            continue
        info = coco.imgs[image_id]
        size = _image_size(info)
        if size is None:
            problem("bad_image_size", image_id)
            continue
        height, width = size
        path = os.path.join(image_dir, info["file_name"])
        issue = _check_image(path, height, width, check_images)
        if issue:
            problem(issue, path)
            continue
        boxes, classes, crowd, segmentations, ann_ids = [], [], [], [], []
        crowd_regions: set[str] = set()
        own = [a for i in (image_id, *joined.get(image_id, ())) for a in coco.imgToAnns.get(i, [])]
        for ann in sorted(own, key=lambda a: a["id"]):
            if ann["id"] in seen_annotations:
                problem("duplicate_annotations", ann["id"])
                continue
            seen_annotations.add(ann["id"])
            issue, box, segmentation, repairs = _check_annotation(ann, height, width, known)
            if issue:
                problem(issue, ann["id"])
                continue
            for repair in repairs:
                problem(repair, ann["id"])
            if ann.get("iscrowd", 0):
                # an ignore region written once per category (kzoo's labelme __ignore__, for COCOeval) is one
                # region for training: crowd boxes are left out of matching whatever their class
                region = json.dumps([np.asarray(box).round(3).tolist(), segmentation], sort_keys=True, default=str)
                if region in crowd_regions:
                    continue
                crowd_regions.add(region)
            boxes.append(box)
            classes.append(ann["category_id"])
            crowd.append(bool(ann.get("iscrowd", 0)))
            segmentations.append(segmentation)
            ann_ids.append(int(ann["id"]))
        if not classes:
            counts["empty_images"] += 1
            if skip_empty:
                problem("skipped_empty_images", image_id)
                continue
        records.append(
            CocoRecord(
                image_id=int(image_id),
                file_path=path,
                height=height,
                width=width,
                boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                classes=np.asarray(categories.to_label(np.asarray(classes, np.int64)), np.int32).reshape(-1),
                is_crowd=np.asarray(crowd, bool).reshape(-1),
                segmentations=tuple(segmentations),
                annotation_ids=tuple(ann_ids),
            )
        )
        counts["instances"] += len(classes)
        counts["crowd_instances"] += sum(crowd)
    counts["images"] = len(records)
    for ann in coco.dataset.get("annotations", []):
        if ann.get("image_id") not in coco.imgs:
            problem("unknown_image", ann.get("id"))
    for key, description in _PROBLEMS.items():
        if counts[key]:
            LOG.warning("%s: %d %s, e.g. %s", name, counts[key], description, examples[key])
    return CocoInstances(records, categories, counts, "" if in_memory else name)


# ----------------------------------------------------------------------------------------------- writing


def mask_to_uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a binary ``[H, W]`` mask: column-major run lengths, starting with zeros."""
    mask = np.asarray(mask, bool)
    flat = mask.ravel(order="F")
    if flat.size == 0:
        return {"size": list(mask.shape), "counts": []}
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO's compressed RLE of a binary ``[H, W]`` mask, ``counts`` as a str (json-ready)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer outlines of a binary ``[H, W]`` mask as COCO polygons, along pixel edges.

    Each 4-connected component gives one polygon ``[x0, y0, x1, y1, ...]`` in pixel-corner coordinates
    (pixel ``(r, c)`` is the square ``[c, c + 1] x [r, r + 1]``), which pycocotools rasterizes back to the
    same pixels. COCO polygons cannot describe holes: a component's holes are filled.
    """
    inside = np.pad(np.asarray(mask, bool), 1)
    edges: list[tuple[tuple[int, int], tuple[int, int]]] = []  # ((x, y) origin, (dx, dy) heading), inside on the right
    rows, cols = np.nonzero(inside[1:, 1:-1] != inside[:-1, 1:-1])  # horizontal edge at y = row, x in [col, col+1]
    for r, c in zip(rows.tolist(), cols.tolist()):
        edges.append(((c, r), (1, 0)) if inside[r + 1, c + 1] else ((c + 1, r), (-1, 0)))
    rows, cols = np.nonzero(inside[1:-1, 1:] != inside[1:-1, :-1])  # vertical edge at x = col, y in [row, row+1]
    for r, c in zip(rows.tolist(), cols.tolist()):
        edges.append(((c, r + 1), (0, -1)) if inside[r + 1, c + 1] else ((c, r), (0, 1)))
    outgoing: dict[tuple[int, int], dict[tuple[int, int], int]] = {}
    for index, (origin, heading) in enumerate(edges):
        outgoing.setdefault(origin, {})[heading] = index
    used = [False] * len(edges)
    polygons = []
    for start in range(len(edges)):
        if used[start]:
            continue
        vertices, index = [], start
        while not used[index]:
            used[index] = True
            (x, y), (dx, dy) = edges[index]
            vertices.append((x, y, dx, dy))
            choices = outgoing[(x + dx, y + dy)]
            # right turn first: keeps diagonal neighbours in separate outlines (4-connectivity)
            for turn in ((-dy, dx), (dx, dy), (dy, -dx)):
                if turn in choices:
                    index = choices[turn]
                    break
        corners = [(x, y) for i, (x, y, dx, dy) in enumerate(vertices) if (dx, dy) != vertices[i - 1][2:]]
        area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1]))
        if area > 0:  # outer outlines run clockwise on screen (positive here); holes negative
            polygons.append([float(v) for corner in corners for v in corner])
    return polygons


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
        n = len(classes)
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
        crowd = np.asarray(example.get("is_crowd", np.zeros(n, bool)), bool).reshape(-1)
        given = example.get("segmentations")
        category_ids = categories.to_category_id(classes.astype(np.int64)) if n else []
        for i in range(n):
            ymin, xmin, ymax, xmax = (float(v) for v in boxes[i])
            fmt = formats[len(annotations) % len(formats)]
            if given is not None and given[i] is not None:
                segmentation = given[i]
                area = float(segmentation_to_mask(segmentation, height, width).sum())
            elif masks is None:  # a box-only example: the box as a polygon
                segmentation = [[xmin, ymin, xmax, ymin, xmax, ymax, xmin, ymax]]
                area = (ymax - ymin) * (xmax - xmin)
            else:
                mask = masks[i]
                area = float(mask.sum())
                if fmt == "rle":
                    segmentation = mask_to_rle(mask)
                elif fmt == "uncompressed_rle":
                    segmentation = mask_to_uncompressed_rle(mask)
                else:
                    segmentation = mask_to_polygons(mask)
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
