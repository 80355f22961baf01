"""kzoo.applications.torchvision.keys: torchvision key names and tensor layouts."""

import keras
import numpy as np
import pytest

from kzoo.applications import torchvision as tv
from kzoo.applications.torchvision import keys
from kzoo.layers import BoxHead
from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.models.mask_rcnn_config import MaskRCNNConfig


def test_canonical_keys_of_the_published_checkpoint():
    canonical = tv.canonical_torchvision_key
    assert canonical("backbone.fpn.inner_blocks.3.weight") == "backbone.fpn.inner_blocks.3.0.weight"
    assert canonical("backbone.fpn.layer_blocks.0.bias") == "backbone.fpn.layer_blocks.0.0.bias"
    assert canonical("rpn.head.conv.weight") == "rpn.head.conv.0.0.weight"
    assert canonical("roi_heads.mask_head.mask_fcn4.bias") == "roi_heads.mask_head.3.0.bias"
    assert canonical("module.backbone.body.conv1.weight") == "backbone.body.conv1.weight"
    for key in ("backbone.fpn.inner_blocks.3.0.weight", "rpn.head.conv.0.0.weight", "roi_heads.mask_head.0.0.bias"):
        assert canonical(key) == key


def test_fc6_nhwc_permutation_matches_nchw_head():
    rng = np.random.default_rng(0)
    torch_fc6 = rng.normal(size=(6, 5 * 7 * 7)).astype(np.float32)  # [F, C*S*S] in NCHW order
    x = rng.normal(size=(2, 3, 7, 7, 5)).astype(np.float32)
    heads = {}
    for order in ("nchw", "nhwc"):
        head = BoxHead(3, fc_dim=6, flatten_order=order)
        head.build(x.shape)
        head.fc6.kernel.assign(torch_fc6.T if order == "nchw" else keys._fc6_nhwc(7)(torch_fc6))
        for layer in (head.fc6, head.fc7, head.cls_score, head.bbox_pred):
            layer.bias.assign(np.linspace(-0.5, 0.5, layer.bias.shape[0]).astype(np.float32))
        for layer in (head.fc7, head.cls_score, head.bbox_pred):
            layer.kernel.assign(np.linspace(-0.3, 0.3, np.prod(layer.kernel.shape)).reshape(layer.kernel.shape))
        heads[order] = head(x)
        if order == "nchw":
            nchw_head = head
    np.testing.assert_allclose(heads["nchw"][0].numpy(), heads["nhwc"][0].numpy(), rtol=1e-5, atol=1e-5)
    # the reference: torchvision flattens each RoI's [C, S, S] features
    numpy = {v.path.split("/", 1)[1]: keras.ops.convert_to_numpy(v) for v in nchw_head.weights}
    hidden = np.maximum(x.transpose(0, 1, 4, 2, 3).reshape(2, 3, -1) @ torch_fc6.T + numpy["fc6/bias"], 0)
    hidden = np.maximum(hidden @ numpy["fc7/kernel"] + numpy["fc7/bias"], 0)
    logits = hidden @ numpy["cls_score/kernel"] + numpy["cls_score/bias"]
    np.testing.assert_allclose(heads["nchw"][0].numpy(), logits, rtol=1e-4, atol=1e-5)


def test_delta_rows_and_backbone_checks():
    rows = np.arange(8, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(keys._permuted(keys._copy)(rows)[:, 0], [1, 0, 3, 2, 5, 4, 7, 6])
    with pytest.raises(keys.TorchvisionConversionError, match="multiple of 4"):
        keys._permuted(keys._copy)(np.zeros((6, 3), np.float32))
    config = MaskRCNNConfig().replace(
        backbone={"name": "small_convnet", "norm": "group"},
        num_classes=3,
        fpn={"channels": 8},
        box_head={"fc_dim": 8},
        mask_head={"channels": 8},
    )
    model = MaskRCNNModel(config)
    with pytest.raises(tv.TorchvisionConversionError, match="need a ResNet backbone, the model has 'small_convnet'"):
        tv.torchvision_weight_map(model)


def _variable(model, key):
    return keras.ops.convert_to_numpy(tv.torchvision_weight_map(model)[tv.canonical_torchvision_key(key)][0])


def test_state_dict_layouts(small_model, fake_state_dict):
    state = fake_state_dict(small_model)
    assert len(tv.torchvision_weight_map(small_model)) == len(small_model.weights)
    tv.convert_torchvision_state_dict(state, small_model)
    w = state["backbone.body.conv1.weight"]  # [O, I, kh, kw] -> [kh, kw, I, O]
    np.testing.assert_array_equal(_variable(small_model, "backbone.body.conv1.weight")[2, 5, 1, 7], w[7, 1, 2, 5])
    np.testing.assert_array_equal(
        _variable(small_model, "backbone.body.layer3.0.downsample.1.running_var"),
        state["backbone.body.layer3.0.downsample.1.running_var"],
    )
    # RPN deltas per anchor: kzoo (ty, tx, th, tw) <- torchvision (dy, dx, dh, dw) = rows (1, 0, 3, 2)
    rpn_kernel = _variable(small_model, "rpn.head.bbox_pred.weight")[0, 0]  # [C, 4A]
    rpn_bias = _variable(small_model, "rpn.head.bbox_pred.bias")
    for anchor in range(3):
        for k, torch_k in enumerate((1, 0, 3, 2)):
            np.testing.assert_array_equal(
                rpn_kernel[:, 4 * anchor + k], state["rpn.head.bbox_pred.weight"][4 * anchor + torch_k, :, 0, 0]
            )
            assert rpn_bias[4 * anchor + k] == state["rpn.head.bbox_pred.bias"][4 * anchor + torch_k]
    np.testing.assert_array_equal(
        _variable(small_model, "rpn.head.cls_logits.weight")[0, 0], state["rpn.head.cls_logits.weight"][:, :, 0, 0].T
    )
    # box head: Linear [O, I] -> [I, O]; fc6 in NCHW order as is; bbox_pred rows permuted per class
    np.testing.assert_array_equal(
        _variable(small_model, "roi_heads.box_head.fc6.weight"), state["roi_heads.box_head.fc6.weight"].T
    )
    box_kernel = _variable(small_model, "roi_heads.box_predictor.bbox_pred.weight")
    torch_box = state["roi_heads.box_predictor.bbox_pred.weight"]
    for cls in range(5):
        np.testing.assert_array_equal(box_kernel[:, 4 * cls + 0], torch_box[4 * cls + 1])  # ty <- dy
        np.testing.assert_array_equal(box_kernel[:, 4 * cls + 3], torch_box[4 * cls + 2])  # tw <- dw
    # transposed conv [I, O, kh, kw] -> [kh, kw, O, I]
    w = state["roi_heads.mask_predictor.conv5_mask.weight"]
    np.testing.assert_array_equal(
        _variable(small_model, "roi_heads.mask_predictor.conv5_mask.weight")[1, 0, 3, 2], w[2, 3, 1, 0]
    )
    # the published checkpoint's old key names give the same model
    old = fake_state_dict(small_model, old_names=True)
    assert "rpn.head.conv.weight" in old and "roi_heads.mask_head.mask_fcn1.weight" in old
    assert "backbone.fpn.inner_blocks.0.weight" in old
    tv.convert_torchvision_state_dict(old, small_model)
    np.testing.assert_array_equal(
        _variable(small_model, "rpn.head.conv.0.0.weight"), old["rpn.head.conv.weight"].transpose(2, 3, 1, 0)
    )
