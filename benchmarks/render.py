"""Write benchmarks/README.md from the committed results in benchmarks/results/*.json.

    python benchmarks/render.py            # rewrite benchmarks/README.md
    python benchmarks/render.py --check    # exit 1 when the committed page differs from the rendered one

Every benchmark script writes ``benchmarks/results/<name>.json`` through ``common.write_results``:
``{"benchmark", "machine": {"cpu", "cores", "python", "versions", "date"}, "tables": [{"title", "rows"}],
"results", "notes"?, "source"?}``; the first row of a table is its header. This script owns only the words
around the tables (which section a result belongs to, what it times, the command that reproduces it), in
:data:`SECTIONS`; every figure on the page comes from a JSON file. A result file that no section lists is an
error, so a new benchmark cannot be forgotten.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
PAGE = os.path.join(HERE, "README.md")

#: (section, [(result name, heading, what is measured, command that reproduces it)])
SECTIONS: list[tuple[str, list[tuple[str, str, str, str]]]] = [
    (
        "Trained models",
        [
            (
                "nin_fashion_mnist",
                "NIN on Fashion-MNIST",
                "Top-1 accuracy of the shipped weights on the 10,000 test images; the training time of the whole run.",
                "apt-get install dataset-fashion-mnist && kzoo train configs/nin_fashion_mnist.yaml",
            ),
            (
                "mask_rcnn_shapes",
                "Mask R-CNN on the built-in shapes",
                "COCO bbox and segm AP (pycocotools) of `kzoo demo`'s model, trained from scratch, on 200 held-out "
                "images; "
                "wall time of the training epochs and of the whole command.",
                "kzoo demo",
            ),
            (
                "mask_rcnn_penn_fudan",
                "Mask R-CNN on Penn-Fudan pedestrians",
                "COCO bbox and segm AP on the 43 val photographs of a model trained from scratch on the 127 others.",
                "kzoo train configs/mask_rcnn_penn_fudan.yaml && kzoo evaluate configs/mask_rcnn_penn_fudan.yaml",
            ),
            (
                "fine_tune_shapes",
                "Fine-tuning: transfer against scratch",
                "The same number of steps from random weights and from the shapes demo's weights, on two classes the "
                "pre-trained model never saw; wall time of each run.",
                "python benchmarks/fine_tune_shapes.py",
            ),
        ],
    ),
    (
        "Speed and memory",
        [
            (
                "nin",
                "NIN training and inference",
                "Training images per second (kzoo's step against a plain `keras.Sequential` with `fit`), the input "
                "pipeline alone, and the latency of each export at batch 1 and 64.",
                "python benchmarks/nin.py",
            ),
            (
                "mask_rcnn_train",
                "Mask R-CNN training step against torchvision",
                "One SGD step of R50-FPN (forward, targets, losses, backward, update), batch 2, 512x512, random "
                "weights, "
                "stem and first stage frozen in both; median of 5 after 2 warm-ups; peak RSS of the process; kzoo and "
                "torchvision alternate in rounds.",
                "python benchmarks/mask_rcnn.py --mode train --rounds 3",
            ),
            (
                "mask_rcnn_inference",
                "Mask R-CNN inference against torchvision",
                "One image through R50-FPN (random weights), the mask branch on 100 forced detections / at the default "
                "score threshold; median of 5 after 2 warm-ups; each configuration in its own process for its own peak "
                "RSS.",
                "python benchmarks/mask_rcnn.py --mode inference --sizes 512 800",
            ),
            (
                "python_call",
                "The Python call",
                "`model(images)` against `tf.function(model.call)`, `model.predict` and the op-by-op eager run it "
                "replaced: "
                "Mask R-CNN R50-FPN on one uint8 image (random weights, the 800/1333 resize) and NIN on a batch of "
                "128; the "
                "first call (tracing included) and the median of later calls; each way in its own process for its "
                "own peak "
                "RSS, the ways alternating over rounds.",
                "python benchmarks/python_call.py",
            ),
            (
                "mask_rcnn_profile_train",
                "Where the training step's time goes",
                "The step run one op at a time under TensorFlow's profiler; each op family's time beside its GFLOP "
                "from "
                "the traced graph and the machine's matmul rate measured in the same process.",
                "python benchmarks/mask_rcnn_profile.py --inter-op-threads 1",
            ),
            (
                "mask_rcnn_memory",
                "Where the memory goes",
                "Resident memory of the R50-FPN training process by item (RSS deltas, and TensorFlow's allocator "
                "profile with the BFC allocator).",
                "TF_CPU_ALLOCATOR_USE_BFC=true python benchmarks/mask_rcnn_profile.py",
            ),
            (
                "roi_align",
                "RoIAlign kernels",
                "Forward (and, with `--backward`, forward plus the feature gradient) of 1000 RoIs on one map and on an "
                "FPN pyramid, against torchvision's `roi_align` and `MultiScaleRoIAlign`.",
                "python benchmarks/roi_align.py && python benchmarks/roi_align.py --backward",
            ),
            (
                "conv_filter_gradient",
                "The 3x3 convolution's kernel gradient",
                "`kzoo.ops.conv.conv2d_3x3_kernel_gradient` (nine matmuls) against oneDNN's `Conv2DBackpropFilter` by "
                "map size, and the training step with and without it.",
                "python benchmarks/conv_filter_gradient.py",
            ),
        ],
    ),
    (
        "Export",
        [
            (
                "mask_rcnn_export",
                "Mask R-CNN exports: size and latency",
                "File size and one-image latency of the Keras model, the SavedModel and each TFLite variant (LiteRT, "
                "XNNPACK, 2 threads).",
                "python benchmarks/mask_rcnn.py --mode export && "
                "python benchmarks/mask_rcnn_export.py --config configs/mask_rcnn_r50_fpn.yaml",
            ),
            (
                "mask_rcnn_export_parity",
                "Mask R-CNN exports: parity on real photographs",
                "Each TFLite file against the SavedModel on the Penn-Fudan val photographs, detections matched one to "
                "one by box IoU, masks compared pasted into the image; two Keras controls show what float rounding and "
                "invisible input noise alone do.",
                "python benchmarks/mask_rcnn_export_parity.py --weights runs/mask_rcnn_penn_fudan/model.weights.h5",
            ),
        ],
    ),
    (
        "Numerics",
        [
            (
                "numerics",
                "Parity and kernel checks",
                "One-off measurements that the code's design relies on (the docstrings cite this table); the tests "
                "check the tolerances.",
                "python -m pytest -q tests/applications/torchvision tests/layers/test_roi_align.py "
                "tests/ops/test_crop_and_resize.py",
            ),
        ],
    ),
]


def committed_names(results_dir: str = RESULTS_DIR) -> set[str] | None:
    """The result files git tracks (``None`` outside a git checkout): a benchmark run whose JSON is not committed yet
    does not count as a result of the repository."""
    import subprocess

    try:
        listed = subprocess.run(["git", "ls-files", "."], cwd=results_dir, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return {os.path.basename(line) for line in listed.stdout.split()}


def load_results(results_dir: str = RESULTS_DIR, committed_only: bool = False) -> dict[str, dict]:
    """Every ``*.json`` of ``results_dir`` (only the committed ones with ``committed_only``, in a git checkout), by
    benchmark name (the file name without ``.json``)."""
    committed = committed_names(results_dir) if committed_only else None
    results = {}
    for name in sorted(os.listdir(results_dir)):
        if name.endswith(".json") and (committed is None or name in committed):
            with open(os.path.join(results_dir, name), encoding="utf-8") as f:
                results[name[: -len(".json")]] = json.load(f)
    return results


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[list]) -> list[str]:
    """A GitHub markdown table; the first row is the header."""
    header, *body = rows
    lines = ["| " + " | ".join(_cell(c) for c in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in body]
    return lines


def _versions(machine: dict) -> str:
    versions = machine.get("versions", {})
    return ", ".join(f"{package} {version}" for package, version in versions.items())


def measured_on(result: dict, settings: tuple) -> str:
    """The one "measured on" line of a result: its date, its machine and versions where they are not the page's
    (``settings``), and where its figures were copied from."""
    machine = result.get("machine", {})
    if ", measured on " in result.get("source", ""):  # figures copied from an earlier page, with their date
        where, _, when = result["source"].rpartition(", measured on ")
        line = f"Measured on {when} (figures copied from {where})"
    else:
        line = f"Measured on {machine.get('date', '?')[:10]}"
    if (machine.get("cpu"), machine.get("cores"), _versions(machine)) != settings:
        line += f", {machine.get('cpu', '?')}, {_versions(machine)}"
    return line + "."


def render(results: dict[str, dict]) -> str:
    """The whole page."""
    listed = {name for _, entries in SECTIONS for name, *_ in entries}
    unlisted = sorted(set(results) - listed)
    if unlisted:
        raise SystemExit(f"benchmarks/render.py: results without a section in SECTIONS: {unlisted}")
    settings = collections.Counter(
        (r["machine"].get("cpu"), r["machine"].get("cores"), _versions(r["machine"]))
        for r in results.values()
        if "machine" in r
    )
    common = settings.most_common(1)[0][0] if settings else (None, None, "")
    dates = sorted(r["machine"]["date"][:10] for r in results.values() if r.get("machine", {}).get("date"))
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python benchmarks/render.py` from benchmarks/results/*.json: edit those, not this "
        "page. -->",
        "",
        "Results of kzoo's models and kernels, one table per benchmark, each with the command that reproduces it "
        "and the date it was measured. Every figure on this page comes from a JSON file in "
        "`benchmarks/results/`; `python benchmarks/render.py` writes this page from them, and a test "
        "checks that the committed page is the rendered one.",
        "",
        "## Settings",
        "",
        f"- Machine: {common[0]}, {common[1]} cores. The VM is shared and its speed drifts (on some days it "
        "multiplied matrices at under half its usual rate), so compared configurations run in alternating rounds "
        "where the section says so.",
        f"- Versions: {common[2]}.",
        f"- Dates: {dates[0]} to {dates[-1]}." if dates else "- Dates: none yet.",
        "- What is timed: wall time, the median of repeated runs after warm-up runs (each section says how many); "
        "memory is the peak resident set size (RSS) of a process that runs one configuration only.",
        "- Each benchmark script prints its tables and writes `benchmarks/results/<name>.json` (machine, versions, "
        "date, tables); run it on a quiet machine, then `python benchmarks/render.py`.",
        "",
    ]
    for section, entries in SECTIONS:
        present = [entry for entry in entries if entry[0] in results]
        if not present:
            continue
        lines += [f"## {section}", ""]
        for name, heading, what, command in present:
            result = results[name]
            lines += [f"### {heading}", "", what, "", "```bash", command, "```", ""]
            for table in result.get("tables", []):
                if len(result["tables"]) > 1 or table.get("title"):
                    lines += [f"*{table['title']}*", ""]
                lines += markdown_table(table["rows"]) + [""]
            for note in result.get("notes", []):
                lines += [f"- {note}"]
            if result.get("notes"):
                lines += [""]
            lines += [measured_on(result, common), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="only compare the committed page with the page rendered from the committed results",
    )
    args = parser.parse_args(argv)
    page = render(load_results(committed_only=args.check))
    if args.check:
        with open(PAGE, encoding="utf-8") as f:
            if f.read() != page:
                print(
                    "benchmarks/README.md differs from the rendered page: run python benchmarks/render.py",
                    file=sys.stderr,
                )
                return 1
        return 0
    with open(PAGE, "w", encoding="utf-8") as f:
        f.write(page)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
