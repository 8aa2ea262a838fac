"""Issue 13's measure of the presets: whole processes of `quicknets train --preset NAME`, timed
from outside, over seeds, against each preset's target.

    PYTHONPATH=src python benchmarks/presets.py --presets fast balanced accurate --seeds 0 1 2
    PYTHONPATH=src python benchmarks/presets.py --presets fast --seeds 0 --set epochs=1  # smoke

For each seed, each preset in turn (presets interleave within a seed, so load hits them alike),
`python -m quicknets train --preset NAME --seed S --quiet --runs-dir <tmp>` runs as a child
process; the wall clock around it is the whole process (start-up, data, training, test, saving
the run). The test accuracy is read from the run's results.json, the training seconds (the
epochs, as the run timed them) from its history.json. Threads are left to quicknets (every
usable core) unless --threads is given. Then per preset: mean ± std of accuracy, whole-process
and training seconds, and whether the mean meets the target (TARGETS, issue 13's table), with
the 1-minute load average at the start and end of the measurement.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quicknets.config.presets import PRESETS

# Issue 13's targets on a 2-core CPU: (least mean test accuracy over the seeds, most mean
# seconds of the whole process; None: no time target, `best` is only measured here).
TARGETS = {
    "fast": (0.90, 5.0),
    "balanced": (0.92, 30.0),
    "accurate": (0.93, 90.0),
    "thorough": (0.94, 600.0),
    "best": (0.95, None),
}


def train_once(name: str, seed: int, runs: str, threads: int, extra: list) -> dict:
    """One whole `quicknets train` process; its wall seconds, test accuracy, training seconds."""
    runs_dir = Path(runs) / f"{name}-s{seed}"  # one run per folder: the run is the only one
    cmd = [
        sys.executable,
        "-m",
        "quicknets",
        "train",
        "--preset",
        name,
        "--seed",
        str(seed),
        "--quiet",
        "--runs-dir",
        str(runs_dir),
        *extra,
    ]
    if threads:
        cmd += ["--threads", str(threads)]
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if p.returncode != 0:
        last = (p.stderr.strip() or p.stdout.strip() or "no output").splitlines()[-1]
        sys.exit(f"error: {' '.join(cmd[1:])} failed ({p.returncode}): {last}")
    (run,) = [d for d in runs_dir.iterdir() if (d / "results.json").is_file()]
    results = json.loads((run / "results.json").read_text())
    history = json.loads((run / "history.json").read_text())
    config = json.loads((run / "config.json").read_text())
    return {
        "seconds": seconds,
        "accuracy": results["accuracy"],
        "training": sum(row["seconds"] for row in history),
        "threads": config["train"]["threads"],
    }


def mean_std(values: list, digits: int) -> str:
    """`0.9240 ± 0.0007`, as the comparisons print it: one value has no std (the mean alone)."""
    from quicknets.records.comparison import fmt_mean_std
    from quicknets.records.comparison import mean_std as mean_and_std

    return fmt_mean_std(mean_and_std(values), digits, len(values)).strip()


def verdict(name: str, accuracy: float, seconds: float) -> str:
    if name not in TARGETS:
        return "no target"
    least, most = TARGETS[name]
    acc = "met" if accuracy >= least else "NOT met"
    if most is None:
        return f"target >= {least} ({acc}), no time target"
    time_ = "met" if seconds <= most else "NOT met"
    return f"target >= {least} ({acc}) in <= {most:g} s ({time_})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presets", nargs="+", default=[n for n in TARGETS if n != "best"], choices=list(PRESETS)
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="--threads for each run (0: left to quicknets, every usable core)",
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="flags over the presets' settings for every run, e.g. epochs=1 "
        "(a smoke test; the targets then mean nothing)",
    )
    args = parser.parse_args()
    extra = []
    for item in args.set:
        key, sep, value = item.partition("=")
        if not (key and sep):
            parser.error(f"--set takes KEY=VALUE, not {item!r}")
        extra += [f"--{key.replace('_', '-')}", value]
    # a kill (SIGTERM) ends like Ctrl-C, through the `finally` that removes the runs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped (SIGTERM)"))
    runs = tempfile.mkdtemp(prefix="quicknets-bench-presets-")
    load_start = os.getloadavg()[0]
    rows = {name: [] for name in args.presets}
    try:
        for seed in args.seeds:  # presets interleave within each seed
            for name in args.presets:
                row = train_once(name, seed, runs, args.threads, extra)
                rows[name].append(row)
                print(
                    f"seed {seed}  {name}: accuracy {row['accuracy']:.4f}  whole process "
                    f"{row['seconds']:.1f} s  training {row['training']:.1f} s  threads "
                    f"{row['threads']}  (load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
    finally:
        shutil.rmtree(runs, ignore_errors=True)
    load_end = os.getloadavg()[0]
    print(
        f"seeds: {args.seeds}  threads: {args.threads or 'quicknets default'}  set: "
        f"{args.set}  load (1-minute average) at start {load_start:.2f}, at end {load_end:.2f}"
    )
    for name, runs_ in rows.items():
        accs = [r["accuracy"] for r in runs_]
        secs = [r["seconds"] for r in runs_]
        print(
            f"{name:<9} accuracy {mean_std(accs, 4)} (each {' '.join(f'{a:.4f}' for a in accs)})"
            f"  whole process {mean_std(secs, 1)} s  training "
            f"{mean_std([r['training'] for r in runs_], 1)} s  "
            + (
                "(--set: no target)"
                if args.set
                else verdict(name, statistics.mean(accs), statistics.mean(secs))
            )
        )


if __name__ == "__main__":
    main()
