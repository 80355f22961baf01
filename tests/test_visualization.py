"""kzoo.visualization: detections legible at any image size, labels inside the image and apart, smooth heat maps."""

import itertools

import numpy as np
import pytest

from kzoo.visualization import (
    DISPLAY_MIN_SIDE,
    MIN_COLOR_CONTRAST,
    MIN_FONT_SIZE,
    contrasting_color,
    detections_picture,
    display_scale,
    draw_detections,
    heatmap_picture,
    instance_color,
    label_font_size,
    label_positions,
    line_width,
    overlay_heatmap,
    render_label,
    upsample_heatmap,
)


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return (before.astype(int) != after.astype(int)).any(axis=-1)


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return rows[0], cols[0], rows[-1], cols[-1]


@pytest.mark.parametrize("shape", [(20, 20, 3), (40, 40, 1), (61, 83, 3), (300, 200, 4)])
def test_shape_and_dtype(shape):
    image = np.full(shape, 128, np.uint8)
    boxes = np.array([[2, 3, 15, 18], [0, 0, shape[0], shape[1]]], np.float32)
    drawn = draw_detections(image, boxes, np.array([1, 2]), np.array([0.9, 0.5]))
    assert drawn.shape == (*shape[:2], 3) and drawn.dtype == np.uint8
    assert drawn.flags.writeable
    heat = overlay_heatmap(image, np.random.default_rng(0).uniform(size=(5, 7)))
    assert heat.shape == (*shape[:2], 3) and heat.dtype == np.uint8


def test_no_detections_leaves_the_image_alone():
    image = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    drawn = draw_detections(image, np.zeros((0, 4)), np.zeros(0, int), np.zeros(0), np.zeros((0, 30, 40), bool))
    np.testing.assert_array_equal(drawn, image)


def test_font_and_line_scale_with_the_image():
    assert label_font_size(40, 40) == MIN_FONT_SIZE and label_font_size(20, 20) == MIN_FONT_SIZE
    assert label_font_size(3000, 2000) >= 4 * label_font_size(40, 40)
    assert label_font_size(2000, 3000) == label_font_size(3000, 2000)  # the shorter side decides
    assert line_width(40, 40) == 1 and line_width(3000, 2000) >= 5
    small = render_label("person 0.98", label_font_size(40, 40), (255, 0, 0))
    large = render_label("person 0.98", label_font_size(3000, 2000), (255, 0, 0))
    assert large.height >= 4 * small.height and large.width >= 4 * small.width
    assert small.height >= MIN_FONT_SIZE


def _label_rows(shape: tuple[int, int]) -> int:
    """Rows changed by drawing one box's label in the middle of a blank image (box lines excluded)."""
    image = np.zeros((*shape, 3), np.uint8)
    height, width = shape
    box = np.array([[height / 2, width / 4, height - 1, width - 1]])
    drawn = draw_detections(image, box, np.array([1]), np.array([0.9]), class_names=["bg", "person"])
    above_box = _changed(image, drawn)[: int(height / 2) - line_width(*shape)]  # the label sits above the box
    rows = np.flatnonzero(above_box.any(axis=1))
    return rows[-1] - rows[0] + 1


def test_drawn_label_height_scales_with_the_image():
    small, large = _label_rows((40, 40)), _label_rows((2000, 3000))
    assert 8 <= small <= 20
    assert large >= 4 * small and large <= 2000 * 0.06


def test_label_of_box_at_top_and_right_edges_stays_inside():
    height, width = 120, 160
    image = np.zeros((height, width, 3), np.uint8)
    box = np.array([[0, width - 20, 50, width]], np.float32)  # touches the top and the right edge
    drawn = draw_detections(image, box, np.array([3]), np.array([0.87]), class_names={3: "a rather long name"})
    changed = _changed(image, drawn)
    assert changed.any()
    (rect,) = label_positions(
        box,
        [render_label("a rather long name 0.87", label_font_size(height, width), instance_color(0)).size],
        (height, width),
    )
    x0, y0, x1, y1 = rect
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert y0 == 0 and x1 == width  # inside the box at the top, shifted left from the right edge
    assert x0 < width - 20  # the label is wider than the box, so it starts left of it
    # the label's pixels are where label_positions says, the rest of the change is the box outline
    label_area = np.zeros_like(changed)
    label_area[y0:y1, x0:x1] = True
    outline = np.zeros_like(changed)
    outline[0:51, width - 20 : width] = True
    assert not (changed & ~label_area & ~outline).any()


def test_box_at_left_and_bottom_edges():
    (rect,) = label_positions(np.array([[90, -15, 130, 30]]), [(50, 12)], (100, 80))
    x0, y0, x1, y1 = rect
    assert (x0, y0, x1, y1) == (0, 78, 50, 90)  # just above the box, clipped to the left edge


def test_label_larger_than_image_is_clipped():
    (rect,) = label_positions(np.array([[0, 0, 20, 20]]), [(56, 15)], (20, 20))
    assert tuple(rect) == (0, 0, 20, 15)
    drawn = draw_detections(
        np.zeros((20, 20, 3), np.uint8),
        np.array([[0, 0, 20, 20]]),
        np.array([1]),
        np.array([0.5]),
        class_names=["bg", "person"],
    )
    assert drawn.shape == (20, 20, 3)


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_overlapping_boxes_get_separate_labels():
    rng = np.random.default_rng(0)
    height, width = 480, 640
    corners = rng.uniform([100, 100], [130, 140], size=(10, 2))
    boxes = np.concatenate([corners, corners + [200, 250]], axis=1)  # ten heavily overlapping boxes
    sizes = [(int(w), 19) for w in rng.integers(60, 120, size=10)]
    rects = label_positions(boxes, sizes, (height, width))
    assert rects.shape == (10, 4)
    for (x0, y0, x1, y1), (w, h) in zip(rects, sizes):
        assert 0 <= x0 and x1 <= width and 0 <= y0 and y1 <= height
        assert (x1 - x0, y1 - y0) == (w, h)
    for a, b in itertools.combinations(rects, 2):
        assert not _overlaps(a, b), (a, b)
    # the first (best) detection keeps its preferred place, just above its box
    assert tuple(rects[0][:2]) == (int(np.floor(boxes[0, 1])), int(np.floor(boxes[0, 0])) - 19)


def test_overlapping_boxes_at_the_top_edge_stack_downwards():
    boxes = np.array([[0, 10, 60, 90]] * 5, np.float32)
    rects = label_positions(boxes, [(70, 12)] * 5, (100, 100))
    assert sorted(rects[:, 1].tolist()) == [0, 12, 24, 36, 48]
    for a, b in itertools.combinations(rects, 2):
        assert not _overlaps(a, b)


def test_labels_in_a_full_image_still_stay_inside():
    rects = label_positions(np.array([[5, 5, 20, 20]] * 6), [(30, 12)] * 6, (30, 40))
    assert (rects[:, 0] >= 0).all() and (rects[:, 2] <= 40).all()
    assert (rects[:, 1] >= 0).all() and (rects[:, 3] <= 30).all()


def test_masks_are_blended_not_overwritten():
    rng = np.random.default_rng(3)
    image = rng.integers(40, 200, (80, 100, 3), dtype=np.uint8)
    masks = np.zeros((2, 80, 100), bool)
    masks[0, 40:70, 10:50] = True
    masks[1, 45:75, 60:90] = True
    boxes = np.array([[40, 10, 70, 50], [45, 60, 75, 90]], np.float32)
    drawn = draw_detections(image, boxes, np.array([1, 1]), np.array([0.9, 0.8]), masks, alpha=0.5)
    for index, (y, x) in enumerate([(55, 30), (60, 75)]):  # inside the masks, away from outlines and labels
        original, color = image[y, x].astype(int), np.array(instance_color(index))
        expected = np.rint(original + 0.5 * (color - original))
        np.testing.assert_allclose(drawn[y, x], expected, atol=1)
        low, high = np.minimum(original, color), np.maximum(original, color)
        assert ((drawn[y, x] >= low) & (drawn[y, x] <= high)).all()
    assert instance_color(0) != instance_color(1)  # one colour per instance, even of one class
    np.testing.assert_array_equal(drawn[2:8, 60:95], image[2:8, 60:95])  # untouched away from everything


def test_soft_masks_scale_the_blending():
    image = np.zeros((50, 50, 3), np.uint8)
    masks = np.zeros((1, 50, 50), np.float32)
    masks[0, 20:40, 20:40] = 0.5
    drawn = draw_detections(image, np.array([[20, 20, 40, 40]]), np.array([1]), np.array([0.9]), masks, alpha=1.0)
    np.testing.assert_allclose(drawn[30, 30], np.rint(0.5 * np.array(instance_color(0))), atol=1)


def test_bad_inputs():
    image = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="image must be"):
        draw_detections(np.zeros((10, 10)), np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="masks must be"):
        draw_detections(image, np.zeros((1, 4)), np.zeros(1), np.zeros(1), np.zeros((1, 5, 5), bool))
    with pytest.raises(ValueError, match="must match"):
        draw_detections(image, np.zeros((2, 4)), np.zeros(1), np.zeros(2))
    with pytest.raises(ValueError, match="heatmap must be"):
        overlay_heatmap(image, np.zeros((2, 2, 2)))


def test_heatmap_upsampling_is_smooth():
    heatmap = np.arange(16, dtype=np.float32).reshape(4, 4)  # a step of 1 (4 across a row) between map cells
    resized = upsample_heatmap(heatmap, 400, 400)
    assert resized.shape == (400, 400) and resized.dtype == np.float32
    assert resized.min() >= 0 and resized.max() <= 15
    assert np.abs(np.diff(resized, axis=0)).max() < 4 / 20
    assert np.abs(np.diff(resized, axis=1)).max() < 1 / 20
    # pixel centers aligned: the middle of each 100 x 100 cell reads the cell's value
    np.testing.assert_allclose(resized[49:51, 49:51].mean(), 0, atol=0.05)
    np.testing.assert_allclose(resized[349:351, 349:351].mean(), 15, atol=0.05)

    image = np.full((400, 400, 3), 100, np.uint8)
    drawn = overlay_heatmap(image, heatmap).astype(int)
    nearest = np.repeat(np.repeat(heatmap, 100, 0), 100, 1)  # what block upsampling would look like
    block_step = np.abs(np.diff(nearest, axis=1)).max() / 15  # one map step, normalized
    assert np.abs(np.diff(drawn, axis=0)).max() <= 4 and np.abs(np.diff(drawn, axis=1)).max() <= 2
    assert np.abs(np.diff(drawn, axis=1)).max() < 0.1 * 255 * 0.5 * block_step * 4  # << a block edge's jump


def test_small_pictures_are_enlarged_sharply():
    assert display_scale(128, 128) == 4 and display_scale(32, 32) == 16 and display_scale(28, 28) == 19
    assert display_scale(600, 4000) == 1 and display_scale(100, 700) == 6
    image = np.random.default_rng(0).integers(0, 256, (128, 96, 3), dtype=np.uint8)
    masks = np.zeros((1, 128, 96), bool)
    masks[0, 20:60, 10:50] = True
    drawn = detections_picture(image, np.array([[20, 10, 60, 50]]), np.array([1]), np.array([0.9]), masks)
    assert drawn.shape == (128 * 6, 96 * 6, 3) and min(drawn.shape[:2]) >= DISPLAY_MIN_SIDE
    # away from the detection, each source pixel became a 6 x 6 block of itself (nearest, no blur)
    np.testing.assert_array_equal(drawn[600:612, 396:408], np.repeat(np.repeat(image[100:102, 66:68], 6, 0), 6, 1))
    # the mask was enlarged with the image: its fill covers the enlarged region
    assert _changed(np.repeat(np.repeat(image, 6, 0), 6, 1), drawn)[200:300, 100:250].all()


def test_mask_colour_contrasts_with_the_object_and_has_an_outline():
    image = np.full((60, 60, 3), 255, np.uint8)
    image[10:50, 10:50] = instance_color(0)  # an object of exactly the first instance colour
    masks = np.zeros((1, 60, 60), bool)
    masks[0, 10:50, 10:50] = True
    drawn = draw_detections(image, np.array([[10, 10, 50, 50]]), np.array([1]), np.array([0.9]), masks)
    fill, edge = drawn[30, 30].astype(float), drawn[10, 30].astype(float)
    assert np.linalg.norm(fill - np.array(instance_color(0))) > 0.3 * MIN_COLOR_CONTRAST  # visibly tinted
    assert np.linalg.norm(edge - np.array(instance_color(0))) >= MIN_COLOR_CONTRAST  # the outline stands out
    chosen = contrasting_color(instance_color(0), instance_color(0))
    np.testing.assert_array_equal(drawn[11, 11], chosen)  # the outline is the solid colour, one line wide
    assert contrasting_color((255, 0, 0), (20, 20, 200)) == (255, 0, 0)  # far enough: kept
    assert np.linalg.norm(np.subtract(contrasting_color((250, 10, 10), (240, 20, 20)), (240, 20, 20))) > 200


def test_label_avoids_covering_a_neighbour():
    """Box A right under box B: A's label does not go above A (over B) but inside A."""
    boxes = np.array([[60, 10, 100, 90], [20, 10, 60, 90]], np.float32)  # A first (higher score), B above it
    (ax0, ay0, ax1, ay1), _ = label_positions(boxes, [(50, 12), (50, 12)], (120, 100))
    assert ay0 >= 60  # not over B (rows 20..60)
    assert ay0 <= 100 - 12  # and still at its own box


def test_heatmap_picture_has_a_colour_bar_and_the_values():
    image = np.full((32, 32, 3), 128, np.uint8)
    heatmap = np.outer(np.arange(8), np.ones(8)).astype(np.float32)  # rows 0..7: high at the bottom
    picture = heatmap_picture(image, heatmap, title="shirt 0.93")
    assert picture.shape[0] == 512 and picture.shape[1] > 512 and picture.dtype == np.uint8
    bar = picture[:, 513].astype(int)  # inside the bar, next to the overlay
    assert bar[5, 0] > 100 and bar[5, 1] < 30 and bar[5, 2] < 30  # top: red (the maximum)
    assert bar[-5, 2] > 100 and bar[-5, 0] < 30  # bottom: blue (the minimum)
    assert (picture[400:500, 200:300, 0].astype(int) > picture[10:60, 200:300, 0].astype(int).mean()).mean() > 0.9


def test_draw_detections_marks_masks_and_boxes():
    image = np.zeros((60, 80, 3), np.uint8)
    masks = np.zeros((1, 60, 80), bool)
    masks[0, 10:30, 10:40] = True
    drawn = draw_detections(
        image, np.array([[10, 10, 30, 40]]), np.array([1]), np.array([0.9]), masks, class_names=["background", "person"]
    )
    assert drawn.shape == (60, 80, 3) and drawn.dtype == np.uint8
    assert drawn[20, 25].sum() > 0 and drawn[50, 70].sum() == 0
