"""kzoo.data.detection_pipeline: shapes, padding, flips, box-cropped masks, the resize rule, real data."""

import os

import numpy as np
import pytest
import tensorflow as tf

from kzoo.data.coco_reader import load_coco_instances
from kzoo.data.detection_pipeline import crop_masks_to_boxes, make_detection_pipeline
from kzoo.data.shapes import make_shapes_instances
from kzoo.ops.resize import resized_size

PENN_FUDAN = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "PennFudanPed")
DTYPES = {
    "images": "float32",
    "image_size": "int32",
    "original_size": "int32",
    "scale": "float32",
    "boxes": "float32",
    "classes": "int32",
    "is_crowd": "bool",
    "valid": "bool",
    "masks": "float32",
    "image_id": "int64",
}


def _shapes(b, canvas, m, s):
    return {
        "images": (b, canvas, canvas, 3),
        "image_size": (b, 2),
        "original_size": (b, 2),
        "scale": (b,),
        "boxes": (b, m, 4),
        "classes": (b, m),
        "is_crowd": (b, m),
        "valid": (b, m),
        "masks": (b, m, s, s),
        "image_id": (b,),
    }


@pytest.fixture(scope="module")
def shapes_examples():
    return make_shapes_instances(5, image_size=64, max_instances=4, seed=1)


def _square_example(image_id=1, box=(10, 20, 30, 44), size=(48, 64)):
    mask = np.zeros(size, bool)
    mask[box[0] : box[2], box[1] : box[3]] = True
    return {
        "image": np.full((*size, 3), 50, np.uint8),
        "boxes": np.array([box], np.float32),
        "classes": np.array([2], np.int32),
        "masks": mask[None],
        "image_id": image_id,
    }


def test_shapes_dtypes_padding_and_validity(shapes_examples):
    batches = list(
        make_detection_pipeline(
            shapes_examples, 2, training=False, image_size=96, min_size=80, max_size=96, max_instances=6, mask_size=14
        )
    )
    assert len(batches) == 3  # 5 examples, the last batch padded up to 2
    for batch in batches:
        assert {k: tuple(v.shape) for k, v in batch.items()} == _shapes(2, 96, 6, 14)
        assert {k: v.dtype.name for k, v in batch.items()} == DTYPES
    ids = np.concatenate([b["image_id"].numpy() for b in batches])
    np.testing.assert_array_equal(ids, [1, 2, 3, 4, 5, -1])
    valid = np.concatenate([b["valid"].numpy() for b in batches])
    counts = [len(ex["classes"]) for ex in shapes_examples] + [0]
    np.testing.assert_array_equal(valid.sum(1), counts)
    for key in ("boxes", "classes", "masks", "is_crowd"):
        values = np.concatenate([b[key].numpy() for b in batches])
        assert not values[~valid].any(), key  # padding is zero
    first = batches[0]
    np.testing.assert_array_equal(first["image_size"].numpy(), [[80, 80], [80, 80]])  # resized_size(64, 64, 80, 96)
    np.testing.assert_allclose(first["scale"].numpy(), [1.25, 1.25])
    assert not first["images"].numpy()[:, 80:].any() and not first["images"].numpy()[:, :, 80:].any()
    ex = shapes_examples[0]
    n = len(ex["classes"])
    np.testing.assert_allclose(first["boxes"].numpy()[0, :n], ex["boxes"] * 1.25, rtol=1e-6)
    np.testing.assert_array_equal(first["classes"].numpy()[0, :n], ex["classes"])
    # the box-cropped masks are the crops of the original full masks
    expected = crop_masks_to_boxes(tf.constant(ex["masks"]), tf.constant(ex["boxes"]), 14).numpy()
    np.testing.assert_array_equal(first["masks"].numpy()[0, :n], expected)


def test_full_box_square_crops_to_ones():
    examples = [
        _square_example(1, (10, 20, 30, 44)),
        _square_example(2, (0, 0, 48, 64)),  # whole image
        _square_example(3, (47, 60, 48, 64)),
    ]  # one row on the border
    for mask_size in (7, 28, 56):
        batch = next(
            iter(
                make_detection_pipeline(
                    examples, 3, training=False, image_size=64, max_instances=2, mask_size=mask_size
                )
            )
        )
        masks = batch["masks"].numpy()
        np.testing.assert_array_equal(masks[:, 0], np.ones((3, mask_size, mask_size)))
        np.testing.assert_array_equal(masks[:, 1], 0)


def test_crop_covers_the_right_cells():
    mask = np.zeros((1, 20, 20), bool)
    mask[0, 4:16, 4:10] = True  # the left half of the box [4, 4, 16, 16]
    crop = crop_masks_to_boxes(tf.constant(mask), tf.constant([[4.0, 4.0, 16.0, 16.0]]), 8).numpy()[0]
    np.testing.assert_array_equal(crop[:, :4], 1)
    np.testing.assert_array_equal(crop[:, 4:], 0)
    # cells of 2 pixels, [5, 7), [7, 9), [9, 11), [11, 13): the mask ends at 10, half-way through the third
    half = crop_masks_to_boxes(tf.constant(mask), tf.constant([[4.0, 5.0, 16.0, 13.0]]), 4).numpy()[0]
    np.testing.assert_array_equal(half, [[1, 1, 0.5, 0]] * 4)


def test_crop_of_flipped_mask_is_the_flipped_crop():
    rng = np.random.default_rng(0)
    masks = rng.random((6, 30, 40)) < 0.5
    boxes = np.sort(rng.uniform(0, 30, (6, 2)), axis=1), np.sort(rng.uniform(0, 40, (6, 2)), axis=1)
    boxes = np.stack([boxes[0][:, 0], boxes[1][:, 0], boxes[0][:, 1], boxes[1][:, 1]], -1).astype(np.float32)
    flipped_boxes = np.stack([boxes[:, 0], 40 - boxes[:, 3], boxes[:, 2], 40 - boxes[:, 1]], -1)
    crops = crop_masks_to_boxes(tf.constant(masks), tf.constant(boxes), 11).numpy()
    flipped = crop_masks_to_boxes(tf.constant(masks[:, :, ::-1].copy()), tf.constant(flipped_boxes), 11).numpy()
    np.testing.assert_array_equal(flipped, crops[:, :, ::-1])


def test_flip_moves_image_boxes_and_masks_together(shapes_examples):
    kwargs = {"image_size": 72, "max_instances": 4, "mask_size": 16, "seed": 5}
    plain = {
        int(b["image_id"][0]): b
        for b in make_detection_pipeline(shapes_examples, 1, True, horizontal_flip=False, **kwargs)
    }
    flips = 0
    for batch in make_detection_pipeline(shapes_examples, 1, True, horizontal_flip=True, **kwargs):
        ref = plain[int(batch["image_id"][0])]
        width = int(ref["image_size"][0, 1])
        image, ref_image = batch["images"].numpy()[0], ref["images"].numpy()[0]
        if np.array_equal(image, ref_image):
            for key in ("boxes", "masks"):
                np.testing.assert_array_equal(batch[key].numpy(), ref[key].numpy())
            continue
        flips += 1
        np.testing.assert_array_equal(image[:, :width], ref_image[:, width - 1 :: -1])
        valid = ref["valid"].numpy()[0]
        box, ref_box = batch["boxes"].numpy()[0][valid], ref["boxes"].numpy()[0][valid]
        np.testing.assert_allclose(
            box, np.stack([ref_box[:, 0], width - ref_box[:, 3], ref_box[:, 2], width - ref_box[:, 1]], -1), atol=1e-5
        )
        np.testing.assert_array_equal(batch["masks"].numpy()[0], ref["masks"].numpy()[0][:, :, ::-1])
        np.testing.assert_array_equal(batch["valid"].numpy(), ref["valid"].numpy())
    assert 0 < flips < len(shapes_examples)


def test_training_is_reproducible_and_drops_remainder(shapes_examples):
    def ids(seed):
        pipeline = make_detection_pipeline(
            shapes_examples, 2, True, image_size=64, max_instances=4, mask_size=8, seed=seed
        )
        return [b["image_id"].numpy().tolist() for b in pipeline]

    first = ids(3)
    assert len(first) == 2 and first == ids(3)


def test_truncates_to_max_instances(shapes_examples):
    many = max(shapes_examples, key=lambda ex: len(ex["classes"]))
    batch = next(iter(make_detection_pipeline([many], 1, False, image_size=64, max_instances=2, mask_size=8)))
    assert batch["valid"].numpy().all()
    np.testing.assert_array_equal(batch["classes"].numpy()[0], many["classes"][:2])


def test_generator_source_and_resize_rule():
    examples = [_square_example(7, size=(48, 64)), _square_example(8, (5, 5, 40, 30), size=(60, 36))]
    batch = next(
        iter(
            make_detection_pipeline(
                lambda: iter(examples), 2, False, image_size=(100, 100), min_size=50, max_size=100, mask_size=8
            )
        )
    )
    np.testing.assert_array_equal(batch["image_id"].numpy(), [7, 8])
    np.testing.assert_array_equal(
        batch["image_size"].numpy(), [resized_size(48, 64, 50, 100), resized_size(60, 36, 50, 100)]
    )
    np.testing.assert_array_equal(batch["original_size"].numpy(), [[48, 64], [60, 36]])
    h, w = resized_size(60, 36, 50, 100)
    np.testing.assert_allclose(
        batch["boxes"].numpy()[1, 0], [5 * h / 60, 5 * w / 36, 40 * h / 60, 30 * w / 36], rtol=1e-6
    )


def test_bad_sources_and_sizes(shapes_examples):
    with pytest.raises(ValueError, match="does not fit the canvas"):
        make_detection_pipeline(shapes_examples, 2, False, image_size=64, max_size=80)
    with pytest.raises(ValueError, match="masks"):
        make_detection_pipeline(
            [{"image": np.zeros((8, 8, 3), np.uint8), "classes": [1], "boxes": [[0, 0, 1, 1]]}], 1, False, image_size=8
        )
    with pytest.raises(TypeError, match="unsupported source"):
        make_detection_pipeline(42, 1, False)


# ------------------------------------------------------------------------------------------ real data


@pytest.mark.skipif(
    not os.path.isdir(PENN_FUDAN),
    reason=f"Penn-Fudan data not found at {PENN_FUDAN} "
    "(real data lives beside the project in ../shared/data; see its README)",
)
def test_penn_fudan_val():
    root = os.path.abspath(PENN_FUDAN)
    loaded = load_coco_instances(
        os.path.join(root, "annotations", "instances_val.json"), os.path.join(root, "PNGImages")
    )
    assert len(loaded) == 43 and loaded.num_instances == 109
    assert loaded.categories.names == ("person",) and loaded.categories.to_label(1) == 1
    assert loaded.categories.to_category_id(1) == 1
    assert not any(v for k, v in loaded.counts.items() if k not in ("images", "instances"))
    pipeline = make_detection_pipeline(
        loaded, 2, True, image_size=320, min_size=256, max_size=320, max_instances=12, mask_size=28
    )
    batches = list(pipeline.take(2))
    assert len(batches) == 2
    for batch in batches:
        assert {k: tuple(v.shape) for k, v in batch.items()} == _shapes(2, 320, 12, 28)
        valid = batch["valid"].numpy()
        assert valid.any(axis=1).all()
        assert (batch["classes"].numpy()[valid] == 1).all()
        masks = batch["masks"].numpy()[valid]
        assert 0.2 < masks.mean() < 0.9  # pedestrians fill a good part of their boxes
        boxes = batch["boxes"].numpy()[valid]
        assert (boxes[:, 2:] > boxes[:, :2]).all() and boxes.max() <= 320
