"""kzoo.applications.torchvision.convert: state dicts and .pth files -> kzoo models and .weights.h5 files, the
torchvision preset, numeric parity with torchvision, and ``MaskRCNN(weights="coco")`` end to end.

torch runs only in subprocesses (the ``torch_run`` fixture; kzoo reads .pth files without torch): torch and
TensorFlow crash when both compute in one process.
"""

import dataclasses
import json
import os
import stat

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.applications import MaskRCNN, weights
from kzoo.applications import torchvision as tv
from kzoo.applications.torchvision import convert
from kzoo.config import load_config
from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.models.mask_rcnn_config import MaskRCNNConfig
from kzoo.ops.masks import paste_masks
from kzoo.ops.roi_align_ops import fpn_levels
from kzoo.utils.files import sha256_of

COCO = weights.REGISTRY["coco"]

# ---------------------------------------------------------------- no torch needed


def test_torchvision_config_and_yaml():
    config = tv.torchvision_config()
    assert config == load_config("configs/mask_rcnn_r50_fpn_torchvision.yaml").model
    assert (
        config.backbone.name,
        config.backbone.stride_in_1x1,
        config.backbone.norm,
        config.backbone.norm_epsilon,
    ) == ("resnet50", False, "frozen", 0)
    assert (config.anchors.offset, config.anchors.strides, config.roi_align.level_eps) == (
        0.0,
        "torchvision",
        "after_log",
    )
    assert (config.box_head.flatten_order, config.detection.pre_nms_top_k, config.roi_align.aligned) == (
        "nchw",
        None,
        False,
    )
    assert (config.input.min_size, config.input.max_size, config.box_head.box_weights) == (
        800,
        1333,
        (10.0, 10.0, 5.0, 5.0),
    )
    assert tv.torchvision_config(5, backbone={"norm_epsilon": 1e-5}).backbone.norm_epsilon == 1e-5
    with pytest.raises(ValueError, match="unknown MaskRCNNConfig field"):
        tv.torchvision_config(anchor_size=3)
    # the kzoo defaults are unchanged
    assert (MaskRCNNConfig().anchors.strides, MaskRCNNConfig().roi_align.level_eps) == ("nominal", "in_log")
    with pytest.raises(ValueError, match="anchors.strides"):
        MaskRCNNConfig().replace(anchors={"strides": "odd"})
    with pytest.raises(ValueError, match="roi_align.level_eps"):
        MaskRCNNConfig().replace(roi_align={"level_eps": "odd"})


def test_level_mapping_eps_after_log_is_torchvisions_rule():
    # sqrt(area) / 224 just below 0.5: eps inside the log rounds it up a level, torchvision does not
    sides = np.array([112 * (1 - 1.5e-6), 448 * (1 - 1.5e-6), 112.0, 224.0, 300.0], np.float32)
    boxes = np.stack([np.zeros_like(sides), np.zeros_like(sides), sides, sides], axis=1)
    torchvision = np.floor(4 + np.log2(sides.astype(np.float32) / np.float32(224)) + np.float32(1e-6))
    after = fpn_levels(boxes, 2, 5, eps_placement="after_log").numpy()
    np.testing.assert_array_equal(after, np.clip(torchvision, 2, 5))
    np.testing.assert_array_equal(after, [2, 4, 3, 4, 4])
    np.testing.assert_array_equal(fpn_levels(boxes, 2, 5).numpy(), [3, 4, 3, 4, 4])  # default: eps inside log2


def test_torchvision_anchor_strides():
    config = MaskRCNNConfig().replace(
        backbone={"name": "small_convnet", "norm": "group"},
        num_classes=3,
        fpn={"channels": 8},
        box_head={"fc_dim": 8},
        mask_head={"channels": 8},
    )
    features = [tf.zeros((1, 56 // 2**i, 80 // 2**i, 8)) for i in range(4)] + [tf.zeros((1, 4, 5, 8))]
    nominal, _ = MaskRCNNModel(config).anchors(features)
    tv, sizes = MaskRCNNModel(config.replace(anchors={"strides": "torchvision"})).anchors(features)
    p6 = slice(sum(sizes[:4]), None)
    np.testing.assert_array_equal(tv[: p6.start], nominal[: p6.start])  # P2..P5: the nominal strides
    # a 224 x 320 canvas: P6 has 4 x 5 cells, torchvision's strides are 224 // 4 = 56 and 320 // 5 = 64
    centers = tv[p6].reshape(4, 5, 3, 4)[:, :, 1]  # the square anchor of each cell
    np.testing.assert_array_equal(centers[:, 0, 0] + 256, np.arange(4) * 56)
    np.testing.assert_array_equal(centers[0, :, 1] + 256, np.arange(5) * 64)


def test_state_dict_errors_list_leftovers(small_model, fake_state_dict):
    state = fake_state_dict(small_model, seed=1)
    before = keras.ops.convert_to_numpy(small_model.rpn_head.conv.kernel).copy()
    missing = dict(state)
    del missing["backbone.body.layer2.1.bn2.running_var"], missing["roi_heads.box_head.fc7.bias"]
    with pytest.raises(tv.TorchvisionConversionError, match=r"2 kzoo variable\(s\) not set.*layer2\.1\.bn2"):
        tv.convert_torchvision_state_dict(missing, small_model)
    with pytest.raises(tv.TorchvisionConversionError, match=r"no kzoo counterpart: roi_heads\.keypoint"):
        tv.convert_torchvision_state_dict({**state, "roi_heads.keypoint_head.weight": np.zeros(3)}, small_model)
    duplicated = {**state, "rpn.head.conv.weight": state["rpn.head.conv.0.0.weight"]}
    with pytest.raises(tv.TorchvisionConversionError, match="given twice: rpn.head.conv.weight"):
        tv.convert_torchvision_state_dict(duplicated, small_model)
    wrong = {**state, "roi_heads.box_predictor.cls_score.weight": np.zeros((91, 1024), np.float32)}
    with pytest.raises(tv.TorchvisionConversionError, match=r"wrong shape: roi_heads.box_predictor.cls_score"):
        tv.convert_torchvision_state_dict(wrong, small_model)
    # nothing was assigned by the failed conversions
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(small_model.rpn_head.conv.kernel), before)


def test_files_and_offline_errors(tmp_path, monkeypatch):
    # (reading: tests/applications/torchvision/test_checkpoint.py; offline: tests/applications/test_weights.py)
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        tv.convert_torchvision_checkpoint(tmp_path / "none.pth", tmp_path / "out.h5")
    monkeypatch.setattr(weights, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(weights.REGISTRY, "coco", dataclasses.replace(COCO, source_url=(tmp_path / "x.pth").as_uri()))
    with pytest.raises(weights.WeightsUnavailableError, match="weights='coco': cannot download .*x.pth"):
        MaskRCNN(weights="coco", min_size=64, max_size=64)
    with pytest.raises(ValueError, match="resnet50_fpn"):
        MaskRCNN("mobilenet_v2_fpn", weights="coco")
    assert not (tmp_path / "cache" / weights.CACHE_SUBDIR / COCO.file_name).exists()


def test_checkpoint_file_written_atomically_and_readable(
    small_model, fake_state_dict, tmp_path, monkeypatch, umask_022
):
    """The .weights.h5 goes through kzoo.utils.files.atomic_path: 0644 under umask 022, no temporary file left,
    nothing at all when the conversion fails (the .pth reader is replaced: no torch needed)."""
    state = fake_state_dict(small_model, seed=2)
    monkeypatch.setattr(convert, "read_torchvision_checkpoint", lambda path: state)
    output = tmp_path / "out" / "five.weights.h5"
    assert tv.convert_torchvision_checkpoint("fake.pth", output) == str(output)
    assert stat.S_IMODE(os.stat(output).st_mode) == 0o644
    assert os.listdir(output.parent) == [output.name]
    loaded = MaskRCNN(config=tv.torchvision_config(5, input={"min_size": 64, "max_size": 64}), weights=str(output))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded.box_head.fc7.bias), state["roi_heads.box_head.fc7.bias"]
    )
    # a failed write leaves the previous file as it was, and no temporary file
    before = sha256_of(output)

    def failing_save(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save_weights", failing_save)
    with pytest.raises(OSError, match="disk full"):
        tv.convert_torchvision_checkpoint("fake.pth", output)
    assert sha256_of(output) == before and os.listdir(output.parent) == [output.name]


# ---------------------------------------------------------------- torchvision in a subprocess

TORCH_MODEL = """
torch.manual_seed(int(inputs["seed"]))
model = torchvision.models.detection.maskrcnn_resnet50_fpn(
    weights=None, weights_backbone=None, min_size=int(inputs["min_size"]), max_size=int(inputs["max_size"]),
    box_score_thresh=float(inputs["score_thresh"]))
# Random weights that make every stage meaningful: random BatchNorm statistics (plain BatchNorm2d in eval mode,
# eps 1e-5), FPN laterals scaled so features are O(1), heads wide enough that objectness, classes and box deltas
# are far from uniform (box deltas of a few tenths: a wrong (dx, dy) order shows).
for m in model.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.5, 0.5)
        m.running_mean.uniform_(-0.5, 0.5); m.running_var.uniform_(0.5, 2.0)
for block in model.backbone.fpn.inner_blocks:
    block[0].weight.mul_(0.01)
head = model.rpn.head
head.cls_logits.weight.normal_(0, 0.1); head.cls_logits.bias.normal_(0, 0.5)
head.bbox_pred.weight.normal_(0, 0.05); head.bbox_pred.bias.normal_(0, 0.1)
predictor = model.roi_heads.box_predictor
predictor.cls_score.weight.normal_(0, 0.3); predictor.cls_score.bias.normal_(0, 0.3)
predictor.bbox_pred.weight.normal_(0, 0.1); predictor.bbox_pred.bias.normal_(0, 0.5)
model.roi_heads.mask_predictor.mask_fcn_logits.bias.normal_(0, 1.0)
model.eval()
"""

TORCH_STAGES = """
from torchvision.models.detection.rpn import concat_box_prediction_layers

for key, value in model.state_dict().items():
    outputs["w:" + key] = value.numpy()
for name in sorted(k for k in inputs if k.startswith("image")):
    image = torch.from_numpy(inputs[name]).permute(2, 0, 1).float() / 255.0
    images, _ = model.transform([image])
    features = model.backbone(images.tensors)
    for level, feature in zip(range(2, 7), features.values()):
        outputs[f"{name}:P{level}"] = feature[0].permute(1, 2, 0).numpy()
    rpn = model.rpn
    levels = list(features.values())
    objectness, deltas = rpn.head(levels)
    anchors = rpn.anchor_generator(images, levels)
    per_level = [o[0].numel() for o in objectness]
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    proposals = rpn.box_coder.decode(deltas, anchors).view(1, -1, 4)
    boxes, scores = rpn.filter_proposals(proposals, objectness, images.image_sizes, per_level)
    outputs[f"{name}:anchors"] = anchors[0].numpy()
    outputs[f"{name}:proposals"] = boxes[0].numpy()
    outputs[f"{name}:proposal_scores"] = scores[0].numpy()
    result = model([image])[0]  # the whole model, as users call it
    for key in ("boxes", "scores", "labels"):
        outputs[f"{name}:{key}"] = result[key].numpy()
    outputs[f"{name}:masks"] = result["masks"][:, 0].numpy()
"""


def _smooth_image(rng, height, width):
    """Blocky colour fields plus noise: images with structure at every pyramid level."""
    coarse = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    image = tf.image.resize(coarse[None], (height, width), method="bilinear").numpy()[0]
    return np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)


def _yxyx(xyxy):
    return xyxy[..., [1, 0, 3, 2]]


def _match(reference, ours, extra_cost=None):
    """For each reference box the closest of ``ours`` (max coordinate difference; + ``extra_cost``)."""
    cost = np.abs(reference[:, None] - ours[None]).max(-1)
    if extra_cost is not None:
        cost = cost + extra_cost
    index = cost.argmin(1)
    return index, cost[np.arange(len(reference)), index]


def test_parity_with_torchvision_maskrcnn_resnet50_fpn(torch_run):
    """Random-weight torchvision model vs its kzoo conversion, stage by stage, on three image shapes.

    Sizes: 200x300 is upsampled to 213x320 on a 224x320 canvas (P6 has 4 rows: torchvision's anchor stride
    224 // 4 = 56), 300x260 downsampled to 295x256, 150x150 upsampled to 256x256.
    """
    rng = np.random.default_rng(0)
    sizes = [(200, 300), (300, 260), (150, 150)]
    images = {f"image{i}": _smooth_image(rng, *size) for i, size in enumerate(sizes)}
    params = dict(seed=0, min_size=256, max_size=320, score_thresh=0.05)
    ref = torch_run(TORCH_MODEL + TORCH_STAGES, **images, **{k: np.array(v) for k, v in params.items()})

    config = tv.torchvision_config(
        backbone={"norm_epsilon": 1e-5}, input={"min_size": 256, "max_size": 320}, detection={"score_threshold": 0.05}
    )
    model = MaskRCNNModel(config)
    tv.convert_torchvision_state_dict({k[2:]: v for k, v in ref.items() if k.startswith("w:")}, model)

    worst = dict(features=0.0, proposals=0.0, proposal_scores=0.0, boxes=0.0, scores=0.0, mask_iou=1.0)
    worst["matched"] = 1.0  # fraction of torchvision's detections matched (same class, boxes within 0.01 px)
    for name, image in images.items():
        canvas, image_size = model.preprocess(image[None])
        features = model.pyramid(canvas)
        for level, feature in zip(range(2, 7), features):
            expected = ref[f"{name}:P{level}"]
            assert feature.shape[1:] == expected.shape, (name, level)
            error = np.abs(feature.numpy()[0] - expected).max() / np.abs(expected).max()
            worst["features"] = max(worst["features"], error)
            assert error < 1e-4, (name, level, error)

        proposals = model.propose(features, image_size[None])
        np.testing.assert_array_equal(proposals["anchors"], _yxyx(ref[f"{name}:anchors"]))
        count = int(proposals["num_proposals"][0])
        ours = proposals["proposals"].numpy()[0, :count]
        our_scores = proposals["proposal_scores"].numpy()[0, :count]
        theirs, their_scores = _yxyx(ref[f"{name}:proposals"]), ref[f"{name}:proposal_scores"]
        assert count == len(theirs)
        # near-ties in objectness may swap neighbours: match each of torchvision's top 300 by position
        index, distance = _match(theirs[:300], ours)
        assert (distance < 1e-2).all(), (name, distance.max())
        worst["proposals"] = max(worst["proposals"], distance.max())
        score_error = np.abs(our_scores[index] - their_scores[:300]).max()
        worst["proposal_scores"] = max(worst["proposal_scores"], score_error)
        assert score_error < 1e-5

        out = model(image[None])
        count = int(out["num_detections"][0])
        boxes = out["detection_boxes"].numpy()[0, :count]
        scores = out["detection_scores"].numpy()[0, :count]
        classes = out["detection_classes"].numpy()[0, :count]
        their_boxes, their_scores = _yxyx(ref[f"{name}:boxes"]), ref[f"{name}:scores"]
        their_classes, their_masks = ref[f"{name}:labels"], ref[f"{name}:masks"]
        assert count == len(their_boxes) > 10, (count, len(their_boxes))
        index, distance = _match(their_boxes, boxes, 1e3 * (their_classes[:, None] != classes[None]))
        matched = distance < 1e-2  # same class, every coordinate within 0.01 px
        assert matched.mean() >= 0.95 and matched[:10].all(), (name, np.sort(distance)[-5:])
        worst["matched"] = min(worst["matched"], matched.mean())
        worst["boxes"] = max(worst["boxes"], distance[matched].max())
        score_error = np.abs(scores[index[matched]] - their_scores[matched]).max()
        worst["scores"] = max(worst["scores"], score_error)
        assert score_error < 1e-4
        pasted = paste_masks(out["detection_masks"].numpy()[0, :count], boxes, image.shape[:2])
        for theirs_i, ours_i in zip(np.nonzero(matched)[0], index[matched]):
            a, b = their_masks[theirs_i] >= 0.5, pasted[ours_i]
            union = (a | b).sum()
            iou = (a & b).sum() / union if union else 1.0
            worst["mask_iou"] = min(worst["mask_iou"], iou)
        assert worst["mask_iou"] >= 0.99
        worst.setdefault("classes", set()).update(their_classes.tolist())
    worst["classes"] = len(worst["classes"])  # distinct classes detected over the images
    print("\ntorchvision parity, worst over 3 images: " + ", ".join(f"{k} {v:.3g}" for k, v in worst.items()))


TORCH_SAVE = r"""
import re
from collections import OrderedDict

torch.manual_seed(1)
model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
state = model.state_dict()
for key in ("backbone.body.conv1.weight", "rpn.head.bbox_pred.weight", "roi_heads.box_head.fc6.weight",
            "backbone.fpn.layer_blocks.2.0.bias", "roi_heads.mask_predictor.mask_fcn_logits.weight"):
    outputs[key] = state[key].numpy()
# like the published 2019 file: the legacy (non-zip) format, the v1 key names, FrozenBatchNorm2d buffers only
old = OrderedDict()
for key, value in state.items():
    if key.endswith("num_batches_tracked"):
        continue
    key = re.sub(r"^(backbone\.fpn\.\w+_blocks\.\d+)\.0\.", r"\1.", key).replace("rpn.head.conv.0.0.", "rpn.head.conv.")
    key = re.sub(r"^roi_heads\.mask_head\.(\d+)\.0\.", lambda m: f"roi_heads.mask_head.mask_fcn{int(m[1]) + 1}.", key)
    old[key] = value
assert "rpn.head.conv.weight" in old and "roi_heads.mask_head.mask_fcn4.bias" in old
assert "backbone.fpn.inner_blocks.0.weight" in old
torch.save(old, str(inputs["path"]), _use_new_zipfile_serialization=False)
"""


@pytest.mark.slow
def test_coco_weights_download_convert_cache_and_cli(torch_run, tmp_path, monkeypatch, umask_022, capsys):
    """``MaskRCNN(weights="coco")`` against a local random checkpoint served from a file:// URL."""
    server = tmp_path / "server"
    server.mkdir()
    pth = server / "maskrcnn_resnet50_fpn_random-00000000.pth"
    ref = torch_run(TORCH_SAVE, path=np.array(str(pth)))
    cache = tmp_path / "cache"
    monkeypatch.setattr(weights, "CACHE_DIR", str(cache))
    local = dataclasses.replace(COCO, source_url=pth.as_uri(), source_sha256_prefix=sha256_of(pth)[:8])
    monkeypatch.setitem(weights.REGISTRY, "coco", local)

    model = MaskRCNN(weights="coco", min_size=64, max_size=64)
    converted = cache / "models" / "kzoo" / COCO.file_name
    assert converted.is_file() and (cache / "models" / "kzoo" / pth.name).is_file()
    # the converted file: written atomically (0644 under umask 022), its full sha256 recorded beside it
    assert stat.S_IMODE(os.stat(converted).st_mode) == 0o644
    record = json.loads((cache / "models" / "kzoo" / (COCO.file_name + ".sha256.json")).read_text())
    assert record["sha256"] == sha256_of(converted) and record["size"] == os.path.getsize(converted)
    assert record["source"] == {"url": pth.as_uri(), "file": pth.name, "sha256": sha256_of(pth)}
    assert sorted(os.listdir(cache / "models" / "kzoo")) == sorted(
        [pth.name, converted.name, converted.name + ".sha256.json"]
    )
    assert model.config == tv.torchvision_config(input={"min_size": 64, "max_size": 64})
    assert model.class_names[1] == "person" and len(model.class_names) == 80  # the entry's names, for pictures
    conv1 = keras.ops.convert_to_numpy(model.backbone.get_layer("conv1").kernel)
    np.testing.assert_array_equal(conv1, ref["backbone.body.conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.box_head.fc6.kernel), ref["roi_heads.box_head.fc6.weight"].T
    )
    rpn = ref["rpn.head.bbox_pred.weight"][:, :, 0, 0]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.rpn_head.bbox_pred.kernel)[0, 0, :, :4], rpn[[1, 0, 3, 2]].T
    )

    # second use: the converted file, no download
    def no_download(*args, **kwargs):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(keras.utils, "get_file", no_download)
    again = MaskRCNN(weights="coco", min_size=64, max_size=64, detection={"score_threshold": 0.5})
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(again.fpn.layer_blocks[2].bias), ref["backbone.fpn.layer_blocks.2.0.bias"]
    )
    # COCO weights into a 3-class model (background + 2): all but the class-specific predictors are loaded
    mine = MaskRCNN(weights="coco", num_classes=3, min_size=64, max_size=64)
    assert (
        "freshly initialized (other class count): box_head/bbox_pred, box_head/cls_score, "
        "layers/mask_head/mask_fcn_logits" in capsys.readouterr().out
    )
    assert mine.box_head.cls_score.kernel.shape[-1] == 3 and mine.mask_head.mask_fcn_logits.kernel.shape[-1] == 3
    assert not hasattr(mine, "class_names")  # another class count: COCO's names do not apply
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(mine.box_head.fc6.kernel), ref["roi_heads.box_head.fc6.weight"].T
    )
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mine.backbone.get_layer("conv1").kernel), conv1)
    monkeypatch.undo()

    # a download with the wrong hash prefix is deleted, nothing is converted
    monkeypatch.setattr(weights, "CACHE_DIR", str(tmp_path / "cache2"))
    monkeypatch.setitem(weights.REGISTRY, "coco", dataclasses.replace(local, source_sha256_prefix="bf2d0c1e"))
    with pytest.raises(ValueError, match="does not start with bf2d0c1e"):
        MaskRCNN(weights="coco", min_size=64, max_size=64)
    assert os.listdir(tmp_path / "cache2" / "models" / "kzoo") == []

    # the CLI entry point and the converted file in a config-built model
    output = tmp_path / "out" / "tv.weights.h5"
    message = tv.convert_torchvision_cli(str(pth), str(output))
    assert str(output) in message and output.is_file()
    assert [p for p in os.listdir(output.parent) if p != output.name] == []  # no temporary file left
    loaded = MaskRCNN(config=tv.torchvision_config(input={"min_size": 64, "max_size": 64}), weights=str(output))
    for ours, theirs in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs))
    with pytest.raises(tv.TorchvisionConversionError, match="predicts 91 classes"):
        tv.convert_torchvision_cli(str(pth), str(tmp_path / "five.weights.h5"), num_classes=5)
    assert not (tmp_path / "five.weights.h5").exists()
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read .*broken.pth"):
        tv.convert_torchvision_checkpoint(broken, tmp_path / "broken.weights.h5")
