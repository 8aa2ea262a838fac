"""quicknets runs: list, filter and sort run records; `quicknets runs rm RUN ...` deletes them.

    quicknets runs --where optimizer=adam --where "lr<0.01" --sort=-test_accuracy
    quicknets runs --status all          # unfinished runs too: running, stopped, interrupted
    quicknets runs --format csv > runs.csv   # or json: every setting of every run, for pandas
    quicknets runs rm mlp-256-128-64_adam_lr0.003_s0-1a2b3c

Runs whose files cannot be read are named under the table (with the reason) whatever the filters,
so no run is hidden; `rm` removes only run records quicknets made, never other folders or files.
"""

import argparse

from quicknets.commands.common import add_runs_dir, given


def add_parser(sub) -> None:
    p = sub.add_parser(
        "runs",
        help="list run records (filter, sort); `runs rm RUN` deletes",
        description="List the runs in the runs folder (their folders are read; "
        "runs/index.sqlite caches them). Keys are "
        "any setting (lr, optimizer, network, seed, ...) or metric "
        "(test_accuracy, test_loss, val_accuracy, val_loss: of the epoch whose "
        "weights the run kept; test_ece and mean_corruption_accuracy once measured, "
        "shown as columns then; epochs_done, status, created).",
    )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY<OP>VALUE",
        help="filter, repeatable: optimizer=adam, lr<0.01, test_accuracy>=0.85",
    )
    p.add_argument(
        "--sort",
        default=None,
        metavar="KEY",
        type=given,
        help="sort by a key; a leading minus sorts descending (--sort=-test_accuracy)",
    )
    p.add_argument(
        "--status",
        default="done",
        choices=[
            "done",
            "running",
            "stopped",
            "interrupted",
            "pruned",
            "failed",
            "unreadable",
            "all",
        ],
        help="which runs (default: finished ones)",
    )
    p.add_argument("--sweep", default=None, type=given, help="only the trials of this sweep")
    p.add_argument("--limit", type=int, default=0, help="show at most this many (0: all)")
    p.add_argument(
        "--format",
        default="table",
        choices=["table", "json", "csv"],
        help="table (default), json (a list of runs, settings included) or csv (one "
        "row per run, a column per setting)",
    )
    add_runs_dir(p)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    rm = actions.add_parser(
        "rm", help="delete run records (folders quicknets made, holding only the record's files)"
    )
    rm.add_argument("names", metavar="RUN", nargs="+", help="run names, unique prefixes or folders")
    rm.add_argument("--runs-dir", default=argparse.SUPPRESS, type=given, help="as for `runs`")
    rm.add_argument("--force", action="store_true", help="delete even a run still training")
    rm.set_defaults(trailing="names")  # `rm RUN --force RUN` too
    p.set_defaults(handler=run)


def run(args) -> int:
    from quicknets.base.errors import QuicknetsError
    from quicknets.records.index import query
    from quicknets.records.runs import remove_run, runs_root

    if args.action == "rm":
        for name in args.names:
            print(f"removed: {remove_run(name, args.runs_dir, args.force)}")
        return 0
    if args.limit < 0:
        raise QuicknetsError(f"--limit must be at least 0 (0: all), got {args.limit}")
    if runs_root(args.runs_dir).exists() and not runs_root(args.runs_dir).is_dir():
        raise QuicknetsError(f"{runs_root(args.runs_dir)} is a file, not a folder of runs")
    every = query(runs_root(args.runs_dir), args.where, args.sort, "all", args.sweep)
    rows = [r for r in every if args.status in ("all", r["status"])]
    if args.limit > 0:
        rows = rows[: args.limit]
    if args.format != "table":
        write_rows(rows, args.format)
        return 0
    # the trust metrics get a column once a listed run has them ("-" for the others)
    shown = ["test_accuracy", "test_loss"]
    shown += [k for k in OPTIONAL if any(r[k] is not None for r in rows) or k in str(args.sort)]
    head = " ".join(f"{k:>9}" for k in shown)
    print(f"{'run':<52} {'status':<11} {'epochs':>6} {head}  created")
    for r in rows:
        epochs = f"{r['epochs_done'] or 0}/{r['settings'].get('epochs', '?')}"
        cells = " ".join(f"{_number(r[k]):>{max(9, len(k))}}" for k in shown)
        print(f"{r['name']:<52} {r['status']:<11} {epochs:>6} {cells}  {r['created'] or '-'}")
    others = len(every) - len(rows)
    print(
        f"{len(rows)} run(s) in {runs_root(args.runs_dir)}"
        + (f" ({others} more not {args.status}: --status all)" if others else "")
    )
    for r in query(runs_root(args.runs_dir), status="unreadable"):
        print(f"unreadable: {r['name']}: {r['problem']}")
    return 0


OPTIONAL = ("test_ece", "mean_corruption_accuracy")  # in results.json once measured


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


COLUMNS = (
    "name",
    "status",
    "created",
    "sweep",
    "epochs_done",
    "test_accuracy",
    "test_loss",
    "val_accuracy",
    "val_loss",
    *OPTIONAL,
)  # validation: of the epoch whose weights were kept


def write_rows(rows: list, fmt: str) -> None:
    """The listed runs as JSON (a list of objects, `settings` nested) or CSV (the columns above,
    then one per setting, then `problem`), to stdout."""
    import csv
    import sys

    from quicknets.base.storage import json_text

    records = [
        {
            **{k: r.get(k) for k in COLUMNS},
            "settings": r.get("settings") or {},
            "problem": r.get("problem"),
        }
        for r in rows
    ]
    if fmt == "json":
        print(json_text(records, indent=1))  # strict: a NaN metric is null
        return
    settings = list(dict.fromkeys(k for r in records for k in r["settings"]))
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([*COLUMNS, *settings, "problem"])
    for r in records:
        writer.writerow(
            [
                *("" if r[k] is None else r[k] for k in COLUMNS),
                *("" if r["settings"].get(k) is None else r["settings"][k] for k in settings),
                r["problem"] or "",
            ]
        )
