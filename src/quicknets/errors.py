"""The one exception type users can cause.

    raise QuicknetsError("no run named 'x' in runs/")

The command line catches it once, prints `error: <message>` and exits 1; library callers get the
exception with the same message.
"""


class QuicknetsError(Exception):
    """A problem with the user's input, files or settings, described in one line."""
