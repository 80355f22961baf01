"""One strict decoder for every image kzoo reads (issue 25): a truncated or corrupt file is an error naming it in
``kzoo predict`` (NIN, with or without class maps, and Mask R-CNN) and a counted, skipped image in the annotation
converters, never Pillow's black fill; a FIFO, socket or device is "not a regular file" (refused from ``os.stat``,
without hanging); the training pipeline refuses the same files."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from kzoo.cli import main
from kzoo.data.annotation_tools import annotation_tool_to_coco
from kzoo.data.images import inspect_image_file, png_data_problem, read_image_file

SHAPES_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "mask_rcnn_shapes.yaml")


@pytest.fixture(autouse=True)
def no_hang():
    """Every test here fails after 60 s instead of hanging (opening a FIFO blocks until a writer comes)."""

    def fail(*_):
        raise TimeoutError("the test hung")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _png(rows: int = 8, width: int = 16, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (rows, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _claiming_rows(data: bytes, rows: int) -> bytes:
    """The PNG ``data`` with its header saying ``rows`` rows (CRC fixed): its complete image stream holds fewer."""
    length = struct.unpack(">I", data[8:12])[0]
    header = bytearray(data[16 : 16 + length])
    header[4:8] = struct.pack(">I", rows)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(header)))
    return data[:16] + bytes(header) + crc + data[20 + length :]


def _short_png(path) -> str:
    """The issue's file: the header says 9000 rows, the data holds 8."""
    path.write_bytes(_claiming_rows(_png(), 9000))
    return str(path)


# ------------------------------------------------------------------------------------------- the decoder


def test_a_png_whose_data_holds_fewer_rows_than_its_header_is_refused(tmp_path):
    path = _short_png(tmp_path / "short.png")
    assert Image.open(path).load() is not None  # Pillow alone fills 8992 rows with black, without a word
    with pytest.raises(
        ValueError,
        match=r"short\.png is a truncated or corrupt PNG image \(the image data holds "
        r"392 of the 441000 bytes of the header's 9000 rows",
    ):
        read_image_file(path)
    with pytest.raises(ValueError, match=r"short\.png"):
        inspect_image_file(path)


def test_a_png_chunk_with_a_wrong_crc_is_refused(tmp_path):
    data = bytearray(_png())
    idat = data.find(b"IDAT")
    data[idat + 6] ^= 0xFF  # a flipped byte of the image data: zlib may even decode it
    assert "wrong CRC" in png_data_problem(bytes(data))
    (tmp_path / "flipped.png").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"flipped\.png is a truncated or corrupt"):
        read_image_file(str(tmp_path / "flipped.png"))
    assert png_data_problem(_png()) is None


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "GIF"])
def test_strict_even_when_another_library_turned_on_load_truncated_images(tmp_path, monkeypatch, fmt):
    pixels = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    data = buffer.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ValueError, match=rf"cut\.{fmt.lower()} is a (truncated or )?corrupt"):
        read_image_file(str(path))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # left as it was


def _fifo(tmp_path, name: str = "pipe.png") -> str:
    path = str(tmp_path / name)
    os.mkfifo(path)
    return path


def test_a_fifo_socket_or_device_is_not_a_regular_file_and_does_not_hang(tmp_path):
    with pytest.raises(ValueError, match=r"pipe\.png is not a regular file \(a FIFO"):
        read_image_file(_fifo(tmp_path))
    with pytest.raises(ValueError, match=r"/dev/null is not a regular file \(a device\)"):
        read_image_file("/dev/null")
    path = str(tmp_path / "s.png")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        with pytest.raises(ValueError, match=r"s\.png is not a regular file \(a socket\)"):
            read_image_file(path)
    with pytest.raises(FileNotFoundError, match="image not found"):
        read_image_file(str(tmp_path / "missing.png"))


# ---------------------------------------------------------------------------------------------- predict


@pytest.mark.parametrize("make", ["short", "fifo"])
def test_mask_rcnn_predict_refuses_the_file_before_loading_a_model(tmp_path, capsys, make):
    path = _short_png(tmp_path / "short.png") if make == "short" else _fifo(tmp_path)
    output = tmp_path / "predictions"
    args = [
        "predict",
        path,
        "--mask-rcnn",
        SHAPES_CONFIG,
        "--output",
        str(output),
        "--weights",
        str(tmp_path / "none.weights.h5"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    expected = "is a truncated or corrupt PNG image" if make == "short" else "is not a regular file (a FIFO"
    assert f"{path} {expected}" in err and "not found" not in err, err
    assert not output.exists()


@pytest.mark.parametrize("cam", [False, True])
@pytest.mark.parametrize("make", ["short", "fifo", "device"])
def test_nin_predict_refuses_the_file(tmp_path, capsys, make, cam):
    path = {
        "short": lambda: _short_png(tmp_path / "short.png"),
        "fifo": lambda: _fifo(tmp_path),
        "device": lambda: "/dev/zero",
    }[make]()
    args = ["predict", path, "--saved-model", str(tmp_path / "no_model")] + (
        ["--cam", str(tmp_path / "cams")] if cam else []
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    expected = {
        "short": "is a truncated or corrupt PNG image",
        "fifo": "is not a regular file (a FIFO",
        "device": "is not a regular file (a device)",
    }[make]
    assert f"{path} {expected}" in err, err
    assert not (tmp_path / "cams").exists()


# ------------------------------------------------------------------------------------ the converters, training


def test_converters_skip_and_count_truncated_images_and_fifos(tmp_path, caplog):
    square = [[2.0, 2.0], [12.0, 2.0], [12.0, 6.0], [2.0, 6.0]]
    (tmp_path / "good.png").write_bytes(_png())
    _short_png(tmp_path / "short.png")
    _fifo(tmp_path, "pipe.png")
    for name in ("good", "short", "pipe"):
        (tmp_path / f"{name}.json").write_text(
            json.dumps(
                {
                    "version": "5.4.1",
                    "flags": {},
                    "imagePath": f"{name}.png",
                    "imageData": None,
                    "imageHeight": 8,
                    "imageWidth": 16,
                    "shapes": [
                        {"label": "cat", "points": square, "group_id": None, "shape_type": "polygon", "flags": {}}
                    ],
                }
            )
        )
    coco, _, counts = annotation_tool_to_coco("labelme", str(tmp_path))
    assert [i["file_name"] for i in coco["images"]] == ["good.png"] and counts["corrupt_images"] == 2
    assert "short.png" in caplog.text and "pipe.png" in caplog.text


def test_training_pipeline_refuses_the_same_file(tmp_path):
    from kzoo.data.coco_reader import load_coco_instances
    from kzoo.data.decode_errors import ImageDecodeError, naming_undecodable_images
    from kzoo.data.detection_pipeline import make_detection_pipeline

    (tmp_path / "good.png").write_bytes(_png(16, 16))
    (tmp_path / "short.png").write_bytes(_claiming_rows(_png(8, 16), 16))
    images = [{"id": i + 1, "file_name": n, "height": 16, "width": 16} for i, n in enumerate(["good.png", "short.png"])]
    annotations = [
        {
            "id": i + 1,
            "image_id": i + 1,
            "category_id": 1,
            "bbox": [2, 2, 10, 4],
            "area": 40,
            "iscrowd": 0,
            "segmentation": [[2, 2, 12, 2, 12, 6, 2, 6]],
        }
        for i in range(2)
    ]
    (tmp_path / "set.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "cat"}]})
    )
    instances = load_coco_instances(str(tmp_path / "set.json"), str(tmp_path))
    dataset = make_detection_pipeline(instances, 1, training=False, image_size=16, max_instances=2, mask_size=8)
    with pytest.raises(ImageDecodeError, match=r"short\.png \(image id 2\) cannot be decoded"):
        with naming_undecodable_images(instances, "training"):
            for _ in dataset:
                pass
    with pytest.raises(ValueError, match=r"short\.png is a truncated or corrupt PNG"):
        read_image_file(str(tmp_path / "short.png"))
