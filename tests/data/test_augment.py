"""Training augmentation of the detection pipeline: scale jitter (boxes and box-cropped masks follow the image,
cut instances are clipped or dropped), color jitter, reproducibility; and the pure functions of kzoo.data.augment.

The geometric checks rebuild each element's draw from the pipeline's documented keys (the ``k``-th value of
``tf.data.Dataset.random(seed, rerandomize_each_iteration=True)``'s first pass, with ``seed``, for the ``k``-th
element of the first epoch) and compare the pipeline's output with the same transform applied, in float64 NumPy,
to the exact full-image masks of the shapes data.
"""

import numpy as np
import pytest
import tensorflow as tf

from kzoo.data import augment
from kzoo.data.detection_pipeline import make_detection_pipeline
from kzoo.data.shapes import make_shapes_instances, mask_to_box

CANVAS, MASK_SIZE, MAX_INSTANCES, SEED = 128, 56, 8, 11
JITTER = {"scale_jitter": (0.5, 2.0), "min_box_size": 3.0}
COLORS = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.05}


@pytest.fixture(scope="module")
def examples():
    return make_shapes_instances(40, image_size=CANVAS, max_instances=4, seed=3)


def _pipeline(examples, seed=SEED, training=True, batch_size=1, **kwargs):
    return make_detection_pipeline(
        examples,
        batch_size,
        training,
        image_size=CANVAS,
        max_instances=MAX_INSTANCES,
        mask_size=MASK_SIZE,
        seed=seed,
        **kwargs,
    )


def _draws(seed, count):
    """The first epoch's per-element ``(key, flip)`` of a pipeline with ``seed``."""
    randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(count)
    keys = [tf.constant([int(r), seed], tf.int64) for r in randoms]
    return [(key, bool(tf.random.stateless_uniform([], seed=key) < 0.5)) for key in keys]


def _geometry(key, size, scale_range):
    jitter = augment.random_scale_window(
        tf.random.experimental.stateless_fold_in(key, 1),
        tf.constant(size),
        CANVAS,
        CANVAS,
        (CANVAS, CANVAS),
        scale_range,
    )
    return jitter.scaled_size.numpy(), jitter.offset.numpy(), jitter.window.numpy()


def _transform_mask(mask, scaled, offset, window, flip, samples=8):
    """The full-image mask moved as the image: each canvas pixel's coverage, on ``samples x samples`` points that
    each read the input pixel they fall in (float64)."""
    height, width = mask.shape
    sub = (np.arange(samples) + 0.5) / samples
    rows = np.floor(((np.arange(window[0])[:, None] + sub + offset[0]) * height / scaled[0]).ravel()).astype(int)
    cols = np.floor(((np.arange(window[1])[:, None] + sub + offset[1]) * width / scaled[1]).ravel()).astype(int)
    coverage = mask[np.ix_(rows, cols)].reshape(window[0], samples, window[1], samples).mean((1, 3))
    coverage = coverage[:, ::-1] if flip else coverage
    out = np.zeros((CANVAS, CANVAS))
    out[: window[0], : window[1]] = coverage
    return out


def _reference_crop(mask, box, scaled, offset, window, flip, samples=2):
    """The box-cropped mask of the moved mask, straight from the input mask: each cell's ``samples x samples``
    points (as ``crop_masks_to_boxes``) mapped back through the flip, the window and the resize (float64)."""
    height, width = mask.shape
    sub = (np.arange(MASK_SIZE)[:, None] + (np.arange(samples) + 0.5) / samples).ravel() / MASK_SIZE
    ys = box[0] + sub * (box[2] - box[0])
    xs = box[1] + sub * (box[3] - box[1])
    xs = window[1] - xs if flip else xs
    rows = np.clip(np.floor((ys + offset[0]) * height / scaled[0]).astype(int), 0, height - 1)
    cols = np.clip(np.floor((xs + offset[1]) * width / scaled[1]).astype(int), 0, width - 1)
    return mask[np.ix_(rows, cols)].reshape(MASK_SIZE, samples, MASK_SIZE, samples).mean((1, 3))


def _exact_box(mask, scaled, offset, window, flip):
    """The tight box of the moved mask as a union of squares: each input pixel scaled, shifted, cut to the window."""
    rows, cols = np.nonzero(mask)
    ry, rx = scaled[0] / mask.shape[0], scaled[1] / mask.shape[1]
    y0, y1 = np.clip(rows * ry - offset[0], 0, window[0]), np.clip((rows + 1) * ry - offset[0], 0, window[0])
    x0, x1 = np.clip(cols * rx - offset[1], 0, window[1]), np.clip((cols + 1) * rx - offset[1], 0, window[1])
    keep = (y1 > y0) & (x1 > x0)
    if not keep.any():
        return np.zeros(4)
    box = np.array([y0[keep].min(), x0[keep].min(), y1[keep].max(), x1[keep].max()])
    return np.array([box[0], window[1] - box[3], box[2], window[1] - box[1]]) if flip else box


def _paste(crop, box, size):
    """A box-cropped mask pasted back (float64): each pixel center inside the box reads the crop bilinearly."""
    cells = crop.shape[0]

    def axis(start, end, length):
        centers = np.arange(length) + 0.5
        u = np.clip((centers - start) / max(end - start, 1e-9) * cells - 0.5, 0, cells - 1)
        low = np.minimum(np.floor(u).astype(int), cells - 2) if cells > 1 else np.zeros(length, int)
        return low, u - low, (centers >= start) & (centers < end)

    r0, fr, rows_in = axis(box[0], box[2], size[0])
    c0, fc, cols_in = axis(box[1], box[3], size[1])
    r1, c1 = np.minimum(r0 + 1, cells - 1), np.minimum(c0 + 1, cells - 1)
    crop = crop.astype(np.float64)
    top = crop[np.ix_(r0, c0)] * (1 - fc) + crop[np.ix_(r0, c1)] * fc
    bottom = crop[np.ix_(r1, c0)] * (1 - fc) + crop[np.ix_(r1, c1)] * fc
    value = top * (1 - fr[:, None]) + bottom * fr[:, None]
    return (value >= 0.5) & rows_in[:, None] & cols_in[None, :]


def _iou(a, b):
    union = np.logical_or(a, b).sum()
    return np.logical_and(a, b).sum() / union if union else 1.0


def _check_jittered(examples, scale_range, horizontal_flip=True, min_box_size=3.0):
    """Every element of a first epoch against the float64 reference; returns the per-instance records."""
    by_id = {i + 1: ex for i, ex in enumerate(examples)}
    draws = _draws(SEED, len(examples))
    pipeline = _pipeline(examples, scale_jitter=scale_range, min_box_size=min_box_size, horizontal_flip=horizontal_flip)
    records = []
    for (key, flip), batch in zip(draws, pipeline):
        ex = by_id[int(batch["image_id"][0])]
        flip = flip and horizontal_flip
        scaled, offset, window = _geometry(key, ex["image"].shape[:2], scale_range)
        np.testing.assert_array_equal(batch["image_size"].numpy()[0], window)
        np.testing.assert_array_equal(batch["original_size"].numpy()[0], ex["image"].shape[:2])
        # the image: one resize of the input, the window cut from it, padded with zeros
        image = tf.image.resize(ex["image"], scaled, antialias=False).numpy()
        image = image[offset[0] : offset[0] + window[0], offset[1] : offset[1] + window[1]]
        image = image[:, ::-1] if flip else image
        out = batch["images"].numpy()[0]
        np.testing.assert_allclose(out[: window[0], : window[1]], image, atol=1e-3)
        assert not out[window[0] :].any() and not out[:, window[1] :].any()

        valid = batch["valid"].numpy()[0]
        boxes, masks = batch["boxes"].numpy()[0][valid], batch["masks"].numpy()[0][valid]
        classes = batch["classes"].numpy()[0][valid]
        assert not batch["masks"].numpy()[0][~valid].any() and not batch["classes"].numpy()[0][~valid].any()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= window).all()
        nxt = 0
        for mask, label in zip(ex["masks"], ex["classes"]):
            coverage = _transform_mask(mask, scaled, offset, window, flip)
            moved, ties = coverage >= 0.5, coverage == 0.5  # ties: pixels half covered, either way is right
            tight = mask_to_box(coverage > 0)  # the pixels the moved mask touches
            box = mask_to_box(mask) * np.tile(scaled / mask.shape, 2) - np.tile(offset, 2)
            cut = bool((box[:2] < -1e-4).any() or (box[2:] > window + 1e-4).any())
            side = min(tight[2] - tight[0], tight[3] - tight[1])
            exact = _exact_box(mask, scaled, offset, window, flip)
            kept = (
                nxt < len(boxes) and classes[nxt] == label and moved.any() and np.abs(boxes[nxt] - exact).max() <= 1e-3
            )
            record = {"cut": cut, "kept": kept, "side": side, "area": int(moved.sum())}
            if kept:
                record["box_error"] = float(np.abs(boxes[nxt] - tight).max())
                record["iou"] = _iou(_paste(masks[nxt], boxes[nxt], (CANVAS, CANVAS)) & ~ties, moved & ~ties)
                reference = _reference_crop(mask, boxes[nxt], scaled, offset, window, flip)
                record["crop_error"] = float(np.abs(masks[nxt] - reference).mean())
                record["crop_iou"] = _iou(masks[nxt] >= 0.5, reference >= 0.5)
                nxt += 1
            records.append(record)
        assert nxt == len(boxes), "every output instance is a source instance, in order"
    return records


@pytest.fixture(scope="module")
def jittered(examples):
    return _check_jittered(examples, (0.5, 2.0))


def test_scale_jitter_box_cropped_masks_match_the_moved_masks(jittered):
    # in the crop's own frame: the box-cropped mask is the crop of the moved mask (same sample points) to rounding
    kept = [r for r in jittered if r["kept"]]
    crop_ious, crop_errors = np.array([r["crop_iou"] for r in kept]), np.array([r["crop_error"] for r in kept])
    print(
        f"\nscale jitter [0.5, 2], {len(kept)} kept instances ({sum(r['cut'] for r in kept)} cut): box-cropped "
        f"mask vs the float64 crop of the moved mask: min IoU {crop_ious.min():.4f}, max mean |error| "
        f"{crop_errors.max():.4f}"
    )
    assert crop_ious.min() >= 0.99 and crop_errors.max() <= 0.01
    # pasted back into the canvas (bilinear, >= 0.5) against the moved mask (coverage >= 0.5; exact ties left out)
    large = [r for r in kept if r["area"] >= 400]
    ious = np.array([r["iou"] for r in large])
    cut = np.array([r["iou"] for r in large if r["cut"]])
    print(
        f"  pasted vs the moved full mask, area >= 400 px: {len(ious)} instances, min IoU {ious.min():.4f}, "
        f"mean {ious.mean():.4f}; cut ones: {len(cut)}, min {cut.min():.4f}, mean {cut.mean():.4f}"
    )
    # a 56 x 56 box-cropped mask pasted on a box enlarged up to 2x loses detail: the mean holds 0.98 on every draw,
    # single large instances reach down to about 0.96 on some draws (a global seed set by other tests changes them)
    assert len(ious) >= 40 and len(cut) >= 10 and ious.mean() >= 0.98 and ious.min() >= 0.95
    small = np.array([r["iou"] for r in kept if 100 <= r["area"] < 400])
    print(f"  100 <= area < 400 px: {len(small)} instances, min IoU {small.min():.4f}, mean {small.mean():.4f}")
    assert small.mean() >= 0.98 and small.min() >= 0.95


def test_scale_jitter_boxes_stay_tight(jittered):
    # each kept box is the exact tight box of the moved mask as a union of squares (matched to 1e-3 px in
    # _check_jittered); the box of the pixels the moved mask touches (seen on 8 x 8 points a pixel) is within a pixel
    errors = np.array([r["box_error"] for r in jittered if r["kept"]])
    print(
        f"\nbox vs the box of the canvas pixels the moved mask touches: max {errors.max():.3f} px, mean "
        f"{errors.mean():.3f} px ({len(errors)} instances, {sum(r['cut'] for r in jittered if r['kept'])} cut)"
    )
    # thin slivers seen on 8 x 8 points a pixel can shift the touched-pixel box by a little over two pixels after a
    # 2x enlargement; the exact box itself is checked to 1e-3 px in _check_jittered
    assert errors.mean() <= 1.0 and errors.max() <= 2.5


def test_scale_jitter_drops_small_cut_instances(jittered):
    # kept unless cut to below min_box_size (3 px): at the threshold the reference's rounding may go either way
    for record in jittered:
        if not record["cut"]:
            assert record["kept"], record
        elif record["area"] == 0 or record["side"] < 3.0 - 1.0:
            assert not record["kept"], record
        elif record["side"] >= 3.0 + 1.0:
            assert record["kept"], record
    assert sum(r["cut"] and r["kept"] for r in jittered) >= 5
    assert sum(not r["kept"] for r in jittered) >= 3


def test_shrink_only_and_no_flip(examples):
    records = _check_jittered(examples[:12], (0.5, 0.9), horizontal_flip=False)
    assert not any(r["cut"] for r in records) and all(r["kept"] for r in records)
    assert min(r["crop_iou"] for r in records) >= 0.99
    assert min(r["iou"] for r in records if r["area"] >= 400) >= 0.98


def _rect_example(rects, size=(64, 64)):
    masks = np.zeros((len(rects), *size), bool)
    for mask, (y0, x0, y1, x1) in zip(masks, rects):
        mask[y0:y1, x0:x1] = True
    return {
        "image": np.full((*size, 3), 90, np.uint8),
        "boxes": np.array(rects, np.float32),
        "classes": np.arange(1, len(rects) + 1, dtype=np.int32),
        "masks": masks,
    }


def test_cut_rectangles_clipped_thin_ones_dropped():
    # s = 2: the 64 x 64 image becomes 128 x 128 and a 64 x 64 window is cut at a random offset in [0, 64]
    whole, stripe, middle = (0, 0, 64, 64), (0, 0, 1, 64), (16, 16, 48, 48)
    example = _rect_example([whole, stripe, middle])
    pipeline = make_detection_pipeline(
        [example] * 6,
        1,
        True,
        image_size=64,
        max_instances=4,
        mask_size=8,
        scale_jitter=(2.0, 2.0),
        min_box_size=3.0,
        horizontal_flip=False,
    )
    for (key, _), batch in zip(_draws(0, 6), pipeline):
        jitter = augment.random_scale_window(
            tf.random.experimental.stateless_fold_in(key, 1), tf.constant([64, 64]), 64, 64, (64, 64), (2.0, 2.0)
        )
        oy, ox = jitter.offset.numpy()
        expected_boxes = [[0, 0, 64, 64]]
        expected_classes = [1]  # the whole image: always cut, clipped to the window
        # the stripe: 2 rows high after the resize and always cut (128 wide): below min_box_size, never kept
        middle_box = np.clip(np.array([32 - oy, 32 - ox, 96 - oy, 96 - ox]), 0, 64)
        if min(middle_box[2] - middle_box[0], middle_box[3] - middle_box[1]) >= 3:
            expected_boxes.append(middle_box)
            expected_classes.append(3)
        valid = batch["valid"].numpy()[0]
        np.testing.assert_array_equal(batch["classes"].numpy()[0][valid], expected_classes)
        np.testing.assert_allclose(batch["boxes"].numpy()[0][valid], expected_boxes, atol=1e-4)
        np.testing.assert_array_equal(batch["masks"].numpy()[0][valid], 1)  # rectangles fill their clipped boxes
        np.testing.assert_array_equal(batch["image_size"].numpy()[0], [64, 64])
        np.testing.assert_allclose(batch["scale"].numpy()[0], 2.0)


def test_evaluation_is_never_augmented(examples):
    plain = _pipeline(examples[:4], training=False, batch_size=2)
    augmented = _pipeline(examples[:4], training=False, batch_size=2, **JITTER, **COLORS)
    for a, b in zip(plain, augmented):
        for key in a:
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)


# ---------------------------------------------------------------------------------------------- determinism


def _epochs(examples, seed, epochs=2, **kwargs):
    dataset = _pipeline(examples[:8], seed=seed, batch_size=4, **JITTER, **COLORS, **kwargs)
    return [[{k: v.numpy() for k, v in batch.items()} for batch in dataset] for _ in range(epochs)]


def _same(a, b):
    return all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_same_seed_same_batches_other_seed_or_epoch_differs(examples):
    first, again, other = _epochs(examples, 5), _epochs(examples, 5), _epochs(examples, 6)
    for epoch in range(2):
        assert _same(first[epoch], again[epoch])
    assert not _same(first[0], other[0])
    assert not _same(first[0], first[1])
    # and not only through the shuffle: the same images get other draws in the next epoch
    by_id = [
        {int(i): (b["image_size"][j], b["images"][j]) for b in epoch for j, i in enumerate(b["image_id"])}
        for epoch in first
    ]
    common = set(by_id[0]) & set(by_id[1])
    assert any(not np.array_equal(by_id[0][i][1], by_id[1][i][1]) for i in common)


# ------------------------------------------------------------------------------------------------- colors


def test_color_jitter_keeps_dtype_range_and_geometry(examples):
    plain = list(_pipeline(examples[:6], batch_size=3))
    colored = list(_pipeline(examples[:6], batch_size=3, **COLORS))
    changed = 0
    for a, b in zip(plain, colored):
        np.testing.assert_array_equal(a["image_id"].numpy(), b["image_id"].numpy())
        for key in ("boxes", "masks", "classes", "valid", "image_size", "original_size", "scale"):
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)
        image = b["images"].numpy()
        assert b["images"].dtype == tf.float32 and image.min() >= 0.0 and image.max() <= 255.0
        sizes = b["image_size"].numpy()
        for i, (h, w) in enumerate(sizes):
            assert not image[i, h:].any() and not image[i, :, w:].any()  # the padding stays black
            changed += not np.array_equal(image[i, :h, :w], a["images"].numpy()[i, :h, :w])
    assert changed == 6


@pytest.mark.parametrize("name", sorted(COLORS))
def test_each_color_jitter_alone(examples, name):
    plain = next(iter(_pipeline(examples[:2], batch_size=2)))["images"].numpy()
    image = next(iter(_pipeline(examples[:2], batch_size=2, **{name: COLORS[name]})))["images"].numpy()
    assert image.min() >= 0 and image.max() <= 255 and not np.array_equal(image, plain)


def test_everything_off_is_byte_identical_to_the_default(examples):
    default = list(make_detection_pipeline(examples[:6], 2, True, image_size=96, seed=4))
    off = list(
        make_detection_pipeline(
            examples[:6],
            2,
            True,
            image_size=96,
            seed=4,
            scale_jitter=None,
            min_box_size=5.0,
            brightness=0.0,
            contrast=0.0,
            saturation=0.0,
            hue=0.0,
        )
    )
    assert len(default) == len(off) == 3
    for a, b in zip(default, off):
        for key in a:
            assert a[key].dtype == b[key].dtype
            assert a[key].numpy().tobytes() == b[key].numpy().tobytes(), key


def test_color_functions_match_torchvision_formulas():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (5, 7, 3)).astype(np.float32)
    gray = image @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(
        augment.adjust_brightness(tf.constant(image), 1.3).numpy(), np.clip(image * 1.3, 0, 255), rtol=1e-5
    )
    np.testing.assert_allclose(
        augment.adjust_contrast(tf.constant(image), 0.6).numpy(),
        np.clip(0.6 * image + 0.4 * gray.mean(), 0, 255),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        augment.adjust_saturation(tf.constant(image), 1.4).numpy(),
        np.clip(1.4 * image + (1 - 1.4) * gray[..., None], 0, 255),
        rtol=1e-4,
        atol=1e-3,
    )
    np.testing.assert_allclose(augment.adjust_hue(tf.constant(image), 0.0).numpy(), image, rtol=1e-4, atol=1e-2)
    red = tf.constant([[[255.0, 0.0, 0.0]]])
    np.testing.assert_allclose(augment.adjust_hue(red, 1 / 3).numpy(), [[[0, 255, 0]]], atol=1e-3)  # red -> green
    unit = augment.color_jitter(tf.constant(image / 255), tf.constant([1, 2], tf.int64), 0.5, 0.5, 0.5, 0.1, 1.0)
    assert unit.numpy().min() >= 0 and unit.numpy().max() <= 1
    same = augment.color_jitter(tf.constant(image), tf.constant([1, 2], tf.int64))
    assert same.numpy().tobytes() == image.tobytes()


def test_mask_extent_and_clip_to_window():
    masks = np.zeros((3, 10, 12), np.uint8)
    masks[0, 2:8, 3:9] = 1
    masks[1, 0:2, 0:2] = 1  # outside the window
    masks[2, 6:10, 0:12] = 1
    region = tf.constant([1.5, 4.25, 9.0, 12.0])
    boxes, nonempty = augment.mask_extent(masks, region)
    np.testing.assert_allclose(boxes.numpy(), [[2, 4.25, 8, 9], [0, 0, 0, 0], [6, 4.25, 9, 12]])
    np.testing.assert_array_equal(nonempty.numpy(), [True, False, True])
    source = tf.constant([[2, 3, 8, 9], [0, 0, 2, 2], [6, 0, 10, 12]], tf.float32)
    clipped, cut = augment.clip_instances_to_window(source, masks, region)
    np.testing.assert_array_equal(cut.numpy(), [True, True, True])
    np.testing.assert_allclose(clipped.numpy(), [[2, 4.25, 8, 9], [0, 0, 0, 0], [6, 4.25, 9, 12]])
    inside, cut = augment.clip_instances_to_window(source[:1], masks[:1], tf.constant([0.0, 0.0, 10.0, 12.0]))
    assert not cut.numpy().any() and np.array_equal(inside.numpy(), source.numpy()[:1])


def test_bad_arguments(examples):
    with pytest.raises(ValueError, match="scale_jitter"):
        _pipeline(examples[:2], scale_jitter=(2.0, 1.0))
    with pytest.raises(ValueError, match="hue"):
        _pipeline(examples[:2], hue=0.7)
    with pytest.raises(ValueError, match="min_box_size"):
        _pipeline(examples[:2], min_box_size=-1.0)
