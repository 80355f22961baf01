"""Classification data sources and the tf.data training/evaluation pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from kzoo.data import fashion_mnist, shapes
from kzoo.data.options import CLASSIFICATION_SOURCES
from kzoo.ops.images import normalize_images

# TFDS builders and whether a horizontal flip keeps the label (digits do not).
TFDS_DATASETS = {
    "mnist": False,
    "fashion_mnist": True,
    "cifar10": True,
    "cifar100": True,
    "svhn_cropped": False,
}


@dataclasses.dataclass(frozen=True)
class ClassificationSplit:
    """One split of a classification set.

    Attributes:
        dataset: unbatched ``(image uint8 [H, W, C], label int64 [])`` examples.
        num_examples: number of examples.
        class_names: one name per label.
        flip_ok: whether a horizontal flip keeps the label.
    """

    dataset: tf.data.Dataset
    num_examples: int
    class_names: tuple[str, ...]
    flip_ok: bool


def _from_arrays(images: np.ndarray, labels: np.ndarray, class_names, flip_ok: bool) -> ClassificationSplit:
    dataset = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64)))
    return ClassificationSplit(dataset, len(labels), tuple(class_names), flip_ok)


def load_classification(
    source: str,
    split: str,
    data_dir: str | None = None,
    tfds_name: str | None = None,
    num_examples: int | None = None,
    image_size: int = 32,
) -> ClassificationSplit:
    """Load one split of a classification data set.

    Args:
        source: ``"shapes"`` (built-in, generated), ``"fashion_mnist"`` (local idx
            files) or ``"tfds"`` (a TFDS builder, ``tfds_name``).
        split: ``"train"`` or ``"test"`` (TFDS accepts its own split strings).
        data_dir: idx directory for ``fashion_mnist``; TFDS ``data_dir`` for ``tfds``.
        tfds_name: a TFDS builder with ``(image, label)`` supervised keys: one of ``TFDS_DATASETS`` (whose flip rule
            is known), or any other builder TFDS can load (registered, or prepared in ``data_dir``), which gets no
            horizontal flip.
        num_examples: for ``shapes``, the number of images (default 6000 train,
            1000 test); elsewhere, keep only the first ``num_examples``.
        image_size: for ``shapes``, the side of the images.
    """
    if source == "shapes":
        count = num_examples or (6000 if split == "train" else 1000)
        seed = {"train": 0, "test": 1}.get(split)
        if seed is None:
            raise ValueError(f"unknown shapes split {split!r}; use 'train' or 'test'")
        images, labels = shapes.make_shapes_classification(count, image_size, seed=seed)
        return _from_arrays(images, labels, shapes.SHAPE_NAMES, flip_ok=True)
    if source == "fashion_mnist":
        images, labels = fashion_mnist.load_fashion_mnist(split, data_dir or fashion_mnist.DEFAULT_DIR)
        if num_examples:
            images, labels = images[:num_examples], labels[:num_examples]
        return _from_arrays(images, labels, fashion_mnist.CLASS_NAMES, flip_ok=True)
    if source == "tfds":
        return _load_tfds(tfds_name, split, data_dir, num_examples)
    raise ValueError(f"unknown data source {source!r}; choose one of {CLASSIFICATION_SOURCES}")


def _load_tfds(name: str | None, split: str, data_dir: str | None, num_examples: int | None) -> ClassificationSplit:
    if not name:
        raise ValueError(f"data.source 'tfds' needs data.tfds_name, e.g. one of {sorted(TFDS_DATASETS)}")
    import tensorflow_datasets as tfds

    if num_examples:
        split = f"{split}[:{num_examples}]"
    builder = tfds.builder(name, data_dir=data_dir)
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2 or not hasattr(builder.info.features[keys[1]], "names"):
        raise ValueError(f"TFDS {name} has no (image, class label) supervised keys: not a classification set")
    dataset = tfds.load(name, split=split, data_dir=data_dir, as_supervised=True)
    dataset = dataset.map(lambda image, label: (image, tf.cast(label, tf.int64)))
    count = int(dataset.cardinality())
    names = tuple(builder.info.features[keys[1]].names)
    return ClassificationSplit(dataset, count, names, TFDS_DATASETS.get(name.split("/")[0].split(":")[0], False))


def _augment(image: tf.Tensor, crop_padding: int, flip: bool) -> tf.Tensor:
    if crop_padding > 0:
        shape = tf.shape(image)
        padded = tf.pad(image, [[crop_padding, crop_padding], [crop_padding, crop_padding], [0, 0]])
        image = tf.image.random_crop(padded, shape)
    if flip:
        image = tf.image.random_flip_left_right(image)
    return image


def make_pipeline(
    split: ClassificationSplit,
    batch_size: int,
    training: bool,
    crop_padding: int = 0,
    horizontal_flip: bool = False,
    shuffle_buffer: int = 10_000,
    seed: int = 0,
    cache: bool = True,
) -> tf.data.Dataset:
    """Batched ``(images float32 [B, H, W, C] in [-1, 1], labels int64 [B])``.

    Training pipelines cache the raw images, shuffle each epoch, augment (random
    crop of the image zero-padded by ``crop_padding`` pixels, horizontal flip where
    ``split.flip_ok``), and drop the last partial batch; evaluation pipelines keep
    every example in order. Both prefetch with AUTOTUNE.
    """
    dataset = split.dataset
    if cache:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(min(shuffle_buffer, split.num_examples), seed=seed, reshuffle_each_iteration=True)
        flip = horizontal_flip and split.flip_ok
        if crop_padding > 0 or flip:
            dataset = dataset.map(
                lambda image, label: (_augment(image, crop_padding, flip), label),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
    dataset = dataset.batch(batch_size, drop_remainder=training, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.map(
        lambda images, labels: (normalize_images(images), labels), num_parallel_calls=tf.data.AUTOTUNE
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
