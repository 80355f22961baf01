"""The one file-writing rule: write beside the target, then rename, with the usual permissions.

Everything kzoo writes for users (weights, metrics, exports, converted annotations) goes through these
helpers, so a killed process never leaves a half-written file under the final name, and files come out as
``0644`` and directories as ``0755`` under the usual umask ``022`` (``tempfile`` alone makes ``0600`` /
``0700``, which TF Serving running as another user cannot read).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: ``0o666`` less the umask."""
    return 0o666 & ~_umask()


def directory_mode() -> int:
    """The mode ``os.makedirs`` would give a new directory: ``0o777`` less the umask."""
    return 0o777 & ~_umask()


def make_readable(path: str | os.PathLike) -> None:
    """Give ``path`` (and, for a directory, everything under it) the usual permissions: directories
    :func:`directory_mode`, files :func:`file_mode` (plus the execute bits where the owner had one)."""
    path = os.fspath(path)
    dir_mode, plain_mode = directory_mode(), file_mode()

    def fix_file(name: str) -> None:
        executable = os.stat(name).st_mode & 0o100
        os.chmod(name, dir_mode if executable else plain_mode)

    if not os.path.isdir(path):
        fix_file(path)
        return
    os.chmod(path, dir_mode)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), dir_mode)
        for name in files:
            fix_file(os.path.join(root, name))


#: Every temporary name starts with this; then ``<host>-<pid>-``, so that a later write can tell the leftovers of a
#: killed process (same host, process gone) from the files of a running one.
TEMP_PREFIX = ".tmp-kzoo-"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _temp_prefix() -> str:
    return f"{TEMP_PREFIX}{_host()}-{os.getpid()}-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


#: Folders this process has already cleared of stale temporaries (once each: writing many files into one folder
#: must not list it every time).
_CLEARED: set[str] = set()


def remove_stale_temporaries(directory: str | os.PathLike, again: bool = False) -> list[str]:
    """Delete the temporary files and folders that a killed kzoo process (of this host) left in ``directory``
    (:func:`atomic_path`, :func:`atomic_directory`); those of running processes stay. Each folder is looked at
    once per process unless ``again``. Returns the removed paths."""
    directory = os.path.abspath(os.fspath(directory))
    removed: list[str] = []
    if directory in _CLEARED and not again:
        return removed
    _CLEARED.add(directory)
    mine = f"{TEMP_PREFIX}{_host()}-"
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = re.match(r"(\d+)-", name[len(mine) :]) if name.startswith(mine) else None
        if match is None or _process_alive(int(match[1])):
            continue
        path = os.path.join(directory, name)
        with contextlib.suppress(OSError):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(path)
    return removed


def os_error(kind: type[OSError], code: int | None, message: str) -> OSError:
    """An OSError of class ``kind`` whose text is ``message`` alone (no ``[Errno N]`` prefix) and whose ``errno``
    is ``code``, for one-line messages."""
    try:
        error = kind(message)
    except TypeError:  # an OSError subclass with another constructor
        error = OSError(message)
    error.errno = code
    return error


def _write_error(path: str, error: OSError) -> OSError:
    """``error`` (raised while writing ``path`` or its temporary file) as an OSError naming ``path``: same class
    (``PermissionError``...) and errno."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno == errno.ENOSPC:
        reason = "No space left on device"
    return os_error(type(error), error.errno, f"cannot write {path}: {reason}")


def _create_folder(directory: str) -> tuple[type[OSError], int | None, str] | None:
    """``os.makedirs(directory, exist_ok=True)``; ``None``, or ``(class, errno, reason)`` of the failure."""
    try:
        os.makedirs(directory, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = directory
        while blocking and not os.path.exists(blocking):
            blocking = os.path.dirname(blocking)
        return NotADirectoryError, errno.ENOTDIR, f"{blocking} is a file, not a folder"
    except OSError as error:
        return type(error), error.errno, str(error.strerror or error)
    return None


def make_directory(directory: str | os.PathLike) -> str:
    """``os.makedirs(directory, exist_ok=True)`` with one-line errors naming ``directory``: a file in the way
    (``NotADirectoryError``), no permission (``PermissionError``)... Returns ``directory`` as a string."""
    directory = os.fspath(directory)
    problem = _create_folder(directory)
    if problem is not None:
        kind, code, reason = problem
        raise os_error(kind, code, f"cannot create the folder {directory}: {reason}")
    return directory


def _make_parent(path: str) -> str:
    """Create the folder that will hold ``path``; an OSError naming ``path`` otherwise."""
    directory = os.path.dirname(os.path.abspath(path))
    problem = _create_folder(directory)
    if problem is not None:
        kind, code, reason = problem
        raise os_error(kind, code, f"cannot write {path}: {reason}")
    return directory


def _space_error(path: str, error: BaseException) -> OSError | None:
    """A full disk reported by a library that does not raise OSError (TF's file system, h5py...), as an OSError
    naming ``path``; ``None`` for anything else."""
    if os.strerror(errno.ENOSPC) in str(error):
        return os_error(OSError, errno.ENOSPC, f"cannot write {path}: {os.strerror(errno.ENOSPC)}")
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary file name beside ``path`` (same suffix, so writers that check it are happy); when the
    block succeeds the file is made readable and renamed to ``path``, when it raises the file is removed.

    Use it around APIs that write to a path themselves (``model.save_weights``, ``tf.io.write_file``). Leftovers
    of killed processes beside ``path`` are removed first (:func:`remove_stale_temporaries`).

    Raises:
        OSError: (the same class and errno) naming ``path``, when an OSError comes from creating the folder, the
            block (a full disk: ``No space left on device``) or the rename; ``path`` keeps its previous content.
        IsADirectoryError: ``path`` is a folder.
    """
    path = os.fspath(path)
    directory = _make_parent(path)
    if os.path.isdir(path):
        raise os_error(IsADirectoryError, errno.EISDIR, f"cannot write {path}: it is a folder")
    remove_stale_temporaries(directory)
    suffix = "".join(os.path.basename(path).partition(".")[1:]) if "." in os.path.basename(path) else ""
    try:
        handle, temp_path = tempfile.mkstemp(prefix=_temp_prefix(), suffix=suffix, dir=directory)
    except OSError as error:
        raise _write_error(path, error) from error
    os.close(handle)
    os.remove(temp_path)  # writers such as h5py refuse to overwrite or expect to create the file
    try:
        yield temp_path
        make_readable(temp_path)
        os.replace(temp_path, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.remove(temp_path)
        raise _write_error(path, error) from error
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(temp_path)
        full = _space_error(path, error)
        if full is not None:
            raise full from error
        raise


def _write_file(path: str, data: bytes) -> None:
    """The low-level write: ``data`` into the new file ``path``, flushed to the disk."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns ``path`` as a string."""
    with atomic_path(path) as temp_path:
        _write_file(temp_path, data)
    return os.fspath(path)


def write_text(path: str | os.PathLike, text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path`` as a string."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, payload: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Write ``payload`` as JSON to ``path`` atomically; returns ``path`` as a string."""
    return write_text(path, json.dumps(payload, indent=indent, sort_keys=sort_keys) + "\n")


@contextlib.contextmanager
def atomic_directory(final_dir: str | os.PathLike) -> Iterator[str]:
    """Yield a fresh temporary directory beside ``final_dir``; when the block succeeds it is made readable
    (:func:`make_readable`) and renamed to ``final_dir``; when the block raises it is deleted. Leftovers of killed
    processes beside ``final_dir`` are removed first (:func:`remove_stale_temporaries`).

    Raises:
        FileExistsError: ``final_dir`` exists (before or after the block); it is never overwritten.
        OSError: (the same class and errno) naming ``final_dir``, when an OSError comes from creating the parent,
            the block (a full disk: ``No space left on device``) or the rename.
    """
    final_dir = os.fspath(final_dir)
    if os.path.exists(final_dir):
        raise os_error(FileExistsError, errno.EEXIST, f"{final_dir} exists already; refusing to overwrite it")
    parent = _make_parent(final_dir)
    remove_stale_temporaries(parent)
    try:
        temp_dir = tempfile.mkdtemp(prefix=_temp_prefix(), dir=parent)
    except OSError as error:
        raise _write_error(final_dir, error) from error
    try:
        yield temp_dir
        if os.path.exists(final_dir):
            raise os_error(
                FileExistsError, errno.EEXIST, f"{final_dir} appeared while it was being written; not overwriting it"
            )
        make_readable(temp_dir)
        os.rename(temp_dir, final_dir)
    except FileExistsError:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    except OSError as error:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise _write_error(final_dir, error) from error
    except BaseException as error:
        shutil.rmtree(temp_dir, ignore_errors=True)
        full = _space_error(final_dir, error)
        if full is not None:
            raise full from error
        raise


def sha256_of(path: str | os.PathLike) -> str:
    """The full hex sha256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unique_output_paths(inputs: Sequence[str], output_dir: str, suffix: str) -> list[str]:
    """One output path per input file, ``<output_dir>/<stem><suffix>``, never two alike.

    Inputs whose stems clash (``a/x.png`` and ``b/x.png``; ``x.png`` and ``x.jpg``) are told apart, each clash
    only as far as needed, in this order: the parent folder's name (``a_x``, ``b_x``), then the extension
    (``x_png``, ``x_jpg``), then both (``a_x_png``), then a counter in input order (``a_x_png_1``, ``a_x_png_2``:
    the same file given twice). Stems that do not clash keep their plain name, and a generated name never takes
    one of those. Names are compared case-insensitively (``X.png`` and ``x.png`` clash), as on macOS and Windows
    disks. The result depends only on ``inputs`` (in order), not on the file system.

    Args:
        inputs: input file paths.
        output_dir: the folder of the outputs.
        suffix: appended to each name, e.g. ``"_cam.png"``.

    Returns:
        ``len(inputs)`` paths, in the order of ``inputs``.
    """
    stems, parents, extensions = [], [], []
    for path in inputs:
        base = os.path.basename(os.path.normpath(os.fspath(path))) if path else ""
        stem, extension = os.path.splitext(base)
        stems.append(stem or "image")
        parents.append(os.path.basename(os.path.dirname(os.path.normpath(os.fspath(path)))) if path else "")
        extensions.append(extension.lstrip("."))

    def joined(*parts: str) -> str:
        return "_".join(part for part in parts if part)

    levels = [
        lambda i: stems[i],
        lambda i: joined(parents[i], stems[i]),
        lambda i: joined(stems[i], extensions[i]),
        lambda i: joined(parents[i], stems[i], extensions[i]),
    ]
    names: list[str | None] = [None] * len(stems)
    used: set[str] = set()
    for level in levels:
        pending = [i for i, name in enumerate(names) if name is None]
        candidates = {i: level(i) for i in pending}
        counts: dict[str, int] = {}
        for candidate in candidates.values():
            counts[candidate.casefold()] = counts.get(candidate.casefold(), 0) + 1
        for i in pending:
            key = candidates[i].casefold()
            if counts[key] == 1 and key not in used:
                names[i] = candidates[i]
                used.add(key)
    for i, name in enumerate(names):
        if name is not None:
            continue
        base, counter = levels[-1](i), 1
        while f"{base}_{counter}".casefold() in used:
            counter += 1
        names[i] = name = f"{base}_{counter}"
        used.add(name.casefold())
    return [os.path.join(output_dir, f"{name}{suffix}") for name in names]
