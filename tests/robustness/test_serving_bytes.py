"""``serving_bytes`` of the exported SavedModels (NIN and Mask R-CNN) on corrupt, truncated and misshapen requests,
called from a Python process that never imports kzoo (the SavedModel's contract): every error names
``image_bytes[i]`` and the problem, and inputs of another rank than 1 are refused saying a 1-D string tensor is
needed, instead of TF's decoder text without an index or an internal TensorList error."""

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from corpus import pixels
from PIL import Image

from kzoo.export import export_classifier_saved_model, export_mask_rcnn_saved_model

pytestmark = pytest.mark.slow  # ~30 s: two exports and a TensorFlow process

CHECK = textwrap.dedent(
    """
    import base64, json, sys
    import tensorflow as tf
    cases = json.load(open(sys.argv[1]))
    results = {}
    for model, path in cases["models"].items():
        signature = tf.saved_model.load(path).signatures["serving_bytes"]
        for name, request in cases["requests"].items():
            values = [base64.urlsafe_b64decode(text) for text in request["b64"]]
            value = tf.reshape(tf.constant(values, tf.string), request["shape"])
            try:
                out = signature(image_bytes=value)
                results[model + "/" + name] = {"ok": {key: list(v.shape) for key, v in out.items()}}
            except Exception as error:  # the text a client of TF Serving gets
                results[model + "/" + name] = {"error": type(error).__name__, "message": str(error)}
    assert not any(name.startswith("kzoo") for name in sys.modules), "the check must not import kzoo"
    json.dump(results, open(sys.argv[2], "w"))
    """
)


def encode(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


PNG = encode(pixels((40, 50, 3), seed=1), "PNG")
JPEG = encode(pixels((40, 50, 3), seed=2), "JPEG")
OTHER_SIZE = encode(pixels((30, 20, 3), seed=3), "PNG")
GIF = encode(pixels((40, 50, 3), seed=4), "GIF")

# name -> (list of strings, shape, expected: "ok" or a regex the error must match)
CORRUPT = r"image_bytes\[{}\] is a corrupt or truncated {} image: the decoder cannot read it"
RANK = r"image_bytes must be a 1-D string tensor \[batch\] of encoded images.*got shape\W*{}"
REQUESTS = {
    "good": ([PNG, JPEG], [2], "ok"),
    "good-mixed-sizes": ([PNG, OTHER_SIZE, JPEG], [3], "ok"),
    "truncated-png-at-1": ([PNG, PNG[: len(PNG) // 2]], [2], CORRUPT.format(1, "PNG")),
    "truncated-jpeg-at-0": ([JPEG[: len(JPEG) // 2], PNG], [2], CORRUPT.format(0, "JPEG")),
    "png-header-only-at-2": ([PNG, JPEG, PNG[:60]], [3], CORRUPT.format(2, "PNG")),
    "truncated-gif-at-1": ([PNG, GIF[:30]], [2], CORRUPT.format(1, "GIF")),
    "mixed-sizes-truncated-at-2": ([PNG, OTHER_SIZE, PNG[: len(PNG) // 3]], [3], CORRUPT.format(2, "PNG")),
    "empty-at-1": ([PNG, b""], [2], r"image_bytes\[1\] is empty"),
    "text-at-0": ([b"not an image", PNG], [2], r"image_bytes\[0\] is not a JPEG, PNG, GIF, BMP or WebP image"),
    "rank-0": ([PNG], [], RANK.format(r"\[\]")),
    "rank-2": ([PNG, JPEG], [2, 1], RANK.format(r"\[2 1\]")),
    "rank-2-empty": ([], [0, 3], RANK.format(r"\[0 3\]")),
    "empty-batch": ([], [0], "ok"),
}


@pytest.fixture(scope="module")
def results(nin_model, mask_rcnn_model, tmp_path_factory):
    base = tmp_path_factory.mktemp("serving_bytes")
    models = {
        "nin": export_classifier_saved_model(nin_model, base, "nin", ["a", "b", "c"]),
        "mask_rcnn": export_mask_rcnn_saved_model(mask_rcnn_model, base, "mask_rcnn", full_image_masks=True),
    }
    import base64

    requests = {
        name: {"b64": [base64.urlsafe_b64encode(v).decode() for v in values], "shape": shape}
        for name, (values, shape, _) in REQUESTS.items()
    }
    cases, out = base / "cases.json", base / "results.json"
    cases.write_text(json.dumps({"models": models, "requests": requests}))
    script = base / "check.py"
    script.write_text(CHECK)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    subprocess.run([sys.executable, str(script), str(cases), str(out)], check=True, cwd=base, env=env, timeout=600)
    return json.loads(out.read_text())


@pytest.mark.parametrize("model", ["nin", "mask_rcnn"])
@pytest.mark.parametrize("name", list(REQUESTS))
def test_serving_bytes_errors_name_the_image(results, model, name):
    values, shape, expected = REQUESTS[name]
    result = results[f"{model}/{name}"]
    if expected == "ok":
        assert "ok" in result, result
        key = "probabilities" if model == "nin" else "detection_boxes"
        assert result["ok"][key][0] == shape[0]
        return
    assert result.get("error") == "InvalidArgumentError", result
    import re

    assert re.search(expected, result["message"]), result["message"][:2000]
    assert "TensorList" not in result["message"]
