"""COCO category ids <-> kzoo's contiguous labels (:class:`CocoCategories`), and COCO 2017's 80 categories
(:data:`COCO_CATEGORIES`: ids 1..90 with gaps, as in the annotation files)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

COCO_CATEGORIES: dict[int, str] = dict(
    enumerate(
        [
            "__background__",
            "person",
            "bicycle",
            "car",
            "motorcycle",
            "airplane",
            "bus",
            "train",
            "truck",
            "boat",
            "traffic light",
            "fire hydrant",
            "N/A",
            "stop sign",
            "parking meter",
            "bench",
            "bird",
            "cat",
            "dog",
            "horse",
            "sheep",
            "cow",
            "elephant",
            "bear",
            "zebra",
            "giraffe",
            "N/A",
            "backpack",
            "umbrella",
            "N/A",
            "N/A",
            "handbag",
            "tie",
            "suitcase",
            "frisbee",
            "skis",
            "snowboard",
            "sports ball",
            "kite",
            "baseball bat",
            "baseball glove",
            "skateboard",
            "surfboard",
            "tennis racket",
            "bottle",
            "N/A",
            "wine glass",
            "cup",
            "fork",
            "knife",
            "spoon",
            "bowl",
            "banana",
            "apple",
            "sandwich",
            "orange",
            "broccoli",
            "carrot",
            "hot dog",
            "pizza",
            "donut",
            "cake",
            "chair",
            "couch",
            "potted plant",
            "bed",
            "N/A",
            "dining table",
            "N/A",
            "N/A",
            "toilet",
            "N/A",
            "tv",
            "laptop",
            "mouse",
            "remote",
            "keyboard",
            "cell phone",
            "microwave",
            "oven",
            "toaster",
            "sink",
            "refrigerator",
            "N/A",
            "book",
            "clock",
            "vase",
            "scissors",
            "teddy bear",
            "hair drier",
            "toothbrush",
        ]
    )
)
COCO_CATEGORIES = {k: v for k, v in COCO_CATEGORIES.items() if v not in ("N/A", "__background__")}


@dataclasses.dataclass(frozen=True)
class CocoCategories:
    """Source category ids <-> contiguous labels 1..K (0 is the background), in increasing id order.

    Attributes:
        ids: the source's category ids, increasing; label ``k`` is ``ids[k - 1]``.
        names: one name per label (``names[k - 1]`` for label ``k``).
        supercategories: one per label (empty strings where unknown).
    """

    ids: tuple[int, ...]
    names: tuple[str, ...]
    supercategories: tuple[str, ...] = ()

    def __post_init__(self):
        ids = tuple(int(i) for i in self.ids)
        if list(ids) != sorted(set(ids)):
            raise ValueError(f"category ids must be unique and increasing, got {ids}")
        if len(self.names) != len(ids):
            raise ValueError(f"need one name per category id: {len(ids)} ids, {len(self.names)} names")
        supers = tuple(self.supercategories) or ("",) * len(ids)
        if len(supers) != len(ids):
            raise ValueError(f"need one supercategory per category id: {len(ids)} ids, {len(supers)} given")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "supercategories", tuple(str(s) for s in supers))

    @classmethod
    def from_coco(cls, categories: Iterable[dict]) -> CocoCategories:
        """From a COCO json's ``categories`` list (any order)."""
        ordered = sorted(categories, key=lambda c: int(c["id"]))
        return cls(
            tuple(int(c["id"]) for c in ordered),
            tuple(c.get("name", str(c["id"])) for c in ordered),
            tuple(c.get("supercategory", "") for c in ordered),
        )

    @classmethod
    def from_names(cls, names: Sequence[str], ids: Sequence[int] | None = None) -> CocoCategories:
        """Categories named ``names``, with ids ``ids`` (default 1..K, so ids equal labels)."""
        return cls(tuple(ids) if ids is not None else tuple(range(1, len(names) + 1)), tuple(names))

    @property
    def num_classes(self) -> int:
        """K, the number of categories (labels 1..K; a model has K + 1 classes with the background)."""
        return len(self.ids)

    def to_label(self, category_id):
        """Category id(s) -> label(s) 1..K; an int for an int, an int32 array for an array.

        Raises:
            ValueError: an id that is not a category (named).
        """
        values = np.asarray(category_id, np.int64)
        ids = np.asarray(self.ids, np.int64)
        position = np.clip(np.searchsorted(ids, values), 0, max(len(ids) - 1, 0))
        known = (ids[position] == values) if len(ids) else np.zeros(values.shape, bool)
        if not np.all(known):
            raise ValueError(f"unknown category id(s) {np.unique(values[~known]).tolist()}; known: {list(self.ids)}")
        labels = (position + 1).astype(np.int32)
        return int(labels) if labels.ndim == 0 else labels

    def to_category_id(self, label):
        """Label(s) 1..K -> category id(s); an int for an int, an int64 array for an array.

        Raises:
            ValueError: a label outside 1..K (named).
        """
        values = np.asarray(label, np.int64)
        bad = (values < 1) | (values > self.num_classes)
        if np.any(bad):
            raise ValueError(f"label(s) {np.unique(values[bad]).tolist()} outside 1..{self.num_classes}")
        ids = np.asarray(self.ids, np.int64)[values - 1]
        return int(ids) if ids.ndim == 0 else ids

    def name(self, label: int) -> str:
        """The name of label ``label`` (1..K)."""
        if not 1 <= int(label) <= self.num_classes:
            raise ValueError(f"label {label} outside 1..{self.num_classes}")
        return self.names[int(label) - 1]

    def to_coco(self) -> list[dict]:
        """The COCO json ``categories`` list."""
        return [{"id": i, "name": n, "supercategory": s} for i, n, s in zip(self.ids, self.names, self.supercategories)]
