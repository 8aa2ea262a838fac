"""Train a network: one plain loop over epochs and in-memory batches.

    model = network("784-256-128-64-10")
    history = train(model, data, optimizer="adam", lr=0.003, epochs=7)   # list of per-epoch dicts

Each epoch prints one line such as
    epoch: 1/7  train_loss_sum: 480.31  train_loss: 0.5121  train_acc: 0.8147  seconds: 1.52
(`train_loss_sum` is the notebook's "Training loss", the sum of the batch losses). The images are
normalised once and kept on the device as one tensor; each epoch draws batches by a seeded
shuffled index, with no DataLoader and no per-sample work.
"""
import dataclasses
import math
import os
import sys
import time

import torch
from torch import nn

from quicknets.checkpoint import restore
from quicknets.config import TrainConfig, check, make
from quicknets.data import Dataset
from quicknets.errors import QuicknetsError
from quicknets.metrics import evaluate_tensors
from quicknets.recipes import augment, draw_augment, lr_at


def runnable_now(samples: int = 5, interval: float = 0.02) -> int:
    """Processes running or ready to run right now, this one included: the median of a few
    readings of /proc/loadavg's run queue (the 1-minute load average lags by minutes)."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]))  # "R/T": R runnable
        except (OSError, ValueError, IndexError):
            return 1 + int(os.getloadavg()[0] + 0.5) if hasattr(os, "getloadavg") else 1
        if i + 1 < samples:
            time.sleep(interval)
    return sorted(counts)[len(counts) // 2]


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity)."""
    return (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count()) or 1


def free_cores() -> int:
    """Cores this process may use, less those busy with other processes' work right now."""
    usable = usable_cores()
    busy = max(0, runnable_now() - 1)  # the reading counts this process itself
    return max(1, min(usable, usable - busy))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise QuicknetsError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise QuicknetsError(f"device {name!r} asked for, but PyTorch sees no CUDA GPU here")
    return device


def resolve(config: TrainConfig) -> TrainConfig:
    """The config with `auto` choices made: threads=0 -> the free cores, device=auto -> cpu/cuda.
    Results can differ with the thread count, so the resolved count is what a run records."""
    if config.threads > usable_cores():
        raise QuicknetsError(f"--threads {config.threads} is more than the {usable_cores()} "
                             "cores this process may use: that oversubscribes them and slows "
                             "training down many times")
    return dataclasses.replace(config, threads=config.threads or free_cores(),
                               device=str(pick_device(config.device)))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = list(model.parameters())
    # One fused kernel per step instead of ~6 small ops per tensor: about 0.4 ms of a 1.6 ms
    # step of the notebook's MLP on this CPU (benchmarks/README.md).
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, fused=fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def format_epoch(row: dict) -> str:
    """The persistent per-epoch line: `key: value` pairs, two spaces apart."""
    parts = [f"epoch: {row['epoch']}/{row['epochs']}"]
    for key, value in row.items():
        if key in ("epoch", "epochs"):
            continue
        parts.append(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return "  ".join(parts)


def train_epoch(model, opt, loss_fn, x, y, batch_size, generator, bar=None, *,
                config: TrainConfig | None = None, first_step=0, total_steps=0) -> tuple:
    """One pass over (x, y) in a shuffled order; returns (sum of batch losses, correct count).

    `config` switches on the recipes (augmentation, per-step schedule, bf16); `first_step`
    and `total_steps` place this epoch's steps on the schedule.
    """
    model.train()
    order = torch.randperm(len(y), generator=generator).to(x.device)
    loss_sum = torch.zeros((), device=x.device)  # accumulated on the device: no sync per batch
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    moves = None
    if config is not None and (config.translate or config.flip):  # fresh moves each epoch
        moves = [t.to(x.device) for t in draw_augment(len(y), config.translate, config.flip,
                                                     generator)]
    use_bf16 = config is not None and config.bf16
    for step, start in enumerate(range(0, len(y), batch_size), first_step):
        idx = order[start:start + batch_size]
        xb, yb = x[idx], y[idx]  # (B, 1, 28, 28), (B,)
        if moves is not None:
            xb = augment(xb, moves[0][idx], moves[1][idx], config.translate)
        if config is not None and config.schedule != "constant":
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, config.lr, config.schedule, config.warmup)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            log_probs = model(xb)
        loss = loss_fn(log_probs.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach()
        correct += (log_probs.detach().argmax(1) == yb).sum()
        if bar is not None:
            bar.update(1)
    return loss_sum.item(), correct.item()


def train(model: nn.Module, data: Dataset, config: TrainConfig | None = None, *,
          quiet: bool = False, log=print, after_epoch=None, resume: dict | None = None,
          **settings) -> list:
    """Train `model` on `data` in place; return the history, one dict per epoch.

    Settings are TrainConfig's fields, given as a config or as keywords (optimizer="sgd", lr=0.01,
    epochs=7, batch_size=64, seed=0, device="auto", ...). Unknown or out-of-range settings raise
    QuicknetsError before anything trains.

    `after_epoch(epoch, model, opt, generator, history)` is called after each epoch (the CLI
    saves a checkpoint there); `resume` is a checkpoint (quicknets.checkpoint) to continue from,
    its epoch numbering included.
    """
    if config is None:
        config = make(TrainConfig, settings)
    else:
        config = check(dataclasses.replace(config, **settings) if settings else config)
    config = resolve(config)
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return fit(model, data, config, quiet, log, after_epoch, resume)
    finally:
        torch.set_num_threads(caller_threads)  # the caller's session keeps its own setting


def fit(model: nn.Module, data: Dataset, config: TrainConfig, quiet: bool, log, after_epoch,
        resume: dict | None) -> list:
    """The loop itself, for a checked and resolved config (see `train`)."""
    device = torch.device(config.device)
    torch.manual_seed(config.seed)  # dropout masks
    generator = torch.Generator().manual_seed(config.seed)  # shuffling
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)  # convs then run in NHWC (oneDNN, cuDNN)
    step_model = torch.compile(model) if config.compile else model  # shares the weights
    x = data.normalize(data.train_images.to(device))  # (N, 1, 28, 28) float32, once
    y = data.train_labels.to(device)
    val = None
    if data.val_images is not None:
        val = (data.normalize(data.val_images.to(device)), data.val_labels.to(device))
    opt = make_optimizer(model, config)
    loss_fn = nn.NLLLoss()  # on the LogSoftmax outputs, as in the notebook
    if config.label_smoothing > 0:  # cross-entropy of log-probabilities = NLL, plus smoothing
        loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    steps = math.ceil(len(y) / config.batch_size)
    history, first_epoch = [], 1
    if resume is not None:  # weights, optimizer moments, RNG states and history as they were
        history, first_epoch = restore(resume, model, opt, generator)
    show_bar = not quiet and sys.stderr.isatty()
    for epoch in range(first_epoch, config.epochs + 1):
        start = time.perf_counter()
        bar = None
        if show_bar:
            from tqdm import tqdm
            bar = tqdm(total=steps, desc=f"epoch {epoch}", leave=False, file=sys.stderr)
        loss_sum, correct = train_epoch(step_model, opt, loss_fn, x, y, config.batch_size,
                                        generator, bar, config=config,
                                        first_step=(epoch - 1) * steps,
                                        total_steps=config.epochs * steps)
        if bar is not None:
            bar.close()
        if not math.isfinite(loss_sum):
            raise QuicknetsError(f"training diverged in epoch {epoch}: the loss became "
                                 f"{loss_sum}; try a lower --lr (it was {config.lr})")
        row = {"epoch": epoch, "epochs": config.epochs, "train_loss_sum": loss_sum,
               "train_loss": loss_sum / steps, "train_acc": correct / len(y)}
        if val is not None:
            scores = evaluate_tensors(model, *val)
            row["val_loss"], row["val_acc"] = scores["loss"], scores["accuracy"]
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        if not quiet:
            log(format_epoch(row))
        if after_epoch is not None:
            after_epoch(epoch, model, opt, generator, history)
    return history
