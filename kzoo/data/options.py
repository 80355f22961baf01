"""The data options every layer checks alike, each rule in one place: the choices of the data config keys (the
sources, ``check_images``) and the augmentation rule.

:mod:`kzoo.config` takes its choices and rules from here and loads without TensorFlow (the CLI checks a config
before TensorFlow loads), so this module imports nothing but the standard library. The modules that act on a choice
(:mod:`kzoo.data.classification`, :mod:`kzoo.data.annotation_tools`, :mod:`kzoo.data.coco_reader`) import it from
here too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "ANNOTATION_TOOLS",
    "CHECK_IMAGES",
    "CLASSIFICATION_SOURCES",
    "DETECTION_SOURCES",
    "augmentation_problem",
    "check_resize_rule",
]

#: ``data.source`` of a classification config (:func:`kzoo.data.classification.load_classification`).
CLASSIFICATION_SOURCES = ("shapes", "fashion_mnist", "tfds")
#: The annotation tools whose files are read as COCO (the registry :data:`kzoo.data.annotation_tools.TOOLS`).
ANNOTATION_TOOLS = ("labelme", "via", "yolo")
#: ``data.source`` of an instance-segmentation config: the built-in shapes, a COCO json, TFDS, or a tool's files.
DETECTION_SOURCES = ("shapes", "coco", "tfds", *ANNOTATION_TOOLS)
#: ``check_images`` of the COCO reader (:func:`kzoo.data.coco_reader.load_coco_instances`): the file exists; also
#: its header (decodable format, the json's size); also every pixel.
CHECK_IMAGES = ("exists", "header", "full")


def _finite(value) -> bool:
    """A finite number (a NumPy one too; not a bool or a string)."""
    if isinstance(value, (bool, str, bytes)):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def augmentation_problem(
    scale_jitter: Sequence[float] | None = None,
    min_box_size: float = 2.0,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    hue: float = 0.0,
) -> tuple[str, str] | None:
    """The first training-augmentation value out of its range, as ``(name, what it must be)``, or ``None``.

    The rule of :class:`kzoo.config.DetectionDataConfig` (which names the ``data.`` key) and of
    :func:`kzoo.data.detection_pipeline.make_detection_pipeline` (which names the argument):

    - ``scale_jitter``: ``None``, or ``(low, high)``, finite, ``0 < low <= high``;
    - ``min_box_size``: a finite number ``>= 0``;
    - ``brightness``, ``contrast``, ``saturation``: in ``[0, 1]``; ``hue``: in ``[0, 0.5]`` (NaN fails).

    Args:
        scale_jitter, min_box_size, brightness, contrast, saturation, hue: as the pipeline takes them.

    Returns:
        ``(name, message)``: e.g. ``("hue", "must be in [0, 0.5], got 0.7")``; ``None`` when every value is fine.
    """
    if scale_jitter is not None:
        values = list(scale_jitter)
        if len(values) != 2 or not all(_finite(v) and float(v) > 0 for v in values) or values[0] > values[1]:
            return "scale_jitter", f"must be [low, high] with 0 < low <= high (finite), got {values}"
    if not _finite(min_box_size) or float(min_box_size) < 0:
        return "min_box_size", f"must be a finite number >= 0, got {min_box_size!r}"
    for name, value, high in (("brightness", brightness, 1.0), ("contrast", contrast, 1.0)) + (
        ("saturation", saturation, 1.0),
        ("hue", hue, 0.5),
    ):
        if not _finite(value) or not 0.0 <= float(value) <= high:
            return name, f"must be in [0, {high:g}], got {value!r}"
    return None


def check_resize_rule(min_size: int, max_size: int) -> None:
    """ValueError unless ``1 <= min_size <= max_size``: the resize rule (:mod:`kzoo.ops.resize`: the short side to
    ``min_size`` unless the long side would pass ``max_size``) of the model config and of the detection pipeline."""
    if not 1 <= min_size <= max_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
