"""The TFDS path of the classification pipeline, on TFDS's mock data (no download)."""

import pytest
import tensorflow_datasets as tfds

from kzoo.data.classification import TFDS_DATASETS, load_classification, make_pipeline

SHAPES = {
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
    assert tuple(batch_images.shape) == (16, *SHAPES[name])
    assert batch_labels.dtype.name == "int64"
    assert float(batch_images.numpy().min()) >= -1 and float(batch_images.numpy().max()) <= 1
