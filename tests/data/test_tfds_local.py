"""``data.source: tfds`` end to end without any download: tiny ``GeneratorBasedBuilder`` sets (classification and
instance segmentation, from the built-in shapes), prepared into ``tmp_path`` with ``data_dir``, then loaded
through kzoo's TFDS sources.

The builders live in a module of a namespace package (a folder without ``__init__.py``), as a user's own builder
often does: TFDS then reaches ``importlib_resources`` (``DatasetBuilder.code_path``), which tensorflow-datasets
imports lazily without declaring it, so a fresh install failed with ``ModuleNotFoundError: importlib_resources``
until kzoo's ``pyproject.toml`` declared it."""

import importlib
import pathlib
import sys
import textwrap

import numpy as np
import pytest

from kzoo.config import load_config
from kzoo.data.classification import load_classification, make_pipeline
from kzoo.data.detection_pipeline import make_detection_pipeline
from kzoo.data.detection_sources import load_tfds_instances
from kzoo.data.shapes import SHAPES_INSTANCE_CLASSES, make_shapes_classification, make_shapes_instances

ROOT = pathlib.Path(__file__).resolve().parents[2]
SIZE = 32

BUILDERS = textwrap.dedent(
    '''
    """Tiny TFDS builders of the shapes sets, for kzoo's tests (no download)."""
    import numpy as np
    import tensorflow_datasets as tfds

    from kzoo.data.shapes import SHAPE_NAMES, SHAPES_INSTANCE_CLASSES, make_shapes_classification, make_shapes_instances

    SIZE = 32


    class KzooTinyShapes(tfds.core.GeneratorBasedBuilder):
        """Shapes classification, 32 x 32 RGB."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(SIZE, SIZE, 3)),
                    "label": tfds.features.ClassLabel(names=list(SHAPE_NAMES)),
                }),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(12, 0), "test": self._generate_examples(6, 1)}

        def _generate_examples(self, count, seed):
            images, labels = make_shapes_classification(count, SIZE, seed=seed)
            for index, (image, label) in enumerate(zip(images, labels)):
                yield index, {"image": image, "label": int(label)}


    class KzooTinyShapesInstances(tfds.core.GeneratorBasedBuilder):
        """Shapes instance segmentation: normalized boxes, labels from 0, one full-image mask per object."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(SIZE, SIZE, 3)),
                    "image/id": np.int64,
                    "objects": tfds.features.Sequence({
                        "bbox": tfds.features.BBoxFeature(),
                        "label": tfds.features.ClassLabel(names=list(SHAPES_INSTANCE_CLASSES)),
                        "mask": tfds.features.Tensor(shape=(SIZE, SIZE), dtype=np.uint8),
                    }),
                }),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(6, 0), "validation": self._generate_examples(4, 1)}

        def _generate_examples(self, count, seed):
            for index, example in enumerate(make_shapes_instances(count, SIZE, seed=seed)):
                objects = [
                    {"bbox": tfds.features.BBox(*(np.clip(box / SIZE, 0, 1)).tolist()), "label": int(label) - 1,
                     "mask": mask.astype(np.uint8)}
                    for box, label, mask in zip(example["boxes"], example["classes"], example["masks"])
                ]
                yield index, {"image": example["image"], "image/id": 100 + index, "objects": objects}
    '''
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    """Both tiny builders prepared into a fresh ``data_dir`` (their module in a namespace package)."""
    root = tmp_path_factory.mktemp("tfds")
    package = root / "code" / "kzoo_tfds_local_fixtures"  # no __init__.py: a namespace package
    package.mkdir(parents=True)
    (package / "tiny_builders.py").write_text(BUILDERS)
    sys.path.insert(0, str(root / "code"))
    try:
        module = importlib.import_module("kzoo_tfds_local_fixtures.tiny_builders")
    finally:
        sys.path.remove(str(root / "code"))
    directory = str(root / "data")
    for builder in (module.KzooTinyShapes, module.KzooTinyShapesInstances):
        builder(data_dir=directory).download_and_prepare()
    return directory


def test_setup_declares_what_tfds_imports():
    import tomllib

    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {r.split(";")[0].split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower() for r in requires}
    assert {"tensorflow-datasets", "importlib-resources"} <= {name.replace("_", "-") for name in names}
    # the lazy import inside tensorflow-datasets resolves (it failed in a fresh install)
    from tensorflow_datasets.core import dataset_builder

    assert dataset_builder.importlib_resources.abc.Traversable is not None


def test_tfds_classification(data_dir):
    split = load_classification("tfds", "train", data_dir=data_dir, tfds_name="kzoo_tiny_shapes")
    assert split.num_examples == 12 and split.flip_ok is False  # not a known set: no flip
    images, labels = make_shapes_classification(12, SIZE, seed=0)
    expected = {image.tobytes(): int(label) for image, label in zip(images, labels)}
    pairs = list(split.dataset.as_numpy_iterator())  # TFDS stores examples in its own (hashed) order
    assert {image.tobytes(): int(label) for image, label in pairs} == expected
    batch_images, batch_labels = next(iter(make_pipeline(split, 4, training=True, crop_padding=2)))
    assert tuple(batch_images.shape) == (4, SIZE, SIZE, 3) and batch_labels.dtype.name == "int64"
    test = load_classification("tfds", "test", data_dir=data_dir, tfds_name="kzoo_tiny_shapes", num_examples=4)
    assert test.num_examples == 4 and len(test.class_names) == len(split.class_names)


def test_tfds_classification_errors(data_dir):
    with pytest.raises(ValueError, match="needs data.tfds_name"):
        load_classification("tfds", "train", data_dir=data_dir)
    with pytest.raises(ValueError, match="no \\(image, class label\\) supervised keys"):
        load_classification("tfds", "train", data_dir=data_dir, tfds_name="kzoo_tiny_shapes_instances")


def test_tfds_instances(data_dir):
    loaded = load_tfds_instances("kzoo_tiny_shapes_instances", "train", data_dir)
    assert loaded.mask_source == "mask" and loaded.num_examples == 6
    assert list(loaded.categories.names) == list(SHAPES_INSTANCE_CLASSES)
    expected = make_shapes_instances(6, SIZE, seed=0)
    got = sorted(loaded.dataset.as_numpy_iterator(), key=lambda e: int(e["image_id"]))  # TFDS keeps its own order
    assert [int(e["image_id"]) for e in got] == [100 + i for i in range(6)]
    for example, want in zip(got, expected):
        np.testing.assert_array_equal(example["image"], want["image"])
        np.testing.assert_allclose(example["boxes"], want["boxes"], atol=1e-3)  # normalized and back
        np.testing.assert_array_equal(example["classes"], want["classes"])
        np.testing.assert_array_equal(example["masks"].astype(bool), want["masks"])
    batch = next(
        iter(
            make_detection_pipeline(
                loaded.dataset,
                2,
                training=True,
                image_size=SIZE,
                min_size=SIZE,
                max_size=SIZE,
                max_instances=4,
                mask_size=14,
            )
        )
    )
    assert tuple(batch["images"].shape) == (2, SIZE, SIZE, 3)


def test_tfds_instances_through_the_config(data_dir):
    from kzoo.tasks.instance_segmentation import load_detection_data

    config = load_config(
        "mask_rcnn_shapes.yaml",
        [
            "data.source=tfds",
            "data.tfds_name=kzoo_tiny_shapes_instances",
            f"data.data_dir={data_dir}",
            "data.train_split=train",
            "data.eval_split=validation",
            "data.train_examples=5",
            "data.eval_examples=3",
        ],
    )
    data = load_detection_data(config)
    assert data.num_train == 5 and len(list(data.train.as_numpy_iterator())) == 5 and len(data.eval) == 3
    assert len(data.ground_truth["images"]) == 3 and data.ground_truth["annotations"]
    assert list(data.categories.names) == list(SHAPES_INSTANCE_CLASSES)
    # the shapes config's data.train_examples (1800) is more than the split holds: the split's size counts
    whole = load_detection_data(
        load_config(
            "mask_rcnn_shapes.yaml",
            [
                "data.source=tfds",
                "data.tfds_name=kzoo_tiny_shapes_instances",
                f"data.data_dir={data_dir}",
                "data.train_split=train",
                "data.eval_split=validation",
                "data.eval_examples=3",
            ],
        )
    )
    assert whole.num_train == len(list(whole.train.as_numpy_iterator())) < 1800
