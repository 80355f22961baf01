"""kzoo.data.video: frames written by VideoWriter read back by read_video_frames (H.264 is lossy: compared within
a tolerance), atomic writes, and named errors for what is not a video."""

from __future__ import annotations

import os

import numpy as np
import pytest

from kzoo.data.video import VIDEO_EXTENSIONS, VideoWriter, is_video_path, read_video_frames, video_info


def _frames(count=6, height=48, width=64):
    frames = []
    for index in range(count):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:, : (index + 1) * width // count] = (200, 60, 20)  # a bar that grows frame by frame
        frames.append(frame)
    return frames


def test_written_frames_read_back_at_their_rate_and_size(tmp_path, umask_022):
    path = str(tmp_path / "clip.mp4")
    with VideoWriter(path, 12.5) as writer:
        for frame in _frames():
            writer.write(frame)
    info = video_info(path)
    assert (info.height, info.width, info.fps) == (48, 64, 12.5) and info.frames in (0, 6)
    frames = list(read_video_frames(path))
    assert len(frames) == 6 and all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    for got, want in zip(frames, _frames()):
        assert np.mean(np.abs(got.astype(int) - want.astype(int))) < 8  # H.264 and yuv420p are lossy
    assert os.stat(path).st_mode & 0o777 == 0o644  # readable by others, as every file kzoo writes


def test_odd_sides_are_padded_to_even(tmp_path):
    path = str(tmp_path / "odd.mp4")
    with VideoWriter(path, 10) as writer:
        writer.write(np.full((35, 47, 3), 128, np.uint8))
    info = video_info(path)
    assert (info.height, info.width) == (36, 48)


def test_a_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "broken.mp4"
    with pytest.raises(ValueError, match=r"frame of \(20, 20\) in a video of 48x64"):
        with VideoWriter(str(path), 10) as writer:
            writer.write(_frames(1)[0])
            writer.write(np.zeros((20, 20, 3), np.uint8))
    assert not path.exists() and os.listdir(tmp_path) == []


def test_what_is_not_a_video_is_named(tmp_path):
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="cannot read the video .*text.mp4"):
        video_info(str(tmp_path / "text.mp4"))
    with pytest.raises(FileNotFoundError):
        video_info(str(tmp_path / "none.mp4"))
    os.mkfifo(tmp_path / "pipe.mp4")
    with pytest.raises(ValueError, match="not a regular file"):
        list(read_video_frames(str(tmp_path / "pipe.mp4")))


def test_video_paths_by_extension():
    assert all(is_video_path(f"a{ext.upper()}") for ext in VIDEO_EXTENSIONS)
    assert not is_video_path("a.png") and not is_video_path("mp4")
