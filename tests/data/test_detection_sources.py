"""kzoo.data.detection_sources: every source gives the pipeline the same instances (COCO records, TFDS builders
with panoptic, segmentation or box masks; example dicts checked), and their instance counts."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from kzoo.data.coco_categories import CocoCategories
from kzoo.data.coco_reader import load_coco_instances
from kzoo.data.coco_writer import write_coco_json
from kzoo.data.detection_pipeline import crop_masks_to_boxes, make_detection_pipeline
from kzoo.data.detection_sources import INSTANCE_SPEC, count_instances, instance_dataset, load_tfds_instances
from kzoo.data.shapes import make_shapes_instances


@pytest.fixture(scope="module")
def shapes_examples():
    return make_shapes_instances(5, image_size=64, max_instances=4, seed=1)


def test_coco_source(tmp_path, shapes_examples):
    categories = CocoCategories((3, 8, 11), ("circle", "square", "triangle"))
    examples = []
    for i, ex in enumerate(shapes_examples[:3]):
        Image.fromarray(ex["image"]).save(tmp_path / f"{i}.png")
        examples.append({**ex, "file_name": f"{i}.png", "image_id": 10 + i})
    examples[1]["is_crowd"] = np.arange(len(examples[1]["classes"])) == 0
    write_coco_json(examples, categories, str(tmp_path / "a.json"), segmentation_format=("polygon", "rle"))
    loaded = load_coco_instances(str(tmp_path / "a.json"), str(tmp_path))
    batch = next(iter(make_detection_pipeline(loaded, 3, False, image_size=64, max_instances=5, mask_size=12)))
    np.testing.assert_array_equal(batch["image_id"].numpy(), [10, 11, 12])
    np.testing.assert_array_equal(batch["images"].numpy(), np.stack([ex["image"] for ex in examples]))
    for i, ex in enumerate(examples):
        n = len(ex["classes"])
        np.testing.assert_array_equal(batch["classes"].numpy()[i, :n], ex["classes"])
        np.testing.assert_array_equal(batch["boxes"].numpy()[i, :n], ex["boxes"])
        expected = crop_masks_to_boxes(tf.constant(ex["masks"]), tf.constant(ex["boxes"]), 12).numpy()
        np.testing.assert_array_equal(batch["masks"].numpy()[i, :n], expected)
    np.testing.assert_array_equal(batch["is_crowd"].numpy()[1, :2], [True, False])


def test_instance_dataset_and_counts(tmp_path, shapes_examples):
    dataset, loader, count = instance_dataset(shapes_examples)
    assert count == 5 and loader is not None
    example = loader(tf.constant(0, tf.int64))
    assert set(example) == set(INSTANCE_SPEC) and example["image"].dtype == tf.uint8
    assert count_instances(shapes_examples) == sum(len(ex["classes"]) for ex in shapes_examples)
    assert count_instances(lambda: iter(shapes_examples)) is None  # a generator is not read to count it
    generated, loader, count = instance_dataset(lambda: iter(shapes_examples))
    assert loader is None and count is None and len(list(generated)) == 5
    with pytest.raises(ValueError, match="keys"):
        instance_dataset(tf.data.Dataset.range(3))
    with pytest.raises(ValueError, match="no examples"):
        instance_dataset([])
    with pytest.raises(ValueError, match="only example dicts or only CocoRecords"):
        instance_dataset([shapes_examples[0], 3])
    Image.fromarray(shapes_examples[0]["image"]).save(tmp_path / "0.png")
    categories = CocoCategories.from_names(("circle", "square", "triangle"))
    write_coco_json([{**shapes_examples[0], "file_name": "0.png"}], categories, str(tmp_path / "a.json"))
    loaded = load_coco_instances(str(tmp_path / "a.json"), str(tmp_path))
    assert count_instances(loaded) == count_instances(loaded.records) == len(shapes_examples[0]["classes"])


# ------------------------------------------------------------------------------------------------- TFDS


def _mock(examples):
    def as_dataset(self, *args, **kwargs):
        spec = self.info.features.get_tensor_spec()
        return tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=spec)

    return tfds.testing.mock_data(as_dataset_fn=as_dataset)


def _panoptic_example():
    h, w = 20, 30
    panoptic = np.zeros((h, w, 3), np.uint8)
    panoptic[2:8, 3:10] = [7, 1, 0]  # segment 7 + 256 = 263
    panoptic[10:18, 12:28] = [5, 0, 0]  # segment 5
    panoptic[0:2] = [9, 0, 0]  # a "stuff" segment
    return {
        "image": np.full((h, w, 3), 100, np.uint8),
        "image/filename": "a.jpg",
        "image/id": 42,
        "panoptic_image": panoptic,
        "panoptic_image/filename": "a.png",
        "panoptic_objects": {
            "id": np.array([263, 5, 9]),
            "area": np.array([42, 128, 60]),
            "bbox": np.array(
                [[2 / h, 3 / w, 8 / h, 10 / w], [10 / h, 12 / w, 18 / h, 28 / w], [0, 0, 2 / h, 1]], np.float32
            ),
            "label": np.array([0, 79, 120]),
            "is_crowd": np.array([False, True, False]),
        },
    }


def test_tfds_coco_panoptic_masks():
    with _mock([_panoptic_example()]):
        instances = load_tfds_instances("coco/2017_panoptic", "validation")
        example = next(iter(instances.dataset))
        batch = next(iter(make_detection_pipeline(instances, 1, False, image_size=32, mask_size=8)))
    assert instances.mask_source == "panoptic" and instances.categories.num_classes == 80
    assert instances.categories.to_category_id(80) == 90  # TFDS label 79: toothbrush, COCO id 90
    np.testing.assert_array_equal(example["classes"].numpy(), [1, 80])  # the stuff segment is dropped
    np.testing.assert_array_equal(example["is_crowd"].numpy(), [False, True])
    np.testing.assert_allclose(example["boxes"].numpy(), [[2, 3, 8, 10], [10, 12, 18, 28]], atol=1e-5)
    np.testing.assert_array_equal(example["masks"].numpy().sum((1, 2)), [42, 128])
    assert int(example["image_id"]) == 42
    np.testing.assert_array_equal(batch["masks"].numpy()[0, :2], 1)  # rectangles fill their boxes


def test_tfds_coco_without_masks():
    h, w = 16, 24
    example = {
        "image": np.zeros((h, w, 3), np.uint8),
        "image/filename": "a.jpg",
        "image/id": 1,
        "objects": {
            "id": np.array([1]),
            "area": np.array([12]),
            "bbox": np.array([[0.25, 0.25, 0.5, 0.5]], np.float32),
            "label": np.array([3]),
            "is_crowd": np.array([False]),
        },
    }
    with _mock([example]):
        with pytest.raises(ValueError, match="2017_panoptic"):
            load_tfds_instances("coco/2017", "validation")
        instances = load_tfds_instances("coco/2017", "validation", box_masks=True)
        example = next(iter(instances.dataset))
    assert instances.mask_source == "box" and instances.categories.to_category_id(4) == 4
    np.testing.assert_array_equal(example["masks"].numpy()[0, 4:8, 6:12], 1)
    assert example["masks"].numpy().sum() == 24


def test_tfds_lvis_segmentation_masks():
    h, w = 12, 10
    masks = np.zeros((2, h, w, 1), np.uint8)
    masks[0, 1:5, 2:6] = 1
    masks[1, 6:12, 0:10] = 1
    example = {
        "image": np.zeros((h, w, 3), np.uint8),
        "image/id": 5,
        "neg_category_ids": np.array([1]),
        "not_exhaustive_category_ids": np.array([2]),
        "objects": {
            "id": np.array([1, 2]),
            "area": np.array([16, 60]),
            "bbox": np.array([[1 / h, 2 / w, 5 / h, 6 / w], [6 / h, 0, 1, 1]], np.float32),
            "label": np.array([0, 1202]),
            "segmentation": masks,
        },
    }
    with _mock([example]):
        instances = load_tfds_instances("lvis", "validation")
        example = next(iter(instances.dataset))
    assert instances.mask_source == "segmentation" and instances.categories.num_classes == 1203
    np.testing.assert_array_equal(example["classes"].numpy(), [1, 1203])
    np.testing.assert_array_equal(example["masks"].numpy(), masks[..., 0])
