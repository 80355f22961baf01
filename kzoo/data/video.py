"""Video files for ``kzoo predict``: frames decoded to uint8 RGB, annotated frames encoded to an H.264 MP4.

Decoding and encoding use PyAV (the ``av`` package: FFmpeg's libraries in a wheel). Frames come out as uint8
``[H, W, 3]`` RGB, whatever the stream's pixel format; the output is written to a temporary file beside its
path and renamed when complete (:func:`kzoo.utils.files.atomic_path`), so a failed run leaves no half video.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from kzoo.utils import files

#: Extensions ``kzoo predict`` reads as videos.
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def is_video_path(path: str) -> bool:
    """Whether ``path`` names a video file by its extension (see :data:`VIDEO_EXTENSIONS`)."""
    return os.fspath(path).lower().endswith(VIDEO_EXTENSIONS)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What a video holds: ``frames`` (0 when the container does not say), ``fps``, ``height``, ``width``."""

    frames: int
    fps: float
    height: int
    width: int


def _open(path: str):
    import av

    from kzoo.data.images import check_image_path

    check_image_path(path)  # a regular file (a FIFO would block)
    try:
        container = av.open(path)
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the video {path}: {error}") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} holds no video stream")
    return container


def video_info(path: str) -> VideoInfo:
    """The frame count, rate and size of the video file ``path``.

    Raises:
        FileNotFoundError, ValueError: no such file, not a regular file, or not a readable video (named).
    """
    with contextlib.closing(_open(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 25
        return VideoInfo(int(stream.frames or 0), float(rate), int(stream.height), int(stream.width))


def read_video_frames(path: str) -> Iterator[np.ndarray]:
    """The frames of the video file ``path``, in order, as uint8 ``[H, W, 3]`` RGB.

    Raises:
        FileNotFoundError, ValueError: as :func:`video_info`; ``ValueError`` naming the file and the frame for
            data that cannot be decoded.
    """
    import av

    with contextlib.closing(_open(path)) as container:
        index = 0
        try:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
                index += 1
        except av.error.FFmpegError as error:
            raise ValueError(f"cannot decode frame {index} of the video {path}: {error}") from None


class VideoWriter:
    """Write uint8 RGB frames ``[H, W, 3]`` (all of one size) to an H.264 MP4 (``yuv420p``, so any player
    shows it: odd sides are padded by one pixel), atomically: use it as a context manager.

    Args:
        path: the ``.mp4`` to write.
        fps: frames per second.
    """

    def __init__(self, path: str, fps: float) -> None:
        self.path, self.fps = os.fspath(path), float(fps)
        self._atomic = files.atomic_path(self.path)
        self._container: Any = None  # av's OutputContainer, opened in __enter__
        self._stream: Any = None  # its video stream, added with the first frame

    def __enter__(self) -> VideoWriter:
        import av

        temp_path = self._atomic.__enter__()
        self._container = av.open(temp_path, "w", format="mp4")
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one frame."""
        from fractions import Fraction

        import av

        frame = np.asarray(frame, np.uint8)
        height, width = frame.shape[0] + frame.shape[0] % 2, frame.shape[1] + frame.shape[1] % 2
        if self._stream is None:
            self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        if (height, width) != (self._stream.height, self._stream.width):
            raise ValueError(f"frame of {frame.shape[:2]} in a video of {self._stream.height}x{self._stream.width}")
        frame = np.pad(frame, ((0, height - frame.shape[0]), (0, width - frame.shape[1]), (0, 0)), mode="edge")
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._container.mux(packet)

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None and self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
            self._container.close()
        finally:
            self._atomic.__exit__(kind, value, traceback)
