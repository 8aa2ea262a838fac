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
