"""Tasks: one per model family, each owning its model, data, train step, evaluation, export and predict wiring.

``task_for(config)`` picks the task of a config (``task: classification`` or ``task: mask_rcnn``);
``train(config)`` runs the one training loop (:func:`kzoo.training.loop.train`) on it.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from kzoo.config import ExperimentConfig, MaskRCNNExperimentConfig
from kzoo.tasks.classification import ClassificationTask
from kzoo.tasks.instance_segmentation import InstanceSegmentationTask
from kzoo.training import loop


def task_for(config: ExperimentConfig | MaskRCNNExperimentConfig) -> ClassificationTask | InstanceSegmentationTask:
    """The task object of ``config``."""
    if isinstance(config, MaskRCNNExperimentConfig):
        return InstanceSegmentationTask(config)
    return ClassificationTask(config)


def train(config: ExperimentConfig | MaskRCNNExperimentConfig, verbose: int = 1,
          strategy: tf.distribute.Strategy | None = None, fresh: bool = False) -> dict[str, Any]:
    """Train ``config`` (see :func:`kzoo.training.loop.train`)."""
    return loop.train(task_for(config), verbose=verbose, strategy=strategy, fresh=fresh)


__all__ = ["ClassificationTask", "InstanceSegmentationTask", "task_for", "train"]
