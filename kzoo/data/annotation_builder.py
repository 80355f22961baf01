"""What the annotation-tool readers (:mod:`kzoo.data.labelme`, :mod:`kzoo.data.via`, :mod:`kzoo.data.yolo`) share:
a COCO instances dict built image by image, with the polygons checked and the problems counted.

:class:`CocoBuilder` takes image files and instances (a label and polygons in absolute pixel coordinates,
``x`` right, ``y`` down, the tool's own convention: no half-pixel shift) and checks each before anything is
rasterized:

- polygons: numeric, finite (else dropped), at least 3 points not all on one line (else dropped: a self-crossing
  "bow tie" whose signed areas cancel still has a drawn area, and pycocotools fills it), clipped exactly to the
  image rectangle (Sutherland-Hodgman; polygons reaching more than a pixel outside it are counted as a repair),
  dropped when nothing of them lies inside the image (counted once, as outside the image); an instance whose
  polygons fill no pixel when rasterized is dropped;
- labels: a non-empty string, in ``class_names`` when given (else dropped); labels of ``ignore_labels``
  (labelme's ``__ignore__`` and ``_background_``) are ignore regions: written as ``iscrowd: 1`` annotations, one
  per category, so that COCO evaluation ignores detections there whatever their class, and training never makes
  them positives (crowd boxes are left out of matching; see :mod:`kzoo.ops.targets`);
- images: the file exists and decodes strictly (:func:`kzoo.data.images.inspect_image_file`: every pixel, so a
  truncated or corrupt file is skipped, counted, here rather than failing training later), and, where the
  annotations give one, the size matches. One image file annotated by several files (two labelme jsons whose
  ``imagePath`` lead to the same file, a VIA entry listed twice) is one COCO image holding every file's
  instances (merged, counted as ``merged_images`` and logged);
  Images ``tf.io.decode_image`` cannot read as they are (WebP, TIFF, ...) or that carry an EXIF orientation
  (the tools annotate the upright image; TensorFlow decodes the stored pixels) are written upright, as PNG,
  into a cache folder when one is given, and skipped (counted) otherwise.

Each problem drops what it concerns, is counted, and is logged as one warning per kind naming a few of the files
concerned (:class:`kzoo.data.problems.ProblemCounter`, as :func:`kzoo.data.coco_reader.load_coco_instances` counts).
Nothing here raises on bad data, except that a conversion with no instances at all is an error
(:class:`NoInstancesError`, naming where the reader looked, how many files it saw and what it dropped): an empty COCO
json looks like success and trains on nothing.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Sequence

import numpy as np

from kzoo.data.images import DECODABLE_FORMATS
from kzoo.data.problems import ProblemCounter
from kzoo.utils import files

#: The problems a conversion counts (``counts`` of :meth:`CocoBuilder.finish`), as the warnings word them.
PROBLEMS = {
    "malformed_files": "annotation files unreadable or not of the tool's format (skipped)",
    "malformed_shapes": "shapes with missing, non-numeric or ill-formed coordinates (dropped)",
    "unsupported_shapes": "shapes that enclose no area (points, lines) or of an unknown type (dropped)",
    "unlabeled_shapes": "shapes without a class label (dropped)",
    "missing_class_attribute": "regions without the class attribute (dropped)",
    "negative_sizes": "rectangles, circles or ellipses of negative width, height or radius (dropped, not mirrored)",
    "unknown_labels": "shapes of a label not in class_names (dropped)",
    "non_finite_coordinates": "polygons with non-finite coordinates (dropped)",
    "degenerate_polygons": "polygons with under 3 distinct points or no area (dropped)",
    "clipped_polygons": "polygons reaching more than a pixel outside the image (clipped to it)",
    "outside_image": "polygons entirely outside the image (dropped)",
    "empty_masks": "instances whose polygons cover no pixel (dropped)",
    "missing_images": "image files missing (skipped)",
    "corrupt_images": "image files unreadable (skipped)",
    "size_mismatch": "images whose file is not of the size the annotations give (skipped)",
    "needs_cache": "images that must be re-encoded for TensorFlow (EXIF-rotated, or WebP/TIFF/...) while no "
    "cache folder was given (skipped)",
}

#: The counted problems that repair what they concern (kept, changed) rather than drop it.
REPAIRS = ("clipped_polygons",)
#: labelme's labels of regions that are no class: ``__ignore__`` (labelme's own converters leave them out of every
#: class) and ``_background_``; kzoo keeps them as ignore regions (see the module docstring).
IGNORE_LABELS = ("__ignore__", "_background_")


class NoInstancesError(ValueError):
    """A conversion found no instance at all; the message names where it looked, what it saw and what it dropped."""


def spans_area(points: np.ndarray) -> bool:
    """Whether the ``[n, 2]`` points are not all on one line (so a polygon through them can fill pixels, even a
    self-crossing one whose shoelace area is 0)."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if len(points) < 3:
        return False
    offsets = points - points[0]
    far = offsets[np.argmax(np.einsum("ij,ij->i", offsets, offsets))]
    cross = np.abs(offsets[:, 0] * far[1] - offsets[:, 1] * far[0])
    return bool(cross.max() > 1e-9 * float(far @ far))


def clip_polygon(points: np.ndarray, width: float, height: float) -> np.ndarray:
    """The part of the ``[n, 2]`` polygon inside ``[0, width] x [0, height]`` (Sutherland-Hodgman), ``[m, 2]``.

    A concave polygon may come out with zero-width bridges along the border; they cover no pixel.
    """
    points = np.asarray(points, np.float64).reshape(-1, 2)
    edges = ((0, 0.0, True), (0, float(width), False), (1, 0.0, True), (1, float(height), False))
    for axis, bound, keep_above in edges:
        if not len(points):
            break
        inside = points[:, axis] >= bound if keep_above else points[:, axis] <= bound
        if inside.all():
            continue
        out = []
        previous, previous_inside = points[-1], inside[-1]
        for point, point_inside in zip(points, inside):
            if point_inside != previous_inside:
                t = (bound - previous[axis]) / (point[axis] - previous[axis])
                crossing = previous + t * (point - previous)
                crossing[axis] = bound
                out.append(crossing)
            if point_inside:
                out.append(point)
            previous, previous_inside = point, point_inside
        points = np.asarray(out, np.float64).reshape(-1, 2)
    return points


def ellipse_polygon(cx: float, cy: float, rx: float, ry: float, theta: float = 0.0) -> np.ndarray:
    """A ``[n, 2]`` polygon of an ellipse (a circle when ``rx == ry``) rotated by ``theta`` radians (from the
    ``x`` axis towards ``y``, i.e. clockwise on screen), with enough vertices to stay within half a pixel of it
    (at least 32)."""
    radius = max(abs(rx), abs(ry))
    n = 32
    if radius > 0.5:
        n = int(min(max(math.ceil(math.pi / math.acos(1.0 - 0.5 / radius)), 32), 720))
    angles = np.arange(n) * (2.0 * math.pi / n)
    x, y = rx * np.cos(angles), ry * np.sin(angles)
    cos, sin = math.cos(theta), math.sin(theta)
    return np.stack([cx + x * cos - y * sin, cy + x * sin + y * cos], axis=1)


def rectangle_polygon(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """The ``[4, 2]`` polygon of the axis-aligned rectangle with corners ``(x0, y0)`` and ``(x1, y1)``."""
    xmin, xmax, ymin, ymax = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    return np.array([[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax]], np.float64)


def relative_name(path: str, root: str) -> str:
    """``path`` relative to ``root`` (with ``..`` where needed, ``/`` separators), or absolute if impossible."""
    try:
        return os.path.relpath(path, root).replace(os.sep, "/")
    except ValueError:  # another drive (Windows)
        return os.path.abspath(path)


class CocoBuilder:
    """A COCO instances dict, built image by image from one annotation tool's files.

    Args:
        source: what the warnings name, e.g. ``"labelme /data/annotations"``.
        image_root: the folder the ``file_name`` s will be relative to.
        class_names: the classes, label ``i + 1`` for ``class_names[i]`` (others dropped, counted);
            ``None``: every label seen, sorted.
        ignore_labels: labels of ignore regions (see the module docstring), never classes.
        cache_dir: where images that must be re-encoded are written (see the module docstring); ``None``:
            such images are skipped (counted).
        log: the logger of the warnings.
    """

    def __init__(
        self,
        source: str,
        image_root: str,
        class_names: Sequence[str] | None = None,
        cache_dir: str | None = None,
        log: logging.Logger | None = None,
        ignore_labels: Sequence[str] = (),
    ) -> None:
        self.ignore_labels = tuple(ignore_labels)
        if class_names is not None:
            class_names = [str(name) for name in class_names if str(name) not in self.ignore_labels]
            class_names = [str(name) for name in class_names]
            if not class_names or len(set(class_names)) != len(class_names) or not all(class_names):
                raise ValueError(f"class_names must be unique non-empty names, got {class_names}")
        self.source = source
        self.image_root = os.path.abspath(image_root)
        self.class_names = class_names
        self.cache_dir = None if cache_dir is None else os.path.abspath(cache_dir)
        self.log = log or logging.getLogger(__name__)
        self.images: list[dict] = []
        self.instances: list[tuple[int, str, list[list[float]], list[float], float]] = []
        self.ignore_regions: list[tuple[int, list[list[float]], list[float], float]] = []
        self.labels_seen: set[str] = set()
        #: the problems (:data:`PROBLEMS`), and beside them what was read; ``counts`` is its ``counts``
        self.problems = ProblemCounter(
            PROBLEMS, ("annotation_files", "images", "instances", "ignore_regions", "merged_images")
        )
        self.counts = self.problems.counts
        #: what the readers looked for, for the message of an empty result (e.g. ``"*.json under /data"``)
        self.looked = source
        #: every file the conversion read (annotation files, data yamls, images), to refuse writing over one
        self.inputs: list[str] = []
        self._image_ids: dict[str, int] = {}  # real path of an image file -> its id
        self._image_sources: dict[int, str] = {}  # image id -> the first annotation file naming it

    # ------------------------------------------------------------------------------------------ problems

    def problem(self, key: str, where: str, count: int = 1) -> None:
        """Count ``count`` problems of kind ``key`` (one of :data:`PROBLEMS`) at ``where`` (a file, a shape)."""
        self.problems.add(key, where, count)

    # -------------------------------------------------------------------------------------------- images

    def add_image(self, path: str, where: str, size: tuple[int, int] | None = None) -> int | None:
        """Add the image file ``path``; its id, or ``None`` when it is skipped (counted).

        Args:
            path: the image file.
            where: what a warning names (the annotation file that refers to it).
            size: ``(height, width)`` the annotations give, checked against the (upright) image; ``None``: any.
        """
        from kzoo.data.images import inspect_image_file

        if not os.path.exists(path):
            self.problem("missing_images", f"{where}: {path}")
            return None
        real = os.path.realpath(path)
        if real in self._image_ids:  # annotated in several files: one image, every file's instances
            image_id = self._image_ids[real]
            image = self.images[image_id - 1]
            if size is not None and tuple(size) != (image["height"], image["width"]):
                self.problem(
                    "size_mismatch",
                    f"{where}: {path} is {image['height']}x{image['width']}, the annotations say {size[0]}x{size[1]}",
                )
                return None
            self.problems.add("merged_images", f"{path} ({self._image_sources[image_id]} and {where})")
            return image_id
        self.inputs.append(path)
        try:
            info = inspect_image_file(path)
        except (OSError, ValueError):  # truncated, corrupt, not an image, not a regular file
            self.problem("corrupt_images", f"{where}: {path}")
            return None
        image_format, height, width, orientation = info.format, info.height, info.width, info.orientation
        if size is not None and tuple(size) != (height, width):
            said = f"{size[0]}x{size[1]}"
            self.problem("size_mismatch", f"{where}: {path} is {height}x{width}, the annotations say {said}")
            return None
        if image_format not in DECODABLE_FORMATS or orientation not in (1, None):
            if self.cache_dir is None:
                self.problem("needs_cache", f"{where}: {path}")
                return None
            cached = self._cached_upright(path, where)
            if cached is None:
                return None
            path = cached
        image_id = self._append_image(path, height, width)
        self._image_ids[real] = image_id
        self._image_sources[image_id] = where
        return image_id

    def add_image_bytes(self, data: bytes, name: str, where: str, size: tuple[int, int] | None = None) -> int | None:
        """Add an image given as encoded bytes (e.g. embedded in an annotation file): written upright, as PNG,
        to ``<cache_dir>/<name>.png``; its id, or ``None`` when it is skipped (counted)."""
        if self.cache_dir is None:
            self.problem("needs_cache", f"{where}: an embedded image")
            return None
        from kzoo.data.images import decode_image_bytes

        try:
            pixels = decode_image_bytes(data, name=where)
        except ValueError:
            self.problem("corrupt_images", f"{where}: the embedded image")
            return None
        height, width = pixels.shape[:2]
        if size is not None and tuple(size) != (height, width):
            self.problem(
                "size_mismatch",
                f"{where}: the embedded image is {height}x{width}, the annotations say {size[0]}x{size[1]}",
            )
            return None
        target = os.path.join(self.cache_dir, f"{name}.png")
        self._write_png(pixels, target)
        return self._append_image(target, height, width)

    def _append_image(self, path: str, height: int, width: int) -> int:
        image_id = len(self.images) + 1
        self.images.append(
            {
                "id": image_id,
                "file_name": relative_name(path, self.image_root),
                "height": int(height),
                "width": int(width),
            }
        )
        return image_id

    def _cache_name(self, path: str) -> str:
        relative = os.path.relpath(os.path.abspath(path), self.image_root)
        parts = ["_up" if part == ".." else part for part in os.path.normpath(relative).split(os.sep) if part]
        stem, _ = os.path.splitext(os.path.join(*parts))
        return stem

    def _cached_upright(self, path: str, where: str) -> str | None:
        """The upright PNG of ``path`` in the cache (written unless up to date); ``None`` when unreadable."""
        from kzoo.data.images import read_image_file

        assert self.cache_dir is not None  # the caller checks
        try:
            target = os.path.join(self.cache_dir, self._cache_name(path) + ".png")
        except ValueError:  # another drive (Windows)
            target = os.path.join(self.cache_dir, os.path.splitext(os.path.basename(path))[0] + ".png")
        if os.path.isfile(target) and os.path.getmtime(target) >= os.path.getmtime(path):
            return target
        try:
            _, pixels = read_image_file(path)
        except (OSError, ValueError):
            self.problem("corrupt_images", f"{where}: {path}")
            return None
        self._write_png(pixels, target)
        return target

    @staticmethod
    def _write_png(pixels: np.ndarray, target: str) -> None:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        data = buffer.getvalue()
        if os.path.isfile(target):
            with open(target, "rb") as f:
                if f.read() == data:
                    return
        files.write_bytes(target, data)

    # ----------------------------------------------------------------------------------------- instances

    def check_label(self, label, where: str) -> str | None:
        """The label as a class name, or ``None`` when it is empty or not in ``class_names`` (counted)."""
        if label is None or (isinstance(label, str) and not label.strip()) or isinstance(label, (dict, list)):
            self.problem("unlabeled_shapes", where)
            return None
        label = str(label).strip()
        if label in self.ignore_labels:
            return label
        if self.class_names is not None and label not in self.class_names:
            self.problem("unknown_labels", f"{where}: {label!r}")
            return None
        return label

    def check_polygon(self, points, image_id: int, where: str) -> list[float] | None:
        """A polygon (``[n, 2]`` points or ``[x0, y0, x1, y1, ...]``) checked and clipped to the image, as a
        COCO polygon; ``None`` when it is dropped (counted)."""
        image = self.images[image_id - 1]
        width, height = image["width"], image["height"]
        try:
            values = np.asarray(points, np.float64)
        except (TypeError, ValueError):
            self.problem("malformed_shapes", where)
            return None
        if values.size % 2 or values.size == 0 or (values.ndim == 2 and values.shape[1] != 2) or values.ndim > 2:
            self.problem("malformed_shapes", where)
            return None
        values = values.reshape(-1, 2)
        if not np.all(np.isfinite(values)):
            self.problem("non_finite_coordinates", where)
            return None
        if len(np.unique(values, axis=0)) < 3 or not spans_area(values):
            self.problem("degenerate_polygons", where)
            return None
        clipped = clip_polygon(values, width, height)
        if len(clipped):  # drop repeated vertices the clipping made
            keep = np.any(clipped != np.roll(clipped, 1, axis=0), axis=1)
            clipped = clipped[keep] if keep.any() else clipped[:1]
        if len(clipped) < 3 or not spans_area(clipped):
            self.problem("outside_image", where)
            return None
        if np.any(values < -1.0) or np.any(values[:, 0] > width + 1.0) or np.any(values[:, 1] > height + 1.0):
            self.problem("clipped_polygons", where)
        return [float(v) for v in clipped.reshape(-1)]

    def add_instance(self, image_id: int, label, polygons: Sequence, where: str) -> bool:
        """Add one instance of ``label`` made of ``polygons`` (each as :meth:`check_polygon` takes it) to image
        ``image_id``; ``False`` when it is dropped (counted; a label's problem is counted once, an instance
        whose polygons are all dropped is counted by its polygons' problems)."""
        label = self.check_label(label, where)
        if label is None:
            return False
        if label not in self.ignore_labels:
            self.labels_seen.add(label)
        kept = []
        for index, polygon in enumerate(polygons):
            checked = self.check_polygon(polygon, image_id, where if len(polygons) == 1 else f"{where} part {index}")
            if checked is not None:
                kept.append(checked)
        if not kept:
            return False
        image = self.images[image_id - 1]
        area = _mask_area(kept, image["height"], image["width"])
        if area <= 0:
            self.problem("empty_masks", where)
            return False
        points = np.concatenate([np.reshape(p, (-1, 2)) for p in kept])
        (xmin, ymin), (xmax, ymax) = points.min(axis=0), points.max(axis=0)
        bbox = [float(xmin), float(ymin), float(xmax - xmin), float(ymax - ymin)]
        if label in self.ignore_labels:
            self.ignore_regions.append((image_id, kept, bbox, area))
            return True
        self.instances.append((image_id, label, kept, bbox, area))
        return True

    # -------------------------------------------------------------------------------------------- result

    def finish(self) -> tuple[dict, str, dict]:
        """``(coco, image_root, counts)``: the COCO dict, the folder its ``file_name`` s are relative to, and
        ``annotation_files``, ``images``, ``instances`` and every problem of :data:`PROBLEMS` counted (each
        problem also logged as one warning)."""
        names = self.class_names if self.class_names is not None else sorted(self.labels_seen)
        category_id = {name: index + 1 for index, name in enumerate(names)}
        annotations = [
            {
                "id": index + 1,
                "image_id": image_id,
                "category_id": category_id[label],
                "segmentation": polygons,
                "bbox": bbox,
                "area": area,
                "iscrowd": 0,
            }
            for index, (image_id, label, polygons, bbox, area) in enumerate(self.instances)
        ]
        categories = [{"id": index + 1, "name": name, "supercategory": ""} for index, name in enumerate(names)]
        self.counts["images"] = len(self.images)
        self.counts["instances"] = len(annotations)
        self.counts["ignore_regions"] = len(self.ignore_regions)
        for image_id, polygons, bbox, area in self.ignore_regions:  # one crowd copy per category
            for category in categories:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": category["id"],
                        "segmentation": polygons,
                        "bbox": bbox,
                        "area": area,
                        "iscrowd": 1,
                    }
                )
        self.problems.warn(self.log, self.source)
        if self.counts["merged_images"]:
            self.log.warning(
                "%s: %d images annotated in several files, merged into one image each (their "
                "instances together), e.g. %s",
                self.source,
                self.counts["merged_images"],
                self.problems.examples["merged_images"],
            )
        if not self.counts["instances"]:
            raise NoInstancesError(self.empty_message())
        coco = {"images": list(self.images), "annotations": annotations, "categories": categories}
        return coco, self.image_root, dict(self.counts)

    def empty_message(self) -> str:
        """Why a conversion found no instance: where it looked, what it saw and what it dropped."""
        dropped = self.problems.dropped()
        seen = f"{self.counts['annotation_files']} annotation files and {len(self.images)} readable images seen; " + (
            "dropped: " + "; ".join(dropped) if dropped else "they hold no shapes"
        )
        return f"{self.source}: no instances found (looked for {self.looked}); {seen}"


def _mask_area(polygons: list[list[float]], height: int, width: int) -> float:
    """The pixel count of the union of (clipped) polygons, as pycocotools rasterizes them."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    return float(mask_utils.area(rle))
