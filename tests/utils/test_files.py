import os

from kzoo.utils.files import unique_output_paths

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
