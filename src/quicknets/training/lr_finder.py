"""Find a learning rate: an exponential sweep over a few hundred steps on a copy of the model.

    found = lr_find(model, data, optimizer="adam")   # the model passed in is left untouched
    found.lr, found.describe()                       # the suggestion, and how it was chosen
    plot_lr_find(found)                              # loss against lr, the suggestion marked
    train(model, data, lr=found.lr)                  # or `--lr auto` (experiment.setup)

The method is Leslie Smith's learning-rate range test ("Cyclical Learning Rates for Training
Neural Networks", 2017, section 3.3) as fastai's `lr_find` runs it: one optimizer step per
batch while the rate grows exponentially from `start_lr` (1e-7) to `end_lr` (10); the loss is
smoothed by a debiased exponential moving average (beta 0.98), and the sweep stops once that is
4 times its minimum (the loss has diverged). The suggestion is fastai's "valley" rule, its
default since fastai 2.5: drop the first tenth of the steps and the last five, find the longest
valley of the smoothed loss (the longest run of ever-lower losses, a longest decreasing
subsequence), and take the rate halfway down it: past the flat start, well before the blow-up.

The sweep uses the run's optimizer, batch size, loss (label smoothing included) and seed, in
fp32 without augmentation or schedule, on its own generators: the caller's random state, thread
count and model are as they were.
"""

import copy
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from quicknets.base.errors import QuicknetsError
from quicknets.base.interrupts import check_ctrl_c
from quicknets.base.machine import TRAINING, flush_denormals, resolve, use_strict_math
from quicknets.config.configs import TrainConfig, check, make
from quicknets.training.loop import (
    batch_bounds,
    batchnorm_mode,
    check_inputs,
    class_weights,
    has_batchnorm,
    loss_function,
    make_optimizer,
)

METHOD = "valley"
SOURCE = "fastai's lr_find rule, on Smith's 2017 LR range test"


@dataclass
class LRFound:
    """A finished sweep: the rates tried, the raw and smoothed losses, and the suggestion."""

    lr: float  # the suggested rate, to two significant digits
    lrs: list  # the rate of each step
    losses: list  # the smoothed loss after each step
    raw: list  # each step's own batch loss
    index: int  # the step whose rate is suggested
    stopped: str  # why the sweep ended
    seconds: float
    method: str = METHOD

    def describe(self) -> str:
        """How the rate was chosen, and by whose rule."""
        return f"{self.method}: halfway down the longest descent of the smoothed loss; {SOURCE}"

    def record(self) -> dict:
        """What a run's config.json keeps of it (RunConfig.lr_find)."""
        return {
            "lr": self.lr,
            "method": self.method,
            "source": SOURCE,
            "steps": len(self.lrs),
            "start_lr": self.lrs[0],
            "end_lr": self.lrs[-1],
            "stopped": self.stopped,
        }


def valley(losses: list) -> int:
    """fastai's "valley" index: halfway down the longest valley of `losses`, the longest
    decreasing subsequence (O(n^2) over a few hundred points)."""
    n = len(losses)
    length = [1] * n  # length of the longest decreasing run of points ending at i
    end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and length[j] + 1 > length[i]:
                length[i] = length[j] + 1
        if length[i] > length[end]:
            end = i
    start = end - length[end]  # fastai's arithmetic, kept so the index is fastai's
    third = (end - start) / 3
    return max(0, start + int(third) + int(third / 2))


def lr_find(
    model: nn.Module,
    data,
    config: TrainConfig | None = None,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 200,
    **settings,
) -> LRFound:
    """Sweep the learning rate exponentially from `start_lr` to `end_lr` over at most `steps`
    batches of `data`'s training set, training a copy of `model` with the run's optimizer
    (settings as for train: optimizer, batch_size, momentum, weight_decay, seed, ...); return
    the rates, losses and the suggested rate (see the module's docstring)."""
    if config is None:
        config = make(TrainConfig, settings)
    else:
        config = check(config.replace(**settings) if settings else config)
    if not 0 < start_lr < end_lr:
        raise QuicknetsError(
            f"the LR sweep needs 0 < start_lr < end_lr, got {start_lr} and {end_lr}"
        )
    if steps < 20:
        raise QuicknetsError(f"the LR sweep needs at least 20 steps, got {steps}")
    config = resolve(config).replace(lr=start_lr, patience=0)
    check_inputs(model, data, config)
    device = torch.device(config.device)
    use_strict_math()  # the CLI's math mode, as train()
    begin = time.perf_counter()
    with TRAINING:  # torch's threads and global generator are process-wide (machine.TRAINING)
        caller_threads = torch.get_num_threads()
        torch.set_num_threads(config.threads)
        try:
            with (
                torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
                flush_denormals(),
            ):
                torch.manual_seed(config.seed)  # dropout masks
                net = copy.deepcopy(model).to(device).train()  # the caller's model: untouched
                lrs, raw, smooth, stopped = _sweep(
                    net, data, config, device, start_lr, end_lr, steps
                )
        finally:
            torch.set_num_threads(caller_threads)
    # as fastai: the first tenth is the moving average warming up, the last five the blow-up
    first, last = steps // 10, len(smooth) - 5
    if last - first < 5:
        raise QuicknetsError(
            f"the LR sweep diverged after {len(smooth)} steps, too soon to "
            f"suggest a rate: try a smaller start_lr than {start_lr:g}"
        )
    index = first + valley(smooth[first:last])
    return LRFound(
        lr=float(f"{lrs[index]:.2g}"),
        lrs=lrs,
        losses=smooth,
        raw=raw,
        index=index,
        stopped=stopped,
        seconds=time.perf_counter() - begin,
    )


def _sweep(net, data, config, device, start_lr, end_lr, steps) -> tuple:
    """The sweep's loop: (rates, raw losses, smoothed losses, why it stopped)."""
    opt = make_optimizer(net, config)
    loss_fn = loss_function(config, class_weights(config, data)).to(device)  # the run's loss
    generator = torch.Generator().manual_seed(config.seed)
    n = len(data.train_labels)
    bounds = batch_bounds(n, min(config.batch_size, n), has_batchnorm(net))
    norm = batchnorm_mode(net, config, device)  # BatchNorm1d's sums as the run's steps do them
    batches = []  # (start, end) over as many shuffled passes as the steps need
    ratio = end_lr / start_lr
    lrs, raw, smooth = [], [], []
    average, lowest, beta = 0.0, math.inf, 0.98
    for step in range(steps):
        check_ctrl_c()  # a Ctrl-C swallowed on its way (interrupts.py) stops here
        if not batches:
            order = torch.randperm(n, generator=generator)
            batches = [order[a:b] for a, b in bounds]
        idx = batches.pop(0)
        xb = data.preprocessing.normalize(data.train_images[idx].to(device))  # (B, C, H, W)
        yb = data.train_labels[idx].to(device)
        lr = start_lr * ratio ** (step / (steps - 1))  # exponential: equal steps in log(lr)
        for group in opt.param_groups:
            group["lr"] = lr
        with norm:
            log_probs = net(xb)
        loss = loss_fn(log_probs.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.item()  # one sync per step: a few hundred steps
        if not math.isfinite(value):
            return lrs, raw, smooth, f"the loss became {value} at lr {lr:.2g}"
        average = beta * average + (1 - beta) * value
        smoothed = average / (1 - beta ** (step + 1))  # debiased: the first steps are not ~0
        lrs.append(lr)
        raw.append(value)
        smooth.append(smoothed)
        lowest = min(lowest, smoothed)
        if smoothed > 4 * lowest:
            return lrs, raw, smooth, f"stopped at lr {lr:.2g} (smoothed loss 4x its minimum)"
    return lrs, raw, smooth, f"ran all {steps} steps to lr {lrs[-1]:.2g}"


def plot_lr_find(found: LRFound, title: str | None = None):
    """Loss against learning rate (log scale): each step's loss faint, the smoothed loss bold,
    the suggestion marked. A matplotlib Figure (no pyplot)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(found.lrs, found.raw, color="#1f77b4", alpha=0.25, linewidth=0.8, label="batch loss")
    ax.plot(found.lrs, found.losses, color="#1f77b4", label="smoothed loss")
    ax.plot(
        [found.lrs[found.index]],
        [found.losses[found.index]],
        "o",
        color="#d62728",
        label=f"suggested lr {found.lr:g} ({found.method})",
    )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    top = max(found.losses[: max(1, len(found.losses) // 10)] + [found.losses[found.index]])
    ax.set_ylim(min(found.losses) * 0.9, top * 1.5)  # the blow-up would flatten the rest
    ax.set_title(title or "LR range test")
    ax.legend(loc="upper left")
    return fig
