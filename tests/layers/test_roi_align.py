"""RoIAlign against a float64 NumPy implementation of the paper / torchvision definition, kernel agreement,
serialization, errors, and TFLite builtin-only conversion of the gather kernel."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.layers.roi_align import RoIAlign

IMAGE = 256  # P2..P5 are 64, 32, 16, 8 pixels
LEVELS = (2, 3, 4, 5)
CHANNELS = 3


# ---------------------------------------------------------------------------------------------------------
# float64 reference, written straight from the definition (one RoI at a time, no crop_and_resize tricks)
# ---------------------------------------------------------------------------------------------------------


def _axis_weights(coords, size, border):
    """Bilinear neighbours and weights of sample coordinates along one axis of a map of ``size`` pixels.

    torchvision (roi_align_kernel.cpp, bilinear_interpolate): a coordinate < -1 or > size is out (0);
    otherwise clamp at 0 from below; if floor(c) >= size - 1 both neighbours are the last pixel.
    "zero": crop_and_resize, a coordinate outside [0, size - 1] is out.
    """
    low = np.zeros(coords.shape, np.int64)
    high = np.zeros(coords.shape, np.int64)
    w_low = np.zeros(coords.shape)
    w_high = np.zeros(coords.shape)
    valid = np.zeros(coords.shape, bool)
    for k, c in enumerate(coords):
        if border == "torchvision":
            if c < -1.0 or c > size:
                continue
            c = max(c, 0.0)
            lo = int(c)
            if lo >= size - 1:
                lo = hi = size - 1
                c = float(lo)
            else:
                hi = lo + 1
        else:
            if c < 0.0 or c > size - 1:
                continue
            lo, hi = math.floor(c), math.ceil(c)
        frac = c - lo
        low[k], high[k], w_low[k], w_high[k], valid[k] = lo, hi, 1.0 - frac, frac, True
    return low, high, w_low, w_high, valid


def roi_align_reference(fmap, box, scale, output_size, sampling_ratio, aligned, border):
    """One RoI on one map. fmap [H, W, C] float64, box [ymin, xmin, ymax, xmax] image pixels -> [m, m, C]."""
    height, width, channels = fmap.shape
    offset = 0.5 if aligned else 0.0
    y1, x1, y2, x2 = [float(v) for v in box]
    start_y, start_x = y1 * scale - offset, x1 * scale - offset
    roi_h, roi_w = y2 * scale - offset - start_y, x2 * scale - offset - start_x
    if not aligned:  # torchvision's legacy rule
        roi_h, roi_w = max(roi_h, 1.0), max(roi_w, 1.0)
    m, s = output_size, sampling_ratio
    bin_h, bin_w = roi_h / m, roi_w / m
    # bin p, sample i: Y1 + p * bin_h + (i + 0.5) * bin_h / s
    ys = np.array([start_y + p * bin_h + (i + 0.5) * bin_h / s for p in range(m) for i in range(s)])
    xs = np.array([start_x + q * bin_w + (j + 0.5) * bin_w / s for q in range(m) for j in range(s)])
    ylo, yhi, wylo, wyhi, yok = _axis_weights(ys, height, border)
    xlo, xhi, wxlo, wxhi, xok = _axis_weights(xs, width, border)
    samples = np.zeros((m * s, m * s, channels))
    for rows, wy in ((ylo, wylo), (yhi, wyhi)):
        for cols, wx in ((xlo, wxlo), (xhi, wxhi)):
            samples += (wy[:, None] * wx[None, :])[..., None] * fmap[rows][:, cols]
    samples *= (yok[:, None] & xok[None, :])[..., None]
    return samples.reshape(m, s, m, s, channels).mean(axis=(1, 3))


def level_reference(box, min_level=2, max_level=5, canonical_size=224.0, canonical_level=4):
    area = max((box[2] - box[0]) * (box[3] - box[1]), 0.0)
    k = math.floor(canonical_level + math.log2(math.sqrt(area) / canonical_size + 1e-6))
    return min(max(k, min_level), max_level)


def multilevel_reference(features, boxes, output_size, sampling_ratio, aligned, border):
    out = np.zeros((*boxes.shape[:2], output_size, output_size, features[0].shape[-1]))
    for b in range(boxes.shape[0]):
        for n in range(boxes.shape[1]):
            level = level_reference(boxes[b, n].astype(np.float64))
            fmap = features[level - LEVELS[0]][b].astype(np.float64)
            out[b, n] = roi_align_reference(
                fmap, boxes[b, n], 2.0**-level, output_size, sampling_ratio, aligned, border
            )
    return out


# ---------------------------------------------------------------------------------------------------------
# test data
# ---------------------------------------------------------------------------------------------------------


def make_features(rng, batch=2, image=IMAGE, channels=CHANNELS):
    return [rng.normal(size=(batch, image >> lvl, image >> lvl, channels)).astype(np.float32) for lvl in LEVELS]


def make_boxes(rng, batch=2, image=IMAGE):
    """Random boxes on every pyramid level plus boxes crossing every border, tiny and degenerate ones."""
    per_image = []
    for _ in range(batch):
        boxes = []
        for size in (40.0, 160.0, 320.0, 600.0):  # sqrt(area) -> levels 2, 3, 4, 5
            for _ in range(6):
                s = size * rng.uniform(0.8, 1.2)
                aspect = rng.uniform(0.5, 2.0)
                h, w = s * math.sqrt(aspect), s / math.sqrt(aspect)
                cy, cx = rng.uniform(-0.2 * image, 1.2 * image, 2)
                boxes.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
        e = float(image)
        boxes += [
            [-20.0, 40.0, 30.0, 90.0],
            [40.0, -20.0, 90.0, 30.0],  # top, left borders
            [e - 30, 40.0, e + 25, 90.0],
            [40.0, e - 30, 90.0, e + 25],  # bottom, right borders
            [-30.0, -30.0, e + 30, e + 30],
            [e - 6, e - 6, e + 6, e + 6],  # all borders; the corner
            [-5.0, -5.0, 3.0, 3.0],
            [-3.9, 10.0, 1.0, 20.0],  # the top-left corner; within one pixel (P2)
            [e - 2.0, 10.0, e + 3.0, 20.0],
            [10.0, e - 1.0, 20.0, e + 5.0],  # within one pixel bottom/right
            [-40.0, -40.0, -10.0, -10.0],
            [e + 10, 20.0, e + 50, 60.0],  # entirely outside
            [100.0, 100.0, 100.4, 100.3],
            [17.2, 33.9, 18.0, 34.1],  # smaller than a bin
            [50.0, 60.0, 50.0, 60.0],
            [0.0, 0.0, 0.0, 0.0],  # zero size (padding)
            [0.0, 0.0, 224.0, 224.0],
            [10.0, 10.0, 122.0, 122.0],  # on the level boundaries 4 and 3
        ]
        per_image.append(boxes)
    return np.asarray(per_image, np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1234)
    features = make_features(rng)
    boxes = make_boxes(rng)
    return features, boxes


def run(layer, features, boxes):
    return keras.ops.convert_to_numpy(layer(features, boxes))


# ---------------------------------------------------------------------------------------------------------
# 1. against the float64 reference
# ---------------------------------------------------------------------------------------------------------


def test_level_assignment_matches_formula(data):
    _, boxes = data
    levels = keras.ops.convert_to_numpy(RoIAlign().levels(boxes))
    expected = np.array([[level_reference(b.astype(np.float64)) for b in image] for image in boxes])
    np.testing.assert_array_equal(levels, expected)
    assert set(np.unique(levels)) == set(LEVELS)  # every pyramid level is exercised
    assert levels[0, -2] == 4 and levels[0, -1] == 3  # exactly on the boundaries sqrt(area) = 224, 112


@pytest.mark.parametrize("method", ["crop_and_resize", "gather"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("output_size", [7, 14])
def test_multilevel_matches_float64_reference(data, method, aligned, output_size):
    features, boxes = data
    layer = RoIAlign(output_size, sampling_ratio=2, aligned=aligned, method=method)
    out = run(layer, features, boxes)
    expected = multilevel_reference(features, boxes, output_size, 2, aligned, "torchvision")
    assert out.shape == expected.shape == (2, boxes.shape[1], output_size, output_size, CHANNELS)
    error = np.abs(out - expected).max()
    print(f"multi-level {method} aligned={aligned} m={output_size}: max abs error {error:.2e}")
    assert error < 1e-4
    assert np.abs(expected).max() > 0.5  # the comparison is not trivially between zeros


@pytest.mark.parametrize("method", ["crop_and_resize", "gather"])
@pytest.mark.parametrize("border", ["torchvision", "zero"])
@pytest.mark.parametrize("aligned,sampling_ratio,output_size", [(False, 2, 7), (True, 3, 5), (True, 1, 14)])
def test_single_level_matches_float64_reference(data, method, border, aligned, sampling_ratio, output_size):
    features, boxes = data
    level = 3
    layer = RoIAlign(output_size, sampling_ratio, aligned=aligned, border=border, method=method, scale=2.0**-level)
    out = run(layer, features[level - 2], boxes)
    fmap = features[level - 2].astype(np.float64)
    expected = np.stack(
        [
            np.stack(
                [
                    roi_align_reference(fmap[b], box, 2.0**-level, output_size, sampling_ratio, aligned, border)
                    for box in boxes[b]
                ]
            )
            for b in range(boxes.shape[0])
        ]
    )
    error = np.abs(out - expected).max()
    print(f"single-level {method} border={border} aligned={aligned} s={sampling_ratio}: max abs error {error:.2e}")
    assert error < 1e-4


def test_border_rules_differ_only_near_the_border(data):
    features, boxes = data
    inside = np.array([[[40.0, 40.0, 200.0, 180.0]] * 2] * 2, np.float32)
    for b in (boxes, inside):
        torch_rule = run(RoIAlign(7, border="torchvision"), features, b)
        zero_rule = run(RoIAlign(7, border="zero"), features, b)
        if b is inside:
            np.testing.assert_allclose(torch_rule, zero_rule, atol=1e-6)
        else:
            assert np.abs(torch_rule - zero_rule).max() > 0.1


def test_min_size_rule_when_not_aligned():
    """aligned=False raises a tiny RoI to 1 x 1 feature pixels from its start; aligned=True does not."""
    fmap = np.arange(64, dtype=np.float32).reshape(1, 8, 8, 1)
    box = np.array([[[8.0, 8.0, 8.0, 8.0]]], np.float32)  # a point at feature pixel (2, 2) with stride 4
    out = run(RoIAlign(2, 2, aligned=False, scale=0.25), fmap, box)
    expected = roi_align_reference(fmap[0].astype(np.float64), box[0, 0], 0.25, 2, 2, False, "torchvision")
    np.testing.assert_allclose(out[0, 0], expected, atol=1e-5)
    # the 1 x 1 RoI starts at (2, 2): bin centres at 2.25 and 2.75 -> values 8 * y + x
    centres = np.array([2.25, 2.75])
    np.testing.assert_allclose(out[0, 0, :, :, 0], 8 * centres[:, None] + centres[None, :], atol=1e-5)
    aligned = run(RoIAlign(2, 2, aligned=True, scale=0.25), fmap, box)
    np.testing.assert_allclose(aligned[0, 0, :, :, 0], np.full((2, 2), 1.5 * 8 + 1.5), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# 2. the two kernels agree (values and gradients)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("border", ["torchvision", "zero"])
@pytest.mark.parametrize("aligned", [False, True])
def test_kernels_agree(data, border, aligned):
    features, boxes = data
    results = [
        run(RoIAlign(14, aligned=aligned, border=border, method=m), features, boxes)
        for m in ("crop_and_resize", "gather")
    ]
    difference = np.abs(results[0] - results[1]).max()
    print(f"kernels border={border} aligned={aligned}: max abs difference {difference:.2e}")
    assert difference < 1e-5


def test_kernels_agree_on_feature_gradients(data):
    features, boxes = data
    weights = tf.constant(np.random.default_rng(0).normal(size=(2, boxes.shape[1], 7, 7, CHANNELS)), tf.float32)
    grads = []
    for method in ("crop_and_resize", "gather"):
        inputs = [tf.constant(f) for f in features]
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(RoIAlign(7, method=method)(inputs, tf.constant(boxes)) * weights)
        grads.append([tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, inputs)])
    for a, b in zip(*grads):
        assert np.abs(a).max() > 0
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_gather_kernel_compiles_with_xla_and_crop_and_resize_does_not(data):
    """crop_and_resize has no XLA kernel: a jit_compile=True train step needs method="gather"."""
    features, boxes = data
    layer = RoIAlign(7, method="gather")
    jitted = tf.function(lambda f, b: layer(f, b), jit_compile=True)
    np.testing.assert_allclose(jitted(features, boxes).numpy(), run(layer, features, boxes), atol=1e-5)
    crop = RoIAlign(7, method="crop_and_resize")
    with pytest.raises(Exception, match="CropAndResize"):
        tf.function(lambda f, b: crop(f, b), jit_compile=True)(features, boxes)


# ---------------------------------------------------------------------------------------------------------
# 3. shapes, dtypes, serialization, errors
# ---------------------------------------------------------------------------------------------------------


def test_shapes_and_dtypes_functional(data):
    features, boxes = data
    inputs = [keras.Input((IMAGE >> lvl, IMAGE >> lvl, CHANNELS)) for lvl in LEVELS]
    box_input = keras.Input((boxes.shape[1], 4))
    outputs = RoIAlign((7, 5), method="gather")(inputs, box_input)
    assert outputs.shape == (None, boxes.shape[1], 7, 5, CHANNELS)
    model = keras.Model([*inputs, box_input], outputs)
    result = model([*features, boxes])
    assert result.shape == (2, boxes.shape[1], 7, 5, CHANNELS) and result.dtype == "float32"
    # float64 boxes and a float16 policy: boxes stay float32 inside, output in the compute dtype
    half = RoIAlign(7, dtype="mixed_float16")(features, boxes.astype(np.float64))
    assert keras.backend.standardize_dtype(half.dtype) == "float16"
    full = run(RoIAlign(7), features, boxes)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(half).astype(np.float32), full, atol=2e-2, rtol=1e-2)


def test_get_config_round_trip(data, tmp_path):
    features, boxes = data
    layer = RoIAlign(
        output_size=(14, 7),
        sampling_ratio=3,
        aligned=True,
        min_level=2,
        max_level=5,
        canonical_size=200.0,
        canonical_level=3,
        border="zero",
        method="gather",
        name="pool",
    )
    config = layer.get_config()
    clone = RoIAlign.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, RoIAlign) and restored.get_config() == config
    np.testing.assert_array_equal(run(layer, features, boxes), run(restored, features, boxes))
    single = RoIAlign(7, scale=0.125)
    assert RoIAlign.from_config(single.get_config()).scale == 0.125
    # saved inside a model
    inputs = [keras.Input((IMAGE >> lvl, IMAGE >> lvl, CHANNELS)) for lvl in LEVELS]
    box_input = keras.Input((boxes.shape[1], 4))
    model = keras.Model([*inputs, box_input], layer(inputs, box_input))
    model.save(tmp_path / "roi.keras")
    loaded = keras.saving.load_model(tmp_path / "roi.keras")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded([*features, boxes])), run(layer, features, boxes))


def test_bad_arguments_and_inputs(data):
    features, boxes = data
    with pytest.raises(ValueError, match="sampling_ratio"):
        RoIAlign(7, sampling_ratio=0)
    with pytest.raises(ValueError, match="sampling_ratio"):
        RoIAlign(7, sampling_ratio=-1)
    with pytest.raises(ValueError, match="output_size"):
        RoIAlign(0)
    with pytest.raises(ValueError, match="border"):
        RoIAlign(7, border="edge")
    with pytest.raises(ValueError, match="method"):
        RoIAlign(7, method="bilinear")
    with pytest.raises(ValueError, match="min_level"):
        RoIAlign(7, min_level=5, max_level=2)
    with pytest.raises(ValueError, match=r"boxes must have shape \[batch, num_boxes, 4\]"):
        RoIAlign(7)(features, boxes[0])  # rank 2
    with pytest.raises(ValueError, match=r"boxes must have shape \[batch, num_boxes, 4\]"):
        RoIAlign(7)(features, boxes[..., :3])
    with pytest.raises(ValueError, match="expects 4 feature map"):
        RoIAlign(7)(features[:3], boxes)
    with pytest.raises(ValueError, match="single feature map"):
        RoIAlign(7)(features[0], boxes)
    with pytest.raises(ValueError, match="4-D"):
        RoIAlign(7, scale=0.25)(features[0][0], boxes)
    with pytest.raises(ValueError, match="same channels"):
        RoIAlign(7)([*features[:3], features[3][..., :1]], boxes)
    with pytest.raises(TypeError, match="float"):
        RoIAlign(7, scale=0.25)(features[0].astype(np.int32), boxes)


# ---------------------------------------------------------------------------------------------------------
# 4. TFLite: the gather kernel is builtin-only, crop_and_resize is not
# ---------------------------------------------------------------------------------------------------------


def _concrete(method, count=8):
    layer = RoIAlign(7, min_level=2, max_level=3, method=method)
    specs = [
        tf.TensorSpec([1, 16, 16, 4], tf.float32),
        tf.TensorSpec([1, 8, 8, 4], tf.float32),
        tf.TensorSpec([1, count, 4], tf.float32),
    ]

    @tf.function(input_signature=specs)
    def pool(p2, p3, boxes):
        return layer([p2, p3], boxes)

    return layer, pool.get_concrete_function()


def _builtins_converter(layer, concrete):
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], layer)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def test_gather_kernel_converts_to_builtin_tflite_and_matches():
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(7)
    p2 = rng.normal(size=(1, 16, 16, 4)).astype(np.float32)
    p3 = rng.normal(size=(1, 8, 8, 4)).astype(np.float32)
    boxes = np.array(
        [
            [
                [-10, -10, 30, 30],
                [5, 5, 60, 70],
                [-30, -30, 100, 100],
                [-10, 0, 130, 110],
                [10, 20, 11, 21],
                [-3, 40, 20, 66],
                [30, -2, 66, 20],
                [0, 0, 0, 0],
            ]
        ],
        np.float32,
    )
    layer, concrete = _concrete("gather")
    model = _builtins_converter(layer, concrete).convert()
    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    by_shape = {(1, 16, 16, 4): p2, (1, 8, 8, 4): p3, (1, 8, 4): boxes}
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], by_shape[tuple(detail["shape"])])
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected = run(RoIAlign(7, min_level=2, max_level=3, method="crop_and_resize"), [p2, p3], boxes)
    assert out.shape == (1, 8, 7, 7, 4)
    levels = keras.ops.convert_to_numpy(layer.levels(boxes))
    assert set(np.unique(levels)) == {2, 3}
    print(f"tflite gather vs crop_and_resize: max abs difference {np.abs(out - expected).max():.2e}")
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_crop_and_resize_kernel_needs_select_tf_ops():
    """Why the gather kernel exists: CropAndResize is not a TFLite builtin, builtins-only conversion fails."""
    layer, concrete = _concrete("crop_and_resize")
    with pytest.raises(Exception, match="CropAndResize"):
        _builtins_converter(layer, concrete).convert()


# ---------------------------------------------------------------------------------------------------------
# 5. torchvision itself, when installed
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["crop_and_resize", "gather"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("output_size", [7, 14])
def test_matches_torchvision_roi_align(data, method, aligned, output_size, torch_run):
    features, boxes = data
    level = 2
    expected = torch_run(
        """
        rois = [torch.from_numpy(b[:, [1, 0, 3, 2]].copy()) for b in inputs["boxes"]]  # xyxy
        fmap = torch.from_numpy(inputs["fmap"]).permute(0, 3, 1, 2).contiguous()
        out = torchvision.ops.roi_align(fmap, rois, int(inputs["size"]), spatial_scale=float(inputs["scale"]),
                                        sampling_ratio=2, aligned=bool(inputs["aligned"]))
        outputs["pooled"] = out.permute(0, 2, 3, 1).numpy()
        """,
        fmap=features[0],
        boxes=boxes,
        size=np.array(output_size),
        scale=np.array(2.0**-level),
        aligned=np.array(aligned),
    )["pooled"]
    expected = expected.reshape(2, boxes.shape[1], output_size, output_size, CHANNELS)
    out = run(RoIAlign(output_size, aligned=aligned, method=method, scale=2.0**-level), features[0], boxes)
    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize("method", ["crop_and_resize", "gather"])
@pytest.mark.parametrize("output_size", [7, 14])
def test_matches_torchvision_multiscale_roi_align(data, method, output_size, torch_run):
    features, boxes = data
    expected = torch_run(
        """
        names = [str(i) for i in range(int(inputs["levels"]))]
        pooler = torchvision.ops.MultiScaleRoIAlign(names, int(inputs["size"]), sampling_ratio=2)
        maps = {n: torch.from_numpy(inputs[f"p{n}"]).permute(0, 3, 1, 2).contiguous() for n in names}
        rois = [torch.from_numpy(b[:, [1, 0, 3, 2]].copy()) for b in inputs["boxes"]]
        image = int(inputs["image"])
        outputs["pooled"] = pooler(maps, rois, [(image, image)] * len(rois)).permute(0, 2, 3, 1).numpy()
        """,
        boxes=boxes,
        size=np.array(output_size),
        levels=np.array(len(LEVELS)),
        image=np.array(IMAGE),
        **{f"p{i}": f for i, f in enumerate(features)},
    )["pooled"]
    expected = expected.reshape(2, boxes.shape[1], output_size, output_size, CHANNELS)
    out = run(RoIAlign(output_size, method=method), features, boxes)
    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize("method", ["crop_and_resize", "gather"])
def test_feature_gradients_match_torchvision_multiscale_roi_align(data, method, torch_run):
    """Backward pass against torchvision's (atomic, race-free) RoIAlign backward on all four levels, with the
    overlapping RoIs of the data set: TF's stock CPU crop_and_resize gradient loses updates here."""
    features, boxes = data
    weights = np.random.default_rng(5).normal(size=(2, boxes.shape[1], 7, 7, CHANNELS)).astype(np.float32)
    expected = torch_run(
        """
        names = [str(i) for i in range(int(inputs["levels"]))]
        pooler = torchvision.ops.MultiScaleRoIAlign(names, 7, sampling_ratio=2)
        with torch.enable_grad():
            maps = {n: torch.from_numpy(inputs[f"p{n}"]).permute(0, 3, 1, 2).contiguous().requires_grad_()
                    for n in names}
            rois = [torch.from_numpy(b[:, [1, 0, 3, 2]].copy()) for b in inputs["boxes"]]
            image = int(inputs["image"])
            pooled = pooler(maps, rois, [(image, image)] * len(rois))
            weights = torch.from_numpy(inputs["weights"].reshape(-1, *inputs["weights"].shape[2:]))
            (pooled * weights.permute(0, 3, 1, 2)).sum().backward()
        for n in names:
            outputs[f"g{n}"] = maps[n].grad.permute(0, 2, 3, 1).numpy()
        """,
        boxes=boxes,
        levels=np.array(len(LEVELS)),
        image=np.array(IMAGE),
        weights=weights,
        **{f"p{i}": f for i, f in enumerate(features)},
    )
    inputs = [tf.constant(f) for f in features]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = tf.reduce_sum(RoIAlign(7, method=method)(inputs, tf.constant(boxes)) * weights)
    for index, grad in enumerate(tape.gradient(loss, inputs)):
        reference = expected[f"g{index}"]
        assert np.abs(reference).max() > 0.5
        np.testing.assert_allclose(tf.convert_to_tensor(grad).numpy(), reference, atol=1e-4)
