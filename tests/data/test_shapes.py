"""The built-in "shapes" instance-segmentation set: determinism, exact visible masks, tight boxes."""

import numpy as np
import pytest

from kzoo.data.shapes import (
    MIN_VISIBLE_AREA,
    SHAPES_INSTANCE_CLASSES,
    make_shapes_classification,
    make_shapes_instances,
    mask_to_box,
    render_shape,
)


@pytest.fixture(scope="module")
def examples():
    return make_shapes_instances(12, image_size=64, max_instances=4, seed=3)


def test_contract(examples):
    assert SHAPES_INSTANCE_CLASSES == ("circle", "square", "triangle")
    assert len(examples) == 12
    for ex in examples:
        n = len(ex["classes"])
        assert 1 <= n <= 4
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (64, 64, 3)
        assert ex["boxes"].dtype == np.float32 and ex["boxes"].shape == (n, 4)
        assert ex["classes"].dtype == np.int32 and set(ex["classes"].tolist()) <= {1, 2, 3}
        assert ex["masks"].dtype == bool and ex["masks"].shape == (n, 64, 64)
    assert {c for ex in examples for c in ex["classes"].tolist()} == {1, 2, 3}


def test_deterministic_from_seed(examples):
    again = make_shapes_instances(12, image_size=64, max_instances=4, seed=3)
    other = make_shapes_instances(12, image_size=64, max_instances=4, seed=4)
    for a, b in zip(examples, again):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a["image"], b["image"]) for a, b in zip(examples, other))


def test_boxes_are_tight(examples):
    for ex in examples:
        for mask, box in zip(ex["masks"], ex["boxes"]):
            ymin, xmin, ymax, xmax = box.astype(int)
            assert mask[ymin:ymax, xmin:xmax].sum() == mask.sum()  # every pixel inside
            assert mask[ymin].any() and mask[ymax - 1].any() and mask[:, xmin].any() and mask[:, xmax - 1].any()
            np.testing.assert_array_equal(mask_to_box(mask), box)


def test_masks_are_exact_visible_regions(examples):
    for ex in examples:
        masks, image = ex["masks"], ex["image"].astype(np.float64)
        assert masks.sum(axis=0).max() <= 1  # visible masks never overlap (occlusion)
        assert masks.sum(axis=(1, 2)).min() >= MIN_VISIBLE_AREA
        for mask in masks:  # one flat color (plus noise of sigma 10) inside each mask
            assert image[mask].std(axis=0).max() < 15
        background = ~masks.any(axis=0)
        far = np.abs(image[background] - np.median(image[background], axis=0)).max(axis=1) > 60
        assert far.mean() < 0.02  # only dropped slivers of hidden shapes differ from the background


def _runs(line):
    return int(np.count_nonzero(np.diff(np.concatenate([[0], line.astype(int), [0]])) == 1))


def test_single_shapes_have_their_geometry():
    # one instance per image: nothing occludes it, so the mask is the whole convex shape (cut by the border)
    for ex in make_shapes_instances(9, image_size=48, max_instances=1, seed=0):
        (mask,), (label,) = ex["masks"], ex["classes"]
        kind = SHAPES_INSTANCE_CLASSES[label - 1]
        rows = [r for r in mask if r.any()]
        assert all(_runs(r) == 1 for r in rows) and all(_runs(c) == 1 for c in mask.T if c.any())
        ymin, xmin, ymax, xmax = mask_to_box(mask).astype(int)
        if kind == "square":
            assert mask.sum() == (ymax - ymin) * (xmax - xmin)
        if kind == "triangle":  # apex up: rows widen downward
            widths = [int(r.sum()) for r in rows]
            assert widths == sorted(widths) and widths[-1] > widths[0]
    assert render_shape("square", (24, 24), 4, (48, 48)).sum() == 64


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_size"):
        make_shapes_instances(2, image_size=8)


def test_classification_generator_unchanged():
    images, labels = make_shapes_classification(4, 32, seed=0)
    assert images.shape == (4, 32, 32, 3) and labels.dtype == np.int64


def test_other_shape_classes_for_held_out_sets():
    from kzoo.data.shapes import render_shape

    examples = make_shapes_instances(20, 64, 3, seed=3, classes=("cross", "ring"))
    labels = np.concatenate([e["classes"] for e in examples])
    assert set(labels.tolist()) == {1, 2}
    # the default classes draw exactly what they drew before the argument existed
    default, explicit = (
        make_shapes_instances(3, seed=5),
        make_shapes_instances(3, seed=5, classes=("circle", "square", "triangle")),
    )
    for a, b in zip(default, explicit):
        np.testing.assert_array_equal(a["image"], b["image"])
    assert render_shape("ring", (32, 32), 12, (64, 64)).sum() > 0
    with pytest.raises(ValueError, match="shape classes must be some of"):
        make_shapes_instances(1, classes=("hexagon",))
