"""Per-op profile of kzoo's Mask R-CNN training step (or inference) with TensorFlow's profiler.

Runs the step of benchmarks/mask_rcnn.py (R50-FPN, batch 2, 512x512, random weights) under
``tf.profiler.experimental``, reads the trace (XPlane) and sums the host time of each op type and of each op
name; prints the top entries and writes them as JSON (benchmarks/results/mask_rcnn_profile_<mode>.json).
Times are summed over all threads, so they add up to more than the wall time on several cores.

    python benchmarks/mask_rcnn_profile.py                  # training step, float32
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

from common import table, write_results  # noqa: E402


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
    args = parser.parse_args()

    if args.config:
        step = config_training_step(args.config)
        args.mode, args.size = "train", os.path.splitext(os.path.basename(args.config))[0]
    else:
        from mask_rcnn import inference_step, training_step

        if args.mode == "train":
            step, _ = training_step(args.size, compute_dtype=args.compute_dtype)
        else:
            step = inference_step(args.size, compute_dtype=args.compute_dtype)
    step()  # trace and warm up
    by_type, by_name, wall = profile(step, args.steps)
    total = sum(by_type.values())
    top_types = sorted(by_type.items(), key=lambda item: -item[1])[: args.top]
    top_names = sorted(by_name.items(), key=lambda item: -item[1])[: args.top]
    title = f"Mask R-CNN {args.mode}, {args.size}, {args.compute_dtype}: wall {wall:.2f} s per step"
    table(title + f"; op time summed over threads {total:.2f} s", [("op type", "s / step", "share")] + [
        (op, f"{seconds:.3f}", f"{100 * seconds / total:.1f}%") for op, seconds in top_types
    ])  # fmt: skip
    table("top ops by name", [("op", "s / step")] + [(op[-90:], f"{seconds:.3f}") for op, seconds in top_names])
    write_results(f"mask_rcnn_profile_{args.mode}_{args.size}_{args.compute_dtype}", {
        "mode": args.mode, "size": args.size, "compute_dtype": args.compute_dtype, "wall_seconds": wall,
        "op_seconds_total": total, "by_type": dict(top_types), "by_name": dict(top_names),
    })  # fmt: skip


if __name__ == "__main__":
    main()
