import numpy as np
import pytest

from kzoo.ops.masks import paste_masks
from kzoo.visualization import draw_detections


def test_full_mask_pastes_onto_its_box():
    masks = np.ones((1, 28, 28), np.float32)
    pasted = paste_masks(masks, np.array([[20.0, 10.0, 48.0, 66.0]]), (80, 90))
    rows, cols = np.nonzero(pasted[0])
    # the padded border fades over about one mask pixel: the 0.5 level sits on the box edge (+-1 pixel)
    assert abs(rows.min() - 20) <= 1 and abs(rows.max() - 47) <= 1
    assert abs(cols.min() - 10) <= 2 and abs(cols.max() - 65) <= 2
    assert pasted.shape == (1, 80, 90) and pasted.dtype == bool


def test_probabilities_clipped_boxes_and_errors():
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(3, 28, 28)).astype(np.float32)
    boxes = np.array([[-10, -10, 30, 30], [50, 50, 120, 120], [5, 5, 5.5, 5.5]], np.float32)
    probs = paste_masks(masks, boxes, (64, 64), threshold=None)
    assert probs.shape == (3, 64, 64) and probs.dtype == np.float32
    assert probs.min() >= 0 and probs.max() <= 1
    assert probs[1, :45, :45].max() == 0  # nothing outside the (clipped, expanded) box
    with pytest.raises(ValueError, match="M, M"):
        paste_masks(np.zeros((2, 28, 14)), boxes[:2], (10, 10))
    with pytest.raises(ValueError, match="boxes must be"):
        paste_masks(masks, boxes[:2], (10, 10))


def test_draw_detections_marks_masks_and_boxes():
    image = np.zeros((60, 80, 3), np.uint8)
    masks = np.zeros((1, 60, 80), bool)
    masks[0, 10:30, 10:40] = True
    drawn = draw_detections(
        image, np.array([[10, 10, 30, 40]]), np.array([1]), np.array([0.9]), masks, class_names=["background", "person"]
    )
    assert drawn.shape == (60, 80, 3) and drawn.dtype == np.uint8
    assert drawn[20, 25].sum() > 0 and drawn[50, 70].sum() == 0
