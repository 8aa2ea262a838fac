"""Single speed-run tricks (each one setting of TrainConfig) as pure functions: learning-rate
schedules and batched augmentation on the device. A preset (presets.py) is a whole recipe that
picks some of them; test-time flip averaging is part of the network (`network(...,
flip_tta=True)`), so that it travels with the saved model.

    lr = lr_at(step, total_steps, peak_lr=0.01, schedule="onecycle", warmup=0.2)
    shifts, flips = draw_augment(n_images, translate=2, flip=True, generator=g)  # once per epoch
    xb = augment(xb, shifts[idx], flips[idx], 2)    # (B, C, H, W), every image moved at once

The train loop calls these through visible `if`s (see training/loop.py); each is tested on its own.
An EMA of the weights was tried and left out: it was not shown to pay (benchmarks/README.md).
The random draws happen once per epoch on the CPU and move to the device in one copy, so a GPU
epoch needs no host synchronisation for augmentation.
"""

import torch
from torch import nn

SCHEDULES = ("constant", "onecycle", "linear")


def lr_at(
    step: int, total_steps: int, peak_lr: float, schedule: str = "constant", warmup: float = 0.2
) -> float:
    """The learning rate for optimizer step `step` (0-based) of `total_steps`.

    constant: peak_lr throughout (the notebook).
    linear:   peak_lr falling linearly to 0 at the last step.
    onecycle: rising linearly from peak_lr/10 over the first `warmup` fraction of the steps, then
              falling linearly to 0 (the triangular one-cycle of the speed-run records).
    """
    if schedule == "constant" or total_steps <= 1:
        return peak_lr
    done = min(step, total_steps - 1) / (total_steps - 1)  # 0 at the first step, 1 at the last
    if schedule == "linear":
        return peak_lr * (1.0 - done)
    if schedule == "onecycle":
        if warmup > 0 and done < warmup:
            return peak_lr * (0.1 + 0.9 * done / warmup)
        return peak_lr * (1.0 - done) / (1.0 - warmup) if warmup < 1 else peak_lr
    raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")


def draw_augment(n: int, translate: int, flip: bool, generator: torch.Generator) -> tuple:
    """Random shifts (n, 2) of -translate..translate pixels (rows, columns); flip flags (n,)."""
    shifts = torch.randint(-translate, translate + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    return shifts, flips


def augment(
    x: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, translate: int
) -> torch.Tensor:
    """Move each image of x (B, C, H, W) by its (dy, dx) shift (at most `translate` pixels),
    repeating the edge pixels into the gap, and mirror it left-right where `flips` is set.
    Batched gathers: no per-image loop, no host synchronisation."""
    b, c, h, w = x.shape
    if translate > 0:
        t = translate
        padded = nn.functional.pad(x, (t, t, t, t), mode="replicate")  # (B, C, H+2t, W+2t)
        rows = (t - shifts[:, 0:1]) + torch.arange(h, device=x.device)  # (B, H)
        cols = (t - shifts[:, 1:2]) + torch.arange(w, device=x.device)  # (B, W)
        batch = torch.arange(b, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
        x = x.permute(0, 3, 1, 2)
    return torch.where(flips[:, None, None, None], x.flip(-1), x)
