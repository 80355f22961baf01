"""kzoo.utils.interrupts: Ctrl-C and SIGTERM raised and recorded, so a dropped KeyboardInterrupt still stops."""

from __future__ import annotations

import os
import signal

import pytest

from kzoo.utils.interrupts import raise_pending_stop, stop_signals_raise


class Stopped(KeyboardInterrupt):
    pass


class Finalized:
    """Its finalizer receives the signal: Python prints the KeyboardInterrupt as ignored and drops it."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped one, on purpose
def test_a_dropped_interrupt_is_raised_at_the_next_check():
    with stop_signals_raise(Stopped):
        Finalized()  # the handler's raise happens inside __del__ and is dropped
        with pytest.raises(KeyboardInterrupt) as caught:
            raise_pending_stop()
        assert type(caught.value) is KeyboardInterrupt
        raise_pending_stop()  # nothing left


def test_sigterm_raises_the_given_class_and_handlers_come_back():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stopped):
        with stop_signals_raise(Stopped):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10**6):  # the handler runs between bytecodes
                pass
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    raise_pending_stop()  # cleared on the way out
