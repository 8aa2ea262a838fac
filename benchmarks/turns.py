"""Where a pair's time goes when two fixed runs take turns on the cores (machine.CoreLease):
one `quicknets train` alone, then two started together, each with QUICKNETS_TURN_LOG set, so
that the lease logs its looks and waits (in a lease file of their own: other quicknets
trainings on the machine still load its cores, but take no turns with them); from the logs,
while both hold the lease:

    PYTHONPATH=src python benchmarks/turns.py [--kind conv] [--epochs 3] [--rounds 1]
        [--env GOMP_SPINCOUNT=0] [--steps N]

- gap: time that neither ran (a switch: the runner stepped aside, the waiter not yet in);
- overlap: time that both ran (should be none);
- per switch: the gap's mean, and the number of switches;
- the waiters' CPU: CPU seconds a waiting process used per second of waiting (polling the file);
- speed while running: optimizer steps per second of running, in the pair against alone (a
  waiter that steals cores, or cold caches after a switch, make it lower).

An epoch in the pair should take (its time alone) x 2 / (speed ratio) + its share of the gaps.
The epoch times of the training's own lines are printed too, against the same epoch alone.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sharing import KINDS  # noqa: E402  (benchmarks/ is no package)


def read_log(path: Path) -> dict:
    """{pid: {"enter": t, "exit": (t, steps), "waits": [(t0, t1, cpu)], "looks": [...]}}"""
    runs: dict = {}
    for line in path.read_text().splitlines():
        pid, what, *rest = line.split()
        run = runs.setdefault(pid, {"waits": [], "looks": []})
        values = [float(v) for v in rest]
        if what == "enter":
            run["enter"] = values[0]
        elif what == "exit":
            run["exit"] = (values[0], values[1])
        elif what == "wait":
            run["waits"].append(tuple(values[:3]))
        elif what in ("start", "end"):
            run[what] = values[0]
        elif what == "look":
            run["looks"].append(tuple(values))
    return runs


def running(run: dict) -> list:
    """The spans a holder ran: from entering (after a first wait) to leaving, less its waits."""
    spans, t = [], run["enter"]
    for t0, t1, _ in sorted(w for w in run["waits"] if w[1] > run["enter"]):
        spans.append((t, t0))
        t = t1
    spans.append((t, run["exit"][0]))
    return [(a, b) for a, b in spans if b > a]


def clip(spans: list, lo: float, hi: float) -> list:
    return [(max(a, lo), min(b, hi)) for a, b in spans if min(b, hi) > max(a, lo)]


def length(spans: list) -> float:
    return sum(b - a for a, b in spans)


def intersect(a: list, b: list) -> list:
    return [(max(x, y), min(u, v)) for x, u in a for y, v in b if min(u, v) > max(x, y)]


def epochs_of(out: str) -> list:
    return [float(s) for s in re.findall(r"^epoch: .*seconds: ([0-9.]+)", out, re.M)]


# `quicknets` with a lease of its own (argv[1]): other users' trainings take no turns with it
# and its start and end in the turn log
RUN = """import os, sys, time
def note(what):
    with open(os.environ["QUICKNETS_TURN_LOG"], "a") as f:
        f.write(f"{os.getpid()} {what} {time.monotonic()}\\n")
note("start")
from pathlib import Path
import quicknets.base.machine as machine
machine.lease_path = lambda: Path(sys.argv[1])
from quicknets.cli import main
code = main(sys.argv[2:])
note("end")
sys.exit(code)
"""


# --steps N: no training, only N steps of a 2-thread convolution's forward and backward under a
# fixed lease of 2 threads (the mechanism alone, in seconds rather than minutes on a busy machine)
STEPS = """import sys, time
import torch
from quicknets.base.machine import CoreLease
torch.set_num_threads(2)
conv, x = torch.nn.Conv2d(8, 8, 3, padding=1), torch.randn(32, 8, 28, 28)
with CoreLease(2, flexible=False, path=sys.argv[1]) as lease:
    start = time.perf_counter()
    for _ in range(int(sys.argv[2])):
        conv(x).sum().backward()
        lease.step()
    print(f"epoch: train_loss_sum: 0 seconds: {time.perf_counter() - start:.3f}")
"""


def train(args: list, env: dict, n: int, lease: Path, steps: int = 0) -> list:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STEPS, str(lease), str(steps)]
            if steps
            else [sys.executable, "-c", RUN, str(lease), *args],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(n)
    ]
    outs = []
    for p in procs:  # (output, CPU seconds: every thread's user and system time)
        out = p.stdout.read() if p.stdout is not None else ""
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            sys.exit(f"failed ({p.returncode}):\n{out}")
        outs.append((out, usage.ru_utime + usage.ru_stime))
    return outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="conv", choices=list(KINDS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--train-args", default="", help="more flags for each training")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=0, help="a convolution's steps, no training")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="quicknets-bench-turns-"))
    command = ["train", "--epochs", str(args.epochs), "--runs-dir", str(folder)]
    command += KINDS[args.kind][0] + args.train_args.split()
    what = f"{args.steps} convolution steps" if args.steps else f"quicknets {' '.join(command)}"
    print(f"{what}  env: {' '.join(args.env) or '(none)'}")
    for r in range(args.rounds):
        logs = {name: folder / f"{name}-{r}.log" for name in ("alone", "pair")}
        results = {}
        for name, n in (("alone", 1), ("pair", 2)):
            env = {**os.environ, **dict(kv.split("=", 1) for kv in args.env)}
            env["QUICKNETS_TURN_LOG"] = str(logs[name])
            load = Path("/proc/loadavg").read_text().split()[0]
            results[name] = (
                [
                    (epochs_of(out), cpu)
                    for out, cpu in train(command, env, n, folder / "lease.json", args.steps)
                ],
                load,
            )
        alone = read_log(logs["alone"])
        (one,) = alone.values()
        rate_alone = one["exit"][1] / length(running(one))
        pair = read_log(logs["pair"])
        a, b = pair.values()
        lo, hi = max(a["enter"], b["enter"]), min(a["exit"][0], b["exit"][0])
        ra, rb = clip(running(a), lo, hi), clip(running(b), lo, hi)
        both = length(intersect(ra, rb))
        gap = (hi - lo) - (length(ra) + length(rb) - both)
        waits = [w for run in (a, b) for w in run["waits"] if lo <= w[0] and w[1] <= hi]
        cpu = sum(w[2] for w in waits) / max(sum(w[1] - w[0] for w in waits), 1e-9)
        steps = sum(run["exit"][1] for run in (a, b))
        rate_pair = steps / (length(running(a)) + length(running(b)))
        ((alone_epochs, cpu_alone),), load_alone = results["alone"]
        pair_epochs, cpu_pair = zip(*results["pair"][0])
        load_pair = results["pair"][1]
        ratios = [[s / t for s, t in zip(run, alone_epochs)] for run in pair_epochs]
        print(
            f"round {r + 1}: both in the lease {hi - lo:.2f} s: gap {gap:.3f} s "
            f"({100 * gap / (hi - lo):.1f}%), overlap {both:.3f} s; {len(waits)} switches, "
            f"{1000 * gap / max(len(waits), 1):.2f} ms gap each; waiters' CPU "
            f"{cpu:.3f} s/s; steps/s running: alone {rate_alone:.1f}, pair {rate_pair:.1f} "
            f"({rate_alone / rate_pair:.3f}x slower)"
        )
        print(
            f"  CPU per step (every thread, start-up included): alone "
            f"{1000 * cpu_alone / one['exit'][1]:.2f} ms, "
            f"pair {1000 * sum(cpu_pair) / steps:.2f} ms"
        )
        if "start" in a and "end" in a:  # trainings: what runs outside turns
            outside = sum(
                length(clip([(x["start"], x["enter"]), (x["exit"][0], x["end"])], lo_y, hi_y))
                for x, y in ((a, b), (b, a))
                for lo_y, hi_y in [(y["enter"], y["exit"][0])]
            )
            print(
                f"  outside turns (start-up, test pass, exit) while the other holds the lease: "
                f"{outside:.2f} s of {length([(lo, hi)]):.2f} s"
            )
        print(
            f"  epochs alone {' '.join(f'{s:.2f}' for s in alone_epochs)} s (load {load_alone}); "
            f"pair / alone: {' | '.join(' '.join(f'{x:.2f}' for x in r) for r in ratios)} "
            f"(median {statistics.median(x for r in ratios for x in r):.2f}; load {load_pair})",
            flush=True,
        )


if __name__ == "__main__":
    main()
