"""The contracts written into kzoo's exported files themselves, checked the way users call them without kzoo's
helpers: ``.tflite`` files through LiteRT's own ``Interpreter`` (uint8 input, a fixed shape that cannot be resized
to run on another size), and the export rule of ``kzoo export`` (nothing replaced silently)."""

import os

import numpy as np
import pytest
import yaml
from ai_edge_litert.interpreter import Interpreter
from corpus import pixels

from kzoo.cli import main
from kzoo.export import (
    convert_classifier_tflite,
    convert_mask_rcnn_tflite,
    export_classifier_saved_model,
    run_classifier_tflite,
    run_mask_rcnn_tflite,
)

NIN = (16, 16, 3)
MASK_RCNN = (64, 64, 3)


@pytest.fixture(scope="module")
def files(nin_model, mask_rcnn_model, tmp_path_factory):
    """``.tflite`` files by key: NIN float32 weights and full-integer, Mask R-CNN float32 weights."""
    directory = tmp_path_factory.mktemp("contracts")
    return {
        "nin": (convert_classifier_tflite(nin_model, directory / "nin.tflite"), NIN),
        "nin-int8": (
            convert_classifier_tflite(
                nin_model, directory / "nin_int8.tflite", "int8", representative_images=pixels((8, *NIN), seed=5)
            ),
            NIN,
        ),
        "mask_rcnn": (
            convert_mask_rcnn_tflite(mask_rcnn_model, directory / "mask_rcnn.tflite", MASK_RCNN[:2]),
            MASK_RCNN,
        ),
    }


def run_resized(path: str, shape: list[int], resolver=None) -> None:
    """Resize the interpreter's input to ``shape`` and run it on uint8 pixels, as a user on a phone would."""
    from ai_edge_litert.interpreter import OpResolverType

    kwargs = {} if resolver is None else {"experimental_op_resolver_type": getattr(OpResolverType, resolver)}
    interpreter = Interpreter(model_path=path, **kwargs)
    (detail,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(detail["index"], shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], pixels(shape))
    interpreter.invoke()


@pytest.mark.parametrize("key", ["nin", "nin-int8", "mask_rcnn"])
def test_input_is_uint8_with_a_fixed_shape_signature(files, key):
    path, image_shape = files[key]
    interpreter = Interpreter(model_path=path)
    (detail,) = interpreter.get_input_details()
    assert detail["dtype"] == np.uint8
    assert list(detail["shape"]) == [1, *image_shape]
    assert list(detail["shape_signature"]) == [1, *image_shape]  # no -1 anywhere
    assert interpreter.get_signature_list()["serving_default"]["inputs"] == ["images"]
    interpreter.allocate_tensors()
    # floats (pixels in [0, 1], NaN) cannot be set at all
    for value in (0.5, np.nan):
        with pytest.raises(ValueError, match="UINT8|uint8"):
            interpreter.set_tensor(detail["index"], np.full((1, *image_shape), value, np.float32))
    interpreter.set_tensor(detail["index"], pixels((1, *image_shape)))
    interpreter.invoke()


def other_shapes(height: int, width: int, channels: int) -> list[list[int]]:
    return [
        [1, 2 * height, 2 * width, channels],  # larger
        [1, height // 2, width, channels],  # smaller
        [1, height // 2, 2 * width, channels],  # the same number of pixels, another shape
        [1, width * 3 // 4, height * 4 // 3, channels] if height != width else [1, height * 2, width // 2, channels],
        [2, height, width, channels],  # a batch
        [1, height, width, 1],  # gray
        [1, height, width, 4],  # RGBA
    ]


@pytest.mark.parametrize("resolver", [None, "BUILTIN_WITHOUT_DEFAULT_DELEGATES"], ids=["xnnpack", "builtin"])
@pytest.mark.parametrize("key", ["nin", "nin-int8", "mask_rcnn"])
def test_resized_input_fails(files, key, resolver):
    path, image_shape = files[key]
    run_resized(path, [1, *image_shape], resolver)  # the file's own shape runs
    for shape in other_shapes(*image_shape):
        with pytest.raises((RuntimeError, ValueError)):
            run_resized(path, shape, resolver)


@pytest.mark.parametrize("key", ["nin", "mask_rcnn"])
def test_signature_runner_refuses_other_shapes(files, key):
    path, (height, width, channels) = files[key]
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    runner(images=pixels((1, height, width, channels)))
    with pytest.raises((RuntimeError, ValueError)):
        runner(images=pixels((1, 2 * height, 2 * width, channels)))


def test_direct_calls_agree_with_the_runners(files, nin_model):
    path, shape = files["nin"]
    images = pixels((3, *shape), seed=9)
    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    (detail,) = interpreter.get_input_details()
    direct = []
    for image in images:
        interpreter.set_tensor(detail["index"], image[None])
        interpreter.invoke()
        direct.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
    np.testing.assert_allclose(np.stack(direct), run_classifier_tflite(path, images), atol=1e-6)
    # and the Keras model on the same pixels (normalization inside the file)
    np.testing.assert_allclose(np.stack(direct), nin_model(images.astype(np.float32) / 127.5 - 1).numpy(), atol=1e-4)
    out = run_mask_rcnn_tflite(files["mask_rcnn"][0], pixels((2, *MASK_RCNN), seed=2).astype(np.float32))
    assert out["detection_boxes"].shape == (2, 10, 4)


def test_float32_tflite_input_is_refused(mask_rcnn_model, tmp_path):
    with pytest.raises(ValueError, match=r"input_dtype must be one of \('uint8',\).*floats in \[0, 1\] or NaN"):
        convert_mask_rcnn_tflite(mask_rcnn_model, tmp_path / "m.tflite", MASK_RCNN[:2], input_dtype="float32")
    assert not os.listdir(tmp_path)


# -- the export rule: nothing replaced silently ----------------------------------------------------------------------


def test_tflite_overwrite_rule(nin_model, tmp_path):
    path = tmp_path / "nin.tflite"
    path.write_bytes(b"an earlier export")
    with pytest.raises(FileExistsError, match=r"nin.tflite exists already; refusing to replace it.*--overwrite"):
        convert_classifier_tflite(nin_model, path, overwrite=False)
    assert path.read_bytes() == b"an earlier export"
    convert_classifier_tflite(nin_model, path, overwrite=True)
    assert Interpreter(model_path=str(path)).get_input_details()[0]["dtype"] == np.uint8
    assert sorted(os.listdir(tmp_path)) == ["nin.tflite"]  # replaced by a rename: no temporary left


def test_saved_model_versions_are_never_replaced(nin_model, tmp_path):
    first = export_classifier_saved_model(nin_model, tmp_path, "nin", ["a", "b", "c"])
    before = sorted(os.listdir(first))
    with pytest.raises(FileExistsError, match=r"versions are never replaced.*next free one \(2\)"):
        export_classifier_saved_model(nin_model, tmp_path, "nin", ["a", "b", "c"], version=1)
    assert sorted(os.listdir(first)) == before
    assert export_classifier_saved_model(nin_model, tmp_path, "nin", ["a", "b", "c"]).endswith(os.sep + "2")


TINY = {
    "name": "tiny",
    "model": {
        "variant": "custom",
        "blocks": [{"filters": [8], "kernel_size": 3}],
        "num_classes": 5,
        "input_shape": [16, 16, 3],
    },
    "data": {"source": "shapes", "train_examples": 32, "eval_examples": 16, "image_size": 16},
}


def test_cli_export_refuses_an_existing_tflite_before_any_work(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "run")}))
    existing = tmp_path / "run" / "export" / "tiny_none.tflite"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"an earlier export")
    # no weights were trained: the refusal comes first
    assert main(["export", str(config), "--format", "tflite", "--quantize", "none"]) == 2
    err = capsys.readouterr().err
    assert "tiny_none.tflite exists already" in err and "--overwrite" in err
    assert existing.read_bytes() == b"an earlier export"
    # another variant passes the check, then finds no trained weights: an error, nothing written
    assert main(["export", str(config), "--format", "tflite", "--quantize", "float16"]) == 2
    assert sorted(os.listdir(existing.parent)) == ["tiny_none.tflite"]


def test_cli_export_help_states_the_rule(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Nothing is replaced silently" in out and "an existing version is refused" in out
    assert "--overwrite" in out and "atomic" in out
