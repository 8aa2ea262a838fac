"""quicknets sweep: train every variant of some settings (grid, random or Optuna), print a ranking.

    quicknets sweep --layers 784-256-10,784-512-256-10 --lr 0.001,0.003 --optimizer adam,sgd \\
        --seeds 3 --epochs 2
    quicknets sweep --search random --trials 20 --lr log:1e-4:1e-2 --dropout 0:0.5
    quicknets sweep --search optuna --trials 40 --lr log:1e-4:1e-2 --val-split 0.1 \\
        --name lr-study --storage postgresql://user@db-host/quicknets     # on every machine
    quicknets sweep --config sweep.toml

Every training setting is a flag: one value fixes it, a comma list (or LOW:HIGH, log:LOW:HIGH for
random and Optuna search) varies it. A TOML file holds the same: top-level search, seeds, trials,
workers, threads, metric, name, storage, prune; a [base] table of fixed settings and a [vary]
table of lists or {low, high, log} ranges. Flags override the file.
"""
import argparse

from quicknets.commands.common import add_runs_dir
from quicknets.sweeps import FIELDS

NOT_FLAGS = ("seed", "threads")  # --seeds and --threads below say them for a sweep


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="train many variants (grid, random, Optuna) and rank them",
                       description="Train every variant and print them ranked, mean ± std "
                                   "over seeds. Every training setting is a flag: one value "
                                   "fixes it, a comma list (or LOW:HIGH, log:LOW:HIGH for "
                                   "random and Optuna search) varies it. Each trial is an "
                                   "ordinary run record tagged with the sweep's name.")
    group = p.add_argument_group("settings (one value fixes it, a comma list or range varies it)")
    for name, (_, f) in FIELDS.items():
        if name not in NOT_FLAGS:
            flag = f"--{name.replace('_', '-')}"
            group.add_argument(flag, *f.metadata["flags"], dest=f"set_{name}", default=None,
                               metavar="VALUES", help=f.metadata["help"])
            if f.type is bool:  # --no-verify as in train; --verify true,false varies it
                group.add_argument(f"--no-{name.replace('_', '-')}", dest=f"set_{name}",
                                   action="store_const", const="false", help=argparse.SUPPRESS)
    p.add_argument("--config", default=None, metavar="FILE.toml", help="a sweep file (TOML)")
    p.add_argument("--search", default=None, choices=["grid", "random", "optuna"],
                   help="how variants are chosen (default: grid)")
    p.add_argument("--seeds", default=None, metavar="N|LIST",
                   help="seeds per variant: 3 means 0,1,2; or a list 0,7,9 (default: 1)")
    p.add_argument("--trials", type=int, default=None,
                   help="variants for random search, trials for Optuna (default: 10)")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel worker processes (default: one per free core)")
    p.add_argument("--threads", type=int, default=None,
                   help="PyTorch threads per worker (default: free cores / workers)")
    p.add_argument("--metric", default=None,
                   help="rank by val_acc, val_loss, test_accuracy or test_loss (default: auto, "
                        "val_acc with a validation split, else test_accuracy)")
    p.add_argument("--name", default=None, help="sweep (and Optuna study) name")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage (default: sqlite in the runs folder); "
                        "postgresql://user@host/db to share a study between machines")
    p.add_argument("--no-prune", dest="prune", action="store_false", default=None,
                   help="Optuna: never stop hopeless trials early")
    p.add_argument("--log-to", default="", metavar="NAMES",
                   help="also log every trial's epochs to tensorboard and/or mlflow")
    p.add_argument("--quiet", action="store_true", help="print only the ranked table")
    add_runs_dir(p)
    p.set_defaults(handler=run)


def read_toml(path) -> dict:
    import tomllib

    from quicknets.errors import QuicknetsError
    try:
        with open(path, "rb") as f:
            spec = tomllib.load(f)
    except OSError as e:
        raise QuicknetsError(f"cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise QuicknetsError(f"{path} is not valid TOML: {e}") from None
    known = {"search", "seeds", "trials", "workers", "threads", "metric", "name", "storage",
             "prune", "base", "vary"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise QuicknetsError(f"{path}: unknown key(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
    return spec


def run(args) -> int:
    from quicknets.comparison import differing, format_groups, label
    from quicknets.loggers import parse_log_to
    from quicknets.sweeps import Range, check_base, choose_metric, new_name, parse_values, sweep

    spec = read_toml(args.config) if args.config else {}
    base, vary = dict(spec.get("base", {})), dict(spec.get("vary", {}))
    for name in FIELDS:
        text = getattr(args, f"set_{name}", None)
        if text is None:
            continue
        values = parse_values(name, text)
        base.pop(name, None), vary.pop(name, None)
        if isinstance(values, Range) or len(values) > 1:
            vary[name] = values
        else:
            base[name] = values[0]
    seeds = args.seeds if args.seeds is not None else spec.get("seeds", 1)
    if isinstance(seeds, str):
        seeds = int(seeds) if seeds.strip().isdigit() else [s for s in seeds.split(",") if s]
    pick = lambda key, default: default if getattr(args, key) is None \
        else getattr(args, key)  # noqa: E731  (flag, else file, else default)
    log = (lambda *a: None) if args.quiet else print
    name = pick("name", spec.get("name")) or new_name()
    metric = choose_metric(pick("metric", spec.get("metric", "auto")), check_base(base))
    groups = sweep(base, vary, seeds, search=pick("search", spec.get("search", "grid")),
                   trials=pick("trials", spec.get("trials", 10)),
                   workers=pick("workers", spec.get("workers", 0)),
                   threads=pick("threads", spec.get("threads", 0)), runs_dir=args.runs_dir,
                   name=name, storage=pick("storage", spec.get("storage")),
                   metric=metric, prune=pick("prune", spec.get("prune", True)), log=log,
                   log_to=parse_log_to(args.log_to))
    keys = differing([g["settings"] for g in groups])
    print(f"ranked by {metric} (mean ± sample std over seeds; n = seeds):")
    print(format_groups(groups, keys, metric))
    if groups:
        print("best: " + label(groups[0]["settings"], keys or list(groups[0]["settings"])))
        print(f"compare them: quicknets compare --sweep {name} --plot curves.png")
    return 0
