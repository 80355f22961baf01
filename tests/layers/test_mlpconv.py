"""Mlpconv against a float64 NumPy implementation of the paper's definition."""

import keras
import numpy as np
import pytest

from kzoo.layers import Mlpconv


def conv2d_reference(x, kernel, bias, stride, padding):
    """Plain float64 cross-correlation, NHWC x HWIO, TF's "same"/"valid" padding rule."""
    n, h, w, c = x.shape
    kh, kw, _, out = kernel.shape
    if padding == "same":
        oh, ow = -(-h // stride), -(-w // stride)
        ph = max((oh - 1) * stride + kh - h, 0)
        pw = max((ow - 1) * stride + kw - w, 0)
        x = np.pad(x, [(0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)])
    else:
        oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    y = np.zeros((n, oh, ow, out))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            y[:, i, j, :] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2])) + bias
    return y


def mlpconv_reference(x, weights, stride, padding):
    """f^1 = relu(conv_kxk(x)); f^n = relu(W_n^T f^(n-1) + b_n) at every pixel."""
    kernel, bias = weights[0], weights[1]
    f = np.maximum(conv2d_reference(x, kernel, bias, stride, padding), 0)
    for k in range(2, len(weights), 2):
        w, b = weights[k][0, 0], weights[k + 1]
        f = np.maximum(f @ w + b, 0)
    return f


@pytest.mark.parametrize("kernel_size,strides,padding", [(3, 1, "same"), (5, 2, "same"), (3, 2, "valid")])
def test_mlpconv_matches_float64_reference(kernel_size, strides, padding):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 11, 9, 3)).astype(np.float32)
    layer = Mlpconv(
        [6, 5, 4], kernel_size=kernel_size, strides=strides, padding=padding, bias_initializer="random_normal"
    )
    y = keras.ops.convert_to_numpy(layer(x))
    expected = mlpconv_reference(
        x.astype(np.float64), [w.astype(np.float64) for w in layer.get_weights()], strides, padding
    )
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, atol=1e-5, rtol=1e-5)
    assert (y >= 0).all()  # the last stage has a ReLU too


def test_mlpconv_parameter_count_and_shapes():
    layer = Mlpconv([192, 160, 96], kernel_size=5)
    y = layer(np.zeros((1, 32, 32, 3), np.float32))
    assert y.shape == (1, 32, 32, 96)
    assert layer.count_params() == (5 * 5 * 3 * 192 + 192) + (192 * 160 + 160) + (160 * 96 + 96)


def test_mlpconv_batch_norm_and_dropout():
    layer = Mlpconv([4, 3], kernel_size=3, use_batch_norm=True, dropout_rate=0.5)
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 2)).astype(np.float32)
    y_train = keras.ops.convert_to_numpy(layer(x, training=True))
    y_infer = keras.ops.convert_to_numpy(layer(x, training=False))
    assert y_train.shape == y_infer.shape == (4, 8, 8, 3)
    assert (y_train == 0).mean() > (y_infer == 0).mean()  # dropout zeroes outputs only in training
    # batch norm: convolutions have no bias, each stage has gamma, beta, mean, variance
    names = sorted(w.path.split("/")[-1] for w in layer.weights)
    assert names.count("kernel") == 2 and "bias" not in names and names.count("gamma") == 2


def test_mlpconv_config_round_trip_and_keras_file(tmp_path):
    layer = Mlpconv([4, 3], kernel_size=3, strides=2, use_batch_norm=True, kernel_regularizer="l2", name="m")
    clone = Mlpconv.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    inputs = keras.Input((8, 8, 2))
    model = keras.Model(inputs, layer(inputs))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(2).normal(size=(1, 8, 8, 2)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6)


def test_mlpconv_stages_start_from_independent_weights():
    # one initializer argument for every stage must not give the same-shaped 1 x 1 convolutions identical kernels
    for initializer in ("he_normal", keras.initializers.HeNormal(), keras.initializers.HeNormal(seed=3)):
        layer = Mlpconv([8, 8, 8], kernel_size=3, kernel_initializer=initializer)
        layer.build((None, 6, 6, 8))
        kernels = [conv.kernel.numpy() for conv in layer.convs]
        assert not np.array_equal(kernels[1], kernels[2]), initializer


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"filters": []}, "non-empty"),
        ({"filters": [3, 0]}, "positive"),
        ({"filters": [3], "padding": "full"}, "padding"),
        ({"filters": [3], "dropout_rate": 1.0}, "dropout_rate"),
    ],
)
def test_mlpconv_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Mlpconv(**kwargs)


def test_mlpconv_wrong_rank():
    with pytest.raises(ValueError, match="expected ndim=4, found ndim=3"):
        Mlpconv([3])(np.zeros((2, 8, 3), np.float32))


def test_dtype_policy_is_forwarded_to_every_sublayer():
    layer = Mlpconv([8, 4], use_batch_norm=True, dropout_rate=0.5, dtype=keras.DTypePolicy("mixed_bfloat16"))
    out = layer(np.zeros((1, 6, 6, 3), np.float32))
    assert keras.ops.convert_to_numpy(out).dtype == keras.backend.standardize_dtype("bfloat16")
    for sublayer in (*layer.convs, *layer.norms, layer.dropout):
        assert (sublayer.compute_dtype, sublayer.variable_dtype) == ("bfloat16", "float32"), sublayer.name
    assert keras.mixed_precision.global_policy().name == "float32"
    assert Mlpconv.from_config(layer.get_config()).dtype_policy.name == "mixed_bfloat16"
