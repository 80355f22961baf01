"""torchvision's Mask R-CNN weights in kzoo: ``maskrcnn_resnet50_fpn`` (v1) state dicts -> ``MaskRCNNModel``.

:func:`torchvision_config` is the :class:`MaskRCNNConfig` that computes what torchvision's
``maskrcnn_resnet50_fpn`` computes; :func:`convert_torchvision_state_dict` copies a torchvision state dict
into a model built with it; :func:`convert_torchvision_checkpoint` turns a ``.pth`` file into a Keras
``.weights.h5`` file; :func:`coco_weights_file` downloads torchvision's published COCO checkpoint and converts
it once into the Keras cache (``MaskRCNN(weights="coco")``).

Layout differences handled here (torchvision -> Keras):

* convolutions ``[O, I, kh, kw]`` -> ``[kh, kw, I, O]``; ``ConvTranspose2d`` ``[I, O, kh, kw]`` ->
  ``[kh, kw, O, I]`` (the same ``transpose(2, 3, 1, 0)``); ``Linear`` ``[O, I]`` -> ``[I, O]``;
* boxes: torchvision's deltas are ``(dx, dy, dw, dh)``, kzoo's ``(ty, tx, th, tw)``: the rows of
  ``rpn.head.bbox_pred`` (per anchor) and ``roi_heads.box_predictor.bbox_pred`` (per class) are permuted;
* ``fc6`` reads the RoI features flattened in NCHW order: kzoo's ``box_flatten_order="nchw"`` takes the kernel
  as is (with ``"nhwc"`` its rows are permuted instead);
* anchors per position come in the same order in both (aspect ratio outer, size inner), so the RPN's
  objectness channels copy directly;
* old key names of the published v1 checkpoint (``fpn.inner_blocks.{i}``, ``rpn.head.conv``,
  ``mask_head.mask_fcn{i}``) and the current ones (``fpn.inner_blocks.{i}.0``, ``rpn.head.conv.0.0``,
  ``mask_head.{i-1}.0``) are both accepted.

torch and TensorFlow crash when both compute in one process here, so ``.pth`` files are read by torch in a
child Python process (:func:`read_torchvision_checkpoint`) that hands NumPy arrays back through an ``.npz``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np

from kzoo.applications import weights as weights_registry
from kzoo.layers.rpn_head import TORCH_DELTA_ORDER  # (ty, tx, th, tw) <- torchvision's (dy, dx, dh, dw)
from kzoo.models.backbones.resnet import torchvision_key_to_keras
from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.models.mask_rcnn_config import MaskRCNNConfig, torchvision_config  # noqa: F401 (re-exported)

#: torchvision's published COCO weights of ``maskrcnn_resnet50_fpn`` (``MaskRCNN_ResNet50_FPN_Weights.COCO_V1``:
#: box AP 37.9, mask AP 34.6).
TORCHVISION_COCO_URL = "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
#: torchvision names its files ``<name>-<first 8 hex digits of the file's sha256>.pth``; only the prefix is
#: published, so it is checked after the download (``keras.utils.get_file`` wants the full digest).
TORCHVISION_COCO_SHA256_PREFIX = "bf2d0c1e"
#: The converted Keras weights, cached next to the checkpoint.
COCO_WEIGHTS_FILE = "maskrcnn_resnet50_fpn_coco-bf2d0c1e.weights.h5"
#: Cache folder under the Keras home (``$KERAS_HOME`` or ``~/.keras``, or ``weights.CACHE_DIR`` when set).
CACHE_SUBDIR = os.path.join("models", "kzoo")

_NO_TORCH = (
    "reading torchvision checkpoints needs torch (pip install torch==2.14.1); it is needed once, to convert "
    "the .pth file into a Keras .weights.h5 file"
)


class TorchvisionConversionError(ValueError):
    """A state dict that does not fit the model: unknown, duplicate or missing keys, or a wrong shape."""


# -- key names ------------------------------------------------------------------------------------------------

_OLD_KEYS = (
    (re.compile(r"^backbone\.fpn\.(inner_blocks|layer_blocks)\.(\d+)\.(weight|bias)$"), r"backbone.fpn.\1.\2.0.\3"),
    (re.compile(r"^rpn\.head\.conv\.(weight|bias)$"), r"rpn.head.conv.0.0.\1"),
)
_OLD_MASK_FCN = re.compile(r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$")


def canonical_torchvision_key(key: str) -> str:
    """The key of current torchvision (>= 0.13) for ``key``, which may use the published v1 checkpoint's names.

    ``"backbone.fpn.inner_blocks.0.weight"`` -> ``"backbone.fpn.inner_blocks.0.0.weight"``,
    ``"rpn.head.conv.bias"`` -> ``"rpn.head.conv.0.0.bias"``, ``"roi_heads.mask_head.mask_fcn1.weight"`` ->
    ``"roi_heads.mask_head.0.0.weight"``; a ``"module."`` prefix (``DataParallel``) is dropped; other keys are
    returned unchanged.
    """
    if key.startswith("module."):
        key = key[len("module.") :]
    for pattern, replacement in _OLD_KEYS:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    match = _OLD_MASK_FCN.match(key)
    if match:
        return f"roi_heads.mask_head.{int(match.group(1)) - 1}.0.{match.group(2)}"
    return key


# -- tensor layouts -------------------------------------------------------------------------------------------


def _conv(value: np.ndarray) -> np.ndarray:
    """Conv ``[O, I, kh, kw]`` -> ``[kh, kw, I, O]`` (and ConvTranspose ``[I, O, kh, kw]`` -> ``[kh, kw, O, I]``)."""
    return np.transpose(value, (2, 3, 1, 0))


def _copy(value: np.ndarray) -> np.ndarray:
    return value


def _linear(value: np.ndarray) -> np.ndarray:
    return np.transpose(value)


def _delta_permutation(groups: int) -> np.ndarray:
    """Rows ``4 * g + TORCH_DELTA_ORDER[k]`` for ``g < groups``, ``k < 4``: xyxy deltas -> yxyx deltas."""
    return np.array([4 * g + TORCH_DELTA_ORDER[k] for g in range(groups) for k in range(4)], np.int64)


def _permuted(transform: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def apply(value: np.ndarray) -> np.ndarray:
        if value.shape[0] % 4:
            raise TorchvisionConversionError(f"box regression rows must be a multiple of 4, got shape {value.shape}")
        return transform(value[_delta_permutation(value.shape[0] // 4)])

    return apply


def _fc6_nhwc(roi_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """fc6 ``[F, C*S*S]`` (NCHW flatten) -> Keras kernel ``[S*S*C, F]`` for an NHWC flatten."""

    def apply(value: np.ndarray) -> np.ndarray:
        features = value.shape[0]
        channels = value.shape[1] // (roi_size * roi_size)
        kernel = value.T.reshape(channels, roi_size, roi_size, features)
        return kernel.transpose(1, 2, 0, 3).reshape(roi_size * roi_size * channels, features)

    return apply


def torchvision_weight_map(model: MaskRCNNModel) -> dict[str, tuple[Any, Callable[[np.ndarray], np.ndarray]]]:
    """Every torchvision key (current names, without ``num_batches_tracked``) of a ``maskrcnn_resnet50_fpn``-style
    state dict, mapped to the kzoo variable it fills and the function that converts the tensor's layout.

    Args:
        model: a built :class:`MaskRCNNModel` with a ResNet backbone (weights created).

    Returns:
        ``{torchvision_key: (keras_variable, transform)}``; ``transform`` maps the torchvision array to the
        variable's shape.
    """
    config = model.config
    if not config.backbone.startswith("resnet"):
        raise TorchvisionConversionError(
            f"torchvision's Mask R-CNN weights need a ResNet backbone, the model has {config.backbone!r}"
        )
    mapping: dict[str, tuple[Any, Callable[[np.ndarray], np.ndarray]]] = {}
    bn_names = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}

    for layer in model.backbone.layers:
        for variable in layer.weights:
            if variable.name == "kernel":
                key = f"backbone.body.{_torch_module(layer.name)}.weight"
                mapping[key] = (variable, _conv)
            else:
                key = f"backbone.body.{_torch_module(layer.name)}.{bn_names[variable.name]}"
                mapping[key] = (variable, _copy)
            if torchvision_key_to_keras(key) != (layer.name, variable.name):  # the backbone's own documented map
                raise TorchvisionConversionError(f"backbone layer {layer.name!r} has no torchvision counterpart")

    def add(prefix: str, layer: keras.layers.Layer, kernel: Callable, bias: Callable = _copy) -> None:
        mapping[f"{prefix}.weight"] = (layer.kernel, kernel)
        mapping[f"{prefix}.bias"] = (layer.bias, bias)

    for i, conv in enumerate(model.fpn.inner_blocks):
        add(f"backbone.fpn.inner_blocks.{i}.0", conv, _conv)
    for i, conv in enumerate(model.fpn.layer_blocks):
        add(f"backbone.fpn.layer_blocks.{i}.0", conv, _conv)
    head = model.rpn_head
    add("rpn.head.conv.0.0", head.conv, _conv)
    add("rpn.head.cls_logits", head.cls_logits, _conv)
    add("rpn.head.bbox_pred", head.bbox_pred, _permuted(_conv), _permuted(_copy))
    box = model.box_head
    fc6 = _linear if config.box_flatten_order == "nchw" else _fc6_nhwc(config.box_roi_size)
    add("roi_heads.box_head.fc6", box.fc6, fc6)
    add("roi_heads.box_head.fc7", box.fc7, _linear)
    add("roi_heads.box_predictor.cls_score", box.cls_score, _linear)
    add("roi_heads.box_predictor.bbox_pred", box.bbox_pred, _permuted(_linear), _permuted(_copy))
    mask = model.mask_head
    for i, conv in enumerate(mask.convs):
        add(f"roi_heads.mask_head.{i}.0", conv, _conv)
    add("roi_heads.mask_predictor.conv5_mask", mask.conv5_mask, _conv)
    add("roi_heads.mask_predictor.mask_fcn_logits", mask.mask_fcn_logits, _conv)
    return mapping


def _torch_module(layer_name: str) -> str:
    """Keras backbone layer name -> torchvision module path: ``layer1_0_downsample_1`` -> ``layer1.0.downsample.1``."""
    return layer_name.replace("_", ".")


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _ensure_built(model: MaskRCNNModel) -> None:
    if not model.built or not model.weights or model.box_head.fc6 is None:
        model(np.zeros((1, 64, 64, 3), np.uint8))


def convert_torchvision_state_dict(state_dict: Mapping[str, Any], model: MaskRCNNModel) -> MaskRCNNModel:
    """Assign every tensor of a torchvision ``maskrcnn_resnet50_fpn`` state dict to ``model``, in place.

    Args:
        state_dict: torchvision key -> array (NumPy arrays, or anything ``np.asarray`` takes: torch CPU tensors),
            float32 parameters and buffers as ``model.state_dict()`` returns them; ``num_batches_tracked``
            entries are accepted and ignored. Old (v1 checkpoint) and current key names are both accepted.
        model: a :class:`MaskRCNNModel` built with :func:`torchvision_config` (or any config with the same
            weights: ResNet backbone, 256-channel FPN, 3 anchors per position, 4-conv mask head, the same
            ``num_classes``); built here with a small image when it has no weights yet.

    Returns:
        ``model``, with every variable set.

    Raises:
        TorchvisionConversionError: a key with no kzoo counterpart, a key given twice (old and new name),
            kzoo variables left unset, or a tensor of the wrong shape; the message lists them.
    """
    _ensure_built(model)
    mapping = torchvision_weight_map(model)
    mapped_ids = {id(variable) for variable, _ in mapping.values()}
    unmapped = [v.path for v in model.weights if id(v) not in mapped_ids]
    if unmapped:
        raise TorchvisionConversionError(f"kzoo variables with no torchvision source: {_listing(unmapped)}")

    used: dict[str, str] = {}
    unexpected, duplicates, bad_shapes = [], [], []
    assignments = []
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        canonical = canonical_torchvision_key(key)
        if canonical not in mapping:
            unexpected.append(key)
            continue
        if canonical in used:
            duplicates.append(f"{key} (also given as {used[canonical]})")
            continue
        used[canonical] = key
        variable, transform = mapping[canonical]
        array = np.asarray(value, dtype=np.float32)
        try:
            converted = transform(array)
        except (ValueError, TorchvisionConversionError) as error:
            bad_shapes.append(f"{key} {tuple(array.shape)}: {error}")
            continue
        if tuple(converted.shape) != tuple(variable.shape):
            bad_shapes.append(f"{key} {tuple(array.shape)} -> {tuple(converted.shape)}, kzoo {variable.path} "
                              f"{tuple(variable.shape)}")  # fmt: skip
            continue
        assignments.append((variable, converted))
    missing = [key for key in mapping if key not in used]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} torchvision key(s) with no kzoo counterpart: {_listing(unexpected)}")
    if duplicates:
        problems.append(f"{len(duplicates)} key(s) given twice: {_listing(duplicates)}")
    if bad_shapes:
        problems.append(f"{len(bad_shapes)} tensor(s) of the wrong shape: {_listing(bad_shapes, 6)}")
    if missing:
        problems.append(f"{len(missing)} kzoo variable(s) not set, their torchvision keys missing: {_listing(missing)}")
    if problems:
        raise TorchvisionConversionError("cannot convert the torchvision state dict: " + "; ".join(problems))
    for variable, converted in assignments:
        variable.assign(converted.astype(variable.dtype))
    return model


# -- files ----------------------------------------------------------------------------------------------------

_READ_SCRIPT = """
import sys
import numpy as np
import torch
state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
if isinstance(state, dict) and "model" in state and not torch.is_tensor(state["model"]):
    state = state["model"]  # a training checkpoint (torchvision's references/detection/train.py)
arrays = {k: v.detach().cpu().float().numpy() if v.is_floating_point() else v.detach().cpu().numpy()
          for k, v in state.items() if torch.is_tensor(v)}
if not arrays:
    raise SystemExit("no tensors in the checkpoint")
np.savez(sys.argv[2], **arrays)
"""


def torch_available() -> bool:
    """Whether ``torch`` can be imported (without importing it)."""
    return importlib.util.find_spec("torch") is not None


def read_torchvision_checkpoint(pth_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A torchvision ``.pth`` state dict as NumPy arrays (floating tensors as float32).

    torch reads the file in a child Python process (``torch.load(weights_only=True)``; TensorFlow and torch
    crash when both compute in one process), which writes an ``.npz`` that this process reads.

    Args:
        pth_path: a file written by ``torch.save(model.state_dict(), ...)`` (or a training checkpoint with a
            ``"model"`` entry).

    Returns:
        ``{key: array}`` in the file's order.

    Raises:
        FileNotFoundError: no such file.
        ImportError: torch is not installed.
        ValueError: torch cannot read the file.
    """
    pth_path = os.fspath(pth_path)
    if not os.path.isfile(pth_path):
        raise FileNotFoundError(f"torchvision checkpoint not found: {pth_path}")
    if not torch_available():
        raise ImportError(_NO_TORCH)
    with tempfile.TemporaryDirectory(prefix="kzoo-torchvision-") as tmp:
        npz = os.path.join(tmp, "state.npz")
        done = subprocess.run(
            [sys.executable, "-c", _READ_SCRIPT, pth_path, npz], capture_output=True, text=True, check=False
        )
        if done.returncode != 0 or not os.path.isfile(npz):
            raise ValueError(f"cannot read {pth_path} as a torch checkpoint:\n{done.stderr.strip()[-2000:]}")
        with np.load(npz) as data:
            return {key: data[key] for key in data.files}


def _num_classes_of(state: Mapping[str, np.ndarray]) -> int | None:
    for key, value in state.items():
        if canonical_torchvision_key(key) == "roi_heads.box_predictor.cls_score.weight":
            return int(np.shape(value)[0])
    return None


def _write_atomically(model: keras.Model, output: str) -> None:
    directory = os.path.dirname(os.path.abspath(output)) or "."
    os.makedirs(directory, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".kzoo-", suffix=".weights.h5", dir=directory)
    os.close(handle)
    try:
        model.save_weights(tmp, overwrite=True)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def convert_torchvision_checkpoint(
    pth_path: str | os.PathLike,
    output_weights_path: str | os.PathLike,
    num_classes: int | None = None,
    config: MaskRCNNConfig | None = None,
) -> str:
    """Convert a torchvision ``maskrcnn_resnet50_fpn`` checkpoint into a Keras ``.weights.h5`` file.

    The file loads into ``MaskRCNN(weights=path)`` / ``mask_rcnn_from_config(torchvision_config(...), path)``
    (any ``min_size``/``max_size`` and thresholds: they have no weights). It is written to a temporary file in
    the output folder and renamed into place, so a failed conversion leaves nothing behind.

    Args:
        pth_path: the ``.pth`` file (read by torch in a child process, see :func:`read_torchvision_checkpoint`).
        output_weights_path: where to write; must end in ``.weights.h5``.
        num_classes: classes including the background; ``None`` reads it from ``cls_score`` (91 for COCO).
        config: the model configuration (default :func:`torchvision_config` with ``num_classes``).

    Returns:
        ``output_weights_path`` as a string.

    Raises:
        FileNotFoundError, ImportError, ValueError: see :func:`read_torchvision_checkpoint`;
        TorchvisionConversionError: the checkpoint does not fit the configuration.
    """
    output = os.fspath(output_weights_path)
    if not output.endswith(".weights.h5"):
        raise ValueError(f"the output must be a Keras weights file ending in .weights.h5, got {output!r}")
    state = read_torchvision_checkpoint(pth_path)
    found = _num_classes_of(state)
    if num_classes is None:
        if found is None:
            raise TorchvisionConversionError(
                f"{pth_path} has no roi_heads.box_predictor.cls_score.weight: not a torchvision Mask R-CNN"
            )
        num_classes = config.num_classes if config is not None else found
    if found is not None and found != num_classes:
        raise TorchvisionConversionError(
            f"{pth_path} predicts {found} classes (roi_heads.box_predictor.cls_score.weight), not {num_classes}"
        )
    config = config or torchvision_config(num_classes)
    if config.num_classes != num_classes:
        raise TorchvisionConversionError(f"config.num_classes={config.num_classes} but num_classes={num_classes}")
    # Weights do not depend on the input size: build on a small canvas to keep the conversion quick.
    model = MaskRCNNModel(dataclasses.replace(config, min_size=64, max_size=64), name="mask_rcnn")
    model(np.zeros((1, 64, 64, 3), np.uint8))
    convert_torchvision_state_dict(state, model)
    _write_atomically(model, output)
    return output


def convert_torchvision_cli(pth: str, output: str, num_classes: int = 91) -> str:
    """``kzoo convert torchvision PTH OUTPUT [--num-classes K]``: a torchvision Mask R-CNN ``.pth`` -> ``.weights.h5``.

    Args:
        pth: the torchvision checkpoint (``maskrcnn_resnet50_fpn``, v1 layout).
        output: the Keras weights file to write (``*.weights.h5``).
        num_classes: classes including the background (91 for COCO).

    Returns:
        A one-line summary for the terminal (the output path and its size).
    """
    path = convert_torchvision_checkpoint(pth, output, num_classes=num_classes)
    size_mb = os.path.getsize(path) / 1e6
    return (
        f"wrote {path} ({size_mb:.1f} MB): load it with kzoo.applications.MaskRCNN(weights={path!r}, "
        f"config=kzoo.applications.torchvision_conversion.torchvision_config({num_classes}))"
    )


def _cache_root() -> str:
    """The Keras cache root: ``weights.CACHE_DIR``, else ``$KERAS_HOME``, else ``~/.keras``; a temporary
    ``.keras`` folder when that is not writable (``keras.utils.get_file``'s rule)."""
    root = weights_registry.CACHE_DIR
    if root is None:
        root = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    root = os.path.expanduser(root)
    try:
        os.makedirs(root, exist_ok=True)
    except OSError:
        pass
    if not os.access(root, os.W_OK):
        root = os.path.join(tempfile.gettempdir(), ".keras")
    return root


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def coco_weights_file() -> str:
    """A local ``.weights.h5`` of torchvision's COCO Mask R-CNN weights, downloaded and converted on first use.

    The converted file is cached in ``<keras home>/models/kzoo/`` (``$KERAS_HOME`` or ``~/.keras``, or
    ``kzoo.applications.weights.CACHE_DIR``). The first call downloads :data:`TORCHVISION_COCO_URL` (170 MB)
    through ``keras.utils.get_file``, checks that its sha256 starts with :data:`TORCHVISION_COCO_SHA256_PREFIX`
    (torchvision publishes only these 8 hex digits, in the file name), and converts it with torch (needed only
    then).

    Returns:
        The path of the converted weights (for ``torchvision_config(91)``).

    Raises:
        ImportError: the conversion is needed and torch is not installed.
        ValueError: the downloaded file has the wrong hash (it is deleted).
    """
    root = _cache_root()
    converted = os.path.join(root, CACHE_SUBDIR, COCO_WEIGHTS_FILE)
    if os.path.isfile(converted):
        return converted
    if not torch_available():
        raise ImportError(f"weights='coco' is converted from torchvision's checkpoint on first use: {_NO_TORCH}")
    file_name = TORCHVISION_COCO_URL.rsplit("/", 1)[-1]
    pth = keras.utils.get_file(fname=file_name, origin=TORCHVISION_COCO_URL, cache_dir=root,
                               cache_subdir=CACHE_SUBDIR)  # fmt: skip
    digest = _sha256(pth)
    if not digest.startswith(TORCHVISION_COCO_SHA256_PREFIX):
        os.remove(pth)
        raise ValueError(
            f"{TORCHVISION_COCO_URL} downloaded with sha256 {digest}, which does not start with "
            f"{TORCHVISION_COCO_SHA256_PREFIX}: the file was deleted; try again"
        )
    return convert_torchvision_checkpoint(pth, converted, num_classes=91)
