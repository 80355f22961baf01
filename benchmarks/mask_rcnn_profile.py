"""Per-op profile of kzoo's Mask R-CNN training step (or inference) with TensorFlow's profiler.

Runs the step of benchmarks/mask_rcnn.py (R50-FPN, batch 2, 512x512, random weights) under
``tf.profiler.experimental``, reads the trace (XPlane) and sums the host time of each op type and of each op
name; prints the top entries and writes them as JSON (benchmarks/results/mask_rcnn_profile_<mode>.json).
Times are summed over all threads, so they add up to more than the wall time when TF runs independent ops at
the same time; ``--inter-op-threads 1`` runs one op at a time, so that each op's time is its own and the times
add up to the wall time.

For the R50-FPN step, a second table puts the time of each op family (forward convolutions, the two
convolution gradients, matmuls, the rest) beside its GFLOP counted from the traced graph, its achieved
GFLOP/s and that rate as a share of this machine's 4096x4096 matmul rate, measured in the same process.

    python benchmarks/mask_rcnn_profile.py                  # training step, float32
    python benchmarks/mask_rcnn_profile.py --inter-op-threads 1   # each op's own time, and the families' rates
    python benchmarks/mask_rcnn_profile.py --mode inference --size 800
    python benchmarks/mask_rcnn_profile.py --config configs/mask_rcnn_shapes.yaml --steps 20   # a config's step
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import matmul_gflops, table, write_results  # noqa: E402


def _events(logdir: str):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as handle:
        space.ParseFromString(handle.read())
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for event in line.events:
                name, _, op_type = plane.event_metadata[event.metadata_id].name.rpartition(":")
                # TF op events are named "<op name>:<op type>"; runtime events ("Executor::Process") are not
                if name and not name.endswith(":") and op_type.isidentifier():
                    yield name, op_type, event.duration_ps / 1e12


def profile(step, steps: int) -> tuple[dict, dict, float]:
    """Run ``step()`` ``steps`` times under the profiler; seconds per step by op type and by op name."""
    import time

    import tensorflow as tf

    logdir = tempfile.mkdtemp(prefix="kzoo_profile_")
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    wall = (time.perf_counter() - start) / steps
    tf.profiler.experimental.stop()
    by_type: dict = collections.Counter()
    by_name: dict = collections.Counter()
    for name, op_type, seconds in _events(logdir):
        by_type[op_type] += seconds / steps
        by_name[f"{name} ({op_type})"] += seconds / steps
    return dict(by_type), dict(by_name), wall


def op_family(op_type: str) -> str:
    """The TF op type behind an op as the graph names it or as it runs (oneDNN's rewrites such as
    ``_MklNativeFusedConv2D`` or ``_MklNativeConv2DBackpropFilterWithBias``): ``Conv2D``, ``Conv2DBackpropInput``
    (also the forward pass of a transposed convolution), ``Conv2DBackpropFilter``, ``MatMul`` (dense), else
    ``other`` (``SparseTensorDenseMatMul``, RoIAlign's feature gradient, among them)."""
    if op_type.startswith("Sparse"):
        return "other"
    for family in ("Conv2DBackpropFilter", "Conv2DBackpropInput", "Conv2D", "MatMul"):
        if family in op_type:
            return family
    return "other"


def family_rates(by_type: dict, gflop_by_type: dict, matmul_rate: float) -> list[dict]:
    """Seconds per step, GFLOP, GFLOP/s and share of the matmul rate of each :func:`op_family`."""
    seconds: dict = collections.Counter()
    gflop: dict = collections.Counter()
    for op_type, value in by_type.items():
        seconds[op_family(op_type)] += value
    for op_type, value in gflop_by_type.items():
        gflop[op_family(op_type)] += value
    rows = []
    for family in ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "MatMul", "other"):
        rate = gflop[family] / seconds[family] if seconds[family] else 0.0
        rows.append(
            {
                "family": family,
                "seconds": seconds[family],
                "gflop": gflop[family],
                "gflops": rate,
                "of_matmul_rate": rate / matmul_rate,
            }
        )
    return rows


def config_training_step(path: str):
    """One training step of the config at ``path``: its model, data, optimizer and step, as kzoo's loop builds
    them."""
    import keras
    import tensorflow as tf

    from kzoo.config import load_config
    from kzoo.tasks import task_for
    from kzoo.training.loop import build_optimizer

    config = load_config(path)
    task = task_for(config)
    strategy = tf.distribute.get_strategy()
    keras.utils.set_random_seed(config.train.seed)
    dataset, steps_per_epoch = task.training_data(config.train.batch_size)
    model = task.build_model()
    optimizer = build_optimizer(config.train, steps_per_epoch)
    task.set_trainable(model, "all")
    optimizer.build(model.trainable_variables)
    train_step = task.make_train_step(model, optimizer, strategy, config.train.batch_size)
    iterator = iter(dataset.repeat())
    return lambda: train_step(iterator).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["train", "inference"], default="train")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--compute-dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--config", help="profile this training config's step instead (as kzoo's loop runs it)")
    parser.add_argument("--inter-op-threads", type=int, help="TF's inter-op threads (1: one op at a time)")
    args = parser.parse_args()
    if args.inter_op_threads:
        import tensorflow as tf

        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)

    gflop_by_type = None
    if args.config:
        step = config_training_step(args.config)
        args.mode, args.size = "train", os.path.splitext(os.path.basename(args.config))[0]
    else:
        from mask_rcnn import inference_step, training_step

        make_step = training_step if args.mode == "train" else inference_step
        step, count_gflop = make_step(args.size, compute_dtype=args.compute_dtype)
        gflop_by_type = count_gflop()
    matmul_rate = matmul_gflops(args.compute_dtype)
    step()  # trace and warm up
    by_type, by_name, wall = profile(step, args.steps)
    total = sum(by_type.values())
    top_types = sorted(by_type.items(), key=lambda item: -item[1])[: args.top]
    top_names = sorted(by_name.items(), key=lambda item: -item[1])[: args.top]
    title = f"Mask R-CNN {args.mode}, {args.size}, {args.compute_dtype}: wall {wall:.2f} s per step"
    table(
        title + f"; op time summed over threads {total:.2f} s",
        [("op type", "s / step", "share")]
        + [(op, f"{seconds:.3f}", f"{100 * seconds / total:.1f}%") for op, seconds in top_types],
    )
    table("top ops by name", [("op", "s / step")] + [(op[-90:], f"{seconds:.3f}") for op, seconds in top_names])
    families = family_rates(by_type, gflop_by_type, matmul_rate) if gflop_by_type else None
    if families:
        table(
            f"op families: time, GFLOP of the traced graph, rate; {args.compute_dtype} 4096x4096 matmul "
            f"{matmul_rate:.0f} GFLOP/s",
            [("family", "s / step", "GFLOP", "GFLOP/s", "of matmul rate")]
            + [
                (
                    f["family"],
                    f"{f['seconds']:.3f}",
                    f"{f['gflop']:.1f}",
                    f"{f['gflops']:.0f}",
                    f"{100 * f['of_matmul_rate']:.0f}%",
                )
                for f in families
            ],
        )
    suffix = f"_inter{args.inter_op_threads}" if args.inter_op_threads else ""
    write_results(
        f"mask_rcnn_profile_{args.mode}_{args.size}_{args.compute_dtype}{suffix}",
        {
            "mode": args.mode,
            "size": args.size,
            "compute_dtype": args.compute_dtype,
            "wall_seconds": wall,
            "inter_op_threads": args.inter_op_threads,
            "matmul_gflops": matmul_rate,
            "op_seconds_total": total,
            "by_type": dict(top_types),
            "by_name": dict(top_names),
            "families": families,
        },
    )


if __name__ == "__main__":
    main()
