"""Tasks found by name: :func:`register_task` (a class decorator) and :func:`task_for` (the task of a config).

Registering a task also registers its experiment dataclass with the config loader (:data:`kzoo.config.TASKS`), so
a YAML file whose ``task:`` names it loads, and the CLI runs it, with nothing else to edit.
"""

from __future__ import annotations

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
