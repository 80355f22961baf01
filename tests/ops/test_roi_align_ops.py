"""kzoo.ops.roi_align_ops: the FPN level rule and RoIAlign's sample points, against float64 definitions (the
kernels themselves are tested through the layer, tests/layers/test_roi_align.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from kzoo.ops.roi_align_ops import fpn_levels, normalized_sample_boxes


def level_reference(box, placement, low=2, high=5, size=224.0, canonical=4):
    area = max((box[2] - box[0]) * (box[3] - box[1]), 0.0)
    if placement == "in_log":
        level = math.floor(canonical + math.log2(math.sqrt(area) / size + 1e-6))
    else:
        level = math.floor(canonical + math.log2(max(math.sqrt(area) / size, 1e-30)) + 1e-6)
    return min(max(level, low), high)


@pytest.mark.parametrize("placement", ["in_log", "after_log"])
def test_levels_match_the_fpn_formula(placement):
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 600, (200, 2))
    sides = np.exp(rng.uniform(np.log(4), np.log(900), (200, 2)))
    boxes = np.concatenate([corners, corners + sides], -1)
    boxes = np.concatenate([boxes, [[0, 0, 224, 224], [0, 0, 112, 112], [5, 5, 5, 9], [9, 9, 1, 1]]])
    levels = fpn_levels(tf.constant(boxes, tf.float32), 2, 5, eps_placement=placement).numpy()
    expected = [level_reference(b, placement) for b in boxes.astype(np.float32).astype(np.float64)]
    np.testing.assert_array_equal(levels, expected)
    assert levels.dtype == np.int32
    assert levels[-4] == 4 and levels[-3] == 3  # exactly on the boundaries
    assert levels[-2] == levels[-1] == 2  # empty and inverted boxes go to the lowest level, not NaN


def test_the_placements_differ_only_next_to_a_boundary():
    # sqrt(area) / 224 = 1 - 8.5e-7: log2(r + 1e-6) >= 0 but log2(r) + 1e-6 < 0
    side = 224.0 * (1 - 8.5e-7)
    boxes = tf.constant([[0.0, 0.0, side, side], [0.0, 0.0, 150.0, 150.0]])
    assert fpn_levels(boxes, 2, 5, eps_placement="in_log").numpy().tolist() == [4, 3]
    assert fpn_levels(boxes, 2, 5, eps_placement="after_log").numpy().tolist() == [3, 3]
    with pytest.raises(ValueError, match="eps_placement must be one of"):
        fpn_levels(boxes, 2, 5, eps_placement="nearest")


def sample_points_reference(box, scale, samples, aligned, border):
    """RoIAlign's sample coordinates (torchvision's roi_align), in feature pixels, per axis."""
    offset = 0.5 if aligned else 0.0
    points = []
    for low, high, count in ((box[0], box[2], samples[0]), (box[1], box[3], samples[1])):
        start, end = low * scale - offset, high * scale - offset
        length = end - start if aligned else max(end - start, 1.0)
        points.append([start + (i + 0.5) * length / count for i in range(count)])
    return points


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("border", ["torchvision", "zero"])
def test_crop_and_resize_boxes_land_on_roialign_sample_points(aligned, border):
    height, width, scale, samples = 13, 17, 0.25, (4, 6)
    boxes = np.array([[8.0, 4.0, 40.0, 60.0], [1.0, 2.0, 2.5, 3.0]])  # the second is below one feature pixel
    normalized = normalized_sample_boxes(tf.constant(boxes), scale, height, width, samples, aligned, border).numpy()
    shift, size = (1.0, (height + 1, width + 1)) if border == "torchvision" else (0.0, (height - 1, width - 1))
    for box, out in zip(boxes, normalized):
        ys, xs = sample_points_reference(box, scale, samples, aligned, border)
        # crop_and_resize samples n points evenly from y1n * (H - 1) to y2n * (H - 1) of the (padded) map
        got_y = np.linspace(out[0] * size[0], out[2] * size[0], samples[0]) - shift
        got_x = np.linspace(out[1] * size[1], out[3] * size[1], samples[1]) - shift
        np.testing.assert_allclose(got_y, ys, atol=1e-5)
        np.testing.assert_allclose(got_x, xs, atol=1e-5)
    with pytest.raises(ValueError, match="border must be one of"):
        normalized_sample_boxes(tf.constant(boxes), scale, height, width, samples, aligned, "reflect")
