"""Tasks: one per model family, each owning its model, data, train step, evaluation, export, prediction and demo
behind one contract (:class:`kzoo.tasks.base.Task`), registered by the config's ``task:`` name.

``task_for(config)`` gives the task of a config (``task: classification``, ``task: mask_rcnn``, or any task
registered with :func:`register_task`); ``train(config)`` runs the one training loop
(:func:`kzoo.training.loop.train`) on it.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from kzoo.tasks.base import Table, Task
from kzoo.tasks.classification import ClassificationTask
from kzoo.tasks.instance_segmentation import InstanceSegmentationTask
from kzoo.tasks.registry import TASKS, register_task, task_for
from kzoo.training import loop


def train(
    config: Any, verbose: int = 1, strategy: tf.distribute.Strategy | None = None, fresh: bool = False
) -> dict[str, Any]:
    """Train ``config`` (see :func:`kzoo.training.loop.train`)."""
    return loop.train(task_for(config), verbose=verbose, strategy=strategy, fresh=fresh)


__all__ = [
    "TASKS",
    "ClassificationTask",
    "InstanceSegmentationTask",
    "Table",
    "Task",
    "register_task",
    "task_for",
    "train",
]
