import keras
import numpy as np

from kzoo.layers.initializers import independent_initializer


def test_copies_of_an_unseeded_initializer_draw_different_values():
    shared = keras.initializers.HeNormal()
    assert np.array_equal(shared((4, 4)), shared((4, 4)))  # the Keras behaviour this module works around
    a, b = independent_initializer(shared, 0), independent_initializer(shared, 1)
    assert isinstance(a, keras.initializers.HeNormal) and a is not shared
    assert not np.array_equal(a((4, 4)), b((4, 4)))
    assert not np.array_equal(
        independent_initializer("he_normal", 0)((4, 4)), independent_initializer("he_normal", 0)((4, 4))
    )


def test_seeded_copies_are_reproducible_and_distinct():
    seeded = keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal", seed=7)
    first = independent_initializer(seeded, 3)
    assert first.get_config() == {**seeded.get_config(), "seed": 10}
    np.testing.assert_array_equal(first((5, 5)), independent_initializer(seeded, 3)((5, 5)))
    np.testing.assert_array_equal(independent_initializer(seeded, 0)((5, 5)), seeded((5, 5)))
    assert not np.array_equal(first((5, 5)), independent_initializer(seeded, 4)((5, 5)))


def test_initializers_without_randomness_are_copied_as_they_are():
    np.testing.assert_array_equal(independent_initializer("zeros", 5)((2, 3)), np.zeros((2, 3)))
    constant = independent_initializer(keras.initializers.Constant(0.25), 2)
    np.testing.assert_array_equal(constant((2,)), [0.25, 0.25])
