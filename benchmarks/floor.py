"""One epoch of the notebook's settings against its shape floor, side by side.

    PYTHONPATH=src python benchmarks/floor.py --rounds 7 --threads 1

The shape floor is the epoch's matrix products alone, at their own shapes: for each of the 938
batches of 64 (the last one 32), the 12 products of the 784-256-128-64-10 MLP (4 forward, 4
weight gradients, 4 input gradients), into preallocated outputs with nothing else between them.
`floor-11` leaves out the first layer's input gradient, which training never needs (quicknets'
fused pass skips it). Each round times, in turn and in this one process with the same threads:
both floors, one quicknets epoch (`train(..., epochs=1)`, the fused pass), and the same epoch
through autograd (`--no-autograd` to skip it); then prints the medians and ratios, and per round
the ratio of quicknets to the floor measured next to it. Wall time is the measure; the process's
CPU time is printed beside it, a steadier reading on a busy machine at 1 thread (at 2 threads it
adds up both threads, spinning included). The epoch is `train_epoch` as `train` runs it, timed
alone (no test scoring, no start-up), as the floor is.
"""

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from quicknets.config.configs import TrainConfig
from quicknets.data.loading import load_dataset
from quicknets.networks.models import network
from quicknets.training.fused import fused_step
from quicknets.training.loop import make_optimizer, train_epoch

SIZES = (784, 256, 128, 64, 10)
BATCHES = [64] * 937 + [32]  # 60,000 images in batches of 64


def shape_floor(skip_first_input_grad: bool) -> float:
    """Seconds for the epoch's matrix products at their shapes, and nothing else."""
    pairs = list(zip(SIZES[:-1], SIZES[1:]))
    w = [torch.randn(o, i) for i, o in pairs]
    b = [torch.randn(o) for i, o in pairs]
    a = [torch.randn(64, i) for i, o in pairs]  # each layer's input
    z = [torch.empty(64, o) for i, o in pairs]  # each layer's output; also its gradient
    gw = [torch.empty(o, i) for i, o in pairs]
    gi = [torch.empty(64, i) for i, o in pairs]
    first = 1 if skip_first_input_grad else 0
    start = time.perf_counter()
    for n in BATCHES:
        for k in range(4):
            torch.addmm(b[k], a[k][:n], w[k].t(), out=z[k][:n])
        for k in range(3, -1, -1):
            torch.mm(z[k][:n].t(), a[k][:n], out=gw[k])
            if k >= first:
                torch.mm(z[k][:n], w[k], out=gi[k][:n])
    return time.perf_counter() - start


def quicknets_epoch(x, y, seed: int, autograd: bool, results: list) -> tuple:
    """(wall, CPU) seconds of one epoch of quicknets' loop, `train_epoch` as `train` runs it:
    batches drawn from the normalised tensor, the fused pass (or autograd), fused Adam. The
    epoch's loss sum, correct count and weights go to `results`."""
    config = TrainConfig(seed=seed)
    model = network("784-256-128-64-10", seed=seed)
    opt = make_optimizer(model, config)
    fused = None if autograd else fused_step(model, config, torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    wall, cpu = time.perf_counter(), time.process_time()
    sums = train_epoch(model, opt, nn.NLLLoss(), x, y, 64, generator, config=config, fused=fused)
    seconds = time.perf_counter() - wall, time.process_time() - cpu
    results.append((sums, [t.clone() for t in model.state_dict().values()]))
    return seconds


def timed(f, *args) -> tuple:
    wall, cpu = time.perf_counter(), time.process_time()
    f(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-autograd", action="store_true", help="skip the autograd epoch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist")
    x, y = data.preprocessing.normalize(data.train_images), data.train_labels
    shape_floor(False)  # warm-up: MKL's first call, page faults
    quicknets_epoch(x, y, 0, False, [])
    times = {"floor-12": [], "floor-11": [], "quicknets": []}
    if not args.no_autograd:
        times["autograd"] = []
    cpu = {k: [] for k in times}
    same = []  # the fused epoch's numbers are autograd's, bit for bit
    print(
        f"threads: {args.threads}  MKL_CBWR: {os.environ.get('MKL_CBWR', '(unset)')}  "
        f"load at start: {Path('/proc/loadavg').read_text().strip()}",
        flush=True,
    )
    for r in range(args.rounds):
        results = []
        for name, (wall, used) in [
            ("floor-12", timed(shape_floor, False)),
            ("floor-11", timed(shape_floor, True)),
            ("quicknets", quicknets_epoch(x, y, r, False, results)),
        ] + (
            [("autograd", quicknets_epoch(x, y, r, True, results))] if "autograd" in times else []
        ):
            times[name].append(wall)
            cpu[name].append(used)
        if len(results) == 2:
            (a, wa), (b, wb) = results
            same.append(a == b and all(torch.equal(p, q) for p, q in zip(wa, wb)))
        print(
            f"round {r + 1}/{args.rounds}: "
            + "  ".join(f"{k}: {v[-1]:.3f} s" for k, v in times.items()),
            flush=True,
        )
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"load at end: {Path('/proc/loadavg').read_text().strip()}")
    print("median epoch: " + "  ".join(f"{k} {v:.3f} s" for k, v in med.items()))
    print(
        "median CPU time (the process's, all threads): "
        + "  ".join(f"{k} {v:.3f} s" for k, v in med_cpu.items())
    )
    per_round = [q / f for q, f in zip(times["quicknets"], times["floor-12"])]
    line = (
        f"quicknets / floor-12: {med['quicknets'] / med['floor-12']:.2f} (medians), per "
        f"round {' '.join(f'{x:.2f}' for x in per_round)}; quicknets / floor-11: "
        f"{med['quicknets'] / med['floor-11']:.2f}"
    )
    if "autograd" in med:
        line += (
            f"; autograd / quicknets: {med['autograd'] / med['quicknets']:.2f}; the same "
            f"loss, accuracy and weights as autograd in {sum(same)} of {len(same)} rounds"
        )
    print(line)


if __name__ == "__main__":
    main()
