"""labelme annotations (one json per image) -> a COCO instances dict.

A labelme json holds ``shapes`` (each with ``label``, ``points`` ``[[x, y], ...]`` in pixels, ``shape_type`` and
``group_id``), ``imagePath`` (relative to the json), optionally the image itself as base64 ``imageData``, and
``imageHeight`` / ``imageWidth``. Shapes become COCO polygons:

- ``polygon``: as is; ``rectangle``: its two corners -> 4 points; ``circle``: center and a point on the rim ->
  a polygon within half a pixel of the circle; ``mask``: its bitmap (placed at the first point) -> outlines;
- ``point``, ``line``, ``linestrip`` (and unknown types) enclose no area: dropped, counted;
- shapes of the same label and ``group_id`` join into one instance (several polygons), as labelme's own
  ``labelme2coco`` does; shapes without a ``group_id`` are one instance each;
- shapes labelled ``__ignore__`` or ``_background_`` (labelme's own conventions: its converters give them no class)
  are ignore regions: ``iscrowd: 1`` annotations, never positives, ignored in matching (see
  :mod:`kzoo.data.annotation_builder`);
- one image annotated in several json files (their ``imagePath`` s lead to the same file) is one COCO image with
  the instances of all of them (merged, counted as ``merged_images``).

An image found only as ``imageData`` is written (as PNG) into the cache folder given, so the pipeline can read
it. See :mod:`kzoo.data.annotation_builder` for the checks and the counted problems.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Sequence

import numpy as np

from kzoo.data.annotation_builder import IGNORE_LABELS, CocoBuilder, ellipse_polygon, rectangle_polygon

LOG = logging.getLogger(__name__)

AREA_SHAPES = ("polygon", "rectangle", "circle", "mask")


def find_labelme_files(annotations: str) -> list[str]:
    """The labelme json files: ``annotations`` itself (a json file), or every ``*.json`` under the folder, sorted.

    Raises:
        FileNotFoundError: ``annotations`` does not exist.
    """
    if os.path.isfile(annotations):
        return [annotations]
    if not os.path.isdir(annotations):
        raise FileNotFoundError(f"labelme annotations not found: {annotations}")
    found: list[str] = []
    for root, dirs, names in os.walk(annotations):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, n) for n in names if n.lower().endswith(".json") and not n.startswith("."))
    return sorted(found)


def labelme_to_coco(
    annotations: str,
    class_names: Sequence[str] | None = None,
    image_dir: str | None = None,
    images: str | None = None,
    inputs: list[str] | None = None,
) -> tuple[dict, str, dict]:
    """Convert labelme json files to a COCO instances dict (polygon segmentations, ``iscrowd`` 0).

    Args:
        annotations: a folder of labelme json files (searched recursively) or one json file.
        class_names: the classes, category id ``i + 1`` for ``class_names[i]``; shapes of other labels are
            dropped (counted). ``None``: every label found, sorted.
        image_dir: a cache folder for images that must be written for the pipeline: those found only as
            ``imageData``, and those TensorFlow cannot decode as stored (EXIF-rotated, WebP, ...). ``None``:
            such images are skipped (counted).
        images: a folder to look for an image in (by its name) where ``imagePath`` does not lead to one.
        inputs: a list the files read (json files, images) are appended to.

    Returns:
        ``(coco, image_root, counts)``: the COCO dict, the folder its ``file_name`` s are relative to (the
        annotations folder; cached images get ``../`` paths where needed), and what was counted (see
        :data:`kzoo.data.annotation_builder.PROBLEMS`).

    Raises:
        FileNotFoundError: ``annotations`` does not exist.
        ValueError: ``class_names`` is not a list of unique names.
        kzoo.data.annotation_builder.NoInstancesError: no instance at all (an empty folder, every shape dropped).
    """
    paths = find_labelme_files(annotations)
    root = annotations if os.path.isdir(annotations) else os.path.dirname(os.path.abspath(annotations))
    builder = CocoBuilder(f"labelme {annotations}", root, class_names, image_dir, LOG, ignore_labels=IGNORE_LABELS)
    builder.looked = (
        f"*.json under {os.path.abspath(annotations)} (recursively)"
        if os.path.isdir(annotations)
        else os.path.abspath(annotations)
    )
    for path in paths:
        builder.counts["annotation_files"] += 1
        builder.inputs.append(path)
        _convert_file(builder, path, root, images)
    if inputs is not None:
        inputs.extend(builder.inputs)
    return builder.finish()


def _convert_file(builder: CocoBuilder, path: str, root: str, images: str | None) -> None:
    try:
        with open(path, encoding="utf-8-sig") as f:  # a byte-order mark (Windows editors) is not an error
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        builder.problem("malformed_files", path)
        return
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        builder.problem("malformed_files", path)
        return
    size = None
    try:
        if data.get("imageHeight") is not None and data.get("imageWidth") is not None:
            size = (int(data["imageHeight"]), int(data["imageWidth"]))
    except (TypeError, ValueError):
        size = None
    image_id = _add_image(builder, data, path, root, size, images)
    if image_id is None:
        return
    instances: dict[tuple, list] = {}  # (label, group_id) or (None, index) -> [(index, shape)]
    for index, shape in enumerate(data["shapes"]):
        where = f"{path}: shape {index}"
        if not isinstance(shape, dict):
            builder.problem("malformed_shapes", where)
            continue
        shape_type = shape.get("shape_type") or "polygon"  # labelme < 3 wrote no shape_type
        if shape_type not in AREA_SHAPES:
            builder.problem("unsupported_shapes", f"{where} ({shape_type})")
            continue
        group = shape.get("group_id")
        key = (str(shape.get("label")), group) if group is not None else (None, index)
        instances.setdefault(key, []).append((index, shape))
    for shapes in instances.values():
        first, shape = shapes[0]
        where = f"{path}: shape {first}" if len(shapes) == 1 else f"{path}: shapes {[i for i, _ in shapes]}"
        polygons = []
        for index, shape in shapes:
            converted = _shape_polygons(shape)
            if converted is None:
                builder.problem("malformed_shapes", f"{path}: shape {index}")
                continue
            polygons.extend(converted)
        if polygons:
            builder.add_instance(image_id, shape.get("label"), polygons, where)


def _add_image(builder: CocoBuilder, data: dict, path: str, root: str, size, images: str | None) -> int | None:
    folder = os.path.dirname(os.path.abspath(path))
    image_path = data.get("imagePath")
    candidates = []
    if isinstance(image_path, str) and image_path:
        candidates = [os.path.join(folder, image_path)]
        if "\\" in image_path:  # written on Windows
            candidates.append(os.path.join(folder, image_path.replace("\\", "/")))
        if images is not None:
            candidates.append(os.path.join(images, os.path.basename(image_path.replace("\\", "/"))))
    for candidate in candidates:
        if os.path.exists(candidate) and not os.path.isdir(candidate):  # a FIFO is there, but no image: counted
            return builder.add_image(os.path.normpath(candidate), path, size)
    embedded = data.get("imageData")
    if isinstance(embedded, str) and embedded:
        try:
            raw = base64.b64decode(embedded, validate=False)
        except (binascii.Error, ValueError):
            builder.problem("corrupt_images", f"{path}: imageData")
            return None
        name = os.path.splitext(os.path.relpath(os.path.abspath(path), os.path.abspath(root)))[0]
        name = os.path.join(*["_up" if part == ".." else part for part in name.split(os.sep) if part])
        return builder.add_image_bytes(raw, name, path, size)
    builder.problem("missing_images", f"{path}: {candidates[0] if candidates else 'no imagePath nor imageData'}")
    return None


def _points(shape: dict) -> np.ndarray | None:
    try:
        points = np.asarray(shape.get("points"), np.float64)
    except (TypeError, ValueError):
        return None
    if points.ndim != 2 or points.shape[1] != 2 or not len(points):
        return None
    return points


def _shape_polygons(shape: dict) -> list | None:
    """The polygons (``[n, 2]`` arrays or flat lists) of one area shape; ``None`` when it is malformed."""
    shape_type = shape.get("shape_type") or "polygon"
    if shape_type == "mask":
        return _mask_polygons(shape)
    points = _points(shape)
    if points is None:
        return None
    if shape_type == "polygon":
        return [points]
    if shape_type == "rectangle":
        if len(points) < 2:
            return None
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        return [rectangle_polygon(x0, y0, x1, y1)]
    if len(points) != 2:  # circle: the center and a point on the rim
        return None
    (cx, cy), (px, py) = points
    radius = float(np.hypot(px - cx, py - cy))
    if not np.isfinite(radius):
        return [points]  # non-finite: counted by the polygon checks
    return [ellipse_polygon(cx, cy, radius, radius)]


def _mask_polygons(shape: dict) -> list | None:
    """A ``mask`` shape: a base64 PNG bitmap whose top-left pixel is the first point -> its outlines."""
    from kzoo.data.coco_masks import mask_to_polygons
    from kzoo.data.images import decode_image_bytes

    points = _points(shape)
    encoded = shape.get("mask")
    if points is None or not isinstance(encoded, str) or not np.all(np.isfinite(points)):
        return None
    try:
        bitmap = decode_image_bytes(base64.b64decode(encoded), name="a mask shape").max(axis=-1) > 0
    except (ValueError, binascii.Error):  # not base64, or a truncated or corrupt image: the shape is malformed
        return None
    x0, y0 = np.floor(points.min(axis=0))
    polygons = mask_to_polygons(bitmap)
    return [np.asarray(p, np.float64).reshape(-1, 2) + (x0, y0) for p in polygons] or None
