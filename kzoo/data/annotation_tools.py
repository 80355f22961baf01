"""Instance annotations made with labelme, VGG Image Annotator 2.x or YOLO segmentation tools, read as COCO.

Each tool's files become a COCO instances dict (polygon segmentations, ``iscrowd`` 0, category ids 1..K in
class order; :mod:`kzoo.data.labelme`, :mod:`kzoo.data.via`, :mod:`kzoo.data.yolo`), which
:func:`kzoo.data.coco.load_coco_instances` then loads like any COCO json, so the pipeline and the evaluation
take it unchanged:

- :func:`annotation_tool_to_coco`: the COCO dict, the folder its ``file_name`` s are relative to, the counts;
- :func:`load_annotation_tool_instances`: a :class:`kzoo.data.coco.CocoInstances` for the pipeline;
  :func:`coco_ground_truth` gives its COCO dict back for :class:`kzoo.evaluation.coco.CocoEvaluator`;
- :func:`write_coco_from_tool`: the COCO json on disk (``kzoo convert``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from kzoo.data.annotation_builder import PROBLEMS
from kzoo.data.coco import CocoInstances, load_coco_instances
from kzoo.utils import files

SOURCES = ("labelme", "via", "yolo")


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
        source: ``"labelme"``, ``"via"`` or ``"yolo"``.
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
    if class_attribute is not None and source != "via":
        raise ValueError(f"class_attribute ({class_attribute!r}) is for VIA projects, not {source}")
    if source == "labelme":
        from kzoo.data.labelme import labelme_to_coco

        return labelme_to_coco(annotations, class_names, cache_dir, images=images, inputs=inputs)
    if source == "via":
        from kzoo.data.via import via_to_coco

        return via_to_coco(annotations, images, class_names, class_attribute, cache_dir, inputs=inputs)
    if source == "yolo":
        from kzoo.data.yolo import yolo_to_coco

        if images is None:
            raise ValueError("YOLO labels need their images folder (images=...)")
        return yolo_to_coco(annotations, images, class_names, yolo_data_yaml, cache_dir, inputs=inputs)
    raise ValueError(f"unknown annotation tool {source!r}; choose one of {SOURCES}")


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
    """Load one annotation tool's files as :func:`kzoo.data.coco.load_coco_instances` loads a COCO json.

    Converts (:func:`annotation_tool_to_coco`, same arguments) and loads the COCO dict. The result's
    ``annotation_file`` is ``""``; its ``counts`` hold the loader's counts plus the conversion's (those
    not already there, e.g. ``unknown_labels``, ``clipped_polygons``, ``annotation_files``). For the
    evaluation's ground truth use :func:`coco_ground_truth` of the (possibly truncated) result.

    Args:
        skip_empty, check_images: as :func:`kzoo.data.coco.load_coco_instances`.
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


def coco_ground_truth(instances: CocoInstances) -> dict:
    """The COCO instances dict of exactly what ``instances`` holds (its records, in order; boxes as
    loaded, areas as pycocotools rasterizes the segmentations), for
    :class:`kzoo.evaluation.coco.CocoEvaluator` / :func:`kzoo.evaluation.coco.evaluate_coco`."""
    from pycocotools import mask as mask_utils

    images, annotations = [], []
    for record in instances.records:
        images.append(
            {"id": record.image_id, "file_name": record.file_path, "height": record.height, "width": record.width}
        )
        classes = record.classes.astype(np.int64)
        category_ids = instances.categories.to_category_id(classes) if len(classes) else []
        for i, segmentation in enumerate(record.segmentations):
            ymin, xmin, ymax, xmax = (float(v) for v in record.boxes[i])
            if isinstance(segmentation, list):
                rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, record.height, record.width))
            elif isinstance(segmentation.get("counts"), list):
                rle = mask_utils.frPyObjects(segmentation, record.height, record.width)
            else:
                counts = segmentation["counts"]
                rle = {
                    "size": list(segmentation["size"]),
                    "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
                }
            annotations.append(
                {
                    "id": int(record.annotation_ids[i]),
                    "image_id": record.image_id,
                    "category_id": int(category_ids[i]),
                    "segmentation": segmentation,
                    "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                    "area": float(mask_utils.area(rle)),
                    "iscrowd": int(record.is_crowd[i]),
                }
            )
    return {"images": images, "annotations": annotations, "categories": instances.categories.to_coco()}


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
