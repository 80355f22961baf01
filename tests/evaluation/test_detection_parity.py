"""compare_detections: matching, the measured differences and its errors, on hand-made detections."""

import numpy as np
import pytest

from kzoo.evaluation.detection_parity import compare_detections, has_near_equal, outliers

SIZE = (64, 80)


def outputs(boxes, scores, classes, masks=None, slots=4) -> dict[str, np.ndarray]:
    """One image's outputs padded to ``slots`` rows, as batched model outputs ``[1, slots, ...]``."""
    n = len(boxes)
    out = {
        "detection_boxes": np.zeros((1, slots, 4), np.float32),
        "detection_scores": np.zeros((1, slots), np.float32),
        "detection_classes": np.zeros((1, slots), np.int32),
        "detection_masks": np.zeros((1, slots, 28, 28), np.float32),
        "num_detections": np.array([n], np.int32),
    }
    out["detection_boxes"][0, :n] = boxes
    out["detection_scores"][0, :n] = scores
    out["detection_classes"][0, :n] = classes
    out["detection_masks"][0, :n] = 1.0 if masks is None else masks
    return out


def test_identical_detections_match_exactly():
    a = outputs([[10, 10, 40, 30], [5, 50, 20, 70]], [0.9, 0.6], [1, 2])
    result = compare_detections(a, a, SIZE)
    assert result.matched == 2 and result.reference_count == result.candidate_count == 2
    summary = result.summary()
    assert summary["matched"] == 1.0 and summary["same_class"] == 1.0
    assert summary["box_iou_min"] == 1.0 and summary["box_error_max"] == 0.0 and summary["mask_iou_min"] == 1.0


def test_shifted_box_reordered_rows_and_other_class():
    a = outputs([[10, 10, 40, 30], [5, 50, 20, 70]], [0.9, 0.6], [1, 2])
    # the candidate lists them the other way round, the first box 2 px lower, the second with another class
    b = outputs([[5, 50, 20, 70], [12, 10, 42, 30]], [0.55, 0.9], [1, 1])
    result = compare_detections(a, b, SIZE)
    order = np.argsort(result.box_iou)
    # box IoU straight from the definition: overlap 28 x 20 over 2 * 30 * 20 - 28 * 20
    np.testing.assert_allclose(result.box_iou[order], [560 / 640, 1.0], rtol=1e-12)
    np.testing.assert_allclose(result.box_error[order], [2.0, 0.0])
    np.testing.assert_allclose(result.score_error[order], [0.0, 0.05], atol=1e-6)
    assert list(result.same_class[order]) == [True, False]
    assert result.mask_iou[order][1] == 1.0 and 0.8 < result.mask_iou[order][0] < 1.0
    assert list(result.reference_row[order]) == [0, 1] and list(result.candidate_row[order]) == [1, 0]


def test_unmatched_and_low_scoring_detections():
    a = outputs([[10, 10, 40, 30], [40, 40, 60, 60]], [0.9, 0.3], [1, 1])
    b = outputs([[10, 10, 40, 30], [0, 60, 10, 79], [40, 40, 60, 61]], [0.9, 0.7, 0.2], [1, 1, 1])
    result = compare_detections(a, b, SIZE)
    assert (result.reference_count, result.candidate_count, result.matched) == (2, 3, 2)
    assert result.summary()["matched"] == pytest.approx(2 / 3)
    confident = compare_detections(a, b, SIZE, min_score=0.5)
    assert (confident.reference_count, confident.candidate_count, confident.matched) == (1, 2, 1)
    assert list(compare_detections(a, b, SIZE).candidate_row) == [0, 2]  # rows of the outputs, not of the kept
    # no pair above the IoU threshold: nothing matched, NaN statistics
    far = outputs([[0, 0, 5, 5]], [0.9], [1])
    summary = compare_detections(a, far, SIZE).summary()
    assert summary["matched"] == 0.0 and np.isnan(summary["box_iou_mean"])


def test_mask_iou_of_pasted_masks():
    half = np.zeros((28, 28), np.float32)
    half[:, :14] = 1.0
    a = outputs([[0, 0, 28, 28]], [0.9], [1])
    b = outputs([[0, 0, 28, 28]], [0.9], [1], masks=half)
    (iou,) = compare_detections(a, b, SIZE).mask_iou
    assert 0.45 < iou < 0.55  # the left half of the same region


def test_several_images_and_errors():
    a = outputs([[10, 10, 40, 30]], [0.9], [1])
    two = {key: np.concatenate([value, value]) for key, value in a.items()}
    assert list(compare_detections(two, two, [SIZE, SIZE]).image_index) == [0, 1]
    with pytest.raises(ValueError, match="reference has 2 images but candidate has 1"):
        compare_detections(two, a, SIZE)
    with pytest.raises(ValueError, match="image_sizes must be one"):
        compare_detections(two, two, [SIZE, SIZE, SIZE])


def test_outliers_and_near_equal_detections():
    reference = outputs([[10, 10, 40, 30], [40, 40, 60, 60]], [0.9, 0.6], [1, 1])
    # the first moved by 3 px, the second in place, and a third that matches nothing
    candidate = outputs([[13, 10, 43, 30], [40, 40, 60, 60], [0, 60, 10, 79]], [0.88, 0.6, 0.3], [1, 1, 1])
    found = outliers(compare_detections(reference, candidate, SIZE), candidate)
    assert sorted(found) == [(0, 0), (0, 2)]
    parity = compare_detections(reference, candidate, SIZE)
    assert sorted(outliers(parity, candidate, max_box_error=5.0)) == [(0, 0), (0, 2)]  # its mask IoU is 0.82
    assert outliers(parity, candidate, max_box_error=5.0, min_mask_iou=0.8) == [(0, 2)]
    # the reference model without NMS also had the moved box (0.5 px away, score 0.005 apart): a near-tie
    unsuppressed = outputs([[10, 10, 40, 30], [12.5, 10, 43, 30], [40, 40, 60, 60]], [0.9, 0.885, 0.6], [1, 1, 1])
    assert has_near_equal(unsuppressed, candidate, 0, 0)
    assert not has_near_equal(unsuppressed, candidate, 0, 2)
    assert not has_near_equal(unsuppressed, candidate, 0, 0, max_score_error=0.001)
    other_class = outputs([[12.5, 10, 43, 30]], [0.885], [2])
    assert not has_near_equal(other_class, candidate, 0, 0)
