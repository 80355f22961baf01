"""COCO box and mask AP for Mask R-CNN, computed by pycocotools' ``COCOeval``.

Detections come in kzoo's convention (boxes ``[ymin, xmin, ymax, xmax]`` in original-image pixels, labels
1..K, masks as ``28 x 28`` RoI-space probabilities) and are turned into COCO results here, at the edge:
boxes become ``[x, y, width, height]``, labels become category ids through :class:`CocoCategories`, masks
are pasted into the image (:func:`kzoo.ops.masks.paste_masks`, threshold 0.5) and run-length encoded.

- :func:`detections_to_coco`: one batch of model outputs -> a list of COCO result dicts;
- :func:`evaluate_coco`: ground truth + results -> ``{"bbox_AP", ..., "segm_APl"}`` and per-class AP
  ``{"bbox_AP/<class name>", "segm_AP/<class name>"}`` (:func:`per_class_ap`);
- :class:`CocoEvaluator`: accumulates batches (``update``), then ``evaluate`` and ``write_results``.

pycocotools crashes the process (a segfault, or memory exhausted) on bad geometry, so nothing reaches it unchecked: the
ground truth goes through the COCO reader's checks (:func:`kzoo.data.coco_validation.validate_coco_dict`), model
detections are made finite and clipped to the image (:func:`check_detection_boxes`) before masks are pasted and encoded,
and results are checked before ``loadRes``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from kzoo.data.coco_categories import CocoCategories
from kzoo.data.coco_masks import clean_segmentation, mask_to_rle, segmentation_to_mask
from kzoo.data.coco_validation import validate_coco_dict
from kzoo.ops.masks import paste_masks
from kzoo.utils import files

LOG = logging.getLogger(__name__)

IOU_TYPES = ("bbox", "segm")
#: The first six entries of ``COCOeval.stats``, in order (AP at IoU .50:.95, .50, .75; small, medium, large).
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
MASK_THRESHOLD = 0.5
#: Separates the metric from the class name in per-class keys: ``bbox_AP/<class name>``.
PER_CLASS_SEPARATOR = "/"


def _quiet(verbose: bool):
    """A context that swallows pycocotools' prints unless ``verbose``."""
    return contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())


def load_ground_truth(ground_truth, verbose: bool = False):
    """A pycocotools ``COCO`` object from a ``COCO`` object, a COCO dict or a json path, its annotations checked
    first by :func:`kzoo.data.coco_validation.validate_coco_dict` (the training reader's checks: pycocotools never sees
    unchecked geometry, which can crash the process).

    A dict is deep-copied first: ``COCOeval`` rewrites ground-truth segmentations in place. What the check drops
    (bad boxes, segmentations and image sizes, unknown images and categories, repeated annotation ids: kept
    once) and repairs (polygon parts dropped, polygons clipped near the image) is counted and warned about.
    A ``COCO`` object is returned as is when nothing needed dropping or repairing, else a new one is made from its
    checked dataset.
    """
    from pycocotools.coco import COCO

    given = ground_truth if isinstance(ground_truth, COCO) else None
    name = "evaluation ground truth"
    if given is not None:
        ground_truth = given.dataset
    elif isinstance(ground_truth, (str, os.PathLike)):
        name = f"evaluation ground truth {os.fspath(ground_truth)}"
        with open(ground_truth) as f:
            ground_truth = json.load(f)
    if not isinstance(ground_truth, Mapping):
        raise TypeError(
            f"ground truth must be a pycocotools COCO, a COCO dict or a json path, got {type(ground_truth)}"
        )
    dataset, counts = validate_coco_dict(ground_truth, name)
    if given is not None and not any(v for k, v in counts.items() if k != "annotations"):
        return given
    dataset = copy.deepcopy(dataset)
    with _quiet(verbose):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
    return coco


def check_detection_boxes(
    boxes: np.ndarray, scores: np.ndarray, image_size
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Detections made safe for mask pasting and pycocotools: finite, and inside the image.

    Args:
        boxes: float ``[D, 4]`` ``[ymin, xmin, ymax, xmax]`` in image pixels.
        scores: float ``[D]``.
        image_size: ``(height, width)`` of the image.

    Returns:
        ``(keep, boxes, counts)``: ``keep`` bool ``[D]``, False for a detection with a non-finite box coordinate
        or score; ``boxes`` float64 ``[D, 4]`` clipped to ``[0, height] x [0, width]`` (dropped rows zeroed);
        ``counts`` ``{"non_finite": n, "far_outside": n}``: detections dropped, and kept detections that reached
        more than a pixel outside the image (clipped; a model's boxes stay inside but for rounding).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    height, width = float(image_size[0]), float(image_size[1])
    keep = np.all(np.isfinite(boxes), axis=1) & np.isfinite(scores)
    safe = np.where(keep[:, None], boxes, 0.0)
    low, high = np.zeros(4), np.array([height, width, height, width])
    far = keep & np.any((safe < low - 1.0) | (safe > high + 1.0), axis=1)
    return keep, np.clip(safe, low, high), {"non_finite": int(np.sum(~keep)), "far_outside": int(np.sum(far))}


def _checked_results(coco_gt, results: Sequence[dict], iou_type: str) -> list[dict]:
    """Copies of the results that pycocotools can take for ``iou_type``: a finite score; for ``"bbox"`` a box of 4
    finite numbers with a non-negative width and height (boxes crossing the image border are scored as they are:
    only arithmetic on them); for ``"segm"`` a segmentation that
    is an RLE of its image's size (compressed or not) or polygons (checked and clipped as the ground truth's),
    turned into compressed RLE (what ``loadRes`` reads). The others are dropped, counted and warned about."""
    sizes = {image["id"]: (int(image["height"]), int(image["width"])) for image in coco_gt.dataset["images"]}
    kept: list[dict] = []
    dropped: dict[str, list] = {"score": [], "bbox": [], "segmentation": []}
    for index, result in enumerate(results):
        where = f"result {index} (image {result.get('image_id')})"
        height, width = sizes[int(result["image_id"])]
        try:
            score = float(result.get("score", np.nan))
        except (TypeError, ValueError):
            score = np.nan
        if not np.isfinite(score):
            dropped["score"].append(where)
            continue
        result = dict(result)
        if iou_type == "bbox":
            try:
                x, y, w, h = (float(v) for v in result["bbox"])
            except (KeyError, TypeError, ValueError):
                x = y = w = h = np.nan
            if not all(np.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
                dropped["bbox"].append(where)
                continue
        else:
            segmentation, _ = clean_segmentation(result.get("segmentation"), height, width)
            if segmentation is None:
                dropped["segmentation"].append(where)
                continue
            if isinstance(segmentation, list) or isinstance(segmentation.get("counts"), list):
                segmentation = mask_to_rle(segmentation_to_mask(segmentation, height, width))
            result["segmentation"] = segmentation
        kept.append(result)
    for key, items in dropped.items():
        if items:
            LOG.warning(
                "%s results: %d with a missing or invalid %s (dropped: pycocotools cannot take them), e.g. %s",
                iou_type,
                len(items),
                key,
                items[:3],
            )
    return kept


def _check_iou_types(iou_types: Iterable[str]) -> tuple[str, ...]:
    iou_types = (iou_types,) if isinstance(iou_types, str) else tuple(iou_types)
    unknown = [t for t in iou_types if t not in IOU_TYPES]
    if not iou_types or unknown:
        raise ValueError(f"unknown iou type(s) {unknown or iou_types}; choose from {IOU_TYPES}")
    return iou_types


def detections_to_coco(
    image_ids: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    num_detections: np.ndarray,
    masks: np.ndarray | None,
    image_sizes: np.ndarray,
    categories: CocoCategories,
) -> list[dict]:
    """COCO result dicts of one batch of detections.

    Args:
        image_ids: int ``[B]`` COCO image ids; images with an id below 0 are padding and skipped.
        boxes: float ``[B, D, 4]`` ``[ymin, xmin, ymax, xmax]`` in original-image pixels.
        scores: float ``[B, D]``.
        classes: int ``[B, D]`` contiguous labels 1..K (mapped to category ids through ``categories``).
        num_detections: int ``[B]``; rows at and after ``num_detections[b]`` are ignored.
        masks: float ``[B, D, M, M]`` RoI-space mask probabilities, or ``None`` for boxes only.
        image_sizes: int ``[B, 2]`` original ``(height, width)``; masks are pasted at this size.
        categories: the label <-> category id mapping.

    Detections with a non-finite box or score are dropped and boxes are clipped to the image
    (:func:`check_detection_boxes`) before masks are pasted and encoded; both are warned about (clipping only
    for boxes reaching more than a pixel outside).

    Returns:
        One dict per kept detection: ``image_id`` (int), ``category_id`` (int), ``bbox`` ``[x, y, w, h]``
        (floats), ``score`` (float) and, with masks, ``segmentation`` (compressed RLE, ``counts`` a str):
        json-serializable as is.
    """
    image_ids = np.asarray(image_ids).reshape(-1)
    boxes = np.asarray(boxes, np.float64)
    scores = np.asarray(scores, np.float64)
    classes = np.asarray(classes)
    num_detections = np.asarray(num_detections).reshape(-1)
    image_sizes = np.asarray(image_sizes).reshape(-1, 2)
    masks = None if masks is None else np.asarray(masks, np.float32)
    results = []
    problems: dict[str, list] = {"non_finite": [], "far_outside": []}
    for b, image_id in enumerate(image_ids.tolist()):
        if image_id < 0:
            continue
        n = int(num_detections[b])
        keep, image_boxes, counts = check_detection_boxes(boxes[b, :n], scores[b, :n], image_sizes[b])
        for key, count in counts.items():
            problems[key].extend([int(image_id)] * count)
        index = np.flatnonzero(keep)
        n, image_boxes, image_scores = len(index), image_boxes[index], scores[b, index]
        category_ids = categories.to_category_id(classes[b, index].astype(np.int64)) if n else []
        pasted = None
        if masks is not None and n:
            pasted = paste_masks(masks[b, index], image_boxes, tuple(image_sizes[b]), threshold=MASK_THRESHOLD)
        for i in range(n):
            ymin, xmin, ymax, xmax = (float(v) for v in image_boxes[i])
            result = {
                "image_id": int(image_id),
                "category_id": int(category_ids[i]),
                "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                "score": float(image_scores[i]),
            }
            if pasted is not None:
                result["segmentation"] = mask_to_rle(pasted[i])
            results.append(result)
    if problems["non_finite"]:
        LOG.warning(
            "%d detections with a non-finite box or score (dropped), on images %s",
            len(problems["non_finite"]),
            sorted(set(problems["non_finite"]))[:5],
        )
    if problems["far_outside"]:
        LOG.warning(
            "%d detection boxes reaching more than a pixel outside their image (clipped to it), on images %s",
            len(problems["far_outside"]),
            sorted(set(problems["far_outside"]))[:5],
        )
    return results


def _load_results(coco_gt, results: Sequence[dict], iou_type: str):
    """The results as a ``COCO`` object for ``iou_type``, checked first (:func:`_checked_results`); an empty list
    gives an empty one (``loadRes`` fails)."""
    from pycocotools.coco import COCO

    if iou_type == "segm" and any("segmentation" not in r for r in results):
        raise ValueError("segm evaluation needs a 'segmentation' in every result")

    results = _checked_results(coco_gt, results, iou_type)
    if not results:
        coco_dt = COCO()
        coco_dt.dataset = {
            "images": list(coco_gt.dataset["images"]),
            "categories": copy.deepcopy(coco_gt.dataset["categories"]),
            "annotations": [],
        }
        coco_dt.createIndex()
        return coco_dt
    if iou_type == "segm":
        # without a bbox, loadRes takes each result's area from its mask (with one, from the box), so the
        # small/medium/large split uses the mask area, as for the ground truth
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    return coco_gt.loadRes(results)  # the checked results are copies: loadRes writes into the dicts


def per_class_ap(coco_eval) -> dict[int, float]:
    """Each category's AP from an accumulated ``COCOeval``: ``eval["precision"]`` ``[T, R, K, A, M]`` at area
    ``all`` and ``maxDets`` 100, averaged over the IoU thresholds .50:.95 and the recall points, -1 entries left
    out (what ``COCOeval.summarize`` averages for ``AP``, restricted to one category).

    Returns:
        ``{category id: AP}`` for the categories of ``coco_eval.params.catIds`` that have ground truth on the
        evaluated images; a category without any (non-crowd) ground truth there has only -1 entries and is
        omitted.
    """
    params = coco_eval.params
    precision = np.asarray(coco_eval.eval["precision"])  # [T, R, K, A, M]
    area = list(params.areaRngLbl).index("all")
    max_dets = list(params.maxDets).index(100)
    out = {}
    for k, category_id in enumerate(params.catIds):
        values = precision[:, :, k, area, max_dets]
        values = values[values > -1]
        if values.size:
            out[int(category_id)] = float(np.mean(values))
    return out


def _class_names(coco_gt) -> dict[int, str]:
    """Category id -> name from the ground truth's categories (``name``, else the id); a name that two
    categories share gets its id appended (``name#id``) so the keys stay apart."""
    categories = coco_gt.dataset.get("categories", [])
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in categories}
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    return {i: name if counts[name] == 1 else f"{name}#{i}" for i, name in names.items()}


def evaluate_coco(
    ground_truth,
    results: Sequence[dict],
    iou_types: Iterable[str] = IOU_TYPES,
    image_ids: Iterable[int] | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """COCO AP of results against ground truth, by pycocotools' ``COCOeval``.

    Args:
        ground_truth: a pycocotools ``COCO`` object, a COCO dict or a json path, checked by the COCO reader's
            rules (see :func:`load_ground_truth`; a ``COCO`` object that needs no repair is used as is, and
            ``COCOeval`` turns its polygon segmentations into RLE in place).
        results: COCO result dicts (``image_id``, ``category_id``, ``score``, ``bbox`` ``[x, y, w, h]``
            and, for ``"segm"``, ``segmentation`` as compressed RLE; uncompressed RLE and polygons are
            converted), e.g. from :func:`detections_to_coco`; may be empty. Results pycocotools cannot take
            safely (a non-finite score or box, a negative box size, a segmentation that is not of the image's
            size) are dropped, counted and warned about.
        iou_types: any of ``"bbox"``, ``"segm"``.
        image_ids: evaluate on these images only (``COCOeval.params.imgIds``); default: every ground-truth
            image. An empty collection gives -1 everywhere (nothing to evaluate).
        verbose: let pycocotools print its progress and summary tables.

    Returns:
        ``{f"{iou_type}_{name}": float}`` for ``name`` in ``AP, AP50, AP75, APs, APm, APl`` (the first six
        entries of ``COCOeval.stats``); -1 where COCO has no ground truth to score (e.g. no large objects),
        0 where there is ground truth but no matching detection. Then per-class AP (IoU .50:.95, all areas,
        100 detections; :func:`per_class_ap`): ``f"{iou_type}_AP/{class name}"`` (names from the ground truth's
        categories) for every category with ground truth on the evaluated images; a category without ground truth
        there has no key (neither -1 nor NaN, so the values are plain JSON numbers).

    Raises:
        ValueError: a result on an image the ground truth does not have, or a ``"segm"`` evaluation of
            results without segmentations.
    """
    from pycocotools.cocoeval import COCOeval

    iou_types = _check_iou_types(iou_types)
    coco_gt = load_ground_truth(ground_truth, verbose)
    unknown = {int(r["image_id"]) for r in results} - set(coco_gt.getImgIds())
    if unknown:
        raise ValueError(f"results on image ids the ground truth does not have: {sorted(unknown)[:10]}")
    image_ids = None if image_ids is None else sorted({int(i) for i in image_ids})
    metrics: dict[str, float] = {}
    per_class: dict[str, float] = {}
    names = _class_names(coco_gt)
    for iou_type in iou_types:
        if image_ids is not None and not image_ids:
            metrics.update({f"{iou_type}_{name}": -1.0 for name in STAT_NAMES})
            continue
        with _quiet(verbose):
            coco_eval = COCOeval(coco_gt, _load_results(coco_gt, results, iou_type), iouType=iou_type)
            if image_ids is not None:
                coco_eval.params.imgIds = image_ids
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        metrics.update({f"{iou_type}_{name}": float(v) for name, v in zip(STAT_NAMES, coco_eval.stats[:6])})
        per_class.update(
            {
                f"{iou_type}_AP{PER_CLASS_SEPARATOR}{names.get(i, str(i))}": ap
                for i, ap in per_class_ap(coco_eval).items()
            }
        )
    return {**metrics, **per_class}


class CocoEvaluator:
    """Accumulates Mask R-CNN outputs batch by batch, then scores them with ``COCOeval``.

    Example::

        evaluator = CocoEvaluator("instances_val.json")
        for images, image_ids, image_sizes in batches:
            evaluator.update(model(images), image_ids, image_sizes)
        metrics = evaluator.evaluate()  # {"bbox_AP": ..., "segm_AP": ...}

    Args:
        ground_truth: a pycocotools ``COCO`` object, a COCO dict or a json path (checked: :func:`load_ground_truth`).
        categories: the label <-> category id mapping the model was trained with (default: the ground
            truth's categories in increasing id order, as :func:`kzoo.data.coco_reader.load_coco_instances` maps them).
        iou_types: any of ``"bbox"``, ``"segm"``; without ``"segm"`` masks are neither needed nor pasted.
        verbose: let pycocotools print its progress and summary tables.
    """

    def __init__(
        self,
        ground_truth,
        categories: CocoCategories | None = None,
        iou_types: Iterable[str] = IOU_TYPES,
        verbose: bool = False,
    ) -> None:
        self.coco_gt = load_ground_truth(ground_truth, verbose)
        if categories is None:
            categories = CocoCategories.from_coco(self.coco_gt.dataset.get("categories", []))
        self.categories = categories
        self.iou_types = _check_iou_types(iou_types)
        self.verbose = verbose
        self.results: list[dict] = []
        self.image_ids: set[int] = set()

    def reset(self) -> None:
        """Forget every update."""
        self.results = []
        self.image_ids = set()

    def update(self, outputs: Mapping, image_ids, image_sizes) -> None:
        """Add one batch of model outputs.

        Args:
            outputs: the model's dict (numpy arrays or tf tensors): ``detection_boxes`` float ``[B, D, 4]``
                ``[ymin, xmin, ymax, xmax]`` in original-image pixels, ``detection_scores`` ``[B, D]``,
                ``detection_classes`` int ``[B, D]`` (labels 1..K), ``num_detections`` int ``[B]`` and, for
                ``"segm"``, ``detection_masks`` float ``[B, D, 28, 28]``.
            image_ids: int ``[B]`` COCO image ids; ids below 0 mark padding images, skipped.
            image_sizes: int ``[B, 2]`` original ``(height, width)``.
        """
        image_ids = np.asarray(image_ids).reshape(-1)
        masks = np.asarray(outputs["detection_masks"]) if "segm" in self.iou_types else None
        self.results.extend(
            detections_to_coco(
                image_ids,
                np.asarray(outputs["detection_boxes"]),
                np.asarray(outputs["detection_scores"]),
                np.asarray(outputs["detection_classes"]),
                np.asarray(outputs["num_detections"]),
                masks,
                np.asarray(image_sizes),
                self.categories,
            )
        )
        self.image_ids.update(int(i) for i in image_ids.tolist() if i >= 0)

    def evaluate(self) -> dict[str, float]:
        """COCO AP, overall and per class, over the images seen by :meth:`update` (see :func:`evaluate_coco` for
        the keys)."""
        return evaluate_coco(self.coco_gt, self.results, self.iou_types, self.image_ids, self.verbose)

    def write_results(self, path: str) -> None:
        """Write the accumulated results as a COCO results json (atomically: temp file, then rename)."""
        files.write_json(path, self.results, indent=None)
