"""Kernel gradient of a 3x3 'same' convolution: TF's ``Conv2DBackpropFilter`` (oneDNN) against
``kzoo.ops.conv.conv2d_3x3_kernel_gradient`` (nine matrix products), by feature-map size.

The shapes are FPN's and the RPN's 3x3 256 -> 256 convolutions at batch 2: a 512 x 512 image gives maps of
128, 64, 32 and 16 positions per side, an 800 x 800 image 200, 100, 50 and 25. Each cell is the median of
``--repeats`` calls of a ``tf.function`` after one warm-up call, with ``--inter-op-threads 1`` by default so
that each op has the machine to itself. The table also gives each kernel's GFLOP/s as a share of the
machine's 4096 x 4096 matmul rate, measured in the same run; kzoo uses the matmul kernel gradient from
``MATMUL_GRADIENT_MIN_POSITIONS`` positions on.

    python benchmarks/conv_filter_gradient.py
    python benchmarks/conv_filter_gradient.py --sides 128 200 --dtypes float32 bfloat16 --repeats 5
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
from common import matmul_gflops, median_seconds, table, write_results  # noqa: E402

from kzoo.ops.conv import MATMUL_GRADIENT_MIN_POSITIONS, conv2d_3x3_kernel_gradient  # noqa: E402


def tf_kernel_gradient(inputs: tf.Tensor, upstream: tf.Tensor) -> tf.Tensor:
    channels, filters = inputs.shape[-1], upstream.shape[-1]
    return tf.raw_ops.Conv2DBackpropFilter(
        input=inputs,
        filter_sizes=[3, 3, channels, filters],
        out_backprop=upstream,
        strides=[1, 1, 1, 1],
        padding="SAME",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[200, 128, 100, 96, 64, 50, 32])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--inter-op-threads", type=int, default=1)
    args = parser.parse_args()
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)

    rates = {dtype: matmul_gflops(dtype) for dtype in args.dtypes}
    kernels = {"tf": tf.function(tf_kernel_gradient), "kzoo": tf.function(conv2d_3x3_kernel_gradient)}
    rows = [("dtype", "side", "GFLOP", "TF s", "matmul s", "TF / matmul", "TF % rate", "matmul % rate", "kzoo uses")]
    results = []
    for dtype in args.dtypes:
        for side in args.sides:
            shape = [args.batch, side, side, args.channels]
            inputs = tf.cast(tf.random.normal(shape), dtype)
            upstream = tf.cast(tf.random.normal(shape), dtype)
            gflop = 2 * args.batch * side * side * args.channels**2 * 9 / 1e9
            seconds = {
                name: median_seconds(lambda k=kernel, x=inputs, g=upstream: k(x, g).numpy(), args.repeats, warmup=1)
                for name, kernel in kernels.items()
            }
            uses = "matmul" if side * side >= MATMUL_GRADIENT_MIN_POSITIONS else "TF"
            share = {name: 100 * gflop / s / rates[dtype] for name, s in seconds.items()}
            rows.append(
                (
                    dtype,
                    side,
                    f"{gflop:.1f}",
                    f"{seconds['tf']:.4f}",
                    f"{seconds['kzoo']:.4f}",
                    f"{seconds['tf'] / seconds['kzoo']:.2f}",
                    f"{share['tf']:.0f}%",
                    f"{share['kzoo']:.0f}%",
                    uses,
                )
            )
            results.append(
                {
                    "dtype": dtype,
                    "side": side,
                    "gflop": gflop,
                    "tf_seconds": seconds["tf"],
                    "matmul_seconds": seconds["kzoo"],
                    "kzoo_uses": uses,
                }
            )
    rate_text = ", ".join(f"{dtype} {rate:.0f}" for dtype, rate in rates.items())
    table(
        f"3x3 kernel gradient, batch {args.batch}, {args.channels} -> {args.channels} channels; "
        f"matmul GFLOP/s: {rate_text}",
        rows,
    )
    write_results("conv_filter_gradient", {"matmul_gflops": rates, "cases": results, "args": vars(args)})


if __name__ == "__main__":
    main()
