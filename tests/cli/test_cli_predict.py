"""``kzoo predict`` inputs: folders and glob patterns as well as files, video files (annotated MP4 and per-frame
COCO results), the default drawing threshold, a progress bar and the throughput at the end."""

import json
import os

import numpy as np
import pytest
import yaml
from PIL import Image

from kzoo.data.images import expand_image_inputs

av = pytest.importorskip("av")


def _image(path, value=90, size=(48, 80)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return str(path)


def test_folders_and_patterns_expand_to_their_image_files(tmp_path):
    a = _image(tmp_path / "photos" / "b.jpg")
    b = _image(tmp_path / "photos" / "a.png")
    _image(tmp_path / "photos" / "sub" / "c.png")
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    (tmp_path / "photos" / ".hidden.png").write_bytes(b"")
    single = _image(tmp_path / "one.png")
    assert expand_image_inputs([str(tmp_path / "photos")]) == [b, a]  # sorted, not recursive, images only
    assert expand_image_inputs([str(tmp_path / "photos" / "*.png"), single]) == [b, single]
    assert expand_image_inputs([str(tmp_path / "**" / "c.png")]) == [str(tmp_path / "photos" / "sub" / "c.png")]
    assert expand_image_inputs([single, single]) == [single, single]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files .* in the folder .*empty"):
        expand_image_inputs([str(tmp_path / "empty")])
    with pytest.raises(FileNotFoundError, match=r"no image files match '.*\*\.gif'"):
        expand_image_inputs([str(tmp_path / "photos" / "*.gif")])
    # a path that does not exist and is no pattern is left to the reader, which names it
    assert expand_image_inputs([str(tmp_path / "missing.png")]) == [str(tmp_path / "missing.png")]


def _video(path, frames=4, size=(48, 64)):
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=5)
    stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
    for i in range(frames):
        frame = np.zeros((*size, 3), np.uint8)
        frame[10:30, 10 + 5 * i : 30 + 5 * i] = 255
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return str(path)


@pytest.fixture
def tiny_run(tmp_path):
    from kzoo.config import load_config
    from kzoo.tasks.instance_segmentation import InstanceSegmentationTask

    config = tmp_path / "tiny_mask_rcnn.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "mask_rcnn",
                "output_dir": str(tmp_path / "run"),
                "model": {
                    "backbone": {"name": "mobilenet_v2"},
                    "num_classes": 4,
                    "fpn": {"channels": 16},
                    "box_head": {"fc_dim": 32},
                    "mask_head": {"channels": 8, "num_convs": 1},
                    "rpn": {"pre_nms_top_k_test": 50, "post_nms_top_k_test": 20},
                    "detection": {"max_detections": 5, "score_threshold": 0.0},
                    "input": {"min_size": 64, "max_size": 96},
                },
            }
        )
    )
    (tmp_path / "run").mkdir()
    InstanceSegmentationTask(load_config(config)).build_model(init_weights=False).save_weights(
        str(tmp_path / "run" / "model.weights.h5")
    )
    return config


def test_mask_rcnn_predict_on_folders_globs_and_a_video(tmp_path, tiny_run, capsys):
    from kzoo.cli import main

    _image(tmp_path / "in" / "x.png")
    _image(tmp_path / "in" / "y.jpg", value=30)
    _image(tmp_path / "more" / "x.png", value=200)
    video = _video(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    argv = [
        "predict",
        str(tmp_path / "in"),
        str(tmp_path / "more" / "*.png"),
        video,
        "--mask-rcnn",
        str(tiny_run),
        "--output",
        str(out),
        "--score-threshold",
        "0",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr()
    names = sorted(os.listdir(out))
    assert names == [
        "clip_detections.json",
        "clip_detections.mp4",
        "in_x_detections.png",
        "more_x_detections.png",
        "y_detections.png",
    ], names
    assert "in 4 frames" in printed.out and "7 images in" in printed.out and "images/s" in printed.out
    # the annotated video: every frame, at the source's size and rate
    with av.open(str(out / "clip_detections.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 4 and frames[0].shape == (48, 64, 3)
        assert float(container.streams.video[0].average_rate) == 5
    # the detections of every frame as COCO results
    results = json.loads((out / "clip_detections.json").read_text())
    assert results and {r["image_id"] for r in results} <= {1, 2, 3, 4}
    for r in results:
        assert set(r) == {"image_id", "category_id", "bbox", "score", "segmentation"}
        assert r["segmentation"]["size"] == [48, 64] and 1 <= r["category_id"] <= 3
    # a NIN SavedModel does not take videos: one clear line
    assert main(["predict", video, "--saved-model", str(tmp_path)]) == 2
    assert "video input" in capsys.readouterr().err


def test_mask_rcnn_predict_draws_from_0_5_by_default(tmp_path, tiny_run, monkeypatch):
    from kzoo.config import load_config
    from kzoo.tasks import task_for
    from kzoo.tasks.instance_segmentation import PREDICT_SCORE_THRESHOLD

    task = task_for(load_config(tiny_run))
    seen = []
    original = task.trained_model

    def spy(weights=None, **overrides):
        seen.append(overrides.get("detection", {}).get("score_threshold"))
        return original(weights, **overrides)

    monkeypatch.setattr(task, "trained_model", spy)
    image = _image(tmp_path / "a.png")
    task.predict([image], str(tmp_path / "out"), verbose=0)
    task.predict([image], str(tmp_path / "out2"), score_threshold=0.25, verbose=0)
    assert seen == [PREDICT_SCORE_THRESHOLD, 0.25] and PREDICT_SCORE_THRESHOLD == 0.5


def test_a_broken_video_is_named_before_the_model_loads(tmp_path, tiny_run, capsys):
    from kzoo.cli import main

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(200))
    assert main(["predict", str(broken), "--mask-rcnn", str(tiny_run), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken.mp4" in err
    assert not (tmp_path / "o").exists()
