"""crop_and_resize_bilinear: TF's forward kernel, a race-free image gradient checked against a float64 NumPy
reference of crop_and_resize's definition."""

import contextlib
import math

import numpy as np
import pytest
import tensorflow as tf

from kzoo.ops import crop_and_resize as crop_and_resize_module
from kzoo.ops.crop_and_resize import crop_and_resize_bilinear, crop_and_resize_image_gradient
from kzoo.ops.devices import runs_on_gpu


def image_gradient_reference(grads, boxes, box_indices, image_shape):
    """float64, one sample at a time, from tf.image.crop_and_resize's documented sampling.

    Sample ``i`` of a box lies at ``y1 * (H - 1) + i * (y2 - y1) * (H - 1) / (h - 1)`` (the middle of the box
    when ``h == 1``); a sample outside ``[0, H - 1]`` is the extrapolation value (no gradient); inside, the
    crop is the bilinear interpolation of the 4 neighbouring pixels, so each neighbour receives its weight
    times the crop's gradient.
    """
    out = np.zeros(image_shape, np.float64)
    _, height, width, _ = image_shape
    count, crop_h, crop_w, _ = grads.shape

    def axis(first, last, size, n):
        if n == 1:
            return [0.5 * (first + last) * (size - 1)]
        return [first * (size - 1) + i * (last - first) * (size - 1) / (n - 1) for i in range(n)]

    for k in range(count):
        y1, x1, y2, x2 = (float(v) for v in boxes[k])
        for i, y in enumerate(axis(y1, y2, height, crop_h)):
            if not 0.0 <= y <= height - 1:
                continue
            top, bottom, ly = math.floor(y), math.ceil(y), y - math.floor(y)
            for j, x in enumerate(axis(x1, x2, width, crop_w)):
                if not 0.0 <= x <= width - 1:
                    continue
                left, right, lx = math.floor(x), math.ceil(x), x - math.floor(x)
                g = grads[k, i, j].astype(np.float64)
                b = box_indices[k]
                out[b, top, left] += (1 - ly) * (1 - lx) * g
                out[b, top, right] += (1 - ly) * lx * g
                out[b, bottom, left] += ly * (1 - lx) * g
                out[b, bottom, right] += ly * lx * g
    return out


def random_case(rng, count=40, batch=2, size=(13, 17), channels=3, crop=(5, 4)):
    """Boxes inside, crossing every border, entirely outside, flipped, a point and a line."""
    image = rng.normal(size=(batch, *size, channels)).astype(np.float32)
    boxes = rng.uniform(-0.3, 1.3, size=(count, 4)).astype(np.float32)
    boxes[:4] = [[0.0, 0.0, 1.0, 1.0], [0.9, 0.8, 0.1, 0.2], [0.5, 0.5, 0.5, 0.5], [-1.0, -1.0, -1.0, -1.0]]
    box_indices = rng.integers(0, batch, size=count).astype(np.int32)
    grads = rng.normal(size=(count, *crop, channels)).astype(np.float32)
    return image, boxes, box_indices, grads


def gradient(image, boxes, box_indices, grads, fn=crop_and_resize_bilinear):
    image = tf.constant(image)
    with tf.GradientTape() as tape:
        tape.watch(image)
        crops = fn(image, tf.constant(boxes), tf.constant(box_indices), grads.shape[1:3])
    return crops.numpy(), tape.gradient(crops, image, output_gradients=tf.constant(grads)).numpy()


@pytest.mark.parametrize("crop", [(5, 4), (1, 1), (1, 6), (14, 14)])
def test_forward_is_tf_and_gradient_matches_float64_reference(crop):
    image, boxes, box_indices, grads = random_case(np.random.default_rng(0), crop=crop)
    crops, grad = gradient(image, boxes, box_indices, grads)
    expected = tf.image.crop_and_resize(image, boxes, box_indices, crop, extrapolation_value=0.0).numpy()
    np.testing.assert_array_equal(crops, expected)
    reference = image_gradient_reference(grads, boxes, box_indices, image.shape)
    assert np.abs(reference).max() > 1.0
    error = np.abs(grad - reference).max()
    print(f"crop {crop}: max abs error against float64 {error:.2e}")
    assert error < 1e-4


def test_agrees_with_tf_gradient_for_one_box_per_image():
    """With one box per image TF's kernel cannot race; the two gradients are the same function."""
    image, boxes, box_indices, grads = random_case(np.random.default_rng(1))
    boxes, grads, box_indices = boxes[[0, 7]], grads[[0, 7]], np.array([0, 1], np.int32)
    _, ours = gradient(image, boxes, box_indices, grads)
    _, stock = gradient(image, boxes, box_indices, grads, fn=tf.image.crop_and_resize)
    np.testing.assert_allclose(ours, stock, atol=1e-6)


def test_heavily_overlapping_boxes_lose_no_update():
    """400 overlapping boxes on one image: TF's CPU gradient kernel loses updates here (errors up to ~9 out
    of ~47 measured on 2 cores); ours equals the float64 sum every time."""
    rng = np.random.default_rng(2)
    image = rng.normal(size=(1, 32, 32, 8)).astype(np.float32)
    boxes = (np.array([[0.1, 0.1, 0.6, 0.6]]) + rng.uniform(0, 0.02, size=(400, 4))).astype(np.float32)
    box_indices = np.zeros(400, np.int32)
    grads = rng.normal(size=(400, 14, 14, 8)).astype(np.float32)
    reference = image_gradient_reference(grads, boxes, box_indices, image.shape)
    runs = [gradient(image, boxes, box_indices, grads)[1] for _ in range(3)]
    for grad in runs:
        np.testing.assert_allclose(grad, reference, atol=2e-4 * np.abs(reference).max())
        np.testing.assert_array_equal(grad, runs[0])


def test_in_a_tf_function_with_unknown_batch_and_size():
    image, boxes, box_indices, grads = random_case(np.random.default_rng(3))
    spec = tf.TensorSpec([None, None, None, 3], tf.float32)

    @tf.function(input_signature=[spec])
    def image_grad(image):
        with tf.GradientTape() as tape:
            tape.watch(image)
            crops = crop_and_resize_bilinear(image, boxes, box_indices, (5, 4))
        return tape.gradient(crops, image, output_gradients=grads)

    reference = image_gradient_reference(grads, boxes, box_indices, image.shape)
    np.testing.assert_allclose(image_grad(tf.constant(image)).numpy(), reference, atol=1e-4)


def test_boxes_get_no_gradient_and_static_crop_size_is_required():
    image, boxes, box_indices, grads = random_case(np.random.default_rng(4))
    boxes = tf.constant(boxes)
    with tf.GradientTape() as tape:
        tape.watch(boxes)
        crops = crop_and_resize_bilinear(image, boxes, box_indices, (5, 4))
    assert tape.gradient(crops, boxes) is None
    with pytest.raises(ValueError, match="static crop size"):
        image_gradient = tf.function(lambda g: crop_and_resize_image_gradient(g, boxes, box_indices, tf.shape(image)))
        image_gradient.get_concrete_function(tf.TensorSpec([None, None, None, 3], tf.float32))


def _gradient_op_types(device: str | None) -> set[str]:
    """Op types of the image gradient built (not run) in a graph, optionally under ``tf.device(device)``."""
    graph = tf.Graph()
    with graph.as_default(), tf.device(device) if device else contextlib.nullcontext():
        image = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 2])
        crops = crop_and_resize_bilinear(image, tf.constant([[0.1, 0.1, 0.9, 0.9]]), tf.constant([0]), (3, 3))
        tf.gradients(crops, image)
    return {op.type for op in graph.get_operations()}


def test_tf_gradient_kernel_on_gpu_ours_on_cpu(monkeypatch):
    assert not runs_on_gpu(tf.constant(1.0))  # this machine: an eager CPU tensor
    assert "SparseTensorDenseMatMul" in _gradient_op_types("/CPU:0")
    assert "CropAndResizeGradImage" not in _gradient_op_types("/CPU:0")
    assert "CropAndResizeGradImage" in _gradient_op_types("/GPU:0")  # placed explicitly
    # no explicit device: TF's placer prefers a GPU when it sees one
    assert "CropAndResizeGradImage" not in _gradient_op_types(None)
    monkeypatch.setattr(crop_and_resize_module.tf.config, "list_logical_devices", lambda kind=None: ["GPU:0"])
    assert "CropAndResizeGradImage" in _gradient_op_types(None)


def pooled_gradient(image, boxes, box_indices, upstream, pool, edge_pad=False, signature=None):
    """``(pooled crops, image gradient)`` as NumPy; in a ``tf.function`` of ``signature`` when given."""
    crop = (upstream.shape[1] * pool, upstream.shape[2] * pool)

    def run(image):
        with tf.GradientTape() as tape:
            tape.watch(image)
            pooled = crop_and_resize_bilinear(
                image, tf.constant(boxes), tf.constant(box_indices), crop, pool, edge_pad=edge_pad
            )
        return pooled, tape.gradient(pooled, image, output_gradients=tf.constant(upstream))

    if signature is not None:
        run = tf.function(run, input_signature=[signature])
    pooled, grad = run(tf.constant(image))
    return pooled.numpy(), grad.numpy()


@pytest.mark.parametrize("pool, pooled_size", [(2, (7, 7)), (2, (3, 2)), (3, (2, 3))])
def test_pooled_forward_is_tf_then_avg_pool_and_gradient_matches_float64_reference(pool, pooled_size):
    """RoIAlign's pooling of pool x pool samples per bin, folded into the gradient: against the float64 reference
    fed with each sample's share of its bin's gradient (upstream / pool**2, repeated over the bin)."""
    image, boxes, box_indices, _ = random_case(np.random.default_rng(5), count=23)
    upstream = np.random.default_rng(6).normal(size=(23, *pooled_size, 3)).astype(np.float32)
    pooled, grad = pooled_gradient(image, boxes, box_indices, upstream, pool)
    crop = (pooled_size[0] * pool, pooled_size[1] * pool)
    crops = tf.image.crop_and_resize(image, boxes, box_indices, crop, extrapolation_value=0.0)
    np.testing.assert_array_equal(pooled, tf.nn.avg_pool2d(crops, pool, pool, "VALID").numpy())
    per_sample = np.repeat(np.repeat(upstream, pool, axis=1), pool, axis=2) / pool**2
    reference = image_gradient_reference(per_sample, boxes, box_indices, image.shape)
    assert np.abs(reference).max() > 0.5
    np.testing.assert_allclose(grad, reference, atol=1e-5)


@pytest.mark.parametrize("count", [0, 1, 3, 4, 9])
def test_pooled_with_an_unknown_box_count_in_a_tf_function(count):
    """The boxes are cropped in pool**2 groups: counts below, at and above the number of groups, unknown when
    traced."""
    image, boxes, box_indices, _ = random_case(np.random.default_rng(7), count=max(count, 4))
    boxes, box_indices = boxes[:count], box_indices[:count]
    upstream = np.random.default_rng(8).normal(size=(count, 2, 3, 3)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32)])
    def pooled_and_gradient(boxes, box_indices):
        with tf.GradientTape() as tape:
            tape.watch(image_tensor)
            pooled = crop_and_resize_bilinear(image_tensor, boxes, box_indices, (4, 6), 2)
        return pooled, tape.gradient(pooled, image_tensor, output_gradients=upstream)

    image_tensor = tf.constant(image)
    pooled, grad = pooled_and_gradient(tf.constant(boxes), tf.constant(box_indices))
    assert pooled.shape == (count, 2, 3, 3)
    per_sample = np.repeat(np.repeat(upstream, 2, axis=1), 2, axis=2) / 4
    np.testing.assert_allclose(
        grad.numpy(), image_gradient_reference(per_sample, boxes, box_indices, image.shape), atol=1e-5
    )


@pytest.mark.parametrize("edge_pad", [False, True])
def test_pooled_gpu_branch_equals_ours_for_one_box_per_image(monkeypatch, edge_pad):
    """The GPU branch (upstream spread over each bin, then TF's kernel on the padded image with ``edge_pad`` and
    ``MirrorPadGrad``), run here on CPU where TF's kernel is right as long as no two boxes share an image."""
    image, boxes, box_indices, _ = random_case(np.random.default_rng(9))
    boxes, box_indices = boxes[[0, 7]], np.array([0, 1], np.int32)
    upstream = np.random.default_rng(10).normal(size=(2, 3, 2, 3)).astype(np.float32)
    _, ours = pooled_gradient(image, boxes, box_indices, upstream, 2, edge_pad)
    monkeypatch.setattr(crop_and_resize_module, "runs_on_gpu", lambda tensor: True)
    _, gpu_branch = pooled_gradient(image, boxes, box_indices, upstream, 2, edge_pad)
    np.testing.assert_allclose(gpu_branch, ours, atol=1e-6)


def test_crop_size_must_be_a_multiple_of_pool():
    image, boxes, box_indices, _ = random_case(np.random.default_rng(11))
    with pytest.raises(ValueError, match="multiple of pool"):
        crop_and_resize_bilinear(image, boxes, box_indices, (5, 4), 2)


def fold_edge_pad(padded_gradient: np.ndarray) -> np.ndarray:
    """The gradient of ``[B, H + 2, W + 2, C]`` crops of an edge-padded image, as the unpadded image's: each pad
    row/column adds into the edge row/column it copies (float64)."""
    g = padded_gradient.astype(np.float64).copy()
    g[:, 1] += g[:, 0]
    g[:, -2] += g[:, -1]
    g = g[:, 1:-1]
    g[:, :, 1] += g[:, :, 0]
    g[:, :, -2] += g[:, :, -1]
    return g[:, :, 1:-1]


@pytest.mark.parametrize("pool", [1, 2])
@pytest.mark.parametrize("unknown_shape", [False, True])
def test_edge_pad_crops_the_padded_image_and_sends_the_gradient_to_the_unpadded_one(pool, unknown_shape):
    """``edge_pad``: the forward is TF's crop of ``np.pad(image, 1, "edge")`` (then the pooling), bit for bit; the
    gradient is the float64 reference's on the padded image with the pad folded into the edges."""
    image, boxes, box_indices, _ = random_case(np.random.default_rng(12), count=31)
    upstream = np.random.default_rng(13).normal(size=(31, 3, 4, 3)).astype(np.float32)
    signature = tf.TensorSpec([None, None, None, 3], tf.float32) if unknown_shape else None
    pooled, grad = pooled_gradient(image, boxes, box_indices, upstream, pool, True, signature)
    padded = np.pad(image, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="edge")
    crops = tf.image.crop_and_resize(padded, boxes, box_indices, (3 * pool, 4 * pool), extrapolation_value=0.0)
    np.testing.assert_array_equal(pooled, tf.nn.avg_pool2d(crops, pool, pool, "VALID").numpy())
    per_sample = np.repeat(np.repeat(upstream, pool, axis=1), pool, axis=2) / pool**2
    reference = fold_edge_pad(image_gradient_reference(per_sample, boxes, box_indices, padded.shape))
    assert grad.shape == image.shape
    assert np.abs(reference[:, [0, -1]]).max() > 0.5 and np.abs(reference[:, :, [0, -1]]).max() > 0.5  # edges hit
    np.testing.assert_allclose(grad, reference, atol=1e-5)
