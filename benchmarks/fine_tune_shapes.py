"""Transfer beats scratch: a Mask R-CNN pre-trained on the built-in shapes (circles, squares, triangles) fine-tuned on
a held-out shapes set whose classes the pre-training never saw (crosses and rings), 50 training images.

Three runs of the same number of steps on the same 50 images, COCO AP on 200 held-out images of crosses and rings:
from scratch, from the pre-trained weights training only the heads (``trainable_layers: heads``), and from them
training everything (``all``). The pre-training is ``configs/mask_rcnn_shapes.yaml`` (the demo's config) unless
``--pretrained FILE`` gives its weights. Every run resumes from its output folder, so a killed benchmark goes on.

    python benchmarks/fine_tune_shapes.py                      # about 15 minutes on 2 CPU cores
    python benchmarks/fine_tune_shapes.py --pretrained runs/demo/mask_rcnn_shapes/model.weights.h5

Prints a table and writes ``benchmarks/results/fine_tune_shapes.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import table, write_results  # noqa: E402

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "mask_rcnn_shapes.yaml")
HELD_OUT = ["cross", "ring"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", help="weights of the shapes model (default: train configs/mask_rcnn_shapes)")
    parser.add_argument("--output", default="runs/fine_tune_shapes")
    parser.add_argument("--train-images", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=20, help="epochs of each fine-tuning run")
    args = parser.parse_args()

    from kzoo.config import load_config
    from kzoo.tasks import train

    started = time.perf_counter()
    pretrained = args.pretrained
    if not pretrained:
        config = load_config(CONFIG, [f"output_dir={os.path.join(args.output, 'pretrain')}"])
        train(config, verbose=2)
        pretrained = os.path.join(config.output_dir, "model.weights.h5")
    pretrain_seconds = time.perf_counter() - started

    results = {}
    for name, init, layers in (("scratch", None, "all"), ("heads", pretrained, "heads"), ("all", pretrained, "all")):
        overrides = [
            f"output_dir={os.path.join(args.output, name)}",
            f"name=held_out_{name}",
            f"data.shapes_classes={json.dumps(HELD_OUT)}",
            f"model.num_classes={len(HELD_OUT) + 1}",
            f"data.train_examples={args.train_images}",
            "data.eval_examples=200",
            f"train.epochs={args.epochs}",
            f"train.step_epochs=[{int(args.epochs * 0.75)}]",
            "train.warmup_epochs=1",
            "train.seed=7",
            f"train.trainable_layers={layers}",
            f"model.init_weights={json.dumps(init)}",
        ]
        run_started = time.perf_counter()
        metrics = train(load_config(CONFIG, overrides), verbose=2)
        results[name] = {key: metrics[f"eval_{key}"] for key in ("bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50")}
        results[name]["seconds"] = time.perf_counter() - run_started
        results[name]["steps"] = args.epochs * (args.train_images // metrics["global_batch_size"])

    rows = [("start", "trained", "steps", "bbox AP", "bbox AP50", "segm AP", "segm AP50", "seconds")]
    for name, label in (("scratch", "random"), ("heads", "pre-trained"), ("all", "pre-trained")):
        r = results[name]
        rows.append(
            (
                label,
                name if name != "scratch" else "all",
                r["steps"],
                f"{r['bbox_AP']:.3f}",
                f"{r['bbox_AP50']:.3f}",
                f"{r['segm_AP']:.3f}",
                f"{r['segm_AP50']:.3f}",
                f"{r['seconds']:.0f}",
            )
        )
    table(f"Fine-tuning on {args.train_images} images of unseen classes ({', '.join(HELD_OUT)}), COCO AP on 200", rows)
    write_results(
        "fine_tune_shapes",
        {
            "pretrained": pretrained,
            "pretrain_seconds": pretrain_seconds if not args.pretrained else None,
            "train_images": args.train_images,
            "epochs": args.epochs,
            "held_out_classes": HELD_OUT,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
