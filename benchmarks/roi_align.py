"""RoIAlign benchmark: the crop_and_resize kernel vs the gather (TFLite-builtin) kernel, and (when torch and
torchvision are installed) ``torchvision.ops.roi_align`` / ``MultiScaleRoIAlign`` on the same features and RoIs
in the same run (in a subprocess: torch and TF do not share a process here). Prints a table with the ratios.

    python benchmarks/roi_align.py                      # 1000 RoIs, 256 channels, outputs 7 and 14
    python benchmarks/roi_align.py --rois 50 --repeats 3 --xla
    python benchmarks/roi_align.py --backward           # training: forward + gradient of the features

``--backward`` times forward plus the gradient with respect to the feature maps (the training cost) and adds
a column for TF's stock ``CropAndResizeGradImage`` kernel, which kzoo replaces because on CPU it loses
updates when RoIs overlap (see ``kzoo/ops/crop_and_resize.py``); that column is for speed only, its values
are wrong.

Cases: one 200 x 200 x 256 map (P2 of an 800 x 800 image, stride 4) and a 4-level FPN (P2-P5, 200/100/50/25)
for an 800 x 800 image with RoIs of log-uniform sizes 16-800 pixels (so every level gets some). Each cell is
the median wall time of ``--repeats`` calls of a ``tf.function`` after ``--warmup`` calls. Run it on an
otherwise idle machine: 1000 RoIs at 14 x 14 with sampling ratio 2 samples 1000 x 28 x 28 x 256 floats
(~0.8 GB) per crop, and the gather kernel holds its four neighbour gathers too (a few GB).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import median_seconds, table, write_results  # noqa: E402

import kzoo.ops.roi_align_ops as roi_align_ops  # noqa: E402
from kzoo.layers.roi_align import RoIAlign  # noqa: E402

IMAGE = 800


def random_boxes(rng: np.random.Generator, count: int, min_size: float, max_size: float) -> np.ndarray:
    size = np.exp(rng.uniform(np.log(min_size), np.log(max_size), count))
    aspect = rng.uniform(0.5, 2.0, count)
    h, w = size * np.sqrt(aspect), size / np.sqrt(aspect)
    cy, cx = rng.uniform(0, IMAGE, count), rng.uniform(0, IMAGE, count)
    boxes = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)
    return np.clip(boxes, 0, IMAGE)[None].astype(np.float32)


def median_ms(fn, args, warmup: int, repeats: int) -> float:
    return 1000 * median_seconds(lambda: fn(*args).numpy(), repeats, warmup)


def stock_crop_and_resize(image, boxes, box_indices, crop_size, pool=1, edge_pad=False):
    if edge_pad:
        image = tf.pad(image, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    crops = tf.image.crop_and_resize(image, boxes, box_indices, crop_size, extrapolation_value=0.0)
    return tf.nn.avg_pool2d(crops, pool, pool, "VALID") if pool > 1 else crops


def training_step(layer, seed: int = 0):
    """``f(features, boxes)`` -> the gradient of ``sum(RoIAlign(features, boxes) * random)`` w.r.t. features."""
    weights = {}

    def step(features, boxes):
        with tf.GradientTape() as tape:
            tape.watch(features)
            pooled = layer(features if len(features) > 1 else features[0], boxes)
            if "w" not in weights:
                weights["w"] = tf.random.stateless_normal(pooled.shape, [seed, 0])
            loss = tf.reduce_sum(pooled * weights["w"])
        return tf.add_n([tf.reduce_sum(g) for g in tape.gradient(loss, features)])

    return step


def torchvision_times(single, pyramid, cases, args) -> dict | None:
    """Run ``roi_align_torchvision.py`` in a subprocess on the same arrays; ``None`` without torchvision."""
    if args.no_torch or importlib.util.find_spec("torchvision") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cases.npz")
        arrays = {f"single_feature{i}": f.numpy() for i, f in enumerate(single)}
        arrays.update({f"pyramid_feature{i}": f.numpy() for i, f in enumerate(pyramid)})
        arrays.update({"single_boxes": cases[0][2].numpy(), "pyramid_boxes": cases[1][2].numpy()})
        np.savez(path, **arrays)
        worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "roi_align_torchvision.py")
        command = [
            sys.executable,
            worker,
            path,
            str(IMAGE),
            str(args.sampling_ratio),
            str(args.warmup),
            str(args.repeats),
            *map(str, args.sizes),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    print(f"torchvision worker failed:\n{done.stderr[-2000:]}", file=sys.stderr)
    return None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rois", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--sizes", type=int, nargs="+", default=[7, 14], help="output sizes")
    parser.add_argument("--sampling-ratio", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--xla", action="store_true", help="also time the gather kernel with jit_compile=True")
    parser.add_argument("--no-torch", action="store_true", help="skip torchvision even if it is installed")
    parser.add_argument("--backward", action="store_true", help="time forward + feature gradient instead")
    args = parser.parse_args(argv)
    if args.backward:
        args.no_torch = True

    rng = np.random.default_rng(0)
    single = [tf.constant(rng.normal(size=(1, 200, 200, args.channels)).astype(np.float32))]
    pyramid = [
        tf.constant(rng.normal(size=(1, IMAGE >> lvl, IMAGE >> lvl, args.channels)).astype(np.float32))
        for lvl in (2, 3, 4, 5)
    ]
    cases = [
        ("1 level 200x200", single, tf.constant(random_boxes(rng, args.rois, 16, 400)), {"scale": 0.25}),
        ("FPN P2-P5, 800x800", pyramid, tf.constant(random_boxes(rng, args.rois, 16, 800)), {}),
    ]
    variants = [("crop_and_resize", False), ("gather", False)] + ([("gather", True)] if args.xla else [])
    if args.backward:
        variants.append(("crop_and_resize, stock TF gradient", False))
    theirs = torchvision_times(single, pyramid, cases, args)
    header = ("features", "output", *[f"{m}{' (XLA)' if xla else ''} ms" for m, xla in variants])
    if theirs:
        header += ("torchvision ms", "crop_and_resize / torchvision", "gather / torchvision")
    rows = [header]
    for (name, features, boxes, extra), key in zip(cases, ("single", "pyramid")):
        for size in args.sizes:
            row = [name, f"{size}x{size}"]
            times = []
            for method, xla in variants:
                stock = method.endswith("stock TF gradient")
                layer = RoIAlign(size, args.sampling_ratio, method=method.split(",")[0], **extra)
                if args.backward:
                    fn = tf.function(training_step(layer), jit_compile=xla)
                else:
                    fn = tf.function(lambda f, b, layer=layer: layer(f if len(f) > 1 else f[0], b), jit_compile=xla)
                patched = roi_align_ops.crop_and_resize_bilinear
                if stock:
                    roi_align_ops.crop_and_resize_bilinear = stock_crop_and_resize
                try:
                    times.append(median_ms(fn, (features, boxes), args.warmup, args.repeats))
                finally:
                    roi_align_ops.crop_and_resize_bilinear = patched
                row.append(f"{times[-1]:.1f}")
            if theirs:
                reference = theirs[f"{key}_{size}"]
                row += [f"{reference:.1f}", f"{times[0] / reference:.2f}", f"{times[1] / reference:.2f}"]
            rows.append(tuple(row))
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    what = "forward + feature gradient" if args.backward else "forward"
    table(
        f"RoIAlign {what}, {args.rois} RoIs, {args.channels} channels, sampling ratio {args.sampling_ratio}, "
        f"median of {args.repeats} after {args.warmup} warm-up ({threads} threads)",
        rows,
    )
    write_results("roi_align_backward" if args.backward else "roi_align")


if __name__ == "__main__":
    main()
