import os

import keras
import numpy as np
import pytest

from kzoo.applications import NIN, nin
from kzoo.applications import weights as registry
from kzoo.utils.files import sha256_of


def test_keras_applications_signature():
    import inspect

    params = list(inspect.signature(NIN).parameters)
    assert params[:10] == [
        "include_top",
        "weights",
        "input_tensor",
        "input_shape",
        "pooling",
        "classes",
        "classifier_activation",
        "variant",
        "dropout_rate",
        "name",
    ]


def test_include_top_false_and_pooling():
    assert NIN(include_top=False, variant="mnist").output_shape == (None, 7, 7, 96)
    assert NIN(include_top=False, pooling="avg", variant="mnist").output_shape == (None, 96)
    assert NIN(include_top=False, pooling="max").output_shape == (None, 192)


def test_input_tensor_and_logits():
    inputs = keras.Input((24, 24, 3))
    model = NIN(input_tensor=inputs, classifier_activation=None, num_classes=3)
    assert model.input_shape == (None, 24, 24, 3)
    out = keras.ops.convert_to_numpy(model(np.zeros((1, 24, 24, 3), np.float32)))
    assert out.shape == (1, 3)


def test_weights_file_round_trip_and_notop_transfer(tmp_path):
    model = NIN(variant="mnist", input_shape=(28, 28, 1))
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    again = NIN(variant="mnist", input_shape=(28, 28, 1), weights=path)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    notop = NIN(variant="mnist", input_shape=(28, 28, 1), weights=path, include_top=False)
    block3 = model.get_layer("block3").get_weights()
    np.testing.assert_array_equal(notop.get_layer("block3").get_weights()[0], block3[0])


def test_bad_weights_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown weights 'imagenet21k'"):
        NIN(weights="imagenet21k")
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        NIN(weights=str(tmp_path / "missing.weights.h5"))
    other = str(tmp_path / "other.weights.h5")
    NIN(variant="mnist").save_weights(other)
    with pytest.raises(ValueError, match="cannot load weights file"):
        NIN(variant="cifar10", weights=other)
    corrupt = tmp_path / "corrupt.weights.h5"
    corrupt.write_bytes(b"not an h5 file")
    with pytest.raises(ValueError, match="cannot load weights file"):
        NIN(weights=str(corrupt))


def test_bad_input_shapes():
    with pytest.raises(ValueError, match="height, width, channels"):
        NIN(input_shape=(32, 32))
    with pytest.raises(ValueError, match="too small"):
        NIN(input_shape=(4, 4, 3))
    with pytest.raises(ValueError, match="input channel"):
        NIN(weights="fashion_mnist", input_shape=(28, 28, 3))
    with pytest.raises(ValueError, match="10 classes"):
        NIN(weights="fashion_mnist", input_shape=(28, 28, 1), num_classes=5)


def test_registered_weights_download_path(tmp_path, monkeypatch):
    """A registered name resolves through keras.utils.get_file with its sha256 (here from a file:// URL)."""
    source = NIN(variant="mnist", input_shape=(28, 28, 1), use_batch_norm=True)
    release = tmp_path / "release"
    release.mkdir()
    path = release / "test_nin.weights.h5"
    source.save_weights(str(path))
    digest = sha256_of(path)
    entry = registry.RegisteredWeights(
        "test_nin",
        "nin",
        "test_nin.weights.h5",
        digest,
        input_shape=(28, 28, 1),
        model_kwargs={"variant": "mnist", "use_batch_norm": True},
        class_names=tuple("abcdefghij"),
    )
    monkeypatch.setitem(registry.REGISTRY, "test_nin", entry)
    monkeypatch.setattr(registry, "RELEASE_URL", release.as_uri() + "/")
    monkeypatch.setattr(registry, "local_weight_dirs", lambda: [str(tmp_path / "nowhere")])
    (tmp_path / "keras_home").mkdir()
    monkeypatch.setattr(registry, "CACHE_DIR", str(tmp_path / "keras_home"))
    model = NIN(weights="test_nin", input_shape=(28, 28, 1))
    np.testing.assert_array_equal(model.get_weights()[0], source.get_weights()[0])
    assert os.path.isfile(tmp_path / "keras_home" / "kzoo" / "test_nin.weights.h5")
    # a wrong hash is refused
    monkeypatch.setitem(registry.REGISTRY, "test_nin", entry.__class__(**{**entry.__dict__, "sha256": "1" * 64}))
    with pytest.raises(Exception, match="(?i)hash|corrupt|incomplete"):
        NIN(weights="test_nin", input_shape=(28, 28, 1))


def test_preprocess_input_and_decode_predictions():
    x = np.array([[0, 127.5, 255]], np.float32)
    np.testing.assert_allclose(nin.preprocess_input(x), [[-1, 0, 1]])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(nin.preprocess_input(keras.ops.ones((1, 2)) * 255)), 1.0)
    preds = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    decoded = nin.decode_predictions(preds, top=2, class_names=["a", "b", "c"])
    assert decoded == [[(1, "b", 0.7), (2, "c", 0.2)], [(0, "a", 0.5), (2, "c", 0.3)]]
    assert nin.decode_predictions(np.eye(10)[:1], top=1, class_names="fashion_mnist")[0][0][1] == "T-shirt/top"
    with pytest.raises(ValueError, match="class names"):
        nin.decode_predictions(preds, class_names=["a"])
    with pytest.raises(ValueError, match="batch, classes"):
        nin.decode_predictions(np.zeros(3))


def test_wrong_rank_or_channels_is_a_clear_error():
    model = NIN(variant="cifar10")
    with pytest.raises(ValueError, match=r"rank 4\), got shape \[32, 32, 3\] \(rank 3\)"):
        model(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"must have 3 channel\(s\) \[batch, 32, 32, 3\], got 1 channels"):
        model(np.zeros((1, 32, 32, 1), np.float32))
    # no guessing which axis is missing: a grayscale batch [N, H, W] needs its channel axis
    gray = NIN(variant="mnist")
    with pytest.raises(ValueError, match=r"got shape \[2, 28, 28\] \(rank 3\)"):
        gray(np.zeros((2, 28, 28), np.float32))
    assert gray(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 10)
