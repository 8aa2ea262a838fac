"""Seconds per training step of each network, to know what an epoch costs before training one.

    PYTHONPATH=src python benchmarks/steps.py --threads 1 res32-res64-res128 res64-res128-res256
    PYTHONPATH=src python benchmarks/steps.py --rounds 4 --steps 5 --warmup 1 NET1 NET2

One step as the conv presets train: a batch of 256 random images (B, 1, 28, 28), BatchNorm, flip
TTA layers (idle in training), channels-last, bf16 autocast, label smoothing 0.1, fused SGD
(momentum 0.9, weight decay 5e-4). Per round each network takes `warmup` untimed steps, then
`steps` timed ones; rounds interleave the networks, so load from other work hits them alike.
Prints the median step and it x 235 (the steps of an epoch of 60,000 images at batch 256).
Data drawing and augmentation (~1-2% of a conv epoch) are left out.
"""

import argparse
import time

import torch
from torch import nn

from quicknets.base.errors import QuicknetsError
from quicknets.networks.models import network

STEPS_PER_EPOCH = 235  # 60,000 images / 256, rounded up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("networks", nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per round")
    args = parser.parse_args()
    for flag in ("threads", "rounds", "steps"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1, not {getattr(args, flag)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be at least 0, not {args.warmup}")
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 28, 28, generator=g)  # (B, C, H, W)
    y = torch.randint(0, 10, (256,), generator=g)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    try:
        models = {
            n: network(n, batchnorm=True, flip_tta=True).to(memory_format=torch.channels_last)
            for n in args.networks
        }
    except QuicknetsError as e:
        parser.error(str(e))
    opts = {
        n: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, fused=True)
        for n, m in models.items()
    }
    times = {n: [] for n in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            model.train()
            for i in range(args.warmup + args.steps):
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    log_probs = model(x)
                loss = loss_fn(log_probs.float(), y)
                opts[name].zero_grad()
                loss.backward()
                opts[name].step()
                if i >= args.warmup:
                    times[name].append(time.perf_counter() - start)
    first = None
    for name, t in times.items():
        step = sorted(t)[len(t) // 2]
        first = first or step
        print(
            f"{name:32s} median step {step * 1000:7.1f} ms ({len(t)} steps)  epoch "
            f"~{step * STEPS_PER_EPOCH:6.1f} s  x{step / first:.2f} the first",
            flush=True,
        )


if __name__ == "__main__":
    main()
