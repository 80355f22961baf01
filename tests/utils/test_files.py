"""kzoo.utils.files: atomic writes with the usual permissions, sha256, unique output names."""

import hashlib
import json
import os
import stat

import pytest

from kzoo.utils import files
from kzoo.utils.files import unique_output_paths


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- atomic writes and permissions ------------------------------------------------------------------------------------


def test_written_files_are_readable_by_others(tmp_path, umask_022):
    assert files.write_json(tmp_path / "a" / "metrics.json", {"x": 1}) == str(tmp_path / "a" / "metrics.json")
    files.write_text(tmp_path / "notes.txt", "hi")
    files.write_bytes(tmp_path / "model.tflite", b"\0\1")
    for name in ("a/metrics.json", "notes.txt", "model.tflite"):
        assert _mode(tmp_path / name) == 0o644, name
    assert json.loads((tmp_path / "a" / "metrics.json").read_text()) == {"x": 1}
    assert os.listdir(tmp_path / "a") == ["metrics.json"]  # no temporary file left beside it


def test_atomic_path_keeps_the_suffix_and_cleans_up_on_failure(tmp_path, umask_022):
    target = tmp_path / "model.weights.h5"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), files.atomic_path(target) as temp_path:
        assert temp_path.endswith(".weights.h5") and os.path.dirname(temp_path) == str(tmp_path)
        with open(temp_path, "wb") as f:
            f.write(b"half")
        raise RuntimeError("killed while writing")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.weights.h5"]
    with files.atomic_path(target) as temp_path, open(temp_path, "wb") as f:
        f.write(b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o644


def test_atomic_directory_is_readable_and_never_overwrites(tmp_path, umask_022):
    final = tmp_path / "export" / "1"
    with files.atomic_directory(final) as temp_dir:
        os.makedirs(os.path.join(temp_dir, "variables"))
        with open(os.path.join(temp_dir, "variables", "v.data"), "wb") as f:
            f.write(b"x")
        os.chmod(os.path.join(temp_dir, "variables", "v.data"), 0o600)  # as TF's writers leave some files
    assert _mode(final) == 0o755 and _mode(final / "variables") == 0o755
    assert _mode(final / "variables" / "v.data") == 0o644
    with pytest.raises(FileExistsError, match="refusing to overwrite"), files.atomic_directory(final):
        pass
    with pytest.raises(ValueError), files.atomic_directory(tmp_path / "export" / "2"):
        raise ValueError("failed export")
    assert sorted(os.listdir(tmp_path / "export")) == ["1"]  # nothing half-written


def test_sha256_is_the_full_digest(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"kzoo" * 100_000)
    assert files.sha256_of(path) == hashlib.sha256(b"kzoo" * 100_000).hexdigest()


# -- unique_output_paths ---------------------------------------------------------------------------------------------


def _names(inputs, suffix="_cam.png"):
    paths = unique_output_paths(inputs, "out", suffix)
    assert all(os.path.dirname(path) == "out" for path in paths)
    names = [os.path.basename(path) for path in paths]
    assert len(names) == len(inputs) and len({name.casefold() for name in names}) == len(names)
    return names


def test_unique_output_paths_plain_stems():
    assert unique_output_paths(["photos/cat.jpg", "dog.png"], "out", "_cam.png") == [
        os.path.join("out", "cat_cam.png"),
        os.path.join("out", "dog_cam.png"),
    ]
    assert unique_output_paths([], "out", ".png") == []


def test_unique_output_paths_same_stem_in_different_folders():
    assert _names(["a/x.png", "b/x.png", "y.png"]) == ["a_x_cam.png", "b_x_cam.png", "y_cam.png"]


def test_unique_output_paths_same_stem_different_extensions():
    assert _names(["x.png", "x.jpg"]) == ["x_png_cam.png", "x_jpg_cam.png"]
    assert _names(["d/x.png", "d/x.jpg", "e/x.png"]) == ["x_png_cam.png", "x_jpg_cam.png", "e_x_cam.png"]


def test_unique_output_paths_folder_and_extension_and_counter():
    # a/x.png clashes with b/x.png by parent-less name, with a/x.jpg by folder, with b/x.jpg by extension
    names = _names(["a/x.png", "a/x.jpg", "b/x.png", "b/x.jpg"])
    assert names == ["a_x_png_cam.png", "a_x_jpg_cam.png", "b_x_png_cam.png", "b_x_jpg_cam.png"]
    # the same file given twice (or three times): numbered in input order
    assert _names(["a/x.png", "a/x.png", "a/x.png"], ".out") == ["a_x_png_1.out", "a_x_png_2.out", "a_x_png_3.out"]


def test_unique_output_paths_never_take_a_plain_name():
    # "a_x" is a real stem: the generated name for a/x.png must not take it
    names = _names(["a/x.png", "b/x.png", "a_x.png"])
    assert names[2] == "a_x_cam.png" and names[0] != names[2]
    names = _names(["a/x.png", "a/x.png", "a_x_png_1.png"], "")
    assert names[2] == "a_x_png_1"


def test_unique_output_paths_case_insensitive_and_deterministic():
    assert _names(["X.png", "x.png"]) == ["X_png_1_cam.png", "x_png_2_cam.png"]
    inputs = ["a/x.png", "b/x.png", "x.jpg", "c/x.jpg", "./x.jpg", "z", "", "d/e/"]
    assert unique_output_paths(inputs, "o", ".png") == unique_output_paths(list(inputs), "o", ".png")
    assert len(set(unique_output_paths(inputs, "o", ".png"))) == len(inputs)
