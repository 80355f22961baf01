"""The instance-segmentation task (Mask R-CNN): model, data, train step, evaluation, export and predict wiring.

Per step each replica computes :meth:`MaskRCNNModel.training_losses` on its share of the global batch (targets
sampled with a stateless seed from ``(train.seed, step)``), the gradients are all-reduced, clipped by their
global norm, and applied by the optimizer of ``config.train`` (see :func:`kzoo.training.loop.build_optimizer`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kzoo.applications.mask_rcnn import MaskRCNN
from kzoo.applications.weights import weights_file
from kzoo.config import MaskRCNNExperimentConfig
from kzoo.data.annotation_builder import NoInstancesError
from kzoo.data.annotation_tools import annotation_tool, load_annotation_tool_instances
from kzoo.data.coco_categories import COCO_CATEGORIES, CocoCategories
from kzoo.data.coco_reader import load_coco_instances
from kzoo.data.coco_validation import validate_coco_dict
from kzoo.data.coco_writer import coco_dict
from kzoo.data.decode_errors import explain_image_error, naming_undecodable_images
from kzoo.data.detection_pipeline import make_detection_pipeline
from kzoo.data.detection_sources import count_instances, load_tfds_instances
from kzoo.data.images import read_image_file
from kzoo.data.options import ANNOTATION_TOOLS
from kzoo.data.shapes import make_shapes_instances
from kzoo.evaluation.coco import CocoEvaluator, check_detection_boxes
from kzoo.evaluation.detection import evaluate_mask_rcnn
from kzoo.export.serving import DEFAULT_MAX_IMAGE_PIXELS
from kzoo.models.mask_rcnn import LOSS_NAMES, MaskRCNNModel
from kzoo.models.weight_files import load_weights_file, load_weights_transferring
from kzoo.ops.resize import padded_size
from kzoo.tasks.base import Table, Task, sharded_by_data
from kzoo.tasks.registry import register_task
from kzoo.training import loop
from kzoo.utils import files


@dataclasses.dataclass
class DetectionData:
    """The training source, the evaluation source with its COCO ground truth, and the categories."""

    train: Any
    eval: Any
    ground_truth: Any
    categories: CocoCategories
    num_train: int | None


def load_detection_data(config: MaskRCNNExperimentConfig) -> DetectionData:
    """The sources of ``config.data`` (see :class:`kzoo.config.DetectionDataConfig`)."""
    data = config.data
    if data.source == "shapes":
        shapes: dict[str, Any] = dict(
            image_size=data.shapes_image_size, max_instances=data.shapes_max_instances, classes=data.shapes_classes
        )
        train_set = make_shapes_instances(data.train_examples or 2000, seed=config.train.seed, **shapes)
        eval_set = make_shapes_instances(data.eval_examples or 200, seed=config.train.seed + 1, **shapes)
        categories = CocoCategories.from_names(data.shapes_classes)
        return DetectionData(train_set, eval_set, coco_dict(eval_set, categories), categories, len(train_set))
    if data.source == "coco" or data.source in ANNOTATION_TOOLS:
        return _annotation_file_data(config)
    if not data.tfds_name:
        raise ValueError("data.source 'tfds' needs data.tfds_name (e.g. coco/2017_panoptic)")
    train = load_tfds_instances(data.tfds_name, data.train_split, data.data_dir, skip_empty=data.skip_empty)
    evaluation = load_tfds_instances(data.tfds_name, data.eval_split, data.data_dir)
    eval_examples = [
        {
            "image": e["image"],
            "boxes": e["boxes"],
            "classes": e["classes"],
            "masks": e["masks"].astype(bool),
            "is_crowd": e["is_crowd"],
            "image_id": int(e["image_id"]),
        }
        for e in evaluation.dataset.take(data.eval_examples or -1).as_numpy_iterator()
    ]
    # data.train_examples caps the split; a split TFDS knows to be smaller has only its own images
    known = train.num_examples
    num_train = min(data.train_examples, known) if data.train_examples and known else data.train_examples or known
    ground_truth = coco_dict(eval_examples, evaluation.categories)
    return DetectionData(
        train.dataset.take(data.train_examples or -1), eval_examples, ground_truth, evaluation.categories, num_train
    )


def _annotation_file_data(config: MaskRCNNExperimentConfig) -> DetectionData:
    """COCO json, labelme, VIA or YOLO files, read into the COCO reader's records (images the tools' files need
    converted, e.g. labelme's embedded images, are cached under ``OUTPUT_DIR/image_cache``)."""
    data = config.data
    needs_images = data.source == "coco" or annotation_tool(data.source).needs_images
    needed = ("train_annotations", "eval_annotations") + (("train_images", "eval_images") if needs_images else ())
    for key in needed:
        if not getattr(data, key):
            raise ValueError(f"data.source {data.source!r} needs data.{key}")

    def load(split: str, annotations: str, images: str | None, skip_empty: bool = False):
        if data.source == "coco":
            assert images is not None  # needed (checked above)
            loaded = load_coco_instances(annotations, images, skip_empty=skip_empty, check_images=data.check_images)
        else:
            try:
                loaded = load_annotation_tool_instances(
                    data.source,
                    annotations,
                    images,
                    class_names=data.class_names,
                    yolo_data_yaml=data.yolo_data_yaml,
                    skip_empty=skip_empty,
                    check_images=data.check_images,
                    cache_dir=os.path.join(config.output_dir, "image_cache"),
                    class_attribute=data.class_attribute,
                )
            except NoInstancesError as error:
                raise NoInstancesError(f"the {split} split of {annotations} has no annotations: {error}") from error
        _require_instances(loaded, f"the {split} split of {annotations}")
        return loaded

    assert data.train_annotations is not None and data.eval_annotations is not None  # needed (checked above)
    # an empty split is named as such before anything compares it (its categories, if any, mean nothing)
    train = load("training", data.train_annotations, data.train_images, data.skip_empty)
    evaluation = load("evaluation", data.eval_annotations, data.eval_images)
    if train.categories != evaluation.categories:
        raise ValueError(
            f"the categories of {data.train_annotations} and {data.eval_annotations} differ: {train.categories.names}"
            f" vs {evaluation.categories.names}" + ("" if data.source == "coco" else "; list them in data.class_names")
        )
    if data.train_examples is not None:
        train = dataclasses.replace(train, records=train.records[: data.train_examples])
        _require_instances(
            train,
            f"the first {data.train_examples} images (data.train_examples) of the training "
            f"split of {data.train_annotations}",
        )
    if data.eval_examples is not None:
        evaluation = dataclasses.replace(evaluation, records=evaluation.records[: data.eval_examples])
        _require_instances(
            evaluation,
            f"the first {data.eval_examples} images (data.eval_examples) of the "
            f"evaluation split of {data.eval_annotations}",
        )
    # the evaluator scores the images it is given, so the whole json serves as ground truth for a capped split;
    # checked by the reader's rules (pycocotools crashes on unchecked geometry), its problems warned about once here
    ground_truth = (
        validate_coco_dict(data.eval_annotations, f"evaluation ground truth {data.eval_annotations}")[0]
        if data.source == "coco"
        else evaluation.ground_truth()
    )
    return DetectionData(train, evaluation, ground_truth, train.categories, len(train))


def _require_instances(instances, what: str) -> None:
    """A ``NoInstancesError`` naming ``what`` when ``instances`` (a loaded split) holds no instance: training on it
    would run to the end on nothing, and its AP means nothing."""
    if count_instances(instances) == 0:
        images = len(instances.records)
        raise NoInstancesError(
            f"{what} has no annotations ({images} images, 0 instances)"
            + ("" if images else ": no images with annotations were read")
        )


def canvas_size(config: MaskRCNNExperimentConfig) -> int:
    """The side of the square training canvas: ``model.input.max_size`` rounded up to ``size_divisible``."""
    inputs = config.model.input
    return int(padded_size(inputs.max_size, inputs.max_size, inputs.size_divisible)[0])


def make_pipelines(config: MaskRCNNExperimentConfig, data: DetectionData, global_batch: int):
    """``(train, eval)`` datasets of :func:`make_detection_pipeline` batches (train repeats forever)."""
    model, data_config = config.model, config.data
    common: dict[str, Any] = dict(
        image_size=canvas_size(config),
        min_size=model.input.min_size,
        max_size=model.input.max_size,
        max_instances=data_config.max_instances,
        mask_size=data_config.mask_size,
    )
    train = make_detection_pipeline(
        data.train,
        global_batch,
        training=True,
        horizontal_flip=data_config.horizontal_flip,
        shuffle_buffer=data_config.shuffle_buffer,
        seed=config.train.seed,
        scale_jitter=data_config.scale_jitter,
        min_box_size=data_config.min_box_size,
        brightness=data_config.brightness,
        contrast=data_config.contrast,
        saturation=data_config.saturation,
        hue=data_config.hue,
        **common,
    ).repeat()
    evaluation = make_detection_pipeline(data.eval, global_batch, training=False, **common)
    return sharded_by_data(train), evaluation


#: The COCO AP summary keys, in COCOeval's order.
AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def ap_rows(metrics: dict[str, Any], prefix: str = "") -> list[tuple]:
    """COCO AP rows (bbox and segm), then one ``AP <class>`` row per class with ground truth."""
    rows: list[tuple] = [("metric", "bbox", "segm")]
    for key in AP_KEYS:
        rows.append((key, *(f"{metrics[f'{prefix}{kind}_{key}']:.3f}" for kind in ("bbox", "segm"))))
    classes = [key.split("/", 1)[1] for key in metrics if key.startswith(f"{prefix}bbox_AP/")]
    for name in classes:
        rows.append(
            (
                f"AP {name}",
                *(
                    f"{metrics[f'{prefix}{kind}_AP/{name}']:.3f}" if f"{prefix}{kind}_AP/{name}" in metrics else "-"
                    for kind in ("bbox", "segm")
                ),
            )
        )
    return rows


#: The score from which ``kzoo predict`` keeps and draws detections, unless ``--score-threshold`` says otherwise
#: (the demo's; ``model.detection.score_threshold`` is the evaluation's, which keeps far more for COCO AP).
PREDICT_SCORE_THRESHOLD = 0.5


@register_task
class InstanceSegmentationTask(Task):
    """Mask R-CNN as ``config`` (a :class:`kzoo.config.MaskRCNNExperimentConfig`) describes it."""

    name = "mask_rcnn"
    config_class = MaskRCNNExperimentConfig
    metric_names = tuple(f"loss_{name}" for name in LOSS_NAMES)
    step_outputs = LOSS_NAMES  # MaskRCNNModel.training_losses

    def __init__(self, config: MaskRCNNExperimentConfig) -> None:
        super().__init__(config)
        self._data: DetectionData | None = None
        if config.model.num_classes is None:  # left to the data (kzoo.config.config_from_dict): a trained run's
            names = (loop.read_run_metrics(config.output_dir) or {}).get("class_names")  # classes first
            if names:
                self._set_num_classes(len(names) + 1)

    def _set_num_classes(self, number: int) -> None:
        self.config = dataclasses.replace(self.config, model=dataclasses.replace(self.config.model, num_classes=number))

    @property
    def data(self) -> DetectionData:
        """The configured sources (loaded once); a config without ``model.num_classes`` takes the data's
        categories + 1 (the background) here."""
        if self._data is None:
            self._data = load_detection_data(self.config)
            if self.config.model.num_classes is None:
                self._set_num_classes(self._data.categories.num_classes + 1)
        return self._data

    def training_data(self, global_batch: int) -> tuple[tf.data.Dataset, int]:
        data, config = self.data, self.config
        if data.categories.num_classes + 1 != config.model.num_classes:
            names = ", ".join(data.categories.names[:12]) + (", ..." if data.categories.num_classes > 12 else "")
            raise ValueError(
                f"model.num_classes is {config.model.num_classes} but the data set has {data.categories.num_classes}"
                f" categories ({names}): +1 for the background = {data.categories.num_classes + 1}; set"
                f" model.num_classes to that, or leave it out to take it from the data"
            )
        if not data.num_train:
            raise ValueError("the size of the training set is unknown: set data.train_examples")
        steps_per_epoch = data.num_train // global_batch
        if steps_per_epoch < 1:
            raise ValueError(f"{data.num_train} training images are fewer than one global batch ({global_batch})")
        return make_pipelines(config, data, global_batch)[0], steps_per_epoch

    def build_model(self, init_weights: bool = True, **model_overrides: Any) -> MaskRCNNModel:
        """The model of ``config.model`` built by :func:`kzoo.applications.MaskRCNN` (the one builder; variables
        created); with ``init_weights``, loaded from ``model.init_weights`` (``coco`` or a file, any class count:
        the class-specific predictors are reset when it differs; a one-line summary is printed).
        ``model_overrides`` change :class:`MaskRCNNConfig` fields as ``MaskRCNN``'s keywords do."""
        config = self.config
        if config.train.jit_compile and config.model.roi_align.method != "gather":
            raise ValueError("train.jit_compile needs model.roi_align.method: gather (CropAndResize has no XLA kernel)")
        if config.model.num_classes is None:
            self.data  # noqa: B018 - the categories give the class count
        model = MaskRCNN(config=config.model, name=config.name, **model_overrides)
        if init_weights and config.model.init_weights:
            report = load_weights_transferring(model, weights_file(config.model.init_weights, "mask_rcnn"))
            print(f"model.init_weights: {report.summary()}")
        return model

    def evaluate(
        self,
        model: keras.Model | None = None,
        strategy: tf.distribute.Strategy | None = None,
        weights: str | None = None,
        results: str | None = None,
        verbose: int = 0,
    ) -> dict[str, float]:
        """COCO bbox and segm AP on the evaluation split (``bbox_AP``, ..., ``segm_APl``, ``images``) of ``model``,
        or of trained ``weights`` (default: the run's); ``results`` also writes the detections as COCO results
        json there and the metrics beside it (``*_metrics.json``)."""
        model = model if model is not None else self.trained_model(weights)
        dataset = make_pipelines(self.config, self.data, self.config.train.batch_size)[1]
        evaluator = CocoEvaluator(self.data.ground_truth, self.data.categories)
        with naming_undecodable_images(self.data.eval, "evaluation"):
            metrics = evaluate_mask_rcnn(model, dataset, evaluator, verbose=verbose)
        if results:
            evaluator.write_results(results)
            files.write_json(os.path.splitext(results)[0] + "_metrics.json", metrics)
        return metrics

    def explain_data_error(self, error: tf.errors.OpError) -> Exception | None:
        """An :class:`kzoo.data.decode_errors.ImageDecodeError` naming the training image TF could not decode, or
        None."""
        return explain_image_error(self.data.train, error, "training")

    def run_summary(self) -> dict[str, Any]:
        return {"class_names": list(self.data.categories.names)}

    # -- after training -------------------------------------------------------------------------------------------

    def trained_model(self, weights: str | None = None, **model_overrides: Any) -> MaskRCNNModel:
        """The model with trained weights loaded; ``model_overrides`` replace :class:`MaskRCNNConfig` fields that
        do not change the weights (``detection={"score_threshold": 0.5}``...)."""
        path = self.weights_path(weights)
        model = self.build_model(init_weights=False, **model_overrides)
        load_weights_file(model, path)
        return model

    def class_names(self) -> dict[int, str]:
        """Label -> name: the trained run's ``class_names`` (metrics.json), else the data source's categories,
        else COCO's for a 91-class model, else the label numbers."""
        metrics = loop.read_run_metrics(self.config.output_dir) or {}
        names = metrics.get("class_names")
        if self.config.model.num_classes is None:
            self.data  # noqa: B018 - the categories give the class count
        if not names:
            if self.config.data.source == "shapes":
                names = list(self.config.data.shapes_classes)
            elif (
                self.config.data.source == "coco"
                and self.config.data.eval_annotations
                and os.path.isfile(self.config.data.eval_annotations)
            ):
                with open(self.config.data.eval_annotations) as f:
                    names = list(CocoCategories.from_coco(json.load(f).get("categories", [])).names)
            elif self.config.model.num_classes == 91:
                return dict(COCO_CATEGORIES)
        names = names or []
        return {
            label: names[label - 1] if label <= len(names) else str(label)
            for label in range(1, self.config.model.num_classes)
        }

    def export(
        self,
        format: str,
        weights: str | None = None,
        output: str | None = None,
        model_name: str | None = None,
        version: int | None = None,
        input_dtype: str = "float32",
        warmup: int = 0,
        quantize: Sequence[str] = ("none",),
        full_image_masks: bool = False,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        overwrite: bool = False,
    ) -> list[dict[str, Any]]:
        """A TF Serving SavedModel (``format="saved_model"``) or builtin-only TFLite files (``"tflite"``, one per
        ``quantize`` mode at the training canvas size), each TFLite file compared with the Keras model on eval
        images. ``max_image_pixels``: the SavedModel's ``serving_bytes`` refuses larger images. ``input_dtype`` is
        not used: both the SavedModel's ``serving_default`` and the ``.tflite`` files take uint8 pixels. Nothing is
        replaced silently: a SavedModel goes to a new version directory (an existing ``version`` is refused), and an
        existing ``.tflite`` file is refused, before any work, unless ``overwrite`` (then replaced atomically).

        Returns:
            One dict per artifact: ``kind``, ``path``, ``bytes`` and, for TFLite, ``parity`` (the summary of
            :func:`kzoo.evaluation.detection_parity.compare_detections`) and ``parity_images``.
        """
        from kzoo.export import convert_mask_rcnn_tflite, export_mask_rcnn_saved_model

        name, output = self.export_target(format, output, model_name, quantize, max_image_pixels, overwrite)
        model = self.trained_model(weights)
        if format == "saved_model":
            version_dir = export_mask_rcnn_saved_model(
                model,
                output,
                name,
                version=version,
                full_image_masks=full_image_masks,
                warmup_images=warmup,
                class_names=list(self.class_names().values()),
                max_image_pixels=max_image_pixels,
            )
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(version_dir) for f in names)
            return [{"kind": "SavedModel (TF Serving)", "path": version_dir, "bytes": size}]
        from kzoo.evaluation.detection_parity import compare_detections
        from kzoo.export import run_mask_rcnn_tflite

        side = canvas_size(self.config)
        _, dataset = make_pipelines(self.config, self.data, 8)
        with naming_undecodable_images(self.data.eval, "evaluation"):
            canvases = np.concatenate([b["images"].numpy() for b in dataset.take(6)]).astype(np.uint8)
        # int8 calibrates on the first 32 eval canvases; parity is measured on the next 16 (or on the same ones
        # when the eval split is smaller)
        representative, check = canvases[:32], (canvases[32:] if len(canvases) > 32 else canvases)
        reference = {key: value.numpy() for key, value in model(check).items()}
        artifacts = []
        for mode in quantize:
            path = os.path.join(output, f"{name}_{mode}.tflite")
            convert_mask_rcnn_tflite(
                model, path, (side, side), mode, representative_images=representative, overwrite=overwrite
            )
            parity = compare_detections(reference, run_mask_rcnn_tflite(path, check), (side, side)).summary()
            artifacts.append(
                {
                    "kind": f"TFLite {mode}",
                    "path": path,
                    "bytes": os.path.getsize(path),
                    "parity": parity,
                    "parity_images": len(check),
                }
            )
        return artifacts

    def predict(
        self,
        paths: Sequence[str],
        output_dir: str,
        weights: str | None = None,
        verbose: int = 1,
        score_threshold: float | None = None,
    ) -> list[dict[str, Any]]:
        """Detect and segment image and video files with the run's trained weights (or ``weights``).

        Every input is checked (a regular file, decodable: images wholly, videos' headers) before the model is
        loaded; images are then decoded one at a time. Each image gives ``<output_dir>/<name>_detections.png``
        (drawn at a readable size, :func:`kzoo.visualization.detections_picture`); each video
        (:data:`kzoo.data.video.VIDEO_EXTENSIONS`) gives ``<name>_detections.mp4`` (every frame annotated, at the
        source's rate) and ``<name>_detections.json``, the detections of every frame as COCO results
        (``image_id`` = frame number from 1, ``category_id``, ``bbox`` ``[x, y, w, h]``, ``score``,
        ``segmentation`` as compressed RLE). Output names are unique even when inputs share a name.

        Args:
            paths: image and video files.
            output_dir: the folder of the outputs.
            weights: a weights file (default: the run's ``model.weights.h5``).
            score_threshold: the detections kept and drawn (default :data:`PREDICT_SCORE_THRESHOLD`, the demo's;
                the config's ``model.detection.score_threshold`` is the evaluation's, far lower).
            verbose: 1 shows a progress bar over images and frames.

        Returns:
            One dict per input: ``image`` (the path), ``output`` (the PNG or MP4), ``detections``
            (``[(label name, score, box [ymin, xmin, ymax, xmax] in the image's pixels)]``, best first; for a
            video, every frame's, in frame order), ``frames`` (1 for an image), ``seconds`` (decoding, model and
            drawing), and for a video ``results`` (the json).
        """
        from kzoo.data.images import inspect_image_file
        from kzoo.data.video import is_video_path, video_info

        threshold = PREDICT_SCORE_THRESHOLD if score_threshold is None else float(score_threshold)
        frames_total = 0
        for path in paths:  # every input checked before the model loads
            if is_video_path(path):
                frames_total += video_info(path).frames
            else:
                inspect_image_file(path)
                frames_total += 1
        model = self.trained_model(weights, detection={"score_threshold": threshold})
        names = self.class_names()
        stems = files.unique_output_paths(list(paths), output_dir, "_detections")  # one unique name per input
        outputs = [stem + (".mp4" if is_video_path(p) else ".png") for stem, p in zip(stems, paths)]
        progress = keras.utils.Progbar(frames_total or None, verbose=verbose, unit_name="image")
        results = []
        for path, out_path in zip(paths, outputs):
            started = time.perf_counter()
            if is_video_path(path):
                result = self._predict_video(model, path, out_path, names, progress)
            else:
                rgb = read_image_file(path)[1]
                drawn, detections, _ = self._detect_and_draw(model, rgb, names)
                files.write_bytes(out_path, tf.io.encode_png(drawn).numpy())
                progress.add(1)
                result = {"image": path, "output": out_path, "detections": detections, "frames": 1}
            results.append({**result, "seconds": time.perf_counter() - started})
        return results

    def _detect_and_draw(self, model: MaskRCNNModel, rgb: np.ndarray, names: dict[int, str], min_side: int = 512):
        """``(picture, [(label, score, box)], raw)`` for one uint8 ``[H, W, 3]`` image; ``raw`` holds the kept
        detections' ``boxes``, ``scores``, ``classes`` and RoI-space ``masks``."""
        from kzoo.ops.masks import paste_masks
        from kzoo.visualization import detections_picture

        out = {k: v.numpy()[0] for k, v in model(rgb[None]).items()}
        count = int(out["num_detections"])
        # finite and inside the image before pasting (a diverged model's NaN or 1e9 boxes are dropped/clipped)
        keep, boxes, _ = check_detection_boxes(
            out["detection_boxes"][:count], out["detection_scores"][:count], rgb.shape[:2]
        )
        boxes = boxes[keep].astype(out["detection_boxes"].dtype)
        scores, classes = out["detection_scores"][:count][keep], out["detection_classes"][:count][keep]
        roi_masks = out["detection_masks"][:count][keep]
        masks = paste_masks(roi_masks, boxes, rgb.shape[:2])
        drawn = detections_picture(rgb, boxes, classes, scores, masks, names, min_side=min_side)
        labels = [names.get(int(c), str(int(c))) for c in classes]
        raw = {"boxes": boxes, "scores": scores, "classes": classes, "masks": roi_masks}
        return drawn, list(zip(labels, scores.tolist(), boxes)), raw

    #: kzoo predict runs a Mask R-CNN from its run's config (Task.predict_saved_model says so for a SavedModel)
    saved_model_outputs = frozenset({"detection_boxes", "detection_scores", "detection_classes", "num_detections"})

    def demo(self, fresh: bool = False) -> Table:
        return run_demo(self.config, fresh=fresh)

    # -- the terminal ----------------------------------------------------------------------------------------------

    def train_table(self, metrics: dict[str, Any]) -> Table:
        batch = f"{metrics['replicas']} x {metrics['global_batch_size'] // metrics['replicas']}"
        seconds = metrics.get("train_seconds_this_run") or 0.0
        rows = ap_rows(metrics, "eval_") + [
            ("epochs", metrics["epochs"], ""),
            ("replicas x batch", batch, ""),
            ("loss (last epoch)", f"{metrics['loss_total']:.4f}" if "loss_total" in metrics else "-", ""),
            ("train time this run", f"{seconds:.1f} s", ""),
            ("train throughput", f"{metrics.get('train_images_per_second') or 0:.1f} images/s", ""),
            ("trained weights", os.path.join(self.config.output_dir, loop.WEIGHTS_FILE), ""),
        ]
        return f"kzoo train {self.config.name}: COCO AP on {metrics['eval_images']} images", rows

    def evaluate_table(self, metrics: dict[str, Any], weights: str | None = None) -> Table:
        weights = self.weights_path(weights)
        return f"kzoo evaluate {self.config.name}: COCO AP on {metrics['images']} images ({weights})", ap_rows(metrics)

    def export_table(self, format: str, artifacts: list[dict[str, Any]]) -> Table:
        if format == "saved_model":
            rows = [("artifact", "size", "path")] + [
                (a["kind"], f"{a['bytes'] / 1e6:.2f} MB", a["path"]) for a in artifacts
            ]
            return f"kzoo export {self.config.name}", rows
        count = artifacts[0]["parity_images"] if artifacts else 0
        rows = [
            (
                "artifact",
                "size",
                f"vs Keras on {count} eval images: matched",
                "same class",
                "box IoU",
                "mask IoU (mean / min)",
                "path",
            )
        ]
        for a in artifacts:
            p = a["parity"]
            rows.append(
                (
                    a["kind"],
                    f"{a['bytes'] / 1e6:.2f} MB",
                    f"{p['matched']:.3f}",
                    f"{p['same_class']:.3f}",
                    f"{p['box_iou_mean']:.4f}",
                    f"{p['mask_iou_mean']:.4f} / {p['mask_iou_min']:.4f}",
                    a["path"],
                )
            )
        return f"kzoo export {self.config.name}", rows

    def predict_table(self, results: list[dict[str, Any]]) -> Table:
        rows: list[tuple] = [("image", "detections", "best (label score)", "output")]
        for r in results:
            ranked = sorted(r["detections"], key=lambda d: -d[1])
            best = ", ".join(f"{label} {score:.2f}" for label, score, _ in ranked[:3]) or "-"
            found = f"{len(r['detections'])} in {r['frames']} frames" if "results" in r else len(r["detections"])
            rows.append((r["image"], found, best, r["output"] + (f" + {r['results']}" if "results" in r else "")))
        return f"kzoo predict with Mask R-CNN {self.config.name}", rows

    def _predict_video(self, model, path: str, out_path: str, names: dict[int, str], progress) -> dict[str, Any]:
        from kzoo.data.video import VideoWriter, read_video_frames, video_info
        from kzoo.evaluation.coco import detections_to_coco

        categories = CocoCategories.from_coco([{"id": label, "name": name} for label, name in names.items()])
        results_path = os.path.splitext(out_path)[0] + ".json"
        coco_results, detections, frames = [], [], 0
        with VideoWriter(out_path, video_info(path).fps) as writer:
            for index, rgb in enumerate(read_video_frames(path)):
                drawn, found, raw = self._detect_and_draw(model, rgb, names, min_side=0)
                writer.write(drawn)
                detections.extend(found)
                coco_results.extend(
                    detections_to_coco(
                        np.array([index + 1]),
                        raw["boxes"][None],
                        raw["scores"][None],
                        raw["classes"][None],
                        np.array([len(raw["scores"])]),
                        raw["masks"][None],
                        np.array([rgb.shape[:2]]),
                        categories,
                    )
                )
                frames += 1
                progress.add(1)
        if not frames:
            os.remove(out_path)
            raise ValueError(f"the video {path} holds no frame")
        files.write_json(results_path, coco_results)
        return {"image": path, "output": out_path, "results": results_path, "detections": detections, "frames": frames}


#: What the shapes demo must reach.
SHAPES_TARGETS = {"bbox_AP50": 0.9, "segm_AP": 0.6}


def run_demo(config: MaskRCNNExperimentConfig, fresh: bool = False) -> tuple[str, list[tuple]]:
    """The main job: train a Mask R-CNN on built-in shapes (COCO AP at the end), then detect and segment sample
    PNG files. Returns the final table's title and rows."""
    import time

    from kzoo.tasks.demo import finished_demo, save_demo

    finished = finished_demo(config, fresh)
    if finished is not None:
        return finished
    started = time.perf_counter()
    task = InstanceSegmentationTask(config)
    print(
        f"[1/2] train {config.name}: {config.train.epochs} epochs on {config.data.train_examples} built-in "
        f"'{config.data.source}' images, then COCO AP on {config.data.eval_examples} held-out ones "
        f"(output: {config.output_dir})"
    )
    metrics = loop.train(task, verbose=1, fresh=fresh)
    train_seconds = time.perf_counter() - started

    print("[2/2] detect and segment sample PNG files")
    sample_dir = os.path.join(config.output_dir, "samples")
    paths = []
    samples = make_shapes_instances(
        4,
        config.data.shapes_image_size,
        config.data.shapes_max_instances,
        seed=12345,
        classes=config.data.shapes_classes,
    )
    for i, example in enumerate(samples):
        path = os.path.join(sample_dir, f"sample{i}.png")
        files.write_bytes(path, tf.io.encode_png(example["image"]).numpy())
        paths.append(path)
    predictions = task.predict(paths, sample_dir, score_threshold=PREDICT_SCORE_THRESHOLD)

    rows: list[tuple] = [("result", "value", "target")]
    for key, target in SHAPES_TARGETS.items():
        value = metrics[f"eval_{key}"]
        rows.append(
            (
                f"held-out {key.replace('_', ' ')}",
                f"{value:.3f}",
                f">= {target} {'ok' if value >= target else 'MISSED'}",
            )
        )
    for key in ("bbox_AP", "segm_AP50"):
        rows.append((f"held-out {key.replace('_', ' ')}", f"{metrics[f'eval_{key}']:.3f}", ""))
    if metrics.get("already_finished"):
        rows.append(("train", f"already finished ({metrics['epochs']} epochs)", "--fresh trains again"))
    else:
        rows.append(("train", f"{metrics['epochs']} epochs, {train_seconds:.0f} s", ""))
    rows.append(("trained weights", os.path.join(config.output_dir, loop.WEIGHTS_FILE), ""))
    for prediction in predictions:
        found = ", ".join(f"{label} {score:.2f}" for label, score, _ in prediction["detections"]) or "-"
        rows.append((f"predict {os.path.basename(prediction['image'])}", found, prediction["output"]))
    rows.append(("total time", f"{time.perf_counter() - started:.0f} s", ""))
    rows.append(("next", f"kzoo evaluate {os.path.join(config.output_dir, 'config.yaml')}", ""))
    save_demo(config, "kzoo demo: Mask R-CNN on built-in shapes", rows)
    return "kzoo demo: Mask R-CNN on built-in shapes", rows
