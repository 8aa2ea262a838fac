"""Train a network: one plain loop over epochs and in-memory batches.

    model = network("784-256-128-64-10")
    history = train(model, data, optimizer="adam", lr=0.003, epochs=7)   # list of per-epoch dicts

Each epoch prints one line such as
    epoch: 1/7  train_loss_sum: 480.31  train_loss: 0.5121  train_acc: 0.8147  seconds: 1.52
(`train_loss_sum` is the notebook's "Training loss", the sum of the batch losses; the metric
names are metrics.METRICS'). The images are normalised once, with the preprocessing the model
then carries, and kept on the device as one tensor; each epoch draws batches by a seeded
shuffled index, with no DataLoader and no per-sample work. The seed fixes shuffling, dropout and
augmentation through generators of the run's own: the caller's global torch generator and its
thread count are left as they were.
"""
import dataclasses
import math
import sys
import time

import torch
from torch import nn

from quicknets.checkpoint import restore
from quicknets.config import TrainConfig, check, make
from quicknets.data import Dataset
from quicknets.errors import QuicknetsError
from quicknets.machine import resolve
from quicknets.metrics import evaluate
from quicknets.preprocessing import preprocessing_of
from quicknets.tricks import augment, draw_augment, lr_at


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


def batch_bounds(n: int, batch_size: int, batchnorm: bool) -> list:
    """(start, end) of each batch of an epoch of n images. With BatchNorm a last batch of one
    image (BatchNorm cannot normalise a single value) joins the batch before it."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if batchnorm and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def train_epoch(model, opt, loss_fn, x, y, batch_size, generator, bar=None, *,
                config: TrainConfig | None = None, first_step=0, total_steps=0) -> tuple:
    """One pass over (x, y) in a shuffled order; returns (sum of batch losses, correct count).

    `config` switches on the tricks (augmentation, per-step schedule, bf16); `first_step`
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
    bounds = batch_bounds(len(y), batch_size, has_batchnorm(model))
    for step, (start, end) in enumerate(bounds, first_step):
        idx = order[start:end]
        xb, yb = x[idx], y[idx]  # (B, C, H, W), (B,)
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
    """Train `model` on `data` in place; return the history, one dict per epoch
    (epoch, epochs, train_loss_sum, train_loss, train_accuracy, [val_loss, val_accuracy],
    seconds). The model keeps the data's preprocessing (model.preprocessing).

    Settings are TrainConfig's fields, given as a config or as keywords (optimizer="sgd", lr=0.01,
    epochs=7, batch_size=64, seed=0, device="auto", ...). Unknown or out-of-range settings, and
    a model or data of the wrong kind or shape, raise QuicknetsError before anything trains.

    `after_epoch(epoch, model, opt, generator, history)` is called after each epoch (the CLI
    saves a checkpoint there); `resume` is a checkpoint (quicknets.checkpoint) to continue from,
    its epoch numbering included.
    """
    if config is None:
        config = make(TrainConfig, settings)
    else:
        config = check(dataclasses.replace(config, **settings) if settings else config)
    return fit(model, data, resolve(config), quiet=quiet, log=log, after_epoch=after_epoch,
               resume=resume)


def check_inputs(model, data, config: TrainConfig) -> None:
    """The model and data are what training needs (one clear error, not an AttributeError)."""
    if not isinstance(model, nn.Module):
        raise QuicknetsError(f"train needs a network (quicknets.network(...) or any "
                             f"nn.Module), not {type(model).__name__}")
    if not isinstance(data, Dataset):
        raise QuicknetsError(f"train needs a dataset (quicknets.load_dataset(...)), "
                             f"not {type(data).__name__}")
    if len(data.train_labels) == 0:
        raise QuicknetsError(f"{data.name} has no training images")
    if has_batchnorm(model) and (config.batch_size < 2 or len(data.train_labels) < 2):
        raise QuicknetsError("BatchNorm needs batches of at least 2 images (--batch-size 2 "
                             "or more, and 2 or more training images)")
    preprocessing_of(model, data)  # the network's outputs fit the data's classes
    if getattr(model, "config", None):  # a quicknets network: estimate a batch's memory first
        from quicknets.models import check_memory
        c = model.config
        check_memory(c["network"], c["activation"], c["dropout"], c["batchnorm"],
                     c["input_shape"], c["num_classes"],
                     min(config.batch_size, len(data.train_labels)),
                     extra=data.train_images.numel() * 4)  # the normalised images, float32


def fit(model: nn.Module, data: Dataset, config: TrainConfig, *, quiet: bool = False, log=print,
        after_epoch=None, resume: dict | None = None) -> list:
    """The loop, for a checked and resolved config (see `train`): the caller's torch thread
    count and global generator are restored when it returns."""
    check_inputs(model, data, config)
    device = torch.device(config.device)
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:  # the run's RNG: the caller's global generator is put back afterwards
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            return _loop(model, data, config, device, quiet, log, after_epoch, resume)
    finally:
        torch.set_num_threads(caller_threads)


def _loop(model, data, config, device, quiet, log, after_epoch, resume) -> list:
    torch.manual_seed(config.seed)  # dropout masks
    generator = torch.Generator().manual_seed(config.seed)  # shuffling, augmentation
    model.preprocessing = data.preprocessing  # the model keeps what its images need
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)  # convs then run in NHWC (oneDNN, cuDNN)
    step_model = torch.compile(model) if config.compile else model  # shares the weights
    x = data.preprocessing.normalize(data.train_images.to(device))  # (N, C, H, W) float32, once
    y = data.train_labels.to(device)
    opt = make_optimizer(model, config)
    loss_fn = nn.NLLLoss()  # on the LogSoftmax outputs, as in the notebook
    if config.label_smoothing > 0:  # cross-entropy of log-probabilities = NLL, plus smoothing
        loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    steps = len(batch_bounds(len(y), config.batch_size, has_batchnorm(model)))
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
               "train_loss": loss_sum / steps, "train_accuracy": correct / len(y)}
        if data.val_images is not None:
            scores = evaluate(model, data, "val")
            row["val_loss"], row["val_accuracy"] = scores["loss"], scores["accuracy"]
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        if not quiet:
            log(format_epoch(row))
        if after_epoch is not None:
            after_epoch(epoch, model, opt, generator, history)
    return history
