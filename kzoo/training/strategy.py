"""Choosing a ``tf.distribute`` strategy from the config."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from kzoo.config import STRATEGY_KINDS  # the config's choices (``strategy.kind``), checked again here


def make_strategy(kind: str = "auto", devices: tuple[str, ...] | list[str] | None = None) -> tf.distribute.Strategy:
    """Build the distribution strategy named by ``kind``.

    - ``auto``: ``MirroredStrategy`` over all visible GPUs when there is at least
      one, else the default (single-device) strategy.
    - ``mirrored``: ``MirroredStrategy`` over ``devices`` (default: all GPUs, or the CPU).
    - ``multi_worker``: ``MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG``.
    - ``one_device``: ``OneDeviceStrategy`` on ``devices[0]`` (default: first GPU, else CPU).
    """
    if kind not in STRATEGY_KINDS:
        raise ValueError(f"unknown strategy {kind!r}; choose one of {STRATEGY_KINDS}")
    # listing devices initializes the TF runtime, after which MultiWorkerMirroredStrategy can no longer
    # configure its collective ops ("Collective ops must be configured at program startup"): list them lazily
    if kind == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if gpus else tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(list(devices) if devices else None)
    if kind == "one_device":
        device = devices[0] if devices else ("/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0")
        return tf.distribute.OneDeviceStrategy(device)
    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        raise ValueError("strategy 'multi_worker' needs the TF_CONFIG environment variable (cluster and task)")
    try:
        json.loads(tf_config)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints, logs and results (worker 0 of a multi-worker job)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)


def will_be_chief(kind: str) -> bool:
    """Whether this process will be the chief of the strategy ``kind`` makes (see :func:`is_chief`), known before
    the strategy exists (creating a ``MultiWorkerMirroredStrategy`` waits for every worker): for ``multi_worker``,
    read from ``TF_CONFIG`` (the ``chief`` task, else worker 0); every other kind runs one process, the chief.
    An unreadable ``TF_CONFIG`` counts as chief (``make_strategy`` then names the problem)."""
    if kind != "multi_worker":
        return True
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        task = tf_config.get("task") or {}
        task_type, index = task.get("type"), int(task.get("index", 0))
        has_chief = "chief" in (tf_config.get("cluster") or {})
    except (ValueError, TypeError, AttributeError):
        return True
    return task_type is None or task_type == "chief" or (task_type == "worker" and index == 0 and not has_chief)


def task_id(strategy: tf.distribute.Strategy) -> int:
    """This worker's index in a multi-worker job (0 otherwise)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(resolver.task_id) if resolver is not None and resolver.task_id is not None else 0
