"""Learning-rate schedules: linear warmup followed by cosine decay or steps."""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras


@keras.saving.register_keras_serializable(package="kzoo")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to ``peak`` over ``warmup_steps``, then ``cosine``, ``step`` or ``constant``.

    - cosine: ``peak * 0.5 * (1 + cos(pi * t))``, ``t`` from 0 to 1 over the remaining steps.
    - step: ``peak * factor ** k`` after the ``k``-th boundary in ``step_boundaries`` (in steps).
    """

    def __init__(
        self,
        peak: float,
        total_steps: int,
        warmup_steps: int = 0,
        kind: str = "cosine",
        step_boundaries: Sequence[int] = (),
        step_factor: float = 0.1,
    ) -> None:
        if kind not in ("cosine", "step", "constant"):
            raise ValueError(f"unknown schedule {kind!r}; use 'cosine', 'step' or 'constant'")
        if total_steps < 1 or warmup_steps < 0:
            raise ValueError(f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps}, {warmup_steps}")
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.kind = kind
        self.step_boundaries = [int(b) for b in step_boundaries]
        self.step_factor = float(step_factor)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        if self.kind == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            t = keras.ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            rate = 0.5 * self.peak * (1.0 + keras.ops.cos(math.pi * t))
        elif self.kind == "step":
            passed = sum((keras.ops.cast(step >= b, "float32") for b in self.step_boundaries), 0.0)
            rate = self.peak * keras.ops.power(self.step_factor, passed)
        else:
            rate = keras.ops.convert_to_tensor(self.peak, "float32")
        if self.warmup_steps > 0:
            warm = self.peak * (step + 1.0) / self.warmup_steps
            rate = keras.ops.where(step < self.warmup_steps, warm, rate)
        return rate

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "kind": self.kind,
            "step_boundaries": self.step_boundaries,
            "step_factor": self.step_factor,
        }


@keras.saving.register_keras_serializable(package="kzoo")
class PhasedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """One schedule per phase of a run: phase ``i`` runs ``schedules[i]`` on its own step count, from step
    ``starts[i]`` (``starts[0] == 0``) to the next phase's start."""

    def __init__(self, starts: Sequence[int], schedules: Sequence[keras.optimizers.schedules.LearningRateSchedule]):
        if not starts or int(starts[0]) != 0 or len(starts) != len(schedules) or list(starts) != sorted(starts):
            raise ValueError(f"need increasing phase starts from 0, one per schedule; got {list(starts)}")
        self.starts = [int(s) for s in starts]
        self.schedules = list(schedules)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        rate = self.schedules[0](step)
        for start, schedule in zip(self.starts[1:], self.schedules[1:]):
            rate = keras.ops.where(step >= start, schedule(step - start), rate)
        return rate

    def get_config(self) -> dict:
        return {"starts": self.starts, "schedules": [keras.saving.serialize_keras_object(s) for s in self.schedules]}

    @classmethod
    def from_config(cls, config: dict) -> PhasedSchedule:
        return cls(config["starts"], [keras.saving.deserialize_keras_object(s) for s in config["schedules"]])
