"""A 3x3 'same' convolution whose kernel gradient is nine matrix products.

On large feature maps, oneDNN's kernel-gradient kernel (``Conv2DBackpropFilter``) runs well below the rate of
the forward convolution and of a plain matrix product (``benchmarks/conv_filter_gradient.py`` measures both by
map size; FPN's and the RPN's 3x3 convolutions on the stride-4 level are the case that matters). The kernel
gradient is ``dK[i, j] = sum_p x_pad[p + (i, j)]^T dz[p]`` over all positions ``p``: one ``[C, P] x [P, K]``
product per tap. With ``x`` padded to ``[B, H + 2, W + 2, C]`` and flattened to rows, and ``dz`` padded with
zeros to the same ``[B, H + 2, W + 2, K]`` grid, tap ``(i, j)`` reads the rows of ``x`` shifted by
``i * (W + 2) + j``: a contiguous slice of one matrix (no copy), multiplied by all of ``dz``. The zero rows of
``dz`` (the two padding columns and rows) cancel the positions that would read across a row or an image
boundary.
"""

from __future__ import annotations

import tensorflow as tf

from kzoo.ops.devices import runs_on_gpu

# feature maps with fewer positions keep oneDNN's kernel gradient (it is as fast there, and the padding is a
# larger share of the work)
MATMUL_GRADIENT_MIN_POSITIONS = 96 * 96


def conv2d_3x3_kernel_gradient(inputs: tf.Tensor, upstream: tf.Tensor) -> tf.Tensor:
    """Gradient with respect to the kernel of ``tf.nn.conv2d(inputs, kernel, 1, "SAME")`` for a 3x3 kernel.

    Args:
        inputs: ``[B, H, W, C]`` float, the convolution's input.
        upstream: ``[B, H, W, K]``, the gradient of its output, in the dtype of ``inputs``.

    Returns:
        ``[3, 3, C, K]`` in the dtype of ``inputs``.
    """
    inputs = tf.convert_to_tensor(inputs)
    upstream = tf.convert_to_tensor(upstream, inputs.dtype)
    shape = tf.shape(inputs)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    filters = tf.shape(upstream)[3]
    padded_width = width + 2
    rows = tf.reshape(tf.pad(inputs, [[0, 0], [1, 1], [1, 1], [0, 0]]), tf.stack([-1, channels]))
    gradient_rows = tf.reshape(tf.pad(upstream, [[0, 0], [0, 2], [0, 2], [0, 0]]), tf.stack([-1, filters]))
    # the last 2 * (W + 2) + 2 rows of the padded gradient are zeros, so each tap needs only the rows before
    # them, and the largest shift stays inside the padded input
    used = tf.maximum(batch * (height + 2) * padded_width - 2 * padded_width - 2, 0)
    gradient_rows = gradient_rows[:used]
    taps = []
    for i in range(3):
        for j in range(3):
            shift = i * padded_width + j
            taps.append(tf.matmul(rows[shift : shift + used], gradient_rows, transpose_a=True))
    return tf.reshape(tf.stack(taps), tf.stack([3, 3, channels, filters]))


def conv2d_3x3(inputs: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None = None) -> tf.Tensor:
    """``tf.nn.conv2d(inputs, kernel, 1, "SAME") + bias`` for a 3x3 kernel, with the kernel gradient of
    :func:`conv2d_3x3_kernel_gradient` on CPU for feature maps of at least ``MATMUL_GRADIENT_MIN_POSITIONS``
    positions (TF's own gradient otherwise, and on GPU). The forward pass is TF's (oneDNN fuses the bias).

    Args:
        inputs: ``[B, H, W, C]`` float32 or bfloat16.
        kernel: ``[3, 3, C, K]``, the dtype of ``inputs``.
        bias: ``[K]`` in the dtype of ``inputs``, or None.

    Returns:
        ``[B, H, W, K]`` in the dtype of ``inputs``.
    """
    inputs = tf.convert_to_tensor(inputs)
    kernel = tf.convert_to_tensor(kernel, inputs.dtype)
    if kernel.shape.rank != 4 or tuple(kernel.shape[:2]) != (3, 3):
        raise ValueError(f"conv2d_3x3 needs a [3, 3, C, K] kernel, got shape {kernel.shape}")
    height, width = inputs.shape[1], inputs.shape[2]
    small = height is None or width is None or height * width < MATMUL_GRADIENT_MIN_POSITIONS
    if small or runs_on_gpu(inputs):
        outputs = tf.nn.conv2d(inputs, kernel, 1, "SAME")
        return outputs if bias is None else tf.nn.bias_add(outputs, tf.convert_to_tensor(bias, inputs.dtype))
    # without a bias, a zero one is added: nothing asks for its gradient, so tf.function prunes that sum
    bias = tf.zeros(tf.shape(kernel)[3:], inputs.dtype) if bias is None else bias

    @tf.custom_gradient
    def convolve(inputs, kernel, bias):
        outputs = tf.nn.bias_add(tf.nn.conv2d(inputs, kernel, 1, "SAME"), bias)

        def grad(upstream):
            input_gradient = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(inputs),
                filter=kernel,
                out_backprop=upstream,
                strides=[1, 1, 1, 1],
                padding="SAME",
            )
            kernel_gradient = conv2d_3x3_kernel_gradient(inputs, upstream)
            return input_gradient, kernel_gradient, tf.reduce_sum(upstream, axis=[0, 1, 2])

        return outputs, grad

    return convolve(inputs, kernel, tf.convert_to_tensor(bias, inputs.dtype))
