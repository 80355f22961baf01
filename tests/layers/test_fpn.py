"""kzoo.layers.fpn: the feature pyramid against torchvision's forward in NumPy, training vs inference calls, config."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_references import LEVEL_SHAPES, assert_config_round_trip, conv_same_reference, random_features, randomize

from kzoo.layers.fpn import FeaturePyramidNetwork

NON_SQUARE_SHAPES = [(9, 12), (5, 6), (3, 3), (2, 2)]


def fpn_reference(features, weights, num_levels, extra):
    """torchvision's FeaturePyramidNetwork.forward in NumPy; upsampling = repeat by 2 then crop."""
    inner = [(weights[2 * i], weights[2 * i + 1]) for i in range(num_levels)]
    layer = [(weights[2 * num_levels + 2 * i], weights[2 * num_levels + 2 * i + 1]) for i in range(num_levels)]
    last = conv_same_reference(features[-1], *inner[-1])
    outs = [conv_same_reference(last, *layer[-1])]
    for i in range(num_levels - 2, -1, -1):
        lateral = conv_same_reference(features[i], *inner[i])
        up = np.repeat(np.repeat(last, 2, axis=1), 2, axis=2)[:, : lateral.shape[1], : lateral.shape[2]]
        last = lateral + up
        outs.insert(0, conv_same_reference(last, *layer[i]))
    if extra:
        outs.append(outs[-1][:, ::2, ::2])
    return outs


@pytest.mark.parametrize("shapes", [LEVEL_SHAPES, NON_SQUARE_SHAPES, [(16, 8), (8, 4), (4, 2), (2, 1)]])
def test_fpn_matches_numpy_reference(shapes):
    features = random_features(shapes, [3, 4, 5, 6])
    fpn = FeaturePyramidNetwork(num_channels=4)
    outputs = fpn(features)
    randomize(fpn)
    outputs = [keras.ops.convert_to_numpy(o) for o in fpn(features)]
    expected = fpn_reference([f.astype(np.float64) for f in features], fpn.get_weights(), 4, True)
    assert len(outputs) == 5
    for out, ref in zip(outputs, expected):
        assert out.shape == ref.shape and out.dtype == np.float32
        np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)
    h5, w5 = shapes[-1]
    assert outputs[-1].shape == (2, -(-h5 // 2), -(-w5 // 2), 4)


@pytest.mark.parametrize("shapes", [LEVEL_SHAPES, [(16, 16), (8, 8), (4, 4), (2, 2)]])  # cropped and exact 2x
@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_fpn_training_calls_match_inference_calls_and_their_gradients(shapes, dtype):
    """Training calls take the pooled 2x-upsampling gradient (and Conv2D3x3's training path); the outputs are
    the same, and the gradients equal those of the inference graph up to summation order."""
    features = [tf.constant(f) for f in random_features(shapes, [3, 4, 5, 6])]
    fpn = FeaturePyramidNetwork(num_channels=4, dtype=dtype)
    fpn(features)
    randomize(fpn)
    results = {}
    for training in (True, False):
        with tf.GradientTape() as tape:
            tape.watch(features)
            outputs = fpn(features, training=training)
            loss = tf.add_n([tf.reduce_sum(tf.cast(o, tf.float32) ** 2) for o in outputs])
        results[training] = outputs, tape.gradient(loss, features + fpn.trainable_weights)
    for a, b in zip(results[True][0], results[False][0], strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    atol = 1e-5 if dtype == "float32" else 2e-2
    for a, b in zip(results[True][1], results[False][1], strict=True):
        a, b = np.float32(a), np.float32(b)
        scale = max(np.abs(b).max(), 1e-12)
        np.testing.assert_allclose(a / scale, b / scale, rtol=0, atol=atol)


def test_fpn_top_down_identity_weights_by_hand():
    """1x1 laterals = identity, 3x3 outputs = centre-tap identity: P_l = C_l + nearest-upsampled P_{l+1}."""
    c3 = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)  # odd size: upsampled 2x2 -> cropped 4x4 -> 3x3
    c4 = np.array([[[[100.0], [200.0]], [[300.0], [400.0]]]], np.float32)
    fpn = FeaturePyramidNetwork(num_channels=1, min_level=3, max_level=4, extra_pool_level=False)
    fpn([c3, c4])
    identity_3x3 = np.zeros((3, 3, 1, 1), np.float32)
    identity_3x3[1, 1] = 1.0
    one = np.ones((1, 1, 1, 1), np.float32)
    zero = np.zeros((1,), np.float32)
    fpn.set_weights([one, zero, one, zero, identity_3x3, zero, identity_3x3, zero])
    p3, p4 = (keras.ops.convert_to_numpy(p)[0, ..., 0] for p in fpn([c3, c4]))
    np.testing.assert_array_equal(p4, c4[0, ..., 0])
    expected = np.array([[100, 101, 202], [103, 104, 205], [306, 307, 408]], np.float32)
    np.testing.assert_array_equal(p3, expected)


def test_fpn_dict_input_names_shapes_and_config():
    features = random_features(LEVEL_SHAPES, [3, 4, 5, 6], batch=1)
    fpn = FeaturePyramidNetwork(num_channels=4, extra_pool_level=False, name="fpn")
    from_list = fpn(features)
    from_dict = fpn({f"C{level}": f for level, f in zip(range(2, 6), features)})
    assert len(from_list) == 4
    for a, b in zip(from_list, from_dict):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    paths = [w.path for w in fpn.weights]
    assert paths[:2] == ["fpn/inner_0/kernel", "fpn/inner_0/bias"]
    assert "fpn/layer_3/kernel" in paths
    assert tuple(fpn.inner_blocks[1].kernel.shape) == (1, 1, 4, 4)
    assert tuple(fpn.layer_blocks[0].kernel.shape) == (3, 3, 4, 4)
    assert_config_round_trip(fpn)
    with pytest.raises(ValueError, match="4 feature maps"):
        fpn(features[:3])


def test_fpn_functional_model_and_tf_function():
    inputs = [keras.Input((h, w, c), batch_size=2) for (h, w), c in zip(NON_SQUARE_SHAPES, [3, 4, 5, 6])]
    fpn = FeaturePyramidNetwork(num_channels=4)
    outputs = fpn(inputs)
    assert [tuple(o.shape) for o in outputs] == [(2, 9, 12, 4), (2, 5, 6, 4), (2, 3, 3, 4), (2, 2, 2, 4), (2, 1, 1, 4)]
    model = keras.Model(inputs, outputs)
    features = random_features(NON_SQUARE_SHAPES, [3, 4, 5, 6])
    eager = model(features)
    graph = tf.function(model, jit_compile=False)(features)
    for a, b in zip(eager, graph):
        assert a.shape == b.shape
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-5)
