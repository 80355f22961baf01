"""load_weights_file: one line naming the file and the first problem, for every kind of bad weights file."""

import keras
import numpy as np
import pytest

from kzoo.models.weight_files import load_weights_file


def _model(width: int, name: str = "m") -> keras.Model:
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(keras.layers.Dense(width, name="hidden")(inputs)),
                       name=name)  # fmt: skip


def test_loads_a_matching_file(tmp_path):
    source, target = _model(3), _model(3)
    source.save_weights(tmp_path / "a.weights.h5")
    load_weights_file(target, tmp_path / "a.weights.h5")
    for a, b in zip(source.get_weights(), target.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("problem", ["missing", "truncated", "garbage", "other_shapes", "other_layers"])
def test_bad_files_give_one_line_naming_the_file(tmp_path, problem, capfd):
    path = tmp_path / "w.weights.h5"
    if problem == "truncated":
        _model(3).save_weights(path)
        path.write_bytes(path.read_bytes()[:500])
    elif problem == "garbage":
        path.write_bytes(b"not hdf5 at all" * 10)
    elif problem == "other_shapes":
        _model(5).save_weights(path)
    elif problem == "other_layers":
        inputs = keras.Input((4,))
        keras.Model(inputs, keras.layers.Dense(2, name="elsewhere")(inputs)).save_weights(path)
    expected = FileNotFoundError if problem == "missing" else ValueError
    with pytest.raises(expected) as info:
        load_weights_file(_model(3), path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    assert len(capfd.readouterr().err) < 2000  # no pages of Keras warnings before the error
