"""Parity between two sets of Mask R-CNN detections of the same images: an exported model against its reference.

Detections are matched one to one per image, greedily by box IoU (best pairs first, IoU above a threshold), the
way a user compares two detectors' outputs; classes are not part of the matching, they are compared after it.
Masks are compared after pasting both into the image (:func:`kzoo.ops.masks.paste_masks`, the same pasting the
evaluation uses), so a mask IoU is the IoU of the full-image binary masks a user would see.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from kzoo.ops.masks import paste_masks

__all__ = ["DetectionParity", "compare_detections", "has_near_equal", "outliers"]


@dataclasses.dataclass(frozen=True)
class DetectionParity:
    """Matched pairs of detections over a set of images, and the unmatched counts.

    Each array has one entry per matched pair, in image order: ``box_iou`` (float64), ``box_error`` (the largest
    absolute coordinate difference in pixels, float64), ``score_error`` (absolute, float64), ``same_class`` (bool),
    ``mask_iou`` (float64; 1.0 when both masks are empty), and where the pair sits: ``image_index``,
    ``reference_row`` and ``candidate_row`` (int64 rows of the outputs' ``D`` axis).
    """

    reference_count: int
    candidate_count: int
    box_iou: np.ndarray
    box_error: np.ndarray
    score_error: np.ndarray
    same_class: np.ndarray
    mask_iou: np.ndarray
    image_index: np.ndarray
    reference_row: np.ndarray
    candidate_row: np.ndarray

    @property
    def matched(self) -> int:
        return len(self.box_iou)

    def summary(self) -> dict[str, float]:
        """Plain numbers: the matched fraction (of the larger set), class agreement, and the mean and the worst of
        box IoU, box error, score error and mask IoU over the matched pairs (NaN when nothing matched)."""

        def stat(values: np.ndarray, reduce) -> float:
            return float(reduce(values)) if len(values) else float("nan")

        return {
            "reference": self.reference_count,
            "candidate": self.candidate_count,
            "matched": self.matched / max(self.reference_count, self.candidate_count, 1),
            "same_class": stat(self.same_class, np.mean),
            "box_iou_mean": stat(self.box_iou, np.mean),
            "box_iou_min": stat(self.box_iou, np.min),
            "box_error_max": stat(self.box_error, np.max),
            "score_error_max": stat(self.score_error, np.max),
            "mask_iou_mean": stat(self.mask_iou, np.mean),
            "mask_iou_min": stat(self.mask_iou, np.min),
        }


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[N, M]`` of ``[ymin, xmin, ymax, xmax]`` boxes, float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    top = np.maximum(a[:, None, 0], b[None, :, 0])
    left = np.maximum(a[:, None, 1], b[None, :, 1])
    bottom = np.minimum(a[:, None, 2], b[None, :, 2])
    right = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _valid(outputs: Mapping[str, np.ndarray], index: int, min_score: float) -> dict[str, np.ndarray]:
    """One image's detections scoring at least ``min_score``, with their ``rows`` in the outputs."""
    count = int(outputs["num_detections"][index])
    keep = np.asarray(outputs["detection_scores"][index][:count]) >= min_score
    valid = {key: np.asarray(outputs[key][index][:count])[keep] for key in _KEYS}
    valid["rows"] = np.flatnonzero(keep)
    return valid


_KEYS = ("detection_boxes", "detection_scores", "detection_classes", "detection_masks")


def compare_detections(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    image_sizes: Sequence[tuple[int, int]] | tuple[int, int],
    iou_threshold: float = 0.5,
    min_score: float = 0.0,
) -> DetectionParity:
    """Match ``candidate``'s detections to ``reference``'s, image by image, and measure how far they differ.

    Args:
        reference, candidate: model outputs for the same ``N`` images: ``detection_boxes`` ``[N, D, 4]``
            (``[ymin, xmin, ymax, xmax]`` in image pixels), ``detection_scores`` ``[N, D]``,
            ``detection_classes`` ``[N, D]``, ``num_detections`` ``[N]``, ``detection_masks`` ``[N, D, M, M]``
            (NumPy arrays or tensors; ``D`` may differ between the two).
        image_sizes: ``(height, width)`` of each image (or one size for all) for pasting the masks.
        iou_threshold: pairs need a box IoU above this.
        min_score: only detections scoring at least this take part (on each side).

    Returns:
        A :class:`DetectionParity`.

    Raises:
        ValueError: the two sets cover different numbers of images, or ``image_sizes`` does not match them.
    """
    num_images = len(reference["num_detections"])
    if len(candidate["num_detections"]) != num_images:
        raise ValueError(f"reference has {num_images} images but candidate has {len(candidate['num_detections'])}")
    sizes = np.asarray(image_sizes, np.int64)
    sizes = np.broadcast_to(sizes, (num_images, 2)) if sizes.shape == (2,) else sizes
    if sizes.shape != (num_images, 2):
        raise ValueError(f"image_sizes must be one (height, width) or one per image ({num_images}), got {sizes.shape}")
    counts = [0, 0]
    columns: dict[str, list] = {
        name: []
        for name in (
            "box_iou",
            "box_error",
            "score_error",
            "same_class",
            "mask_iou",
            "image_index",
            "reference_row",
            "candidate_row",
        )
    }
    for index in range(num_images):
        a, b = _valid(reference, index, min_score), _valid(candidate, index, min_score)
        counts[0] += len(a["detection_scores"])
        counts[1] += len(b["detection_scores"])
        iou = _box_iou(a["detection_boxes"], b["detection_boxes"])
        pairs, used_a, used_b = [], set(), set()
        for i, j in zip(*np.unravel_index(np.argsort(-iou, axis=None, kind="stable"), iou.shape)):
            if iou[i, j] > iou_threshold and i not in used_a and j not in used_b:
                pairs.append((i, j))
                used_a.add(i)
                used_b.add(j)
        if not pairs:
            continue
        ia, ib = (np.array(p) for p in zip(*pairs))
        boxes_a, boxes_b = a["detection_boxes"][ia], b["detection_boxes"][ib]
        masks_a = paste_masks(a["detection_masks"][ia], boxes_a, tuple(sizes[index]))
        masks_b = paste_masks(b["detection_masks"][ib], boxes_b, tuple(sizes[index]))
        inter = (masks_a & masks_b).sum(axis=(1, 2))
        union = (masks_a | masks_b).sum(axis=(1, 2))
        columns["box_iou"].extend(iou[ia, ib])
        columns["box_error"].extend(np.abs(boxes_a.astype(np.float64) - boxes_b).max(axis=1))
        columns["score_error"].extend(np.abs(a["detection_scores"][ia].astype(np.float64) - b["detection_scores"][ib]))
        columns["same_class"].extend(a["detection_classes"][ia] == b["detection_classes"][ib])
        columns["mask_iou"].extend(np.where(union > 0, inter / np.maximum(union, 1), 1.0))
        columns["image_index"].extend([index] * len(pairs))
        columns["reference_row"].extend(a["rows"][ia])
        columns["candidate_row"].extend(b["rows"][ib])
    dtypes = {"same_class": bool, "image_index": np.int64, "reference_row": np.int64, "candidate_row": np.int64}
    arrays = {name: np.asarray(v, dtypes.get(name, np.float64)) for name, v in columns.items()}
    return DetectionParity(reference_count=counts[0], candidate_count=counts[1], **arrays)


def outliers(
    parity: DetectionParity, candidate: Mapping[str, np.ndarray], max_box_error: float = 1.0, min_mask_iou: float = 0.95
) -> list[tuple[int, int]]:
    """``(image, row)`` of the candidate's detections that are off: matched with a box error above ``max_box_error``
    pixels or a mask IoU below ``min_mask_iou``, or not matched at all (``parity`` from :func:`compare_detections`
    with ``min_score=0``)."""
    bad = (parity.box_error > max_box_error) | (parity.mask_iou < min_mask_iou)
    found = list(zip(parity.image_index[bad].tolist(), parity.candidate_row[bad].tolist()))
    for image in range(len(candidate["num_detections"])):
        matched = set(parity.candidate_row[parity.image_index == image].tolist())
        found += [(image, row) for row in range(int(candidate["num_detections"][image])) if row not in matched]
    return found


def has_near_equal(
    others: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    image: int,
    row: int,
    max_box_error: float = 1.0,
    max_score_error: float = 0.01,
) -> bool:
    """Whether ``others`` (outputs as in :func:`compare_detections`) holds, in image ``image``, a detection of the
    same class within ``max_box_error`` pixels and ``max_score_error`` in score of the candidate's detection
    ``row``.

    With ``others`` the reference model's detections *without NMS* (``nms_threshold=1``), a candidate outlier that
    has a near-equal there is an NMS near-tie: the reference model has that detection too, and NMS kept another one
    of nearly the same score instead.
    """
    count = int(others["num_detections"][image])
    box = np.asarray(candidate["detection_boxes"][image][row], np.float64)
    box_error = np.abs(np.asarray(others["detection_boxes"][image][:count], np.float64) - box).max(axis=-1)
    score_error = np.abs(
        np.asarray(others["detection_scores"][image][:count], np.float64)
        - float(candidate["detection_scores"][image][row])
    )
    same_class = np.asarray(others["detection_classes"][image][:count]) == candidate["detection_classes"][image][row]
    return bool(np.any((box_error <= max_box_error) & (score_error <= max_score_error) & same_class))
