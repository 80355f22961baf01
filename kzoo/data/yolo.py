"""YOLO segmentation labels (one txt per image) -> a COCO instances dict.

Each line of ``labels/<stem>.txt`` is one instance: ``class x1 y1 x2 y2 ...``, the polygon's coordinates
normalized by the image width and height to [0, 1] (a five-number line ``class cx cy w h``, a YOLO detection
box, becomes its rectangle). Class indices name classes through a ``data.yaml``'s ``names`` (a list, or an
``{index: name}`` dict), through ``class_names`` or through a ``classes.txt`` in the labels folder. Images are
found by the label file's path in the images folder (same subfolders and stem, any of
:data:`kzoo.data.images.IMAGE_FILE_EXTENSIONS`); images without a label file are negatives, as for
Ultralytics. Sizes are read from the image files' headers. See :mod:`kzoo.data.annotation_builder` for the
checks and the counted problems; a malformed line (non-numeric, wrong count) is dropped as a malformed shape.
Files are read as Windows editors write them too: a UTF-8 byte-order mark, CRLF line ends and trailing blanks are
no problem.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

import numpy as np

from kzoo.data.annotation_builder import CocoBuilder, rectangle_polygon
from kzoo.data.images import IMAGE_FILE_EXTENSIONS

LOG = logging.getLogger(__name__)


def read_yolo_names(data_yaml: str) -> dict[int, str]:
    """``{class index: name}`` of a YOLO ``data.yaml`` (``names`` as a list or an ``{index: name}`` dict).

    Raises:
        FileNotFoundError: no file at ``data_yaml``.
        ValueError: unreadable, or without a usable ``names`` (named).
    """
    import yaml

    if not os.path.isfile(data_yaml):
        raise FileNotFoundError(f"YOLO data yaml not found: {data_yaml}")
    try:
        with open(data_yaml, encoding="utf-8-sig") as f:
            data = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{data_yaml} is not a readable YAML file: {error}") from error
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise ValueError(f"{data_yaml} has no 'names' list or {{index: name}} dict")
    try:
        result = {int(index): str(name) for index, name in names.items()}
    except (TypeError, ValueError) as error:
        raise ValueError(f"{data_yaml}: 'names' keys must be class indices, got {list(names)}") from error
    if len(set(result.values())) != len(result):
        raise ValueError(f"{data_yaml}: 'names' must be unique, got {list(result.values())}")
    return result


def yolo_to_coco(
    annotations: str,
    images: str,
    class_names: Sequence[str] | None = None,
    data_yaml: str | None = None,
    image_dir: str | None = None,
    inputs: list[str] | None = None,
) -> tuple[dict, str, dict]:
    """Convert a folder of YOLO segmentation txt files (and its image folder) to a COCO instances dict.

    Args:
        annotations: the labels folder (searched recursively for ``*.txt``).
        images: the images folder (same layout).
        class_names: without ``data_yaml``: the name of class index ``i`` is ``class_names[i]``. With it: the
            classes to keep, in label order (others dropped, counted). Category id ``i + 1`` is the ``i``-th
            class either way.
        data_yaml: a YOLO ``data.yaml`` naming the class indices. Without it and ``class_names``, the labels
            folder's ``classes.txt`` (one name a line) is read.
        image_dir: a cache folder for images TensorFlow cannot decode as stored (EXIF-rotated, WebP, ...),
            written there upright as PNG; ``None``: such images are skipped (counted).
        inputs: a list the files read (label files, ``data.yaml``, ``classes.txt``, images) are appended to.

    Returns:
        ``(coco, image_root, counts)`` (see :func:`kzoo.data.labelme.labelme_to_coco`); ``image_root`` is
        ``images``.

    Raises:
        FileNotFoundError: ``annotations``, ``images`` or ``data_yaml`` does not exist.
        ValueError: no class names (give ``data_yaml`` or ``class_names``), or an unreadable ``data_yaml``.
        kzoo.data.annotation_builder.NoInstancesError: no instance at all (no label files, every line dropped,
            e.g. class indices beyond the names).
    """
    for what, folder in (("YOLO labels folder", annotations), ("image folder", images)):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{what} not found: {folder}")
    index_names, keep = _class_names(annotations, class_names, data_yaml)
    builder = CocoBuilder(f"YOLO {annotations}", images, keep, image_dir, LOG)
    labels = _files(annotations, (".txt",), skip=("classes.txt",))
    pictures = _files(images, IMAGE_FILE_EXTENSIONS)
    builder.looked = (
        f"label files *.txt under {os.path.abspath(annotations)} and images "
        f"*{{{','.join(IMAGE_FILE_EXTENSIONS)}}} under {os.path.abspath(images)}, both recursively: "
        f"{len(labels)} label files, {len(pictures)} images"
    )
    builder.inputs.extend(p for p in (data_yaml, os.path.join(annotations, "classes.txt")) if p and os.path.isfile(p))
    builder.inputs.extend(labels.values())
    for stem in sorted(set(labels) | set(pictures)):
        label_path = labels.get(stem)
        if stem not in pictures:
            builder.counts["annotation_files"] += 1
            builder.problem("missing_images", f"{label_path}: no image {stem}.* in {images}")
            continue
        image_id = builder.add_image(pictures[stem], label_path or pictures[stem])
        if label_path is None:
            continue
        builder.counts["annotation_files"] += 1
        if image_id is not None:
            _convert_file(builder, label_path, image_id, index_names)
    if inputs is not None:
        inputs.extend(builder.inputs)
    return builder.finish()


def _class_names(annotations: str, class_names, data_yaml) -> tuple[dict[int, str], list[str] | None]:
    """``({index: name}, the classes to keep or None for all of index_names in index order)``."""
    if data_yaml is not None:
        index_names = read_yolo_names(data_yaml)
        return index_names, list(class_names) if class_names is not None else _ordered(index_names)
    if class_names is not None:
        return dict(enumerate(str(n) for n in class_names)), list(class_names)
    classes_txt = os.path.join(annotations, "classes.txt")
    if os.path.isfile(classes_txt):
        with open(classes_txt, encoding="utf-8-sig") as f:
            names = [line.strip() for line in f if line.strip()]
        if names:
            return dict(enumerate(names)), names
    raise ValueError(f"YOLO labels {annotations}: name the classes with a data.yaml (yolo_data_yaml) or class_names")


def _ordered(index_names: dict[int, str]) -> list[str]:
    return [index_names[i] for i in sorted(index_names)]


def _files(folder: str, extensions: Sequence[str], skip: Sequence[str] = ()) -> dict[str, str]:
    """``{relative path without extension: path}`` of the files under ``folder`` with one of ``extensions``
    (the first, in sorted order, where several share a stem)."""
    found: dict[str, str] = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or not name.lower().endswith(tuple(extensions)) or name in skip:
                continue
            path = os.path.join(root, name)
            stem = os.path.splitext(os.path.relpath(path, folder))[0].replace(os.sep, "/")
            found.setdefault(stem, path)
    return found


def _convert_file(builder: CocoBuilder, path: str, image_id: int, index_names: dict[int, str]) -> None:
    image = builder.images[image_id - 1]
    scale = np.array([image["width"], image["height"]], np.float64)
    try:
        with open(path, encoding="utf-8-sig") as f:  # a byte-order mark is not part of the first line
            lines = f.read().splitlines()  # LF, CRLF or CR line ends
    except (OSError, UnicodeDecodeError):
        builder.problem("malformed_files", path)
        return
    for number, line in enumerate(lines, start=1):
        where = f"{path}: line {number}"
        tokens = line.split()
        if not tokens:
            continue
        try:
            values = [float(token) for token in tokens]
        except ValueError:
            builder.problem("malformed_shapes", where)
            continue
        if not (math.isfinite(values[0]) and values[0] >= 0 and values[0] == int(values[0])):
            builder.problem("malformed_shapes", where)
            continue
        coordinates = np.asarray(values[1:], np.float64)
        if len(coordinates) == 4:  # a detection box: cx cy w h
            cx, cy, w, h = coordinates
            polygon = rectangle_polygon(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2) * scale
        elif len(coordinates) >= 6 and len(coordinates) % 2 == 0:
            polygon = coordinates.reshape(-1, 2) * scale
        else:
            builder.problem("malformed_shapes", where)
            continue
        index = int(values[0])
        label = index_names.get(index)
        if label is None:
            known = f"0..{max(index_names)}" if index_names else "none"
            builder.problem("unknown_labels", f"{where}: class index {index} (the names cover {known})")
            continue
        builder.add_instance(image_id, label, [polygon], where)
