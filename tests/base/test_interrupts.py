"""base/interrupts.py: a Ctrl-C remembered, so that none is lost on its way, and a write that
ends whole (ctrl_c_deferred's own tests are in test_storage.py, beside the atomic writes)."""

import os
import signal
import sys

import pytest

from quicknets.base.interrupts import check_ctrl_c, ctrl_c_deferred, ctrl_c_pressed, watch_ctrl_c


class PressedInItsFinalizer:
    """Ctrl-C pressed while a finalizer runs: Python raises it inside the finalizer, prints
    "Exception ignored in ..." and drops it (seen in SQLAlchemy's InstanceState._cleanup)."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(3):  # bytecode to run the handler in
            pass


def test_a_press_swallowed_on_its_way_is_raised_at_the_next_check(monkeypatch):
    ignored = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: ignored.append(u.exc_type))
    with watch_ctrl_c() as presses:
        check_ctrl_c()  # none yet
        assert not ctrl_c_pressed()
        PressedInItsFinalizer()  # made and dropped at once
        assert ignored == [KeyboardInterrupt]  # lost on its way, as Python does it
        assert ctrl_c_pressed() and presses == [signal.SIGINT]
        with pytest.raises(KeyboardInterrupt):
            check_ctrl_c()  # ... and raised here
    assert presses == [signal.SIGINT]  # kept for the caller after the block
    assert not ctrl_c_pressed()
    check_ctrl_c()  # outside a watched block: nothing to raise


def test_a_watched_press_raises_at_once_and_nested_blocks_share_it():
    previous = signal.getsignal(signal.SIGINT)
    with watch_ctrl_c() as outer:
        with pytest.raises(KeyboardInterrupt), watch_ctrl_c() as inner:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(3):
                pass
        assert inner is outer and outer == [signal.SIGINT]
        assert ctrl_c_pressed()  # the outer block still knows it
        with watch_ctrl_c():  # a nested block does not forget it
            assert ctrl_c_pressed()
        # a press inside a deferred write: remembered and raised once the write ends
        done = []
        with pytest.raises(KeyboardInterrupt), ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append(True)
        assert done == [True] and outer == [signal.SIGINT] * 2
    assert signal.getsignal(signal.SIGINT) is previous
    with watch_ctrl_c() as again:  # a new outermost block starts afresh
        assert again == [] and not ctrl_c_pressed()


def test_a_sigterm_taken_as_ctrl_c_waits_for_a_deferred_write_too():
    """The command line takes SIGTERM as Ctrl-C (cli.Terminated): inside torch.save it came out
    as a RuntimeError as well, and the run was marked failed."""
    calls = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        with ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(3):
                pass
            assert calls == []  # not yet
        assert calls == [signal.SIGTERM]  # once the block ended
        assert signal.getsignal(signal.SIGTERM) is not None
    finally:
        signal.signal(signal.SIGTERM, previous)
