"""Keeping native libraries' chatter off the terminal.

TensorFlow's, TFLite's and LiteRT's C++ code write start-up and progress lines (oneDNN and CUDA probing,
"Created TensorFlow Lite XNNPACK delegate for CPU", the converter's "fully_quantize: 0, ...") straight to file
descriptor 2, where no Python logging setting reaches them. :func:`native_stderr_silenced` points descriptor 2 at
``/dev/null`` for a block; Python's own ``sys.stderr`` writes are flushed first, and errors still arrive as Python
exceptions (with their messages), after the block.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

_LOCK = threading.RLock()
_DEPTH = [0]  # blocks open (a nested block, on any thread, finds descriptor 2 silenced already)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Within the block, whatever native code writes to file descriptor 2 is dropped (see the module docstring).
    Set ``KZOO_NATIVE_LOGS=1`` to keep it (debugging)."""
    if os.environ.get("KZOO_NATIVE_LOGS") == "1":
        yield
        return
    with _LOCK:
        if _DEPTH[0]:
            _DEPTH[0] += 1
            saved = None
        else:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError):  # no descriptor 2 (a daemon), or a closed stderr: nothing to silence
                saved = None
            else:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
                _DEPTH[0] = 1
    try:
        yield
    finally:
        with _LOCK:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
                _DEPTH[0] = 0
            elif _DEPTH[0]:
                _DEPTH[0] -= 1
