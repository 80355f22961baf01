"""One run, one writer: an advisory lock on a run folder (``OUTPUT_DIR/.kzoo-run.lock``).

``kzoo train`` and ``kzoo demo`` take the lock of their ``output_dir`` before they delete (``--fresh``) or write
anything; a second writer on the same folder is refused with one line naming the holder (pid, host, since when).
The lock is an OS advisory lock (``fcntl.flock``) on the open lock file, so the kernel releases it when its holder
dies, however it dies (``SIGKILL`` included): the next run takes it over. Where ``flock`` is not available (no
``fcntl``, a file system without locks) the lock falls back to the holder's pid: a lock file naming a process of
this host that is gone is stale and taken over.

The lock is re-entrant within a process (``kzoo demo`` holds it around the whole demo, and the training loop takes
it again inside): the same process taking the same folder again only counts up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import socket
import time
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # Windows: the pid fallback only
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "RunLockedError", "acquire", "read_holder", "release", "run_lock"]

#: The lock file's name inside a run folder (``kzoo.training.loop.clear_run`` never deletes it).
LOCK_FILE = ".kzoo-run.lock"
#: ``flock`` failures that mean "this file system does not lock", not "someone holds it".
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class RunLockedError(RuntimeError):
    """Another process holds the run folder's lock; the message names it (pid, host, since when).

    Attributes:
        output_dir: the run folder.
        holder: what the lock file says about its holder (``pid``, ``host``, ``since``, ``command``), or ``{}``.
    """

    def __init__(self, message: str, output_dir: str, holder: dict) -> None:
        super().__init__(message)
        self.output_dir = output_dir
        self.holder = holder


@dataclasses.dataclass
class _Held:
    fd: int | None  # the locked file (None: held by the pid fallback)
    path: str
    count: int


#: Locks this process holds, by the lock file's absolute path.
_HELD: dict[str, _Held] = {}


def _host() -> str:
    return socket.gethostname() or "localhost"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


def read_holder(output_dir: str | os.PathLike) -> dict:
    """What the lock file of ``output_dir`` says about its (last) holder: ``{"pid": int, "host": str, "since": str
    (UTC, ISO 8601), "command": str}``; ``{}`` when there is no lock file or it is empty or unreadable."""
    try:
        with open(os.path.join(os.fspath(output_dir), LOCK_FILE)) as f:
            holder = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another process (it has not written its name yet)"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, since {holder.get('since', '?')}" + (
        f" ({holder['command']})" if holder.get("command") else ""
    )


def _refusal(output_dir: str, holder: dict, purpose: str) -> RunLockedError:
    return RunLockedError(
        f"{output_dir} is in use by another kzoo run: {_describe(holder)}; {purpose} refused, nothing was changed "
        "(wait for that run to end or stop it, or use another output_dir)",
        output_dir,
        holder,
    )


def _record(command: str) -> bytes:
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return json.dumps({"pid": os.getpid(), "host": _host(), "since": since, "command": command}).encode()


def _write_record(fd: int, command: str) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, _record(command))


def _acquire_flock(path: str, output_dir: str, purpose: str, command: str) -> int | None:
    """The locked file's descriptor; ``None`` when this file system does not lock (use the pid fallback)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _refusal(output_dir, read_holder(output_dir), purpose) from None
        except OSError as error:
            os.close(fd)
            if error.errno in _NO_LOCKS:
                return None
            raise
        # the holder before us may have removed the file while we waited for it: lock the file that is there now
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            _write_record(fd, command)
            return fd
        os.close(fd)


def _acquire_by_pid(path: str, output_dir: str, purpose: str, command: str) -> None:
    """Without ``flock``: refuse when the lock file names a live process (or one of another host), else take it."""
    holder = read_holder(output_dir)
    pid, host = holder.get("pid"), holder.get("host")
    if isinstance(pid, int) and pid != os.getpid() and (host != _host() or _process_alive(pid)):
        raise _refusal(output_dir, holder, purpose)
    with open(path, "wb") as f:
        f.write(_record(command))


def acquire(output_dir: str | os.PathLike, purpose: str = "training", command: str = "") -> str:
    """Take the lock of run folder ``output_dir`` (created if missing) for this process; re-entrant.

    Args:
        output_dir: the run folder.
        purpose: what the lock is for, named in the refusal (``"training"``, ``"--fresh"``...).
        command: recorded in the lock file for the refusal of others (e.g. ``"kzoo train configs/x.yaml"``).

    Returns:
        The lock file's path (pass it to :func:`release`).

    Raises:
        RunLockedError: another live process holds it (the message names it: pid, host, since when).
        OSError: the folder cannot be created or the lock file cannot be written.
    """
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.abspath(os.path.join(output_dir, LOCK_FILE))
    held = _HELD.get(path)
    if held is not None:
        held.count += 1
        return path
    fd = _acquire_flock(path, output_dir, purpose, command) if fcntl is not None else None
    if fd is None:
        _acquire_by_pid(path, output_dir, purpose, command)
    _HELD[path] = _Held(fd, path, 1)
    return path


def release(path: str) -> None:
    """Release one hold of the lock file ``path`` (:func:`acquire`'s result); the last one removes the file and
    unlocks it."""
    held = _HELD.get(path)
    if held is None:
        return
    held.count -= 1
    if held.count > 0:
        return
    del _HELD[path]
    with contextlib.suppress(OSError):  # removed while locked: a waiting process then sees a new inode
        os.remove(path)
    if held.fd is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(held.fd, fcntl.LOCK_UN)
        os.close(held.fd)


@contextlib.contextmanager
def run_lock(output_dir: str | os.PathLike, purpose: str = "training", command: str = "") -> Iterator[str]:
    """Hold the lock of run folder ``output_dir`` for the block (see :func:`acquire`); released on exit, on
    exceptions and on ``KeyboardInterrupt``. Yields the lock file's path."""
    path = acquire(output_dir, purpose, command)
    try:
        yield path
    finally:
        release(path)
