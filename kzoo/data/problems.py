"""Counting what the data readers drop or repair: one :class:`ProblemCounter` per read, one warning per kind.

The COCO reader (:func:`kzoo.data.coco_reader.load_coco_instances`), the ground-truth check
(:func:`kzoo.data.coco_validation.validate_coco_dict`) and the annotation-tool converters
(:class:`kzoo.data.annotation_builder.CocoBuilder`) never raise on bad data: each problem drops (or repairs) what it
concerns, is counted by kind, and each kind is logged once, as ``"<source>: <count> <description>, e.g. [...]"``
naming the first few places it was met.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

#: How many places of each kind a warning names.
EXAMPLES = 3


class ProblemCounter:
    """Counts by kind, with the first :data:`EXAMPLES` places of each kind.

    Args:
        descriptions: ``{kind: how its warning words it}`` for the problems (in warning order).
        other_keys: counts kept beside them, zero at first and never warned about (``images``, ``instances``...).

    Attributes:
        counts: ``{key: count}`` for ``other_keys`` then the problems, all present (zeros included).
        examples: ``{key: [place, ...]}``, at most :data:`EXAMPLES` each.
    """

    def __init__(self, descriptions: Mapping[str, str], other_keys: Iterable[str] = ()) -> None:
        self.descriptions = dict(descriptions)
        self.counts: dict[str, int] = dict.fromkeys((*other_keys, *self.descriptions), 0)
        self.examples: dict[str, list] = {key: [] for key in self.counts}

    def add(self, key: str, where, count: int = 1) -> None:
        """Count ``count`` of kind ``key`` met at ``where`` (a file, an id, a shape)."""
        self.counts[key] += count
        if len(self.examples[key]) < EXAMPLES:
            self.examples[key].append(where)

    def warn(self, log: logging.Logger, source: str) -> None:
        """One warning per problem kind counted, naming ``source`` and the first places."""
        for key, description in self.descriptions.items():
            if self.counts[key]:
                log.warning("%s: %d %s, e.g. %s", source, self.counts[key], description, self.examples[key])

    def dropped(self) -> list[str]:
        """``"<count> <description>, e.g. [...]"`` for each problem kind counted (an error message's list)."""
        return [
            f"{self.counts[key]} {description}, e.g. {self.examples[key]}"
            for key, description in self.descriptions.items()
            if self.counts[key]
        ]
