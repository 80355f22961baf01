"""Where ops run: the device test shared by the ops that keep TF's own kernel on a GPU."""

from __future__ import annotations

import tensorflow as tf


def runs_on_gpu(tensor: tf.Tensor) -> bool:
    """Whether ops placed beside ``tensor`` run on a GPU: its device when set (eager, or an explicit
    ``tf.device`` in a graph), else whether TF sees a GPU (the placer then prefers it)."""
    device = getattr(tensor, "device", "") or ""
    if device:
        return tf.DeviceSpec.from_string(device).device_type == "GPU"
    return bool(tf.config.list_logical_devices("GPU"))
