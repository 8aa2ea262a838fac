"""The `quicknets` command: argparse in front, one module per subcommand in quicknets.commands.

    quicknets train                      # the notebook's quick pass
    quicknets evaluate RUN
    quicknets classify RUN --index 0

Errors a user can cause print one line `error: ...` and exit 1 (2 for a usage error, as argparse
does). Option names are never abbreviated (`sweep --seed 3` is an error, not `--seeds 3`). Output
reaches a redirected file line by line, and what the stream cannot encode is written in ASCII
("±" as "+/-"). Nothing heavy is imported until a command runs, so `quicknets --help` is instant.
"""

import argparse
import codecs
import importlib
import os
import signal
import sys
import threading
import unicodedata

from quicknets import __version__
from quicknets.base.errors import Interrupted, QuicknetsError
from quicknets.base.interrupts import ctrl_c_deferred, remember, watch_ctrl_c
from quicknets.base.machine import use_strict_math
from quicknets.commands import COMMANDS, WITHOUT_TORCH


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quicknets",
        description="Build, train, test and compare small networks on Fashion-MNIST, the "
        "MNIST family or your own images. Run `quicknets train` for the notebook's "
        "quick pass.",
    )
    parser.add_argument("--version", action="version", version=f"quicknets {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"quicknets.commands.{COMMANDS[name]}")
        module.add_parser(sub)
    _no_abbreviations(parser)
    return parser


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """allow_abbrev=False on `parser` and every subparser below it: a prefix that happens to be
    unique (`--seed` of `--seeds`, `--for` of `--force`) silently means another option."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                _no_abbreviations(subparser)


_ASCII = {
    "±": "+/-",
    "→": "->",
    "←": "<-",
    "×": "x",
    "…": "...",
    "–": "-",
    "—": "--",
    "≤": "<=",
    "≥": ">=",
    "≈": "~",
    "µ": "u",
    "·": ".",
}


def _readable(error: UnicodeError) -> tuple[str, int]:
    """A codecs error handler: what the stream cannot encode, in ASCII ("±" as "+/-", "é" as
    "e", anything else as its \\u escape)."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    out = []
    for c in error.object[error.start : error.end]:
        plain = unicodedata.normalize("NFKD", c).encode("ascii", "ignore").decode()
        out.append(_ASCII.get(c) or plain or c.encode("ascii", "backslashreplace").decode())
    return "".join(out), error.end


def _set_up_streams() -> None:
    """Once, at the entry: line buffering, so each line reaches a redirected file as printed
    (the `run:` line --resume needs survives a kill); no UnicodeEncodeError on an ASCII stream."""
    codecs.register_error("quicknets-readable", _readable)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):  # a TextIOWrapper; anything else is left as it is
            stream.reconfigure(line_buffering=True, errors="quicknets-readable")


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """parser.parse_args, except that a command's list of files or runs (its `trailing`
    default names it) also takes those written after an option: argparse fills such a list
    from the first run of positionals only, so `classify RUN --top 5 shoe.png` left shoe.png
    "unrecognized"."""
    args, extra = parser.parse_known_args(argv)
    trailing = getattr(args, "trailing", None)
    if extra and (trailing is None or any(a.startswith("-") for a in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")  # as parse_args says it
    if extra:
        getattr(args, trailing).extend(extra)
    return args


def _drop_stdout() -> None:
    """stdout to /dev/null: its reader has gone, and flushing it at exit would print a
    BrokenPipeError."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class Terminated(KeyboardInterrupt):
    """SIGTERM (a polite kill: `kill`, systemd, a batch system's time limit), taken as Ctrl-C
    is: a run stops at once, marked interrupted and resumable, and says so; exit 143."""


def _terminate(signum, frame):
    remember(signum)  # as a Ctrl-C is (interrupts.watch_ctrl_c)
    raise Terminated


def main(argv=None) -> int:
    _set_up_streams()
    use_strict_math()  # before torch starts: MKL's strict mode, as train() in Python
    parser = build_parser()
    args = parse(parser, argv)
    if args.command is None:
        parser.print_help()
        return 2
    if threading.current_thread() is threading.main_thread():  # signals reach only that one
        signal.signal(signal.SIGTERM, _terminate)
    with watch_ctrl_c() as presses:  # a press is remembered: none is lost or taken for an error
        try:
            if args.command not in WITHOUT_TORCH:
                with ctrl_c_deferred():  # torch's import ends whole (commands.WITHOUT_TORCH)
                    try:
                        import torch  # noqa: F401
                    except Exception:  # missing or broken: the command's own import says so
                        pass
            code = args.handler(args) or 0
            sys.stdout.flush()  # here, so a closed pipe is caught below and not at exit
            return code
        except BrokenPipeError:  # `quicknets runs | head`: the reader has gone; stop quietly
            _drop_stdout()
            return 1
        except Interrupted as e:  # a run stopped by Ctrl-C: what was kept, how to continue
            print(f"interrupted: {e}", file=sys.stderr)
            return 143 if isinstance(e.__context__, Terminated) else 130
        except KeyboardInterrupt as e:
            print("interrupted", file=sys.stderr)
            return 143 if isinstance(e, Terminated) else 130
        except Exception as e:
            if presses:  # a Ctrl-C that a library turned into another error ("corrupt")
                print("interrupted", file=sys.stderr)
                return 143 if presses[0] == signal.SIGTERM else 130
            if not isinstance(e, QuicknetsError):
                raise
            print(f"error: {e}", file=sys.stderr)
            if isinstance(e.__context__, BrokenPipeError):  # e.g. a run stopped by `| head`
                _drop_stdout()
            return 1


if __name__ == "__main__":
    sys.exit(main())
