"""Sharing the machine: each epoch of `quicknets train` alone, beside a second one, and beside a
sweep with its default plan, in interleaved rounds.

    PYTHONPATH=src python benchmarks/sharing.py --rounds 3 [--epochs 3] [--train-args "--threads 2"]
        [--env GOMP_SPINCOUNT=10000] [--alone-only]

Per round, in turn: one `quicknets train` alone; the same alone without what makes sharing work
("alone, no sharing": `MKL_CBWR=AUTO`, MKL's usual mode, so the run neither runs MKL strictly
nor follows the core lease: issue 13 asks that a run alone lose nothing to them); two started
together; one started together with `quicknets sweep` (default workers and threads: one
single-thread worker per free core). The
trainings are the notebook's settings unless --train-args adds flags (`--threads 2` makes them
fixed holders of the core lease, as a run whose numbers depend on its thread count is; each
keeps its two threads). The sweep trains the same network at --sweep-trials learning rates, so
that it outlasts the training beside it. Each epoch's time comes from the training's own epoch
line; printed: every epoch against the median of the same epoch alone, and the worst ratio.
--env sets environment variables for every process started (e.g. GOMP_SPINCOUNT).
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


def start(args: list, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "quicknets", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def epoch_seconds(p: subprocess.Popen) -> list:
    out, _ = p.communicate()
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}):\n{out}")
    return [float(s) for s in re.findall(r"^epoch: .*seconds: ([0-9.]+)", out, re.M)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-args", default="", help="more flags for each training")
    parser.add_argument("--sweep-trials", type=int, default=4)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--alone-only",
        action="store_true",
        help="only the two runs alone (what the sharing machinery costs)",
    )
    args = parser.parse_args()
    env = {**os.environ, **dict(kv.split("=", 1) for kv in args.env)}
    runs = tempfile.mkdtemp(prefix="quicknets-bench-sharing-")
    train = [
        "train",
        "--epochs",
        str(args.epochs),
        "--runs-dir",
        runs,
        *shlex.split(args.train_args),
    ]
    lrs = ",".join(f"{0.001 * (k + 1):g}" for k in range(args.sweep_trials))
    sweep = ["sweep", "--lr", lrs, "--epochs", str(args.epochs), "--quiet", "--runs-dir", runs]
    print(
        f"train: quicknets {' '.join(train)}\nsweep: quicknets {' '.join(sweep)}\n"
        f"env: {' '.join(args.env) or '(none)'}  load: {Path('/proc/loadavg').read_text().strip()}",
        flush=True,
    )
    times = {"alone": [], "alone, no sharing": [], "pair": [], "beside sweep": []}
    for r in range(args.rounds):
        times["alone"].append(epoch_seconds(start(train, env)))
        times["alone, no sharing"].append(epoch_seconds(start(train, {**env, "MKL_CBWR": "AUTO"})))
        if not args.alone_only:
            pair = [start(train, env), start(train, env)]
            times["pair"] += [epoch_seconds(p) for p in pair]
            beside, sweeping = start(train, env), start(sweep, env)
            times["beside sweep"].append(epoch_seconds(beside))
            sweeping.communicate()
        print(
            f"round {r + 1}/{args.rounds}: "
            + "  ".join(
                f"{k}: {' '.join(f'{s:.2f}' for s in v[-1])}" for k, v in times.items() if v
            )
            + f"  (load {Path('/proc/loadavg').read_text().split()[0]})",
            flush=True,
        )
    alone = [statistics.median(run[e] for run in times["alone"]) for e in range(args.epochs)]
    print("median epoch alone: " + " ".join(f"{s:.2f}" for s in alone) + " s")
    plain = [
        statistics.median(run[e] for run in times["alone, no sharing"]) for e in range(args.epochs)
    ]
    print(
        "alone / alone, no sharing (medians per epoch): "
        + " ".join(f"{a / b:.2f}" for a, b in zip(alone, plain))
        + f"; all epochs: {sum(alone) / sum(plain):.2f}"
    )
    for name in () if args.alone_only else ("pair", "beside sweep"):
        ratios = [run[e] / alone[e] for run in times[name] for e in range(args.epochs)]
        per_epoch = [
            statistics.median(run[e] for run in times[name]) / alone[e] for e in range(args.epochs)
        ]
        print(
            f"{name}: each epoch / alone, medians per epoch "
            f"{' '.join(f'{x:.2f}' for x in per_epoch)}"
            f"; every epoch: median {statistics.median(ratios):.2f}, worst {max(ratios):.2f}"
        )


if __name__ == "__main__":
    main()
