"""Experiment configs: YAML files loaded into frozen dataclasses, validated key by key.

The one config loader of kzoo: every command (train, evaluate, export, predict, demo) reads its YAML file
through :func:`load_config`, with ``--set key=value`` overrides. Every key and every choice is checked when
the config is built, and the error names the key.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import pathlib
import re
from typing import Any, ClassVar

import yaml

from kzoo.data.options import CHECK_IMAGES, CLASSIFICATION_SOURCES, DETECTION_SOURCES, augmentation_problem
from kzoo.models.mask_rcnn_config import MASK_RCNN_TRAINABLE_PRESETS, RESNET_STAGE_PRESETS, MaskRCNNConfig
from kzoo.models.nin_config import NIN_TRAINABLE_PRESETS, BlockSpec
from kzoo.utils.structs import (
    INT64_MAX,
    ConfigError,
    check_choice,
    check_count,
    check_finite,
    check_fraction,
    check_range,
    dataclass_from_dict,
    merged,
)

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "MaskRCNNExperimentConfig",
    "config_from_dict",
    "config_to_dict",
    "dataclass_from_dict",
    "load_config",
    "parse_overrides",
]

#: ``precision``: float32, or mixed precision with float32 variables and bfloat16 / float16 computation.
PRECISIONS = ("float32", "bfloat16", "float16")
#: The Keras dtype policy (``keras.DTypePolicy(name)``) a model of each ``precision`` is built with (``dtype=``).
PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
STRATEGY_KINDS = ("auto", "mirrored", "multi_worker", "one_device")
#: ``train.trainable_layers`` presets: every model's (each model declares its own, e.g.
#: :data:`kzoo.models.mask_rcnn_config.MASK_RCNN_TRAINABLE_PRESETS`, and checks its config against them).
TRAINABLE_LAYERS = tuple(dict.fromkeys(NIN_TRAINABLE_PRESETS + MASK_RCNN_TRAINABLE_PRESETS))
#: Where ``configs/*.yaml`` live inside an installed kzoo (``pyproject.toml`` ships the repository's ``configs/``).
PACKAGED_CONFIGS = "kzoo.configs"
#: The shapes of the built-in shapes data (``data.shapes_classes``, kzoo.data.shapes).
SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "ring")
#: A plain name (``name``: the demo's folder ``runs/demo/<name>``, the default SavedModel name): letters, digits,
#: ``-``, ``_`` and ``.``, not ``.`` or ``..``.
PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def check_plain_name(key: str, value: str) -> None:
    """ConfigError naming ``key`` unless ``value`` is a plain name (:data:`PLAIN_NAME`, not ``.``/``..``): a name
    that is used as a folder or file name never leaves the folder it is meant for (``runs/demo/<name>``)."""
    if not isinstance(value, str) or not PLAIN_NAME.fullmatch(value) or value in (".", ".."):
        raise ConfigError(
            f"config key '{key}' must be a plain name (letters, digits, '-', '_', '.'; not '.' or '..'), got {value!r}"
        )


def check_output_dir(value: str) -> None:
    """ConfigError unless ``output_dir`` is a non-empty path (an empty one would write the run into the current
    folder)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"config key 'output_dir' must be a folder path, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which network to build (see ``kzoo.models.nin``)."""

    family: str = "nin"
    variant: str = "mnist"
    blocks: tuple[BlockSpec, ...] | None = None
    #: keys renamed here (read with a DeprecationWarning): the class count has one name in both families
    moved_fields: ClassVar[dict[str, str]] = {"classes": "num_classes"}

    num_classes: int = 10  # the width of the score output, as kzoo.applications.NIN's num_classes
    input_shape: tuple[int, int, int] = (28, 28, 1)
    dropout_rate: float = 0.5
    use_batch_norm: bool = False
    # the weights training starts from: a registered name (fashion_mnist) or a .weights.h5 file of this
    # architecture with any class count (the class stage is reset when it differs); None: random
    init_weights: str | None = None

    def __post_init__(self) -> None:
        check_choice("model.family", self.family, ("nin",))
        check_count("model.num_classes", self.num_classes, 2)
        check_fraction("model.dropout_rate", self.dropout_rate, high_open=True)  # 1 would divide by 0
        if len(self.input_shape) != 3:
            raise ConfigError(
                f"config key 'model.input_shape' must be [height, width, channels], got {list(self.input_shape)}"
            )
        for side in self.input_shape:
            check_count("model.input_shape", side)
        for block in self.blocks or ():
            for width in block.filters:
                check_count("model.blocks.filters", width)
            check_count("model.blocks.kernel_size", block.kernel_size)
            check_count("model.blocks.strides", block.strides)
            check_choice("model.blocks.padding", block.padding, ("same", "valid"))


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where examples come from and how they are augmented (see ``kzoo.data.classification``)."""

    source: str = "shapes"
    tfds_name: str | None = None
    data_dir: str | None = None
    train_split: str = "train"
    eval_split: str = "test"
    train_examples: int | None = None
    eval_examples: int | None = None
    image_size: int = 32
    crop_padding: int = 0
    horizontal_flip: bool = False
    shuffle_buffer: int = 10_000

    def __post_init__(self) -> None:
        check_choice("data.source", self.source, CLASSIFICATION_SOURCES)
        check_count("data.train_examples", self.train_examples)
        check_count("data.eval_examples", self.eval_examples)
        # the built-in shapes are drawn on at least 16 x 16 pixels
        check_count("data.image_size", self.image_size, 16 if self.source == "shapes" else 1)
        check_count("data.crop_padding", self.crop_padding, 0)
        check_count("data.shuffle_buffer", self.shuffle_buffer, 1, INT64_MAX)


@dataclasses.dataclass(frozen=True)
class PhaseConfig:
    """One phase of a run that changes what trains (e.g. 10 epochs ``heads``, then 20 ``all`` at a lower rate)."""

    epochs: int
    trainable_layers: str = "all"
    learning_rate: float | None = None  # peak of this phase (None: train.learning_rate)

    def __post_init__(self) -> None:
        check_count("train.phases.epochs", self.epochs)
        check_choice("train.phases.trainable_layers", self.trainable_layers, TRAINABLE_LAYERS)
        check_finite("train.phases.learning_rate", self.learning_rate, 0.0, low_open=True)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimization: batch, schedule, regularization, precision."""

    epochs: int = 10
    batch_size: int = 128  # per replica; the global batch is this times the number of replicas
    optimizer: str = "sgd"  # sgd | adamw
    learning_rate: float = 0.05  # peak, for the global batch
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | step | constant
    warmup_epochs: float = 1.0
    step_epochs: tuple[int, ...] = ()
    step_factor: float = 0.1
    label_smoothing: float = 0.0
    gradient_clip_norm: float | None = None  # clip the all-reduced gradients' global norm
    jit_compile: bool = False  # XLA for the replica step (Mask R-CNN needs model.roi_align.method: gather)
    eval_every_epochs: int = 0  # evaluate every n epochs during training (0: after the last only)
    seed: int = 0
    trainable_layers: str = "all"  # see TRAINABLE_LAYERS
    # phases: each its own trainable layers and peak learning rate (schedule and step_epochs applied within each
    # phase, warmup in the first); train.epochs becomes the sum of the phases' epochs
    phases: tuple[PhaseConfig, ...] = ()

    def __post_init__(self) -> None:
        check_choice("train.trainable_layers", self.trainable_layers, TRAINABLE_LAYERS)
        if self.phases:
            object.__setattr__(self, "epochs", sum(phase.epochs for phase in self.phases))
        check_count("train.epochs", self.epochs)
        check_count("train.batch_size", self.batch_size)
        check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        check_finite("train.learning_rate", self.learning_rate, 0.0, low_open=True)
        check_fraction("train.momentum", self.momentum)
        check_finite("train.weight_decay", self.weight_decay, 0.0)
        check_choice("train.schedule", self.schedule, SCHEDULES)
        check_finite("train.warmup_epochs", self.warmup_epochs, 0.0)
        check_fraction("train.step_factor", self.step_factor)
        check_range("train.step_factor", self.step_factor, 0.0, 1.0, low_open=True)
        check_fraction("train.label_smoothing", self.label_smoothing)
        check_finite("train.gradient_clip_norm", self.gradient_clip_norm, 0.0, low_open=True)
        check_count("train.eval_every_epochs", self.eval_every_epochs, 0)
        check_count("train.seed", self.seed, 0, 2**32 - 1)  # NumPy's seed range (keras.utils.set_random_seed)
        if any(epoch < 1 for epoch in self.step_epochs):
            raise ConfigError(f"config key 'train.step_epochs' must hold epochs >= 1, got {list(self.step_epochs)}")
        for epoch in self.step_epochs:
            check_count("train.step_epochs", epoch)


@dataclasses.dataclass(frozen=True)
class StrategyConfig:
    """How training is distributed: auto | mirrored | multi_worker | one_device."""

    kind: str = "auto"
    devices: tuple[str, ...] | None = None  # for mirrored / one_device; default: all GPUs

    def __post_init__(self) -> None:
        check_choice("strategy.kind", self.kind, STRATEGY_KINDS)
        if self.devices is not None and not self.devices:
            raise ConfigError("config key 'strategy.devices' must name at least one device (or be left out)")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One reproducible run."""

    task: str = "classification"
    name: str = "experiment"
    output_dir: str = "runs/experiment"
    precision: str = "float32"  # float32 | bfloat16 | float16 (mixed: float32 variables)
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    strategy: StrategyConfig = StrategyConfig()

    def __post_init__(self) -> None:
        check_plain_name("name", self.name)
        check_output_dir(self.output_dir)
        check_choice("precision", self.precision, PRECISIONS)
        stages = {phase.trainable_layers for phase in self.train.phases} | {self.train.trainable_layers}
        if stages - set(NIN_TRAINABLE_PRESETS):
            raise ConfigError(
                f"config key 'train.trainable_layers': NIN trains 'heads' (its last block) or 'all', "
                f"got {sorted(stages - set(NIN_TRAINABLE_PRESETS))}"
            )


@dataclasses.dataclass(frozen=True)
class DetectionDataConfig:
    """Instance-segmentation data (see ``kzoo.data.detection_sources``); images are resized by the model config's
    ``input.min_size``/``input.max_size`` rule and padded to a square canvas of ``input.max_size`` rounded up to
    ``input.size_divisible``.

    ``source``: ``shapes`` (built-in, generated from ``seed``), ``coco`` (a COCO-format json and an image folder
    per split), ``tfds`` (``tfds_name`` with masks, e.g. ``coco/2017_panoptic``), or the files annotation tools
    write: ``labelme`` (``*_annotations``: a folder of labelme json files), ``via`` (``*_annotations``: a VGG Image
    Annotator 2.x project json, ``*_images``: its image folder) or ``yolo`` (``*_annotations``: a folder of YOLO
    segmentation txt files, ``*_images``: the image folder, class names from ``yolo_data_yaml`` or ``class_names``).
    """

    source: str = "shapes"
    # shapes
    shapes_image_size: int = 128
    shapes_max_instances: int = 4
    shapes_classes: tuple[str, ...] = ("circle", "square", "triangle")  # any of circle square triangle cross ring
    # coco, labelme, via, yolo
    train_annotations: str | None = None
    train_images: str | None = None
    eval_annotations: str | None = None
    eval_images: str | None = None
    # labelme / via / yolo: the class of each label, in label order (None: labelme/via discover the labels and
    # sort them; yolo reads the names of yolo_data_yaml)
    class_names: tuple[str, ...] | None = None
    yolo_data_yaml: str | None = None
    # via: the region attribute that holds the class (default: the project's only attribute, else an error listing
    # them); regions without it are dropped and counted
    class_attribute: str | None = None
    check_images: str = "header"  # exists | header (size and format) | full (decode every image once)
    # tfds
    tfds_name: str | None = None
    data_dir: str | None = None
    train_split: str = "train"
    eval_split: str = "validation"
    # shared
    train_examples: int | None = 2000  # shapes: generated; others: a cap (None: all)
    eval_examples: int | None = 200
    skip_empty: bool = False  # drop training images without instances
    max_instances: int = 100
    mask_size: int = 56
    shuffle_buffer: int = 1000
    # augmentation (training only)
    horizontal_flip: bool = True
    # random scale factor range of the image fitted to the canvas, then a random crop / pad back to the canvas
    # (TF Model Garden: [0.5, 2.0]; torchvision's large-scale jitter: [0.1, 2.0]); None: no scale jitter
    scale_jitter: tuple[float, float] | None = None
    min_box_size: float = 2.0  # instances cut by the crop to a box side below this (pixels) are dropped
    # photometric jitter, as torchvision's ColorJitter: brightness/contrast/saturation factors drawn from
    # [1 - x, 1 + x], hue shifted by up to x (<= 0.5) of the color wheel; 0: off
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self) -> None:
        check_choice("data.source", self.source, DETECTION_SOURCES)
        check_choice("data.check_images", self.check_images, CHECK_IMAGES)
        check_count("data.shapes_image_size", self.shapes_image_size, 32)  # shapes are drawn on >= 32 x 32
        check_count("data.shapes_max_instances", self.shapes_max_instances)
        if not self.shapes_classes:
            raise ConfigError("config key 'data.shapes_classes' must name at least one shape")
        for name in self.shapes_classes:
            check_choice("data.shapes_classes", name, SHAPE_CLASSES)
        if len(set(self.shapes_classes)) != len(self.shapes_classes):
            raise ConfigError(f"config key 'data.shapes_classes' names a shape twice: {list(self.shapes_classes)}")
        check_count("data.train_examples", self.train_examples)
        check_count("data.eval_examples", self.eval_examples)
        check_count("data.max_instances", self.max_instances)
        check_count("data.mask_size", self.mask_size)
        check_count("data.shuffle_buffer", self.shuffle_buffer, 1, INT64_MAX)
        problem = augmentation_problem(
            self.scale_jitter, self.min_box_size, self.brightness, self.contrast, self.saturation, self.hue
        )
        if problem is not None:
            raise ConfigError(f"config key 'data.{problem[0]}' {problem[1]}")


@dataclasses.dataclass(frozen=True)
class MaskRCNNExperimentConfig:
    """One reproducible Mask R-CNN run (``task: mask_rcnn`` in the YAML file)."""

    task: str = "mask_rcnn"
    name: str = "mask_rcnn"
    output_dir: str = "runs/mask_rcnn"
    # bfloat16: the backbone, FPN and heads compute in bfloat16, box geometry in float32 (MaskRCNNConfig's
    # compute_dtype, set from here); float16 is not offered for Mask R-CNN
    precision: str = "float32"
    model: MaskRCNNConfig = MaskRCNNConfig()
    data: DetectionDataConfig = DetectionDataConfig()
    train: TrainConfig = TrainConfig()
    strategy: StrategyConfig = StrategyConfig()

    def __post_init__(self) -> None:
        check_plain_name("name", self.name)
        check_output_dir(self.output_dir)
        check_choice("precision", self.precision, ("float32", "bfloat16"))
        stages = {phase.trainable_layers for phase in self.train.phases} | {self.train.trainable_layers}
        resnet_stages = sorted(stages & set(RESNET_STAGE_PRESETS))
        if resnet_stages and not self.model.backbone.name.startswith("resnet"):
            raise ConfigError(
                f"config key 'train.trainable_layers': {resnet_stages} name ResNet stages, but model.backbone is "
                f"{self.model.backbone.name!r} (use heads or all)"
            )
        if self.model.compute_dtype != self.precision:  # config_from_dict sets it from precision
            raise ConfigError(
                f"config key 'model.compute_dtype' ({self.model.compute_dtype!r}) must be the top-level "
                f"'precision' ({self.precision!r}); build the config with kzoo.config.config_from_dict, which sets it"
            )


#: The experiment dataclass of each ``task`` (the built-in ones here, so that configs load without importing
#: the tasks, which import TensorFlow; others come with :func:`kzoo.tasks.registry.register_task`).
TASKS: dict[str, type] = {"classification": ExperimentConfig, "mask_rcnn": MaskRCNNExperimentConfig}


def register_experiment(task: str, config_class: type) -> None:
    """Make configs with ``task: <task>`` load into ``config_class`` (a dataclass)."""
    if not dataclasses.is_dataclass(config_class):
        raise TypeError(f"the config class of task {task!r} must be a dataclass, got {config_class!r}")
    known = TASKS.get(task)
    if known is not None and known.__qualname__ != config_class.__qualname__:
        raise ValueError(f"task {task!r} loads into {known.__qualname__} already")
    TASKS[task] = config_class


#: Keys that moved, with where they went (an old config gets an error that says so).
MOVED_KEYS = {
    "train.mixed_precision": "the top-level key 'precision' (float32 | bfloat16 | float16)",
}
#: ``model.compute_dtype`` of a Mask R-CNN config follows the top-level ``precision`` (set by config_from_dict).
COMPUTE_DTYPE_MOVED = (
    "config key 'model.compute_dtype' has moved: use the top-level key 'precision' (float32 | bfloat16)"
)


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config override '{dotted}': '{part}' is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict:
    """Turn ``["train.epochs=3", "model.variant=cifar10"]`` into a nested dict (values parsed as YAML)."""
    tree: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        _set_path(tree, key.strip(), yaml.safe_load(raw))
    return tree


def config_from_dict(values: dict) -> ExperimentConfig | MaskRCNNExperimentConfig:
    """Validate a nested dict into the experiment dataclass of its ``task`` (default ``classification``);
    unknown keys are errors naming the key."""
    task = values.get("task", "classification")
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r} (config key 'task'); known tasks: {sorted(TASKS)}")
    if task == "mask_rcnn":
        values = _compute_dtype_from_precision(_num_classes_from_data(values))
    return dataclass_from_dict(TASKS[task], values, moved_keys=MOVED_KEYS)


def _compute_dtype_from_precision(values: dict) -> dict:
    """A Mask R-CNN config's ``model.compute_dtype`` is its top-level ``precision`` (one setting), put into the
    ``model`` section before the frozen dataclasses are built. A bad ``precision`` is left for the experiment's
    check to name."""
    model = values.get("model")
    if model is not None and not isinstance(model, dict):
        return values  # the loader names the bad section
    if model and "compute_dtype" in model:
        raise ConfigError(COMPUTE_DTYPE_MOVED)
    precision = values.get("precision", MaskRCNNExperimentConfig.precision)
    if precision not in ("float32", "bfloat16"):
        return values
    return {**values, "model": {**(model or {}), "compute_dtype": precision}}


def _num_classes_from_data(values: dict) -> dict:
    """A Mask R-CNN config without ``model.num_classes`` takes it from its data: the built-in shapes' classes + 1
    here; for file sources ``None``, which the task replaces by the data's categories + 1 once it reads them
    (:class:`kzoo.tasks.instance_segmentation.InstanceSegmentationTask`)."""
    model = values.get("model")
    if model is not None and not isinstance(model, dict):
        return values  # the loader names the bad section
    if model and "num_classes" in model:
        return values
    data: dict = values["data"] if isinstance(values.get("data"), dict) else {}
    if data.get("source", DetectionDataConfig.source) == "shapes":
        classes = data.get("shapes_classes", DetectionDataConfig.shapes_classes)
        number = len(classes) + 1 if isinstance(classes, (list, tuple)) else None
    else:
        number = None
    return {**values, "model": {**(model or {}), "num_classes": number}}


def _packaged_config_dir():
    """The folder of the configs shipped with kzoo: ``kzoo.configs`` in an installed package, else the
    repository's ``configs/`` beside the package (source checkouts and editable installs)."""
    try:
        return importlib.resources.files(PACKAGED_CONFIGS)
    except ModuleNotFoundError:
        return pathlib.Path(__file__).resolve().parent.parent / "configs"


def packaged_configs() -> list[str]:
    """Names of the configs shipped with kzoo (``configs/*.yaml`` of the repository)."""
    folder = _packaged_config_dir()
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def _packaged_name(path: str) -> str | None:
    """The shipped config ``path`` may stand for: a bare ``NAME.yaml`` / ``NAME``, or ``configs/NAME.yaml`` exactly
    as the README writes it (``./configs/NAME.yaml`` too); ``None`` for any other path."""
    if os.sep in path or (os.altsep and os.altsep in path):
        folder, name = os.path.split(os.path.normpath(path))
        return name if folder == "configs" and name.endswith(".yaml") else None
    return path if path.endswith(".yaml") else path + ".yaml"


def resolve_config_path(path: str | os.PathLike) -> str:
    """``path`` if it is a file; a run folder's ``config.yaml`` (every run writes the config it was trained with
    into its ``output_dir``); else, for a bare ``NAME.yaml`` / ``NAME`` or exactly ``configs/NAME.yaml``, the
    copy shipped with kzoo (so the README's commands work after ``pip install .``, from any folder). Any other
    path that does not exist is an error: ``my/configs/x.yaml`` never silently runs the shipped ``x.yaml``.

    Raises:
        FileNotFoundError: the file does not exist (and is no shipped config); the message names ``path`` and,
            for a bare name or ``configs/NAME.yaml``, lists the shipped configs.
        IsADirectoryError: ``path`` is a folder without a ``config.yaml``.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        run_config = os.path.join(path, "config.yaml")
        if os.path.isfile(run_config):
            return run_config
        raise IsADirectoryError(
            f"config path {path} is a folder without a config.yaml (give a YAML file, or a run "
            "folder: the output_dir of a run)"
        )
    name = _packaged_name(path)
    if name is None:
        raise FileNotFoundError(f"config file not found: {path}")
    if name in packaged_configs():
        return str(_packaged_config_dir() / name)
    raise FileNotFoundError(f"config file not found: {path} (kzoo ships: {', '.join(packaged_configs())})")


def load_config(
    path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (), task: str | None = None
) -> ExperimentConfig | MaskRCNNExperimentConfig:
    """Load a YAML config file (or a config shipped with kzoo, see :func:`resolve_config_path`) and apply
    ``key=value`` overrides.

    ``task``: the task of a file without a ``task:`` key (default ``classification``), e.g. ``"mask_rcnn"`` for
    a model config that holds only a ``model:`` section (``configs/mask_rcnn_r50_fpn.yaml``); a model's config
    is the loaded experiment's ``.model`` (``kzoo.applications.MaskRCNN(config=path)`` reads it so).

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: bad YAML, an unknown key, a value of the wrong type or out of range (named).
    """
    path = resolve_config_path(path)
    with open(path) as f:
        try:
            values = yaml.safe_load(f) or {}
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ConfigError(f"{path} is not valid YAML{at}: {problem}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    if task is not None and "task" not in values:
        values = {"task": task, **values}
    return config_from_dict(merged(values, parse_overrides(overrides)))


def config_to_dict(config: Any) -> dict:
    """A plain, YAML-serializable dict of a config."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    values = {k: plain(v) for k, v in dataclasses.asdict(config).items()}
    if isinstance(config, MaskRCNNExperimentConfig):
        values["model"].pop("compute_dtype")  # set from the top-level precision
    return values
