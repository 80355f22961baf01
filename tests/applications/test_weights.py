"""kzoo.applications.weights: one registry for NIN and Mask R-CNN, the sha256 record of converted files, and the
shipped Fashion-MNIST NIN (registered, hash-checked, loadable offline, as accurate as stated).

The converted-file tests replace the converter (no torch, no Mask R-CNN): what is checked is the cache logic.
The real conversion: tests/applications/torchvision/test_convert.py::test_coco_weights_download_convert_cache_and_cli.
"""

import dataclasses
import json
import os
import stat

import keras
import numpy as np
import pytest

from kzoo.applications import NIN, MaskRCNN, nin, weights
from kzoo.applications.weights import REGISTRY, local_weight_dirs
from kzoo.data.fashion_mnist import DEFAULT_DIR, load_fashion_mnist
from kzoo.utils.files import sha256_of, write_bytes


def test_one_registry_for_both_families():
    assert weights.REGISTRY["fashion_mnist"].family == "nin"
    assert weights.REGISTRY["coco"].family == "mask_rcnn"
    assert weights.get_registered("coco", "mask_rcnn").source_sha256_prefix == "bf2d0c1e"
    assert weights.get_registered("coco", "mask_rcnn").url.endswith("maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth")
    assert weights.get_registered("fashion_mnist", "nin").variant == "mnist"
    assert weights.sha256_of is sha256_of  # the one sha256 of kzoo.utils.files
    nin_names = r"unknown weights 'coco': pass None, a file path, or one of \['fashion_mnist'\]"
    with pytest.raises(ValueError, match=nin_names):
        weights.get_registered("coco", "nin")
    with pytest.raises(ValueError, match=r"unknown weights 'fashion_mnist': .* one of \['coco'\]"):
        weights.get_registered("fashion_mnist", "mask_rcnn")
    with pytest.raises(ValueError, match="registered already"):
        weights.register(dataclasses.replace(weights.REGISTRY["coco"], family="nin", sha256="0" * 64, source_url=None))
    with pytest.raises(ValueError, match="family must be one of"):
        dataclasses.replace(weights.REGISTRY["coco"], family="yolo")
    with pytest.raises(ValueError, match="either sha256"):
        dataclasses.replace(weights.REGISTRY["coco"], sha256="0" * 64)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown weights 'imagenet': pass None, a file path, or one of \['coco'\]"):
        MaskRCNN(weights="imagenet")
    with pytest.raises(
        ValueError,
        match=r"unknown weights 'imagenet': pass None, a file path, or one of "
        r"\['fashion_mnist'\]",
    ):
        NIN(weights="imagenet")
    with pytest.raises(ValueError, match=r"unknown weights 'fashion_mnist': .* one of \['coco'\]"):
        MaskRCNN(weights="fashion_mnist")
    with pytest.raises(ValueError, match=r"unknown weights 'coco': .* one of \['fashion_mnist'\]"):
        NIN(weights="coco")
    with pytest.raises(ValueError, match=r"unknown weights 'coco'"):
        nin.decode_predictions([[0.5, 0.5]], class_names="coco")
    for build in (NIN, MaskRCNN):
        with pytest.raises(FileNotFoundError, match="weights file not found: missing.weights.h5"):
            build(weights="missing.weights.h5")


@pytest.fixture
def fake_coco(tmp_path, monkeypatch):
    """The "coco" entry pointed at a local file:// checkpoint, and a converter that writes
    ``converted:`` + the checkpoint's bytes atomically; returns the list of conversions made."""
    server = tmp_path / "server"
    server.mkdir()
    pth = server / "fake_coco-00000000.pth"
    pth.write_bytes(b"a torchvision checkpoint" * 100)
    entry = dataclasses.replace(
        weights.REGISTRY["coco"], source_url=pth.as_uri(), source_sha256_prefix=sha256_of(pth)[:8]
    )
    monkeypatch.setitem(weights.REGISTRY, "coco", entry)
    monkeypatch.setattr(weights, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KZOO_WEIGHTS_DIR", str(tmp_path / "no_local_weights"))
    conversions = []

    def convert(source, output, num_classes=None):
        assert output.endswith(".weights.h5") and num_classes == 91
        conversions.append(source)
        with open(source, "rb") as f:
            return write_bytes(output, b"converted:" + f.read())

    monkeypatch.setattr(weights, "convert_torchvision_checkpoint", convert)
    return entry, conversions


def test_converted_file_is_recorded_and_verified(fake_coco, tmp_path, monkeypatch, umask_022):
    entry, conversions = fake_coco
    folder = tmp_path / "cache" / "models" / "kzoo"
    converted = folder / entry.file_name
    record_file = folder / (entry.file_name + ".sha256.json")
    source = folder / "fake_coco-00000000.pth"

    assert weights.resolve_weights_file(entry) == str(converted)
    assert conversions == [str(source)]
    record = json.loads(record_file.read_text())
    assert record["sha256"] == sha256_of(converted) and len(record["sha256"]) == 64  # the full digest
    assert record["source"] == {"url": entry.url, "file": source.name, "sha256": sha256_of(source)}
    assert (record["weights"], record["file"], record["size"]) == ("coco", entry.file_name, converted.stat().st_size)
    for path in (converted, record_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(os.listdir(folder)) == sorted([converted.name, record_file.name, source.name])

    # a file that matches its record is used as is: no download, no conversion
    def no_download(*args, **kwargs):
        raise AssertionError("downloaded again")

    with monkeypatch.context() as patch:
        patch.setattr(keras.utils, "get_file", no_download)
        assert weights.resolve_weights_file(entry) == str(converted)
    assert len(conversions) == 1

    # truncated: converted again (from the cached checkpoint), with a warning naming the file
    good = converted.read_bytes()
    converted.write_bytes(good[:10])
    with pytest.warns(UserWarning, match=f"{converted}.*does not match its record.*truncated or replaced"):
        assert weights.resolve_weights_file(entry) == str(converted)
    assert len(conversions) == 2 and converted.read_bytes() == good
    assert json.loads(record_file.read_text())["sha256"] == sha256_of(converted)

    # no record (a cache of an older kzoo): converted again
    record_file.unlink()
    with pytest.warns(UserWarning, match="has no sha256 record"):
        weights.resolve_weights_file(entry)
    assert len(conversions) == 3 and record_file.is_file()

    # replaced: converted again (no torch needed); an unreadable record likewise
    converted.write_bytes(b"something else")
    with pytest.warns(UserWarning, match=f"{converted}.*does not match its record"):
        weights.resolve_weights_file(entry)
    assert converted.read_bytes() == good and len(conversions) == 4
    record_file.write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable sha256 record"):
        weights.resolve_weights_file(entry)
    assert len(conversions) == 5


def test_converted_file_needs_the_right_source(fake_coco, tmp_path, monkeypatch):
    entry, conversions = fake_coco
    folder = tmp_path / "cache" / "models" / "kzoo"
    wrong = dataclasses.replace(entry, source_sha256_prefix="bf2d0c1e")
    with pytest.raises(ValueError, match="does not start with bf2d0c1e: the file was deleted"):
        weights.resolve_weights_file(wrong)
    assert os.listdir(folder) == [] and conversions == []


def test_offline_is_one_clear_error_and_a_local_copy_is_used(fake_coco, tmp_path, monkeypatch):
    """No network: the error names the URL, the cache path to put a copy at, and kzoo convert torchvision; a
    copy put there (or in $KZOO_WEIGHTS_DIR) is converted without any download."""
    entry, conversions = fake_coco
    source = tmp_path / "server" / "fake_coco-00000000.pth"
    offline = dataclasses.replace(entry, source_url=(tmp_path / "gone" / source.name).as_uri())
    cache_copy = tmp_path / "cache" / "models" / "kzoo" / source.name
    with pytest.raises(weights.WeightsUnavailableError) as error:
        weights.resolve_weights_file(offline)
    message = str(error.value)
    assert "\n" not in message and offline.url in message and str(cache_copy) in message
    assert "kzoo convert torchvision FILE coco.weights.h5" in message and conversions == []
    assert error.value.__cause__ is None and error.value.__suppress_context__  # one error, not a chain

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded")

    monkeypatch.setattr(keras.utils, "get_file", no_download)
    local = tmp_path / "no_local_weights"
    local.mkdir()
    (local / source.name).write_bytes(source.read_bytes())
    assert weights.resolve_weights_file(offline) == str(cache_copy.parent / entry.file_name)
    assert conversions == [str(local / source.name)]
    (local / source.name).write_bytes(b"another file")
    os.remove(cache_copy.parent / entry.file_name)
    with pytest.raises(ValueError, match=f"{local / source.name} has sha256 .*it is not {source.name}"):
        weights.resolve_weights_file(offline)


def test_coco_entry_carries_its_metadata():
    coco = weights.REGISTRY["coco"]
    assert len(coco.class_names) == 91 and coco.class_names[0] == weights.BACKGROUND
    assert coco.class_names[1] == "person" and coco.class_names[90] == "toothbrush"
    assert coco.class_names.count(weights.UNUSED) == 10 and len(coco.categories) == 80
    assert coco.categories[1] == "person" and 12 not in coco.categories
    assert coco.metrics == {"dataset": "COCO val2017", "box_ap": 37.9, "mask_ap": 34.6}
    assert "uint8" in coco.input_contract and "[0, 255]" in coco.input_contract
    fashion = weights.REGISTRY["fashion_mnist"]
    assert fashion.metrics["test_accuracy"] == 0.9378 and "28, 28, 1" in fashion.input_contract


ENTRY = REGISTRY["fashion_mnist"]
SHIPPED = os.path.join(local_weight_dirs()[-2], ENTRY.file_name)


def test_shipped_file_matches_registry():
    assert os.path.isfile(SHIPPED), f"{SHIPPED} is missing from saved_models/"
    assert os.path.getsize(SHIPPED) < 5e6
    assert sha256_of(SHIPPED) == ENTRY.sha256


def test_loads_offline_by_name():
    model = NIN(weights="fashion_mnist", input_shape=(28, 28, 1))
    assert model.count_params() == 351_816  # the paper's MNIST widths, with batch norm (incl. moving stats)
    scores = model(np.zeros((1, 28, 28, 1), np.float32))
    assert scores.shape == (1, 10)
    assert model.class_names == ENTRY.class_names and model.class_names[0] == "T-shirt/top"


@pytest.mark.skipif(not os.path.isdir(DEFAULT_DIR), reason="Debian's dataset-fashion-mnist is not installed")
def test_test_set_accuracy_as_stated():
    images, labels = load_fashion_mnist("test")
    model = NIN(weights="fashion_mnist", input_shape=(28, 28, 1))
    probs = model.predict(nin.preprocess_input(images), batch_size=500, verbose=0)
    accuracy = float(np.mean(np.argmax(probs, -1) == labels))
    assert accuracy >= 0.935
    assert abs(accuracy - ENTRY.metrics["test_accuracy"]) < 1e-3
    top = nin.decode_predictions(probs[:1], top=1, class_names="fashion_mnist")[0][0]
    assert top[1] in ENTRY.class_names
