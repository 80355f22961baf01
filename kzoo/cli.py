"""Command line: ``kzoo train | evaluate | export | predict | demo``."""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _table(title: str, rows: list[tuple]) -> str:
    """Format rows of (name, value...) as an aligned text table."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    rule = "-+-".join("-" * w for w in widths)
    lines = [title, rule]
    for index, row in enumerate(cells):
        lines.append(" | ".join(c.ljust(w) for c, w in zip(row, widths)))
        if index == 0:
            lines.append(rule)
    lines.append(rule)
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _load_config(args):
    from kzoo.config import load_config

    return load_config(args.config, args.set or [])


def _keras_model(config, weights: str | None):
    from kzoo.training.trainer import build_model

    model = build_model(config)
    path = weights or os.path.join(config.output_dir, "model.weights.h5")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path} (train first: kzoo train CONFIG)")
    try:
        model.load_weights(path)
    except Exception as error:
        raise ValueError(f"cannot load weights file {path} into the model of this config: {error}") from error
    return model


def _eval_split(config):
    from kzoo.data.classification import load_classification

    data = config.data
    return load_classification(
        data.source, data.eval_split, data.data_dir, data.tfds_name, data.eval_examples, data.image_size
    )


def _split_arrays(split):
    import numpy as np

    images, labels = zip(*split.dataset.as_numpy_iterator())
    return np.stack(images), np.asarray(labels)


def _is_mask_rcnn(config) -> bool:
    return config.task == "mask_rcnn"


_AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _ap_rows(metrics: dict, prefix: str = "") -> list[tuple]:
    rows = [("metric", "bbox", "segm")]
    for key in _AP_KEYS:
        rows.append((key, *(f"{metrics[f'{prefix}{kind}_{key}']:.3f}" for kind in ("bbox", "segm"))))
    return rows


def cmd_train(args) -> int:
    config = _load_config(args)
    if _is_mask_rcnn(config):
        return _train_mask_rcnn(config, args)
    from kzoo.training.trainer import train

    metrics = train(config, verbose=0 if args.quiet else 1)
    print(
        _table(
            f"kzoo train {config.name}: results in {config.output_dir}",
            [
                ("metric", "value"),
                ("epochs", metrics["epochs"]),
                ("replicas x batch", f"{metrics['replicas']} x {metrics['global_batch_size'] // metrics['replicas']}"),
                ("train accuracy (last epoch)", _percent(metrics["train_accuracy"])),
                ("eval accuracy", _percent(metrics["eval_accuracy"])),
                ("eval loss", f"{metrics['eval_loss']:.4f}"),
                ("train time this run", f"{metrics['train_seconds_this_run']:.1f} s"),
                ("train throughput", f"{metrics['train_images_per_second'] or 0:.0f} images/s"),
            ],
        )
    )
    return 0


def _train_mask_rcnn(config, args) -> int:
    from kzoo.training.mask_rcnn_trainer import train_mask_rcnn

    metrics = train_mask_rcnn(config, verbose=0 if args.quiet else 1)
    rows = _ap_rows(metrics, "eval_")
    rows += [
        ("epochs", metrics["epochs"], ""),
        ("replicas x batch", f"{metrics['replicas']} x {metrics['global_batch_size'] // metrics['replicas']}", ""),
        ("loss (last epoch)", f"{metrics['loss_total']:.4f}", ""),
        ("train time this run", f"{metrics['train_seconds_this_run']:.1f} s", ""),
        ("train throughput", f"{metrics['train_images_per_second'] or 0:.1f} images/s", ""),
    ]
    print(_table(f"kzoo train {config.name}: COCO AP on {metrics['eval_images']} images, in {config.output_dir}", rows))
    return 0


def _evaluate_mask_rcnn(config, args) -> int:
    import json

    from kzoo.evaluation.coco import CocoEvaluator
    from kzoo.evaluation.detection import evaluate_mask_rcnn
    from kzoo.training.mask_rcnn_trainer import build_mask_rcnn, load_detection_data, make_pipelines

    weights = args.weights or os.path.join(config.output_dir, "model.weights.h5")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file not found: {weights} (train first, or pass --weights)")
    data = load_detection_data(config)
    model = build_mask_rcnn(config)
    model.load_weights(weights)
    _, dataset = make_pipelines(config, data, config.train.batch_size)
    evaluator = CocoEvaluator(data.ground_truth, data.categories)
    metrics = evaluate_mask_rcnn(model, dataset, evaluator, verbose=1)
    if args.results:
        evaluator.write_results(args.results)
        with open(os.path.splitext(args.results)[0] + "_metrics.json", "w") as f:
            json.dump(metrics, f, indent=2)
    print(_table(f"kzoo evaluate {config.name}: COCO AP on {metrics['images']} images ({weights})", _ap_rows(metrics)))
    return 0


def cmd_evaluate(args) -> int:
    from kzoo.data.classification import make_pipeline
    from kzoo.evaluation.classification import evaluate_classifier

    config = _load_config(args)
    if _is_mask_rcnn(config):
        return _evaluate_mask_rcnn(config, args)
    model = _keras_model(config, args.weights)
    split = _eval_split(config)
    result = evaluate_classifier(model, make_pipeline(split, 256, training=False))
    print(
        _table(
            f"kzoo evaluate {config.name} on {config.data.source}:{config.data.eval_split}",
            [
                ("metric", "value"),
                ("examples", result["examples"]),
                ("accuracy", _percent(result["accuracy"])),
                ("top-5 accuracy", _percent(result["top5_accuracy"])),
                ("loss", f"{result['loss']:.4f}"),
            ],
        )
    )
    return 0


def _saved_model_accuracy(version_dir: str, images, labels) -> float:
    import numpy as np
    import tensorflow as tf

    serve = tf.saved_model.load(version_dir).signatures["serving_default"]
    dtype = serve.structured_input_signature[1]["images"].dtype
    correct = 0
    for start in range(0, len(images), 256):
        batch = tf.cast(images[start : start + 256], dtype)
        correct += int(np.sum(serve(images=batch)["classes"].numpy() == labels[start : start + 256]))
    return correct / len(labels)


def _export_mask_rcnn(config, args) -> int:
    """``kzoo export`` of a Mask R-CNN config: a TF Serving SavedModel or builtin-only TFLite files."""
    import numpy as np

    from kzoo.export import convert_mask_rcnn_tflite, export_mask_rcnn_saved_model
    from kzoo.training.mask_rcnn_trainer import build_mask_rcnn, canvas_size, load_detection_data, make_pipelines

    weights = args.weights or os.path.join(config.output_dir, "model.weights.h5")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file not found: {weights} (train first, or pass --weights)")
    model = build_mask_rcnn(config)
    model.load_weights(weights)
    data = load_detection_data(config)
    output = args.output or os.path.join(config.output_dir, "export")
    name = args.model_name or config.name
    rows = [("artifact", "size", "path")]
    if args.format == "saved_model":
        version_dir = export_mask_rcnn_saved_model(
            model, output, name, version=args.version, full_image_masks=args.full_image_masks,
            warmup_images=args.warmup, class_names=list(data.categories.names),
        )  # fmt: skip
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(version_dir) for f in files)
        rows.append(("SavedModel (TF Serving)", f"{size / 1e6:.2f} MB", version_dir))
    else:
        from kzoo.evaluation.detection_parity import compare_detections
        from kzoo.export import run_mask_rcnn_tflite

        side = canvas_size(config)
        _, dataset = make_pipelines(config, data, 8)
        canvases = np.concatenate([b["images"].numpy() for b in dataset.take(6)]).astype(np.uint8)
        # int8 calibrates on the first 32 eval canvases; parity is measured on the next 16 (or on the same ones
        # when the eval split is smaller)
        representative, check = canvases[:32], (canvases[32:] if len(canvases) > 32 else canvases)
        reference = {key: value.numpy() for key, value in model(check).items()}
        rows = [("artifact", "size", f"vs Keras on {len(check)} eval images: matched", "same class", "box IoU",
                 "mask IoU (mean / min)", "path")]  # fmt: skip
        os.makedirs(output, exist_ok=True)
        for mode in args.quantize:
            path = os.path.join(output, f"{name}_{mode}.tflite")
            convert_mask_rcnn_tflite(model, path, (side, side), mode, representative_images=representative,
                                     input_dtype=args.input_dtype)  # fmt: skip
            parity = compare_detections(reference, run_mask_rcnn_tflite(path, check), (side, side)).summary()
            rows.append((f"TFLite {mode}", f"{os.path.getsize(path) / 1e6:.2f} MB", f"{parity['matched']:.3f}",
                         f"{parity['same_class']:.3f}", f"{parity['box_iou_mean']:.4f}",
                         f"{parity['mask_iou_mean']:.4f} / {parity['mask_iou_min']:.4f}", path))  # fmt: skip
    print(_table(f"kzoo export {config.name}", rows))
    return 0


def cmd_export(args) -> int:
    import numpy as np

    from kzoo.export import convert_classifier_tflite, export_classifier_saved_model, run_tflite_classifier
    from kzoo.export.saved_model import latest_version_dir

    config = _load_config(args)
    if _is_mask_rcnn(config):
        return _export_mask_rcnn(config, args)
    model = _keras_model(config, args.weights)
    split = _eval_split(config)
    output = args.output or os.path.join(config.output_dir, "export")
    rows = [("artifact", "size", "test accuracy", "examples")]
    images, labels = _split_arrays(split)
    if args.eval_examples:
        images, labels = images[: args.eval_examples], labels[: args.eval_examples]
    if args.format == "saved_model":
        version_dir = export_classifier_saved_model(
            model, output, args.model_name or config.name, split.class_names, version=args.version,
            input_dtype=args.input_dtype, warmup_examples=args.warmup,
        )  # fmt: skip
        size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(version_dir, "**"), recursive=True)
                   if os.path.isfile(p))  # fmt: skip
        rows.append((version_dir, f"{size / 1e6:.2f} MB", _percent(_saved_model_accuracy(version_dir, images, labels)),
                     len(labels)))  # fmt: skip
    else:
        from kzoo.data.classification import load_classification

        data = config.data
        calibration = None
        if "int8" in args.quantize:
            train_split = load_classification(data.source, data.train_split, data.data_dir, data.tfds_name, 512,
                                              data.image_size)  # fmt: skip
            calibration = _split_arrays(train_split)[0][:256]
        latest = latest_version_dir(os.path.join(output, args.model_name or config.name))
        if latest:
            rows.append((latest + " (SavedModel)", "", _percent(_saved_model_accuracy(latest, images, labels)),
                         len(labels)))  # fmt: skip
        os.makedirs(output, exist_ok=True)
        for quantize in args.quantize:
            path = os.path.join(output, f"{args.model_name or config.name}_{quantize}.tflite")
            convert_classifier_tflite(model, path, quantize=quantize, representative_images=calibration)
            probs = run_tflite_classifier(path, images)
            accuracy = float(np.mean(np.argmax(probs, -1) == labels))
            rows.append((path, f"{os.path.getsize(path) / 1e6:.2f} MB", _percent(accuracy), len(labels)))
    print(_table(f"kzoo export {config.name} ({args.format})", rows))
    return 0


def _read_image_file(path: str):
    import tensorflow as tf

    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        image = tf.io.decode_image(data, expand_animations=False).numpy()
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(f"{path} is not a JPEG, PNG, GIF or BMP image") from error
    return data, image


def predict_with_saved_model(saved_model: str, paths: list[str], top: int, cam_dir: str | None) -> list[dict]:
    """Top-k predictions for image files from an exported SavedModel (a model dir or a version dir)."""
    import numpy as np
    import tensorflow as tf

    from kzoo.export.saved_model import latest_version_dir
    from kzoo.ops.overlay import overlay_heatmap

    files = [(path, *_read_image_file(path)) for path in paths]
    version_dir = latest_version_dir(saved_model) or saved_model
    if not os.path.isfile(os.path.join(version_dir, "saved_model.pb")):
        raise FileNotFoundError(f"no SavedModel in {saved_model} (export one: kzoo export CONFIG)")
    loaded = tf.saved_model.load(version_dir)
    names_file = os.path.join(version_dir, "assets.extra", "class_names.txt")
    class_names = open(names_file).read().splitlines() if os.path.isfile(names_file) else None
    results = []
    for path, data, image in files:
        out = loaded.signatures["serving_bytes"](image_bytes=tf.constant([data]))
        probs = out["probabilities"].numpy()[0]
        order = np.argsort(-probs)[:top]
        names = [class_names[i] if class_names else str(i) for i in order]
        result = {"image": path, "top": [(int(i), n, float(probs[i])) for i, n in zip(order, names)]}
        if cam_dir:
            spec = loaded.signatures["class_maps"].structured_input_signature[1]["images"]
            height, width, channels = spec.shape[1:]
            pixels = tf.image.resize(tf.image.decode_image(data, channels=channels, expand_animations=False),
                                     (height, width))  # fmt: skip
            maps = loaded.signatures["class_maps"](images=tf.cast(pixels[None], spec.dtype))["class_maps"]
            overlay = overlay_heatmap(image if image.shape[-1] in (1, 3) else image[..., :3],
                                      maps.numpy()[0, :, :, order[0]])  # fmt: skip
            os.makedirs(cam_dir, exist_ok=True)
            out_path = os.path.join(cam_dir, os.path.splitext(os.path.basename(path))[0] + "_cam.png")
            tf.io.write_file(out_path, tf.io.encode_png(overlay))
            result["cam"] = out_path
        results.append(result)
    return results


def predict_mask_rcnn(
    config_path: str,
    weights: str | None,
    paths: list[str],
    output_dir: str,
    score_threshold: float | None,
    class_names: dict[int, str] | None = None,
) -> list[dict]:
    """Detect and segment image files with a Mask R-CNN config (+ weights); write annotated PNGs.

    ``class_names`` maps labels to names (default: COCO's names for 91-class models)."""
    import dataclasses

    import tensorflow as tf

    from kzoo.applications.mask_rcnn import load_mask_rcnn_config, mask_rcnn_from_config
    from kzoo.data.coco_categories import COCO_CATEGORIES
    from kzoo.ops.masks import paste_masks
    from kzoo.ops.overlay import draw_detections

    files = [(path, *_read_image_file(path)) for path in paths]
    config = load_mask_rcnn_config(config_path)
    if score_threshold is not None:
        config = dataclasses.replace(config, score_threshold=score_threshold)
    model = mask_rcnn_from_config(config, weights)
    names = class_names or (COCO_CATEGORIES if config.num_classes == 91 else None)
    os.makedirs(output_dir, exist_ok=True)
    results = []
    for path, _, image in files:
        rgb = image[..., :3] if image.shape[-1] >= 3 else tf.image.grayscale_to_rgb(image[..., :1]).numpy()
        out = {k: v.numpy()[0] for k, v in model(rgb[None]).items()}
        count = int(out["num_detections"])
        boxes, scores = out["detection_boxes"][:count], out["detection_scores"][:count]
        classes = out["detection_classes"][:count]
        masks = paste_masks(out["detection_masks"][:count], boxes, rgb.shape[:2])
        drawn = draw_detections(rgb, boxes, classes, scores, masks, names)
        out_path = os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0] + "_detections.png")
        tf.io.write_file(out_path, tf.io.encode_png(drawn))
        labels = [names.get(int(c), str(int(c))) if names else str(int(c)) for c in classes]
        results.append({"image": path, "output": out_path, "detections": list(zip(labels, scores.tolist(), boxes))})
    return results


def cmd_predict(args) -> int:
    if args.mask_rcnn:
        results = predict_mask_rcnn(args.mask_rcnn, args.weights, args.images, args.output, args.score_threshold)
        rows = [("image", "detections", "best (label score)", "annotated PNG")]
        for r in results:
            best = ", ".join(f"{label} {score:.2f}" for label, score, _ in r["detections"][:3]) or "-"
            rows.append((r["image"], len(r["detections"]), best, r["output"]))
        print(_table(f"kzoo predict with Mask R-CNN {args.mask_rcnn}", rows))
        return 0
    if not args.saved_model:
        raise ValueError("give --saved-model (an exported NIN) or --mask-rcnn CONFIG")
    results = predict_with_saved_model(args.saved_model, args.images, args.top, args.cam)
    rows = [("image", "rank", "class", "probability")]
    for result in results:
        for rank, (index, name, prob) in enumerate(result["top"], start=1):
            rows.append((result["image"] if rank == 1 else "", rank, f"{index} {name}", f"{prob:.4f}"))
    print(_table(f"kzoo predict with {args.saved_model}", rows))
    for result in results:
        if "cam" in result:
            print(f"class confidence map of '{result['top'][0][1]}' over {result['image']}: {result['cam']}")
    return 0


def cmd_demo(args) -> int:
    """The main job on built-in shapes: Mask R-CNN (default config) or NIN (``--config configs/nin_shapes.yaml``)."""
    from kzoo.config import load_config

    overrides = [f"output_dir={args.output_dir}"] + (args.set or [])
    config = load_config(args.config, overrides)
    if _is_mask_rcnn(config):
        return _demo_mask_rcnn(config, args.config)
    return _demo_nin(config)


#: What the shapes demo must reach (issue: bbox AP50 >= 0.9 and segm AP >= 0.6 in under 10 minutes).
SHAPES_TARGETS = {"bbox_AP50": 0.9, "segm_AP": 0.6}


def _demo_mask_rcnn(config, config_path: str) -> int:
    """Train a Mask R-CNN on built-in shapes (COCO AP at the end), then detect and segment sample PNG files."""
    import tensorflow as tf

    from kzoo.data.shapes import SHAPES_INSTANCE_CLASSES, make_shapes_instances
    from kzoo.training.mask_rcnn_trainer import train_mask_rcnn

    started = time.perf_counter()
    print(f"[1/2] train {config.name}: {config.train.epochs} epochs on {config.data.train_examples} built-in "
          f"'{config.data.source}' images, then COCO AP on {config.data.eval_examples} held-out ones")  # fmt: skip
    metrics = train_mask_rcnn(config, verbose=1)
    train_seconds = time.perf_counter() - started

    print("[2/2] detect and segment sample PNG files")
    sample_dir = os.path.join(config.output_dir, "samples")
    os.makedirs(sample_dir, exist_ok=True)
    paths = []
    samples = make_shapes_instances(4, config.data.shapes_image_size, config.data.shapes_max_instances, seed=12345)
    for i, example in enumerate(samples):
        path = os.path.join(sample_dir, f"sample{i}.png")
        tf.io.write_file(path, tf.io.encode_png(example["image"]))
        paths.append(path)
    names = dict(enumerate(SHAPES_INSTANCE_CLASSES, start=1))
    weights = os.path.join(config.output_dir, "model.weights.h5")
    predictions = predict_mask_rcnn(config_path, weights, paths, sample_dir, score_threshold=0.5, class_names=names)

    rows = [("result", "value", "target")]
    for key, target in SHAPES_TARGETS.items():
        value = metrics[f"eval_{key}"]
        verdict = "ok" if value >= target else "MISSED"
        rows.append((f"held-out {key.replace('_', ' ')}", f"{value:.3f}", f">= {target} {verdict}"))
    for key in ("bbox_AP", "segm_AP50"):
        rows.append((f"held-out {key.replace('_', ' ')}", f"{metrics[f'eval_{key}']:.3f}", ""))
    rows.append(("train", f"{metrics['epochs']} epochs, {train_seconds:.0f} s", "< 600 s"))
    for prediction in predictions:
        found = ", ".join(f"{label} {score:.2f}" for label, score, _ in prediction["detections"]) or "-"
        rows.append((f"predict {os.path.basename(prediction['image'])}", found, prediction["output"]))
    rows.append(("total time", f"{time.perf_counter() - started:.0f} s", ""))
    print(_table("kzoo demo: Mask R-CNN on built-in shapes", rows))
    return 0


def _demo_nin(config) -> int:
    """Train on the built-in shapes, evaluate, export (SavedModel + TFLite), predict with the export."""
    import numpy as np
    import tensorflow as tf

    from kzoo.data.classification import make_pipeline
    from kzoo.evaluation.classification import evaluate_classifier
    from kzoo.export import convert_classifier_tflite, export_classifier_saved_model, run_tflite_classifier
    from kzoo.training.trainer import train

    started = time.perf_counter()
    print(f"[1/4] train {config.name}: {config.train.epochs} epochs on the built-in '{config.data.source}' data")
    metrics = train(config, verbose=1)
    train_seconds = time.perf_counter() - started

    print("[2/4] evaluate the Keras model")
    model = _keras_model(config, None)
    split = _eval_split(config)
    keras_result = evaluate_classifier(model, make_pipeline(split, 256, training=False))

    print("[3/4] export: SavedModel (TF Serving layout) and TFLite (int8)")
    export_dir = os.path.join(config.output_dir, "export")
    version_dir = export_classifier_saved_model(model, export_dir, config.name, split.class_names, warmup_examples=1)
    images, labels = _split_arrays(split)
    saved_accuracy = _saved_model_accuracy(version_dir, images, labels)
    tflite_path = os.path.join(export_dir, f"{config.name}_int8.tflite")
    convert_classifier_tflite(model, tflite_path, quantize="int8", representative_images=images[:128])
    tflite_accuracy = float(np.mean(np.argmax(run_tflite_classifier(tflite_path, images), -1) == labels))

    print("[4/4] predict with the SavedModel on sample PNG files")
    sample_dir = os.path.join(config.output_dir, "samples")
    os.makedirs(sample_dir, exist_ok=True)
    paths = []
    for i in range(4):
        path = os.path.join(sample_dir, f"sample{i}_{split.class_names[labels[i]]}.png")
        tf.io.write_file(path, tf.io.encode_png(images[i]))
        paths.append(path)
    predictions = predict_with_saved_model(version_dir, paths, top=1, cam_dir=sample_dir)

    rows = [("step", "result")]
    rows.append(("train", f"{metrics['epochs']} epochs, {train_seconds:.0f} s, "
                          f"{metrics['train_images_per_second'] or 0:.0f} images/s"))  # fmt: skip
    rows.append(("Keras model, test accuracy", _percent(keras_result["accuracy"])))
    rows.append(("SavedModel, test accuracy", f"{_percent(saved_accuracy)}  ({version_dir})"))
    rows.append(("TFLite int8, test accuracy", f"{_percent(tflite_accuracy)}  ({tflite_path}, "
                                               f"{os.path.getsize(tflite_path) / 1e3:.0f} kB)"))  # fmt: skip
    for prediction in predictions:
        index, name, prob = prediction["top"][0]
        rows.append((f"predict {os.path.basename(prediction['image'])}",
                     f"{name} ({prob:.3f}), map {prediction['cam']}"))  # fmt: skip
    rows.append(("total time", f"{time.perf_counter() - started:.0f} s"))
    print(_table("kzoo demo: NIN on built-in shapes", rows))
    return 0


def cmd_convert(args) -> int:
    """``kzoo convert torchvision PTH OUTPUT``: torchvision Mask R-CNN weights -> Keras weights."""
    from kzoo.applications.torchvision_conversion import convert_torchvision_cli

    print(convert_torchvision_cli(args.pth, args.output, args.num_classes))
    return 0


def _default_demo_config() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "mask_rcnn_shapes.yaml")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kzoo", description="kzoo: Network In Network and Mask R-CNN for Keras")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="YAML experiment config (configs/*.yaml)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")

    p = sub.add_parser("train", help="train a model from a YAML config (resumes from its output_dir)")
    with_config(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate trained weights on the config's evaluation split")
    with_config(p)
    p.add_argument("--weights", help="weights file (default: OUTPUT_DIR/model.weights.h5)")
    p.add_argument("--results", help="Mask R-CNN: also write the COCO results json here (and *_metrics.json)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export trained weights as a SavedModel (TF Serving) or TFLite files")
    with_config(p)
    p.add_argument("--weights", help="weights file (default: OUTPUT_DIR/model.weights.h5)")
    p.add_argument("--format", choices=["saved_model", "tflite"], default="saved_model")
    p.add_argument("--output", help="export base directory (default: OUTPUT_DIR/export)")
    p.add_argument("--model-name", help="model name in the TF Serving layout (default: the config's name)")
    p.add_argument("--version", type=int, help="SavedModel version (default: next free)")
    p.add_argument("--input-dtype", choices=["float32", "uint8"], default="float32")
    p.add_argument("--warmup", type=int, default=0, help="write this many TF Serving warmup requests")
    p.add_argument("--quantize", nargs="+", choices=["none", "float16", "dynamic", "int8"],
                   default=["none", "float16", "dynamic", "int8"], help="TFLite variants")  # fmt: skip
    p.add_argument("--eval-examples", type=int, help="evaluate exports on the first N test examples only")
    p.add_argument("--full-image-masks", action="store_true",
                   help="Mask R-CNN SavedModel: also output masks pasted into the full image")  # fmt: skip
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="classify (NIN SavedModel) or detect and segment (Mask R-CNN) images")
    p.add_argument("images", nargs="+", help="JPEG/PNG files")
    p.add_argument("--saved-model", help="NIN SavedModel (TF Serving model dir or version dir)")
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--cam", metavar="DIR", help="write the top class's confidence map over each image as PNG")
    p.add_argument("--mask-rcnn", metavar="CONFIG", help="Mask R-CNN YAML config (configs/mask_rcnn_*.yaml)")
    p.add_argument("--weights", help="Mask R-CNN weights file (.weights.h5)")
    p.add_argument("--output", default="predictions", help="folder for the annotated PNGs (Mask R-CNN)")
    p.add_argument("--score-threshold", type=float, help="Mask R-CNN: override the config's score threshold")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("convert", help="convert pretrained weights from another library")
    p.add_argument("source", choices=["torchvision"], help="the library the checkpoint comes from")
    p.add_argument("pth", help="torchvision maskrcnn_resnet50_fpn checkpoint (.pth)")
    p.add_argument("output", help="Keras weights file to write (.weights.h5)")
    p.add_argument("--num-classes", type=int, default=91, help="classes including the background")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("demo", help="train, evaluate and predict on built-in shapes (Mask R-CNN; NIN: --config "
                                    "configs/nin_shapes.yaml)")
    p.add_argument("--config", default=_default_demo_config())
    p.add_argument("--output-dir", default="runs/demo")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"kzoo {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
