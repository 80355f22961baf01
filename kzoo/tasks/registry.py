"""Tasks found by name: :func:`register_task` (a class decorator) and :func:`task_for` (the task of a config).

Registering a task also registers its experiment dataclass with the config loader (:data:`kzoo.config.TASKS`), so
a YAML file whose ``task:`` names it loads, and the CLI runs it, with nothing else to edit.
"""

from __future__ import annotations

import os
from typing import Any

from kzoo.config import register_experiment
from kzoo.tasks.base import Task

#: The registered tasks, by the config's ``task:`` name.
TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Register ``cls`` (a :class:`Task` with ``name`` and ``config_class``) under ``cls.name``."""
    if not (isinstance(getattr(cls, "name", None), str) and isinstance(getattr(cls, "config_class", None), type)):
        raise TypeError(f"{cls.__name__} needs the class attributes name (str) and config_class (a dataclass)")
    known = TASKS.get(cls.name)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise ValueError(f"task {cls.name!r} is registered already ({known.__module__}.{known.__qualname__})")
    TASKS[cls.name] = cls
    register_experiment(cls.name, cls.config_class)
    return cls


def task_for(config: Any) -> Task:
    """The task object of ``config`` (by its ``task`` field)."""
    name = getattr(config, "task", None)
    if name not in TASKS:
        raise ValueError(f"no task {name!r} is registered; known tasks: {sorted(TASKS)}")
    return TASKS[name](config)


def saved_model_version_dir(saved_model: str) -> str:
    """The version folder of ``saved_model`` (a TF Serving model folder: its highest version; or a version
    folder itself); FileNotFoundError when it holds no SavedModel."""
    from kzoo.export.serving import latest_version_dir

    if os.path.isfile(os.path.join(saved_model, "saved_model.pb")):
        return saved_model
    latest = latest_version_dir(saved_model) if os.path.isdir(saved_model) else None
    if latest is None:
        raise FileNotFoundError(f"no SavedModel in {saved_model} (export one: kzoo export CONFIG)")
    return latest


def task_class_for_saved_model(saved_model: str) -> type[Task]:
    """The registered task whose SavedModels have the ``serving_default`` outputs of ``saved_model``'s (its
    :attr:`Task.saved_model_outputs`), read from ``saved_model.pb`` without loading the graph.

    Raises:
        FileNotFoundError: no SavedModel there.
        ValueError: not a SavedModel any registered task wrote, naming its outputs.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    version_dir = saved_model_version_dir(saved_model)
    proto = saved_model_pb2.SavedModel()
    try:
        with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
    except Exception as error:  # noqa: BLE001 - protobuf's DecodeError and friends: one line naming the file
        raise ValueError(f"{version_dir}/saved_model.pb is not a readable SavedModel: {error}") from None
    outputs: set[str] = set()
    for graph in proto.meta_graphs:
        if "serving_default" in graph.signature_def:
            outputs |= set(graph.signature_def["serving_default"].outputs)
    for cls in TASKS.values():
        if cls.saved_model_outputs and cls.saved_model_outputs <= outputs:
            return cls
    raise ValueError(
        f"{version_dir} is not a SavedModel kzoo exported (serving_default outputs: {sorted(outputs) or 'none'}); "
        f"kzoo knows the SavedModels of the tasks {sorted(name for name, c in TASKS.items() if c.saved_model_outputs)}"
    )
