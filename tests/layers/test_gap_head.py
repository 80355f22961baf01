import keras
import numpy as np
import pytest

from kzoo.layers import GlobalAveragePoolingHead


def test_gap_head_is_mean_then_softmax_in_float64():
    maps = np.random.default_rng(0).normal(size=(3, 5, 4, 7))
    scores = keras.ops.convert_to_numpy(GlobalAveragePoolingHead()(maps.astype(np.float32)))
    mean = maps.mean(axis=(1, 2))
    expected = np.exp(mean - mean.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert scores.dtype == np.float32


def test_gap_head_has_no_weights_and_returns_maps():
    head = GlobalAveragePoolingHead(activation=None, return_class_maps=True)
    maps = np.random.default_rng(1).normal(size=(2, 3, 3, 4)).astype(np.float32)
    scores, out_maps = head(maps)
    assert head.count_params() == 0
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scores), maps.mean(axis=(1, 2)), atol=1e-6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out_maps), maps)


def test_gap_head_float32_under_mixed_precision():
    head = GlobalAveragePoolingHead()
    out = head(keras.ops.cast(np.ones((1, 2, 2, 3)), "bfloat16"))
    assert keras.ops.convert_to_numpy(out).dtype == np.float32


def test_gap_head_config_round_trip_and_rank_error():
    head = GlobalAveragePoolingHead(activation="sigmoid", return_class_maps=True)
    assert GlobalAveragePoolingHead.from_config(head.get_config()).get_config() == head.get_config()
    with pytest.raises(ValueError, match="batch, height, width, classes"):
        GlobalAveragePoolingHead()(np.zeros((2, 3), np.float32))


def test_gap_head_is_float32_by_default_and_takes_a_policy():
    assert GlobalAveragePoolingHead().compute_dtype == "float32"
    head = GlobalAveragePoolingHead(dtype="mixed_bfloat16")  # a caller may choose, the averaging stays float32
    out = head(keras.ops.cast(np.ones((1, 2, 2, 3)), "bfloat16"))
    assert head.compute_dtype == "bfloat16" and keras.ops.convert_to_numpy(out).dtype == np.float32
