"""``compute_dtype="bfloat16"``: convolutional parts in bfloat16, box geometry in float32, same outputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.models.mask_rcnn_config import MaskRCNNConfig

SMALL = dict(
    num_classes=4,
    backbone={"name": "small_convnet", "width": 0.25, "norm": "group"},
    fpn={"channels": 16},
    anchors={"sizes": (8, 16, 32, 64, 128)},
    rpn={"pre_nms_top_k_test": 50, "post_nms_top_k_test": 20},
    box_head={"fc_dim": 32},
    mask_head={"num_convs": 1, "channels": 16},
    detection={"max_detections": 10, "score_threshold": 0.0},
    input={"min_size": 64, "max_size": 64},
)


def test_bfloat16_compute_keeps_geometry_in_float32():
    model = MaskRCNNModel(MaskRCNNConfig().replace(**SMALL, compute_dtype="bfloat16"))
    reference = MaskRCNNModel(MaskRCNNConfig().replace(**SMALL))
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype(np.uint8)
    out = model(images)
    reference(images)
    reference.set_weights(model.get_weights())  # float32 variables in both: the same weights load
    expected = reference(images)
    assert keras.mixed_precision.global_policy().name == "float32"  # building did not leak the policy
    for layer in (model.fpn, model.rpn_head, model.box_head, model.mask_head):
        assert layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32", layer.name
    # the policy is passed to every layer as dtype= (keras-hub's plumbing), the backbone's too
    assert {layer.compute_dtype for layer in model.backbone.layers[1:]} == {"bfloat16"}
    assert {layer.compute_dtype for layer in reference.backbone.layers[1:]} == {"float32"}
    for layer in (model.proposal_generator, model.detection_generator, model.box_roi_align):
        assert layer.compute_dtype == "float32", layer.name
    for key in ("detection_boxes", "detection_scores", "detection_masks"):
        assert out[key].dtype == "float32", key
    np.testing.assert_array_equal(out["num_detections"].numpy(), expected["num_detections"].numpy())
    # bfloat16 keeps 8 bits of mantissa: scores agree to about 1e-2
    np.testing.assert_allclose(out["detection_scores"].numpy(), expected["detection_scores"].numpy(), atol=3e-2)


def test_unknown_compute_dtype_is_an_error():
    with pytest.raises(ValueError, match="compute_dtype"):
        MaskRCNNConfig(compute_dtype="float16")
