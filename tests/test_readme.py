"""README.md's commands: the first-hour ones run in the order written (tiny settings, in an empty folder, so the
configs come from the package); every other ``kzoo`` command in a ``bash`` block parses and loads its config."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from kzoo.cli import build_parser, main
from kzoo.config import load_config

README = Path(__file__).resolve().parents[1] / "README.md"
# what makes each demo tiny (appended to every command that takes a config of that demo)
TINY = {
    "mask_rcnn_shapes": ["train.epochs=1", "data.train_examples=8", "data.eval_examples=4", "train.batch_size=4",
                         "model.rpn_pre_nms_top_k_train=100", "model.roi_samples_per_image=32"],
    "nin_shapes": ["train.epochs=1", "data.train_examples=128", "data.eval_examples=32", "train.batch_size=32"],
}  # fmt: skip


def readme_commands() -> list[list[str]]:
    """Every ``kzoo ...`` command of README.md's ``bash`` blocks, in order, as argv lists (comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part.split("  #")[0].strip())
                if words and words[0] == "kzoo":
                    commands.append(words[1:])
    return commands


def _tiny_demo(argv: list[str]) -> list[str]:
    """A ``demo`` command with the tiny settings of its config appended."""
    name = "nin_shapes" if "nin_shapes" in " ".join(argv) else "mask_rcnn_shapes"
    return argv + [arg for override in TINY[name] for arg in ("--set", override)]


def test_readme_lists_the_first_hour_commands():
    commands = [" ".join(c) for c in readme_commands()]
    assert commands.index("demo") < commands.index("demo --config configs/nin_shapes.yaml")
    assert any(c.startswith("evaluate runs/demo/mask_rcnn_shapes/config.yaml") for c in commands)
    assert any(c.startswith("predict runs/demo/mask_rcnn_shapes/samples/") for c in commands)


def test_every_readme_command_parses_and_loads_its_config():
    parser = build_parser()
    for argv in readme_commands():
        args = parser.parse_args(argv)
        config = getattr(args, "config", None)
        if config and not config.startswith("runs/"):
            load_config(config, args.set or [])


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
