"""Ctrl-C at an unlucky moment: writes that end whole, and a press that is never lost.

    with watch_ctrl_c():            # the command line, a sweep's training
        ...
        check_ctrl_c()              # each training step: a press lost on its way is raised here
        if ctrl_c_pressed(): ...    # an error after a press is the press, not a failure
    with ctrl_c_deferred():         # a write that must end whole: a Ctrl-C waits for its end
        ...

Python raises KeyboardInterrupt in whatever line runs when SIGINT arrives, and each way that
goes wrong has been seen. Inside a write: torch.save turned it into a RuntimeError ("unexpected
pos") and the run was marked failed; inside SQLAlchemy mid-transaction it left SQLite's write
lock held; between the files of one record (a run folder's config and meta, an epoch's
checkpoint and history) it left half a record. Such blocks defer it (ctrl_c_deferred). Inside a
library that turns it into another error, or swallows it: torch's first import clears any error
raised while it imports numpy (and goes on without numpy), and one raised inside a finalizer is
printed as "Exception ignored in ..." and dropped, so training went on. So within watch_ctrl_c
every press is remembered: an error after it is taken as the interruption it is, and a training
step raises a press that was lost (check_ctrl_c).
"""

import signal
import threading
from contextlib import contextmanager

_presses: list = []  # the SIGINTs seen in the outermost watch_ctrl_c block now running
_depth = 0  # watch_ctrl_c blocks now running (they nest: a sweep's training in the command)


def _remember_and_raise(signum, frame):
    """As Python's own SIGINT handler, remembered."""
    _presses.append(signum)
    raise KeyboardInterrupt


@contextmanager
def watch_ctrl_c():
    """Ctrl-C in the block raises KeyboardInterrupt, as by default, and is remembered: yields
    the list of presses (it keeps them after the block), and ctrl_c_pressed() and check_ctrl_c()
    see them inside it. Outside the main thread, which signals never reach, it does nothing."""
    global _presses, _depth
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    if _depth == 0:
        _presses = []  # a new list: an earlier block's holder keeps its own
    presses = _presses
    previous = signal.signal(signal.SIGINT, _remember_and_raise)
    _depth += 1
    try:
        yield presses
    finally:
        _depth -= 1
        signal.signal(signal.SIGINT, previous)


def ctrl_c_pressed() -> bool:
    """Whether Ctrl-C was pressed in the watch_ctrl_c block now running (False outside one)."""
    return _depth > 0 and bool(_presses)


def check_ctrl_c() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed in the watch_ctrl_c block now running: a
    press whose KeyboardInterrupt was swallowed on its way (see the module docstring) stops the
    loop that asks, instead of letting it run to its end. Costs a few global reads: ask it once
    per training step."""
    if _depth and _presses:
        raise KeyboardInterrupt


@contextmanager
def ctrl_c_deferred():
    """Ctrl-C inside waits for the block's end, then acts as SIGINT's handler before it would
    have (raises KeyboardInterrupt, is ignored, or ends the process). For writes that must end
    whole: raised inside torch.save, a KeyboardInterrupt comes out as a RuntimeError ("unexpected
    pos 704 vs 598"), and the run was marked failed; raised inside SQLAlchemy mid-transaction,
    it can leave SQLite's write lock held (1 in 40 interrupted Optuna report/should_prune
    loops), and another sweep worker's next write then fails with "database is locked"."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is None
    ):  # signals reach the main thread only; None: a handler not set from Python
        yield
        return
    pressed = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pressed and callable(previous):  # a Ctrl-C outranks the block's own error
            previous(signal.SIGINT, pressed[0])
        elif pressed and previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)
