"""kzoo.tasks.demo: a finished demo run again says so in one line and shows its table; it trains, exports and
predicts nothing again (no new SavedModel version); other settings or --fresh run it again."""

import os

import pytest

from kzoo.cli import main

NIN_TINY = [
    "--set",
    "train.epochs=1",
    "--set",
    "data.train_examples=64",
    "--set",
    "data.eval_examples=16",
    "--set",
    "train.batch_size=32",
]


@pytest.mark.slow
def test_finished_nin_demo_again_is_one_line_and_no_new_version(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["demo", "--config", "configs/nin_shapes.yaml", *NIN_TINY]
    assert main(argv) == 0
    first = capsys.readouterr().out
    versions = tmp_path / "runs" / "demo" / "nin_shapes" / "export" / "nin_shapes"
    assert sorted(os.listdir(versions)) == ["1"]
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert again.count("already finished") == 1 and "resuming" not in again and "[1/4]" not in again
    assert again.splitlines()[0].startswith("kzoo demo: nin_shapes has already finished in runs/demo/nin_shapes")
    assert "SavedModel, test accuracy" in again  # the stored table
    assert first.split("kzoo demo: NIN on built-in shapes")[1].split("total time")[0] in again
    assert sorted(os.listdir(versions)) == ["1"]  # nothing exported again
    # the run's Keras weights through its task (predict --config works for every task): top classes and maps
    sample = "runs/demo/nin_shapes/samples/sample0.png"
    assert main(["predict", sample, "--config", "runs/demo/nin_shapes", "--top", "2", "--cam", "cams"]) == 0
    out = capsys.readouterr().out
    assert "sample0.png" in out and "cams/sample0_cam.png" in out and (tmp_path / "cams" / "sample0_cam.png").is_file()
    # other settings run it again (the training itself resumes as finished; one more epoch trains one)
    assert main([*argv, "--set", "train.epochs=2"]) == 0
    assert "[1/4]" in capsys.readouterr().out
