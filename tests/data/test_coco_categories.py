"""kzoo.data.coco_categories: the category id <-> label mapping."""

import numpy as np
import pytest
from coco_examples import CATEGORIES

from kzoo.data.coco_categories import CocoCategories


def test_category_mapping_both_ways():
    assert CATEGORIES.num_classes == 3
    assert [CATEGORIES.to_label(i) for i in (1, 5, 90)] == [1, 2, 3]
    assert [CATEGORIES.to_category_id(k) for k in (1, 2, 3)] == [1, 5, 90]
    np.testing.assert_array_equal(CATEGORIES.to_label(np.array([[90, 1], [5, 5]])), [[3, 1], [2, 2]])
    np.testing.assert_array_equal(CATEGORIES.to_category_id(np.array([3, 2, 1])), [90, 5, 1])
    assert CATEGORIES.name(3) == "triangle"
    with pytest.raises(ValueError, match="unknown category id"):
        CATEGORIES.to_label(2)
    with pytest.raises(ValueError, match="outside 1..3"):
        CATEGORIES.to_category_id(0)
    shuffled = CocoCategories.from_coco([{"id": 90, "name": "c"}, {"id": 1, "name": "a"}, {"id": 5, "name": "b"}])
    assert shuffled.ids == (1, 5, 90) and shuffled.names == ("a", "b", "c")
    assert CocoCategories.from_coco(CATEGORIES.to_coco()) == CATEGORIES
