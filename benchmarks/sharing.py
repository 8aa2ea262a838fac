"""Sharing the machine, for every kind of run: each epoch of `quicknets train` alone, beside a
second one, and beside a sweep with its default plan, in interleaved rounds.

    PYTHONPATH=src python benchmarks/sharing.py --rounds 3 [--epochs 3] [--kinds mlp batchnorm
        conv bf16 preset] [--train-args "--threads 2"] [--env GOMP_SPINCOUNT=10000] [--alone-only]

Kinds (KINDS): `mlp` the notebook's settings, `batchnorm` 784-256-10 with BatchNorm (flexible
runs: their numbers do not depend on their threads, so they take fewer beside others; `preset`,
`--preset fast`, too where it trains fp32, as on a CPU without native bf16); `conv` a small CNN,
`bf16` the notebook's MLP under bf16 autocast (fixed runs: they keep their threads, and take
turns on the cores, machine.turns). Per round and kind, in turn:
one `quicknets train` alone; for `mlp` also the same alone without what makes sharing work
("alone, no sharing": `MKL_CBWR=AUTO`, MKL's usual mode, so the run neither runs MKL strictly
nor changes its threads: issue 13 asks that a run alone lose nothing to them); two started
together; one started together with `quicknets sweep` of the same kind (default workers and
threads: one single-thread worker per free core). Threads are quicknets' default (every core)
unless --train-args adds flags. The sweep trains the same network at --sweep-trials learning
rates, so that it outlasts the training beside it. Each epoch's time comes from the training's
own epoch line; printed per kind: every epoch against the median of the same epoch alone, and
the worst ratio. --env sets environment variables for every process started. Runs that should
give the same numbers (alone, in a pair, beside the sweep: the same command) are checked to:
their epoch lines' losses must agree.
"""

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# kind -> (flags for `quicknets train`, flags for the sweep beside it: the same network)
KINDS = {
    "mlp": ([], []),
    "batchnorm": (["--network", "784-256-10", "--batchnorm"],) * 2,
    "conv": (["--network", "convp8-fc64", "--batch-size", "256"],) * 2,
    "bf16": (["--bf16"],) * 2,
    "preset": (
        ["--preset", "fast"],
        ["--network", "784-512-256-10", "--batchnorm", "--bf16", "--batch-size", "256"],
    ),
}


def start(args: list, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "quicknets", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def epochs_of(p: subprocess.Popen) -> tuple:
    """(each epoch's seconds, each epoch's train_loss_sum) from a training's epoch lines."""
    out, _ = p.communicate()
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}):\n{out}")
    rows = re.findall(r"^epoch: .*train_loss_sum: ([0-9.]+).*seconds: ([0-9.]+)", out, re.M)
    return [float(s) for _, s in rows], [loss for loss, _ in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", default=["mlp"], choices=list(KINDS))
    parser.add_argument("--train-args", default="", help="more flags for each training")
    parser.add_argument("--sweep-trials", type=int, default=4)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--alone-only",
        action="store_true",
        help="only the runs alone (what the sharing machinery costs)",
    )
    args = parser.parse_args()
    env = {**os.environ, **dict(kv.split("=", 1) for kv in args.env)}
    runs = tempfile.mkdtemp(prefix="quicknets-bench-sharing-")
    lrs = ",".join(f"{0.001 * (k + 1):g}" for k in range(args.sweep_trials))
    commands = {}
    for kind in args.kinds:
        flags, sweep_flags = KINDS[kind]
        train = ["train", "--epochs", str(args.epochs), "--runs-dir", runs, *flags]
        sweep = ["sweep", "--lr", lrs, "--epochs", str(args.epochs), "--quiet", "--runs-dir", runs]
        commands[kind] = (train + shlex.split(args.train_args), sweep + sweep_flags)
        print(f"{kind}: train: quicknets {' '.join(commands[kind][0])}")
        print(f"{kind}: sweep: quicknets {' '.join(commands[kind][1])}")
    print(
        f"env: {' '.join(args.env) or '(none)'}  load: {Path('/proc/loadavg').read_text().strip()}",
        flush=True,
    )
    names = ("alone", "alone, no sharing", "pair", "beside sweep")
    times = {kind: {name: [] for name in names} for kind in args.kinds}
    losses = {kind: set() for kind in args.kinds}  # one set of numbers per kind
    for r in range(args.rounds):
        for kind, (train, sweep) in commands.items():
            t = times[kind]
            seconds, loss = epochs_of(start(train, env))
            t["alone"].append(seconds)
            losses[kind].add(tuple(loss))
            if kind == "mlp":
                seconds, _ = epochs_of(start(train, {**env, "MKL_CBWR": "AUTO"}))
                t["alone, no sharing"].append(seconds)
            if not args.alone_only:
                pair = [start(train, env), start(train, env)]
                for p in pair:
                    seconds, loss = epochs_of(p)
                    t["pair"].append(seconds)
                    losses[kind].add(tuple(loss))
                beside, sweeping = start(train, env), start(sweep, env)
                seconds, loss = epochs_of(beside)
                t["beside sweep"].append(seconds)
                losses[kind].add(tuple(loss))
                sweeping.communicate()
            print(
                f"round {r + 1}/{args.rounds} {kind}: "
                + "  ".join(
                    f"{k}: {' '.join(f'{s:.2f}' for s in v[-1])}" for k, v in t.items() if v
                )
                + f"  (load {Path('/proc/loadavg').read_text().split()[0]})",
                flush=True,
            )
    for kind in args.kinds:
        t = times[kind]
        alone = [statistics.median(run[e] for run in t["alone"]) for e in range(args.epochs)]
        print(f"{kind}: median epoch alone: " + " ".join(f"{s:.2f}" for s in alone) + " s")
        if t["alone, no sharing"]:
            plain = [
                statistics.median(run[e] for run in t["alone, no sharing"])
                for e in range(args.epochs)
            ]
            print(
                f"{kind}: alone / alone, no sharing (medians per epoch): "
                + " ".join(f"{a / b:.2f}" for a, b in zip(alone, plain))
                + f"; all epochs: {sum(alone) / sum(plain):.2f}"
            )
        for name in () if args.alone_only else ("pair", "beside sweep"):
            ratios = [run[e] / alone[e] for run in t[name] for e in range(args.epochs)]
            per_epoch = [
                statistics.median(run[e] for run in t[name]) / alone[e] for e in range(args.epochs)
            ]
            print(
                f"{kind}: {name}: each epoch / alone, medians per epoch "
                f"{' '.join(f'{x:.2f}' for x in per_epoch)}"
                f"; every epoch: median {statistics.median(ratios):.2f}, worst {max(ratios):.2f}"
            )
        same = "the same" if len(losses[kind]) == 1 else f"{len(losses[kind])} different"
        print(f"{kind}: every run's train_loss_sum per epoch: {same}")


if __name__ == "__main__":
    main()
