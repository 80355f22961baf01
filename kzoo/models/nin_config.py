"""NIN's block specifications and the paper's variants, in pure Python (configs are checked before TensorFlow
is imported; :mod:`kzoo.models.nin` builds the model from them)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kzoo.utils.structs import dataclass_from_dict

#: ``train.trainable_layers`` presets of a NIN (:meth:`kzoo.models.nin.NINModel.set_trainable_preset`): ``all``
#: every layer, ``heads`` the last mlpconv block (the one holding the class stage).
NIN_TRAINABLE_PRESETS = ("all", "heads")


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One mlpconv block of a NIN and what follows it.

    Attributes:
        filters: stage widths of the block (k x k conv, then 1 x 1 convs). In the
            last block the class stage (``classes`` 1 x 1 filters) is appended by the
            model when ``include_top`` is true, so it is not listed here.
        kernel_size, strides, padding: of the first (spatial) convolution.
        pool: a 3 x 3 / 2 max pooling ("same" padding) after the block.
        dropout: dropout (the model's ``dropout_rate``) after the block (after the pool).
    """

    filters: tuple[int, ...]
    kernel_size: int = 3
    strides: int = 1
    padding: str = "same"
    pool: bool = True
    dropout: bool = True

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any] | BlockSpec) -> BlockSpec:
        """A block from a mapping such as ``{"filters": [192, 160, 96], "kernel_size": 5}`` (keys checked)."""
        if isinstance(spec, BlockSpec):
            return spec
        if not isinstance(spec, Mapping) or "filters" not in spec:
            raise ValueError(f"NIN block {spec!r} has no 'filters'")
        return dataclass_from_dict(cls, spec, "block.")


# The author's published configurations; the class stage of the last block is added by the model.
VARIANTS: dict[str, tuple[BlockSpec, ...]] = {
    "cifar10": (
        BlockSpec((192, 160, 96), kernel_size=5),
        BlockSpec((192, 192, 192), kernel_size=5),
        BlockSpec((192, 192), kernel_size=3, pool=False, dropout=False),
    ),
    "svhn": (
        BlockSpec((128, 96, 64), kernel_size=5),
        BlockSpec((320, 256, 128), kernel_size=5),
        BlockSpec((384, 256), kernel_size=5, pool=False, dropout=False),
    ),
    "mnist": (
        BlockSpec((96, 64, 48), kernel_size=5),
        BlockSpec((128, 96, 48), kernel_size=5),
        BlockSpec((128, 96), kernel_size=5, pool=False, dropout=False),
    ),
    "imagenet": (
        BlockSpec((96, 96, 96), kernel_size=11, strides=4, padding="valid", dropout=False),
        BlockSpec((256, 256, 256), kernel_size=5, dropout=False),
        BlockSpec((384, 384, 384), kernel_size=3, pool=True, dropout=True),
        BlockSpec((1024, 1024), kernel_size=3, pool=False, dropout=False),
    ),
}
VARIANTS["cifar100"] = VARIANTS["cifar10"]

DEFAULT_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "cifar10": (32, 32, 3),
    "cifar100": (32, 32, 3),
    "svhn": (32, 32, 3),
    "mnist": (28, 28, 1),
    "imagenet": (224, 224, 3),
}
