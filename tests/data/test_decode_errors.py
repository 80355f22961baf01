"""kzoo.data.decode_errors: the file TF cannot decode is found and named; other errors and sources are left alone."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kzoo.data.coco_categories import CocoCategories
from kzoo.data.coco_reader import load_coco_instances
from kzoo.data.coco_writer import write_coco_json
from kzoo.data.decode_errors import (
    ImageDecodeError,
    explain_image_error,
    find_undecodable_image,
    naming_undecodable_images,
)
from kzoo.data.detection_pipeline import make_detection_pipeline
from kzoo.data.shapes import make_shapes_instances


@pytest.fixture(scope="module")
def truncated_set(tmp_path_factory):
    """Three images; the second one's PNG is cut in half (its header still reads)."""
    root = tmp_path_factory.mktemp("decode")
    examples = make_shapes_instances(3, image_size=32, max_instances=2, seed=2)
    for index, example in enumerate(examples):
        example["file_name"] = f"{index}.png"
        Image.fromarray(example["image"]).save(root / example["file_name"])
    data = (root / "1.png").read_bytes()
    (root / "1.png").write_bytes(data[: len(data) // 2])
    write_coco_json(examples, CocoCategories.from_names(("circle", "square", "triangle")), str(root / "a.json"))
    return load_coco_instances(str(root / "a.json"), str(root))


def test_the_first_undecodable_file_is_found(truncated_set):
    assert len(truncated_set) == 3  # the header check lets it through
    record, message = find_undecodable_image(truncated_set.records, workers=2, chunk=2)
    assert record.file_path.endswith("1.png") and record.image_id == 2 and message
    assert find_undecodable_image(truncated_set.records[:1]) is None


def test_the_pipeline_error_names_the_file(truncated_set):
    pipeline = make_detection_pipeline(truncated_set, 3, False, image_size=32)
    with pytest.raises(ImageDecodeError, match=r"1\.png \(image id 2\) cannot be decoded"):
        with naming_undecodable_images(truncated_set, "training"):
            list(pipeline)


def test_other_errors_and_sources_are_left_alone(truncated_set):
    decode_error = tf.errors.InvalidArgumentError(None, None, "DecodePng: truncated")
    assert explain_image_error([{"image": np.zeros((2, 2, 3), np.uint8)}], decode_error) is None  # not COCO files
    assert explain_image_error(truncated_set, ValueError("DecodePng")) is None  # not TF's
    assert explain_image_error(truncated_set, tf.errors.InvalidArgumentError(None, None, "shapes differ")) is None
    with pytest.raises(ZeroDivisionError):
        with naming_undecodable_images(truncated_set):
            raise ZeroDivisionError
