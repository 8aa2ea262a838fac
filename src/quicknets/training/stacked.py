"""Several variants of one MLP trained together: one pass of batched matrix products per step for
all of them, each variant still its own network, optimizer, random draws and early stopping.

    reason = stack_refusal(models, configs, datas)    # None: they stack; else why not (one line)
    histories = fit_stacked(models, datas, configs, after_epochs=[...])   # one history each

Each variant k keeps what it would have alone: its network (built by its seed), its optimizer
(make_optimizer: torch's own, with its lr, weight decay, momentum and schedule), its batch order
and augmentation (a generator seeded by its seed, drawn as the loop draws), its dropout masks (a
second generator seeded by its seed: the stream torch.manual_seed(seed) gives the plain loop) and
its early stopping. Its Linear weights become views into stacked (K, out, in) tensors, so one
`baddbmm` runs the layer for every variant; its optimizer steps those views and its `evaluate`,
checkpoint and record read them as they read any network's. A variant that stops early leaves
the stack (the others are stacked again without it). Its numbers are those of the run alone up
to float rounding: batched products sum in another order (tests/training/test_stacked.py holds
the first step to 1e-5 and the accuracy to 0.003).

It covers what the fused pass covers (fused.py: Flatten, Linear, ReLU, ..., Linear, LogSoftmax in
fp32 on the CPU), plus dropout and label smoothing, which its stacked form (fused.StackedStep,
stepped by adam.StackedAdam) includes. Convolutions, BatchNorm, other activations and bf16 train as
separate runs (benchmarks/README.md measures why).
"""

import math
import time

import torch
from torch import nn

from quicknets.base.errors import QuicknetsError
from quicknets.base.interrupts import check_ctrl_c
from quicknets.base.machine import (
    TRAINING,
    CoreLease,
    flush_denormals,
    thread_invariant,
    use_strict_math,
)
from quicknets.config.configs import TrainConfig
from quicknets.evaluation.metrics import evaluate
from quicknets.training.adam import StackedAdam
from quicknets.training.fused import StackedStep
from quicknets.training.loop import (
    batch_bounds,
    check_inputs,
    format_epoch,
    make_optimizer,
    note_early_stopping,
)
from quicknets.training.stackable import UNWEIGHTED
from quicknets.training.tricks import augment, draw_augment, lr_at


def mlp_layers(model: nn.Module) -> tuple | None:
    """(Linear layers, dropout probability) of Flatten, Linear, ReLU, [Dropout], ..., Linear,
    LogSoftmax with float32 CPU parameters and no hooks; else None."""
    layers = list(model.children()) if isinstance(model, nn.Sequential) else []
    if not layers or type(layers[0]) is not nn.Flatten or type(layers[-1]) is not nn.LogSoftmax:
        return None
    body, linears, p = layers[1:-1], [], 0.0
    i = 0
    while i < len(body):
        if type(body[i]) is not nn.Linear or body[i].bias is None:
            return None
        linears.append(body[i])
        i += 1
        if i == len(body):
            break
        if type(body[i]) is not nn.ReLU:
            return None
        i += 1
        if i < len(body) and type(body[i]) is nn.Dropout:
            p = body[i].p
            i += 1
    hooked = any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    params = list(model.parameters())
    if hooked or any(q.dtype != torch.float32 or q.device.type != "cpu" for q in params):
        return None
    return linears, p


def stack_refusal(models: list, configs: list, datas: list) -> str | None:
    """Why these variants cannot train in one stack (one line), or None when they can: the
    same MLP shape of Linear and ReLU layers (dropout allowed), fp32 on the CPU, no class
    weights, the same batch size, epochs, optimizer, thread count and number of training images."""
    if len(models) < 2:
        return "one variant"
    shapes = []
    for model, config in zip(models, configs):
        found = mlp_layers(model)
        if found is None:
            return "stacking covers Linear+ReLU MLPs (dropout allowed); not this network"
        if config.device != "cpu" or config.bf16 or config.fp16 or config.compile:
            return "stacking covers fp32 on the CPU (not bf16, fp16, compile or a GPU)"
        if config.class_weights not in (None, "none"):
            return UNWEIGHTED
        shapes.append([tuple(m.weight.shape) for m in found[0]])
    if len({tuple(s) for s in shapes}) > 1:
        return "the variants' networks differ in shape"
    for key in ("batch_size", "epochs", "optimizer", "threads"):
        if len({getattr(c, key) for c in configs}) > 1:
            return f"the variants differ in {key}"
    if len({len(d.train_labels) for d in datas}) > 1:
        return "the variants' training sets differ in size"
    return None


def fit_stacked(
    models: list,
    datas: list,
    configs: list,
    *,
    quiet: bool = True,
    log=print,
    after_epochs: list | None = None,
    should_stop=None,
) -> list:
    """Train K set-up variants (stack_refusal(...) is None) together; return for each its
    history, as `loop.fit` returns it alone, or the QuicknetsError that stopped it (a diverged
    variant leaves the stack; the others go on). `after_epochs[k](epoch, model, opt,
    generator, history, best, scaler, rng=dropout_generator_state)` as fit's after_epoch;
    `should_stop()`, asked after each epoch's records, stops with KeyboardInterrupt when true.
    The models end in eval mode with weights of their own, their best epoch's under early
    stopping."""
    reason = stack_refusal(models, configs, datas)
    if reason is not None:
        raise QuicknetsError(f"these variants cannot train in one stack: {reason}")
    for model, data, config in zip(models, datas, configs):
        check_inputs(model, data, config)
    use_strict_math()
    with TRAINING:
        # an fp32 MLP: its numbers are the same for any thread count where MKL's strict mode
        # holds (loop.thread_free), so the lease may lend threads to other runs
        lease = CoreLease(configs[0].threads, flexible=thread_invariant())
        caller = torch.get_num_threads()
        torch.set_num_threads(configs[0].threads)
        try:
            with lease, flush_denormals():
                return _stacked_loop(
                    models, datas, configs, quiet, log, after_epochs, should_stop, lease
                )
        finally:
            torch.set_num_threads(caller)
            for model in models:
                model.eval()


def _stacked_loop(models, datas, configs, quiet, log, after_epochs, should_stop, lease) -> list:
    k_all = len(models)
    gens = [torch.Generator().manual_seed(c.seed) for c in configs]  # shuffling, augmentation
    drops = [torch.Generator().manual_seed(c.seed) for c in configs]  # dropout masks
    xs, offsets, seen = [], [], {}
    for model, data in zip(models, datas):
        model.preprocessing = data.preprocessing
        if id(data) not in seen:  # variants with the same data share one copy
            seen[id(data)] = sum(len(x) for x in xs)
            xs.append(data.preprocessing.normalize(data.train_images).flatten(1))
        offsets.append(seen[id(data)])
    x = xs[0] if len(xs) == 1 else torch.cat(xs)  # (sum N, F)
    ys = [d.train_labels for d in datas]
    n = len(ys[0])
    opts = [make_optimizer(m, c) for m, c in zip(models, configs)]
    bounds = batch_bounds(n, configs[0].batch_size, False)
    steps, epochs = len(bounds), configs[0].epochs
    histories = [[] for _ in models]
    bests: list = [None] * k_all
    failed: list = [None] * k_all  # the error that stopped a variant
    active = list(range(k_all))
    step_fn = stepper = None
    try:
        for epoch in range(1, epochs + 1):
            active = [k for k in active if not (histories[k] and "stopped" in histories[k][-1])]
            active = [k for k in active if not isinstance(failed[k], QuicknetsError)]
            if not active:
                break
            if step_fn is None or len(step_fn.linears) != len(active):
                if step_fn is not None:  # a variant stopped: stack the others again
                    step_fn.release()
                    if stepper is not None:
                        stepper.release()
                step_fn = StackedStep(
                    [mlp_layers(models[k])[0] for k in active],
                    [mlp_layers(models[k])[1] for k in active],
                    [configs[k].label_smoothing for k in active],
                    [drops[k] for k in active],
                )
                stepper = StackedAdam.build([opts[k] for k in active], step_fn)
            start = time.perf_counter()
            for k in active:
                models[k].train()
            orders = torch.stack([torch.randperm(n, generator=gens[k]) for k in active])
            moves = {
                k: draw_augment(n, configs[k].translate, configs[k].flip, gens[k])
                for k in active
                if configs[k].translate or configs[k].flip
            }
            y_all = torch.stack([ys[k] for k in active])  # (K, N)
            offset = torch.tensor([offsets[k] for k in active]).view(-1, 1)
            loss_sum = torch.zeros(len(active))
            correct = torch.zeros(len(active), dtype=torch.long)
            for step, (lo, hi) in enumerate(bounds, (epoch - 1) * steps):
                check_ctrl_c()  # a Ctrl-C swallowed on its way (interrupts.py) stops here
                idx = orders[:, lo:hi]  # (K, B)
                xb = x.index_select(0, (idx + offset).flatten()).view(len(active), hi - lo, -1)
                yb = torch.gather(y_all, 1, idx)
                for j, k in enumerate(active):
                    if k in moves:  # augmentation moves images: per variant, as alone
                        img = xb[j].view(hi - lo, *datas[k].preprocessing.shape)
                        shifts, flips = moves[k]
                        moved = augment(img, shifts[idx[j]], flips[idx[j]], configs[k].translate)
                        xb[j] = moved.reshape(hi - lo, -1)
                    c = configs[k]
                    if c.schedule != "constant":
                        for group in opts[k].param_groups:
                            group["lr"] = lr_at(
                                step, epochs * steps, c.lr, c.schedule, c.warmup or 0.0
                            )
                loss, log_probs = step_fn(xb, yb)
                if stepper is not None:
                    stepper.step()
                else:
                    for k in active:
                        opts[k].step()
                loss_sum += loss
                correct += (log_probs.argmax(2) == yb).sum(1)
                lease.step()
            # each row's seconds: its share of the stack's epoch (the products are the bulk)
            seconds = (time.perf_counter() - start) / len(active)
            for j, k in enumerate(active):
                try:
                    row = epoch_row(configs[k], epoch, steps, loss_sum[j])
                except QuicknetsError as e:  # diverged: this variant stops, the others go on
                    failed[k] = e
                    continue
                row["train_accuracy"] = correct[j].item() / n
                if datas[k].val_images is not None:
                    scores = evaluate(models[k], datas[k], "val")
                    row["val_loss"], row["val_accuracy"] = scores["loss"], scores["accuracy"]
                row["seconds"] = seconds
                if configs[k].patience and note_early_stopping(histories[k], row, configs[k]):
                    bests[k] = {
                        key: v.detach().clone() for key, v in models[k].state_dict().items()
                    }
                histories[k].append(row)
                if not quiet:
                    log(f"variant {k + 1}/{k_all}  " + format_epoch(row))
                if after_epochs is not None:
                    after_epochs[k](
                        epoch,
                        models[k],
                        opts[k],
                        gens[k],
                        histories[k],
                        bests[k],
                        None,
                        rng=drops[k].get_state(),
                    )
                models[k].train()
            if should_stop is not None and should_stop():
                raise KeyboardInterrupt  # after every variant's epoch is recorded
    finally:
        if step_fn is not None:
            step_fn.release()
        if stepper is not None:
            stepper.release()
    for k in range(k_all):
        if bests[k] is not None:
            models[k].load_state_dict(bests[k])
    return [failed[k] or histories[k] for k in range(k_all)]


def epoch_row(config: TrainConfig, epoch: int, steps: int, loss: torch.Tensor) -> dict:
    """The history row's training columns, as loop.fit writes them."""
    loss_sum = loss.item()
    if not math.isfinite(loss_sum):
        raise QuicknetsError(
            f"training diverged in epoch {epoch}: the loss became {loss_sum}; try a lower "
            f"--lr (it was {config.lr})"
        )
    return {
        "epoch": epoch,
        "epochs": config.epochs,
        "train_loss_sum": loss_sum,
        "train_loss": loss_sum / steps,
    }
