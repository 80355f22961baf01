"""Images of the bad-input corpus, shared by the per-surface test modules."""

import numpy as np


def pixels(shape, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """Random pixels in ``[0, 255]`` of ``shape`` and ``dtype``."""
    return np.random.default_rng(seed).integers(0, 256, size=shape).astype(dtype)


def with_value(shape, value, dtype=np.float32) -> np.ndarray:
    """:func:`pixels` with one entry set to ``value`` (NaN, inf, 300, -1...)."""
    images = pixels(shape, dtype)
    images.reshape(-1)[7] = value
    return images
