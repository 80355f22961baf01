"""Mask R-CNN head layers: FPN, RPN head, box head, mask head (shapes, NumPy references, weight layouts)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.layers.box_head import BoxHead
from kzoo.layers.fpn import FeaturePyramidNetwork
from kzoo.layers.mask_head import MaskHead
from kzoo.layers.rpn_head import TORCH_DELTA_ORDER, RPNHead
from kzoo.ops.anchors import generate_anchors

# C2..C5 of a 50 x 52 image: odd sizes at every level, so the top-down path needs the cropped upsampling.
LEVEL_SHAPES = [(13, 13), (7, 7), (4, 4), (2, 2)]
NON_SQUARE_SHAPES = [(9, 12), (5, 6), (3, 3), (2, 2)]


def conv_same_reference(x, kernel, bias):
    """Float64 stride-1 cross-correlation, NHWC x HWIO, symmetric zero padding (odd kernels)."""
    kh, kw = kernel.shape[:2]
    x = np.pad(x, [(0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)])
    n, h, w, _ = x.shape
    oh, ow = h - kh + 1, w - kw + 1
    y = np.zeros((n, oh, ow, kernel.shape[-1]))
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("nhwc,co->nhwo", x[:, i : i + oh, j : j + ow], kernel[i, j])
    return y + bias


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


def random_features(shapes, channels, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch, h, w, c)).astype(np.float32) for (h, w), c in zip(shapes, channels)]


def randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(scale=0.3, size=w.shape).astype(np.float32) for w in layer.get_weights()])


def assert_config_round_trip(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == layer.get_config()


# ----------------------------------------------------------------------------------------------------- FPN


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


# ----------------------------------------------------------------------------------------------------- RPN


def test_rpn_head_shapes_dtypes_names():
    levels = [np.zeros((2, h, w, 4), np.float32) for h, w in LEVEL_SHAPES + [(1, 1)]]
    head = RPNHead(num_anchors=3, num_channels=4, name="rpn")
    objectness, deltas = head(levels)
    total = sum(h * w * 3 for h, w in LEVEL_SHAPES + [(1, 1)])
    assert objectness.shape == (2, total) and deltas.shape == (2, total, 4)
    assert objectness.dtype == deltas.dtype == tf.float32
    assert [w.path for w in head.weights] == [
        "rpn/conv/kernel",
        "rpn/conv/bias",
        "rpn/cls_logits/kernel",
        "rpn/cls_logits/bias",
        "rpn/bbox_pred/kernel",
        "rpn/bbox_pred/bias",
    ]
    assert tuple(head.bbox_pred.kernel.shape) == (1, 1, 4, 12)
    single_o, single_d = head(levels[0])
    assert single_o.shape == (2, 13 * 13 * 3) and single_d.shape == (2, 13 * 13 * 3, 4)
    assert_config_round_trip(head)
    assert head.compute_output_shape([(2, 3, 4, 4), (2, 2, 2, 4)]) == ((2, 48), (2, 48, 4))


def test_rpn_output_order_matches_generate_anchors():
    """Encode (level, i, j, a, k) into the head's outputs and read it back at each anchor's row."""
    shapes = [(5, 7), (3, 4), (2, 2)]
    strides = [8, 16, 32]
    sizes = [32, 64, 128]
    ratios = (0.5, 1.0, 2.0)
    num_anchors = 3
    # Input channels (level, i, j, 1) at every position.
    levels = []
    for level, (h, w) in enumerate(shapes):
        i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        levels.append(np.stack([np.full((h, w), level), i, j, np.ones((h, w))], -1)[None].astype(np.float32))
    head = RPNHead(num_anchors=num_anchors, num_channels=4)
    head(levels)
    conv = np.zeros((3, 3, 4, 4), np.float32)
    conv[1, 1] = np.eye(4)
    cls = np.zeros((1, 1, 4, num_anchors), np.float32)
    box = np.zeros((1, 1, 4, 4 * num_anchors), np.float32)
    for a in range(num_anchors):
        cls[0, 0, :, a] = [100.0, 10.0, 1.0, 0.1 * a]
        for k in range(4):
            box[0, 0, :, 4 * a + k] = [0.0, 10.0, 1.0, 0.1 * a + 0.01 * k]
    zeros = np.zeros
    head.set_weights([conv, zeros(4), cls, zeros(num_anchors), box, zeros(4 * num_anchors)])
    objectness, deltas = (keras.ops.convert_to_numpy(t)[0] for t in head(levels))

    anchors = generate_anchors(shapes, strides, sizes, ratios)
    assert anchors.shape[0] == objectness.shape[0] == deltas.shape[0]
    height = anchors[:, 2] - anchors[:, 0]
    width = anchors[:, 3] - anchors[:, 1]
    level = np.rint(np.log2(np.sqrt(height * width) / sizes[0])).astype(int)
    stride = np.asarray(strides)[level]
    i = np.rint((anchors[:, 0] + anchors[:, 2]) / 2 / stride)
    j = np.rint((anchors[:, 1] + anchors[:, 3]) / 2 / stride)
    a = np.argmin(np.abs(np.log(height / width)[:, None] - np.log(ratios)[None, :]), axis=1)
    np.testing.assert_allclose(objectness, 100.0 * level + 10.0 * i + j + 0.1 * a, atol=1e-3)
    for k in range(4):
        np.testing.assert_allclose(deltas[:, k], 10.0 * i + j + 0.1 * a + 0.01 * k, atol=1e-3)


def test_rpn_torch_delta_permutation():
    """Keras channel 4a+k = torchvision channel 4a+perm[k]: (ty, tx, th, tw) from (dx, dy, dw, dh)."""
    torch_rows = ["dx", "dy", "dw", "dh"]
    assert [torch_rows[p] for p in TORCH_DELTA_ORDER] == ["dy", "dx", "dh", "dw"]


# ----------------------------------------------------------------------------------------------------- box head


def test_box_head_shapes_names_config():
    head = BoxHead(num_classes=5, fc_dim=16, name="box")
    logits, deltas = head(np.zeros((2, 3, 7, 7, 4), np.float32))
    assert logits.shape == (2, 3, 5) and deltas.shape == (2, 3, 5, 4)
    assert logits.dtype == deltas.dtype == tf.float32
    assert [w.path for w in head.weights] == [
        "box/fc6/kernel",
        "box/fc6/bias",
        "box/fc7/kernel",
        "box/fc7/bias",
        "box/cls_score/kernel",
        "box/cls_score/bias",
        "box/bbox_pred/kernel",
        "box/bbox_pred/bias",
    ]
    assert tuple(head.fc6.kernel.shape) == (7 * 7 * 4, 16) and tuple(head.bbox_pred.kernel.shape) == (16, 20)
    flat_logits, flat_deltas = head(np.zeros((6, 7, 7, 4), np.float32))
    assert flat_logits.shape == (6, 5) and flat_deltas.shape == (6, 5, 4)
    assert_config_round_trip(head)
    assert_config_round_trip(BoxHead(3, fc_dim=8, flatten_order="nchw"))
    with pytest.raises(ValueError, match="flatten_order"):
        BoxHead(3, flatten_order="chw")


def test_box_head_nchw_equals_nhwc_with_permuted_fc6():
    rng = np.random.default_rng(3)
    s, c, f = 7, 3, 8
    x = rng.normal(size=(2, 4, s, s, c)).astype(np.float32)
    nchw = BoxHead(num_classes=4, fc_dim=f, flatten_order="nchw")
    nhwc = BoxHead(num_classes=4, fc_dim=f, flatten_order="nhwc")
    nchw(x)
    nhwc(x)
    randomize(nchw)
    weights = nchw.get_weights()
    # fc6 row c*S*S + h*S + w (torchvision) -> row h*S*C + w*C + c (Keras Flatten on NHWC).
    weights[0] = weights[0].reshape(c, s, s, f).transpose(1, 2, 0, 3).reshape(s * s * c, f)
    nhwc.set_weights(weights)
    for a, b in zip(nchw(x), nhwc(x)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-5)
    # And the nchw head really computes fc6 on the torch-order flattening.
    fc6 = np.maximum(x.transpose(0, 1, 4, 2, 3).reshape(2, 4, -1) @ nchw.get_weights()[0] + nchw.get_weights()[1], 0)
    fc7 = np.maximum(fc6 @ nchw.get_weights()[2] + nchw.get_weights()[3], 0)
    logits = fc7 @ nchw.get_weights()[4] + nchw.get_weights()[5]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(nchw(x)[0]), logits, atol=1e-4, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------- mask head


def conv_transpose_2x2_reference(x, kernel, bias):
    """Stride-2 2x2 transposed conv, Keras kernel [kh, kw, out, in]: out[2y+i, 2x+j] = x[y, x] @ K[i, j].T."""
    n, h, w, _ = x.shape
    y = np.zeros((n, 2 * h, 2 * w, kernel.shape[2]))
    for i in range(2):
        for j in range(2):
            y[:, i::2, j::2] = x @ kernel[i, j].T
    return y + bias


def test_mask_head_shapes_and_numpy_reference():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 3, 14, 14, 4)).astype(np.float32)
    head = MaskHead(num_classes=5, num_convs=2, num_channels=6, name="mask")
    logits = head(x)
    assert logits.shape == (2, 3, 28, 28, 5) and logits.dtype == tf.float32
    assert [w.path for w in head.weights][::2] == [
        "mask/mask_fcn1/kernel",
        "mask/mask_fcn2/kernel",
        "mask/conv5_mask/kernel",
        "mask/mask_fcn_logits/kernel",
    ]
    assert tuple(head.conv5_mask.kernel.shape) == (2, 2, 6, 6)
    randomize(head)
    w = head.get_weights()
    f = x.reshape(6, 14, 14, 4).astype(np.float64)
    f = np.maximum(conv_same_reference(f, w[0], w[1]), 0)
    f = np.maximum(conv_same_reference(f, w[2], w[3]), 0)
    f = np.maximum(conv_transpose_2x2_reference(f, w[4], w[5]), 0)
    f = f @ w[6][0, 0] + w[7]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head(x)), f.reshape(2, 3, 28, 28, 5), atol=1e-3, rtol=1e-4)
    assert head(x[0]).shape == (3, 28, 28, 5)
    assert_config_round_trip(head)
    # One class per RoI: that class's channel of the reference, [B, N] and [R] layouts, with a gradient.
    classes = rng.integers(0, 5, size=(2, 3))
    chosen = np.take_along_axis(f.reshape(2, 3, 28, 28, 5), classes[:, :, None, None, None], axis=4)[..., 0]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head(x, classes)), chosen, atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head(x[0], classes[0])), chosen[0], atol=1e-3, rtol=1e-4)
    assert head.compute_output_shape(x.shape, classes.shape) == (2, 3, 28, 28)
    inputs = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        one = head(inputs, classes)
        every = tf.gather(head(inputs), classes, axis=4, batch_dims=2)
    for a, b in zip(
        tape.gradient(one, [inputs] + head.trainable_weights), tape.gradient(every, [inputs] + head.trainable_weights)
    ):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-4, rtol=1e-4)


def test_default_mask_head_is_four_convs_of_256():
    head = MaskHead(num_classes=3)
    assert head(np.zeros((1, 1, 14, 14, 2), np.float32)).shape == (1, 1, 28, 28, 3)
    assert [conv.name for conv in head.convs] == ["mask_fcn1", "mask_fcn2", "mask_fcn3", "mask_fcn4"]
    assert head.convs[0].filters == 256 and head.conv5_mask.filters == 256


# ----------------------------------------------------------------------------------------------------- together


def test_heads_under_tf_function_with_static_shapes():
    fpn = FeaturePyramidNetwork(num_channels=4)
    rpn = RPNHead(num_anchors=3, num_channels=4)
    box = BoxHead(num_classes=3, fc_dim=8)
    mask = MaskHead(num_classes=3, num_convs=1, num_channels=4)
    features = random_features(LEVEL_SHAPES, [3, 4, 5, 6], batch=2)
    rois7 = np.ones((2, 5, 7, 7, 4), np.float32)
    rois14 = np.ones((2, 5, 14, 14, 4), np.float32)

    @tf.function(jit_compile=False)
    def step(features, rois7, rois14):
        pyramid = fpn(features)
        objectness, deltas = rpn(pyramid)
        logits, box_deltas = box(rois7)
        return objectness, deltas, logits, box_deltas, mask(rois14)

    objectness, deltas, logits, box_deltas, masks = step(features, rois7, rois14)
    total = sum(h * w * 3 for h, w in LEVEL_SHAPES + [(1, 1)])
    assert objectness.shape == (2, total) and deltas.shape == (2, total, 4)
    assert logits.shape == (2, 5, 3) and box_deltas.shape == (2, 5, 3, 4) and masks.shape == (2, 5, 28, 28, 3)
    concrete = step.get_concrete_function(features, rois7, rois14)
    for out in concrete.structured_outputs:
        assert out.shape.is_fully_defined()
