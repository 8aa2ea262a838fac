"""quicknets completion: the shell's tab completion for every command and flag, from shtab.

    quicknets completion bash > ~/.local/share/bash-completion/completions/quicknets
    quicknets completion zsh > ~/.zfunc/_quicknets     # a folder on $fpath, then compinit

The script is generated from the same argparse parser the command uses, so it never drifts from
the flags; it is static (nothing runs at each TAB press).
"""

SHELLS = ("bash", "zsh", "tcsh")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "completion",
        help="print a tab-completion script for bash, zsh or tcsh",
        description="Print the shell's tab-completion script for quicknets "
        "(made by shtab from the command's own parser). bash: "
        "`quicknets completion bash > ~/.local/share/bash-completion"
        "/completions/quicknets`; zsh: `quicknets completion zsh > "
        "DIR/_quicknets` with DIR on $fpath.",
    )
    p.add_argument("shell", choices=SHELLS, help="the shell")
    p.set_defaults(handler=run)


def run(args) -> int:
    from quicknets.base.errors import QuicknetsError

    try:
        import shtab
    except ImportError:
        raise QuicknetsError("completion needs the shtab package: pip install shtab") from None
    from quicknets.cli import build_parser

    print(shtab.complete(build_parser(), shell=args.shell), end="")
    return 0
