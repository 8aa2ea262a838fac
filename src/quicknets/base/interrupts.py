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


def remember(signum: int) -> None:
    """Count a signal taken as Ctrl-C (the command line's SIGTERM) as a press."""
    if _depth:
        _presses.append(signum)


def _remember_and_raise(signum, frame):
    """As Python's own SIGINT handler, remembered."""
    remember(signum)
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
    have (raises KeyboardInterrupt, is ignored, or ends the process); so does SIGTERM where a
    Python handler takes it (the command line takes it as Ctrl-C). For writes that must end
    whole: raised inside torch.save, a KeyboardInterrupt comes out as a RuntimeError
    ("unexpected pos 704 vs 598"), and the run was marked failed; raised inside SQLAlchemy
    mid-transaction, it can leave SQLite's write lock held (1 in 40 interrupted Optuna
    report/should_prune loops), and another sweep worker's next write then fails with
    "database is locked"."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    deferred = [signal.SIGINT] if signal.getsignal(signal.SIGINT) is not None else []
    if callable(signal.getsignal(signal.SIGTERM)):  # None: a handler not set from Python
        deferred.append(signal.SIGTERM)
    arrived: list = []
    previous = {
        signum: signal.signal(signum, lambda signum, frame: arrived.append((signum, frame)))
        for signum in deferred
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum, frame in sorted(dict(arrived).items()):  # each once, SIGINT first
            handler = previous[signum]
            if callable(handler):  # a Ctrl-C outranks the block's own error
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)
