"""Instance annotations made with labelme, VGG Image Annotator 2.x or YOLO segmentation tools, read as COCO, each
tool found in one registry (:data:`TOOLS`: a tool's name -> its reader and the options it takes).

Each tool's files become a COCO instances dict (polygon segmentations, ``iscrowd`` 0, category ids 1..K in
class order; :mod:`kzoo.data.labelme`, :mod:`kzoo.data.via`, :mod:`kzoo.data.yolo`), which
:func:`kzoo.data.coco_reader.load_coco_instances` then loads like any COCO json, so the pipeline and the evaluation
take it unchanged. The registry serves both users of the tools, ``kzoo convert`` and the ``data.source`` of a
training config:

- :func:`annotation_tool_to_coco`: the COCO dict, the folder its ``file_name`` s are relative to, the counts;
- :func:`load_annotation_tool_instances`: a :class:`kzoo.data.coco_reader.CocoInstances` for the pipeline (its
  :meth:`~kzoo.data.coco_reader.CocoInstances.ground_truth` is the COCO dict for the evaluation);
- :func:`write_coco_from_tool`: the COCO json on disk (``kzoo convert``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

from kzoo.data.annotation_builder import PROBLEMS
from kzoo.data.coco_reader import CocoInstances, load_coco_instances
from kzoo.data.labelme import labelme_to_coco
from kzoo.data.options import ANNOTATION_TOOLS
from kzoo.data.via import via_to_coco
from kzoo.data.yolo import yolo_to_coco
from kzoo.utils import files


@dataclasses.dataclass(frozen=True)
class AnnotationTool:
    """One annotation tool of the registry.

    Attributes:
        name: the tool's name, as ``data.source`` and ``kzoo convert`` take it.
        convert: ``(annotations, images, class_names, cache_dir, inputs, **options) -> (coco, image_root,
            counts)`` (see :func:`annotation_tool_to_coco`).
        needs_images: whether a training config must name the image folders (``data.train_images``,
            ``data.eval_images``); labelme's files lead to their images.
        options: the tool's own options, passed to ``convert`` by name (VIA's ``class_attribute``, YOLO's
            ``yolo_data_yaml``).
    """

    name: str
    convert: Callable[..., tuple[dict, str, dict]]
    needs_images: bool = True
    options: tuple[str, ...] = ()


def _labelme(annotations, images, class_names, cache_dir, inputs):
    return labelme_to_coco(annotations, class_names, cache_dir, images=images, inputs=inputs)


def _via(annotations, images, class_names, cache_dir, inputs, class_attribute=None):
    return via_to_coco(annotations, images, class_names, class_attribute, cache_dir, inputs=inputs)


def _yolo(annotations, images, class_names, cache_dir, inputs, yolo_data_yaml=None):
    if images is None:
        raise ValueError("YOLO labels need their images folder (images=...)")
    return yolo_to_coco(annotations, images, class_names, yolo_data_yaml, cache_dir, inputs=inputs)


#: The annotation tools by name (the names of :data:`kzoo.data.options.ANNOTATION_TOOLS`, in that order).
TOOLS: dict[str, AnnotationTool] = {
    tool.name: tool
    for tool in (
        AnnotationTool("labelme", _labelme, needs_images=False),
        AnnotationTool("via", _via, options=("class_attribute",)),
        AnnotationTool("yolo", _yolo, options=("yolo_data_yaml",)),
    )
}
if tuple(TOOLS) != ANNOTATION_TOOLS:  # the config's choices are the registry's names
    raise ImportError(f"kzoo.data.options.ANNOTATION_TOOLS {ANNOTATION_TOOLS} differs from the registry {tuple(TOOLS)}")


def annotation_tool(name: str) -> AnnotationTool:
    """The registered tool ``name``; ValueError naming the tools for another name."""
    if name not in TOOLS:
        raise ValueError(f"unknown annotation tool {name!r}; choose one of {ANNOTATION_TOOLS}")
    return TOOLS[name]


def annotation_tool_to_coco(
    source: str,
    annotations: str,
    images: str | None = None,
    class_names: Sequence[str] | None = None,
    yolo_data_yaml: str | None = None,
    cache_dir: str | None = None,
    class_attribute: str | None = None,
    inputs: list[str] | None = None,
) -> tuple[dict, str, dict]:
    """Convert one annotation tool's files to a COCO instances dict.

    Args:
        source: a tool of :data:`TOOLS`: ``"labelme"``, ``"via"`` or ``"yolo"``.
        annotations: labelme: a folder of json files (or one); VIA: the project (or export) json; YOLO: the
            labels folder.
        images: labelme: a folder to look for images in (by name) where ``imagePath`` does not lead to one;
            VIA: the folder of the ``filename`` s (default: the json's folder); YOLO: the images folder
            (required).
        class_names: the classes in label order (category id ``i + 1`` for ``class_names[i]``; other labels
            dropped, counted); ``None``: labelme / VIA: every label found, sorted; YOLO: the ``data.yaml`` names
            in index order. YOLO without ``yolo_data_yaml``: the name of class index ``i``.
        yolo_data_yaml: YOLO's ``data.yaml`` (its ``names``).
        cache_dir: where images are written that the pipeline could not read otherwise (labelme ``imageData``
            without a file; EXIF-rotated, WebP, TIFF, ... images, written upright as PNG); ``None``: such
            images are skipped (counted).
        class_attribute: VIA: the region attribute holding the class (default: the only one that can be, see
            :func:`kzoo.data.via.find_class_attribute`; several candidates are an error listing them).
        inputs: a list the files read (annotation files, ``data.yaml``, images) are appended to.

    Returns:
        ``(coco, image_root, counts)``: the COCO dict, the folder its ``file_name`` s are relative to, and
        ``annotation_files``, ``images``, ``instances`` and the problems of
        :data:`kzoo.data.annotation_builder.PROBLEMS` (each also logged as one warning naming files).

    Raises:
        FileNotFoundError: a file or folder given does not exist.
        ValueError: an unknown ``source``, no YOLO class names, a VIA json that is not one (named), or an
            ambiguous VIA class attribute.
        kzoo.data.annotation_builder.NoInstancesError: no instance at all (the message says where the reader
            looked, how many files it saw and what it dropped).
    """
    tool = annotation_tool(source)
    if class_attribute is not None and "class_attribute" not in tool.options:
        raise ValueError(f"class_attribute ({class_attribute!r}) is for VIA projects, not {source}")
    given = {"class_attribute": class_attribute, "yolo_data_yaml": yolo_data_yaml}
    options = {key: given[key] for key in tool.options}
    return tool.convert(annotations, images, class_names, cache_dir, inputs, **options)


def load_annotation_tool_instances(
    source: str,
    annotations: str,
    images: str | None,
    class_names: Sequence[str] | None = None,
    yolo_data_yaml: str | None = None,
    skip_empty: bool = False,
    check_images: str = "header",
    cache_dir: str | None = None,
    class_attribute: str | None = None,
) -> CocoInstances:
    """Load one annotation tool's files as :func:`kzoo.data.coco_reader.load_coco_instances` loads a COCO json.

    Converts (:func:`annotation_tool_to_coco`, same arguments) and loads the COCO dict. The result's
    ``annotation_file`` is ``""``; its ``counts`` hold the loader's counts plus the conversion's (those
    not already there, e.g. ``unknown_labels``, ``clipped_polygons``, ``annotation_files``). For the
    evaluation's ground truth use the (possibly truncated) result's
    :meth:`~kzoo.data.coco_reader.CocoInstances.ground_truth`.

    Args:
        skip_empty, check_images: as :func:`kzoo.data.coco_reader.load_coco_instances`.
    """
    coco, image_root, conversion_counts = annotation_tool_to_coco(
        source, annotations, images, class_names, yolo_data_yaml, cache_dir, class_attribute
    )
    loaded = load_coco_instances(coco, image_root, skip_empty=skip_empty, check_images=check_images)
    counts = dict(loaded.counts)
    for key, value in conversion_counts.items():
        if key in counts and key in PROBLEMS:  # the same kind of problem at both steps (e.g. missing_images)
            counts[key] += value
        counts.setdefault(key, value)
    return CocoInstances(loaded.records, loaded.categories, counts, loaded.annotation_file)


def write_coco_from_tool(
    source: str,
    annotations: str,
    output_json: str,
    images: str | None = None,
    class_names: Sequence[str] | None = None,
    yolo_data_yaml: str | None = None,
    cache_dir: str | None = None,
    class_attribute: str | None = None,
) -> dict:
    """Convert one annotation tool's files (see :func:`annotation_tool_to_coco`) and write the COCO json
    (atomically, ``0644``), for ``kzoo convert labelme|via|yolo SRC --output instances.json``.

    Args:
        output_json: the json to write.
        cache_dir: as :func:`annotation_tool_to_coco`; default: ``<output_json without .json>_images`` beside
            it (created only when an image must be written).

    Returns:
        A summary: ``output``, ``image_dir`` (the folder the json's ``file_name`` s are relative to: train on
        the json with this image folder), ``images``, ``instances``, ``categories`` (names, in label order),
        ``annotation_files``, ``merged_images`` (how many times an image already annotated in another file was
        met again: its instances were merged into that image), ``ignore_regions`` (labelme's ``__ignore__`` /
        ``_background_`` regions, written as crowd annotations) and ``problems`` (the non-zero problem counts,
        see :data:`kzoo.data.annotation_builder.PROBLEMS`; those of ``REPAIRS`` were kept, repaired).

    Raises:
        ValueError: ``output_json`` is one of the conversion's inputs (an annotation file, the ``data.yaml``,
            an image, or the annotations folder): nothing is written.
        The errors of :func:`annotation_tool_to_coco` (nothing is written).
    """
    given = [("the annotations", annotations), ("the images folder", images), ("the data yaml", yolo_data_yaml)]
    refuse_output_over_input(output_json, [(what, path) for what, path in given if path])
    if cache_dir is None:
        cache_dir = os.path.splitext(os.path.abspath(output_json))[0] + "_images"
    inputs: list[str] = []
    coco, image_root, counts = annotation_tool_to_coco(
        source, annotations, images, class_names, yolo_data_yaml, cache_dir, class_attribute, inputs
    )
    refuse_output_over_input(output_json, [("an input file", path) for path in inputs])
    files.write_json(output_json, coco, indent=None)
    return {
        "output": os.fspath(output_json),
        "image_dir": image_root,
        "images": counts["images"],
        "instances": counts["instances"],
        "categories": [c["name"] for c in coco["categories"]],
        "annotation_files": counts["annotation_files"],
        "merged_images": counts.get("merged_images", 0),
        "ignore_regions": counts.get("ignore_regions", 0),
        "problems": {key: counts[key] for key in PROBLEMS if counts[key]},
    }


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_output_over_input(output: str, inputs: Sequence[tuple[str, str]]) -> None:
    """A ``ValueError`` naming ``output`` when it is one of ``inputs`` (``(what, path)`` pairs), compared as the
    same file (``os.path.samefile``: links, hard links) where both exist, as resolved real paths otherwise."""
    output = os.fspath(output)
    for what, path in inputs:
        if _same_file(output, os.fspath(path)):
            raise ValueError(
                f"refusing to write {output}: it is {what} of this conversion ({path}), which writing "
                "it would overwrite; choose another output file"
            )
