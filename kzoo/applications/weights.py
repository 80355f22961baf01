"""The one registry of published kzoo weights (NIN and Mask R-CNN) and their resolution to a local file.

Two kinds of entries:

* files kzoo publishes (``"fashion_mnist"``, family ``"nin"``): their full sha256 is known in advance; a copy
  shipped in ``saved_models/`` is used, else the release is downloaded and checked;
* checkpoints converted on first use (``"coco"``, family ``"mask_rcnn"``): torchvision's ``.pth`` is downloaded,
  checked against the 8-hex sha256 prefix torchvision publishes, converted (with torch) into a Keras
  ``.weights.h5`` in the cache, and the converted file's full sha256 is recorded beside it in
  ``<file>.sha256.json`` (with the source's digest). Every later use checks the file against that record: a
  truncated or replaced file is converted again (or, without torch, is an error naming the file).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import warnings
from typing import Any

import keras

from kzoo.applications.torchvision import checkpoint as torchvision_checkpoint
from kzoo.applications.torchvision.convert import convert_torchvision_checkpoint
from kzoo.data.fashion_mnist import CLASS_NAMES as FASHION_MNIST_CLASSES
from kzoo.utils.files import sha256_of, write_json

# Where released weight files are published; the file name is appended.
RELEASE_URL = "https://github.com/kzoo-models/kzoo/releases/download/v0.1.0/"
# Download cache root; None means Keras's own (``$KERAS_HOME`` or ``~/.keras``). Published files go to
# ``<root>/kzoo``, converted ones (and their sources) to ``<root>/models/kzoo``.
CACHE_DIR: str | None = None
#: Cache folder of converted weights under the cache root.
CACHE_SUBDIR = os.path.join("models", "kzoo")
#: Suffix of the record written beside a converted file: ``<file>.sha256.json``.
RECORD_SUFFIX = ".sha256.json"

FAMILIES = ("nin", "mask_rcnn")


@dataclasses.dataclass(frozen=True)
class RegisteredWeights:
    """A published weight file (or a checkpoint converted on first use) and the model it fits.

    Attributes:
        name: the ``weights=`` name.
        family: model family, ``"nin"`` or ``"mask_rcnn"``.
        file_name: the Keras ``.weights.h5`` file: in ``saved_models/`` and in the release, or in the cache
            when converted.
        sha256: full hex digest of the published file; ``None`` for converted files, whose digest is recorded
            in ``<file>.sha256.json`` when they are converted.
        model_kwargs: constructor keywords the weights need (NIN: ``variant``, ``use_batch_norm``, ``blocks``;
            Mask R-CNN: ``backbone``, ``num_classes``, ``preset``).
        input_shape: ``(height, width, channels)`` it was trained on (NIN), ``None`` when any size works.
        class_names: one name per output class (NIN).
        metrics: what it measured (test accuracy, COCO AP) for documentation.
        source_url: converted entries: the checkpoint converted on first use.
        source_sha256_prefix: converted entries: the leading hex digits of the checkpoint's sha256, all its
            publisher gives (torchvision: 8, in the file name).
        source_format: converted entries: ``"torchvision"``.
    """

    name: str
    family: str
    file_name: str
    sha256: str | None = None
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    input_shape: tuple[int, int, int] | None = None
    class_names: tuple[str, ...] = ()
    metrics: dict = dataclasses.field(default_factory=dict)
    source_url: str | None = None
    source_sha256_prefix: str | None = None
    source_format: str | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if (self.sha256 is None) == (self.source_url is None):
            raise ValueError(f"weights {self.name!r}: give either sha256 (a published file) or source_url")
        if self.source_url is not None and self.source_format != "torchvision":
            raise ValueError(f"weights {self.name!r}: source_format must be 'torchvision'")

    @property
    def url(self) -> str:
        """Where the file (or, for converted entries, its source checkpoint) is downloaded from."""
        return self.source_url or RELEASE_URL + self.file_name

    @property
    def variant(self) -> str | None:
        """NIN: the model's variant (``"custom"`` when ``blocks`` is set)."""
        return self.model_kwargs.get("variant")


REGISTRY: dict[str, RegisteredWeights] = {}


def register(entry: RegisteredWeights) -> RegisteredWeights:
    """Add ``entry``; names are unique over every family."""
    known = REGISTRY.get(entry.name)
    if known is not None and known != entry:
        raise ValueError(f"weights {entry.name!r} are registered already (family {known.family!r})")
    REGISTRY[entry.name] = entry
    return entry


def get_registered(name: str, family: str) -> RegisteredWeights:
    """The registry entry ``name`` of ``family``; a clear error lists the known names."""
    entry = REGISTRY.get(name)
    if entry is None or entry.family != family:
        known = sorted(n for n, e in REGISTRY.items() if e.family == family)
        raise ValueError(f"unknown weights {name!r}: pass None, a file path, or one of {known}")
    return entry


def registered_or_path(weights: Any, family: str) -> RegisteredWeights | None:
    """The ``weights=`` argument of a constructor: ``None`` for ``None`` or an existing file, else the entry.

    Raises:
        FileNotFoundError: ``weights`` looks like a path (a separator, or ``.h5`` at the end) with no file.
        ValueError: an unknown name (listing the names of ``family``).
    """
    if weights is None or os.path.isfile(str(weights)):
        return None
    if os.sep in str(weights) or str(weights).endswith(".h5"):
        raise FileNotFoundError(f"weights file not found: {weights}")
    return get_registered(str(weights), family)


register(
    RegisteredWeights(
        name="fashion_mnist",
        family="nin",
        file_name="nin_fashion_mnist.weights.h5",
        sha256="0bad80d7d7746ec945bbfc88170c7a8b0175bd87987c01e9cdd71bb87ad6fcbb",
        model_kwargs={"variant": "mnist", "use_batch_norm": True},
        input_shape=(28, 28, 1),
        class_names=FASHION_MNIST_CLASSES,
        # configs/nin_fashion_mnist.yaml, 30 epochs; float32 accuracy on the 10,000 test images
        metrics={"test_accuracy": 0.9378},
    )
)

register(
    RegisteredWeights(
        name="coco",
        family="mask_rcnn",
        # named after the source: torchvision names its files <name>-<first 8 hex digits of the sha256>.pth
        file_name="maskrcnn_resnet50_fpn_coco-bf2d0c1e.weights.h5",
        model_kwargs={"backbone": "resnet50_fpn", "num_classes": 91, "preset": "torchvision"},
        # torchvision's MaskRCNN_ResNet50_FPN_Weights.COCO_V1
        metrics={"box_ap": 37.9, "mask_ap": 34.6},
        source_url="https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
        source_sha256_prefix="bf2d0c1e",
        source_format="torchvision",
    )
)


def local_weight_dirs() -> list[str]:
    """Folders searched before downloading: ``$KZOO_WEIGHTS_DIR``, the repository's ``saved_models/``
    (source checkouts and editable installs) and ``<prefix>/share/kzoo/saved_models`` (pip installs)."""
    dirs = []
    if os.environ.get("KZOO_WEIGHTS_DIR"):
        dirs.append(os.environ["KZOO_WEIGHTS_DIR"])
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    dirs.append(os.path.join(repo_root, "saved_models"))
    dirs.append(os.path.join(sys.prefix, "share", "kzoo", "saved_models"))
    return dirs


def resolve_weights_file(entry: RegisteredWeights) -> str:
    """A local path to ``entry``'s file, checked against its full sha256.

    Published files: a shipped copy with the right sha256, else a download through ``keras.utils.get_file``
    (cached in ``<keras home>/kzoo``), which checks the sha256. Converted entries: see
    :func:`converted_weights_file`.
    """
    if entry.source_url is not None:
        return converted_weights_file(entry)
    for directory in local_weight_dirs():
        path = os.path.join(directory, entry.file_name)
        if os.path.isfile(path) and sha256_of(path) == entry.sha256:
            return path
    return keras.utils.get_file(
        fname=entry.file_name, origin=entry.url, file_hash=entry.sha256, hash_algorithm="sha256",
        cache_dir=CACHE_DIR, cache_subdir="kzoo",
    )  # fmt: skip


def cache_root() -> str:
    """The Keras cache root: :data:`CACHE_DIR`, else ``$KERAS_HOME``, else ``~/.keras``; a temporary ``.keras``
    folder when that is not writable (``keras.utils.get_file``'s rule)."""
    root = CACHE_DIR
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


def record_path(weights_path: str | os.PathLike) -> str:
    """The sha256 record of a converted file: ``<file>.sha256.json``."""
    return os.fspath(weights_path) + RECORD_SUFFIX


def check_record(weights_path: str | os.PathLike) -> str | None:
    """``None`` when ``weights_path``'s full sha256 is the one its record holds, else what is wrong (a phrase)."""
    weights_path = os.fspath(weights_path)
    record = record_path(weights_path)
    if not os.path.isfile(record):
        return f"has no sha256 record ({record})"
    try:
        with open(record) as f:
            expected = json.load(f)["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"has an unreadable sha256 record ({record}: {error})"
    actual = sha256_of(weights_path)
    if actual != expected:
        return f"does not match its record: sha256 {actual}, recorded {expected} in {record} (truncated or replaced)"
    return None


def converted_weights_file(entry: RegisteredWeights) -> str:
    """A local ``.weights.h5`` converted from ``entry``'s source checkpoint, converted once into the cache.

    The converted file lives in ``<cache root>/models/kzoo/`` (:func:`cache_root`). The first call downloads
    ``entry.source_url`` through ``keras.utils.get_file`` (into the same folder), checks that its sha256 starts
    with ``entry.source_sha256_prefix`` (torchvision publishes only these 8 hex digits), converts it with torch
    (needed only then), and records the converted file's full sha256 and the source's in
    ``<file>.sha256.json``. Every call checks the converted file against that record; a file that does not
    match (truncated, replaced, or without a record) is converted again, with a warning.

    Returns:
        The path of the converted weights.

    Raises:
        ImportError: a conversion is needed and torch is not installed (the file is absent).
        ValueError: the cached file does not match its record and torch is not installed to convert it again
            (the message names the file); or the downloaded checkpoint has the wrong hash (it is deleted).
    """
    root = cache_root()
    converted = os.path.join(root, CACHE_SUBDIR, entry.file_name)
    if os.path.isfile(converted):
        problem = check_record(converted)
        if problem is None:
            return converted
        if not torchvision_checkpoint.torch_available():
            raise ValueError(
                f"the cached weights {converted} {problem}; delete it to convert {entry.url} again, which "
                f"needs torch: {torchvision_checkpoint.NO_TORCH}"
            )
        warnings.warn(f"the cached weights {converted} {problem}: converting them again", stacklevel=3)
    elif not torchvision_checkpoint.torch_available():
        raise ImportError(
            f"weights={entry.name!r} is converted from torchvision's checkpoint on first use: "
            f"{torchvision_checkpoint.NO_TORCH}"
        )
    source = _download_source(entry, root)
    convert_torchvision_checkpoint(source, converted, num_classes=entry.model_kwargs.get("num_classes"))
    write_json(record_path(converted), {
        "weights": entry.name,
        "file": entry.file_name,
        "sha256": sha256_of(converted),
        "size": os.path.getsize(converted),
        "source": {"url": entry.url, "file": os.path.basename(source), "sha256": sha256_of(source)},
        "converter": "kzoo.applications.torchvision.convert_torchvision_checkpoint",
    })  # fmt: skip
    return converted


def _download_source(entry: RegisteredWeights, root: str) -> str:
    """``entry.source_url`` in the cache, its sha256 prefix checked (a wrong file is deleted)."""
    file_name = entry.url.rsplit("/", 1)[-1]
    path = keras.utils.get_file(fname=file_name, origin=entry.url, cache_dir=root, cache_subdir=CACHE_SUBDIR)
    digest = sha256_of(path)
    if not digest.startswith(entry.source_sha256_prefix):
        os.remove(path)
        raise ValueError(
            f"{entry.url} downloaded with sha256 {digest}, which does not start with "
            f"{entry.source_sha256_prefix}: the file was deleted; try again"
        )
    return path


def weights_file(weights: str | None, family: str) -> str | None:
    """A local file for a ``weights=`` value of ``family``: a path as it is, a registered name resolved (shipped
    copy, cache or download; see :func:`resolve_weights_file`), ``None`` for ``None``."""
    entry = registered_or_path(weights, family)
    if entry is None:
        return None if weights is None else str(weights)
    return resolve_weights_file(entry)
