import numpy as np
import pytest
import tensorflow_datasets as tfds

from kzoo.data import shapes
from kzoo.data.classification import TFDS_DATASETS, load_classification, make_pipeline
from kzoo.data.options import CLASSIFICATION_SOURCES


def test_shapes_are_deterministic_and_balanced():
    a_images, a_labels = shapes.make_shapes_classification(200, 32, seed=3)
    b_images, b_labels = shapes.make_shapes_classification(200, 32, seed=3)
    np.testing.assert_array_equal(a_images, b_images)
    np.testing.assert_array_equal(a_labels, b_labels)
    assert a_images.shape == (200, 32, 32, 3) and a_images.dtype == np.uint8
    assert set(a_labels.tolist()) == set(range(len(shapes.SHAPE_NAMES)))
    assert not np.array_equal(a_images, shapes.make_shapes_classification(200, 32, seed=4)[0])


@pytest.mark.parametrize("kind", shapes.SHAPE_NAMES)
def test_render_shape_masks(kind):
    mask = shapes.render_shape(kind, (16, 16), 8, (32, 32))
    assert mask.dtype == bool and mask[16, 16] == (kind != "ring")
    rows, cols = np.nonzero(mask)
    assert rows.min() >= 8 and rows.max() <= 24 and cols.min() >= 8 and cols.max() <= 24
    with pytest.raises(ValueError, match="unknown shape"):
        shapes.render_shape("hexagon", (16, 16), 8, (32, 32))


def test_pipeline_batches_normalizes_and_augments():
    split = load_classification("shapes", "train", num_examples=100, image_size=16)
    train = make_pipeline(split, 32, training=True, crop_padding=2, horizontal_flip=True)
    batches = list(train)
    assert len(batches) == 3  # the partial batch is dropped in training
    images, labels = batches[0]
    assert images.shape == (32, 16, 16, 3) and images.dtype.name == "float32"
    assert float(images.numpy().min()) >= -1.0 and float(images.numpy().max()) <= 1.0
    evaluation = list(make_pipeline(split, 32, training=False))
    assert sum(int(b[1].shape[0]) for b in evaluation) == 100  # evaluation keeps every example, in order
    raw = next(iter(split.dataset.batch(100)))[0].numpy()
    np.testing.assert_allclose(evaluation[0][0].numpy(), raw[:32] / 127.5 - 1, atol=1e-6)


def test_unknown_sources():
    with pytest.raises(ValueError, match="unknown data source"):
        load_classification("imagenet", "train")
    with pytest.raises(ValueError, match="not a classification set|unknown TFDS classification set"):
        load_classification("tfds", "train", tfds_name="coco")
    with pytest.raises(FileNotFoundError, match="directory not found"):
        load_classification("fashion_mnist", "train", data_dir="/nonexistent/fashion")


def test_an_unknown_source_lists_the_sources():
    with pytest.raises(ValueError, match="choose one of") as caught:
        load_classification("imagenet", "train")
    assert str(CLASSIFICATION_SOURCES) in str(caught.value)


# -- TFDS, on TFDS's mock data (no download) ---------------------------------------------------------------------------

TFDS_SHAPES = {
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "cifar100": (32, 32, 3),
    "svhn_cropped": (32, 32, 3),
}


@pytest.mark.parametrize("name", sorted(TFDS_DATASETS))
def test_tfds_classification_sets(name):
    with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
        split = load_classification("tfds", "train", tfds_name=name, num_examples=40)
        batch_images, batch_labels = next(
            iter(make_pipeline(split, 16, training=True, crop_padding=2, horizontal_flip=True))
        )
    assert split.num_examples == 40
    assert len(split.class_names) == (100 if name == "cifar100" else 10)
    assert split.flip_ok == (name in ("fashion_mnist", "cifar10", "cifar100"))
    assert tuple(batch_images.shape) == (16, *TFDS_SHAPES[name])
    assert batch_labels.dtype.name == "int64"
    assert float(batch_images.numpy().min()) >= -1 and float(batch_images.numpy().max()) <= 1
