"""Loading ``.weights.h5`` files into built models: all or nothing (:func:`load_weights_file`), or transferring
what fits to a model with another class count (:func:`load_weights_transferring`); one clear error naming the
file and the first problem."""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import warnings
from collections.abc import Callable

import keras


def load_weights_file(model: keras.Model, path: str | os.PathLike) -> None:
    """Load ``path`` into ``model`` (built), all or nothing: the one checked loader of trained weights
    (``kzoo evaluate / export / predict --weights``, the tasks' ``trained_model``, the applications).

    Args:
        model: a built Keras model.
        path: a ``.weights.h5`` file written by ``model.save_weights`` for the same architecture and class count.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a readable Keras weights file, or it holds weights of another architecture
            or class count: one line naming the file, the first weight that differs (its layer and path) and
            both shapes (the model's and the file's), as :func:`load_weights_transferring` does.
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
            difference = _difference_or_none(model, path)
            if difference is not None:
                raise ValueError(difference) from None
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"cannot load weights file {path} into model '{model.name}': {first}") from None
        finally:
            absl_logger.setLevel(level)
    mismatch = [
        str(w.message) for w in caught if "could not be loaded" in str(w.message) or "Skipping" in str(w.message)
    ]
    if mismatch:
        difference = _difference_or_none(model, path)
        if difference is not None:
            raise ValueError(difference)
        first = mismatch[0].strip().splitlines()[0]
        raise ValueError(f"weights file {path} does not fit model '{model.name}': {first}")


def first_difference(
    model: keras.Model, path: str | os.PathLike, resettable: Callable[[str], bool] | None = None
) -> str | None:
    """The first weight (in the model's order, then the file's extras) whose shape differs between ``model`` and
    the weights file ``path``, as a phrase naming the layer, the weight path and both shapes (``"first difference
    at layer 'box_head/bbox_pred' (box_head/bbox_pred/vars/0): the model has shape [1024, 12], the file shape
    [1024, 16]"``); ``None`` when every weight fits (weights for which ``resettable(name)`` is true may differ).

    Args:
        model: a built Keras model.
        path: a ``.weights.h5`` file.
        resettable: weight paths (``"box_head/cls_score/vars/0"``...) allowed to differ; default none.

    Raises:
        ValueError: ``path`` is not a readable weights file.
    """
    path = os.fspath(path)
    source = _tensor_shapes(path)
    with tempfile.TemporaryDirectory(prefix="kzoo-weights-") as temp_dir:
        mine = os.path.join(temp_dir, "model.weights.h5")
        model.save_weights(mine)
        target = _tensor_shapes(mine)
    return _first_difference(model, path, target, source, resettable or (lambda name: False))


def _first_difference(
    model: keras.Model,
    path: str,
    target: dict[str, tuple[int, ...]],
    source: dict[str, tuple[int, ...]],
    resettable: Callable[[str], bool],
) -> str | None:
    for name in list(target) + [n for n in source if n not in target]:
        have, given = target.get(name), source.get(name)
        if have == given or (have is not None and given is not None and resettable(name)):
            continue
        layer = name.rsplit("/vars/", 1)[0]
        return (
            f"first difference at layer '{layer}' ({name}): the model has {_shape_text(have)}, the file "
            f"{_shape_text(given)}"
        )
    return None


def _difference_or_none(model: keras.Model, path: str) -> str | None:
    """The loader's one-line error from :func:`first_difference`, or ``None`` when every shape fits or the file
    cannot be read or compared (the caller's message then stands)."""
    try:
        difference = first_difference(model, path)
    except Exception:  # noqa: BLE001 - an unreadable file: keep the loader's own message
        return None
    if difference is None:
        return None
    return (
        f"cannot load weights file {path} into model '{model.name}' (another architecture or class count): {difference}"
    )


@dataclasses.dataclass(frozen=True)
class TransferReport:
    """What :func:`load_weights_transferring` did.

    Attributes:
        path: the weights file.
        loaded: how many weight tensors were loaded from it.
        reset: the weight paths (``box_head/cls_score/vars/0``...) kept freshly initialized because their shape
            differs (class-specific layers of a model with another class count).
    """

    path: str
    loaded: int
    reset: tuple[str, ...]

    def summary(self) -> str:
        """One line: what was loaded and what was reset."""
        if not self.reset:
            return f"loaded all {self.loaded} weights from {self.path}"
        layers = sorted({name.rsplit("/vars/", 1)[0] for name in self.reset})
        return (
            f"loaded {self.loaded} weights from {self.path}; freshly initialized (other class count): "
            f"{', '.join(layers)}"
        )


def _tensor_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """``{dataset path: shape}`` of every tensor in a ``.weights.h5`` file, in file order."""
    import h5py

    shapes: dict[str, tuple[int, ...]] = {}
    try:
        with h5py.File(path, "r") as f:
            f.visititems(
                lambda name, item: (
                    shapes.__setitem__(name, tuple(item.shape)) if isinstance(item, h5py.Dataset) else None
                )
            )
    except OSError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"cannot read weights file {path} (not a readable Keras .weights.h5 file): {first}") from None
    return shapes


def load_weights_transferring(
    model: keras.Model, path: str | os.PathLike, resettable: Callable[[str], bool] | None = None
) -> TransferReport:
    """Load every weight of ``path`` into ``model`` (built) whose path and shape fit; weights for which
    ``resettable(path)`` is true and whose shape differs keep their fresh initial values (the class-specific
    predictors of a model with another class count). Anything else that differs is an error: the file holds
    another architecture.

    Args:
        model: a built model.
        path: a ``.weights.h5`` file (``model.save_weights``) of the same architecture, any class count.
        resettable: says which weight paths (e.g. ``"box_head/cls_score/vars/0"``) may differ in shape; default:
            the weights the model declares class-specific (its ``class_specific_weights()``, a list of Keras
            variables: :meth:`kzoo.models.mask_rcnn.MaskRCNNModel.class_specific_weights`,
            :meth:`kzoo.models.nin.NINModel.class_specific_weights`); none for a model without that method.

    Returns:
        A :class:`TransferReport`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a readable weights file, or another architecture: the message names the first weight
            (in file order) that differs, with the model's shape and the file's.
    """
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    source = _tensor_shapes(path)
    with tempfile.TemporaryDirectory(prefix="kzoo-transfer-") as temp_dir:
        merged = os.path.join(temp_dir, "merged.weights.h5")
        model.save_weights(merged)
        target = _tensor_shapes(merged)
        reset = [name for name in target if name in source and target[name] != source[name]]  # if allowed
        if resettable is None:  # the model says which weights are class-specific; the file, where they are
            resettable = _file_names_of(model, _class_specific_weights(model), merged, reset).__contains__
        difference = _first_difference(model, path, target, source, resettable)
        if difference is not None:
            raise ValueError(f"weights file {path} holds another architecture than model '{model.name}': {difference}")
        with h5py.File(path, "r") as f, h5py.File(merged, "r+") as out:
            for name in target:
                if name not in reset:
                    out[name][...] = f[name][...]
        load_weights_file(model, merged)
    return TransferReport(path, len(target) - len(reset), tuple(reset))


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "no such weight" if shape is None else f"shape {list(shape)}"


def _class_specific_weights(model: keras.Model) -> list:
    """The variables ``model`` declares class-specific (its ``class_specific_weights()``), or none."""
    declared = getattr(model, "class_specific_weights", None)
    return list(declared()) if callable(declared) else []


def _file_names_of(model: keras.Model, variables: list, saved: str, names: list[str]) -> set[str]:
    """Which of ``names`` (weight paths of ``saved``, the file ``model.save_weights`` wrote) hold ``variables``:
    those that change when ``model`` is saved again with ``variables`` changed (by +1; restored after). Keras
    names a weight in the file by where it sits, not by the variable, so the file is asked which it is."""
    wanted = [variable for variable in variables if variable is not None]
    if not wanted or not names:
        return set()
    import h5py
    import numpy as np

    originals = [keras.ops.convert_to_numpy(variable) for variable in wanted]
    changed = os.path.join(os.path.dirname(saved), "changed.weights.h5")
    try:
        for variable, value in zip(wanted, originals):
            variable.assign(value + 1)
        model.save_weights(changed)
    finally:
        for variable, value in zip(wanted, originals):
            variable.assign(value)
    with h5py.File(saved, "r") as before, h5py.File(changed, "r") as after:
        return {name for name in names if not np.array_equal(before[name][...], after[name][...])}
