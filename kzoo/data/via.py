"""VGG Image Annotator (VIA) 2.x annotations -> a COCO instances dict.

Read: a VIA 2.x project json (``_via_img_metadata``, with ``_via_attributes`` and ``_via_image_id_list``) or
VIA's "export annotations as json" file (the ``_via_img_metadata`` dict alone); the 1.x layout (regions as a
dict keyed by index) is read too. Each entry: ``filename`` (relative to the image folder), ``regions``, each
with ``shape_attributes`` and ``region_attributes``. Region shapes become COCO polygons:

- ``polygon`` (``all_points_x``, ``all_points_y``): as is; ``rect`` (``x``, ``y``, ``width``, ``height``): 4
  points; ``circle`` (``cx``, ``cy``, ``r``) and ``ellipse`` (``cx``, ``cy``, ``rx``, ``ry``, ``theta`` in
  radians, default 0): polygons within half a pixel of them;
- ``point`` and ``polyline`` enclose no area: dropped, counted.

The class of a region is the value of one region attribute, the class attribute (a text, dropdown or radio value;
a checkbox dict with exactly one option ticked), the same for every region: named by ``class_attribute``, else
found only where that is unambiguous (:func:`find_class_attribute`), else an error listing the attributes. A
region without it is dropped and counted (``missing_class_attribute``): its other attributes (a ``note``) are
never taken for a class. A ``rect`` of negative width or height (and a circle or ellipse of negative radius) is
dropped and counted (``negative_sizes``), not mirrored. VIA does not store image sizes: they are read from the
image files. See :mod:`kzoo.data.annotation_builder` for the checks and the counted problems.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import numpy as np

from kzoo.data.annotation_builder import CocoBuilder, ellipse_polygon, rectangle_polygon

LOG = logging.getLogger(__name__)

#: Region attribute names that name a class: the one of them a project has is its class attribute when no
#: ``class_attribute`` is given (see :func:`find_class_attribute`).
CLASS_ATTRIBUTE_NAMES = ("class", "label", "name", "category", "type", "object")


def read_via_metadata(annotations: str) -> tuple[list[dict], list[str]]:
    """The image entries of a VIA json (in the project's image order) and the region attribute names its
    ``_via_attributes`` defines (``[]`` for a plain export).

    Raises:
        FileNotFoundError: no file at ``annotations``.
        ValueError: not a VIA 2.x project or annotation export (named): nothing could be read.
    """
    if not os.path.isfile(annotations):
        raise FileNotFoundError(f"VIA annotation file not found: {annotations}")
    try:
        with open(annotations, encoding="utf-8-sig") as f:  # a byte-order mark is not an error
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{annotations} is not a VIA json: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{annotations} is not a VIA 2.x project or annotation export (not a json object)")
    if "_via_img_metadata" in data:
        metadata = data["_via_img_metadata"]
        attributes = data.get("_via_attributes", {})
        region_names = list(attributes.get("region", {})) if isinstance(attributes, dict) else []
        order = data.get("_via_image_id_list")
    elif "project" in data and "metadata" in data and "file" in data:
        raise ValueError(f"{annotations} is a VIA 3 project; export it from VIA 2.x (or as COCO) instead")
    else:
        metadata, region_names, order = data, [], None
    if not isinstance(metadata, dict) or not all(isinstance(v, dict) and "filename" in v for v in metadata.values()):
        raise ValueError(f"{annotations} is not a VIA 2.x project or annotation export (entries need a 'filename')")
    keys = list(metadata)
    if isinstance(order, list) and set(order) == set(keys):
        keys = order
    return [metadata[key] for key in keys], [str(n) for n in region_names]


def via_to_coco(
    annotations: str,
    images: str | None = None,
    class_names: Sequence[str] | None = None,
    class_attribute: str | None = None,
    image_dir: str | None = None,
    inputs: list[str] | None = None,
) -> tuple[dict, str, dict]:
    """Convert a VIA 2.x project json (or VIA's json export) to a COCO instances dict.

    Args:
        annotations: the VIA json.
        images: the folder the entries' ``filename`` s are relative to (default: the json's folder).
        class_names: the classes, category id ``i + 1`` for ``class_names[i]``; regions of other classes are
            dropped (counted). ``None``: every class found, sorted.
        class_attribute: the region attribute holding the class (regions without it are dropped, counted).
            ``None``: found where unambiguous (:func:`find_class_attribute`), else an error.
        image_dir: a cache folder for images TensorFlow cannot decode as stored (EXIF-rotated, WebP, ...),
            written there upright as PNG; ``None``: such images are skipped (counted).
        inputs: a list the files read (the json, images) are appended to.

    Returns:
        ``(coco, image_root, counts)`` (see :func:`kzoo.data.labelme.labelme_to_coco`); ``image_root`` is
        ``images``.

    Raises:
        FileNotFoundError: ``annotations`` or ``images`` does not exist.
        ValueError: the json is not a VIA 2.x file (named), ``class_names`` is not a list of unique names, or
            the class attribute is ambiguous or not one of the project's (the message lists them).
        kzoo.data.annotation_builder.NoInstancesError: no instance at all.
    """
    entries, region_names = read_via_metadata(annotations)
    images = images if images is not None else os.path.dirname(os.path.abspath(annotations))
    if not os.path.isdir(images):
        raise FileNotFoundError(f"image folder not found: {images}")
    class_attribute = find_class_attribute(entries, region_names, class_attribute, annotations)
    builder = CocoBuilder(f"VIA {annotations}", images, class_names, image_dir, LOG)
    builder.looked = (
        f"the regions of the {len(entries)} images of {os.path.abspath(annotations)} (class attribute "
        f"{class_attribute!r}), images in {os.path.abspath(images)}"
    )
    builder.counts["annotation_files"] = 1
    builder.inputs.append(annotations)
    for entry in entries:
        filename = str(entry["filename"])
        where = f"{annotations}: {filename}"
        image_id = builder.add_image(os.path.join(images, filename), annotations)
        if image_id is None:
            continue
        regions = entry.get("regions") or []
        if isinstance(regions, dict):  # VIA 1.x
            regions = [regions[k] for k in sorted(regions, key=lambda k: (len(str(k)), str(k)))]
        if not isinstance(regions, list):
            builder.problem("malformed_shapes", f"{where}: regions")
            continue
        for index, region in enumerate(regions):
            _add_region(builder, image_id, region, f"{where}: region {index}", class_attribute)
    if inputs is not None:
        inputs.extend(builder.inputs)
    return builder.finish()


def attribute_names(entries: Sequence[dict], region_names: Sequence[str] = ()) -> list[str]:
    """The region attribute names of a project: those its ``_via_attributes`` define, then those its regions
    use, in order of appearance."""
    names = dict.fromkeys(str(n) for n in region_names)
    for entry in entries:
        regions = entry.get("regions") or []
        regions = list(regions.values()) if isinstance(regions, dict) else regions
        for region in regions if isinstance(regions, list) else []:
            attributes = region.get("region_attributes") if isinstance(region, dict) else None
            if isinstance(attributes, dict):
                names.update(dict.fromkeys(str(k) for k in attributes))
    return list(names)


def find_class_attribute(
    entries: Sequence[dict],
    region_names: Sequence[str] = (),
    class_attribute: str | None = None,
    where: str = "the VIA project",
) -> str | None:
    """The region attribute holding the class.

    ``class_attribute`` when given (it must be one of the project's attributes, when it has any). Otherwise only
    an unambiguous one: the project's only attribute, else the only one of :data:`CLASS_ATTRIBUTE_NAMES` among
    them; ``None`` when regions have no attributes at all (every region then lacks the class: dropped, counted).

    Raises:
        ValueError: ``class_attribute`` is not one of the project's attributes, or none was given and several
            could be the class (the message lists them: pass ``class_attribute`` / ``--class-attribute``).
    """
    names = attribute_names(entries, region_names)
    if class_attribute is not None:
        if names and class_attribute not in names:
            raise ValueError(
                f"{where}: the class attribute {class_attribute!r} is not a region attribute of the "
                f"project; its region attributes: {names}"
            )
        return class_attribute
    if len(names) <= 1:
        return names[0] if names else None
    known = [n for n in names if n in CLASS_ATTRIBUTE_NAMES]
    if len(known) == 1:
        return known[0]
    raise ValueError(
        f"{where}: which region attribute holds the class? The regions have several: {names}; name it "
        "with class_attribute (kzoo convert via ... --class-attribute NAME)"
    )


_MISSING = object()


def region_class(attributes: dict | None, class_attribute: str | None):
    """The class a region's ``region_attributes`` give under ``class_attribute`` (a string, or ``None`` when the
    value is not one); ``_MISSING`` when the region has no such attribute."""
    if class_attribute is None or not isinstance(attributes, dict) or class_attribute not in attributes:
        return _MISSING
    value = attributes[class_attribute]
    if isinstance(value, dict):  # a checkbox: {option: true, ...}
        ticked = [option for option, on in value.items() if on]
        return ticked[0] if len(ticked) == 1 else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) else None


def _add_region(builder: CocoBuilder, image_id: int, region, where: str, class_attribute) -> None:
    if not isinstance(region, dict) or not isinstance(region.get("shape_attributes"), dict):
        builder.problem("malformed_shapes", where)
        return
    shape = region["shape_attributes"]
    name = shape.get("name")
    if name not in ("polygon", "rect", "circle", "ellipse"):
        builder.problem("unsupported_shapes", f"{where} ({name})")
        return
    polygon = _shape_polygon(shape)
    if polygon is None:
        builder.problem("malformed_shapes", where)
        return
    if polygon is _NEGATIVE:
        builder.problem("negative_sizes", f"{where} ({name} {_size_text(shape)})")
        return
    label = region_class(region.get("region_attributes"), class_attribute)
    if label is _MISSING:
        attributes = region.get("region_attributes")
        keys = sorted(attributes) if isinstance(attributes, dict) else []
        said = "no region has attributes" if class_attribute is None else f"no {class_attribute!r}; it has {keys}"
        builder.problem("missing_class_attribute", f"{where} ({said})")
        return
    builder.add_instance(image_id, label, [polygon], where)


_NEGATIVE = np.zeros((0, 2))  # a shape of negative size


def _size_text(shape: dict) -> str:
    return ", ".join(f"{k} {shape[k]}" for k in ("width", "height", "r", "rx", "ry") if k in shape)


def _numbers(shape: dict, *keys: str, default: dict | None = None) -> list[float] | None:
    try:
        return [float(shape[key] if key in shape else (default or {})[key]) for key in keys]
    except (KeyError, TypeError, ValueError):
        return None


def _shape_polygon(shape: dict) -> np.ndarray | None:
    """The ``[n, 2]`` polygon of a VIA area shape; ``None`` when it is malformed."""
    name = shape["name"]
    if name == "polygon":
        try:
            x = np.asarray(shape["all_points_x"], np.float64).reshape(-1)
            y = np.asarray(shape["all_points_y"], np.float64).reshape(-1)
        except (KeyError, TypeError, ValueError):
            return None
        return np.stack([x, y], axis=1) if len(x) == len(y) and len(x) else None
    if name == "rect":
        values = _numbers(shape, "x", "y", "width", "height")
        if values is None:
            return None
        left, top, width, height = values
        if width < 0 or height < 0:
            return _NEGATIVE
        return rectangle_polygon(left, top, left + width, top + height)
    if name == "circle":
        values = _numbers(shape, "cx", "cy", "r")
        if values is not None and values[2] < 0:
            return _NEGATIVE
        return None if values is None else _ellipse(values[0], values[1], values[2], values[2], 0.0)
    values = _numbers(shape, "cx", "cy", "rx", "ry", "theta", default={"theta": 0.0})
    if values is not None and (values[2] < 0 or values[3] < 0):
        return _NEGATIVE
    return None if values is None else _ellipse(*values)


def _ellipse(cx: float, cy: float, rx: float, ry: float, theta: float) -> np.ndarray:
    if not all(np.isfinite(v) for v in (cx, cy, rx, ry, theta)):
        return np.array([[cx, cy], [cx + rx, cy], [cx, cy + ry]])  # non-finite: counted by the polygon checks
    return ellipse_polygon(cx, cy, rx, ry, theta)
