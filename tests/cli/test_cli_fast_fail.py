"""The CLI answers at once: arguments, configs and files are checked before TensorFlow loads (several
seconds), ``kzoo --version``, and a run folder is taken wherever its ``config.yaml`` is."""

import subprocess
import sys
import time

import pytest
import yaml

from kzoo import __version__

# a Python that runs kzoo's main and says whether TensorFlow was imported
RUN = """
import sys
from kzoo.cli import main
status = main(sys.argv[1:])
print("tensorflow imported:", "tensorflow" in sys.modules)
sys.exit(status)
"""


def _kzoo(*argv, cwd=None):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUN, *argv], capture_output=True, text=True, cwd=cwd, timeout=120)
    return done, time.perf_counter() - started


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "mistyped.yaml"], "config file not found: mistyped.yaml"),
        (["train", "configs/nin_shapes.yaml", "--set", "train.epoch=3"], "train.epoch"),
        (["evaluate", "configs/mask_rcnn_shapes.yaml", "--weights", "none.weights.h5"], "--weights file not found"),
        (["predict", "missing.png", "--mask-rcnn", "configs/mask_rcnn_shapes.yaml"], "image not found: missing.png"),
        (["predict", "photos/*.jpg", "--saved-model", "export/nin"], "no image files match"),
        (["train", "configs/mask_rcnn_penn_fudan.yaml"], "relative to the current folder"),
        (["convert", "labelme", "no_folder", "--output", "x.json"], "labelme input not found: no_folder"),
    ],
)
def test_mistakes_fail_before_tensorflow_loads(tmp_path, argv, message):
    done, seconds = _kzoo(*argv, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "tensorflow imported: False" in done.stdout
    assert seconds < 10  # the target is under 2 s; the bound only guards against importing TensorFlow on a slow CI


def test_version():
    done = subprocess.run([sys.executable, "-m", "kzoo.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"kzoo {__version__}"


def test_a_run_folder_is_a_config(tmp_path):
    from kzoo.config import load_config

    run = tmp_path / "runs" / "mine"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"task": "classification", "name": "mine", "output_dir": str(run)}))
    assert load_config(run).name == "mine"
    assert load_config(str(run) + "/").output_dir == str(run)
    with pytest.raises(IsADirectoryError, match="without a config.yaml"):
        load_config(tmp_path / "runs")


def test_a_moved_config_key_is_one_note_per_key(tmp_path):
    config = tmp_path / "old.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "mask_rcnn",
                "output_dir": str(tmp_path / "run"),
                "model": {"num_classes": 4, "backbone": "small_convnet", "rpn_nms_threshold": 0.6},
            }
        )
    )
    done, _ = _kzoo("evaluate", str(config), "--weights", str(tmp_path / "none.weights.h5"))
    assert done.returncode == 2
    err = done.stderr.strip().splitlines()
    assert err[:2] == [  # once each, though the config is read twice
        "kzoo: note: config key 'model.backbone' has moved to 'model.backbone.name' (the old key is read for now)",
        "kzoo: note: config key 'model.rpn_nms_threshold' has moved to 'model.rpn.nms_threshold' "
        "(the old key is read for now)",
    ]
    assert len(err) == 3 and err[2].startswith("kzoo evaluate: error: --weights file not found")
