"""Epoch time of quicknets against the notebook's pipeline and the fp32 floor, side by side.

    PYTHONPATH=src python benchmarks/epoch.py --rounds 5 [--threads 2]

Each round times, in turn and in this one process with the same threads: one quicknets epoch of
the notebook's settings (784-256-128-64-10, Adam 0.003, batch 64, 60,000 images), one epoch of
the notebook's torchvision DataLoader pipeline, and a large fp32 matrix product (the machine's
matrix FLOP/s now). Interleaving means load from other work hits all three alike; the medians
and their ratios are printed. The floor is the epoch's matrix work (forward and backward of
the four Linear layers) at the measured FLOP/s.
"""

import argparse
import statistics
import time

import notebook
import torch

from quicknets.base.machine import free_cores
from quicknets.data.loading import load_dataset
from quicknets.networks.models import network
from quicknets.training.loop import train

SIZES = (784, 256, 128, 64, 10)
# forward multiply-adds per image, x2 FLOP each, x3 for forward + the two backward products
EPOCH_FLOP = 60000 * 2 * 3 * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))  # 87.2 GFLOP


def floor_seconds(n: int = 2048) -> float:
    """Seconds to do the epoch's FLOP as large n x n fp32 matrix products, timed as one
    continuous block (as long as an epoch, so it meets the same load from other work)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    reps = max(1, round(EPOCH_FLOP / (2 * n**3)))
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return (time.perf_counter() - start) * EPOCH_FLOP / (reps * 2 * n**3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0: free_cores() now")
    args = parser.parse_args()
    threads = args.threads or free_cores()
    torch.set_num_threads(threads)
    data = load_dataset("fashion-mnist")
    trainloader, _ = notebook.loaders(notebook.make_root())
    times = {"quicknets": [], "notebook": [], "floor": []}
    for r in range(args.rounds):
        history = train(
            network("784-256-128-64-10", seed=r),
            data,
            epochs=1,
            seed=r,
            threads=threads,
            device="cpu",
            quiet=True,
        )
        times["quicknets"].append(history[0]["seconds"])
        torch.manual_seed(r)
        model, criterion, optimizer = notebook.model_and_optimizer()
        start = time.perf_counter()
        notebook.train_epoch(model, criterion, optimizer, trainloader)
        times["notebook"].append(time.perf_counter() - start)
        times["floor"].append(floor_seconds())
        print(
            f"round {r + 1}/{args.rounds}: "
            + "  ".join(f"{k}: {v[-1]:.2f} s" for k, v in times.items()),
            flush=True,
        )
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"threads: {threads}  epoch FLOP: {EPOCH_FLOP / 1e9:.1f} G  "
        f"matrix FLOP/s: {EPOCH_FLOP / med['floor'] / 1e9:.0f} G"
    )
    print(
        f"median epoch: quicknets {med['quicknets']:.2f} s  notebook {med['notebook']:.2f} s  "
        f"fp32 floor {med['floor']:.2f} s"
    )
    per_round = [q / f for q, f in zip(times["quicknets"], times["floor"])]
    print(
        f"ratios of the medians: quicknets/floor {med['quicknets'] / med['floor']:.2f}  "
        f"notebook/quicknets {med['notebook'] / med['quicknets']:.1f}"
    )
    print(
        f"quicknets/floor per round: {' '.join(f'{r:.2f}' for r in per_round)}  "
        f"(median {statistics.median(per_round):.2f}, best {min(per_round):.2f})"
    )


if __name__ == "__main__":
    main()
