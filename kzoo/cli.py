"""Command line: ``kzoo train | evaluate | export | predict | convert | demo``. Parses arguments, calls
``kzoo.tasks``, prints tables; the work itself lives in the package."""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported: no C++ banners
DEMO_CONFIG = "configs/mask_rcnn_shapes.yaml"
DEMO_OUTPUT_ROOT = os.path.join("runs", "demo")


def _print_table(title: str, rows: list[tuple]) -> None:
    from kzoo.utils.tables import format_table

    print(format_table(title, rows))


def _load_config(args):
    from kzoo.config import load_config

    return load_config(args.config, args.set or [])


def _task(config):
    from kzoo.tasks import task_for

    return task_for(config)


def _options(method, given: dict[str, tuple[str, object]]) -> dict:
    """The options set on the command line (``flag -> (keyword, value)``, unset ones ``None``/``False``) that the
    task's ``method`` takes; one it does not take is an error naming the flag, not a silent no-op."""
    import inspect

    accepted = inspect.signature(method).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    options = {}
    for flag, (keyword, value) in given.items():
        if value is None or value is False:
            continue
        if keyword not in accepted and not takes_any:
            task = getattr(method, "__self__", None)
            raise ValueError(f"{flag} is not an option of the {getattr(task, 'name', '?')} task's {method.__name__}")
        options[keyword] = value
    return options


def _finished_note(config, metrics: dict) -> None:
    if metrics.get("already_finished"):
        print(
            f"kzoo: the run in {config.output_dir} has finished all {metrics['epochs']} epochs; showing its results "
            "(pass --fresh to delete it and train again, or raise train.epochs to continue)"
        )


def cmd_train(args) -> int:
    from kzoo.training import loop

    config = _load_config(args)
    task = _task(config)
    metrics = loop.train(task, verbose=0 if args.quiet else 1, fresh=args.fresh)
    _finished_note(config, metrics)
    _print_table(*task.train_table(metrics))
    return 0


def cmd_evaluate(args) -> int:
    task = _task(_load_config(args))
    metrics = task.evaluate(
        weights=args.weights, verbose=1, **_options(task.evaluate, {"--results": ("results", args.results)})
    )
    _print_table(*task.evaluate_table(metrics, args.weights))
    return 0


def cmd_export(args) -> int:
    task = _task(_load_config(args))
    options = _options(
        task.export,
        {
            "--model-name": ("model_name", args.model_name),
            "--version": ("version", args.version),
            "--input-dtype": ("input_dtype", args.input_dtype),
            "--warmup": ("warmup", args.warmup),
            "--quantize": ("quantize", args.quantize),
            "--overwrite": ("overwrite", args.overwrite),
            "--max-image-pixels": ("max_image_pixels", args.max_image_pixels),
            "--eval-examples": ("eval_examples", args.eval_examples),
            "--full-image-masks": ("full_image_masks", args.full_image_masks),
        },
    )
    artifacts = task.export(args.format, weights=args.weights, output=args.output, **options)
    _print_table(*task.export_table(args.format, artifacts))
    return 0


def cmd_predict(args) -> int:
    from kzoo.data.images import expand_image_inputs
    from kzoo.data.video import VIDEO_EXTENSIONS, is_video_path

    args.images = expand_image_inputs(args.images, VIDEO_EXTENSIONS)  # again: main() may not have run
    config_path = args.config or args.mask_rcnn
    if config_path:
        from kzoo.config import load_config

        task = _task(load_config(config_path, args.set or []))
        options = _options(
            task.predict,
            {
                "--score-threshold": ("score_threshold", args.score_threshold),
                "--top": ("top", args.top),
                "--cam": ("cam", bool(args.cam)),
            },
        )
        results = task.predict(args.images, args.cam or args.output, weights=args.weights, **options)
        _print_table(*task.predict_table(results))
        _print_throughput(results)
        return 0
    if not args.saved_model:
        raise ValueError("give --config CONFIG (a trained run's config) or --saved-model DIR (an exported model)")
    from kzoo.tasks.registry import TASKS, task_class_for_saved_model

    videos = [path for path in args.images if is_video_path(path)]
    no_videos = f"video input ({videos[0] if videos else ''}) needs a trained run (--config CONFIG)"
    if videos and not any(task.saved_model_takes_videos for task in TASKS.values()):
        raise ValueError(no_videos)  # before reading the SavedModel: no registered task takes videos there
    task_class = task_class_for_saved_model(args.saved_model)
    if videos and not task_class.saved_model_takes_videos:
        raise ValueError(no_videos)
    options = _options(task_class.predict_saved_model, {"--top": ("top", args.top), "--cam": ("cam", bool(args.cam))})
    results = task_class.predict_saved_model(args.saved_model, args.images, args.cam or args.output, **options)
    _print_table(*task_class.saved_model_table(args.saved_model, results))
    _print_throughput(results)
    return 0


def _print_throughput(results: list[dict]) -> None:
    frames, seconds = sum(r["frames"] for r in results), sum(r["seconds"] for r in results)
    print(f"{frames} images in {seconds:.1f} s: {frames / max(seconds, 1e-9):.1f} images/s")


def cmd_demo(args) -> int:
    """The main job on built-in data: Mask R-CNN (default config) or NIN (``--config configs/nin_shapes.yaml``)."""
    from kzoo.config import load_config

    config = load_config(args.config)
    output_dir = args.output_dir or os.path.join(DEMO_OUTPUT_ROOT, config.name)
    config = load_config(args.config, [f"output_dir={output_dir}"] + (args.set or []))
    from kzoo.training.run_lock import run_lock

    with run_lock(config.output_dir, "--fresh" if args.fresh else "the demo", "kzoo demo"):  # one demo per folder
        title, rows = _task(config).demo(fresh=args.fresh)
    _print_table(title, rows)
    return 0


def cmd_convert(args) -> int:
    """``kzoo convert torchvision PTH OUTPUT`` (torchvision Mask R-CNN weights -> Keras weights) and
    ``kzoo convert labelme|via|yolo SRC --output instances.json`` (annotations -> COCO instances json)."""
    output = args.output or args.output_option
    if not output:
        raise ValueError("give the file to write: kzoo convert SOURCE SRC OUTPUT (or --output OUTPUT)")
    if args.source == "torchvision":
        from kzoo.applications.torchvision import convert_torchvision_cli
        from kzoo.data.annotation_tools import refuse_output_over_input

        refuse_output_over_input(output, [("the checkpoint", args.src)])
        print(convert_torchvision_cli(args.src, output, args.num_classes))
        return 0
    from kzoo.data.annotation_tools import write_coco_from_tool

    names = tuple(n.strip() for n in args.class_names.split(",")) if args.class_names else None
    summary = write_coco_from_tool(
        args.source,
        args.src,
        output,
        images=args.images,
        class_names=names,
        yolo_data_yaml=args.data_yaml,
        class_attribute=args.class_attribute,
    )
    from kzoo.data.annotation_builder import REPAIRS

    rows = [
        ("item", "value"),
        ("COCO json", summary["output"]),
        ("images folder", summary["image_dir"]),
        ("images", summary["images"]),
        ("instances", summary["instances"]),
    ]
    lines = _wrap_names(summary["categories"])
    rows += [(f"categories ({len(summary['categories'])})" if i == 0 else "", line) for i, line in enumerate(lines)]
    if summary.get("ignore_regions"):
        rows.append(("ignore regions (__ignore__, _background_): crowd", summary["ignore_regions"]))
    if summary["merged_images"]:
        rows.append(("merged: images annotated in several files", summary["merged_images"]))
    problems = sorted(summary["problems"].items())
    rows += [(f"repaired (kept): {kind}", count) for kind, count in problems if kind in REPAIRS]
    rows += [(f"dropped: {kind}", count) for kind, count in problems if kind not in REPAIRS]
    _print_table(f"kzoo convert {args.source} {args.src}", rows)
    return 0


def _wrap_names(names: list[str], width: int = 72) -> list[str]:
    """Comma-separated names in lines of at most ``width`` characters (a table stays terminal-wide)."""
    lines, line = [], ""
    for name in names:
        piece = name if not line else f"{line}, {name}"
        if line and len(piece) > width:
            lines.append(line + ",")
            piece = name
        line = piece
    return lines + [line] if line or not lines else lines


#: The largest value of the integer types flags become (counts and sizes: int32; pixel caps, versions: int64).
INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1


def _fraction(text: str) -> float:
    """argparse ``type=``: a finite number in [0, 1] (a probability, a score or IoU threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _count(low: int = 1, high: int = INT32_MAX):
    """argparse ``type=``: an int in ``[low, high]`` (by default a positive count that fits int32)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        if value > high:
            kind = " (int32)" if high == INT32_MAX else " (int64)" if high == INT64_MAX else ""
            raise argparse.ArgumentTypeError(f"must be <= {high}{kind}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, ``kzoo COMMAND: error: --flag must be ...`` (exit 2)."""

    def error(self, message: str):
        flag = re.fullmatch(r"argument ([^:]+): (must .*)", message)
        if flag:  # "argument --top: must be >= 1, got 0" -> "--top must be >= 1, got 0"
            message = f"{flag[1].split('/')[0]} {flag[2]}"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from kzoo import __version__
    from kzoo.data.options import ANNOTATION_TOOLS

    parser = _Parser(prog="kzoo", description="kzoo: Network In Network and Mask R-CNN for Keras")
    parser.add_argument("--version", action="version", version=f"kzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_overrides(p: argparse.ArgumentParser) -> None:
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "config",
            help="YAML experiment config (configs/*.yaml, a run's OUTPUT_DIR/config.yaml, or "
            "the run folder OUTPUT_DIR itself)",
        )
        with_overrides(p)

    p = sub.add_parser("train", help="train a model from a YAML config (resumes from its output_dir)")
    with_config(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="delete the run in output_dir first and start over (refused, "
        "deleting nothing, while another process trains there)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate trained weights on the config's evaluation split")
    with_config(p)
    p.add_argument("--weights", help="weights file (default: OUTPUT_DIR/model.weights.h5)")
    p.add_argument("--results", help="Mask R-CNN: also write the COCO results json here (and *_metrics.json)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export trained weights as a SavedModel (TF Serving) or TFLite files")
    p.description = (
        "Export trained weights. Nothing is replaced silently, and every write is atomic (a temporary file or "
        "folder renamed into place): a SavedModel goes to OUTPUT/MODEL_NAME/<version>/, the next free version "
        "unless --version is given, and an existing version is refused (versions are never replaced: TF Serving "
        "does not reload a version number it has loaded); a TFLite file OUTPUT/MODEL_NAME_<quantize>.tflite that "
        "exists is refused, before any work, unless --overwrite (then it is replaced)."
    )
    with_config(p)
    p.add_argument("--weights", help="weights file (default: OUTPUT_DIR/model.weights.h5)")
    p.add_argument("--format", choices=["saved_model", "tflite"], default="saved_model")
    p.add_argument("--output", help="export base directory (default: OUTPUT_DIR/export)")
    p.add_argument("--model-name", help="model name in the TF Serving layout (default: the config's name)")
    p.add_argument(
        "--version",
        type=_count(1, INT64_MAX),
        help="SavedModel version (default: next free); an existing one is refused",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="TFLite: replace existing .tflite files (atomically) instead of refusing them",
    )
    p.add_argument(
        "--input-dtype",
        choices=["float32", "uint8"],
        default="float32",
        help="NIN SavedModel images input (Mask R-CNN SavedModels and all .tflite files take uint8)",
    )
    p.add_argument("--warmup", type=_count(0), default=0, help="write this many TF Serving warmup requests")
    p.add_argument(
        "--quantize",
        nargs="+",
        choices=["none", "float16", "dynamic", "int8"],
        default=["none", "float16", "dynamic", "int8"],
        help="TFLite variants",
    )
    p.add_argument("--eval-examples", type=_count(1), help="evaluate exports on the first N test examples only")
    p.add_argument(
        "--max-image-pixels",
        type=_count(1, INT64_MAX),
        help="SavedModel serving_bytes: refuse images of more pixels (height x width) than this, read "
        "from their header before decoding (default 40 million)",
    )
    p.add_argument(
        "--full-image-masks",
        action="store_true",
        help="Mask R-CNN SavedModel: also output masks pasted into the full image",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="classify (NIN SavedModel) or detect and segment (Mask R-CNN) images")
    p.add_argument(
        "images",
        nargs="+",
        help="image files (JPEG, PNG, GIF, BMP, WebP, TIFF), folders of them, glob "
        "patterns ('photos/*.jpg'), and with --mask-rcnn video files (MP4, MOV, "
        "AVI, MKV, WebM)",
    )
    p.add_argument(
        "--saved-model",
        help="an exported SavedModel (TF Serving model dir or version dir; its task is found from its outputs: NIN "
        "classifiers); a SavedModel is a program: load only ones you trust",
    )
    p.add_argument(
        "--config", metavar="CONFIG", help="a trained run's config (or its folder): its task and weights are used"
    )
    p.add_argument("--mask-rcnn", metavar="CONFIG", help="the same as --config (kept for older commands)")
    p.add_argument("--top", type=_count(1), help="NIN: the classes listed per image (default 3)")
    p.add_argument("--cam", metavar="DIR", help="NIN: write the top class's confidence map over each image as PNG")
    p.add_argument("--weights", help="Mask R-CNN weights file (default: the config's OUTPUT_DIR/model.weights.h5)")
    p.add_argument("--output", default="predictions", help="folder for the annotated PNGs and videos (Mask R-CNN)")
    p.add_argument(
        "--score-threshold", type=_fraction, help="Mask R-CNN: the detections kept and drawn (default 0.5, the demo's)"
    )
    with_overrides(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("convert", help="convert torchvision weights, or labelme / VIA / YOLO annotations to COCO json")
    p.add_argument("source", choices=["torchvision", *ANNOTATION_TOOLS], help="what SRC comes from")
    p.add_argument(
        "src",
        help="torchvision: a maskrcnn_resnet50_fpn checkpoint (.pth); labelme: a folder of json "
        "files; via: a VIA project json; yolo: a folder of label txt files",
    )
    p.add_argument("output", nargs="?", help="file to write (.weights.h5 for torchvision, .json for annotations)")
    p.add_argument("--output", dest="output_option", metavar="OUTPUT", help="the same as the OUTPUT argument")
    p.add_argument("--num-classes", type=_count(2), default=91, help="torchvision: classes including the background")
    p.add_argument("--images", help="via / yolo: the image folder (labelme: a fallback folder)")
    p.add_argument(
        "--class-names",
        help="labelme / via / yolo: comma-separated classes in label order (default: "
        "the labels found, sorted; yolo: the names of --data-yaml)",
    )
    p.add_argument("--data-yaml", help="yolo: the data.yaml with the class names")
    p.add_argument(
        "--class-attribute",
        help="via: the region attribute holding the class (default: the project's "
        "only attribute, or its only one named class/label/name/category/type/"
        "object; regions without it are dropped)",
    )
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "demo",
        help="train, evaluate and predict on built-in shapes (Mask R-CNN; NIN: --config configs/nin_shapes.yaml)",
    )
    p.add_argument("--config", default=DEMO_CONFIG, help=f"demo config (default {DEMO_CONFIG})")
    p.add_argument("--output-dir", help=f"default: {DEMO_OUTPUT_ROOT}/<config name>")
    p.add_argument("--fresh", action="store_true", help="delete the demo's earlier run first")
    with_overrides(p)
    p.set_defaults(func=cmd_demo)
    return parser


#: The config fields that name files or folders (relative ones are read from the folder kzoo runs in).
_DATA_PATH_FIELDS = ("train_annotations", "train_images", "eval_annotations", "eval_images", "yolo_data_yaml")


def _check_path(path: str | None, what: str, kind: str = "file") -> None:
    """FileNotFoundError naming ``what`` unless ``path`` (when given) is a ``kind``: file, folder, or either."""
    if path is None:
        return
    exists = {"file": os.path.isfile, "folder": os.path.isdir, "file or folder": os.path.exists}[kind](path)
    if not exists:
        where = "" if os.path.isabs(path) else f" (relative to the current folder {os.getcwd()})"
        raise FileNotFoundError(f"{what} {kind} not found: {path}{where}")


def _check_config_paths(config) -> None:
    """The files and folders a config's data section names exist; relative paths are read from the current folder,
    which the message says (a run's config.yaml keeps them as they were written)."""
    data = getattr(config, "data", None)
    for field in _DATA_PATH_FIELDS:
        value = getattr(data, field, None)
        if value:
            _check_path(value, f"data.{field}", "folder" if field.endswith("_images") else "file or folder")
    init = getattr(getattr(config, "model", None), "init_weights", None)
    if init and (os.sep in init or init.endswith(".h5")):
        _check_path(init, "model.init_weights")


def check_before_tensorflow(args) -> None:
    """What can be checked without TensorFlow, before it loads (several seconds): the config (its keys, values and
    data paths), the files named on the command line (weights, images and videos, SavedModel, the source of a
    conversion). A mistake fails at once, naming the problem.

    Raises:
        FileNotFoundError, ValueError (ConfigError): the first problem found.
    """
    from kzoo.config import load_config
    from kzoo.data.images import expand_image_inputs

    config_path = getattr(args, "config", None) or getattr(args, "mask_rcnn", None)
    if config_path is not None:
        overrides = list(args.set or [])
        if args.command == "demo" and args.output_dir:
            overrides = [f"output_dir={args.output_dir}", *overrides]
        config = load_config(config_path, overrides)
        if args.command in ("train", "evaluate", "export", "demo"):
            _check_config_paths(config)
    if args.command == "predict":  # the inputs first: a bad image is named whatever else is wrong
        from kzoo.data.images import inspect_image_file
        from kzoo.data.video import VIDEO_EXTENSIONS, is_video_path, video_info

        args.images = expand_image_inputs(args.images, VIDEO_EXTENSIONS)
        for path in args.images:
            video_info(path) if is_video_path(path) else inspect_image_file(path)
        _check_path(args.saved_model, "--saved-model", "folder")
    _check_path(getattr(args, "weights", None), "--weights")
    if args.command == "convert" and not os.path.exists(args.src):
        raise FileNotFoundError(f"{args.source} input not found: {args.src}")


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras with file descriptor 2 pointed at /dev/null: their C++ libraries print
    start-up lines (oneDNN, CUDA probing on CPU machines) before any log level setting applies. The runtime is
    not initialized here (MultiWorkerMirroredStrategy must configure it first)."""
    if "tensorflow" in sys.modules:
        return
    from kzoo.utils.native_output import native_stderr_silenced

    with native_stderr_silenced():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread the way Ctrl-C raises ``KeyboardInterrupt`` (so cleanups run)."""


#: The exit status of a run stopped by Ctrl-C (128 + SIGINT) and by SIGTERM (128 + SIGTERM), as shells report them.
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_NO_PERMISSION = (errno.EACCES, errno.EPERM, errno.EROFS)


def _first_line(error: BaseException, limit: int = 300) -> str:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _write_problem(error: BaseException) -> str | None:
    """``"no space left on device"`` / ``"permission denied"`` when ``error`` is a full disk or a refused write
    (an OSError, or what TF and h5py raise for one), else None."""
    import tensorflow as tf

    code = getattr(error, "errno", None)
    text = str(error)
    if code in _DISK_FULL or "No space left on device" in text or "Disk quota exceeded" in text:
        return "no space left on device"
    if code in _NO_PERMISSION or (
        isinstance(error, (OSError, tf.errors.OpError))
        and ("Permission denied" in text or "Read-only file system" in text)
    ):
        return "permission denied"
    return None


def _resume_note(args, error: BaseException) -> str:
    """Where a stopped run stands and how to go on (from the ``kzoo_run`` the training loop attaches), or ``""``."""
    progress = getattr(error, "kzoo_run", None)
    if progress is None:
        return ""
    again = "the same command without --fresh" if getattr(args, "fresh", False) else "the same command"
    if progress.checkpoint_epoch:
        return (
            f"; the last checkpoint (epoch {progress.checkpoint_epoch}, in "
            f"{os.path.join(progress.output_dir, 'checkpoints')}) is intact: {again} resumes from it"
        )
    return f"; no epoch had finished, so there is no checkpoint yet in {progress.output_dir}: {again} starts over"


def _stopped(args, error: BaseException) -> tuple[str, int] | None:
    """The one line and exit status for a run stopped by Ctrl-C, SIGTERM, a full disk or a refused write."""
    if isinstance(error, KeyboardInterrupt):
        what = "stopped by SIGTERM" if isinstance(error, Terminated) else "interrupted (Ctrl-C)"
        code = EXIT_TERMINATED if isinstance(error, Terminated) else EXIT_INTERRUPTED
        return f"kzoo {args.command}: {what}{_resume_note(args, error)}", code
    problem = _write_problem(error)
    if problem is None:
        return None
    where = getattr(error, "filename", None)
    detail = f" ({where})" if where and where not in str(error) else ""
    fix = "free some space" if problem.startswith("no space") else "fix the permissions"
    note = _resume_note(args, error)
    note = f"{note} once you {fix}" if note else ""
    return f"kzoo {args.command}: error: {problem}: {_first_line(error)}{detail}{note}", 2


def main(argv: list[str] | None = None) -> int:
    """Run the ``kzoo`` command line; returns the exit status: 0, 2 for an error (one line on stderr, no
    traceback), 130 for Ctrl-C and 143 for SIGTERM (one line saying where the run stands and how to resume).
    A config key that has moved (read for now, with a ``DeprecationWarning`` Python would hide) is one
    ``kzoo: note:`` line on stderr, once per key."""
    with warnings.catch_warnings():
        warnings.filterwarnings("always", message=MOVED_KEY_NOTE, category=DeprecationWarning)
        python_show, noted = warnings.showwarning, set()

        def show(message, category, filename, lineno, file=None, line=None):
            if not (issubclass(category, DeprecationWarning) and re.match(MOVED_KEY_NOTE, str(message))):
                python_show(message, category, filename, lineno, file, line)
            elif str(message) not in noted:  # the config is read more than once (checks, then the command)
                noted.add(str(message))
                print(f"kzoo: note: {message}", file=sys.stderr)

        warnings.showwarning = show
        return _run(argv)


#: The start of the message of a config key read from its old place (kzoo.utils.structs.move_flat_keys).
MOVED_KEY_NOTE = r"config key '[^']+' has moved to"


def _run(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as usage:  # a usage error was printed (one line): return its status; --help exits 0
        if usage.code == 2:
            return 2
        raise
    try:
        check_before_tensorflow(args)
    except (ValueError, OSError) as error:
        print(f"kzoo {args.command}: error: {error}", file=sys.stderr)
        return 2
    from kzoo.utils.interrupts import stop_signals_raise

    with stop_signals_raise(Terminated):  # Ctrl-C and SIGTERM, never lost
        try:
            _import_tensorflow_quietly()
            from kzoo.training.loop import TrainingDivergedError
            from kzoo.training.run_lock import RunLockedError

            try:
                return args.func(args)
            except (ValueError, OSError, TrainingDivergedError, RunLockedError) as error:
                stopped = _stopped(args, error)
                if stopped is not None:
                    print(stopped[0], file=sys.stderr)
                    return stopped[1]
                print(f"kzoo {args.command}: error: {error}", file=sys.stderr)
                return 2
        except BaseException as error:  # Ctrl-C, SIGTERM, or a full disk / refused write that TF reports its way
            stopped = _stopped(args, error) if isinstance(error, Exception | KeyboardInterrupt) else None
            if stopped is None:
                raise
            print(stopped[0], file=sys.stderr)
            return stopped[1]


if __name__ == "__main__":
    sys.exit(main())
