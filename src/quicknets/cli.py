"""The `quicknets` command: argparse in front, one module per subcommand in quicknets.commands.

    quicknets train                      # the notebook's quick pass
    quicknets evaluate RUN
    quicknets classify RUN --index 0

Errors a user can cause print one line `error: ...` and exit 1 (2 for a usage error, as argparse
does). Nothing heavy is imported until a command runs, so `quicknets --help` is instant.
"""
import argparse
import importlib
import os
import sys

from quicknets import __version__
from quicknets.commands import COMMANDS
from quicknets.errors import Interrupted, QuicknetsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quicknets",
        description="Build, train, test and compare small networks on Fashion-MNIST, MNIST "
                    "and KMNIST. Run `quicknets train` for the notebook's quick pass.")
    parser.add_argument("--version", action="version", version=f"quicknets {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"quicknets.commands.{COMMANDS[name]}")
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code = args.handler(args) or 0
        sys.stdout.flush()  # here, so a closed pipe is caught below and not at exit
        return code
    except BrokenPipeError:  # `quicknets runs | head`: the reader has gone; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except QuicknetsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:  # a run stopped by Ctrl-C: what was kept, how to continue
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
