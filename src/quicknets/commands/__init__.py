"""Subcommands of `quicknets`: command name -> module in this package.

Each module defines `add_parser(subparsers)`, which registers the command and sets
`handler=<function(args) -> exit code>`, and imports torch only inside that function.

May import: every group. With cli.py (argparse, the `error: ...` line) and doctor.py
(the checks of `quicknets doctor`) they are the top; nothing imports them.
"""

COMMANDS = {
    "train": "train",
    "evaluate": "evaluate",
    "classify": "classify",
    "show": "show",
    "report": "report",
    "runs": "runs",
    "compare": "compare",
    "sweep": "sweep",
    "export": "export",
    "demo": "demo",
    "lr-find": "lr_find",
    "completion": "completion",
    "audit": "audit",
    "doctor": "doctor",
}

# The commands that do not import torch up front (runs, compare and completion never do; doctor
# imports it inside a check, to say what is wrong with it). Every other one imports it first, at
# once, with Ctrl-C deferred (cli.py): pressed inside torch's import, Ctrl-C was lost (torch
# clears any error of its numpy import, and runs without numpy) or aborted the process
# ("terminate called after throwing an instance of 'pybind11::error_already_set'"). A sweep's
# workers import it; with one worker, this process does, where Ctrl-C only stops (pool.execute).
WITHOUT_TORCH = ("runs", "compare", "completion", "sweep", "doctor")
