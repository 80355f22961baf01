"""kzoo.ops.conv: the 3x3 'same' convolution and its matmul kernel gradient, against float64 NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from kzoo.ops.conv import MATMUL_GRADIENT_MIN_POSITIONS, conv2d_3x3, conv2d_3x3_kernel_gradient


def reference_conv(x, kernel, bias):
    """float64 ``y[n, h, w] = sum_{i, j} x_pad[n, h + i, w + j] @ kernel[i, j] + bias`` (zero padding of 1)."""
    x, kernel = np.float64(x), np.float64(kernel)
    _, height, width, _ = x.shape
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    out = sum(padded[:, i : i + height, j : j + width] @ kernel[i, j] for i in range(3) for j in range(3))
    return out + np.float64(bias)


def reference_gradients(x, kernel, upstream):
    """float64 gradients of ``sum(reference_conv(x, kernel, bias) * upstream)``: ``(dx, dkernel, dbias)``."""
    x, kernel, upstream = np.float64(x), np.float64(kernel), np.float64(upstream)
    _, height, width, _ = x.shape
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    dkernel = np.stack(
        [
            np.stack([np.einsum("nhwc,nhwk->ck", padded[:, i : i + height, j : j + width], upstream) for j in range(3)])
            for i in range(3)
        ]
    )
    dpadded = np.zeros_like(padded)
    for i in range(3):
        for j in range(3):
            dpadded[:, i : i + height, j : j + width] += upstream @ kernel[i, j].T
    return dpadded[:, 1:-1, 1:-1], dkernel, upstream.sum(axis=(0, 1, 2))


def _rel_err(got, want):
    return float(np.max(np.abs(np.float64(got) - want)) / max(np.max(np.abs(want)), 1e-12))


@pytest.mark.parametrize(
    "shape, filters",
    [
        ((2, 5, 7, 3), 4),  # channels not a multiple of the 16 floats of an aligned row: the tap slices copy
        ((1, 1, 1, 2), 3),  # one position: every tap but the centre reads padding
        ((3, 9, 2, 16), 8),
        ((2, 31, 17, 5), 1),
        ((0, 4, 4, 2), 3),  # empty batch: zeros
        ((1, 0, 3, 2), 2),  # empty map: zeros
    ],
)
def test_kernel_gradient_matches_float64_reference(shape, filters):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    upstream = rng.standard_normal(shape[:3] + (filters,)).astype(np.float32)
    kernel = np.zeros((3, 3, shape[3], filters), np.float32)
    want = reference_gradients(x, kernel, upstream)[1]
    got = conv2d_3x3_kernel_gradient(tf.constant(x), tf.constant(upstream)).numpy()
    assert got.shape == (3, 3, shape[3], filters) and got.dtype == np.float32
    assert _rel_err(got, want) < 1e-5


def test_kernel_gradient_with_unknown_shapes_matches_static():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 9, 4)).astype(np.float32)
    upstream = rng.standard_normal((2, 6, 9, 3)).astype(np.float32)
    dynamic = tf.function(
        conv2d_3x3_kernel_gradient,
        input_signature=[tf.TensorSpec([None, None, None, None]), tf.TensorSpec([None, None, None, None])],
    )
    np.testing.assert_allclose(dynamic(x, upstream), conv2d_3x3_kernel_gradient(x, upstream), rtol=0, atol=1e-6)


def test_kernel_gradient_bfloat16_close_to_float64():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 12, 10, 8)).astype(np.float32)
    upstream = rng.standard_normal((1, 12, 10, 8)).astype(np.float32)
    got = conv2d_3x3_kernel_gradient(tf.cast(x, tf.bfloat16), tf.cast(upstream, tf.bfloat16))
    assert got.dtype == tf.bfloat16
    want = reference_gradients(x, np.zeros((3, 3, 8, 8)), upstream)[1]
    assert _rel_err(tf.cast(got, tf.float32).numpy(), want) < 3e-2  # bfloat16 inputs carry 8 bits


@pytest.mark.parametrize("side", [12, int(np.ceil(np.sqrt(MATMUL_GRADIENT_MIN_POSITIONS)))])
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv2d_3x3_forward_and_gradients_match_float64_reference(side, with_bias):
    """Below the threshold TF's gradient runs, at and above it the matmul kernel gradient; both are checked."""
    rng = np.random.default_rng(side)
    x = rng.standard_normal((2, side, side + 1, 3)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32) if with_bias else np.zeros(4, np.float32)
    upstream = rng.standard_normal((2, side, side + 1, 4)).astype(np.float32)
    x_t, kernel_t, bias_t = tf.constant(x), tf.Variable(kernel), tf.Variable(bias)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        out = conv2d_3x3(x_t, kernel_t, bias_t if with_bias else None)
        loss = tf.reduce_sum(out * upstream)
    gradients = tape.gradient(loss, [x_t, kernel_t, bias_t])
    assert _rel_err(out.numpy(), reference_conv(x, kernel, bias)) < 1e-5
    want = reference_gradients(x, kernel, upstream)
    assert _rel_err(gradients[0].numpy(), want[0]) < 1e-5
    assert _rel_err(gradients[1].numpy(), want[1]) < 1e-5
    if with_bias:
        assert _rel_err(gradients[2].numpy(), want[2]) < 1e-5
    else:
        assert gradients[2] is None  # the bias variable was not used


def _gradient_op_types(side: int) -> set[str]:
    x = tf.TensorSpec([1, side, side, 2])

    @tf.function(input_signature=[x])
    def kernel_gradient(inputs):
        kernel = tf.ones([3, 3, 2, 2])
        with tf.GradientTape() as tape:
            tape.watch(kernel)
            loss = tf.reduce_sum(conv2d_3x3(inputs, kernel, tf.zeros([2])))
        return tape.gradient(loss, kernel)

    return {op.type for op in kernel_gradient.get_concrete_function().graph.get_operations()}


def test_the_matmul_gradient_runs_from_the_threshold_on():
    side = int(np.ceil(np.sqrt(MATMUL_GRADIENT_MIN_POSITIONS)))
    large, small = _gradient_op_types(side), _gradient_op_types(side // 2)
    assert "Conv2DBackpropFilter" not in large and "MatMul" in large
    assert "Conv2DBackpropFilter" in small


def test_conv2d_3x3_rejects_other_kernel_sizes():
    with pytest.raises(ValueError, match=r"\[3, 3, C, K\] kernel"):
        conv2d_3x3(tf.zeros([1, 4, 4, 2]), tf.zeros([5, 5, 2, 2]))
