"""Mask R-CNN training-pipeline throughput (images/s), without and with augmentation.

    python benchmarks/detection_pipeline.py                  # shapes demo, and Penn-Fudan when its data is there
    python benchmarks/detection_pipeline.py --batches 50 --output /tmp/pipeline.json

Each case builds ``kzoo.data.detection_pipeline.make_detection_pipeline`` as training does (the config's canvas, batch
size, ``max_instances``, ``mask_size``; sources from ``kzoo.tasks.instance_segmentation.load_detection_data``), runs
``--warmup`` batches, then times ``--batches`` batches. "augmented" adds scale jitter [0.5, 2.0], the horizontal
flip, brightness / contrast / saturation 0.2 and hue 0.05 ("plain" keeps the flip off too). Configs:
``configs/mask_rcnn_shapes.yaml`` (128 x 128 canvas, batch 4, mask_size 28; ``--shapes-examples`` generated
images) and ``configs/mask_rcnn_penn_fudan.yaml`` (320 canvas, PNG files decoded in the pipeline; skipped when
``../shared/data/PennFudanPed`` is missing). Prints a table and writes a JSON file (machine, TF version, date,
figures), by default ``benchmarks/results/detection_pipeline.json`` (not committed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import table, write_results  # noqa: E402

from kzoo.config import load_config  # noqa: E402
from kzoo.data.detection_pipeline import make_detection_pipeline  # noqa: E402
from kzoo.tasks.instance_segmentation import canvas_size, load_detection_data  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUGMENTATION = {
    "horizontal_flip": True,
    "scale_jitter": (0.5, 2.0),
    "brightness": 0.2,
    "contrast": 0.2,
    "saturation": 0.2,
    "hue": 0.05,
}
PLAIN = {"horizontal_flip": False}


def _throughput(config, source, augmentation: dict, batches: int, warmup: int) -> float:
    model, data = config.model, config.data
    pipeline = make_detection_pipeline(
        source,
        config.train.batch_size,
        training=True,
        image_size=canvas_size(config),
        min_size=model.input.min_size,
        max_size=model.input.max_size,
        max_instances=data.max_instances,
        mask_size=data.mask_size,
        shuffle_buffer=data.shuffle_buffer,
        seed=config.train.seed,
        min_box_size=data.min_box_size,
        **augmentation,
    ).repeat()
    iterator = iter(pipeline)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * config.train.batch_size / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=150, help="timed batches per case")
    parser.add_argument("--warmup", type=int, default=10, help="untimed batches first")
    parser.add_argument("--shapes-examples", type=int, default=256, help="generated shapes training images")
    parser.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results", "detection_pipeline.json"))
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # the configs' data paths are relative to the repository root

    cases = [("shapes", "configs/mask_rcnn_shapes.yaml", [f"data.train_examples={args.shapes_examples}"])]
    if os.path.isdir(os.path.join(ROOT, "..", "shared", "data", "PennFudanPed")):
        cases.append(("penn_fudan", "configs/mask_rcnn_penn_fudan.yaml", []))
    else:
        print("Penn-Fudan data not found at ../shared/data/PennFudanPed: that case is skipped", file=sys.stderr)

    figures = []
    for name, path, overrides in cases:
        config = load_config(path, overrides)
        source = load_detection_data(config).train
        side = canvas_size(config)
        for label, augmentation in (("plain", PLAIN), ("augmented", AUGMENTATION)):
            rate = _throughput(config, source, augmentation, args.batches, args.warmup)
            figures.append(
                {
                    "config": name,
                    "canvas": side,
                    "batch_size": config.train.batch_size,
                    "mask_size": config.data.mask_size,
                    "augmentation": label,
                    "images_per_second": round(rate, 1),
                }
            )
    rows = [("config", "canvas", "batch", "mask_size", "augmentation", "images/s")]
    rows += [
        (f["config"], f["canvas"], f["batch_size"], f["mask_size"], f["augmentation"], f"{f['images_per_second']:.1f}")
        for f in figures
    ]
    table(f"Detection training pipeline throughput ({args.batches} batches after {args.warmup})", rows)

    write_results(
        "detection_pipeline",
        {
            "augmentation": {k: list(v) if isinstance(v, tuple) else v for k, v in AUGMENTATION.items()},
            "batches": args.batches,
            "warmup": args.warmup,
            "shapes_examples": args.shapes_examples,
            "figures": figures,
        },
        args.output,
    )


if __name__ == "__main__":
    main()
