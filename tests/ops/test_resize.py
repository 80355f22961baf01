"""kzoo.ops.resize owns the resize rule and the inverse box mapping: the model's resize, the data pipeline's,
evaluation's mapping back and the TFLite letterbox agree to the pixel and to 1e-4 px on odd sizes."""

import math

import numpy as np
import pytest
import tensorflow as tf

from kzoo.data.detection_pipeline import make_detection_pipeline
from kzoo.evaluation.detection import predict_batches
from kzoo.export import letterbox, run_mask_rcnn_tflite_on_photos
from kzoo.export import mask_rcnn as mask_rcnn_export_module
from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.models.mask_rcnn_config import MaskRCNNConfig
from kzoo.ops import resize
from kzoo.ops.resize import boxes_to_input, canvas_size, resize_and_pad, resize_scale, resized_size, scale_boxes

SIZES = [(37, 101), (333, 500), (1, 7), (499, 1), (640, 481)]
RULES = [(128, 128), (320, 320), (800, 1333)]
# boxes as fractions of the image: the whole image, an inner box, a thin one, one on the bottom-right border
FRACTIONS = np.array([[0, 0, 1, 1], [0.3, 0.1, 0.7, 0.9], [0.123, 0.456, 0.125, 0.789], [0.5, 0.5, 1, 1]])
ATOL = 1e-4


def in_pixels(size) -> np.ndarray:
    """FRACTIONS as float64 pixel boxes of an image of ``size``."""
    return FRACTIONS * np.tile(np.asarray(size, np.float64), 2)


def torchvision_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """torchvision's GeneralizedRCNNTransform size, written out independently."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return max(math.floor(height * scale), 1), max(math.floor(width * scale), 1)


class FixedDetections(MaskRCNNModel):
    """A Mask R-CNN whose detector returns FRACTIONS of each image's resized size (no network runs)."""

    def detect_resized(self, images, image_size, normalized=False):
        return fraction_detections(images, image_size)


def fraction_detections(images, image_size) -> dict:
    size = tf.cast(image_size, tf.float32)  # [B, 2]
    boxes = tf.constant(FRACTIONS, tf.float32)[None] * tf.tile(size, [1, 2])[:, None, :]
    return {"detection_boxes": boxes}


@pytest.fixture(scope="module")
def models():
    return {
        (min_size, max_size): FixedDetections(
            MaskRCNNConfig().replace(
                backbone={"name": "small_convnet", "width": 0.25, "norm": "group"},
                input={"min_size": min_size, "max_size": max_size},
            )
        )
        for min_size, max_size in RULES
    }


def constant_image(size) -> np.ndarray:
    return np.full((*size, 3), 255, np.uint8)


def content_size(canvas: np.ndarray) -> tuple[int, int]:
    """Height and width of the non-zero top-left block of ``canvas`` ``[H, W, C]``."""
    rows, cols = np.nonzero(np.abs(canvas).sum(-1))
    return int(rows.max()) + 1, int(cols.max()) + 1


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("rule", RULES)
def test_python_and_graph_rules_agree_with_torchvision(size, rule):
    expected = torchvision_size(*size, *rule)
    assert resized_size(*size, *rule) == expected
    graph = resized_size(tf.constant(size[0]), tf.constant(size[1]), *rule)
    assert tuple(graph.numpy()) == expected
    assert float(resize_scale(tf.constant(size[0]), tf.constant(size[1]), *rule).numpy()) == resize_scale(*size, *rule)


@pytest.mark.parametrize("rule", RULES)
def test_model_resize_maps_boxes_back(models, rule):
    model = models[rule]
    dynamic = tf.function(
        lambda images: resize_and_pad(images, *rule), input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)]
    )
    for size in SIZES:
        expected = torchvision_size(*size, *rule)
        image = constant_image(size)[None]
        canvas, image_size = model.preprocess(image)
        assert tuple(image_size.numpy()) == expected, size
        assert content_size(canvas.numpy()[0]) == expected, size  # the pixels, not only the reported size
        padded, graph_size = dynamic(tf.constant(image, tf.float32))  # the SavedModel's unknown-size path
        assert tuple(graph_size.numpy()) == expected and padded.shape[1:3] == canvas_size(rule[1], 32)
        assert content_size(padded.numpy()[0]) == expected
        boxes = model.call(image)["detection_boxes"].numpy()[0]  # the model's own mapping back
        np.testing.assert_allclose(boxes, in_pixels(size), atol=ATOL, rtol=0)


@pytest.mark.parametrize("rule", RULES)
def test_data_pipeline_resize_and_evaluation_mapping_back(rule):
    canvas = canvas_size(rule[1], 32)
    examples = [
        {
            "image": constant_image(size),
            "boxes": in_pixels(size).astype(np.float32),
            "classes": np.ones(len(FRACTIONS), np.int32),
            "masks": np.ones((len(FRACTIONS), *size), bool),
        }
        for size in SIZES
    ]
    dataset = make_detection_pipeline(
        examples,
        1,
        training=False,
        image_size=canvas,
        min_size=rule[0],
        max_size=rule[1],
        max_instances=len(FRACTIONS),
        mask_size=4,
    )

    class Detector:
        detect_resized = staticmethod(fraction_detections)

    seen = 0
    for (outputs, batch), size in zip(predict_batches(Detector(), dataset), SIZES):
        expected = torchvision_size(*size, *rule)
        assert tuple(batch["image_size"][0]) == expected, size
        assert content_size(batch["images"][0]) == expected, size
        assert batch["scale"][0] == pytest.approx(resize_scale(*size, *rule), rel=1e-6)
        # the pipeline's boxes are in resized pixels, evaluation maps the detections back to the input's
        np.testing.assert_allclose(batch["boxes"][0], in_pixels(expected), atol=ATOL, rtol=0)
        np.testing.assert_allclose(outputs["detection_boxes"][0], in_pixels(size), atol=ATOL, rtol=0)
        seen += 1
    assert seen == len(SIZES)


@pytest.mark.parametrize("rule", RULES)
def test_tflite_letterbox_and_mapping_back(rule, monkeypatch):
    canvas = canvas_size(rule[1], 32)
    photos = [constant_image(size) for size in SIZES]
    expected_sizes = [torchvision_size(*size, *rule) for size in SIZES]
    for photo, expected in zip(photos, expected_sizes):
        boxed, scales = letterbox(photo, canvas, *rule)
        assert boxed.shape == (*canvas, 3) and content_size(boxed) == expected
        np.testing.assert_allclose(scales * photo.shape[:2], expected)

    class Interpreter:
        def get_input_details(self):
            return [{"shape": np.array([1, *canvas, 3])}]

    def run(path, canvases, num_threads=None):  # detections at FRACTIONS of each canvas's expected resized size
        assert [content_size(c) for c in canvases] == expected_sizes
        return {key: value.numpy() for key, value in fraction_detections(canvases, expected_sizes).items()}

    monkeypatch.setattr(mask_rcnn_export_module, "load_interpreter", lambda path, **kwargs: Interpreter())
    monkeypatch.setattr(mask_rcnn_export_module, "run_mask_rcnn_tflite", run)
    out = run_mask_rcnn_tflite_on_photos("model.tflite", photos, min_size=rule[0], max_size=rule[1])
    for boxes, size in zip(out["detection_boxes"], SIZES):
        np.testing.assert_allclose(boxes, in_pixels(size), atol=ATOL, rtol=0)


def test_letterbox_default_fits_the_canvas():
    # min_size = max_size = max(canvas), capped by the canvas: a square canvas is the model's rule at its side
    for size in SIZES:
        _, fitted = resize.letterbox(np.zeros((*size, 3), np.float32), (128, 128))
        assert fitted == resized_size(*size, 128, 128)
    _, fitted = resize.letterbox(np.zeros((300, 100, 3), np.float32), (64, 96))  # the height limits: 64 / 300
    assert fitted == (64, 21)
    _, fitted = resize.letterbox(np.zeros((100, 300, 3), np.float32), (64, 96))  # the width limits: 96 / 300
    assert fitted == (32, 96)
    padded, fitted = resize.letterbox(tf.zeros([2, 100, 300, 3]), (64, 96))
    assert padded.shape == (2, 64, 96, 3)


def test_boxes_to_input_inverts_scale_boxes_for_tensors_and_arrays():
    boxes = in_pixels((333, 500))
    resized = resized_size(333, 500, 800, 1333)
    forward = scale_boxes(boxes, (333, 500), resized)
    np.testing.assert_allclose(boxes_to_input(forward, resized, (333, 500)), boxes, atol=1e-9)
    back = boxes_to_input(tf.constant(forward[None], tf.float32), tf.constant(resized), tf.constant([333, 500]))
    assert back.dtype == tf.float32 and back.shape == (1, len(FRACTIONS), 4)
    np.testing.assert_allclose(back.numpy()[0], boxes, atol=ATOL, rtol=0)
    # per-image sizes [B, 2] with boxes [B, D, 4]; clipping to the input
    batch = np.stack([forward, forward + 5.0])
    clipped = boxes_to_input(batch, np.array([resized, resized]), np.array([[333, 500], [333, 500]]), clip=True)
    assert clipped.shape == (2, len(FRACTIONS), 4) and clipped[1].max() <= 500 and clipped[1, 0, 2] == 333
    clipped_tf = boxes_to_input(
        tf.constant(batch), tf.constant([resized, resized]), tf.constant([[333, 500]] * 2), clip=True
    )
    np.testing.assert_allclose(clipped_tf.numpy(), clipped)


def test_empty_images_are_refused():
    with pytest.raises(ValueError, match="cannot resize an empty image"):
        resized_size(0, 5, 128, 128)
    with pytest.raises(tf.errors.InvalidArgumentError, match="cannot resize an empty image"):
        resized_size(tf.constant(0), tf.constant(5), 128, 128)
    with pytest.raises(ValueError, match="canvas must be positive"):
        resize.letterbox(np.zeros((4, 4, 3)), (0, 4))
