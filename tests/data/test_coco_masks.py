"""kzoo.data.coco_masks: masks as polygons (holes filled, diagonal neighbours apart) and uncompressed RLE."""

import numpy as np

from kzoo.data.coco_masks import mask_to_polygons, mask_to_uncompressed_rle, segmentation_to_mask


def test_polygons_fill_holes_and_split_diagonals():
    mask = np.zeros((9, 9), bool)
    mask[1, 1] = mask[2, 2] = True  # touch at a corner only: two outlines
    mask[4:8, 4:8] = True
    mask[5:7, 5:7] = False  # a hole: COCO polygons cannot keep it
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 3
    filled = mask.copy()
    filled[5:7, 5:7] = True
    np.testing.assert_array_equal(segmentation_to_mask(polygons, 9, 9), filled)
    rle = mask_to_uncompressed_rle(mask)
    assert sum(rle["counts"]) == 81 and rle["counts"][0] == 10  # column-major, zeros first
    np.testing.assert_array_equal(segmentation_to_mask(rle, 9, 9), mask)
