"""The one contract of a task (a model family's wiring): what the training loop, the CLI and the demos call.

A task is registered under its config's ``task:`` name (:func:`kzoo.tasks.registry.register_task`) and found from
the config (:func:`kzoo.tasks.registry.task_for`); ``cli.py`` knows no family. A new family costs a config
dataclass, a model module and one task module that implements the methods below.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

#: A table for the terminal: a title and rows (the first row is the header).
Table = tuple[str, list[tuple]]

#: The file a trained run's weights are in (``OUTPUT_DIR/model.weights.h5``).
WEIGHTS_FILE = "model.weights.h5"


class Task:
    """The contract every task implements, with the signatures every family shares.

    Class attributes: ``name`` (the config's ``task:`` value), ``config_class`` (its experiment dataclass, with
    ``name``, ``output_dir``, ``precision``, ``train`` and ``strategy`` at least) and ``metric_names`` (the train
    step's running metrics, the loss first). The model's precision is its own (``dtype=``, from the config's
    ``precision``): no task sets Keras' process-wide dtype policy.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    metric_names: tuple[str, ...] = ("loss",)
    #: the keys of the model's ``training_losses`` behind :attr:`metric_names`, in the same order
    step_outputs: tuple[str, ...] = ("total",)

    def __init__(self, config: Any) -> None:
        self.config = config

    # -- the training loop (kzoo.training.loop) ---------------------------------------------------------------

    def training_data(self, global_batch: int) -> tuple[tf.data.Dataset, int]:
        """``(dataset, steps_per_epoch)``: batches of ``global_batch`` examples, repeating forever."""
        raise NotImplementedError

    def build_model(self, init_weights: bool = True) -> keras.Model:
        """A new model with its variables created; with ``init_weights`` from the config's ``init_weights``."""
        raise NotImplementedError

    def make_train_step(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        strategy: tf.distribute.Strategy,
        global_batch: int,
    ) -> Callable[[Iterator], tf.Tensor]:
        """``step(distributed_iterator) -> float32 [N]``: the global batch's :attr:`step_outputs` (each the mean
        over the replicas of the replica's batch mean). The one step of every task
        (:func:`kzoo.training.step.make_train_step`): the model's ``training_losses`` differ, nothing else."""
        from kzoo.training.step import make_train_step

        del global_batch  # every replica's loss is its batch's mean; the step divides by the replica count
        train = self.config.train
        return make_train_step(
            model,
            optimizer,
            strategy,
            self.step_outputs,
            seed=train.seed,
            gradient_clip_norm=train.gradient_clip_norm,
            jit_compile=train.jit_compile,
            **self.loss_options(),
        )

    def loss_options(self) -> dict[str, Any]:
        """Keyword arguments of the model's ``training_losses`` from the config (``label_smoothing``...)."""
        return {}

    def step_metrics(self, totals: np.ndarray, steps: int) -> dict[str, float]:
        """The epoch's running metrics (:attr:`metric_names`): the mean over its ``steps`` of the step's outputs."""
        return {name: float(value) / steps for name, value in zip(self.metric_names, totals)}

    def set_trainable(self, model: keras.Model, preset: str) -> None:
        """Make the layers of ``preset`` (``all``, ``heads``, ``3+``...: the model's ``TRAINABLE_PRESETS``)
        trainable, freeze the others: the model's own ``set_trainable_preset`` (it knows its stages). A model
        without presets trains as built (``all``); another preset is a ``ValueError``."""
        set_preset = getattr(model, "set_trainable_preset", None)
        if set_preset is not None:
            set_preset(preset)
        elif preset != "all":
            raise ValueError(
                f"train.trainable_layers {preset!r}: model '{model.name}' has no trainable presets "
                "(a set_trainable_preset method); only 'all' applies"
            )

    def evaluate(
        self,
        model: keras.Model | None = None,
        strategy: tf.distribute.Strategy | None = None,
        weights: str | None = None,
        results: str | None = None,
        verbose: int = 0,
    ) -> dict[str, Any]:
        """Metrics on the evaluation split, of ``model`` or else of trained ``weights`` (default: the run's);
        ``results`` writes the predictions there where the task has a results format."""
        raise NotImplementedError

    def run_summary(self) -> dict[str, Any]:
        """Extra entries for the run's ``metrics.json`` (e.g. ``class_names``)."""
        return {}

    # -- after training -------------------------------------------------------------------------------------------

    def weights_path(self, weights: str | None = None) -> str:
        """``weights``, or the run's trained weights ``OUTPUT_DIR/model.weights.h5``; FileNotFoundError when absent."""
        path = weights or os.path.join(self.config.output_dir, WEIGHTS_FILE)
        if not os.path.isfile(path):
            hint = (
                ""
                if weights
                else (
                    " (no trained weights for this config: train first with kzoo train CONFIG, or pass --weights FILE)"
                )
            )
            raise FileNotFoundError(f"weights file not found: {path}{hint}")
        return path

    def trained_model(self, weights: str | None = None) -> keras.Model:
        """The model with trained weights loaded (see :meth:`weights_path`)."""
        from kzoo.models.weight_files import load_weights_file

        path = self.weights_path(weights)
        model = self.build_model(init_weights=False)
        load_weights_file(model, path)
        return model

    # *args, **options: each task's own keywords (a type checker then takes any override's); the CLI passes a
    # task only the options its method names (kzoo.cli._options)
    def export(
        self, format: str, weights: str | None = None, output: str | None = None, *args: Any, **options: Any
    ) -> list[dict[str, Any]]:
        """Export trained weights (``format``: ``saved_model`` or ``tflite``); one dict per artifact, with
        ``path`` and ``bytes`` at least."""
        raise NotImplementedError

    def export_target(
        self,
        format: str,
        output: str | None,
        model_name: str | None,
        quantize: Sequence[str],
        max_image_pixels: int,
        overwrite: bool,
    ) -> tuple[str, str]:
        """``(name, output)`` of an export, checked before any work: a plain model name (default: the config's),
        a pixel cap that fits int64, the base folder (default ``OUTPUT_DIR/export``), and for TFLite no existing
        ``<name>_<mode>.tflite`` unless ``overwrite`` (the export rule of ``kzoo export --help``)."""
        from kzoo.export.serving import check_max_image_pixels, check_model_name
        from kzoo.export.tflite import check_output_file

        name = check_model_name(model_name or self.config.name)  # exports stay inside output
        check_max_image_pixels(max_image_pixels)
        output = output or os.path.join(self.config.output_dir, "export")
        if format == "tflite":
            for mode in quantize:
                check_output_file(os.path.join(output, f"{name}_{mode}.tflite"), overwrite)
        return name, output

    def predict(
        self,
        inputs: Sequence[str],
        output_dir: str,
        weights: str | None = None,
        verbose: int = 1,
        *args: Any,
        **options: Any,
    ) -> list[dict[str, Any]]:
        """Run trained weights on files, writing what the task draws into ``output_dir``; one dict per input
        with ``image`` (the path) and ``output`` at least."""
        raise NotImplementedError

    # -- exported SavedModels (kzoo predict --saved-model) -------------------------------------------------------

    #: the ``serving_default`` outputs that mark this task's SavedModels (registry.task_class_for_saved_model)
    saved_model_outputs: ClassVar[frozenset[str]] = frozenset()
    #: whether :meth:`predict_saved_model` takes video files
    saved_model_takes_videos: ClassVar[bool] = False

    @classmethod
    def predict_saved_model(
        cls,
        saved_model: str,
        inputs: Sequence[str],
        output_dir: str | None = None,
        verbose: int = 1,
        *args: Any,
        **options: Any,
    ) -> list[dict[str, Any]]:
        """Run an exported SavedModel of this task (a TF Serving model folder or a version folder) on files; one
        dict per input with ``image``, ``frames`` and ``seconds`` at least. No config is needed."""
        raise ValueError(
            f"kzoo predict does not run {cls.name} SavedModels ({saved_model}); give the run's config instead: "
            "kzoo predict IMAGES --config CONFIG"
        )

    @classmethod
    def saved_model_table(cls, saved_model: str, results: list[dict[str, Any]]) -> Table:
        """The table ``kzoo predict --saved-model`` prints."""
        return f"kzoo predict with {saved_model}", [("image", "output")] + [
            (r["image"], r.get("output", "")) for r in results
        ]

    def demo(self, fresh: bool = False) -> Table:
        """The task's main job on built-in data, ending in its results table."""
        raise NotImplementedError

    # -- the terminal (what cli.py prints) -------------------------------------------------------------------

    def train_table(self, metrics: dict[str, Any]) -> Table:
        """The table ``kzoo train`` prints from the loop's final metrics."""
        rows = [("metric", "value")] + [(k, _cell(v)) for k, v in sorted(metrics.items()) if not isinstance(v, list)]
        return f"kzoo train {self.config.name}", rows

    def evaluate_table(self, metrics: dict[str, Any], weights: str | None = None) -> Table:
        """The table ``kzoo evaluate`` prints."""
        rows = [("metric", "value")] + [(k, _cell(v)) for k, v in sorted(metrics.items()) if not isinstance(v, list)]
        return f"kzoo evaluate {self.config.name}", rows

    def export_table(self, format: str, artifacts: list[dict[str, Any]]) -> Table:
        """The table ``kzoo export`` prints."""
        rows = [("artifact", "size")] + [(a["path"], f"{a['bytes'] / 1e6:.2f} MB") for a in artifacts]
        return f"kzoo export {self.config.name} ({format})", rows

    def predict_table(self, results: list[dict[str, Any]]) -> Table:
        """The table ``kzoo predict`` prints."""
        return f"kzoo predict with {self.config.name}", [("image", "output")] + [
            (r["image"], r["output"]) for r in results
        ]


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def sharded_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` with ``tf.distribute``'s auto-sharding by data: each worker of a multi-worker run takes every
    N-th element of the same pipeline (kzoo's sources are generated or read from files with no file-level split)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
