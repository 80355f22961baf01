"""NumPy references and checks shared by the layer tests (float64 definitions, config round trips)."""

import keras
import numpy as np

# C2..C5 of a 50 x 52 image: odd sizes at every level, so the top-down path needs the cropped upsampling.
LEVEL_SHAPES = [(13, 13), (7, 7), (4, 4), (2, 2)]


def conv_same_reference(x, kernel, bias):
    """Float64 stride-1 cross-correlation, NHWC x HWIO, symmetric zero padding (odd kernels)."""
    kh, kw = kernel.shape[:2]
    x = np.pad(x, [(0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)])
    n, h, w, _ = x.shape
    oh, ow = h - kh + 1, w - kw + 1
    y = np.zeros((n, oh, ow, kernel.shape[-1]))
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("nhwc,co->nhwo", x[:, i : i + oh, j : j + ow], kernel[i, j])
    return y + bias


def random_features(shapes, channels, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch, h, w, c)).astype(np.float32) for (h, w), c in zip(shapes, channels)]


def randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(scale=0.3, size=w.shape).astype(np.float32) for w in layer.get_weights()])


def assert_config_round_trip(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == layer.get_config()


# Keras layers take tensors (or NumPy arrays), not Python lists, as positional arguments.
IMAGE_100 = np.array([[100, 100]], np.int32)


CLAMP = np.log(1000.0 / 16)


def np_decode(deltas, anchors, weights, clamp=CLAMP):
    deltas = deltas.astype(np.float32)
    anchors = anchors.astype(np.float32)
    h = anchors[..., 2] - anchors[..., 0]
    w = anchors[..., 3] - anchors[..., 1]
    cy = anchors[..., 0] + 0.5 * h
    cx = anchors[..., 1] + 0.5 * w
    ty, tx, th, tw = (deltas[..., i] / np.float32(weights[i]) for i in range(4))
    th, tw = np.minimum(th, clamp), np.minimum(tw, clamp)
    y, x = ty * h + cy, tx * w + cx
    hh, hw = 0.5 * np.exp(th) * h, 0.5 * np.exp(tw) * w
    return np.stack([y - hh, x - hw, y + hh, x + hw], -1).astype(np.float32)


def np_clip(boxes, height, width):
    limits = np.array([height, width, height, width], np.float32)
    return np.minimum(np.maximum(boxes, 0), limits)


def np_iou(box, boxes):
    ymin = np.maximum(box[0], boxes[:, 0])
    xmin = np.maximum(box[1], boxes[:, 1])
    ymax = np.minimum(box[2], boxes[:, 2])
    xmax = np.minimum(box[3], boxes[:, 3])
    inter = np.maximum(ymax - ymin, 0) * np.maximum(xmax - xmin, 0)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def np_batched_nms(boxes, scores, groups, iou_threshold):
    """torchvision.ops.batched_nms: greedy NMS within each group, kept indices in descending score order."""
    keep = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        while idx.size:
            keep.append(idx[0])
            idx = idx[1:][np_iou(boxes[idx[0]], boxes[idx[1:]]) <= iou_threshold]
    keep = np.asarray(keep, int)
    return keep[np.argsort(-scores[keep], kind="stable")]


def numpy_dict(outputs):
    return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}
