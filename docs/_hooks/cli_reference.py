"""MkDocs hook: the command-line reference, written at build time from quicknets' own argparse
parser (quicknets.cli.build_parser), so it cannot drift from the code.

docs/cli.md holds the marker `<!-- quicknets-cli -->`; it is replaced by one section per command
(`## quicknets train`, ...; `### quicknets runs rm` for a command's own subcommands) holding that
command's `--help` exactly as the terminal prints it, at a fixed width of 100 columns.

mkdocs-argparse (0.0.1, one release) and mkdocs-rich-argparse (for rich-argparse parsers) were
looked at; neither is kept up well enough to rely on for a page this small.
"""

import argparse
import os
import sys
from pathlib import Path

MARKER = "<!-- quicknets-cli -->"
SRC = Path(__file__).resolve().parents[2] / "src"  # this checkout's sources, not an installed copy


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_markdown())


def cli_markdown() -> str:
    """Every command's help as Markdown sections, in the order `quicknets --help` lists them."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    from quicknets.cli import build_parser

    saved = {k: os.environ.get(k) for k in ("COLUMNS", "NO_COLOR")}
    os.environ.update(COLUMNS="100", NO_COLOR="1")  # argparse reads the width when it formats
    try:
        return "\n".join(_sections(build_parser(), level=2))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def subcommands(parser: argparse.ArgumentParser) -> dict:
    """name -> subparser, for the subcommands `parser` itself defines (none: {})."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _sections(parser: argparse.ArgumentParser, level: int) -> list:
    out = [
        f"{'#' * level} `{parser.prog}`",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
        "",
    ]
    for sub in subcommands(parser).values():
        out += _sections(sub, level if parser.prog == "quicknets" else level + 1)
    return out
