"""kzoo.evaluation.detection: boxes mapped back to each original image, padding images skipped."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kzoo.evaluation.detection import evaluate_mask_rcnn, predict_batches


class FixedDetector:
    """``detect_resized`` returns one box per image at fixed resized-canvas pixels."""

    def detect_resized(self, images, image_size):
        batch = tf.shape(images)[0]
        box = tf.constant([[[10.0, 20.0, 30.0, 60.0]]])
        return {
            "detection_boxes": tf.tile(box, [batch, 1, 1]),
            "detection_scores": tf.fill([batch, 1], 0.9),
            "detection_classes": tf.ones([batch, 1], tf.int32),
            "num_detections": tf.ones([batch], tf.int32),
        }


class RecordingEvaluator:
    def __init__(self):
        self.updates = []

    def update(self, outputs, image_ids, original_sizes):
        self.updates.append((outputs["detection_boxes"].copy(), image_ids.copy(), original_sizes.copy()))

    def evaluate(self):
        return {"bbox_AP": 0.5}


def _dataset():
    return tf.data.Dataset.from_tensor_slices(
        {
            "images": np.zeros((3, 64, 64, 3), np.float32),
            "image_size": np.array([[64, 64], [32, 64], [64, 64]], np.int32),
            "original_size": np.array([[128, 128], [100, 200], [64, 64]], np.int32),
            "image_id": np.array([7, 8, -1], np.int64),
        }
    ).batch(2)


def test_boxes_go_back_to_each_original_image():
    outputs = [out["detection_boxes"] for out, _ in predict_batches(FixedDetector(), _dataset())]
    np.testing.assert_allclose(outputs[0][0, 0], [20, 40, 60, 120])  # 64 -> 128: x2 on both axes
    np.testing.assert_allclose(outputs[0][1, 0], [10 * 100 / 32, 20 * 200 / 64, 30 * 100 / 32, 60 * 200 / 64])
    np.testing.assert_allclose(outputs[1][0, 0], [10, 20, 30, 60])


def test_evaluate_counts_real_images_only():
    evaluator = RecordingEvaluator()
    metrics = evaluate_mask_rcnn(FixedDetector(), _dataset(), evaluator)
    assert metrics == {"bbox_AP": 0.5, "images": 2}
    assert [ids.tolist() for _, ids, _ in evaluator.updates] == [[7, 8], [-1]]
