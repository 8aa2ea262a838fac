"""Whole-process time and peak memory: `quicknets train` against the notebook's pipeline.

    PYTHONPATH=src python benchmarks/process.py --rounds 3 --with-preset fast --notebook-threads 1

Each round starts, in turn, `python -m quicknets train --quiet` (start-up, data, 7 epochs, test,
saving the run), `python benchmarks/notebook.py` (the notebook: torchvision data, 7 epochs,
test) and `python -m quicknets --help`, plus `quicknets train --preset NAME` per --with-preset.
Wall time is measured around each process; peak memory is the child's own maximum resident set
(os.wait4). Prints every run, then medians and ratios.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def timed(cmd: list) -> dict:
    """Run `cmd`; its wall seconds, peak resident MiB, test accuracy (if printed), output."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.perf_counter() - start
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{text}")
    acc = re.search(r"test accuracy: ([0-9.]+)", text)
    return {
        "seconds": seconds,
        "peak_mib": usage.ru_maxrss / 1024,  # ru_maxrss is in KiB
        "accuracy": float(acc.group(1)) if acc else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--with-preset", action="append", default=[], metavar="NAME")
    parser.add_argument(
        "--notebook-threads",
        type=int,
        default=0,
        help="torch threads for the notebook (0: torch's default, all cores, "
        "as the notebook ran; on a shared machine that collapses)",
    )
    args = parser.parse_args()
    if args.notebook_threads:
        os.environ["BENCH_THREADS"] = str(args.notebook_threads)  # read by notebook.py
    runs = tempfile.mkdtemp(prefix="quicknets-bench-runs-")
    py = sys.executable
    commands = {
        "quicknets train": [py, "-m", "quicknets", "train", "--quiet", "--runs-dir", runs],
        "notebook": [py, str(HERE / "notebook.py")],
        "quicknets --help": [py, "-m", "quicknets", "--help"],
    }
    for name in args.with_preset:
        commands[f"train --preset {name}"] = [
            py,
            "-m",
            "quicknets",
            "train",
            "--preset",
            name,
            "--quiet",
            "--runs-dir",
            runs,
        ]
    results = {name: [] for name in commands}
    for r in range(args.rounds):
        for name, cmd in commands.items():
            row = timed(cmd)
            results[name].append(row)
            acc = "" if row["accuracy"] is None else f"  test accuracy {row['accuracy']:.4f}"
            print(
                f"round {r + 1}/{args.rounds}  {name}: {row['seconds']:.2f} s  "
                f"peak {row['peak_mib']:.0f} MiB{acc}",
                flush=True,
            )
    print("median over rounds:")
    med = {}
    for name, rows in results.items():
        med[name] = statistics.median(row["seconds"] for row in rows)
        accs = [row["accuracy"] for row in rows if row["accuracy"] is not None]
        acc = f"  accuracy {statistics.mean(accs):.4f}" if accs else ""
        print(
            f"  {name:<24} {med[name]:7.2f} s  peak "
            f"{statistics.median(row['peak_mib'] for row in rows):5.0f} MiB{acc}"
        )
    print(f"ratio notebook / quicknets train: {med['notebook'] / med['quicknets train']:.1f}")


if __name__ == "__main__":
    main()
