"""Learning-rate schedules: warmup then cosine / step / constant, and one schedule per phase."""

import keras
import numpy as np
import pytest

from kzoo.training.schedules import PhasedSchedule, WarmupSchedule


def test_warmup_cosine_and_step_schedules():
    cosine = WarmupSchedule(1.0, total_steps=110, warmup_steps=10)
    values = [float(cosine(s)) for s in (0, 9, 10, 60, 110)]
    np.testing.assert_allclose(values, [0.1, 1.0, 1.0, 0.5, 0.0], atol=1e-6)
    step = WarmupSchedule(1.0, total_steps=100, kind="step", step_boundaries=[50, 75], step_factor=0.1)
    np.testing.assert_allclose([float(step(s)) for s in (0, 49, 50, 80)], [1.0, 1.0, 0.1, 0.01], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown schedule"):
        WarmupSchedule(1.0, 10, kind="linear")


def test_constant_with_warmup_and_bad_step_counts():
    constant = WarmupSchedule(0.5, total_steps=10, warmup_steps=4, kind="constant")
    np.testing.assert_allclose([float(constant(s)) for s in (0, 3, 4, 9, 50)], [0.125, 0.5, 0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="total_steps >= 1 and warmup_steps >= 0"):
        WarmupSchedule(1.0, 0)
    with pytest.raises(ValueError, match="total_steps >= 1 and warmup_steps >= 0"):
        WarmupSchedule(1.0, 10, warmup_steps=-1)


def test_phases_run_their_own_schedule_on_their_own_step_count():
    first = WarmupSchedule(1.0, total_steps=10, kind="constant")
    second = WarmupSchedule(0.1, total_steps=20, kind="cosine")
    phased = PhasedSchedule([0, 10], [first, second])
    values = [float(phased(s)) for s in (0, 9, 10, 20, 30)]
    np.testing.assert_allclose(values, [1.0, 1.0, 0.1, 0.05, 0.0], atol=1e-6)
    for starts, schedules in (([5, 10], [first, second]), ([0], [first, second]), ([0, 10, 5], [first, second, first])):
        with pytest.raises(ValueError, match="increasing phase starts from 0"):
            PhasedSchedule(starts, schedules)


def test_schedules_round_trip_through_keras_serialization():
    phased = PhasedSchedule([0, 4], [WarmupSchedule(1.0, 4, warmup_steps=2), WarmupSchedule(0.5, 8, kind="step")])
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(phased))
    assert isinstance(restored, PhasedSchedule) and restored.get_config() == phased.get_config()
    steps = (0, 1, 3, 4, 11)
    np.testing.assert_allclose([float(restored(s)) for s in steps], [float(phased(s)) for s in steps])
