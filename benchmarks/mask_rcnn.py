"""Mask R-CNN benchmark: inference latency, per-stage timings and peak memory of kzoo's R50-FPN, and the
training step time (batch 2, 512x512) with its peak memory; when torch/torchvision are installed,
torchvision's ``maskrcnn_resnet50_fpn`` on the same images in the same run, and the ratios. Prints tables.

    python benchmarks/mask_rcnn.py                        # 800x800 and 512x512, 100 forced detections and default
    python benchmarks/mask_rcnn.py --sizes 512 --repeats 3 --no-torch
    python benchmarks/mask_rcnn.py --mode train           # training step only
    python benchmarks/mask_rcnn.py --mode export          # SavedModel and TFLite variants: size and latency

``--mode export`` runs benchmarks/mask_rcnn_export.py (the light MobileNetV2-FPN at 512x512: file size, export time
and latency of the SavedModel and of each TFLite variant beside the Keras model); its parity on real photographs is
benchmarks/mask_rcnn_export_parity.py.

Training step: both models start from random weights (frozen BatchNorm, first stages frozen as in each
library's default), the same two generated shapes images with the same ground truth (boxes, classes, masks),
SGD with momentum; the time covers forward, targets, losses, backward and the update.

Every configuration runs in its own subprocess so that its peak resident memory is its own. Latencies are
medians over ``--repeats`` runs after ``--warmup`` runs; all models have random weights (torchvision's
initialization for both), so "forced" (score threshold 0) makes both run the mask branch on 100 detections.
RoIAlign kernels: see benchmarks/roi_align.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import median_seconds, table  # noqa: E402


def kzoo_case(size: int, forced: bool, repeats: int, warmup: int, backbone: str, compute_dtype: str) -> dict:
    import numpy as np
    import tensorflow as tf

    from kzoo.applications import MaskRCNN

    threshold = 0.0 if forced else 0.05
    model = MaskRCNN(backbone, input_shape=(size, size, 3), min_size=size, max_size=max(size, 1333),
                     score_threshold=threshold, compute_dtype=compute_dtype)  # fmt: skip
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (1, size, size, 3)).astype(np.uint8))
    whole = tf.function(model.call)

    # the stages of MaskRCNNModel.call, each compiled on its own, fed with the previous stage's outputs
    preprocess = tf.function(model.preprocess)
    canvas, image_size = preprocess(image)
    backbone_fn = tf.function(lambda x: model.backbone(x))
    c = backbone_fn(canvas)
    fpn_fn = tf.function(lambda c: model.fpn([c["C2"], c["C3"], c["C4"], c["C5"]]))
    features = fpn_fn(c)
    propose = tf.function(model.propose)
    proposals = propose(features, image_size)
    detect = tf.function(model.detect)
    detections = detect(features, proposals, image_size)
    segment = tf.function(model.segment)
    stages = {
        "preprocess (resize, normalize, pad)": lambda: preprocess(image),
        "backbone": lambda: backbone_fn(canvas),
        "FPN": lambda: fpn_fn(c),
        "RPN head + proposals": lambda: propose(features, image_size),
        "box branch + detections": lambda: detect(features, proposals, image_size),
        "mask branch": lambda: segment(features, detections["boxes"], detections["classes"]),
    }
    result = {"end_to_end": median_seconds(lambda: whole(image)["num_detections"].numpy(), repeats, warmup)}
    for name, fn in stages.items():
        result[name] = median_seconds(lambda fn=fn: tf.nest.map_structure(lambda t: t.numpy(), fn()), repeats, 1)
    result["detections"] = int(whole(image)["num_detections"][0])
    return result


def torchvision_case(size: int, forced: bool, repeats: int, warmup: int) -> dict:
    import torch
    import torchvision

    torch.set_grad_enabled(False)
    threshold = 0.0 if forced else 0.05
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, box_score_thresh=threshold, min_size=size, max_size=max(size, 1333)
    ).eval()
    image = torch.rand(3, size, size)
    result = {"end_to_end": median_seconds(lambda: model([image]), repeats, warmup)}
    result["detections"] = int(len(model([image])[0]["boxes"]))
    return result


TRAIN_BATCH = 2


def _train_examples(size: int) -> list[dict]:
    from kzoo.data.shapes import make_shapes_instances

    return make_shapes_instances(TRAIN_BATCH, image_size=size, max_instances=4, seed=7)


def kzoo_train_case(size: int, repeats: int, warmup: int, backbone: str) -> dict:
    import keras
    import tensorflow as tf

    from kzoo.applications import MaskRCNN
    from kzoo.data.detection import make_detection_pipeline

    model = MaskRCNN(backbone, num_classes=4, min_size=size, max_size=size)
    model(tf.zeros([1, size, size, 3]))
    batch = next(iter(make_detection_pipeline(_train_examples(size), TRAIN_BATCH, training=False, image_size=size,
                                              max_instances=8, mask_size=56)))  # fmt: skip
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            losses = model.training_losses(batch)
        gradients = tape.gradient(losses["total"], model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return losses["total"]

    return {"step": median_seconds(lambda: step(batch).numpy(), repeats, warmup)}


def torchvision_train_case(size: int, repeats: int, warmup: int) -> dict:
    import torch
    import torchvision

    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=4, min_size=size, max_size=size
    ).train()
    images, targets = [], []
    for example in _train_examples(size):
        images.append(torch.from_numpy(example["image"]).permute(2, 0, 1).float() / 255.0)
        boxes = torch.from_numpy(example["boxes"][:, [1, 0, 3, 2]].copy()).float()  # yxyx -> xyxy
        targets.append({"boxes": boxes, "labels": torch.from_numpy(example["classes"]).long(),
                        "masks": torch.from_numpy(example["masks"].astype("uint8"))})  # fmt: skip
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)

    def step():
        losses = model(images, targets)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        return float(total)

    return {"step": median_seconds(step, repeats, warmup)}


def run_single(args) -> None:
    if args.train:
        case = kzoo_train_case if args.framework == "kzoo" else torchvision_train_case
    else:
        case = kzoo_case if args.framework == "kzoo" else torchvision_case
    kwargs = {"backbone": args.backbone} if args.framework == "kzoo" else {}
    if args.train:
        result = case(args.size, args.repeats, args.warmup, **kwargs)
    else:
        kwargs.update({"compute_dtype": args.compute_dtype} if args.framework == "kzoo" else {})
        result = case(args.size, args.forced, args.repeats, args.warmup, **kwargs)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def spawn(framework: str, size: int, forced: bool, args, train: bool = False, dtype: str = "float32") -> dict | None:
    command = [sys.executable, __file__, "--single", "--framework", framework, "--size", str(size),
               "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--backbone", args.backbone,
               "--compute-dtype", dtype]
    command += ["--forced"] if forced else []
    command += ["--train"] if train else []  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    print(f"{framework} {size} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[800, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--backbone", default="resnet50_fpn")
    parser.add_argument("--no-torch", action="store_true", help="skip torchvision even if it is installed")
    parser.add_argument("--mode", choices=["inference", "train", "both", "export"], default="both")
    parser.add_argument("--compute-dtypes", nargs="+", choices=["float32", "bfloat16"], default=["float32", "bfloat16"],
                        help="kzoo's model.compute_dtype for inference")  # fmt: skip
    parser.add_argument("--compute-dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--train-size", type=int, default=512, help="training step image side")
    parser.add_argument("--train", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--framework", default="kzoo", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=800, help=argparse.SUPPRESS)
    parser.add_argument("--forced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
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
    print(f"{os.cpu_count()} CPU cores; {args.backbone}; median of {args.repeats} after {args.warmup} warm-up runs"
          + ("" if with_torch else "; torchvision not installed: no comparison"))  # fmt: skip
    if args.mode in ("train", "both"):
        ours = spawn("kzoo", args.train_size, False, args, train=True)
        theirs = spawn("torchvision", args.train_size, False, args, train=True) if with_torch else None
        if ours is not None:
            table(f"Mask R-CNN training step, batch {TRAIN_BATCH}, {args.train_size}x{args.train_size}", [
                ("framework", "step (s)", "images/s", "peak RSS (MB)", "kzoo / torchvision"),
                ("kzoo", f"{ours['step']:.3f}", f"{TRAIN_BATCH / ours['step']:.2f}", f"{ours['peak_rss_mb']:.0f}",
                 f"{ours['step'] / theirs['step']:.2f}" if theirs else "-"),
                *([("torchvision", f"{theirs['step']:.3f}", f"{TRAIN_BATCH / theirs['step']:.2f}",
                    f"{theirs['peak_rss_mb']:.0f}", "")] if theirs else []),
            ])  # fmt: skip
    if args.mode == "train":
        return
    rows = [("image", "mask branch on", "kzoo dtype", "kzoo (s)", "detections", "peak RSS (MB)", "torchvision (s)",
             "torchvision RSS (MB)", "kzoo / torchvision")]  # fmt: skip
    stage_rows = []
    for size in args.sizes:
        for forced in (True, False):
            theirs = spawn("torchvision", size, forced, args) if with_torch else None
            label = "100 (threshold 0)" if forced else "default threshold 0.05"
            for dtype in args.compute_dtypes:
                ours = spawn("kzoo", size, forced, args, dtype=dtype)
                if ours is None:
                    continue
                rows.append((
                    f"{size}x{size}", label, dtype, f"{ours['end_to_end']:.3f}", ours["detections"],
                    f"{ours['peak_rss_mb']:.0f}", f"{theirs['end_to_end']:.3f}" if theirs else "-",
                    f"{theirs['peak_rss_mb']:.0f}" if theirs else "-",
                    f"{ours['end_to_end'] / theirs['end_to_end']:.2f}" if theirs else "-",
                ))  # fmt: skip
                if forced:
                    stages = [name for name in ours if name not in ("end_to_end", "detections", "peak_rss_mb")]
                    stage_rows += [(f"{size}x{size}", dtype, name, f"{1000 * ours[name]:.0f}") for name in stages]
    table("Mask R-CNN inference latency, batch 1 (random weights)", rows)
    table("kzoo per-stage time (each stage compiled alone; mask branch on 100 detections)",
          [("image", "dtype", "stage", "ms")] + stage_rows)  # fmt: skip


if __name__ == "__main__":
    main()
