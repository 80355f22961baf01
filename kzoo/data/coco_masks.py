"""COCO segmentations and binary masks: decoding a segmentation (checked first: pycocotools crashes the process on
some malformed ones), cleaning one, and encoding a mask as compressed RLE, uncompressed RLE or polygons.

A segmentation is a list of polygons (each ``[x0, y0, x1, y1, ...]`` in pixel-corner coordinates), an uncompressed
RLE ``{"size": [h, w], "counts": [int, ...]}`` or a compressed RLE ``{"size": [h, w], "counts": str | bytes}``.
pycocotools is imported when a mask is decoded or encoded, not with this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SEGMENTATION_FORMATS = ("rle", "uncompressed_rle", "polygon")


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


def clean_segmentation(segmentation, height: int, width: int) -> tuple[Any, list[str]]:
    """``(segmentation, repairs)``: the segmentation cleaned (polygons of under 3 points or an odd coordinate count
    removed, coordinates clipped to ``[-1, width + 1] x [-1, height + 1]``), or ``None`` when unusable (no polygon
    left, any polygon with non-finite or non-numeric coordinates, an RLE of the wrong size or run lengths); and
    the repairs made (keys of :data:`kzoo.data.coco_validation.REPAIRS`)."""
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
