"""Loading a ``.weights.h5`` file into a built model: one clear error naming the file and the first problem."""

from __future__ import annotations

import logging
import os
import warnings

import keras


def load_weights_file(model: keras.Model, path: str | os.PathLike) -> None:
    """Load ``path`` into ``model`` (built), all or nothing.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a readable Keras weights file, or it holds weights of another
            architecture (a missing or extra layer, a shape that differs): one line naming the file and the
            first problem Keras reports.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        absl_logger = logging.getLogger("absl")
        level = absl_logger.level
        absl_logger.setLevel(logging.ERROR)
        try:
            model.load_weights(path)
        except Exception as error:  # h5py's OSError, Keras's ValueError: name the file, keep one line
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"cannot load weights file {path} into model '{model.name}': {first}") from None
        finally:
            absl_logger.setLevel(level)
    mismatch = [str(w.message) for w in caught if "could not be loaded" in str(w.message) or "Skipping" in
                str(w.message)]  # fmt: skip
    if mismatch:
        first = mismatch[0].strip().splitlines()[0]
        raise ValueError(f"weights file {path} does not fit model '{model.name}': {first}")
