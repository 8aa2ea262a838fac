"""BatchNorm1d's thread-invariant training pass against torch's kernel: one epoch each, side by
side.

    PYTHONPATH=src python benchmarks/batchnorm.py --rounds 5 [--threads 1] [--kinds fast bn256]

Kinds: `fast`, the `--preset fast` recipe as it trains on this CPU (784-512-256-10 + BatchNorm,
Adam 0.003, batch 256, one-cycle over 8 epochs, label smoothing 0.1; fp32 where bf16 would be
emulated), its first epoch; `bn256`, 784-256-10 with BatchNorm at quicknets' defaults (Adam
0.003, batch 64). Each round times, per kind, one epoch of `train_epoch` as `train` runs it
with quicknets' BatchNorm1d (training/batchnorm.py) and one with torch's kernel (the loop's
`batchnorm_mode` made to return nothing), the two in alternating order from round to round, in
this one process with the same threads. The measure is the process's CPU time (steady on a
busy machine at 1 thread); wall time is printed beside it. Printed per kind: the medians, their
ratio, the epoch's loss sum under each, and whether every round gave the same numbers.
"""

import argparse
import os
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch

import quicknets.training.loop as loop
from quicknets.base.machine import flush_denormals, use_strict_math
from quicknets.config.configs import RunConfig
from quicknets.data.loading import load_dataset
from quicknets.networks.models import network

KINDS = {
    "fast": dict(preset="fast"),
    "bn256": dict(network="784-256-10", batchnorm=True),
}


def epoch(config: RunConfig, x, y, ours: bool) -> tuple:
    """(CPU s, wall s, loss sum, weights) of the first epoch of `config`'s run."""
    n, t = config.network, config.train
    model = network(n.network, n.activation, n.dropout, n.batchnorm, seed=t.seed)
    opt = loop.make_optimizer(model, t)
    steps = len(loop.batch_bounds(len(y), t.batch_size, True))
    real = loop.batchnorm_mode
    if not ours:
        loop.batchnorm_mode = lambda model, config, device: nullcontext()  # torch's kernel
    torch.manual_seed(t.seed)
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        loss_sum, _ = loop.train_epoch(
            model,
            opt,
            loop.loss_function(t),
            x,
            y,
            t.batch_size,
            torch.Generator().manual_seed(t.seed),
            config=t,
            total_steps=t.epochs * steps,
        )
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        loop.batchnorm_mode = real
    return cpu, wall, loss_sum, [w.clone() for w in model.state_dict().values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    args = parser.parse_args()
    use_strict_math()
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist")
    x, y = data.preprocessing.normalize(data.train_images), data.train_labels
    configs = {k: RunConfig.build(device_type="cpu", **KINDS[k]) for k in args.kinds}
    print(
        f"threads: {args.threads}  MKL_CBWR: {os.environ.get('MKL_CBWR', '(unset)')}  "
        f"load at start: {Path('/proc/loadavg').read_text().strip()}",
        flush=True,
    )
    results = {(k, ours): [] for k in args.kinds for ours in (True, False)}
    with flush_denormals():
        for kind in args.kinds:  # warm-up: first calls, page faults
            epoch(configs[kind], x[:2048], y[:2048], True)
        for r in range(args.rounds):
            for kind in args.kinds:
                for ours in (r % 2 == 0, r % 2 == 1):
                    results[kind, ours].append(epoch(configs[kind], x, y, ours))
                    cpu, wall, loss_sum, _ = results[kind, ours][-1]
                    name = "quicknets" if ours else "torch"
                    print(
                        f"round {r + 1}/{args.rounds} {kind} {name}: cpu {cpu:.3f} s  "
                        f"wall {wall:.3f} s  train_loss_sum {loss_sum:.6f}",
                        flush=True,
                    )
    print(f"load at end: {Path('/proc/loadavg').read_text().strip()}")
    for kind in args.kinds:
        ours, torchs = results[kind, True], results[kind, False]
        med = [statistics.median(r[i] for r in runs) for runs in (ours, torchs) for i in (0, 1)]
        same = [
            all(a[2] == b[2] and all(map(torch.equal, a[3], b[3])) for a in runs)
            for runs in (ours, torchs)
            for b in runs[:1]
        ]
        print(
            f"{kind}: quicknets cpu {med[0]:.3f} s (wall {med[1]:.3f}), torch cpu {med[2]:.3f} s "
            f"(wall {med[3]:.3f}): {med[0] / med[2]:.3f}x CPU; train_loss_sum "
            f"{ours[0][2]:.6f} against {torchs[0][2]:.6f}; each the same every round: {same}"
        )


if __name__ == "__main__":
    main()
