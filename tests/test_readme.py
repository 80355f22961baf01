"""The pages people read, checked against the code: README.md and docs/*.md.

- README.md's first-hour commands run in the order written (tiny settings, in an empty folder, so the configs come
  from the package);
- every ``kzoo`` command of a ``bash`` block of README.md and docs/*.md parses and loads its config, every
  ``python`` block compiles, every ``yaml`` block is YAML (and a config where it looks like one);
- the slow ``test_page_runs_in_order`` runs every page's ``python`` blocks and ``kzoo`` commands in the order
  written, in an empty folder holding tiny runs of the two demos, with tiny settings;
- directives in HTML comments just before a block: ``<!-- test: skip (reason) -->`` (rare, with a reason),
  ``<!-- test: replace OLD => NEW -->`` (tiny settings for a Python block), ``<!-- test: file NAME -->`` (the
  block is written to NAME, e.g. the tutorial's config);
- ``mkdocs build --strict`` builds the site (where mkdocs is installed), and benchmarks/README.md is the page
  ``benchmarks/render.py`` renders from the committed results.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kzoo.cli import build_parser, main
from kzoo.config import config_from_dict, load_config, packaged_configs

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").rglob("*.md"))
PAGES = [README, *DOCS]
#: at most this many blocks of all the pages may be skipped (each with its reason)
MAX_SKIPS = 8
# what makes each demo tiny (appended to every command that takes a config of that demo)
TINY = {
    "mask_rcnn_shapes": [
        "train.epochs=1",
        "data.train_examples=8",
        "data.eval_examples=4",
        "train.batch_size=4",
        "model.rpn.pre_nms_top_k_train=100",
        "model.roi_sampling.samples_per_image=32",
    ],
    "nin_shapes": ["train.epochs=1", "data.train_examples=128", "data.eval_examples=32", "train.batch_size=32"],
    # the tutorial's config (docs/tutorial.md): no COCO weights offline, so a small convnet from scratch
    "my_objects": [
        "model.init_weights=null",
        "model.backbone.name=small_convnet",
        "model.backbone.norm=group",
        "model.backbone.norm_epsilon=1e-5",
        "model.fpn.channels=32",
        "model.box_head.fc_dim=64",
        "model.mask_head.channels=32",
        "model.mask_head.num_convs=1",
        "model.input.min_size=128",
        "model.input.max_size=128",
        "model.anchors.sizes=[8, 16, 32, 64, 128]",
        "model.rpn.pre_nms_top_k_train=100",
        "model.rpn.post_nms_top_k_train=100",
        "model.rpn.pre_nms_top_k_test=100",
        "model.rpn.post_nms_top_k_test=50",
        "model.roi_sampling.samples_per_image=32",
        "model.detection.max_detections=20",
        "data.scale_jitter=null",
        "train.batch_size=4",
        "train.phases=[{epochs: 1, trainable_layers: heads}, {epochs: 1, trainable_layers: all, learning_rate: 0.001}]",
    ],
}


@dataclasses.dataclass
class Block:
    """A fenced code block of a page and the ``<!-- test: ... -->`` directives just above it."""

    page: str
    line: int
    lang: str
    code: str
    directives: list[tuple[str, str]]

    @property
    def skip(self) -> str | None:
        """The reason given for skipping the block, ``""`` for a skip without a reason, ``None`` to run it."""
        return next((argument for kind, argument in self.directives if kind == "skip"), None)

    def python(self) -> str:
        """The code with the directives' replacements (tiny settings) applied."""
        code = self.code
        for kind, argument in self.directives:
            if kind == "replace":
                old, new = (part.strip() for part in argument.split("=>", 1))
                assert old in code, f"{self.page}:{self.line}: replace {old!r}: not in the block"
                code = code.replace(old, new)
        return code


DIRECTIVE = re.compile(r"<!--\s*test:\s*(\w+)\s*(.*?)\s*-->")


def page_blocks(path: Path) -> list[Block]:
    """Every fenced block of a markdown page, in order, with the directives of the comment lines above it."""
    blocks, directives, lines = [], [], path.read_text().splitlines()
    name = str(path.relative_to(ROOT))
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^(\s*)```(\w*)\s*$", line)
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            indent = len(fence.group(1))
            code = "\n".join(text[indent:] for text in lines[i + 1 : end]) + "\n"
            blocks.append(Block(name, i + 1, fence.group(2), code, directives))
            directives, i = [], end + 1
            continue
        match = DIRECTIVE.search(line)
        if match:
            directives = [*directives, (match.group(1), match.group(2))]
        elif line.strip():
            directives = []
        i += 1
    return blocks


def block_commands(block: Block) -> list[list[str]]:
    """The ``kzoo ...`` commands of a ``bash`` block, in order, as argv lists (comments dropped)."""
    commands = []
    for line in block.code.replace("\\\n", " ").splitlines():
        for part in line.split("&&"):
            words = shlex.split(part.split("  #")[0].strip())
            if words and words[0] == "kzoo":
                commands.append(words[1:])
    return commands


def page_commands(path: Path) -> list[list[str]]:
    """Every ``kzoo ...`` command of a page's ``bash`` blocks, in order."""
    return [argv for block in page_blocks(path) if block.lang == "bash" for argv in block_commands(block)]


def readme_commands() -> list[list[str]]:
    """Every ``kzoo ...`` command of README.md's ``bash`` blocks, in order, as argv lists (comments dropped)."""
    return page_commands(README)


def _tiny_demo(argv: list[str]) -> list[str]:
    """A ``demo`` command with the tiny settings of its config appended."""
    name = "nin_shapes" if "nin_shapes" in " ".join(argv) else "mask_rcnn_shapes"
    return argv + [arg for override in TINY[name] for arg in ("--set", override)]


def test_readme_lists_the_first_hour_commands():
    commands = [" ".join(c) for c in readme_commands()]
    assert commands.index("demo") < commands.index("demo --config configs/nin_shapes.yaml")
    assert any(c.startswith("evaluate runs/demo/mask_rcnn_shapes/config.yaml") for c in commands)
    assert any(c.startswith("predict runs/demo/mask_rcnn_shapes/samples/") for c in commands)


@pytest.mark.slow
def test_first_hour_commands_run_in_order(tmp_path, monkeypatch, capsys):
    """The demos and the commands on their output, as written, in an empty folder (tiny settings)."""
    monkeypatch.chdir(tmp_path)
    ran = []
    for argv in readme_commands():
        if argv[0] != "demo" and "runs/demo/" not in " ".join(argv):
            continue
        argv = _tiny_demo(argv) if argv[0] == "demo" else argv
        assert main(argv) == 0, f"kzoo {' '.join(argv)}:\n{capsys.readouterr().err[-3000:]}"
        ran.append(argv[0])
    out = capsys.readouterr().out
    assert ran.count("demo") == 2 and {"evaluate", "export", "predict"} <= set(ran), ran
    assert "runs/demo/mask_rcnn_shapes/model.weights.h5" in out and "runs/demo/nin_shapes/model.weights.h5" in out
    assert (tmp_path / "predictions" / "sample0_detections.png").is_file()
    assert (tmp_path / "predictions" / "sample0_cam.png").is_file()
    # a demo run again says that it has finished instead of training (or failing) again
    assert main(_tiny_demo(["demo", "--config", "configs/nin_shapes.yaml"])) == 0
    assert "already finished" in capsys.readouterr().out


# -- every page: README.md and docs/*.md ----------------------------------------------------------------------------


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _write_files(path: Path, folder: Path) -> None:
    """The page's ``<!-- test: file NAME -->`` blocks, written into ``folder``."""
    for block in page_blocks(path):
        for kind, name in block.directives:
            if kind == "file":
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_text(block.code)


def _config_of(args) -> str | None:
    return getattr(args, "config", None) or getattr(args, "mask_rcnn", None)


def _tiny(argv: list[str], args) -> list[str]:
    """``argv`` with the tiny settings of its config (a demo, or a config of :data:`TINY` by its file name)."""
    if argv[0] == "demo":
        return _tiny_demo(argv)
    config = _config_of(args)
    name = Path(config).stem if config else None
    if name in TINY and not config.startswith("runs/"):
        return argv + [arg for override in TINY[name] for arg in ("--set", override)]
    return argv


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_command_parses_and_loads_its_config(page, tmp_path, monkeypatch):
    """Every ``kzoo`` command of the page parses; the configs it names load (with their tiny settings too), shipped
    configs and the ones the page writes itself (``test: file``) alike."""
    monkeypatch.chdir(tmp_path)
    _write_files(page, tmp_path)
    parser = build_parser()
    for argv in page_commands(page):
        args = parser.parse_args(argv)
        config = _config_of(args)
        if (
            config
            and not config.startswith("runs/")
            and (os.path.isfile(config) or os.path.basename(config) in packaged_configs())
        ):
            load_config(config, args.set or [])
            tiny = parser.parse_args(_tiny(argv, args))
            load_config(config, tiny.set or [])


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_code_block_is_valid(page):
    """``python`` blocks compile (with their replacements), ``yaml`` blocks are YAML, and a YAML block with
    config sections is a valid config (a partial one completed by the defaults)."""
    blocks = page_blocks(page)
    for block in blocks:
        where = f"{block.page}:{block.line}"
        for kind, _ in block.directives:
            assert kind in ("skip", "replace", "file"), f"{where}: unknown directive 'test: {kind}'"
        if block.lang == "python":
            compile(block.python(), where, "exec")
        elif block.lang == "yaml":
            values = yaml.safe_load(block.code)
            assert isinstance(values, dict), where
            if set(values) & {"task", "model", "data", "train", "strategy"}:
                task = values.get("task", "mask_rcnn" if block.page != "README.md" else "classification")
                config_from_dict({**values, "task": task})


def test_skipped_blocks_are_rare_and_say_why():
    skipped = [block for page in PAGES for block in page_blocks(page) if block.skip is not None]
    for block in skipped:
        assert re.fullmatch(r"\(.{10,}\)", block.skip), (
            f"{block.page}:{block.line}: a skip needs its reason: <!-- test: skip (why) -->, got {block.skip!r}"
        )
    assert len(skipped) <= MAX_SKIPS, [f"{b.page}:{b.line} {b.skip}" for b in skipped]


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmarks_page_is_rendered_from_the_committed_results():
    render = _module(ROOT / "benchmarks" / "render.py", "benchmarks_render")
    results = render.load_results(committed_only=True)  # a local run not committed yet does not count
    assert results, "benchmarks/results/*.json are committed"
    for name, result in results.items():
        assert result.get("tables") and result.get("machine", {}).get("date"), name
    assert (ROOT / "benchmarks" / "README.md").read_text() == render.render(results), (
        "benchmarks/README.md is not the rendered page: run python benchmarks/render.py"
    )


def test_generated_reference_pages_cover_every_config_key_and_command():
    from kzoo.config import TASKS

    hooks = _module(ROOT / "docs" / "hooks.py", "docs_hooks")
    config_page, cli_page = hooks.config_reference(), hooks.cli_reference()

    def keys(cls, prefix=""):
        for field in dataclasses.fields(cls):
            value = field.default if field.default is not dataclasses.MISSING else None
            if dataclasses.is_dataclass(value):
                yield from keys(type(value), f"{prefix}{field.name}.")
            else:
                yield prefix + field.name

    for cls in TASKS.values():
        for key in keys(cls):
            assert f"| `{key}` |" in config_page, key
    assert "one of `per_image`, `padded`" in config_page  # a choice read from a module constant
    for command in ("train", "evaluate", "export", "predict", "convert", "demo"):
        assert f"### `kzoo {command}`" in cli_page and f"usage: kzoo {command}" in cli_page


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed (pip install -e .[docs])")
def test_docs_site_builds_strictly(tmp_path):
    """``mkdocs build --strict``: no broken link or anchor, no missing API reference, no docstring griffe cannot
    read."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "config" / "index.html").is_file()


# -- the slow walk: every page runs as written -----------------------------------------------------------------------

#: runs one page's steps in a fresh interpreter: Python blocks share one namespace, as in a notebook
_RUNNER = """
import json, sys
from kzoo.cli import main
namespace = {"__name__": "__main__"}
for step in json.load(open(sys.argv[1])):
    print(f"--- {step['where']}: {step.get('argv') or step['kind']}", flush=True)
    if step["kind"] == "python":
        exec(compile(step["code"], step["where"], "exec"), namespace)
    elif step["kind"] == "file":
        open(step["name"], "w").write(step["code"])
    elif main(step["argv"]) != 0:
        sys.exit(f"{step['where']}: kzoo {' '.join(step['argv'])} failed")
"""


def page_steps(path: Path) -> list[dict]:
    """What running a page means: its blocks in order (skipped ones left out), commands with tiny settings."""
    parser, steps = build_parser(), []
    for block in page_blocks(path):
        where = f"{block.page}:{block.line}"
        if block.skip is not None:
            continue
        for kind, name in block.directives:
            if kind == "file":
                steps.append({"kind": "file", "where": where, "name": name, "code": block.code})
        if block.lang == "python":
            steps.append({"kind": "python", "where": where, "code": block.python()})
        elif block.lang == "bash":
            for argv in block_commands(block):
                steps.append({"kind": "kzoo", "where": where, "argv": _tiny(argv, parser.parse_args(argv))})
    return steps


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """A folder holding tiny runs of both demos (``runs/demo/...``), as the pages' commands expect."""
    folder = tmp_path_factory.mktemp("demos")
    here = os.getcwd()
    os.chdir(folder)
    try:
        for argv in (["demo"], ["demo", "--config", "configs/nin_shapes.yaml"]):
            assert main(_tiny_demo(argv)) == 0, argv
    finally:
        os.chdir(here)
    return folder


RUNNABLE = [page for page in PAGES if any(step["kind"] != "file" for step in page_steps(page))]


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=_page_id)
def test_page_runs_in_order(page, demo_runs, tmp_path):
    """Every ``python`` block and ``kzoo`` command of the page, in the order written, in one fresh interpreter, in a
    folder that holds tiny runs of the demos (tiny settings for the page's own configs and models)."""
    shutil.copytree(demo_runs / "runs", tmp_path / "runs")
    steps = tmp_path / "steps.json"
    steps.write_text(json.dumps(page_steps(page)))
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(steps)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_HOME": str(tmp_path / ".keras")},
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
