"""Independent copies of one initializer, for the many layers that one argument initializes.

A Keras 3 random initializer draws from a fixed seed (its own, or a default picked once when it is made), so one
instance handed to several layers gives every layer of the same shape *identical* weights: the 1 x 1 convolutions of
an mlpconv cascade, or the repeated bottleneck blocks of a ResNet stage, would start as copies of each other.
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["independent_initializer"]


def independent_initializer(initializer: Any, index: int) -> keras.initializers.Initializer:
    """A new initializer like ``initializer`` whose random draws do not repeat those of the other indices.

    Args:
        initializer: anything ``keras.initializers.get`` takes (a name, a config dict or an instance).
        index: which copy (e.g. the layer's position). An initializer with an integer ``seed`` gets
            ``seed + index``, so the copies are reproducible and differ from one another; an unseeded one gets a
            fresh default seed; one without randomness (``"zeros"``, ``Constant``) is copied as it is.

    Returns:
        A new ``keras.initializers.Initializer`` instance.
    """
    config = keras.initializers.serialize(keras.initializers.get(initializer))
    inner = config.get("config") if isinstance(config, dict) else None
    if isinstance(inner, dict) and "seed" in inner:
        seed = inner["seed"]
        inner = {**inner, "seed": seed + index if isinstance(seed, int) else None}
        config = {**config, "config": inner}
    return keras.initializers.deserialize(config)
