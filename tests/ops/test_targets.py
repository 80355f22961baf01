import numpy as np
import pytest
import tensorflow as tf

from kzoo.data.detection_pipeline import crop_masks_to_boxes
from kzoo.ops.anchors import generate_anchors
from kzoo.ops.boxes import decode_boxes
from kzoo.ops.targets import mask_targets, roi_targets, rpn_targets


def _iou(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ih = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iw = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ih * iw
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


def _encode(boxes, anchors, weights):
    boxes, anchors = np.asarray(boxes, np.float64), np.asarray(anchors, np.float64)
    h, w = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ha, wa = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    cy, cx = boxes[:, 0] + h / 2, boxes[:, 1] + w / 2
    cya, cxa = anchors[:, 0] + ha / 2, anchors[:, 1] + wa / 2
    wy, wx, wh, ww = weights
    return np.stack([wy * (cy - cya) / ha, wx * (cx - cxa) / wa, wh * np.log(h / ha), ww * np.log(w / wa)], -1)


def _random_gt(rng, batch, m, size=128.0):
    yx = rng.uniform(0, size * 0.7, (batch, m, 2))
    hw = rng.uniform(8, size * 0.5, (batch, m, 2))
    return np.concatenate([yx, np.minimum(yx + hw, size)], -1).astype(np.float32)


# ------------------------------------------------------------------------------------------------ RPN


def _rpn_case():
    anchors = np.array(
        [
            [0, 0, 10, 10],  # = gt 0: positive
            [0, 0, 10, 20],  # IoU 0.5 with gt 0: ignored
            [50, 50, 60, 60],  # background
            [30, 30, 40, 44],  # IoU 0.714 with gt 1: positive
            [100, 100, 110, 110],  # inside the crowd box: ignored
            [0, 100, 10, 110],  # = the padded gt box: background
        ],
        np.float32,
    )
    gt = np.array([[[0, 0, 10, 10], [30, 30, 40, 40], [90, 90, 150, 150], [0, 100, 10, 110]]], np.float32)
    valid = np.array([[True, True, True, False]])
    crowd = np.array([[False, False, True, False]])
    return anchors, gt, valid, crowd


def test_rpn_targets_hand_made():
    anchors, gt, valid, crowd = _rpn_case()
    out = rpn_targets(anchors, gt, valid, crowd, seed=[1, 2])
    np.testing.assert_array_equal(out.labels.numpy()[0], [1, -1, 0, 1, -1, 0])
    np.testing.assert_array_equal(out.sampled.numpy()[0], out.labels.numpy()[0] >= 0)  # fewer than the budget
    assert out.matched_gt_index.numpy()[0, 3] == 1
    targets = out.box_targets.numpy()[0]
    np.testing.assert_allclose(targets[3], _encode(gt[0, 1:2], anchors[3:4], (1, 1, 1, 1))[0], atol=1e-6)
    np.testing.assert_array_equal(targets[[0, 1, 2, 4, 5]], 0.0)
    # crowd regions as background
    out = rpn_targets(anchors, gt, valid, crowd, crowd_threshold=None, seed=[1, 2])
    np.testing.assert_array_equal(out.labels.numpy()[0], [1, -1, 0, 1, 0, 0])
    # crowd boxes never create positives, even through low-quality matching
    out = rpn_targets(anchors, gt, valid, np.ones_like(crowd), seed=[1, 2])
    assert not np.any(out.labels.numpy() == 1)
    # the straddle rule: anchors crossing the image by more than allowed_border are ignored
    out = rpn_targets(anchors, gt, valid, crowd, image_size=[[100, 105]], allowed_border=0.0, seed=[1, 2])
    np.testing.assert_array_equal(out.labels.numpy()[0], [1, -1, 0, 1, -1, -1])
    with pytest.raises(ValueError, match="image_size"):
        rpn_targets(anchors, gt, valid, crowd, allowed_border=0.0)


def test_rpn_targets_low_quality_and_sampling_on_a_pyramid():
    rng = np.random.default_rng(0)
    anchors = generate_anchors([(16, 16), (8, 8), (4, 4)], [8, 16, 32], [32, 64, 128])  # [1008, 4]
    gt = _random_gt(rng, 2, 6)
    gt[0, 0] = [40, 40, 46, 47]  # small: only low-quality matches
    valid = np.array([[True] * 6, [True, True, False, False, False, False]])
    out = rpn_targets(anchors, gt, valid, None, num_samples=64, positive_fraction=0.5, seed=[3, 4])
    labels, sampled, targets = out.labels.numpy(), out.sampled.numpy(), out.box_targets.numpy()
    matched = out.matched_gt_index.numpy()
    for b in range(2):
        iou = _iou(anchors, gt[b][valid[b]])
        best = iou.max(1)
        # torchvision's rule, computed directly
        want = np.where(best >= 0.7, 1, np.where(best >= 0.3, -1, 0))
        want[np.nonzero(iou == iou.max(0, keepdims=True))[0]] = 1
        np.testing.assert_array_equal(labels[b], want)
        pos = labels[b] == 1
        assert np.all(valid[b][matched[b][pos]])
        np.testing.assert_array_equal(matched[b][pos], iou.argmax(1)[pos])
        assert np.any(pos & (best < 0.7))
        assert not np.any(sampled[b] & (labels[b] < 0))
        n_pos = min(pos.sum(), 32)
        assert (sampled[b] & pos).sum() == n_pos and sampled[b].sum() == 64
        decoded = decode_boxes(targets[b][pos], anchors[pos]).numpy()
        np.testing.assert_allclose(decoded, gt[b][matched[b][pos]], atol=2e-4)
    # static shapes: the same under XLA with the same stateless seed
    fn = tf.function(
        lambda a, g, v, s: rpn_targets(a, g, v, None, num_samples=64, positive_fraction=0.5, seed=s), jit_compile=True
    )
    jit = fn(anchors, gt, valid, tf.constant([3, 4]))
    np.testing.assert_array_equal(jit.labels.numpy(), labels)
    np.testing.assert_allclose(jit.box_targets.numpy(), targets, atol=1e-5)
    assert jit.sampled.numpy().sum() == 128 and not np.any(jit.sampled.numpy() & (labels < 0))


_RPN = """
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection import _utils as det_utils
top_n = dict(training=1, testing=1)
rpn = RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, top_n, top_n, 0.7)
anchors = torch.from_numpy(inputs["anchors"][:, [1, 0, 3, 2]])
targets = [{"boxes": torch.from_numpy(g[:, [1, 0, 3, 2]])} for g in inputs["gt"]]
labels, matched = rpn.assign_targets_to_anchors([anchors] * len(targets), targets)
outputs["labels"] = torch.stack(labels).numpy()
coder = det_utils.BoxCoder((1.0, 1.0, 1.0, 1.0))
outputs["targets"] = torch.stack([coder.encode_single(m, anchors) for m in matched]).numpy()
"""


def test_rpn_targets_match_torchvision(torch_run):
    rng = np.random.default_rng(1)
    anchors = generate_anchors([(16, 16), (8, 8), (4, 4)], [8, 16, 32], [32, 64, 128])
    gt = _random_gt(rng, 3, 5)
    gt[1, 2] = [60, 60, 64, 66]  # a small box: low-quality matches only
    ref = torch_run(_RPN, anchors=anchors, gt=gt)
    out = rpn_targets(anchors, gt, np.ones((3, 5), bool), None, seed=[0, 0])
    labels = out.labels.numpy()
    np.testing.assert_array_equal(labels, ref["labels"].astype(np.int32))
    pos = labels == 1
    want = ref["targets"][..., [1, 0, 3, 2]]  # (dx, dy, dw, dh) -> (ty, tx, th, tw)
    np.testing.assert_allclose(out.box_targets.numpy()[pos], want[pos], atol=1e-5)


# ------------------------------------------------------------------------------------------------ RoIs


def _roi_case():
    proposals = np.array(
        [
            [
                [0, 0, 10, 12],  # IoU 0.83 with gt 0 (class 2)
                [20, 20, 40, 60],  # IoU 0.5 with gt 1 (class 5): foreground (>= 0.5)
                [90, 90, 100, 100],  # inside the crowd box: ignored
                [50, 0, 60, 10],  # background
                [0, 0, 10, 10],  # padding (index >= num_proposals), identical to gt 0
            ]
        ],
        np.float32,
    )
    gt = np.array([[[0, 0, 10, 10], [20, 20, 40, 40], [80, 80, 120, 120], [60, 60, 70, 70]]], np.float32)
    classes = np.array([[2, 5, 1, 3]], np.int32)
    valid = np.array([[True, True, True, False]])
    crowd = np.array([[False, False, True, False]])
    return proposals, np.array([4]), gt, classes, valid, crowd


def test_roi_targets_hand_made():
    proposals, num, gt, classes, valid, crowd = _roi_case()
    out = roi_targets(proposals, num, gt, classes, valid, crowd, num_samples=8, positive_fraction=0.5, seed=[0, 1])
    rois = out.rois.numpy()[0]
    # positives first in candidate order (the two proposals, then the appended gt 0 and gt 1), then negatives
    np.testing.assert_array_equal(rois[:5], [proposals[0, 0], proposals[0, 1], gt[0, 0], gt[0, 1], proposals[0, 3]])
    np.testing.assert_array_equal(rois[5:], 0.0)
    np.testing.assert_array_equal(out.labels.numpy()[0], [2, 5, 2, 5, 0, 0, 0, 0])
    np.testing.assert_array_equal(out.positive.numpy()[0], [1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(out.sampled.numpy()[0], [1, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(out.matched_gt_index.numpy()[0, :4], [0, 1, 0, 1])
    targets = out.box_targets.numpy()[0]
    want = _encode(gt[0, [0, 1, 0, 1]], rois[:4], (10, 10, 5, 5))
    np.testing.assert_allclose(targets[:4], want, atol=1e-5)
    np.testing.assert_array_equal(targets[4:], 0.0)
    jit = tf.function(
        lambda *a: roi_targets(*a, num_samples=8, positive_fraction=0.5, seed=tf.constant([0, 1])), jit_compile=True
    )(proposals, num, gt, classes, valid, crowd)
    for got, want in zip(jit, out):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    # crowd region as background; no ground truth appended
    out = roi_targets(
        proposals, num, gt, classes, valid, crowd, num_samples=8, crowd_threshold=None, append_gt=False, seed=[0, 1]
    )
    np.testing.assert_array_equal(out.rois.numpy()[0, :4], proposals[0, [0, 1, 2, 3]])
    np.testing.assert_array_equal(out.labels.numpy()[0, :4], [2, 5, 0, 0])
    np.testing.assert_array_equal(out.sampled.numpy()[0], [1, 1, 1, 1, 0, 0, 0, 0])
    # more slots than candidates
    out = roi_targets(proposals, num, gt, classes, valid, crowd, num_samples=16, seed=[0, 1])
    assert out.rois.shape == (1, 16, 4) and out.sampled.numpy().sum() == 5


def test_roi_targets_sampling_padding_and_labels():
    rng = np.random.default_rng(2)
    batch, p, m = 2, 300, 6
    gt = _random_gt(rng, batch, m)
    valid = np.array([[True] * 6, [True, True, True, False, False, False]])
    crowd = np.zeros((batch, m), bool)
    crowd[0, 5] = True
    classes = rng.integers(1, 9, (batch, m)).astype(np.int32)
    # proposals: jittered copies of ground truth (many positives) and random boxes
    base = gt[np.arange(batch)[:, None], rng.integers(0, 3, (batch, p))]
    proposals = (base + rng.normal(0, 6, base.shape)).astype(np.float32)
    proposals[:, ::3] = _random_gt(rng, batch, 100)
    proposals = np.concatenate(
        [np.minimum(proposals[..., :2], proposals[..., 2:]), np.maximum(proposals[..., :2], proposals[..., 2:])], -1
    )
    num = np.array([300, 40])
    proposals[1, 40:] = gt[1, 0] + 0.25  # padding that would be a positive if it were sampled
    out = roi_targets(proposals, num, gt, classes, valid, crowd, seed=[5, 6])
    rois, labels, positive, sampled = (t.numpy() for t in (out.rois, out.labels, out.positive, out.sampled))
    matched, targets = out.matched_gt_index.numpy(), out.box_targets.numpy()
    assert rois.shape == (2, 512, 4)
    for b in range(batch):
        keep = valid[b] & ~crowd[b]
        cands = np.concatenate([proposals[b, : num[b]], gt[b][keep]])
        npos, nsam = positive[b].sum(), sampled[b].sum()
        assert npos <= 128 and np.all(positive[b, :npos]) and not np.any(positive[b, npos:])
        assert np.all(sampled[b, :nsam]) and not np.any(sampled[b, nsam:])
        iou = _iou(rois[b, :nsam], gt[b])[:, keep]
        np.testing.assert_array_equal(iou.max(1) >= 0.5, positive[b, :nsam])
        np.testing.assert_array_equal(np.flatnonzero(keep)[iou.argmax(1)][:npos], matched[b, :npos])
        np.testing.assert_array_equal(labels[b, :npos], classes[b, matched[b, :npos]])
        np.testing.assert_array_equal(labels[b, npos:], 0)
        # every sampled RoI is a valid candidate; padded proposals never appear
        assert all(np.any(np.all(cands == r, axis=1)) for r in rois[b, :nsam])
        assert not np.any(np.all(rois[b] == gt[1, 0] + 0.25, axis=1))
        cand_pos = _iou(cands, gt[b])[:, keep].max(1) >= 0.5
        in_crowd = np.zeros(len(cands), bool)
        for c in gt[b][crowd[b]]:  # negatives mostly inside a crowd box are ignored
            inter = np.prod(np.clip(np.minimum(cands[:, 2:], c[2:]) - np.maximum(cands[:, :2], c[:2]), 0, None), 1)
            in_crowd |= inter > 0.7 * np.prod(cands[:, 2:] - cands[:, :2], 1)
        n_neg = (~cand_pos & ~in_crowd).sum()
        assert b == 1 or (~cand_pos & in_crowd).sum() > 0
        assert npos == min(cand_pos.sum(), 128) and nsam == min(512, npos + n_neg)
        decoded = decode_boxes(targets[b, :npos], rois[b, :npos], weights=(10, 10, 5, 5)).numpy()
        np.testing.assert_allclose(decoded, gt[b, matched[b, :npos]], atol=2e-3)
    fn = tf.function(lambda *a: roi_targets(*a, seed=tf.constant([5, 6])), jit_compile=True)
    jit = fn(proposals, num, gt, classes, valid, crowd)
    np.testing.assert_array_equal(jit.positive.numpy().sum(1), positive.sum(1))
    np.testing.assert_array_equal(jit.sampled.numpy().sum(1), sampled.sum(1))


_ROI = """
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.roi_heads import RoIHeads
heads = RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, (10.0, 10.0, 5.0, 5.0), 0.05, 0.5, 100)
xyxy = lambda a: torch.from_numpy(a[:, [1, 0, 3, 2]])
gt = xyxy(inputs["gt"])
cands = heads.add_gt_proposals([xyxy(inputs["proposals"])], [gt])[0]
matched, labels = heads.assign_targets_to_proposals([cands], [gt], [torch.from_numpy(inputs["classes"]).long()])
outputs["labels"] = labels[0].numpy()
outputs["matched"] = matched[0].numpy()
outputs["targets"] = det_utils.BoxCoder((10.0, 10.0, 5.0, 5.0)).encode_single(gt[matched[0]], cands).numpy()
"""


def test_roi_targets_match_torchvision(torch_run):
    rng = np.random.default_rng(3)
    gt = _random_gt(rng, 1, 4)[0]
    classes = np.array([3, 1, 7, 2], np.int32)
    base = gt[rng.integers(0, 4, 120)]
    proposals = (base + rng.normal(0, 5, base.shape)).astype(np.float32)
    proposals = np.concatenate(
        [np.minimum(proposals[:, :2], proposals[:, 2:]), np.maximum(proposals[:, :2], proposals[:, 2:])], -1
    )
    ref = torch_run(_ROI, gt=gt, proposals=proposals, classes=classes)
    # with a budget above the number of candidates and no positive cap, every labelled candidate is sampled:
    # positives in candidate order, then negatives
    out = roi_targets(
        proposals[None],
        [120],
        gt[None],
        classes[None],
        np.ones((1, 4), bool),
        None,
        num_samples=200,
        positive_fraction=1.0,
        seed=[0, 0],
    )
    cands = np.concatenate([proposals, gt])
    order = np.concatenate([np.flatnonzero(ref["labels"] > 0), np.flatnonzero(ref["labels"] == 0)])
    n = len(order)
    assert out.sampled.numpy()[0].sum() == n and (ref["labels"] > 0).sum() > 20
    np.testing.assert_array_equal(out.rois.numpy()[0, :n], cands[order])
    np.testing.assert_array_equal(out.labels.numpy()[0, :n], ref["labels"][order])
    pos = order[ref["labels"][order] > 0]
    npos = len(pos)
    np.testing.assert_array_equal(out.matched_gt_index.numpy()[0, :npos], ref["matched"][pos])
    want = ref["targets"][pos][:, [1, 0, 3, 2]]
    np.testing.assert_allclose(out.box_targets.numpy()[0, :npos], want, atol=1e-4)


# ------------------------------------------------------------------------------------------------ masks


def roi_align_reference(mask, box, out=28, aligned=False, sampling_ratio=-1):
    """``torchvision.ops.roi_align`` of one ``[H, W]`` map and one yxyx box, spatial scale 1, in float64."""
    mask = np.asarray(mask, np.float64)
    offset = 0.5 if aligned else 0.0

    def axis(lo, hi, size):
        start, length = lo - offset, hi - lo
        if not aligned:
            length = max(length, 1.0)
        bin_size = length / out
        grid = sampling_ratio if sampling_ratio > 0 else int(np.ceil(length / out))
        pos = (start + np.arange(out)[:, None] * bin_size + (np.arange(grid)[None, :] + 0.5) * bin_size / grid).ravel()
        inside = (pos >= -1.0) & (pos <= size)
        pos = np.maximum(pos, 0.0)
        low = np.floor(pos).astype(int)
        end = low >= size - 1
        low = np.where(end, size - 1, low)
        high = np.where(end, size - 1, low + 1)
        frac = np.where(end, 0.0, pos - low)
        return low, high, frac, inside, grid

    y0, y1, fy, vy, gy = axis(box[0], box[2], mask.shape[0])
    x0, x1, fx, vx, gx = axis(box[1], box[3], mask.shape[1])
    value = (
        mask[y0][:, x0] * np.outer(1 - fy, 1 - fx)
        + mask[y0][:, x1] * np.outer(1 - fy, fx)
        + mask[y1][:, x0] * np.outer(fy, 1 - fx)
        + mask[y1][:, x1] * np.outer(fy, fx)
    )
    value = value * np.outer(vy, vx)
    return value.reshape(out, gy, out, gx).mean(axis=(1, 3))


def _scene(rng, size=96, count=10):
    """Random ellipses (some notched) as full-image raster masks, with their tight pixel boxes."""
    yy, xx = np.mgrid[:size, :size] + 0.5
    masks, boxes = [], []
    while len(masks) < count:
        cy, cx = rng.uniform(8, size - 8, 2)
        ry, rx = np.exp(rng.uniform(np.log(2), np.log(35), 2))
        t = rng.uniform(0, np.pi)
        u = ((yy - cy) * np.cos(t) + (xx - cx) * np.sin(t)) / ry
        v = (-(yy - cy) * np.sin(t) + (xx - cx) * np.cos(t)) / rx
        mask = u**2 + v**2 <= 1
        if rng.random() < 0.4:
            mask &= (yy - cy - 0.3 * ry) ** 2 + (xx - cx) ** 2 > (0.4 * min(ry, rx)) ** 2
        if mask.sum() < 4:
            continue
        r, c = np.nonzero(mask)
        masks.append(mask)
        boxes.append([r.min(), c.min(), r.max() + 1, c.max() + 1])
    return np.array(masks), np.array(boxes, np.float32)


def _jittered(rng, boxes, per_box):
    index = np.repeat(np.arange(len(boxes)), per_box)
    b = boxes[index].astype(np.float64)
    hw = np.concatenate([b[:, 2:] - b[:, :2]] * 2, -1)
    return (b + rng.normal(0, 0.1, b.shape) * hw).astype(np.float32), index


def test_mask_targets_exact_cases():
    masks = np.ones((1, 2, 8, 8), np.float32)
    masks[0, 1, :, 4:] = 0.0  # gt 1: left half
    gt = np.array([[[0, 0, 28, 28], [10, 10, 38, 38]]], np.float32)
    rois = np.array([[[0, 0, 28, 28], [0, 0, 28, 56], [0, 30, 28, 58], [10, 10, 38, 38], [10, 10, 38, 24]]], np.float32)
    index = np.array([[0, 0, 0, 1, 1]])
    got = mask_targets(rois, index, gt, masks, aligned=True, pixel_samples=1).numpy()[0]
    assert got.shape == (5, 28, 28)
    np.testing.assert_array_equal(got[0], 1.0)
    np.testing.assert_array_equal(got[1][:, :14], 1.0)  # the box is the RoI's left half
    np.testing.assert_array_equal(got[1][:, 14:], 0.0)
    np.testing.assert_array_equal(got[2], 0.0)  # outside the box
    # inside the box, the crop is read bilinearly between cell centres (cells of 3.5 pixels here)
    np.testing.assert_array_equal(got[3][:, :12], 1.0)
    np.testing.assert_array_equal(got[3][:, 16:], 0.0)
    assert np.all(np.diff(got[3][:, 11:17], axis=1) < 0)
    np.testing.assert_allclose(got[3][:, 12:16], [[13 / 14, 9 / 14, 5 / 14, 1 / 14]] * 28, atol=1e-5)
    np.testing.assert_array_equal(got[4][:, :24], 1.0)
    # the one-pixel window blurs the box's edge: a RoI one pixel off the box, sampled at -0.75 and -0.25 in its
    # first row, reads 0 there without the window, a little with it (exact bilinear: 0.125, 2-point window: 0.25)
    shifted = np.array([[[-1, -1, 27, 27]]], np.float32)
    sharp = mask_targets(shifted, index[:, :1], gt, masks, aligned=True, pixel_samples=1).numpy()[0, 0]
    blurred = mask_targets(shifted, index[:, :1], gt, masks, aligned=True).numpy()[0, 0]
    np.testing.assert_array_equal(sharp[0], 0.0)
    np.testing.assert_allclose(blurred[0, 1:], 0.25)
    np.testing.assert_allclose(blurred[1:, 1:], 1.0)


@pytest.mark.parametrize("mask_size, mean_tol", [(56, 0.015), (112, 0.012)])
def test_mask_targets_match_torchvision_rule_on_raster_masks(mask_size, mean_tol):
    """Box-cropped masks vs torchvision's roi_align of the full-image raster mask (float64 reference).

    Measured (3 scenes of 24 ellipses, 8 jittered RoIs each, 160 x 160): mean |difference| 0.0101 (S = 56) and
    0.0084 (S = 112); p99 0.13; up to 0.32 at single pixels of RoIs inside the image, ~0.65 where a RoI
    passes the image border (torchvision reads the edge row up to one pixel outside the image).
    """
    rng = np.random.default_rng(4)
    masks, boxes = _scene(rng)
    rois, index = _jittered(rng, boxes, 6)
    crops = crop_masks_to_boxes(tf.constant(masks.astype(np.uint8)), tf.constant(boxes), mask_size).numpy()
    want = np.stack([roi_align_reference(masks[i], r) for i, r in zip(index, rois.astype(np.float64))])
    got = mask_targets(rois[None], index[None], boxes[None], crops[None]).numpy()[0]
    diff = np.abs(got - want)
    inside = np.all(rois[:, :2] > 1, 1) & np.all(rois[:, 2:] < 95, 1)
    assert diff.mean() < mean_tol, diff.mean()
    assert np.quantile(diff, 0.99) < 0.2
    assert diff[inside].max() < 0.4
    assert got.min() >= 0 and got.max() <= 1
    # the sharp variant (no one-pixel window) is further from torchvision, but still close on average
    sharp = mask_targets(rois[None], index[None], boxes[None], crops[None], pixel_samples=1).numpy()[0]
    assert mean_tol < np.abs(sharp - want).mean() < 0.04


def test_mask_targets_batched_gather_and_jit():
    rng = np.random.default_rng(5)
    masks, boxes = _scene(rng, count=6)
    crops = crop_masks_to_boxes(tf.constant(masks.astype(np.uint8)), tf.constant(boxes), 56).numpy()
    rois, index = _jittered(rng, boxes, 3)
    single = mask_targets(rois[None], index[None], boxes[None], crops[None]).numpy()[0]
    perm = rng.permutation(6)  # image 1 holds the same ground truth in another order
    inverse = np.argsort(perm)
    batch = mask_targets(
        np.stack([rois, rois[::-1]]),
        np.stack([index, inverse[index][::-1]]),
        np.stack([boxes, boxes[perm]]),
        np.stack([crops, crops[perm]]),
    ).numpy()
    np.testing.assert_allclose(batch[0], single, atol=1e-6)
    np.testing.assert_allclose(batch[1][::-1], single, atol=1e-6)
    fn = tf.function(lambda *a: mask_targets(*a), jit_compile=True)
    np.testing.assert_allclose(fn(rois[None], index[None], boxes[None], crops[None]).numpy()[0], single, atol=1e-5)


_PROJECT = """
from torchvision.models.detection.roi_heads import project_masks_on_boxes
from torchvision.ops import roi_align
masks = torch.from_numpy(inputs["masks"].astype(np.float64))
rois = torch.from_numpy(inputs["rois"][:, [1, 0, 3, 2]].astype(np.float64))
outputs["project"] = project_masks_on_boxes(masks, rois, torch.from_numpy(inputs["index"]), 28).numpy()
indexed = torch.cat([torch.from_numpy(inputs["index"]).double()[:, None], rois], 1)
outputs["aligned"] = roi_align(masks[:, None], indexed, (28, 28), 1.0, 2, True)[:, 0].numpy()
"""


def test_numpy_reference_is_torchvision_project_masks_on_boxes(torch_run):
    rng = np.random.default_rng(6)
    masks, boxes = _scene(rng, count=5)
    rois, index = _jittered(rng, boxes, 4)
    rois[0] = [-5, -3, 20, 101]  # across the borders
    rois[1] = [3, 4, 3.5, 4.2]  # smaller than a pixel
    ref = torch_run(_PROJECT, masks=masks, rois=rois, index=index)
    mine = np.stack([roi_align_reference(masks[i], r) for i, r in zip(index, rois.astype(np.float64))])
    np.testing.assert_allclose(mine, ref["project"], atol=1e-6)
    mine = np.stack(
        [
            roi_align_reference(masks[i], r, aligned=True, sampling_ratio=2)
            for i, r in zip(index, rois.astype(np.float64))
        ]
    )
    np.testing.assert_allclose(mine, ref["aligned"], atol=1e-6)
