"""Mask R-CNN export: TF Serving SavedModel (both signatures, warmup, no kzoo needed) and builtin-only TFLite files.

The models are tiny and random, with the objectness, class and mask logits scaled to a standard deviation of a few
units so that scores and masks are well separated, and the MobileNetV2's batch norm statistics set from images
(freshly initialized, its activations fade to ~1e-3, its objectness logits differ by ~1e-5 and its class scores
by ~1e-4: orders that float16 weights flip), and ``score_threshold=0`` so that every image has detections.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from tensorflow_serving.apis import prediction_log_pb2

from kzoo.data.shapes import make_shapes_instances
from kzoo.evaluation.detection_parity import compare_detections, has_near_equal, outliers
from kzoo.export.mask_rcnn import (
    convert_mask_rcnn_tflite,
    export_mask_rcnn_saved_model,
    letterbox,
    run_mask_rcnn_tflite,
    run_mask_rcnn_tflite_on_photos,
    tflite_ready_model,
)
from kzoo.export.tflite import QUANTIZE_MODES
from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.models.mask_rcnn_config import MaskRCNNConfig
from kzoo.ops.masks import paste_masks

SIZE = 128
class_names = ["circle", "square", "triangle"]
TINY = dict(
    num_classes=4,
    fpn={"channels": 16},
    box_head={"fc_dim": 32},
    mask_head={"channels": 8, "num_convs": 2},
    rpn={"pre_nms_top_k_test": 100, "post_nms_top_k_test": 40},
    detection={"max_detections": 8, "score_threshold": 0.0},
    input={"min_size": SIZE, "max_size": SIZE},
)
BACKBONES = {
    "mobilenet_v2": {"name": "mobilenet_v2", "width": 0.35},
    "small_convnet": {"name": "small_convnet", "width": 0.25, "norm": "group"},
}
# Input dtype of each backbone's .tflite files: both dtypes are covered without extra conversions.
INPUT_DTYPES = {"mobilenet_v2": "uint8", "small_convnet": "uint8"}  # kzoo's .tflite files take uint8 only
KERAS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections", "detection_masks")


def tiny_config(backbone: str) -> MaskRCNNConfig:
    return MaskRCNNConfig().replace(backbone=BACKBONES[backbone], **TINY)


def tiny_model(backbone: str, seed: int = 0) -> MaskRCNNModel:
    """A random tiny Mask R-CNN whose objectness, class and mask logits are spread out (see the module docstring)."""
    keras.utils.set_random_seed(seed)
    model = MaskRCNNModel(tiny_config(backbone))
    images = np.stack([example["image"] for example in make_shapes_instances(4, SIZE, seed=100 + seed)])
    model(images)
    canvas, size = model.preprocess(images)
    # batch norm statistics of these images instead of the initial (0, 1), variances floored at 0.05 so that no
    # channel amplifies by more than ~4.5x: activations of order 1, not ~1e-3, and no chaotic sensitivity
    norms = [layer for layer in model.backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momentums = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model.backbone(canvas, training=True)
    for layer, momentum in zip(norms, momentums):
        layer.momentum = momentum
        layer.moving_variance.assign(np.maximum(layer.moving_variance.numpy(), 0.05))
    features = model.pyramid(canvas)
    image_size = tf.tile(size[None], [len(images), 1])

    def spread(layer: keras.layers.Layer, logits: tf.Tensor, target_std: float) -> None:
        """Scale the layer's logits to ``target_std`` across positions / RoIs, each channel centred at 0."""
        logits = np.reshape(logits, (-1, logits.shape[-1]))
        factor = target_std / float(np.mean(np.std(logits, axis=0)))
        layer.kernel.assign(layer.kernel * factor)
        layer.bias.assign((layer.bias.numpy() - np.mean(logits, axis=0)) * factor)

    spread(model.rpn_head.cls_logits, model.rpn_head(features)[0].numpy()[..., None], 2.0)
    proposals = model.propose(features, image_size)["proposals"]
    spread(model.box_head.cls_score, model.box_head(model.box_roi_align(features[:4], proposals))[0].numpy(), 2.0)
    mask_logits = model.mask_head(model.mask_roi_align(features[:4], proposals[:, :8])).numpy()
    spread(model.mask_head.mask_fcn_logits, mask_logits, 6.0)
    return model


@pytest.fixture(scope="module")
def shapes_images() -> np.ndarray:
    """4 shapes scenes, uint8 [4, 128, 128, 3]."""
    return np.stack([example["image"] for example in make_shapes_instances(4, SIZE, seed=3)])


@pytest.fixture(scope="module")
def models() -> dict[str, MaskRCNNModel]:
    return {backbone: tiny_model(backbone, seed) for seed, backbone in enumerate(BACKBONES)}


def keras_outputs(model: MaskRCNNModel, images: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value.numpy() for key, value in model(images).items() if key in KERAS}


# -- SavedModel ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    """(path, loaded) of the mobilenet model's SavedModel with full-image masks, class names and warmup."""
    path = export_mask_rcnn_saved_model(
        models["mobilenet_v2"],
        tmp_path_factory.mktemp("serving"),
        "mask_rcnn",
        full_image_masks=True,
        warmup_images=[np.full((40, 50, 3), 90, np.uint8)],
        class_names=class_names,
    )
    return path, tf.saved_model.load(path)


@pytest.mark.parametrize("side", [96, 200])
def test_serving_default_matches_keras(models, exported, side):
    # square images of two sizes: both the Keras call (static canvas) and the SavedModel (max_size canvas) resize
    # them onto the same 128 x 128 canvas, so the detections must agree to float32 rounding
    model = models["mobilenet_v2"]
    images = tf.image.resize(make_shapes_instances(2, SIZE, seed=side)[0]["image"][None], [side, side]).numpy()
    images = np.concatenate([images, images[:, ::-1]]).round().astype(np.uint8)
    out = {k: v.numpy() for k, v in exported[1].signatures["serving_default"](images=tf.constant(images)).items()}
    expected = keras_outputs(model, images)
    assert (expected["num_detections"] > 0).all()
    np.testing.assert_array_equal(out["num_detections"], expected["num_detections"])
    np.testing.assert_array_equal(out["detection_classes"], expected["detection_classes"])
    np.testing.assert_allclose(out["detection_boxes"], expected["detection_boxes"], atol=1e-3)
    np.testing.assert_allclose(out["detection_scores"], expected["detection_scores"], atol=1e-5)
    np.testing.assert_allclose(out["detection_masks"], expected["detection_masks"], atol=1e-4)
    assert out["detection_boxes"][..., 2:].max() <= side + 1e-3
    assert out["detection_full_masks"].shape == (2, 8, side, side) and out["detection_full_masks"].dtype == np.uint8
    names = np.array(["", *class_names], dtype=object)[out["detection_classes"]].astype(bytes)
    np.testing.assert_array_equal(out["detection_class_names"], names)


def test_non_square_images_match_the_keras_graph(models, exported):
    # any size: the SavedModel graph is the model's call traced for unknown sizes (a max_size x max_size canvas)
    model = models["mobilenet_v2"]
    images = np.random.default_rng(5).integers(0, 256, (1, 100, 150, 3)).astype(np.uint8)
    graph = tf.function(model.call, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    expected = graph(tf.constant(images))
    out = exported[1].signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_array_equal(out["detection_classes"].numpy(), expected["detection_classes"].numpy())
    np.testing.assert_allclose(out["detection_boxes"].numpy(), expected["detection_boxes"].numpy(), atol=1e-3)
    assert out["detection_full_masks"].shape == (1, 8, 100, 150)


def test_full_image_masks_follow_paste_masks(exported, shapes_images):
    images = shapes_images[:2, :, :100]  # 128 x 100
    out = {k: v.numpy() for k, v in exported[1].signatures["serving_default"](images=tf.constant(images)).items()}
    for b in range(2):
        pasted = paste_masks(out["detection_masks"][b], out["detection_boxes"][b], (128, 100))
        near_half = np.abs(paste_masks(out["detection_masks"][b], out["detection_boxes"][b], (128, 100), None) - 0.5)
        differ = pasted != out["detection_full_masks"][b].astype(bool)
        assert (near_half[differ] < 1e-5).all(), near_half[differ]  # only float rounding at the threshold
        assert out["detection_full_masks"][b].any()


def test_serving_bytes_decodes_png_jpeg_gray_and_rgba(exported, shapes_images):
    loaded = exported[1]
    images = shapes_images[:2]
    png = [tf.io.encode_png(image).numpy() for image in images]
    from_png = loaded.signatures["serving_bytes"](image_bytes=tf.constant(png))
    default = loaded.signatures["serving_default"](images=tf.constant(images))
    for key in ("detection_boxes", "detection_scores", "detection_masks", "detection_full_masks"):
        np.testing.assert_array_equal(from_png[key].numpy(), default[key].numpy())

    jpeg = tf.io.encode_jpeg(images[0], quality=95).numpy()
    decoded = tf.io.decode_jpeg(jpeg, channels=3)[None]
    np.testing.assert_allclose(
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([jpeg]))["detection_boxes"],
        loaded.signatures["serving_default"](images=decoded)["detection_boxes"],
        atol=1e-4,
    )

    gray = images[0, :, :, :1]
    rgba = np.concatenate([images[1], np.full((SIZE, SIZE, 1), 255, np.uint8)], -1)
    encoded = [tf.io.encode_png(gray).numpy(), tf.io.encode_png(rgba).numpy()]
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
    as_rgb = np.stack([np.repeat(gray, 3, axis=-1), images[1]])
    expected = loaded.signatures["serving_default"](images=tf.constant(as_rgb))
    np.testing.assert_array_equal(out["detection_boxes"].numpy(), expected["detection_boxes"].numpy())


def test_serving_bytes_errors_name_the_problem(exported, shapes_images):
    signature = exported[1].signatures["serving_bytes"]
    good = tf.io.encode_png(shapes_images[0]).numpy()
    for bad, message in (
        (b"", r"image_bytes\[1\] is empty"),
        (b"this is not an image", r"image_bytes\[1\] is not a JPEG, PNG, GIF, BMP or WebP image"),
        (b"GIF89a" + b"\0" * 32, r"image_bytes\[1\] is a corrupt or truncated GIF image"),
        (good[:40], r"image_bytes\[1\] is a corrupt or truncated PNG image"),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            signature(image_bytes=tf.constant([good, bad]))


def test_serving_bytes_takes_images_of_different_sizes(exported, shapes_images):
    # one request, three sizes: each image's detections as serving_default gives them for that image alone, its
    # full-image masks in the top-left corner of the request's largest height and width
    images = [shapes_images[0], shapes_images[1, :64, :100], tf.image.resize(shapes_images[2], [150, 90]).numpy()]
    images = [np.round(image).astype(np.uint8) for image in images]
    loaded = exported[1]
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant([tf.io.encode_png(i).numpy() for i in images]))
    assert out["detection_full_masks"].shape == (3, 8, 150, 128)
    assert out["detection_class_names"].shape == (3, 8)
    for index, image in enumerate(images):
        alone = loaded.signatures["serving_default"](images=tf.constant(image[None]))
        np.testing.assert_allclose(out["detection_boxes"][index], alone["detection_boxes"][0], atol=1e-3)
        for key in ("detection_classes", "num_detections", "detection_class_names"):
            np.testing.assert_array_equal(out[key][index], alone[key][0])
        masks = out["detection_full_masks"][index].numpy()
        height, width = image.shape[:2]
        assert not masks[:, height:].any() and not masks[:, :, width:].any()
        assert np.mean(masks[:, :height, :width] != alone["detection_full_masks"][0].numpy()) < 1e-4


def test_empty_batches(exported):
    loaded = exported[1]
    out = loaded.signatures["serving_default"](images=tf.zeros([0, 30, 40, 3], tf.uint8))
    assert out["detection_boxes"].shape == (0, 8, 4) and out["num_detections"].shape == (0,)
    assert out["detection_full_masks"].shape == (0, 8, 30, 40) and out["detection_class_names"].shape == (0, 8)
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant([], tf.string))
    assert out["detection_masks"].shape == (0, 8, 28, 28)


def test_warmup_requests_and_class_names(exported):
    path, loaded = exported
    with open(os.path.join(path, "assets.extra", "class_names.txt")) as f:
        assert f.read().splitlines() == ["background", *class_names]
    records = list(tf.data.TFRecordDataset(os.path.join(path, "assets.extra", "tf_serving_warmup_requests")))
    signatures = []
    for record in records:
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        assert request.model_spec.name == "mask_rcnn"
        signatures.append(request.model_spec.signature_name)
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        out = loaded.signatures[request.model_spec.signature_name](**{k: tf.constant(v) for k, v in inputs.items()})
        assert out["detection_full_masks"].shape == (1, 8, 40, 50)
    assert signatures == ["serving_default", "serving_bytes"]


def test_variables_are_saved_once(models, exported):
    data = [os.path.join(exported[0], "variables", name) for name in os.listdir(os.path.join(exported[0], "variables"))]
    stored = sum(os.path.getsize(path) for path in data)
    assert stored < 1.1 * 4 * models["mobilenet_v2"].count_params()  # float32, once (ExportArchive saves them twice)


def test_export_errors_leave_nothing(models, tmp_path):
    model = models["mobilenet_v2"]
    with pytest.raises(ValueError, match="give 4 or 3 class_names, got 2"):
        export_mask_rcnn_saved_model(model, tmp_path, "m", class_names=["a", "b"])
    with pytest.raises(ValueError, match="version must be a positive integer"):
        export_mask_rcnn_saved_model(model, tmp_path, "m", version=0)
    with pytest.raises(ValueError, match=r"warmup_images\[0\] must be a uint8 image"):
        export_mask_rcnn_saved_model(model, tmp_path, "m", warmup_images=[np.zeros((4, 4), np.uint8)])
    with pytest.raises(TypeError, match="MaskRCNNModel"):
        export_mask_rcnn_saved_model(keras.Sequential(), tmp_path, "m")
    assert not any(name.isdigit() for d in tmp_path.iterdir() for name in os.listdir(d))


def test_saved_model_cli_lists_signatures(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed next to this Python")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [cli, "show", "--dir", str(exported[0]), "--all"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("serving_default", "serving_bytes"):
        signature = result.stdout.split(f"signature_def['{name}']:")[1].split("signature_def[")[0]
        for output in KERAS + ("detection_full_masks", "detection_class_names"):
            assert f"outputs['{output}']" in signature, (name, output)
    assert "inputs['images']" in result.stdout and "inputs['image_bytes']" in result.stdout
    assert "tag-set: 'serve'" in result.stdout


def test_loads_and_runs_without_kzoo(run_without_kzoo, models, exported, shapes_images, tmp_path):
    path = exported[0]
    np.save(tmp_path / "images.npy", shapes_images[:2])
    run_without_kzoo(
        f"""
        import numpy as np
        import tensorflow as tf

        loaded = tf.saved_model.load({str(path)!r})
        images = np.load({str(tmp_path / "images.npy")!r})
        default = loaded.signatures["serving_default"](images=tf.constant(images))
        png = [tf.io.encode_png(image).numpy() for image in images]
        from_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant(png))
        np.savez({str(tmp_path / "out.npz")!r}, default=default["detection_boxes"], png=from_bytes["detection_boxes"],
                 classes=default["detection_classes"])
        """,
        tmp_path,
    )
    out = np.load(tmp_path / "out.npz")
    expected = keras_outputs(models["mobilenet_v2"], shapes_images[:2])
    np.testing.assert_allclose(out["default"], expected["detection_boxes"], atol=1e-3)
    np.testing.assert_allclose(out["png"], expected["detection_boxes"], atol=1e-3)
    np.testing.assert_array_equal(out["classes"], expected["detection_classes"])


# -- TFLite --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(models, shapes_images, tmp_path_factory):
    """Lazily converted files: ``converted(backbone, mode)`` -> path (each converted once per module)."""
    directory = tmp_path_factory.mktemp("tflite")
    calibration = np.stack([example["image"] for example in make_shapes_instances(6, SIZE, seed=11)])
    cache = {}

    def get(backbone: str, mode: str) -> str:
        if (backbone, mode) not in cache:
            cache[backbone, mode] = convert_mask_rcnn_tflite(
                models[backbone],
                directory / f"{backbone}_{mode}.tflite",
                (SIZE, SIZE),
                mode,
                representative_images=calibration,
                input_dtype=INPUT_DTYPES[backbone],
            )
        return cache[backbone, mode]

    return get


def parity(reference: dict, path: str, images: np.ndarray) -> dict[str, float]:
    """:func:`compare_detections` summary of the .tflite file's detections against ``reference``'s."""
    return compare_detections(reference, run_mask_rcnn_tflite(path, images), (SIZE, SIZE)).summary()


@pytest.mark.parametrize("mode", QUANTIZE_MODES)
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_builtin_ops_only(converted, backbone, mode):
    interpreter = Interpreter(model_path=converted(backbone, mode))
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not any(op.startswith("Flex") or op in ("CUSTOM", "DELEGATE") for op in ops), ops
    assert "NON_MAX_SUPPRESSION_V4" in ops and "GATHER" in ops and "CONV_2D" in ops
    (input_detail,) = interpreter.get_input_details()
    assert list(input_detail["shape"]) == [1, SIZE, SIZE, 3]
    assert input_detail["dtype"] == np.dtype(INPUT_DTYPES[backbone])
    outputs = interpreter.get_signature_list()["serving_default"]["outputs"]
    assert sorted(outputs) == sorted(KERAS)
    dtypes = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert (np.int8 in dtypes) == (mode in ("dynamic", "int8"))  # int8 weights (and int8 activations for int8)
    scales = [d["quantization"][0] for d in interpreter.get_tensor_details() if d["dtype"] == np.int8]
    assert max(scales, default=0.0) < 100.0, max(scales)
    assert np.float32 in dtypes  # float post-processing in every variant


@pytest.mark.parametrize("mode", ["none", "float16"])
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_float_variants_match_keras(models, converted, shapes_images, backbone, mode):
    result = parity(keras_outputs(models[backbone], shapes_images), converted(backbone, mode), shapes_images)
    print(f"\n{backbone} {mode}: {result}")
    # float16 weights may swap the detection ranked D-th (the last kept) with the next one, nothing more
    assert result["matched"] >= (1.0 if mode == "none" else 7 / 8) and result["same_class"] == 1.0, result
    assert result["box_error_max"] <= (1e-3 if mode == "none" else 1.0), result
    assert result["mask_iou_min"] >= (0.999 if mode == "none" else 0.95), result


PENN_FUDAN = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "PennFudanPed")


@pytest.fixture(scope="module")
def photographs() -> np.ndarray:
    """6 Penn-Fudan val photographs letterboxed (aspect ratio kept, zero padding at the bottom and right, as the
    training pipeline pads) to uint8 [6, 128, 128, 3]."""
    if not os.path.isdir(PENN_FUDAN):
        pytest.skip(
            f"Penn-Fudan data not found at {PENN_FUDAN} (real data lives beside the project in "
            "../shared/data; see its README)"
        )
    names = sorted(os.listdir(os.path.join(PENN_FUDAN, "PNGImages")))[::4][:6]  # the val split's first six
    photos = []
    for name in names:
        pixels = tf.io.decode_png(tf.io.read_file(os.path.join(PENN_FUDAN, "PNGImages", name)), channels=3)
        photos.append(letterbox(pixels.numpy(), (SIZE, SIZE))[0])
    return np.stack(photos)


@pytest.mark.parametrize("mode", ["none", "float16"])
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_float_variants_match_the_saved_model_on_photographs(models, converted, photographs, tmp_path, backbone, mode):
    # every detection within 1 px and mask IoU >= 0.95 of the SavedModel's, except NMS near-ties: detections the
    # float32 model has too (found without NMS, neither the RPN's nor the detector's) that NMS dropped for another of
    # nearly the same score, which any perturbation can flip (random tiny models with score_threshold=0 have many;
    # with the floor letterbox, small_convnet float16 has one from a proposal that the RPN's NMS flipped)
    model = models[backbone]
    path = export_mask_rcnn_saved_model(model, tmp_path, "mask_rcnn")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    reference = {key: value.numpy() for key, value in serve(images=tf.constant(photographs)).items()}
    out = run_mask_rcnn_tflite(converted(backbone, mode), photographs)
    result = compare_detections(reference, out, (SIZE, SIZE))
    unsuppressed = MaskRCNNModel(
        model.config.replace(
            detection={"nms_threshold": 1.0, "max_detections": 400},
            rpn={"nms_threshold": 1.0, "post_nms_top_k_test": model.config.rpn.pre_nms_top_k_test},
        )
    )
    unsuppressed(photographs[:1])
    unsuppressed.set_weights(model.get_weights())
    candidates = keras_outputs(unsuppressed, photographs)
    off = outliers(result, out)
    ties = [(image, row) for image, row in off if has_near_equal(candidates, out, image, row)]
    print(f"\n{backbone} {mode} on photographs: {result.summary()}; outliers {off}, NMS near-ties {ties}")
    assert result.reference_count == 6 * 8  # score_threshold=0: every slot holds a detection
    assert result.summary()["matched"] >= (1.0 if mode == "none" else 7 / 8) and all(result.same_class)
    assert off == ties and len(off) <= (0 if mode == "none" else 6), off
    within = np.ones(len(result.box_error), bool)
    within[[i for i, pair in enumerate(zip(result.image_index, result.candidate_row)) if tuple(pair) in ties]] = False
    assert np.all(result.box_error[within] <= (1e-2 if mode == "none" else 1.0))
    assert np.all(result.mask_iou[within] >= (0.99 if mode == "none" else 0.95))


@pytest.mark.slow
def test_r50_fpn_converts_to_builtins_and_matches_keras(shapes_images, tmp_path):
    # the full ResNet-50 body (its depth and widths are fixed) with tiny heads, at 128 x 128
    keras.utils.set_random_seed(4)
    model = MaskRCNNModel(MaskRCNNConfig().replace(backbone={"name": "resnet50"}, **TINY))
    expected = keras_outputs(model, shapes_images[:2])
    path = convert_mask_rcnn_tflite(model, tmp_path / "r50.tflite", (SIZE, SIZE))
    ops = {op["op_name"] for op in Interpreter(model_path=path)._get_ops_details()}
    assert not any(op.startswith("Flex") or op in ("CUSTOM", "DELEGATE") for op in ops), ops
    assert os.path.getsize(path) > 4 * 0.95 * model.count_params()  # every weight stored (none folded as a copy)
    result = compare_detections(expected, run_mask_rcnn_tflite(path, shapes_images[:2]), (SIZE, SIZE)).summary()
    print(f"\nR50-FPN none: {result}")
    assert result["matched"] == 1.0 and result["same_class"] == 1.0, result
    assert result["box_error_max"] <= 1e-2 and result["mask_iou_min"] >= 0.99, result


@pytest.mark.parametrize("mode", ["dynamic", "int8"])
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_quantized_variants_run(models, converted, shapes_images, backbone, mode):
    # parity is reported (pytest -s), not asserted: quantized random weights may reorder detections
    path = converted(backbone, mode)
    out = run_mask_rcnn_tflite(path, shapes_images)
    assert out["detection_boxes"].shape == (4, 8, 4) and out["detection_masks"].shape == (4, 8, 28, 28)
    assert (out["num_detections"] > 0).all() and np.isfinite(out["detection_boxes"]).all()
    print(f"\n{backbone} {mode}: {parity(keras_outputs(models[backbone], shapes_images), path, shapes_images)}")
    assert os.path.getsize(path) < os.path.getsize(converted(backbone, "none"))


def test_file_sizes_shrink(converted):
    sizes = {mode: os.path.getsize(converted("mobilenet_v2", mode)) for mode in QUANTIZE_MODES}
    print(f"\nmobilenet_v2 tiny sizes: {sizes}")
    assert sizes["float16"] < sizes["none"] and sizes["dynamic"] < sizes["none"] and sizes["int8"] < sizes["none"]


def test_rebuilds_with_tflite_kernels_and_same_weights(models, tmp_path, converted, shapes_images):
    model = models["small_convnet"]
    assert model.config.roi_align.method == "crop_and_resize"  # the default kernel, which TFLite's converter lacks
    ready = tflite_ready_model(model, (SIZE, SIZE))
    assert ready is not model and ready.config.roi_align.method == "gather" and ready.config.nms_method == "per_image"
    for a, b in zip(model.get_weights(), ready.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert tflite_ready_model(ready, (SIZE, SIZE)) is ready
    # a config and a weights file give the same file as the model
    weights = tmp_path / "tiny.weights.h5"
    model.save_weights(weights)
    path = convert_mask_rcnn_tflite(
        model.config, tmp_path / "from_config.tflite", (SIZE, SIZE), weights=weights, input_dtype="uint8"
    )
    a = run_mask_rcnn_tflite(path, shapes_images[:2])
    b = run_mask_rcnn_tflite(converted("small_convnet", "none"), shapes_images[:2])
    for key in KERAS:
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_inference_graph_has_no_infinite_fill_values(models, backbone):
    # int8 calibration records each tensor's range; an infinite (or FLT_MAX) fill-in for removed boxes once spread
    # through same-scale gathers to the objectness conv (scale 1e36: every logit 0, no detections on photographs)
    model = tflite_ready_model(models[backbone], (SIZE, SIZE))
    graph = (
        tf.function(lambda images: model(images, training=False))
        .get_concrete_function(tf.TensorSpec([1, SIZE, SIZE, 3], tf.uint8))
        .graph.as_graph_def()
    )
    nodes = list(graph.node) + [node for function in graph.library.function for node in function.node_def]
    constants = [(node.name, tf.make_ndarray(node.attr["value"].tensor)) for node in nodes if node.op == "Const"]
    floats = [(name, value) for name, value in constants if value.dtype.kind == "f"]
    assert len(floats) > 10
    huge = [name for name, value in floats if not np.all(np.abs(value) < 1e30)]
    assert not huge, huge


def test_letterbox_keeps_the_aspect_ratio_at_the_top_left():
    image = np.full((40, 80, 3), 200, np.uint8)
    canvas, scales = letterbox(image, (128, 128))
    assert canvas.shape == (128, 128, 3) and canvas.dtype == np.uint8 and list(scales) == [1.6, 1.6]
    assert (canvas[:64] == 200).all() and not canvas[64:].any()
    canvas, scales = letterbox(np.full((300, 100, 3), 9, np.uint8), (64, 96))  # the height limits: 64 / 300
    assert list(scales) == [64 / 300, 21 / 100]  # 100 * 64 / 300 = 21.3: floor, 21 columns (kzoo.ops.resize)
    assert (canvas[:, :21] == 9).all() and not canvas[:, 21:].any()
    with pytest.raises(ValueError, match=r"image must be \[H, W, 3\]"):
        letterbox(np.zeros((0, 5, 3), np.uint8), (64, 64))
    with pytest.raises(ValueError, match="image_size must be positive"):
        letterbox(image, (0, 64))


def test_detect_photos_of_any_size_maps_boxes_back(converted, shapes_images):
    path = converted("small_convnet", "none")
    photos = [shapes_images[0, :64], np.repeat(np.repeat(shapes_images[1], 2, axis=0), 2, axis=1)]  # 64x128, 256x256
    out = run_mask_rcnn_tflite_on_photos(path, photos)
    canvases = np.stack([letterbox(photo, (SIZE, SIZE))[0] for photo in photos])
    on_canvases = run_mask_rcnn_tflite(path, canvases)
    for key in ("detection_scores", "detection_classes", "num_detections", "detection_masks"):
        np.testing.assert_array_equal(out[key], on_canvases[key])
    for index, (photo, scale) in enumerate(zip(photos, (1.0, 0.5))):
        limits = np.array([*photo.shape[:2]] * 2, np.float32)
        expected = np.clip(on_canvases["detection_boxes"][index] / scale, 0, limits)  # exact scales here
        np.testing.assert_allclose(out["detection_boxes"][index], expected, rtol=1e-6)
    assert run_mask_rcnn_tflite_on_photos(path, [])["detection_boxes"].shape == (0, 8, 4)


def test_convert_and_run_errors(models, converted, shapes_images, tmp_path):
    model = models["mobilenet_v2"]
    with pytest.raises(ValueError, match="quantize must be one of"):
        convert_mask_rcnn_tflite(model, tmp_path / "m.tflite", (SIZE, SIZE), "int4")
    with pytest.raises(ValueError, match="needs representative_images"):
        convert_mask_rcnn_tflite(model, tmp_path / "m.tflite", (SIZE, SIZE), "int8")
    with pytest.raises(ValueError, match=r"representative_images must have shape \[N, 128, 128, 3\]"):
        convert_mask_rcnn_tflite(model, tmp_path / "m.tflite", (SIZE, SIZE), "int8", shapes_images[:, :64])
    with pytest.raises(ValueError, match="input_dtype must be one of"):
        convert_mask_rcnn_tflite(model, tmp_path / "m.tflite", (SIZE, SIZE), input_dtype="float16")
    with pytest.raises(ValueError, match="image_size must be"):
        convert_mask_rcnn_tflite(model, tmp_path / "m.tflite", (SIZE,))
    with pytest.raises(ValueError, match="weights= is for a MaskRCNNConfig"):
        convert_mask_rcnn_tflite(model, tmp_path / "m.tflite", (SIZE, SIZE), weights="w.h5")
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        convert_mask_rcnn_tflite(model.config, tmp_path / "m.tflite", (SIZE, SIZE), weights=tmp_path / "missing.h5")
    assert os.listdir(tmp_path) == []
    path = converted("mobilenet_v2", "none")
    with pytest.raises(ValueError, match=r"images must be \[batch, 128, 128, 3\], got height 64"):
        run_mask_rcnn_tflite(path, shapes_images[:, :64])
    with pytest.raises(FileNotFoundError, match="no TFLite model"):
        run_mask_rcnn_tflite(tmp_path / "missing.tflite", shapes_images)
    one = run_mask_rcnn_tflite(path, shapes_images[0])  # one image [H, W, 3]
    assert one["detection_boxes"].shape == (1, 8, 4)
    assert run_mask_rcnn_tflite(path, shapes_images[:0])["detection_masks"].shape == (0, 8, 28, 28)


def test_exports_are_readable_by_others(exported, converted, file_modes):
    from kzoo.utils.files import directory_mode, file_mode

    path = exported[0]
    for name, mode in file_modes(path).items():
        assert mode == (directory_mode() if os.path.isdir(os.path.join(path, name)) else file_mode()), name
    assert os.stat(converted("mobilenet_v2", "none")).st_mode & 0o777 == file_mode()
