"""Image files TensorFlow cannot decode, named: :func:`naming_undecodable_images` turns the bare decode error a
tf.data pipeline of a COCO-format source raises into an :class:`ImageDecodeError` naming the file and its image id.

TF's decode error does not say which file it was reading, so when one happens the source's files are decoded again,
in order, to find it (the pipeline itself is not slowed down).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import tensorflow as tf

from kzoo.data.coco_reader import CocoInstances, CocoRecord


class ImageDecodeError(ValueError):
    """An image file of a data set cannot be decoded (truncated or corrupt); the message names the file."""


#: Messages of TF's image decoders (``DecodeImage`` and the per-format kernels it calls).
_DECODE_MESSAGES = re.compile(
    r"Decode(Image|Png|Jpeg|Gif|Bmp)|Invalid (PNG|JPEG|GIF|BMP)|jpeg::|image format|"
    r"Input is empty|truncated|corrupt",
    re.IGNORECASE,
)


def _decode_problem(path: str) -> str | None:
    """``None`` when TF decodes the file as the pipeline does, else the first line of TF's error."""
    try:
        tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    except tf.errors.OpError as error:
        return (error.message.strip().splitlines() or [type(error).__name__])[0]
    return None


def find_undecodable_image(
    records: Sequence[CocoRecord], workers: int = 4, chunk: int = 64
) -> tuple[CocoRecord, str] | None:
    """The first record (in order) whose image file ``tf.io.decode_image`` cannot decode, with TF's message.

    Decodes every file (a few in parallel, stopping at the first failure): for error reports, not the hot path.

    Args:
        records: the records of a COCO-format source (``CocoInstances.records``).
        workers: decoding threads.
        chunk: files decoded per round (the scan stops after the round holding the first failure).

    Returns:
        ``(record, message)``, or ``None`` when every file decodes.
    """
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(records), chunk):
            part = records[start : start + chunk]
            for record, problem in zip(part, pool.map(lambda r: _decode_problem(r.file_path), part)):
                if problem is not None:
                    return record, problem
    return None


def explain_image_error(source, error: BaseException, split: str = "data") -> ImageDecodeError | None:
    """When ``error`` (raised while iterating a pipeline of ``source``) is TF failing to decode an image file of
    a COCO-format ``source``, an :class:`ImageDecodeError` naming the file and its image id; else ``None``.

    TF's decode error does not say which file it was reading, so the files are decoded again, in order, to find
    it (only when this happens: the pipeline itself is not slowed down).

    Args:
        source: the pipeline's source (:class:`CocoInstances` or a list of :class:`CocoRecord`; others: ``None``).
        error: the exception the pipeline raised.
        split: a word for the message (``"training"``, ``"evaluation"``).
    """
    records = source.records if isinstance(source, CocoInstances) else source
    if not (isinstance(records, Sequence) and records and all(isinstance(r, CocoRecord) for r in records)):
        return None
    if not isinstance(error, (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.UnknownError)):
        return None
    if not _DECODE_MESSAGES.search(str(error)):
        return None
    if len(records) > 1000:
        print(f"an image of the {split} set cannot be decoded; decoding its {len(records)} images to find which")
    found = find_undecodable_image(records)
    if found is None:
        return None
    record, problem = found
    return ImageDecodeError(
        f"{split} image {record.file_path} (image id {record.image_id}) cannot be decoded ({problem}): the file is "
        "truncated or corrupt; replace or remove it (data.check_images: full finds such files before training "
        "and drops them with a warning)"
    )


@contextlib.contextmanager
def naming_undecodable_images(source, split: str = "data") -> Iterator[None]:
    """Run the block (which iterates a pipeline of ``source``); an image decode error of a COCO-format source comes
    out as an :class:`ImageDecodeError` naming the file (:func:`explain_image_error`), anything else unchanged."""
    try:
        yield
    except tf.errors.OpError as error:
        explained = explain_image_error(source, error, split)
        if explained is None:
            raise
        raise explained from error
