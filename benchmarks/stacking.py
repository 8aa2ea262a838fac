"""Many variants at the price of few: stacked sweeps against one run, runs apart, and skorch.

    PYTHONPATH=src python benchmarks/stacking.py --rounds 3
    PYTHONPATH=src python benchmarks/stacking.py --rounds 1 --only one seeds5 grid16
    PYTHONPATH=src THREADS=1 python benchmarks/stacking.py --kinds    # which kinds pay

Whole processes, each started in turn in every round (the order rotated by one place each
round), wall time measured around the process (start-up, data, training, test, saving):
- one:           `quicknets train --quiet` (the notebook's 7-epoch run, --threads CORES)
- seeds5:        `quicknets sweep --seeds 5` (5 seeds of that run, stacked: the default)
- seeds5-apart:  the same with --no-stack (5 runs, one per worker at a time)
- seeds5-1x2:    the same stacked in one process: --workers 1 --threads CORES (one stack of 5)
- grid16:        `quicknets sweep --lr 0.0003,0.001,0.003,0.01 --weight-decay 0,1e-5,1e-4,1e-3`
                 (16 variants, stacked)
- grid16-apart:  the same with --no-stack
- grid16-1x2:    the same stacked in one process: --workers 1 --threads CORES
- skorch16:      skorch's NeuralNetClassifier (the peers.py task: 784-256-128-64-10, Adam,
                 batch 64, 7 epochs, shuffled) in scikit-learn's GridSearchCV(n_jobs=2) over
                 the same grid (lr x optimizer__weight_decay), one split: train on the 60,000
                 training images, score on the 10,000 test images (cv=[(train, test)],
                 refit=False), what a user would pick instead. Needs the `peers` extra.
Sweeps run with --workers CORES --threads 1 (the default plan on a quiet machine).

Targets (issue 22): seeds5 at most 2x one; grid16 at most 5x one. It also checks that stacking
changes no result: each seed's test accuracy stacked and apart within 0.003 (the same seed's
run alone). Prints the CPU, the load before and after, every process, the medians and ratios.

--kinds times one step of 5 networks stacked with torch.func (vmap over stack_module_state)
against 5 separate steps, for an MLP, an MLP with BatchNorm, a CNN and a bf16 MLP: whether
stacking those would pay (benchmarks/README.md).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LRS = "0.0003,0.001,0.003,0.01"
WDS = "0,1e-5,1e-4,1e-3"
EPOCHS = 7


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def commands(cores: int, runs: str) -> dict:
    q = [sys.executable, "-m", "quicknets"]
    sweep = [*q, "sweep", "--quiet", "--runs-dir", runs, "--workers", str(cores), "--threads", "1"]
    grid = ["--lr", LRS, "--weight-decay", WDS]
    one_process = [*q, "sweep", "--quiet", "--runs-dir", runs, "--workers", "1"]
    one_process += ["--threads", str(cores)]
    return {
        "one": [*q, "train", "--quiet", "--runs-dir", runs, "--threads", str(cores)],
        "seeds5": [*sweep, "--seeds", "5"],
        "seeds5-apart": [*sweep, "--seeds", "5", "--no-stack"],
        # one stack of 5 at CORES threads in one process, against the default plan's
        # CORES workers x 1 thread (stacks of 3 + 2)
        "seeds5-1x2": [*one_process, "--seeds", "5"],
        "grid16": [*sweep, *grid],
        "grid16-apart": [*sweep, *grid, "--no-stack"],
        "grid16-1x2": [*one_process, *grid],
        "skorch16": [sys.executable, __file__, "--child-skorch"],
    }


def timed(cmd: list) -> float:
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return seconds


def accuracies(runs: Path) -> dict:
    """{(lr, weight_decay, seed): test accuracy} of the finished runs in a runs folder."""
    out = {}
    for config in runs.glob("*/config.json"):
        results = config.parent / "results.json"
        if results.is_file():
            t = json.loads(config.read_text())["train"]
            out[t["lr"], t["weight_decay"], t["seed"]] = json.loads(results.read_text())["accuracy"]
    return out


def child_skorch() -> None:
    """GridSearchCV(n_jobs=2) over skorch on the grid; prints its best score."""
    import numpy as np
    import skorch
    import torch
    from sklearn.model_selection import GridSearchCV
    from torch import nn

    from quicknets.data.loading import load_dataset

    data = load_dataset("fashion-mnist")
    x = torch.cat([data.train_images, data.test_images]).float().div(255).sub(0.5).div(0.5)
    x = x.flatten(1).numpy()
    y = torch.cat([data.train_labels, data.test_labels]).numpy().astype(np.int64)
    n = len(data.train_labels)
    module = nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1),
    )  # fmt: skip
    net = skorch.NeuralNetClassifier(
        module,
        criterion=nn.NLLLoss,
        optimizer=torch.optim.Adam,
        batch_size=64,
        max_epochs=EPOCHS,
        train_split=None,
        iterator_train__shuffle=True,
        device="cpu",
        verbose=0,
    )
    grid = {
        "lr": [float(v) for v in LRS.split(",")],
        "optimizer__weight_decay": [float(v) for v in WDS.split(",")],
    }
    split = [(np.arange(n), np.arange(n, len(y)))]
    search = GridSearchCV(net, grid, cv=split, n_jobs=2, refit=False, scoring="accuracy")
    search.fit(x, y)
    print(f"skorch best: {search.best_score_:.4f} {search.best_params_}")


def kinds(k: int, steps: int, threads: int) -> None:
    """Does stacking pay for other kinds of network? One training step (forward, backward,
    Adam) of K networks stacked with torch.func (stack_module_state + vmap of grad over
    functional_call) against K separate autograd steps, per kind, median of 3 timings."""
    import torch

    from quicknets.base.machine import use_strict_math

    use_strict_math()
    torch.set_num_threads(threads)
    cases = {
        "mlp": ("784-256-128-64-10", {}, False),
        "mlp-batchnorm": ("784-256-10", {"batchnorm": True}, False),
        "cnn conv32-conv64-fc128": ("conv32-conv64-fc128", {}, False),
        "mlp bf16": ("784-256-128-64-10", {}, True),
    }
    x = torch.randn(k, 64, 1, 28, 28)
    y = torch.randint(0, 10, (k, 64))
    print(f"step of {k} networks at {threads} thread(s), batch 64, load {load()}")
    for name, (spec, options, bf16) in cases.items():
        timings = time_kind(spec, options, bf16, k, steps, x, y)
        ratio = timings["stacked"] / timings["apart"]
        print(
            f"{name:24s} apart {timings['apart'] * 1e3:7.2f} ms  stacked (vmap) "
            f"{timings['stacked'] * 1e3:7.2f} ms  stacked/apart {ratio:.2f}"
        )


def time_kind(spec: str, options: dict, bf16: bool, k: int, steps: int, x, y) -> dict:
    """Median seconds of one step of k networks `spec`, apart and stacked with torch.func."""
    import copy

    import torch
    from torch import nn
    from torch.func import functional_call, grad, stack_module_state, vmap

    from quicknets.networks.models import network

    nets = [network(spec, seed=s, **options) for s in range(k)]
    if options.get("batchnorm"):  # vmap cannot update running stats in place
        for m in nets:
            for b in m.modules():
                if isinstance(b, nn.BatchNorm1d):
                    b.track_running_stats, b.running_mean, b.running_var = False, None, None
    opts = [torch.optim.Adam(m.parameters(), lr=0.003, fused=True) for m in nets]

    def apart():
        for m, o, xb, yb in zip(nets, opts, x, y):
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                out = m(xb)
            loss = nn.functional.nll_loss(out.float(), yb)
            o.zero_grad()
            loss.backward()
            o.step()

    params, buffers = stack_module_state(nets)
    params = {n: p.detach().requires_grad_(False) for n, p in params.items()}
    base = copy.deepcopy(nets[0]).to("meta")
    stacked_opt = torch.optim.Adam(list(params.values()), lr=0.003, fused=True)

    def loss_of(p, b, xb, yb):
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            out = functional_call(base, (p, b), (xb,))
        return nn.functional.nll_loss(out.float(), yb)

    step = vmap(grad(loss_of))

    def stacked():
        grads = step(params, buffers, x, y)
        for n, p in params.items():
            p.grad = grads[n]
        stacked_opt.step()

    timings = {}
    for fn in (apart, stacked):
        fn()  # warm-up
        runs = []
        for _ in range(3):
            begin = time.perf_counter()
            for _ in range(steps):
                fn()
            runs.append((time.perf_counter() - begin) / steps)
        timings[fn.__name__] = statistics.median(runs)
    return timings


def main() -> None:
    if "--child-skorch" in sys.argv:
        return child_skorch()
    if "--kinds" in sys.argv:
        return kinds(k=5, steps=20, threads=int(os.environ.get("THREADS", "1")))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--only", nargs="+", default=None, help="these contenders only")
    args = p.parse_args()
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1] / "src"))
    print(f"CPU: {cpu()}, {args.cores} cores; load at start: {load()}")
    times: dict = {}
    checks: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        names = [n for n in commands(args.cores, tmp) if not args.only or n in args.only]
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                runs = Path(tmp) / f"{name}-{r}"
                seconds = timed(commands(args.cores, str(runs))[name])
                times.setdefault(name, []).append(seconds)
                checks[name, r] = accuracies(runs)
                print(f"round {r + 1}  {name:13s} {seconds:7.1f} s  load {load()}", flush=True)
    print(f"load at end: {load()}")
    base = statistics.median(times["one"]) if "one" in times else None
    print(f"\n{'contender':13s} {'median s':>9s} {'x one':>6s}  target")
    targets = {"seeds5": 2.0, "grid16": 5.0}
    for name, values in times.items():
        m = statistics.median(values)
        ratio = f"{m / base:6.2f}" if base else "     -"
        target = f"<= {targets[name]:g}x" if name in targets else ""
        print(f"{name:13s} {m:9.1f} {ratio}  {target}")
    for stacked in ("seeds5", "grid16"):  # stacking changes no result
        apart = stacked + "-apart"
        for r in range(args.rounds):
            a, b = checks.get((stacked, r), {}), checks.get((apart, r), {})
            if a and b:
                worst = max(abs(a[k] - b[k]) for k in a.keys() & b.keys())
                print(f"{stacked} round {r + 1}: test accuracy stacked vs apart, worst "
                      f"difference {worst:.4f} over {len(a.keys() & b.keys())} runs "
                      f"({'within' if worst <= 0.003 else 'NOT within'} 0.003)")  # fmt: skip


if __name__ == "__main__":
    main()
