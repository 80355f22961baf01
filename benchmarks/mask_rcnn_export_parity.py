"""Parity of exported Mask R-CNN files on real photographs: each builtin-only TFLite variant (float32, float16,
dynamic range, int8) and the Keras model against the TF Serving SavedModel, on a COCO-format data set's images.
Prints one table for every detection and one for confident detections (score >= --confident).

    python benchmarks/mask_rcnn_export_parity.py --config configs/mask_rcnn_penn_fudan.yaml \
        --weights RUN_DIR/model.weights.h5
    python benchmarks/mask_rcnn_export_parity.py --config ... --weights ... --variants none float16 --images 10

The photographs are letterboxed (aspect ratio kept, zero padding at the bottom and right) to --size x --size, the
TFLite files' fixed input; the SavedModel and the Keras model get the same pixels. The int8 variant is calibrated on
--calibration photographs of --calibration-annotations (default: the training split beside --annotations), never
on the images compared. Two controls: the Keras model with every weight rounded to float16 (what float16 storage
alone changes), and the Keras model on the photographs with +-1 gray level of noise (how much the model moves by
itself for an invisible change of input).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import table, write_results  # noqa: E402

from kzoo.applications import MaskRCNN  # noqa: E402
from kzoo.data.coco_categories import CocoCategories  # noqa: E402
from kzoo.evaluation.coco import detections_to_coco, evaluate_coco  # noqa: E402
from kzoo.evaluation.detection_parity import compare_detections, has_near_equal, outliers  # noqa: E402
from kzoo.export.mask_rcnn import (  # noqa: E402
    convert_mask_rcnn_tflite,
    export_mask_rcnn_saved_model,
    letterbox,
    run_mask_rcnn_tflite,
)
from kzoo.export.tflite import QUANTIZE_MODES  # noqa: E402
from kzoo.models.mask_rcnn import MaskRCNNModel  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PENN_FUDAN = os.path.join(ROOT, "..", "shared", "data", "PennFudanPed")
NAMES = {
    "none": "TFLite float32",
    "float16": "TFLite float16",
    "dynamic": "TFLite dynamic range",
    "int8": "TFLite int8",
}
KEYS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections", "detection_masks")


def load_photographs(annotations: str, image_dir: str, size: int, count: int | None) -> dict[str, np.ndarray]:
    """The first ``count`` images of a COCO json (by id), letterboxed: ``canvases`` uint8 ``[N, size, size, 3]``,
    ``scales`` ``[N, 2]`` (see :func:`kzoo.export.letterbox`), ``image_ids`` ``[N]`` and original ``image_sizes``
    ``[N, 2]``."""
    with open(annotations) as f:
        images = sorted(json.load(f)["images"], key=lambda image: image["id"])[:count]
    canvases, scales, sizes = [], [], []
    for image in images:
        pixels = tf.io.decode_image(tf.io.read_file(os.path.join(image_dir, image["file_name"])), channels=3).numpy()
        canvas, factors = letterbox(pixels, (size, size))
        canvases.append(canvas)
        scales.append(factors)
        sizes.append(pixels.shape[:2])
    return {
        "canvases": np.stack(canvases),
        "scales": np.array(scales),
        "image_ids": np.array([image["id"] for image in images]),
        "image_sizes": np.array(sizes),
    }


def coco_ap(outputs: dict, photos: dict, annotations: str) -> dict[str, float]:
    """COCO bbox and segm AP of canvas detections, mapped back into the photographs (boxes and pasted masks)."""
    boxes = outputs["detection_boxes"].astype(np.float64) / np.tile(photos["scales"], 2)[:, None, :]
    limits = np.repeat(photos["image_sizes"][:, None, :], 2, axis=1).reshape(-1, 1, 4)
    boxes = np.clip(boxes, 0, limits)
    with open(annotations) as f:
        categories = CocoCategories.from_coco(json.load(f)["categories"])
    results = detections_to_coco(
        photos["image_ids"],
        boxes,
        outputs["detection_scores"],
        outputs["detection_classes"],
        outputs["num_detections"],
        outputs["detection_masks"],
        photos["image_sizes"],
        categories,
    )
    return evaluate_coco(annotations, results, image_ids=photos["image_ids"].tolist())


def keras_outputs(model: MaskRCNNModel, images: np.ndarray) -> dict[str, np.ndarray]:
    graph = tf.function(lambda x: model(x, training=False))
    parts = [graph(tf.constant(image[None])) for image in images]
    return {key: np.concatenate([p[key].numpy() for p in parts]) for key in KEYS}


def row(name: str, size: str, reference: dict, candidate: dict, image_size: int, min_score: float) -> tuple:
    s = compare_detections(reference, candidate, (image_size, image_size), min_score=min_score).summary()
    return (
        name,
        size,
        f"{s['reference']}/{s['candidate']}",
        f"{s['matched']:.3f}",
        f"{s['same_class']:.3f}",
        f"{s['box_iou_mean']:.4f}",
        f"{s['box_iou_min']:.4f}",
        f"{s['box_error_max']:.3f}",
        f"{s['score_error_max']:.4f}",
        f"{s['mask_iou_mean']:.4f}",
        f"{s['mask_iou_min']:.4f}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(ROOT, "configs", "mask_rcnn_penn_fudan.yaml"))
    parser.add_argument("--weights", required=True, help="the trained model's .weights.h5")
    parser.add_argument("--annotations", default=os.path.join(PENN_FUDAN, "annotations", "instances_val.json"))
    parser.add_argument("--image-dir", default=os.path.join(PENN_FUDAN, "PNGImages"))
    parser.add_argument("--calibration-annotations", default=None)
    parser.add_argument("--images", type=int, default=None, help="compare on the first N images (default: all)")
    parser.add_argument("--size", type=int, default=320, help="square input side of the TFLite files")
    parser.add_argument("--variants", nargs="+", default=list(QUANTIZE_MODES), choices=QUANTIZE_MODES)
    parser.add_argument("--calibration", type=int, default=32, help="int8 calibration photographs")
    parser.add_argument("--confident", type=float, default=0.5, help="score threshold of the second table")
    parser.add_argument("--out-dir", default=None, help="keep the exported files here (default: a temporary one)")
    args = parser.parse_args()

    model = MaskRCNN(config=args.config)
    config = model.config
    model(np.zeros((1, args.size, args.size, 3), np.uint8))
    model.load_weights(args.weights)
    photos = load_photographs(args.annotations, args.image_dir, args.size, args.images)
    canvases = photos["canvases"]
    calibration_json = args.calibration_annotations or args.annotations.replace("_val", "_train")
    calibration = load_photographs(calibration_json, args.image_dir, args.size, args.calibration)["canvases"]
    print(
        f"{os.path.basename(args.config)}, {model.count_params() / 1e6:.2f} M parameters; {len(canvases)} "
        f"photographs of {os.path.basename(args.annotations)} letterboxed to {args.size}x{args.size}; int8 "
        f"calibrated on {len(calibration)} of {os.path.basename(calibration_json)}",
        flush=True,
    )

    results: list[tuple[str, str, dict]] = []
    with tempfile.TemporaryDirectory() as temp:
        out_dir = args.out_dir or temp
        path = export_mask_rcnn_saved_model(model, os.path.join(out_dir, "serving"), "mask_rcnn")
        serve = tf.saved_model.load(path).signatures["serving_default"]
        parts = [serve(images=tf.constant(canvas[None])) for canvas in canvases]
        reference = {key: np.concatenate([p[key].numpy() for p in parts]) for key in KEYS}
        results.append(("Keras model", "-", keras_outputs(model, canvases)))
        for quantize in args.variants:
            file = convert_mask_rcnn_tflite(
                model,
                os.path.join(out_dir, f"mask_rcnn_{quantize}.tflite"),
                (args.size, args.size),
                quantize,
                representative_images=calibration,
                input_dtype="uint8",
            )
            size = f"{os.path.getsize(file) / 1e6:.2f}"
            results.append((NAMES[quantize], size, run_mask_rcnn_tflite(file, canvases)))
            print(f"{NAMES[quantize]}: {size} MB", flush=True)

    # controls: float16-rounded weights in Keras, and +-1 gray level of input noise
    values = model.get_weights()
    model.set_weights([v.astype(np.float16).astype(v.dtype) if v.dtype == np.float32 else v for v in values])
    controls = [("control: Keras, float16-rounded weights", "-", keras_outputs(model, canvases))]
    model.set_weights(values)
    noise = np.random.default_rng(0).integers(-1, 2, canvases.shape)
    noisy = np.clip(canvases.astype(np.int64) + noise, 0, 255).astype(np.uint8)
    controls.append(("control: Keras, +-1 gray level noise", "-", keras_outputs(model, noisy)))

    # the float32 model's candidates before NMS (NMS at IoU 1 suppresses nothing), to tell NMS near-ties apart
    unsuppressed_model = MaskRCNNModel(config.replace(detection={"nms_threshold": 1.0, "max_detections": 300}))
    unsuppressed_model(canvases[:1])
    unsuppressed_model.set_weights(values)
    unsuppressed = keras_outputs(unsuppressed_model, canvases)
    float32_file = next((out for name, _, out in results if name == NAMES["none"]), None)
    rows = [
        (
            "vs SavedModel",
            "detections",
            "outliers (> 1 px or mask IoU < 0.95, or unmatched)",
            "NMS near-ties (another float32 candidate)",
            "as the TFLite float32 file gives it",
        )
    ]
    for name, _, out in results + controls:
        found = outliers(compare_detections(reference, out, (args.size, args.size)), out)
        ties = sum(has_near_equal(unsuppressed, out, image, row) for image, row in found)
        shared = (
            "-"
            if float32_file is None or out is float32_file
            else sum(has_near_equal(float32_file, out, image, row) for image, row in found)
        )
        rows.append((name, int(out["num_detections"].sum()), len(found), ties, shared))
    table(
        "Outliers: NMS near-ties, and those the float32 file (float32 arithmetic, other summation order) shares", rows
    )

    header = (
        "vs SavedModel",
        "MB",
        "detections",
        "matched",
        "same class",
        "box IoU mean",
        "box IoU min",
        "box err max (px)",
        "score err max",
        "mask IoU mean",
        "mask IoU min",
    )
    for title, min_score in (("every detection", 0.0), (f"detections scoring >= {args.confident}", args.confident)):
        rows = [header] + [
            row(name, size, reference, out, args.size, min_score) for name, size, out in results + controls
        ]
        table(f"Mask R-CNN export parity on {len(canvases)} photographs, {title}", rows)

    rows = [("artifact", "bbox AP", "bbox AP50", "bbox AP75", "segm AP", "segm AP50", "segm AP75")]
    for name, _, out in [("SavedModel", "-", reference)] + results[1:]:
        ap = coco_ap(out, photos, args.annotations)
        rows.append((name, *(f"{ap[f'{kind}_{m}']:.3f}" for kind in ("bbox", "segm") for m in ("AP", "AP50", "AP75"))))
    table(f"COCO AP on the {len(canvases)} photographs (detections mapped back from the letterboxed canvases)", rows)
    write_results("mask_rcnn_export_parity")


if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    main()
