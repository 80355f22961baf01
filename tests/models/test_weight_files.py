"""load_weights_file: one line naming the file and the first problem, for every kind of bad weights file."""

import keras
import numpy as np
import pytest

from kzoo.models.weight_files import load_weights_file


def _model(width: int, name: str = "m") -> keras.Model:
    inputs = keras.Input((4,))
    return keras.Model(
        inputs, keras.layers.Dense(2, name="out")(keras.layers.Dense(width, name="hidden")(inputs)), name=name
    )


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


# -- transfer to another class count ------------------------------------------------------------------------------


def _mask_rcnn(tmp_path, tiny_mask_rcnn, **model):
    from kzoo.config import config_from_dict
    from kzoo.tasks.instance_segmentation import InstanceSegmentationTask

    config = tiny_mask_rcnn(tmp_path)
    config["model"].update(model)
    return InstanceSegmentationTask(config_from_dict(config)).build_model(init_weights=False)


def test_mask_rcnn_weights_load_into_another_class_count(tmp_path, tiny_mask_rcnn):
    from kzoo.models.weight_files import load_weights_transferring

    source = _mask_rcnn(tmp_path, tiny_mask_rcnn)  # 4 classes
    source.save_weights(tmp_path / "four.weights.h5")
    target = _mask_rcnn(tmp_path, tiny_mask_rcnn, num_classes=3)
    fresh = {v.path: keras.ops.convert_to_numpy(v) for v in target.weights}
    report = load_weights_transferring(target, tmp_path / "four.weights.h5")
    assert sorted({name.rsplit("/vars/", 1)[0] for name in report.reset}) == [
        "box_head/bbox_pred",
        "box_head/cls_score",
        "layers/mask_head/mask_fcn_logits",
    ]
    assert "freshly initialized (other class count)" in report.summary()
    by_path = {v.path: keras.ops.convert_to_numpy(v) for v in source.weights}
    class_specific = ("cls_score", "box_head/bbox_pred", "mask_fcn_logits")
    for variable in target.weights:
        value = keras.ops.convert_to_numpy(variable)
        if any(part in variable.path for part in class_specific):
            np.testing.assert_array_equal(value, fresh[variable.path])  # kept its fresh initial value
        else:
            np.testing.assert_array_equal(value, by_path[variable.path])  # loaded
    # the same class count loads everything
    same = _mask_rcnn(tmp_path, tiny_mask_rcnn)
    assert load_weights_transferring(same, tmp_path / "four.weights.h5").reset == ()


def test_another_architecture_names_the_first_layer_and_both_shapes(tmp_path, tiny_mask_rcnn):
    from kzoo.models.weight_files import load_weights_transferring

    _mask_rcnn(tmp_path, tiny_mask_rcnn, mask_head={"num_convs": 2, "channels": 16}).save_weights(
        tmp_path / "two.weights.h5"
    )
    with pytest.raises(
        ValueError,
        match=r"another architecture .* first difference at layer "
        r"'layers/mask_head/convs/conv2d_1' .* the model has no such weight, "
        r"the file shape \[3, 3, 16, 16\]",
    ):
        load_weights_transferring(
            _mask_rcnn(tmp_path, tiny_mask_rcnn, mask_head={"num_convs": 1, "channels": 16}),
            tmp_path / "two.weights.h5",
        )
    _mask_rcnn(tmp_path, tiny_mask_rcnn, fpn={"channels": 8}).save_weights(tmp_path / "narrow.weights.h5")
    with pytest.raises(
        ValueError,
        match=r"first difference at layer 'box_head/fc6' .*: the model has shape "
        r"\[784, 32\], the file shape \[392, 32\]",
    ):
        load_weights_transferring(_mask_rcnn(tmp_path, tiny_mask_rcnn), tmp_path / "narrow.weights.h5")


def test_nin_weights_load_into_another_class_count(tmp_path):
    from kzoo.models.nin import build_nin, resolve_blocks
    from kzoo.models.weight_files import load_weights_transferring

    def nin(classes):
        blocks = resolve_blocks("custom", [{"filters": [8, 8]}, {"filters": [8], "pool": False}])
        return build_nin(keras.Input((16, 16, 3)), blocks, num_classes=classes, use_batch_norm=True)

    nin(5).save_weights(tmp_path / "five.weights.h5")
    report = load_weights_transferring(nin(3), tmp_path / "five.weights.h5")
    assert report.reset and all("mlpconv_1/" in name for name in report.reset), report.reset


class _DeclaringModel(keras.Model):
    """A model that declares its class-specific weights, as every kzoo model does."""

    def __init__(self, classes: int, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(3, name="hidden")
        self.scores = keras.layers.Dense(classes, name="scores")

    def call(self, inputs):
        return self.scores(self.hidden(inputs))

    def class_specific_weights(self):
        return self.scores.weights


def _declaring(classes: int) -> keras.Model:
    model = _DeclaringModel(classes)
    model(np.zeros((1, 4), np.float32))
    return model


def test_the_model_says_which_weights_are_class_specific(tmp_path):
    from kzoo.models.weight_files import load_weights_transferring

    source = _declaring(5)
    source.save_weights(tmp_path / "five.weights.h5")
    target = _declaring(2)
    fresh = [keras.ops.convert_to_numpy(w) for w in target.scores.weights]
    report = load_weights_transferring(target, tmp_path / "five.weights.h5")
    # the file names them by their place among the model's layers, not by the layer's name
    assert sorted(report.reset) == ["layers/dense_1/vars/0", "layers/dense_1/vars/1"] and report.loaded == 2
    np.testing.assert_array_equal(target.hidden.get_weights()[0], source.hidden.get_weights()[0])  # loaded
    for weight, value in zip(target.scores.weights, fresh):  # kept (and restored after the lookup)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), value)


def test_a_model_that_declares_nothing_transfers_nothing_of_another_shape(tmp_path):
    from kzoo.models.weight_files import load_weights_transferring

    _model(5).save_weights(tmp_path / "five.weights.h5")
    with pytest.raises(ValueError, match=r"another architecture .* first difference at layer 'layers/dense'"):
        load_weights_transferring(_model(3), tmp_path / "five.weights.h5")
    # an explicit predicate still decides
    report = load_weights_transferring(_model(3), tmp_path / "five.weights.h5", resettable=lambda name: True)
    assert len(report.reset) == 3  # hidden kernel and bias, out kernel: the shapes that differ
