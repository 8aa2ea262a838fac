"""The one exception type users can cause.

    raise QuicknetsError("no run named 'x' in runs/")

The command line catches it once, prints `error: <message>` and exits 1; library callers get the
exception with the same message.
"""


class QuicknetsError(Exception):
    """A problem with the user's input, files or settings, described in one line."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; the message says what was kept and how to continue. The command
    line prints `interrupted: <message>` once and exits 130."""
