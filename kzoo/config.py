"""Experiment configs: YAML files loaded into frozen dataclasses, validated key by key."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any

import yaml

from kzoo.models.mask_rcnn_config import MaskRCNNConfig


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which network to build (see ``kzoo.models.nin``)."""

    family: str = "nin"
    variant: str = "mnist"
    blocks: tuple[dict, ...] | None = None
    classes: int = 10
    input_shape: tuple[int, int, int] = (28, 28, 1)
    dropout_rate: float = 0.5
    use_batch_norm: bool = False


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
    mixed_precision: str = "none"  # none | bfloat16 | float16
    gradient_clip_norm: float | None = None  # clip the all-reduced gradients' global norm
    jit_compile: bool = False  # XLA for the replica step (Mask R-CNN needs model.roi_method: gather)
    eval_every_epochs: int = 0  # evaluate every n epochs during training (0: after the last only)
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class StrategyConfig:
    """How training is distributed: auto | mirrored | multi_worker | one_device."""

    kind: str = "auto"
    devices: tuple[str, ...] | None = None  # for mirrored / one_device; default: all GPUs


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One reproducible run."""

    task: str = "classification"
    name: str = "experiment"
    output_dir: str = "runs/experiment"
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    strategy: StrategyConfig = StrategyConfig()


@dataclasses.dataclass(frozen=True)
class DetectionDataConfig:
    """Instance-segmentation data (see ``kzoo.data.detection``); images are resized by the model config's
    ``min_size``/``max_size`` rule and padded to a square canvas of ``max_size`` rounded up to ``size_divisible``.

    ``source``: ``shapes`` (built-in, generated from ``seed``), ``coco`` (a COCO-format json and an image folder
    per split) or ``tfds`` (``tfds_name`` with masks, e.g. ``coco/2017_panoptic``).
    """

    source: str = "shapes"
    # shapes
    shapes_image_size: int = 128
    shapes_max_instances: int = 4
    # coco
    train_annotations: str | None = None
    train_images: str | None = None
    eval_annotations: str | None = None
    eval_images: str | None = None
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
    horizontal_flip: bool = True
    shuffle_buffer: int = 1000


@dataclasses.dataclass(frozen=True)
class MaskRCNNExperimentConfig:
    """One reproducible Mask R-CNN run (``task: mask_rcnn`` in the YAML file)."""

    task: str = "mask_rcnn"
    name: str = "mask_rcnn"
    output_dir: str = "runs/mask_rcnn"
    model: MaskRCNNConfig = MaskRCNNConfig()
    data: DetectionDataConfig = DetectionDataConfig()
    train: TrainConfig = TrainConfig()
    strategy: StrategyConfig = StrategyConfig()


#: The experiment dataclass of each ``task``.
TASKS: dict[str, type] = {"classification": ExperimentConfig, "mask_rcnn": MaskRCNNExperimentConfig}


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


def _convert(value: Any, annotation: Any, key: str) -> Any:
    """Check and convert a YAML value to a field's annotated type."""
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return dataclass_from_dict(annotation, value, key + ".")
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        item = args[0]
        return tuple(_convert(v, item, key) for v in value)
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, str, bool, dict) and not (isinstance(value, annotation) and not (
        annotation is int and isinstance(value, bool)
    )):
        raise ConfigError(f"config key '{key}' must be {annotation.__name__}, got {value!r}")
    return value


def dataclass_from_dict(cls: type, values: dict, prefix: str = "") -> Any:
    """Build the (frozen) dataclass ``cls`` from a nested dict, checking every key and value type.

    Raises:
        ConfigError: an unknown key or a value of the wrong type, named with ``prefix``.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<top>'}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            raise ConfigError(f"unknown config key '{prefix}{key}'; known keys here: {sorted(fields)}")
    kwargs = {name: _convert(values[name], hints[name], prefix + name) for name in values}
    return cls(**kwargs)


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


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_from_dict(values: dict) -> ExperimentConfig | MaskRCNNExperimentConfig:
    """Validate a nested dict into the experiment dataclass of its ``task`` (default ``classification``);
    unknown keys are errors naming the key."""
    task = values.get("task", "classification")
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r} (config key 'task'); known tasks: {sorted(TASKS)}")
    return dataclass_from_dict(TASKS[task], values)


def load_config(
    path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()
) -> ExperimentConfig | MaskRCNNExperimentConfig:
    """Load a YAML config file and apply ``key=value`` overrides.

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: bad YAML, an unknown key or a value of the wrong type (named).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path) as f:
        try:
            values = yaml.safe_load(f) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return config_from_dict(_merge(values, parse_overrides(overrides)))


def config_to_dict(config: Any) -> dict:
    """A plain, YAML-serializable dict of a config."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}
