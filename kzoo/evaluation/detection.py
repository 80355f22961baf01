"""Run a Mask R-CNN over a detection pipeline and score it with COCO AP."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kzoo.evaluation.coco import CocoEvaluator
from kzoo.ops.resize import boxes_to_input


def predict_batches(model: keras.Model, dataset: tf.data.Dataset, verbose: int = 0):
    """Yield ``(outputs, batch)`` for every batch of a :func:`kzoo.data.detection_pipeline.make_detection_pipeline`
    evaluation dataset, with ``outputs`` as NumPy arrays and ``detection_boxes`` mapped back to each original
    image's pixels (``[ymin, xmin, ymax, xmax]``).

    ``model`` is a :class:`kzoo.models.mask_rcnn.MaskRCNNModel`; its :meth:`detect_resized` runs on the
    pipeline's resized, padded canvases (one trace for the whole set).
    """
    detect = tf.function(model.detect_resized)
    batches = int(dataset.cardinality())
    progbar = keras.utils.Progbar(batches if batches >= 0 else None, verbose=verbose, unit_name="batch")
    for index, batch in enumerate(dataset):
        outputs = {k: v.numpy() for k, v in detect(batch["images"], batch["image_size"]).items()}
        outputs["detection_boxes"] = boxes_to_input(
            outputs["detection_boxes"], batch["image_size"].numpy(), batch["original_size"].numpy()
        )
        progbar.update(index + 1)
        yield outputs, {k: v.numpy() for k, v in batch.items()}


def evaluate_mask_rcnn(
    model: keras.Model, dataset: tf.data.Dataset, evaluator: CocoEvaluator, verbose: int = 0
) -> dict[str, float]:
    """COCO bbox and segm AP of ``model`` on an evaluation pipeline whose ``image_id``s are those of the
    evaluator's ground truth (padding images, id -1, are skipped).

    Returns:
        :meth:`CocoEvaluator.evaluate`'s metrics (``bbox_AP``, ``bbox_AP50``, ..., ``segm_APl``) plus
        ``images`` (the real images evaluated).
    """
    images = 0
    for outputs, batch in predict_batches(model, dataset, verbose):
        evaluator.update(outputs, batch["image_id"], batch["original_size"])
        images += int(np.sum(batch["image_id"] >= 0))
    return {**evaluator.evaluate(), "images": images}
