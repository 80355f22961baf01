"""The one registry of published kzoo weights (NIN and Mask R-CNN) and their resolution to a local file.

Two kinds of entries:

* files kzoo publishes (``"fashion_mnist"``, family ``"nin"``): their full sha256 is known in advance; a copy
  shipped in ``saved_models/`` is used, else the release is downloaded and checked;
* checkpoints converted on first use (``"coco"``, family ``"mask_rcnn"``): torchvision's ``.pth`` is found in
  the cache (or downloaded), checked against the 8-hex sha256 prefix torchvision publishes, converted (without
  torch: :mod:`kzoo.applications.torchvision.checkpoint`) into a Keras ``.weights.h5`` in the cache, and the
  converted file's full sha256 is recorded beside it in ``<file>.sha256.json`` (with the source's digest).
  Every later use checks the file against that record: a truncated or replaced file is converted again.

Each entry carries its metadata: the class names of its outputs, the published metrics and the input contract.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import warnings
from typing import Any, overload

import keras

from kzoo.applications.torchvision.convert import convert_torchvision_checkpoint
from kzoo.data.coco_categories import COCO_CATEGORIES
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
#: Names of the classes of a model that marks some outputs as not a class: the background (Mask R-CNN's
#: output 0) and category ids a data set leaves unused (COCO's 91 ids hold 80 categories).
BACKGROUND, UNUSED = "__background__", "N/A"
#: torchvision's COCO outputs: index = COCO category id (0 the background; 11 ids unused).
COCO_91_CLASS_NAMES: tuple[str, ...] = tuple(
    BACKGROUND if i == 0 else COCO_CATEGORIES.get(i, UNUSED) for i in range(91)
)


class WeightsUnavailableError(OSError):
    """Registered weights that are neither in the cache nor downloadable here (offline, blocked, HTTP error)."""


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
        class_names: one name per output index; :data:`BACKGROUND` and :data:`UNUSED` mark outputs that are
            not a class (Mask R-CNN's COCO weights: 91 names indexed by COCO category id).
        metrics: what it measured, with the data set it was measured on (``dataset``).
        input_contract: what the model takes, in words (dtype, value range, channels, size).
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
    input_contract: str = ""
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
    def categories(self) -> dict[int, str]:
        """Output index -> class name, for the outputs that are classes (no background, no unused ids)."""
        return {i: n for i, n in enumerate(self.class_names) if n not in (BACKGROUND, UNUSED)}

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
        metrics={"dataset": "Fashion-MNIST test (10,000 images)", "test_accuracy": 0.9378},
        input_contract="[B, 28, 28, 1] grayscale, uint8 or float32 in [0, 255], through nin.preprocess_input",
    )
)

register(
    RegisteredWeights(
        name="coco",
        family="mask_rcnn",
        # named after the source: torchvision names its files <name>-<first 8 hex digits of the sha256>.pth
        file_name="maskrcnn_resnet50_fpn_coco-bf2d0c1e.weights.h5",
        model_kwargs={"backbone": "resnet50_fpn", "num_classes": 91, "preset": "torchvision"},
        class_names=COCO_91_CLASS_NAMES,
        # torchvision's MaskRCNN_ResNet50_FPN_Weights.COCO_V1
        metrics={"dataset": "COCO val2017", "box_ap": 37.9, "mask_ap": 34.6},
        input_contract="[B, H, W, 3] RGB, uint8 or float32 in [0, 255], any size (resized inside the model: "
        "short side 800, long side at most 1333)",
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
        fname=entry.file_name,
        origin=entry.url,
        file_hash=entry.sha256,
        hash_algorithm="sha256",
        cache_dir=CACHE_DIR,
        cache_subdir="kzoo",
    )


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

    The converted file lives in ``<cache root>/models/kzoo/`` (:func:`cache_root`). The first call takes the
    source checkpoint from the same folder, or from :func:`local_weight_dirs`, or downloads it there through
    ``keras.utils.get_file``; checks that its sha256 starts with ``entry.source_sha256_prefix`` (torchvision
    publishes only these 8 hex digits); converts it (no torch needed) and records the converted file's full
    sha256 and the source's in ``<file>.sha256.json``. Every call checks the converted file against that
    record; a file that does not match (truncated, replaced, or without a record) is converted again, with a
    warning.

    Returns:
        The path of the converted weights.

    Raises:
        WeightsUnavailableError: the checkpoint is not on this machine and cannot be downloaded; the message
            gives the URL, where to put a copy downloaded elsewhere, and ``kzoo convert torchvision``.
        ValueError: the checkpoint has the wrong hash (a downloaded one is deleted) or cannot be read.
    """
    root = cache_root()
    converted = os.path.join(root, CACHE_SUBDIR, entry.file_name)
    if os.path.isfile(converted):
        problem = check_record(converted)
        if problem is None:
            return converted
        warnings.warn(f"the cached weights {converted} {problem}: converting them again", stacklevel=3)
    source = _source_checkpoint(entry, root)
    convert_torchvision_checkpoint(source, converted, num_classes=entry.model_kwargs.get("num_classes"))
    write_json(
        record_path(converted),
        {
            "weights": entry.name,
            "file": entry.file_name,
            "sha256": sha256_of(converted),
            "size": os.path.getsize(converted),
            "source": {"url": entry.url, "file": os.path.basename(source), "sha256": sha256_of(source)},
            "converter": "kzoo.applications.torchvision.convert_torchvision_checkpoint",
        },
    )
    return converted


def _source_checkpoint(entry: RegisteredWeights, root: str) -> str:
    """``entry.source_url``'s file: a local copy (cache folder, then :func:`local_weight_dirs`) or a download
    into the cache; its sha256 prefix checked (a wrong download is deleted, a wrong local copy named)."""
    assert entry.source_sha256_prefix is not None  # converted entries (source_url) give it
    file_name = entry.url.rsplit("/", 1)[-1]
    cache_path = os.path.join(root, CACHE_SUBDIR, file_name)
    for path in [cache_path] + [os.path.join(d, file_name) for d in local_weight_dirs()]:
        if os.path.isfile(path):
            digest = sha256_of(path)
            if not digest.startswith(entry.source_sha256_prefix):
                raise ValueError(
                    f"{path} has sha256 {digest}, which does not start with "
                    f"{entry.source_sha256_prefix}: it is not {file_name}; delete or replace it"
                )
            return path
    try:
        path = keras.utils.get_file(fname=file_name, origin=entry.url, cache_dir=root, cache_subdir=CACHE_SUBDIR)
    except Exception as error:  # noqa: BLE001 - get_file raises a bare Exception ("URL fetch failure ...")
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise WeightsUnavailableError(
            f"weights={entry.name!r}: cannot download {entry.url} ({reason}). Download it where you can and put it "
            f"at {cache_path} (kzoo converts it there on first use), or convert it yourself with `kzoo convert "
            f"torchvision FILE {entry.name}.weights.h5` and pass that file as weights"
        ) from None
    digest = sha256_of(path)
    if not digest.startswith(entry.source_sha256_prefix):
        os.remove(path)
        raise ValueError(
            f"{entry.url} downloaded with sha256 {digest}, which does not start with "
            f"{entry.source_sha256_prefix}: the file was deleted; try again"
        )
    return path


@overload
def weights_file(weights: str, family: str) -> str: ...
@overload
def weights_file(weights: None, family: str) -> None: ...
def weights_file(weights: str | None, family: str) -> str | None:
    """A local file for a ``weights=`` value of ``family``: a path as it is, a registered name resolved (shipped
    copy, cache or download; see :func:`resolve_weights_file`), ``None`` for ``None``."""
    entry = registered_or_path(weights, family)
    if entry is None:
        return None if weights is None else str(weights)
    return resolve_weights_file(entry)
