"""Parity of exported Mask R-CNN files on real photographs: each builtin-only TFLite variant (float32, float16,
dynamic range, int8) and the Keras model against the TF Serving SavedModel, on a COCO-format data set's images.
Prints one table for every detection and one for confident detections (score >= --confident).

    python benchmarks/mask_rcnn_export_parity.py --config configs/mask_rcnn_penn_fudan.yaml \
        --weights RUN_DIR/model.weights.h5
    python benchmarks/mask_rcnn_export_parity.py --config ... --weights ... --variants none float16 --images 10

The photographs are letterboxed (aspect ratio kept, centred, zero padding) to --size x --size, the TFLite files'
fixed input; the SavedModel and the Keras model get the same pixels. The int8 variant is calibrated on
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
from common import table  # noqa: E402

from kzoo.applications.mask_rcnn import load_mask_rcnn_config  # noqa: E402
from kzoo.evaluation.detection_parity import compare_detections  # noqa: E402
from kzoo.export.common import QUANTIZE_MODES  # noqa: E402
from kzoo.export.mask_rcnn_saved_model import export_mask_rcnn_saved_model  # noqa: E402
from kzoo.export.mask_rcnn_tflite import convert_mask_rcnn_tflite, run_mask_rcnn_tflite  # noqa: E402
from kzoo.models.mask_rcnn import MaskRCNNModel  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PENN_FUDAN = os.path.join(ROOT, "..", "shared", "data", "PennFudanPed")
NAMES = {"none": "TFLite float32", "float16": "TFLite float16", "dynamic": "TFLite dynamic range",
         "int8": "TFLite int8"}  # fmt: skip
KEYS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections", "detection_masks")


def letterboxed_photographs(annotations: str, image_dir: str, size: int, count: int | None) -> np.ndarray:
    """The first ``count`` images of a COCO json (sorted by id), letterboxed to uint8 ``[N, size, size, 3]``."""
    with open(annotations) as f:
        images = sorted(json.load(f)["images"], key=lambda image: image["id"])[:count]
    out = []
    for image in images:
        pixels = tf.io.decode_image(tf.io.read_file(os.path.join(image_dir, image["file_name"])), channels=3)
        boxed = tf.image.resize_with_pad(tf.cast(pixels, tf.float32), size, size)
        out.append(tf.cast(tf.clip_by_value(tf.round(boxed), 0, 255), tf.uint8).numpy())
    return np.stack(out)


def keras_outputs(model: MaskRCNNModel, images: np.ndarray) -> dict[str, np.ndarray]:
    graph = tf.function(lambda x: model(x, training=False))
    parts = [graph(tf.constant(image[None])) for image in images]
    return {key: np.concatenate([p[key].numpy() for p in parts]) for key in KEYS}


def row(name: str, size: str, reference: dict, candidate: dict, image_size: int, min_score: float) -> tuple:
    s = compare_detections(reference, candidate, (image_size, image_size), min_score=min_score).summary()
    return (name, size, f"{s['reference']}/{s['candidate']}", f"{s['matched']:.3f}", f"{s['same_class']:.3f}",
            f"{s['box_iou_mean']:.4f}", f"{s['box_iou_min']:.4f}", f"{s['box_error_max']:.3f}",
            f"{s['score_error_max']:.4f}", f"{s['mask_iou_mean']:.4f}", f"{s['mask_iou_min']:.4f}")  # fmt: skip


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

    config = load_mask_rcnn_config(args.config)
    model = MaskRCNNModel(config)
    model(np.zeros((1, args.size, args.size, 3), np.uint8))
    model.load_weights(args.weights)
    photos = letterboxed_photographs(args.annotations, args.image_dir, args.size, args.images)
    calibration_json = args.calibration_annotations or args.annotations.replace("_val", "_train")
    calibration = letterboxed_photographs(calibration_json, args.image_dir, args.size, args.calibration)
    print(f"{os.path.basename(args.config)}, {model.count_params() / 1e6:.2f} M parameters; {len(photos)} photographs "
          f"of {os.path.basename(args.annotations)} letterboxed to {args.size}x{args.size}; int8 calibrated on "
          f"{len(calibration)} of {os.path.basename(calibration_json)}", flush=True)  # fmt: skip

    results: list[tuple[str, str, dict]] = []
    with tempfile.TemporaryDirectory() as temp:
        out_dir = args.out_dir or temp
        path = export_mask_rcnn_saved_model(model, os.path.join(out_dir, "serving"), "mask_rcnn")
        serve = tf.saved_model.load(path).signatures["serving_default"]
        parts = [serve(images=tf.constant(photo[None])) for photo in photos]
        reference = {key: np.concatenate([p[key].numpy() for p in parts]) for key in KEYS}
        results.append(("Keras model", "-", keras_outputs(model, photos)))
        for quantize in args.variants:
            file = convert_mask_rcnn_tflite(model, os.path.join(out_dir, f"mask_rcnn_{quantize}.tflite"),
                                            (args.size, args.size), quantize, representative_images=calibration,
                                            input_dtype="uint8")  # fmt: skip
            size = f"{os.path.getsize(file) / 1e6:.2f}"
            results.append((NAMES[quantize], size, run_mask_rcnn_tflite(file, photos)))
            print(f"{NAMES[quantize]}: {size} MB", flush=True)

    # controls: float16-rounded weights in Keras, and +-1 gray level of input noise
    values = model.get_weights()
    model.set_weights([v.astype(np.float16).astype(v.dtype) if v.dtype == np.float32 else v for v in values])
    results.append(("control: Keras, float16-rounded weights", "-", keras_outputs(model, photos)))
    model.set_weights(values)
    noise = np.random.default_rng(0).integers(-1, 2, photos.shape)
    noisy = np.clip(photos.astype(np.int64) + noise, 0, 255).astype(np.uint8)
    noisy_reference = keras_outputs(model, noisy)

    header = ("vs SavedModel", "MB", "detections", "matched", "same class", "box IoU mean", "box IoU min",
              "box err max (px)", "score err max", "mask IoU mean", "mask IoU min")  # fmt: skip
    for title, min_score in (("every detection", 0.0), (f"detections scoring >= {args.confident}", args.confident)):
        rows = [header] + [row(name, size, reference, out, args.size, min_score) for name, size, out in results]
        rows.append(row("control: Keras, +-1 gray level noise", "-", reference, noisy_reference, args.size, min_score))
        table(f"Mask R-CNN export parity on {len(photos)} photographs, {title}", rows)


if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    main()
