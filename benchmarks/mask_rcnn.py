"""Mask R-CNN benchmark: inference latency, per-stage timings and peak memory of kzoo's R50-FPN, and the
training step time (batch 2, 512x512) with its peak memory; when torch/torchvision are installed,
torchvision's ``maskrcnn_resnet50_fpn`` on the same images in the same run, and the ratios. Prints tables.

    python benchmarks/mask_rcnn.py                        # 800x800 and 512x512, 100 forced detections and default
    python benchmarks/mask_rcnn.py --sizes 512 --repeats 3 --no-torch
    python benchmarks/mask_rcnn.py --mode train           # training step only
    python benchmarks/mask_rcnn.py --mode train --rounds 3   # kzoo and torchvision alternating three times
    python benchmarks/mask_rcnn.py --mode export          # SavedModel and TFLite variants: size and latency

``--mode export`` runs benchmarks/mask_rcnn_export.py (the light MobileNetV2-FPN at 512x512: file size, export time
and latency of the SavedModel and of each TFLite variant beside the Keras model); its parity on real photographs is
benchmarks/mask_rcnn_export_parity.py.

Training step: both models start from random weights (frozen BatchNorm; the stem and the first residual stage
frozen, each library's default for fine-tuning pretrained weights), the same two generated shapes images with the
same ground truth (boxes, classes, masks), SGD with momentum; the time covers forward, targets, losses, backward
and the update. Each framework's GFLOP per step is its own count: kzoo's from the traced graph, torchvision's from
torch's ``FlopCounterMode`` (also for inference).

``python benchmarks/mask_rcnn.py`` (mode ``both``) is the full side-by-side set: the machine's 4096x4096 matmul
rate (float32, bfloat16), the training step (kzoo float32 and bfloat16 mixed precision, torchvision), inference
at 800x800 and 512x512 (kzoo float32 and bfloat16, torchvision) and kzoo's per-stage time with the stage's
GFLOP (counted from the traced graph) and achieved GFLOP/s against the matmul rate. The results go to
``benchmarks/results/mask_rcnn_<mode>.json`` with the machine, the library versions and the date.

``--rounds N`` runs each group of configurations that are compared (the training step; one image size and
threshold) N times in turn, so that kzoo and torchvision alternate and meet the same drifts of a shared machine;
the tables give the medians and, beside each ratio, the range of the rounds' own ratios.

Every configuration runs in its own subprocess so that its peak resident memory is its own (for inference,
the peak after the whole graph's runs, before the per-stage timings). Latencies are
medians over ``--repeats`` runs after ``--warmup`` runs; all models have random weights (torchvision's
initialization for both), so "forced" (score threshold 0) makes both run the mask branch on 100 detections.
RoIAlign kernels: see benchmarks/roi_align.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from functools import partial

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import matmul_gflops, median_seconds, table, write_results  # noqa: E402


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def graph_gflop_by_op_type(function, *args) -> dict[str, float]:
    """Floating-point operations (GFLOP) of one call of the ``tf.function`` ``function`` on ``args`` by TF op type
    of the traced graph (``Conv2D``, ``Conv2DBackpropFilter``, ``MatMul``, ...), counted by TF's profiler from the
    graph's static shapes."""
    import tensorflow as tf

    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    graph = function.get_concrete_function(*args).graph
    node = tf.compat.v1.profiler.profile(graph, cmd="op", options=options)
    gflop = {}
    while node.children:  # the "op" view chains the op types, each node the child of the previous one
        node = node.children[0]
        gflop[node.name] = node.float_ops / 1e9
    return gflop


def graph_gflop(function, *args) -> float:
    """Floating-point operations (GFLOP) of one call of the ``tf.function`` ``function`` on ``args`` (all op
    types of :func:`graph_gflop_by_op_type`: convolutions, matmuls, element-wise ops)."""
    return sum(graph_gflop_by_op_type(function, *args).values())


def inference_model(size: int, forced: bool = True, backbone: str = "resnet50_fpn", compute_dtype: str = "float32"):
    """kzoo's Mask R-CNN for ``size x size`` images and one random uint8 image ``[1, size, size, 3]``."""
    import numpy as np
    import tensorflow as tf

    from kzoo.applications import MaskRCNN

    threshold = 0.0 if forced else 0.05
    model = MaskRCNN(
        backbone,
        input_shape=(size, size, 3),
        min_size=size,
        max_size=max(size, 1333),
        detection={"score_threshold": threshold},
        compute_dtype=compute_dtype,
    )
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (1, size, size, 3)).astype(np.uint8))
    return model, image


def inference_step(size: int, compute_dtype: str = "float32", backbone: str = "resnet50_fpn"):
    """A function running kzoo's whole inference graph once (mask branch on 100 forced detections), and one
    returning its GFLOP by op type (:func:`graph_gflop_by_op_type`)."""
    import tensorflow as tf

    model, image = inference_model(size, True, backbone, compute_dtype)
    whole = tf.function(model.call)
    return lambda: whole(image)["num_detections"].numpy(), lambda: graph_gflop_by_op_type(whole, image)


def kzoo_case(size: int, forced: bool, repeats: int, warmup: int, backbone: str, compute_dtype: str) -> dict:
    import tensorflow as tf

    model, image = inference_model(size, forced, backbone, compute_dtype)
    whole = tf.function(model.call)
    result = {
        "end_to_end": median_seconds(lambda: whole(image)["num_detections"].numpy(), repeats, warmup),
        "detections": int(whole(image)["num_detections"][0]),
        "stages": {},
    }
    result["peak_rss_mb"] = peak_rss_mb()  # the whole graph's, before the stages below are compiled and run
    result["gflop"] = graph_gflop(whole, image)

    # the stages of MaskRCNNModel.call, each compiled on its own, fed with the previous stage's outputs
    preprocess = tf.function(model.preprocess)
    canvas, image_size = preprocess(image)
    batch_size = tf.tile(image_size[None], [1, 1])
    backbone_fn = tf.function(lambda x: model.backbone(x))
    c = backbone_fn(canvas)
    fpn_fn = tf.function(lambda c: model.fpn([c["C2"], c["C3"], c["C4"], c["C5"]]))
    features = fpn_fn(c)
    propose = tf.function(model.propose)
    proposals = propose(features, batch_size)
    detect = tf.function(model.detect)
    detections = detect(features, proposals, batch_size)
    segment = tf.function(model.segment)
    stages = {
        "preprocess (resize, normalize, pad)": (preprocess, (image,)),
        "backbone": (backbone_fn, (canvas,)),
        "FPN": (fpn_fn, (c,)),
        "RPN head + proposals": (propose, (features, batch_size)),
        "box branch + detections": (detect, (features, proposals, batch_size)),
        "mask branch": (segment, (features, detections["boxes"], detections["classes"])),
    }
    for name, (fn, fn_args) in stages.items():

        def run(fn=fn, fn_args=fn_args):
            return tf.nest.map_structure(lambda t: t.numpy(), fn(*fn_args))

        seconds = median_seconds(run, repeats, 1)
        result["stages"][name] = {"seconds": seconds, "gflop": graph_gflop(fn, *fn_args)}
    return result


def torchvision_case(size: int, forced: bool, repeats: int, warmup: int) -> dict:
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_grad_enabled(False)
    threshold = 0.0 if forced else 0.05
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, box_score_thresh=threshold, min_size=size, max_size=max(size, 1333)
    ).eval()
    image = torch.rand(3, size, size)
    result = {"end_to_end": median_seconds(lambda: model([image]), repeats, warmup)}
    counter = FlopCounterMode(display=False)
    with counter:
        result["detections"] = int(len(model([image])[0]["boxes"]))
    result["gflop"] = counter.get_total_flops() / 1e9
    return result


TRAIN_BATCH = 2


def _train_examples(size: int) -> list[dict]:
    from kzoo.data.shapes import make_shapes_instances

    return make_shapes_instances(TRAIN_BATCH, image_size=size, max_instances=4, seed=7)


def training_step(size: int, compute_dtype: str = "float32", backbone: str = "resnet50_fpn"):
    """A function running one kzoo training step (batch 2 of shapes images, SGD with momentum) and returning
    the total loss; the step of kzoo's training loop (:func:`kzoo.models.training_step.apply_training_step`).
    Also returns a function counting the step's GFLOP (forward, backward and update) by op type from its traced
    graph."""
    import tensorflow as tf

    from kzoo.applications import MaskRCNN
    from kzoo.data.detection_pipeline import make_detection_pipeline
    from kzoo.models.training_step import apply_training_step
    from kzoo.training.optimizers import SGD

    model = MaskRCNN(
        backbone, num_classes=4, input_shape=(size, size, 3), min_size=size, max_size=size, compute_dtype=compute_dtype
    )
    batch = next(
        iter(
            make_detection_pipeline(
                _train_examples(size), TRAIN_BATCH, training=False, image_size=size, max_instances=8, mask_size=56
            )
        )
    )
    optimizer = SGD(0.01, momentum=0.9)  # the optimizer of kzoo's training loop (in-place momentum step)

    @tf.function
    def step(batch):
        return apply_training_step(model, batch, optimizer)["total"]

    return lambda: step(batch).numpy(), lambda: graph_gflop_by_op_type(step, batch)


def kzoo_train_case(size: int, repeats: int, warmup: int, backbone: str, compute_dtype: str) -> dict:
    step, gflop_by_op_type = training_step(size, compute_dtype, backbone)
    result = {"step": median_seconds(step, repeats, warmup), "peak_rss_mb": peak_rss_mb()}
    result["gflop"] = sum(gflop_by_op_type().values())  # after the peak RSS: counting traces the graph again
    return result


def torchvision_train_case(size: int, repeats: int, warmup: int) -> dict:
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=4, min_size=size, max_size=size
    ).train()
    # Without pretrained weights torchvision trains the whole backbone; freeze the stem and layer1 as it does by
    # default with them (trainable_backbone_layers=3), the stages kzoo's default freezes.
    for name, parameter in model.backbone.body.named_parameters():
        if not name.startswith(("layer2", "layer3", "layer4")):
            parameter.requires_grad_(False)
    images, targets = [], []
    for example in _train_examples(size):
        images.append(torch.from_numpy(example["image"]).permute(2, 0, 1).float() / 255.0)
        boxes = torch.from_numpy(example["boxes"][:, [1, 0, 3, 2]].copy()).float()  # yxyx -> xyxy
        targets.append(
            {
                "boxes": boxes,
                "labels": torch.from_numpy(example["classes"]).long(),
                "masks": torch.from_numpy(example["masks"].astype("uint8")),
            }
        )
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)

    def step():
        losses = model(images, targets)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        return float(total)

    result = {"step": median_seconds(step, repeats, warmup), "peak_rss_mb": peak_rss_mb()}
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    result["gflop"] = counter.get_total_flops() / 1e9
    return result


def run_single(args) -> None:
    if args.matmul:
        result = {dtype: matmul_gflops(dtype) for dtype in ("float32", "bfloat16")}
    elif args.train:
        if args.framework == "kzoo":
            result = kzoo_train_case(args.size, args.repeats, args.warmup, args.backbone, args.compute_dtype)
        else:
            result = torchvision_train_case(args.size, args.repeats, args.warmup)
    elif args.framework == "kzoo":
        result = kzoo_case(args.size, args.forced, args.repeats, args.warmup, args.backbone, args.compute_dtype)
    else:
        result = torchvision_case(args.size, args.forced, args.repeats, args.warmup)
    result.setdefault("peak_rss_mb", peak_rss_mb())
    print("RESULT " + json.dumps(result))


def spawn(
    framework: str, size: int, forced: bool, args, train: bool = False, dtype: str = "float32", matmul: bool = False
) -> dict | None:
    """Run one configuration in a fresh Python (its own peak RSS); its result dict, or None when it failed."""
    command = [
        sys.executable,
        __file__,
        "--single",
        "--framework",
        framework,
        "--size",
        str(size),
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        "--backbone",
        args.backbone,
        "--compute-dtype",
        dtype,
    ]
    command += ["--forced"] if forced else []
    command += ["--train"] if train else []
    command += ["--matmul"] if matmul else []
    done = subprocess.run(command, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    print(f"{framework} {size} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
    return None


def _median_result(results: list[dict]) -> dict | None:
    """One result from several rounds' results of a configuration: the median of every number, the first
    round's value of anything else."""
    if not results:
        return None

    def merge(values: list):
        if isinstance(values[0], dict):
            return {key: merge([v[key] for v in values if key in v]) for key in values[0]}
        if isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
            return statistics.median(values)
        return values[0]

    return merge(results)


def alternate(runs: dict, rounds: int) -> tuple[dict, dict]:
    """Run every configuration of ``runs`` (name -> function returning a result dict or None) once per round,
    in order, for ``rounds`` rounds, so that kzoo and torchvision alternate and meet the same drifts of a shared
    machine. Returns the median result of each configuration over its rounds and the per-round results."""
    per_round: dict = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            per_round[name].append(run())
    merged = {name: _median_result([r for r in results if r]) for name, results in per_round.items()}
    return merged, per_round


def _ratio(ours: dict | None, theirs: dict | None, key: str, ours_rounds=(), theirs_rounds=()) -> str:
    """``ours[key] / theirs[key]``; with several rounds, also the range of the rounds' own ratios."""
    if not (ours and theirs):
        return "-"
    text = f"{ours[key] / theirs[key]:.2f}"
    ratios = [o[key] / t[key] for o, t in zip(ours_rounds, theirs_rounds) if o and t]
    return text + (f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else "")


def train_table(args, with_torch: bool, matmul: dict | None) -> dict:
    """The training step of kzoo (each compute dtype) and torchvision, side by side."""
    runs = {
        f"kzoo_{dtype}": partial(spawn, "kzoo", args.train_size, False, args, train=True, dtype=dtype)
        for dtype in args.compute_dtypes
    }
    if with_torch:
        runs["torchvision"] = partial(spawn, "torchvision", args.train_size, False, args, train=True)
    results, rounds = alternate(runs, args.rounds)
    theirs, theirs_rounds = results.get("torchvision"), rounds.get("torchvision", [])
    rows = [
        (
            "framework",
            "step (s)",
            "images/s",
            "peak RSS (MB)",
            "step / torchvision",
            "RSS / torchvision",
            "GFLOP",
            "GFLOP/s (of matmul rate)",
        )
    ]
    for name, result in results.items():
        if result is None:
            continue
        # each framework's own count: kzoo's from its traced graph, torchvision's from torch's FlopCounterMode
        dtype = "bfloat16" if name.endswith("bfloat16") else "float32"
        share = _share_of_matmul(result["gflop"], result["step"], dtype, matmul)
        rate = f"{result['gflop'] / result['step']:.0f} ({share})"
        rows.append(
            (
                name.replace("_", " "),
                f"{result['step']:.3f}",
                f"{TRAIN_BATCH / result['step']:.2f}",
                f"{result['peak_rss_mb']:.0f}",
                _ratio(result, theirs, "step", rounds[name], theirs_rounds),
                _ratio(result, theirs, "peak_rss_mb", rounds[name], theirs_rounds),
                f"{result['gflop']:.0f}",
                rate,
            )
        )
    title = f"Mask R-CNN training step, batch {TRAIN_BATCH}, {args.train_size}x{args.train_size}"
    table(title + (f"; medians of {args.rounds} alternating rounds" if args.rounds > 1 else ""), rows)
    return {**results, "rounds": rounds}


def _share_of_matmul(gflop: float, seconds: float, dtype: str, matmul: dict | None) -> str:
    """``gflop`` done in ``seconds`` as a share of the machine's matmul rate in ``dtype`` ("-" when unmeasured)."""
    return f"{100 * gflop / seconds / matmul[dtype]:.0f}%" if matmul else "-"


def inference_tables(args, with_torch: bool, matmul: dict | None) -> dict:
    """Inference latency and peak memory of kzoo (each compute dtype) and torchvision, and kzoo's stages."""
    rows = [
        (
            "image",
            "mask branch on",
            "kzoo dtype",
            "kzoo (s)",
            "detections",
            "peak RSS (MB)",
            "torchvision (s)",
            "torchvision RSS (MB)",
            "time ratio",
            "RSS ratio",
            "GFLOP kzoo / tv",
            "of matmul rate kzoo / tv",
        )
    ]
    stage_rows = [("image", "dtype", "stage", "ms", "GFLOP", "GFLOP/s", "of matmul rate")]
    results = {}
    for size in args.sizes:
        for forced in (True, False):
            label = "100 (threshold 0)" if forced else "default threshold 0.05"
            key = f"{size}_{'forced' if forced else 'default'}"
            runs = {f"{key}_torchvision": partial(spawn, "torchvision", size, forced, args)} if with_torch else {}
            for dtype in args.compute_dtypes:
                runs[f"{key}_kzoo_{dtype}"] = partial(spawn, "kzoo", size, forced, args, dtype=dtype)
            group, group_rounds = alternate(runs, args.rounds)
            results.update(group)
            results.setdefault("rounds", {}).update(group_rounds)
            theirs, theirs_rounds = group.get(f"{key}_torchvision"), group_rounds.get(f"{key}_torchvision", [])
            for dtype in args.compute_dtypes:
                ours, ours_rounds = group[f"{key}_kzoo_{dtype}"], group_rounds[f"{key}_kzoo_{dtype}"]
                if ours is None:
                    continue
                rows.append(
                    (
                        f"{size}x{size}",
                        label,
                        dtype,
                        f"{ours['end_to_end']:.3f}",
                        f"{ours['detections']:.0f}",
                        f"{ours['peak_rss_mb']:.0f}",
                        f"{theirs['end_to_end']:.3f}" if theirs else "-",
                        f"{theirs['peak_rss_mb']:.0f}" if theirs else "-",
                        _ratio(ours, theirs, "end_to_end", ours_rounds, theirs_rounds),
                        _ratio(ours, theirs, "peak_rss_mb", ours_rounds, theirs_rounds),
                        f"{ours['gflop']:.0f} / {theirs['gflop']:.0f}" if theirs else f"{ours['gflop']:.0f}",
                        " / ".join(
                            _share_of_matmul(r["gflop"], r["end_to_end"], dtype_, matmul)
                            for r, dtype_ in ((ours, dtype), (theirs, "float32"))
                            if r
                        ),
                    )
                )
                if not forced:
                    continue
                for name, stage in ours["stages"].items():
                    stage_rows.append(
                        (
                            f"{size}x{size}",
                            dtype,
                            name,
                            f"{1000 * stage['seconds']:.0f}",
                            f"{stage['gflop']:.1f}",
                            f"{stage['gflop'] / stage['seconds']:.0f}",
                            _share_of_matmul(stage["gflop"], stage["seconds"], dtype, matmul),
                        )
                    )
    rounds = f"; medians of {args.rounds} alternating rounds" if args.rounds > 1 else ""
    table(f"Mask R-CNN inference latency, batch 1 (random weights){rounds}", rows)
    matmul_note = ", ".join(f"{d} {r:.0f} GFLOP/s" for d, r in (matmul or {}).items() if d != "peak_rss_mb")
    table(
        f"kzoo per-stage time and FLOP rate (each stage compiled alone; mask branch on 100 detections); "
        f"4096x4096 matmul: {matmul_note or '-'}",
        stage_rows,
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[800, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run each group of configurations this many times, alternating kzoo and torchvision; "
        "medians, and the range of the rounds' ratios",
    )
    parser.add_argument("--backbone", default="resnet50_fpn")
    parser.add_argument("--no-torch", action="store_true", help="skip torchvision even if it is installed")
    parser.add_argument("--mode", choices=["inference", "train", "both", "export"], default="both")
    parser.add_argument(
        "--compute-dtypes",
        nargs="+",
        choices=["float32", "bfloat16"],
        default=["float32", "bfloat16"],
        help="kzoo's model.compute_dtype (inference and training)",
    )
    parser.add_argument("--compute-dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--train-size", type=int, default=512, help="training step image side")
    parser.add_argument("--output", help="results JSON (default benchmarks/results/mask_rcnn_<mode>.json)")
    parser.add_argument("--train", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--matmul", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--framework", default="kzoo", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=800, help=argparse.SUPPRESS)
    parser.add_argument("--forced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.single:
        run_single(args)
        return
    if args.mode == "export":
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mask_rcnn_export.py")
        subprocess.run([sys.executable, script, "--repeats", str(args.repeats)], check=True)
        return
    try:
        import torchvision  # noqa: F401

        with_torch = not args.no_torch
    except ImportError:
        with_torch = False
    print(
        f"{os.cpu_count()} CPU cores; {args.backbone}; median of {args.repeats} after {args.warmup} warm-up runs"
        + ("" if with_torch else "; torchvision not installed: no comparison")
    )
    matmul = spawn("kzoo", 0, False, args, matmul=True)
    results = {
        "matmul_gflops": matmul,
        "settings": {
            "repeats": args.repeats,
            "warmup": args.warmup,
            "backbone": args.backbone,
            "train_size": args.train_size,
            "train_batch": TRAIN_BATCH,
            "sizes": args.sizes,
        },
    }
    if args.mode in ("train", "both"):
        results["train"] = train_table(args, with_torch, matmul)
    if args.mode in ("inference", "both"):
        results["inference"] = inference_tables(args, with_torch, matmul)
    write_results(f"mask_rcnn_{args.mode}", results, args.output)


if __name__ == "__main__":
    main()
