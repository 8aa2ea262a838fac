"""quicknets sweep: train every variant of some settings (grid, random or Optuna), print a ranking.

    quicknets sweep --layers 784-256-10,784-512-256-10 --lr 0.001,0.003 --optimizer adam,sgd \\
        --seeds 3 --epochs 2 --name first
    quicknets sweep --resume-sweep first                  # after Ctrl-C: what is not finished
    quicknets sweep --search random --trials 20 --lr log:1e-4:1e-2 --dropout 0:0.5
    quicknets sweep --search optuna --trials 40 --lr log:1e-4:1e-2 --val-split 0.1 \\
        --name lr-study --storage postgresql://user@db-host/quicknets
    quicknets sweep --resume-sweep lr-study --storage postgresql://user@db-host/quicknets
                                                          # on every other machine
    quicknets sweep --lr 0.001,0.003 --seeds 2 --name g --storage journal:///shared/g.log
                                                          # the same command on every machine
    quicknets sweep --show lr-study --storage postgresql://user@db-host/quicknets
    quicknets sweep --config sweep.toml

Every training setting is a flag: one value fixes it, a comma list (or LOW:HIGH, log:LOW:HIGH for
random and Optuna search) varies it. A TOML file holds the same: top-level search, seeds, trials,
workers, threads, metric, name, storage, prune, heartbeat; a [base] table of fixed settings and a
[vary] table of lists or {low, high, log} ranges. Flags override the file.
"""

import argparse

from quicknets.commands.common import add_all_settings, add_runs_dir, given
from quicknets.sweeps.space import SETTINGS

NOT_FLAGS = ("seed", "threads")  # --seeds and --threads below say them for a sweep
TOML_KEYS = (
    "search",
    "seeds",
    "trials",
    "workers",
    "threads",
    "metric",
    "name",
    "storage",
    "prune",
    "heartbeat",
    "base",
    "vary",
)
RESUME_TAKES = (
    "workers",
    "threads",
    "storage",
    "log_to",
    "quiet",
    "runs_dir",
    "all_settings",
    "stack",
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="train many variants (grid, random, Optuna) and rank them",
        description="Train every variant and print them ranked, mean ± std "
        "over seeds. Every training setting is a flag: one value "
        "fixes it, a comma list (or LOW:HIGH, log:LOW:HIGH for "
        "random and Optuna search) varies it. Each trial is an "
        "ordinary run record tagged with the sweep's name.",
    )
    group = p.add_argument_group("settings (one value fixes it, a comma list or range varies it)")
    for name, f in SETTINGS.items():
        if name not in NOT_FLAGS:
            flag = f"--{name.replace('_', '-')}"
            alone = {"nargs": "?", "const": "true"} if f.type is bool else {}  # as in train
            group.add_argument(
                flag,
                *f.metadata["flags"],
                dest=f"set_{name}",
                default=None,
                metavar="VALUES",
                help=f.metadata["help"],
                **alone,
            )
            if f.type is bool:  # --no-verify as in train; --verify true,false varies it
                group.add_argument(
                    f"--no-{name.replace('_', '-')}",
                    dest=f"set_{name}",
                    action="store_const",
                    const="false",
                    help=argparse.SUPPRESS,
                )
    p.add_argument(
        "--config", default=None, metavar="FILE.toml", type=given, help="a sweep file (TOML)"
    )
    p.add_argument(
        "--search",
        default=None,
        choices=["grid", "random", "optuna"],
        help="how variants are chosen (default: grid)",
    )
    p.add_argument(
        "--seeds",
        default=None,
        metavar="N|LIST",
        help="seeds per variant: 3 means 0,1,2; or a list 0,7,9 (default: 1)",
    )
    p.add_argument(
        "--trials",
        type=int,
        default=None,
        help="variants for random search, trials for Optuna (default: 10)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="parallel worker processes (default: one per free core)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="PyTorch threads per worker (default: free cores / workers)",
    )
    p.add_argument(
        "--metric",
        default=None,
        help="rank by val_accuracy, val_loss, test_accuracy, test_loss, "
        "test_balanced_accuracy, test_ece, train_accuracy or train_loss (default: auto, "
        "val_accuracy with a validation split, else test_accuracy)",
    )
    p.add_argument(
        "--name",
        default=None,
        type=given,
        help="sweep (and Optuna study) name, used once (default: sweep-DATE-ID)",
    )
    p.add_argument(
        "--resume-sweep",
        default=None,
        metavar="NAME",
        type=given,
        help="continue sweep NAME as it was planned: the runs not finished yet; "
        "for Optuna, join its study (with --storage on other machines)",
    )
    p.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        type=given,
        help="the study the trials go through, shared by every worker that names "
        "it: postgresql://user@host/db, or a journal file (journal:///PATH or "
        "a PATH.log) on a shared file system; any kind of search (default: "
        "Optuna's in the runs folder, none for grid and random)",
    )
    p.add_argument(
        "--show",
        default=None,
        metavar="NAME",
        type=given,
        help="print sweep NAME ranked, every trial whichever machine ran it (from "
        "its study with --storage), and train nothing",
    )
    p.add_argument(
        "--heartbeat",
        type=int,
        default=None,
        metavar="SECONDS",
        help="with a study: a worker beats this often while it trains; a trial "
        "missing 3 beats is trained again by another worker (default: 10)",
    )
    p.add_argument(
        "--no-prune",
        dest="prune",
        action="store_false",
        default=None,
        help="Optuna: never stop hopeless trials early",
    )
    p.add_argument(
        "--no-stack",
        dest="stack",
        action="store_false",
        default=None,
        help="train every run apart; by default a grid or random search trains the "
        "variants of one MLP shape (seeds, lr, weight decay, momentum, dropout, "
        "label smoothing, schedule) together in one step, each still its own run",
    )
    p.add_argument(
        "--log-to",
        default="",
        metavar="NAMES",
        help="also log every trial's epochs to tensorboard and/or mlflow",
    )
    p.add_argument("--quiet", action="store_true", help="print only the ranked table")
    add_all_settings(p)
    add_runs_dir(p)
    p.set_defaults(handler=run)


def read_toml(path) -> dict:
    from quicknets.base.errors import QuicknetsError
    from quicknets.config.configs import load_toml, setting

    spec = load_toml(path)
    unknown = sorted(set(spec) - set(TOML_KEYS))
    if unknown:
        raise QuicknetsError(
            f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(TOML_KEYS))}"
        )
    for key in ("base", "vary"):
        if not isinstance(spec.get(key, {}), dict):
            raise QuicknetsError(
                f"{path}: {key} must be a table of settings (a [{key}] section), got {spec[key]!r}"
            )
        spec[key] = {setting(k): v for k, v in spec.get(key, {}).items()}
    for key in ("search", "metric", "name", "storage"):
        if not isinstance(spec.get(key, ""), str):
            raise QuicknetsError(f"{path}: {key} must be a string, got {spec[key]!r}")
    return spec


def run(args) -> int:
    from quicknets.base.errors import QuicknetsError

    try:
        return _run(args)
    except ModuleNotFoundError as e:  # raised before the study or the sweep's plan is written
        if e.name != "optuna":
            raise
        raise QuicknetsError(
            "an Optuna sweep needs Optuna, an optional extra: pip install 'quicknets[sweep]'"
        ) from None


def _run(args) -> int:
    from quicknets.base.errors import QuicknetsError
    from quicknets.base.storage import output_path
    from quicknets.records.runs import runs_root
    from quicknets.sweeps import format_ranking, load_record, new_name, resume_sweep, sweep
    from quicknets.sweeps.space import Range, parse_values
    from quicknets.training.loggers import parse_log_to, require

    log = (lambda *a: None) if args.quiet else print
    log_to = parse_log_to(args.log_to)
    if args.show is not None:
        return show(args)
    require(log_to)  # a missing package: an error before any trial
    output_path(runs_root(args.runs_dir), folder=True)  # where the runs go, too
    if args.resume_sweep is not None:
        given = [
            k
            for k, v in vars(args).items()
            if v not in (None, False, "")
            and k not in (*RESUME_TAKES, "resume_sweep", "handler", "command")
        ]
        if given:
            raise QuicknetsError(
                f"--resume-sweep continues a sweep as it was planned; it "
                f"takes only --workers, --threads, --storage, --log-to, "
                f"--quiet, --all-settings, --no-stack and --runs-dir, not --"
                f"{given[0].removeprefix('set_').replace('_', '-')}"
            )
        name = args.resume_sweep
        groups = resume_sweep(
            name,
            workers=args.workers or 0,
            threads=args.threads or 0,
            runs_dir=args.runs_dir,
            storage=args.storage,
            log=log,
            log_to=log_to,
            stack=args.stack is not False,
        )
    else:
        spec = read_toml(args.config) if args.config else {}
        base, vary = spec.get("base", {}), spec.get("vary", {})
        for key in SETTINGS:
            text = getattr(args, f"set_{key}", None)
            if text is None:
                continue
            values = parse_values(key, text)
            base.pop(key, None), vary.pop(key, None)
            if isinstance(values, Range) or len(values) > 1:
                vary[key] = values
            else:
                base[key] = values[0]

        def pick(key, default):  # the flag, else the file, else the default
            return spec.get(key, default) if getattr(args, key) is None else getattr(args, key)

        name = pick("name", None)
        name = new_name() if name is None else name  # an empty name is refused, not replaced
        groups = sweep(
            base,
            vary,
            pick("seeds", 1),
            search=pick("search", "grid"),
            trials=pick("trials", 10),
            workers=pick("workers", 0),
            threads=pick("threads", 0),
            runs_dir=args.runs_dir,
            name=name,
            storage=pick("storage", None),
            metric=pick("metric", "auto"),
            prune=pick("prune", True),
            heartbeat=pick("heartbeat", 10),
            log=log,
            log_to=log_to,
            stack=args.stack is not False,
        )
    metric = load_record(name, args.runs_dir)["search"]["metric"]
    print(f"ranked by {metric} (mean ± sample std over seeds; n = seeds):")
    print(format_ranking(groups, metric, args.all_settings))
    if not best(groups):
        raise QuicknetsError(f"no trial of sweep {name} finished")
    shared = " --storage URL" if load_record(name, args.runs_dir)["storage"] else ""
    print(f"compare them: quicknets compare --sweep {name}{shared} --plot curves.png")
    print(f"see them: quicknets report --sweep {name}{shared}")
    return 0


def best(groups: list) -> bool:
    """Print the best finished variant, if there is one."""
    from quicknets.records.comparison import label, shown_keys

    finished = [g for g in groups if g.get("state", "COMPLETE") == "COMPLETE"]
    if finished:
        print(
            "best: " + label(finished[0]["settings"], shown_keys([g["settings"] for g in groups]))
        )
    return bool(finished)


def show(args) -> int:
    """--show NAME: the whole sweep from its study (or this runs folder), nothing trained."""
    from quicknets.base.errors import QuicknetsError
    from quicknets.sweeps import format_sweep, load_sweep
    from quicknets.sweeps.importance import format_importance
    from quicknets.sweeps.view import sweep_importance

    extra = [
        k
        for k, v in vars(args).items()
        if v not in (None, False, "")
        and k not in ("show", "storage", "runs_dir", "all_settings", "handler", "command")
    ]
    if extra:
        raise QuicknetsError(
            f"--show prints a sweep; it takes only --storage, --all-settings and --runs-dir, "
            f"not --{extra[0].removeprefix('set_').replace('_', '-')}"
        )
    view = load_sweep(args.show, args.runs_dir, args.storage)
    print(format_sweep(view, args.all_settings))
    print(format_importance(sweep_importance(view)))
    best(view.groups)
    return 0
