"""The image-classification task (NIN): model, data, train step, evaluation, export and prediction wiring."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kzoo.applications.weights import weights_file
from kzoo.config import PRECISION_POLICIES, ExperimentConfig
from kzoo.data.classification import ClassificationSplit, load_classification, make_pipeline
from kzoo.data.images import read_image_file
from kzoo.evaluation.classification import evaluate_classifier
from kzoo.export.serving import DEFAULT_MAX_IMAGE_PIXELS
from kzoo.models.nin import NINModel, build_nin, resolve_blocks
from kzoo.models.weight_files import load_weights_file, load_weights_transferring
from kzoo.tasks.base import Table, Task, sharded_by_data
from kzoo.tasks.registry import register_task
from kzoo.training import loop
from kzoo.utils import files


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


@register_task
class ClassificationTask(Task):
    """NIN classification as ``config`` (a :class:`kzoo.config.ExperimentConfig`) describes it."""

    name = "classification"
    config_class = ExperimentConfig
    metric_names: tuple[str, ...] = ("train_loss", "train_accuracy")
    step_outputs = ("total", "accuracy")  # NINModel.training_losses

    def __init__(self, config: ExperimentConfig) -> None:
        super().__init__(config)
        self._splits: dict[str, ClassificationSplit] = {}

    # -- data ------------------------------------------------------------------------------------------------

    def split(self, which: str, num_examples: int | None = None) -> ClassificationSplit:
        """The ``train`` or ``eval`` split of ``config.data`` (loaded once); ``num_examples`` caps it."""
        data = self.config.data
        name, default_count = (
            (data.train_split, data.train_examples) if which == "train" else (data.eval_split, data.eval_examples)
        )
        count = num_examples or default_count
        key = f"{which}:{count}"
        if key not in self._splits:
            self._splits[key] = load_classification(
                data.source, name, data.data_dir, data.tfds_name, count, data.image_size
            )
        return self._splits[key]

    def eval_arrays(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The evaluation split as arrays: images ``[N, H, W, C]`` (the source's dtype) and labels int64 ``[N]``."""
        image_rows, label_rows = zip(*self.split("eval").dataset.as_numpy_iterator())
        images, labels = np.stack(image_rows), np.asarray(label_rows)
        return (images[:limit], labels[:limit]) if limit else (images, labels)

    def training_data(self, global_batch: int) -> tuple[tf.data.Dataset, int]:
        train = self.split("train")
        if len(train.class_names) != self.config.model.num_classes:
            raise ValueError(
                f"model.num_classes is {self.config.model.num_classes} but the data set has "
                f"{len(train.class_names)} classes"
            )
        steps_per_epoch = train.num_examples // global_batch
        if steps_per_epoch < 1:
            raise ValueError(f"{train.num_examples} training examples are fewer than one global batch ({global_batch})")
        data = self.config.data
        dataset = make_pipeline(
            train,
            global_batch,
            training=True,
            crop_padding=data.crop_padding,
            horizontal_flip=data.horizontal_flip,
            shuffle_buffer=data.shuffle_buffer,
            seed=self.config.train.seed,
        ).repeat()
        return sharded_by_data(dataset), steps_per_epoch

    # -- model and step -----------------------------------------------------------------------------------------

    def build_model(self, init_weights: bool = True, dtype: str | keras.DTypePolicy | None = None) -> NINModel:
        """The classifier of ``config.model``: random, or with ``init_weights`` starting from
        ``model.init_weights`` (any class count). ``dtype``: its layers' dtype policy; default the training
        precision's (``config.precision``: ``float32``, ``mixed_bfloat16`` or ``mixed_float16``, float32
        variables)."""
        model_config = self.config.model
        model = build_nin(
            keras.Input(model_config.input_shape, name="images"),
            resolve_blocks(model_config.variant, model_config.blocks),
            num_classes=model_config.num_classes,
            dropout_rate=model_config.dropout_rate,
            use_batch_norm=model_config.use_batch_norm,
            name=f"nin_{model_config.variant}",
            dtype=dtype or keras.DTypePolicy(PRECISION_POLICIES[self.config.precision]),
        )
        if init_weights and model_config.init_weights:
            report = load_weights_transferring(model, weights_file(model_config.init_weights, "nin"))
            print(f"model.init_weights: {report.summary()}")
        return model

    def trained_model(self, weights: str | None = None) -> NINModel:
        """The classifier with trained ``weights`` (default: the run's) loaded, in float32 whatever precision
        trained it (evaluation, export and prediction run in float32)."""
        model = self.build_model(init_weights=False, dtype="float32")
        load_weights_file(model, self.weights_path(weights))
        return model

    def loss_options(self) -> dict[str, Any]:
        return {"label_smoothing": self.config.train.label_smoothing}

    def evaluate(
        self,
        model: keras.Model | None = None,
        strategy: tf.distribute.Strategy | None = None,
        weights: str | None = None,
        results: str | None = None,
        verbose: int = 0,
    ) -> dict[str, float]:
        """``loss``, ``accuracy``, ``top5_accuracy`` and ``examples`` on the evaluation split, of ``model`` or of
        trained ``weights`` (default: the run's)."""
        if results:
            raise ValueError("--results writes detections as COCO results json: a Mask R-CNN task's, not NIN's")
        model = model if model is not None else self.trained_model(weights)
        dataset = sharded_by_data(make_pipeline(self.split("eval"), 256, training=False))
        return evaluate_classifier(model, dataset, strategy)

    def run_summary(self) -> dict[str, Any]:
        return {"class_names": list(self.split("train").class_names)}

    # -- after training -------------------------------------------------------------------------------------------

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
        eval_examples: int | None = None,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        overwrite: bool = False,
    ) -> list[dict[str, Any]]:
        """Export trained weights as a TF Serving SavedModel (``format="saved_model"``) or builtin-only TFLite
        files (``"tflite"``, one per ``quantize`` mode), each checked on the evaluation split.

        ``max_image_pixels``: the SavedModel's ``serving_bytes`` refuses larger images. Nothing is replaced
        silently: a SavedModel goes to a new version directory (an existing ``version`` is refused), and an
        existing ``.tflite`` file is refused, before any work, unless ``overwrite`` (then replaced atomically).

        Returns:
            One dict per artifact: ``path``, ``bytes``, ``accuracy``, ``examples``.
        """
        from kzoo.export import convert_classifier_tflite, export_classifier_saved_model, run_classifier_tflite
        from kzoo.export.serving import latest_version_dir

        name, output = self.export_target(format, output, model_name, quantize, max_image_pixels, overwrite)
        model = self.trained_model(weights)
        images, labels = self.eval_arrays(eval_examples)
        artifacts = []
        if format == "saved_model":
            version_dir = export_classifier_saved_model(
                model,
                output,
                name,
                self.split("eval").class_names,
                version=version,
                input_dtype=input_dtype,
                warmup_examples=warmup,
                max_image_pixels=max_image_pixels,
            )
            artifacts.append(_artifact(version_dir, saved_model_accuracy(version_dir, images, labels), len(labels)))
            return artifacts
        calibration = None
        if "int8" in quantize:
            calibration = np.stack([x for x, _ in self.split("train", 512).dataset.as_numpy_iterator()])[:256]
        latest = latest_version_dir(os.path.join(output, name))
        if latest:
            artifacts.append(_artifact(latest, saved_model_accuracy(latest, images, labels), len(labels)))
        for mode in quantize:
            path = os.path.join(output, f"{name}_{mode}.tflite")
            convert_classifier_tflite(
                model, path, quantize=mode, representative_images=calibration, overwrite=overwrite
            )
            accuracy = float(np.mean(np.argmax(run_classifier_tflite(path, images), -1) == labels))
            artifacts.append(_artifact(path, accuracy, len(labels)))
        return artifacts

    def predict(
        self,
        inputs: Sequence[str],
        output_dir: str,
        weights: str | None = None,
        verbose: int = 1,
        top: int = 3,
        cam: bool = False,
    ) -> list[dict[str, Any]]:
        """Classify image files with the run's trained weights (or ``weights``): each image decoded strictly,
        made the model's channels (gray from RGB as ``0.299 R + 0.587 G + 0.114 B``) and resized to its input
        size (bilinear), as the SavedModel's ``serving_bytes`` does; with ``cam``, the top class's confidence map
        over each image goes to ``<output_dir>/<name>_cam.png``.

        Returns:
            One dict per image: ``image``, ``top`` (``[(class index, name, probability)]``, best first) and
            ``output`` (the map's PNG, or ``None``).
        """
        from kzoo.models.nin import class_map_model
        from kzoo.visualization import heatmap_picture

        if top < 1:
            raise ValueError(f"top must be >= 1, got {top}")
        for path in inputs:  # every input checked before the model is built
            read_image_file(path)
        model = self.trained_model(weights)
        maps_model = class_map_model(model) if cam else None
        names = (loop.read_run_metrics(self.config.output_dir) or {}).get("class_names")
        height, width, channels = self.config.model.input_shape
        outputs = files.unique_output_paths(list(inputs), output_dir, "_cam.png") if cam else [None] * len(inputs)
        progress = keras.utils.Progbar(len(inputs), verbose=verbose, unit_name="image")
        results = []
        for path, out_path in zip(inputs, outputs):
            started = time.perf_counter()
            rgb = read_image_file(path)[1]
            pixels = rgb if channels == 3 else np.round(rgb.astype(np.float32) @ [0.299, 0.587, 0.114])[..., None]
            resized = tf.clip_by_value(
                tf.round(tf.image.resize(np.asarray(pixels, np.float32)[None], (height, width))), 0, 255
            )
            batch = resized / 127.5 - 1.0  # kzoo.applications.nin.preprocess_input
            if maps_model is not None:
                probs, maps = (keras.ops.convert_to_numpy(t) for t in maps_model(batch))
            else:
                probs, maps = keras.ops.convert_to_numpy(model(batch)), None
            probs = probs[0]
            order = np.argsort(-probs)[: min(top, len(probs))]
            ranked = [(int(i), names[i] if names else str(i), float(probs[i])) for i in order]
            if maps is not None:
                assert out_path is not None  # maps come with cam, which names the outputs
                picture = heatmap_picture(rgb, maps[0, :, :, order[0]], title=f"{ranked[0][1]} {ranked[0][2]:.2f}")
                files.write_bytes(out_path, tf.io.encode_png(picture).numpy())
            progress.add(1)
            results.append(
                {
                    "image": path,
                    "top": ranked,
                    "output": out_path,
                    "frames": 1,
                    "seconds": time.perf_counter() - started,
                }
            )
        return results

    saved_model_outputs = frozenset({"probabilities", "classes", "class_names"})

    @classmethod
    def predict_saved_model(
        cls,
        saved_model: str,
        inputs: Sequence[str],
        output_dir: str | None = None,
        verbose: int = 1,
        top: int = 3,
        cam: bool = False,
    ) -> list[dict[str, Any]]:
        """Top-``top`` classes of image files from an exported classifier SavedModel; with ``cam``, the top
        class's confidence map over each image as PNG in ``output_dir`` (see :func:`predict_with_saved_model`)."""
        return predict_with_saved_model(saved_model, inputs, top, output_dir if cam else None, verbose)

    @classmethod
    def saved_model_table(cls, saved_model: str, results: list[dict[str, Any]]) -> Table:
        return ranked_table(f"kzoo predict with {saved_model}", results)

    def demo(self, fresh: bool = False) -> Table:
        return run_demo(self.config, fresh=fresh)

    # -- the terminal ----------------------------------------------------------------------------------------------

    def train_table(self, metrics: dict[str, Any]) -> Table:
        batch = f"{metrics['replicas']} x {metrics['global_batch_size'] // metrics['replicas']}"
        seconds = metrics.get("train_seconds_this_run") or 0.0
        return f"kzoo train {self.config.name}", [
            ("metric", "value"),
            ("epochs", metrics["epochs"]),
            ("replicas x batch", batch),
            ("train accuracy (last epoch)", _percent(metrics.get("train_accuracy"))),
            ("eval accuracy", _percent(metrics["eval_accuracy"])),
            ("eval loss", f"{metrics['eval_loss']:.4f}"),
            ("train time this run", f"{seconds:.1f} s"),
            ("train throughput", f"{metrics.get('train_images_per_second') or 0:.0f} images/s"),
            ("trained weights", os.path.join(self.config.output_dir, loop.WEIGHTS_FILE)),
        ]

    def evaluate_table(self, metrics: dict[str, Any], weights: str | None = None) -> Table:
        data = self.config.data
        return f"kzoo evaluate {self.config.name} on {data.source}:{data.eval_split}", [
            ("metric", "value"),
            ("examples", metrics["examples"]),
            ("accuracy", _percent(metrics["accuracy"])),
            ("top-5 accuracy", _percent(metrics["top5_accuracy"])),
            ("loss", f"{metrics['loss']:.4f}"),
        ]

    def export_table(self, format: str, artifacts: list[dict[str, Any]]) -> Table:
        rows = [("artifact", "size", "test accuracy", "examples")]
        for a in artifacts:
            label = a["path"] + (" (SavedModel)" if format == "tflite" and not a["path"].endswith(".tflite") else "")
            rows.append((label, f"{a['bytes'] / 1e6:.2f} MB", _percent(a["accuracy"]), a["examples"]))
        return f"kzoo export {self.config.name} ({format})", rows

    def predict_table(self, results: list[dict[str, Any]]) -> Table:
        return ranked_table(f"kzoo predict with {self.config.name}", results)


def ranked_table(title: str, results: list[dict[str, Any]]) -> Table:
    """A classification's results (``image``, ``top`` and optional ``output``/``cam`` PNG) as a table."""
    rows: list[tuple] = [("image", "rank", "class", "probability", "class map")]
    for result in results:
        picture = result.get("output") or result.get("cam") or ""
        for rank, (index, name, prob) in enumerate(result["top"], start=1):
            first = rank == 1
            rows.append(
                (result["image"] if first else "", rank, f"{index} {name}", f"{prob:.4f}", picture if first else "")
            )
    return title, rows


def _artifact(path: str, accuracy: float, examples: int) -> dict[str, Any]:
    size = (
        os.path.getsize(path)
        if os.path.isfile(path)
        else sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(path) for f in names)
    )
    return {"path": path, "bytes": size, "accuracy": accuracy, "examples": examples}


# -- SavedModel predictions --------------------------------------------------------------------------------------


def _load_classifier_saved_model(saved_model: str):
    """``(version_dir, loaded)`` of a kzoo classifier SavedModel (a TF Serving model folder or a version folder)."""
    from kzoo.tasks.registry import saved_model_version_dir

    version_dir = saved_model_version_dir(saved_model)
    loaded = tf.saved_model.load(version_dir)
    serve = loaded.signatures.get("serving_default")
    if serve is None or "probabilities" not in serve.structured_outputs or "class_maps" not in loaded.signatures:
        raise ValueError(
            f"{version_dir} is not a kzoo classifier SavedModel (no 'probabilities' output); "
            "for Mask R-CNN use kzoo predict IMAGE --config CONFIG"
        )
    return version_dir, loaded


def saved_model_accuracy(version_dir: str, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy of a classifier SavedModel's ``serving_default`` on ``images`` ``[N, H, W, C]``."""
    serve = tf.saved_model.load(version_dir).signatures["serving_default"]
    dtype = serve.structured_input_signature[1]["images"].dtype
    correct = 0
    for start in range(0, len(images), batch_size):
        batch = tf.cast(images[start : start + batch_size], dtype)
        correct += int(np.sum(serve(images=batch)["classes"].numpy() == labels[start : start + batch_size]))
    return correct / max(len(labels), 1)


def predict_with_saved_model(
    saved_model: str, paths: Sequence[str], top: int = 3, cam_dir: str | None = None, verbose: int = 1
) -> list[dict[str, Any]]:
    """Top-``top`` predictions for image files from an exported classifier SavedModel (a TF Serving model folder
    or one version folder). A SavedModel is a program: load only the ones you trust.

    Returns:
        One dict per image: ``image`` (the path), ``top`` (``[(class index, name, probability)]``), ``seconds``
        and, with ``cam_dir``, ``cam`` (the PNG of the top class's confidence map over the image); ``verbose``
        shows a progress bar.
    """
    from kzoo.visualization import heatmap_picture

    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    images = [(path, read_image_file(path)[1]) for path in paths]
    version_dir, loaded = _load_classifier_saved_model(saved_model)
    names_file = os.path.join(version_dir, "assets.extra", "class_names.txt")
    class_names = open(names_file).read().splitlines() if os.path.isfile(names_file) else None
    spec = loaded.signatures["serving_default"].structured_input_signature[1]["images"]
    height, width, channels = spec.shape[1:]
    out_paths = files.unique_output_paths([p for p, _ in images], cam_dir, "_cam.png") if cam_dir else []
    results = []
    progress = keras.utils.Progbar(len(images), verbose=verbose, unit_name="image")
    for index, (path, rgb) in enumerate(images):
        started = time.perf_counter()
        # decoded here (Pillow reads 16-bit, palette and grayscale files alike), resized as serving_bytes does
        pixels = rgb if channels == 3 else np.round(rgb.astype(np.float32) @ [0.299, 0.587, 0.114])[..., None]
        resized = tf.image.resize(np.asarray(pixels, np.float32)[None], (height, width))
        batch = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), spec.dtype)
        probs = loaded.signatures["serving_default"](images=batch)["probabilities"].numpy()[0]
        order = np.argsort(-probs)[: min(top, len(probs))]
        result: dict[str, Any] = {
            "image": path,
            "top": [(int(i), class_names[i] if class_names else str(i), float(probs[i])) for i in order],
        }
        if cam_dir:
            maps = loaded.signatures["class_maps"](images=batch)["class_maps"]
            top_name = class_names[order[0]] if class_names else str(order[0])
            overlay = heatmap_picture(rgb, maps.numpy()[0, :, :, order[0]], title=f"{top_name} {probs[order[0]]:.2f}")
            files.write_bytes(out_paths[index], tf.io.encode_png(overlay).numpy())
            result["cam"] = out_paths[index]
        result.update(frames=1, seconds=time.perf_counter() - started)
        progress.add(1)
        results.append(result)
    return results


def run_demo(config: ExperimentConfig, fresh: bool = False) -> tuple[str, list[tuple]]:
    """The NIN main job on built-in data: train, evaluate, export (SavedModel + int8 TFLite), predict with the
    export on sample PNG files. Returns the final table's title and rows."""
    import time

    from kzoo.tasks.demo import finished_demo, save_demo

    finished = finished_demo(config, fresh)
    if finished is not None:
        return finished
    started = time.perf_counter()
    task = ClassificationTask(config)
    print(
        f"[1/4] train {config.name}: {config.train.epochs} epochs on the built-in '{config.data.source}' data "
        f"(output: {config.output_dir})"
    )
    metrics = loop.train(task, verbose=1, fresh=fresh)
    train_seconds = time.perf_counter() - started

    print("[2/4] evaluate the Keras model")
    keras_result = task.evaluate(task.trained_model())

    print("[3/4] export: SavedModel (TF Serving layout) and TFLite (int8)")
    export_dir = os.path.join(config.output_dir, "export")
    # the demo's own .tflite file, refreshed by each run of the demo (its SavedModel gets a new version)
    saved, tflite = (
        task.export("saved_model", output=export_dir, warmup=1)[0],
        task.export("tflite", output=export_dir, quantize=("int8",), overwrite=True)[-1],
    )

    print("[4/4] predict with the SavedModel on sample PNG files")
    sample_dir = os.path.join(config.output_dir, "samples")
    images, labels = task.eval_arrays(4)
    names = task.split("eval").class_names
    paths = []
    for i in range(4):
        path = os.path.join(sample_dir, f"sample{i}.png")
        files.write_bytes(path, tf.io.encode_png(images[i]).numpy())
        paths.append(path)
    predictions = predict_with_saved_model(os.path.dirname(saved["path"]), paths, top=1, cam_dir=sample_dir)

    rows: list[tuple] = [("step", "result")]
    if metrics.get("already_finished"):
        rows.append(("train", f"already finished ({metrics['epochs']} epochs); --fresh trains again"))
    else:
        rows.append(
            (
                "train",
                f"{metrics['epochs']} epochs, {train_seconds:.0f} s, "
                f"{metrics['train_images_per_second'] or 0:.0f} images/s",
            )
        )
    rows.append(("trained weights", os.path.join(config.output_dir, loop.WEIGHTS_FILE)))
    rows.append(("Keras model, test accuracy", f"{100 * keras_result['accuracy']:.2f}%"))
    rows.append(("SavedModel, test accuracy", f"{100 * saved['accuracy']:.2f}%  ({saved['path']})"))
    rows.append(
        (
            "TFLite int8, test accuracy",
            f"{100 * tflite['accuracy']:.2f}%  ({tflite['path']}, {tflite['bytes'] / 1e3:.0f} kB)",
        )
    )
    for prediction, label in zip(predictions, labels):
        _, name, prob = prediction["top"][0]
        rows.append(
            (
                f"predict {os.path.basename(prediction['image'])} (a {names[label]})",
                f"{name} ({prob:.3f}), map {prediction['cam']}",
            )
        )
    rows.append(("total time", f"{time.perf_counter() - started:.0f} s"))
    rows.append(("next", f"kzoo evaluate {os.path.join(config.output_dir, 'config.yaml')}"))
    save_demo(config, "kzoo demo: NIN on built-in shapes", rows)
    return "kzoo demo: NIN on built-in shapes", rows
