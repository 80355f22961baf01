"""Stop requests that cannot be lost: Ctrl-C and SIGTERM recorded as well as raised.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to run when the signal arrives; when that is a
finalizer (``__del__``) or a callback called from C++ (TensorFlow, checkpoint writing), the exception is printed as
"ignored" and dropped, and a training run goes on as if nothing happened. Within :func:`stop_signals_raise`, the
handler also records the request, and long loops call :func:`raise_pending_stop` at safe points (after each
training step), so a dropped raise stops the run one step later.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_pending: list[BaseException] = []


@contextlib.contextmanager
def stop_signals_raise(terminated: type[KeyboardInterrupt] = KeyboardInterrupt) -> Iterator[None]:
    """Within the block, SIGINT raises ``KeyboardInterrupt`` and SIGTERM raises ``terminated`` (a
    ``KeyboardInterrupt`` subclass, so cleanups run) in the main thread, each also recorded for
    :func:`raise_pending_stop`. The previous handlers come back after; outside the main thread (where Python
    cannot set handlers) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        error = terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        _pending.append(error)
        raise error

    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
        _pending.clear()


def raise_pending_stop() -> None:
    """Raise the stop request recorded by :func:`stop_signals_raise`'s handler, if any (its own raise may have been
    dropped); a no-op otherwise."""
    if _pending:
        raise _pending.pop()
