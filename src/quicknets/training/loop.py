"""Train a network: one plain loop over epochs and in-memory batches.

    model = network("784-256-128-64-10")
    history = train(model, data, optimizer="adam", lr=0.003, epochs=7)   # list of per-epoch dicts

Each epoch prints one line such as
    epoch: 1/7  train_loss_sum: 480.31  train_loss: 0.5121  train_acc: 0.8147  seconds: 1.52
(`train_loss_sum` is the notebook's "Training loss", the sum of the batch losses; the metric
names are metric_names.METRICS'). The images are normalised once, with the preprocessing the model
then carries, and kept on the device as one tensor; each epoch draws batches by a seeded
shuffled index, with no DataLoader and no per-sample work. The seed fixes shuffling, dropout and
augmentation through generators of the run's own: the caller's global torch generator and its
thread count are left as they were.

Early stopping (`patience=3, min_delta=0.001, monitor="val_loss"`) watches a validation metric,
stops once it has not improved for `patience` epochs, and puts the best epoch's weights back; each
row then says `best_epoch`, and the row it stopped at why (`stopped`). In Jupyter the bar is
tqdm's notebook widget, and `live_plot=True` redraws the curves in one output of the cell after
each epoch.

With a validation split, training ends by fitting the temperature of the kept weights on it
(Guo et al.'s temperature scaling, evaluation.calibration.set_temperature) into
model.preprocessing.temperature, which every probability quicknets reports then uses; the
weights, the network's outputs and the history stay as trained.
"""

import math
import sys
import time
from contextlib import nullcontext

import torch
from torch import nn

from quicknets.base.errors import QuicknetsError
from quicknets.base.interrupts import check_ctrl_c
from quicknets.base.machine import (
    TRAINING,
    CoreLease,
    flush_denormals,
    resolve,
    thread_invariant,
    usable_cores,
    use_strict_math,
)
from quicknets.config.class_weights import AUTO
from quicknets.config.class_weights import parse as parse_class_weights
from quicknets.config.class_weights import resolve as resolve_class_weights
from quicknets.config.configs import TrainConfig, check, make
from quicknets.data.loading import Dataset
from quicknets.data.preprocessing import preprocessing_of
from quicknets.evaluation.calibration import set_temperature
from quicknets.evaluation.metric_names import higher_is_better
from quicknets.evaluation.metrics import evaluate
from quicknets.networks.models import ACTIVATIONS
from quicknets.training.adam import Adam
from quicknets.training.batchnorm import InvariantBatchNorm
from quicknets.training.checkpoint import restore
from quicknets.training.fused import fused_step
from quicknets.training.tricks import augment, draw_augment, lr_at


def make_optimizer(model: nn.Module, cfg: TrainConfig):
    """torch.optim's `cfg.optimizer` over the model's parameters, with cfg's lr, weight decay
    and, for sgd and rmsprop, momentum (unset: the optimizer's own, config.MOMENTUM; the
    config refuses a momentum given to another optimizer). Adam on float32 parameters is
    adam.Adam: torch.optim.Adam(fused=True)'s kernel and numbers, without torch.optim."""
    params = list(model.parameters())
    if cfg.lr == "auto":
        raise QuicknetsError(
            "lr 'auto' is found before training (train() or experiment.setup "
            "run the LR finder); make_optimizer needs a number"
        )
    # One fused kernel per step instead of ~6 small ops per tensor: about 0.4 ms of a 1.6 ms
    # step of the notebook's MLP on this CPU (benchmarks/README.md). Only these three have one.
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    lr, wd = cfg.lr, cfg.weight_decay
    one_kind = len({(p.device, p.dtype) for p in params}) == 1
    if cfg.optimizer == "adam" and fused and one_kind and not cfg.fp16:
        # The same fused kernel, without torch.optim: no torch._dynamo import (~2 s of start-up)
        # and less Python per step (adam.py); fp16's gradient scaler keeps torch.optim's.
        return Adam(params, lr=lr, weight_decay=wd)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=wd, fused=fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=fused)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=cfg.momentum, weight_decay=wd)
    if cfg.optimizer == "nadam":
        return torch.optim.NAdam(params, lr=lr, weight_decay=wd)
    if cfg.optimizer == "radam":
        return torch.optim.RAdam(params, lr=lr, weight_decay=wd)
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd, fused=fused)


def class_weights(config: TrainConfig, data: Dataset) -> list | None:
    """The weight of each class in the training loss (floats in class order), or None without
    --class-weights: `auto` from the counts of the training split (after the validation split
    is held out), as scikit-learn's "balanced" (config/class_weights.py). An unknown class name
    is a QuicknetsError listing the data's classes."""
    # only auto reads the counts: a run asks 5 times, and torch.bincount of 60,000 labels took
    # 16 ms of CPU at 2 threads under load (0.14 ms at 1)
    counts = []
    if parse_class_weights(config.class_weights) == AUTO:
        counts = torch.bincount(data.train_labels, minlength=len(data.classes)).tolist()
    return resolve_class_weights(config.class_weights, list(data.classes), counts)


def loss_function(config: TrainConfig, weights: list | None = None) -> nn.Module:
    """The training loss on log-probabilities: NLL, as in the notebook (cross-entropy of
    log-probabilities, which is NLL plus smoothing, with --label-smoothing), each image
    weighted by its class's weight where `weights` are given (a batch's loss is then
    sum(w_y * loss) / sum(w_y), torch's weighted mean). Move it to the data's device."""
    weight = None if weights is None else torch.tensor(weights, dtype=torch.float32)
    if config.label_smoothing > 0:
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)
    return nn.NLLLoss(weight=weight)


def early_stopping(history: list, monitor: str, min_delta: float = 0.0) -> tuple:
    """(best epoch, epochs since it) for the `monitor` column of `history`: an epoch is the new
    best when it beats the best so far by more than `min_delta`, in the direction METRICS gives
    the metric (val_loss lower, val_accuracy higher). Pure: the loop, and a resumed loop, derive
    the stopping state from the history alone."""
    sign = 1 if higher_is_better(monitor) else -1
    best_epoch, best = 0, None
    for row in history:
        if best is None or sign * (row[monitor] - best) > min_delta:
            best_epoch, best = row["epoch"], row[monitor]
    return best_epoch, history[-1]["epoch"] - best_epoch if history else 0


def note_early_stopping(history: list, row: dict, config: TrainConfig) -> bool:
    """Write the best epoch so far into this epoch's `row`, and why training stops when it has
    waited `config.patience` epochs (before the last one); True when this epoch is the best."""
    # monitor and min_delta are filled in wherever patience is on (configs.RECIPE_SETTINGS)
    monitor, min_delta = config.monitor or "val_loss", config.min_delta or 0.0
    best_epoch, waited = early_stopping(history + [row], monitor, min_delta)
    row["best_epoch"] = best_epoch
    if waited >= config.patience and row["epoch"] < config.epochs:
        row["stopped"] = (
            f"{config.monitor} did not improve by more than {config.min_delta:g} "
            f"for {waited} epoch{'s' * (waited != 1)}; the best was epoch {best_epoch}"
        )
    return best_epoch == row["epoch"]


def in_jupyter() -> bool:
    """Whether this code runs in a Jupyter kernel (as tqdm.auto decides it)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_bar(total: int, desc: str, notebook: bool):
    """tqdm's notebook widget (`notebook`: one for the whole run, kept), or on a terminal its
    text bar (one per epoch, then wiped), else None: a redirected stderr gets no bar, the epoch
    lines say it all."""
    if notebook:
        from tqdm.auto import tqdm  # the widget (ipywidgets); without it, the text bar

        return tqdm(total=total, desc=desc)
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
    return None


def start_live_plot():
    """In Jupyter, a place in the cell's output for the curves (an IPython display handle),
    above the epoch lines; elsewhere None."""
    if not in_jupyter():
        return None
    from IPython.display import display

    return display(
        {"text/plain": "(the curves appear here after the first epoch)"}, raw=True, display_id=True
    )


def update_live_plot(handle, history: list) -> None:
    """Redraw the curves so far in place of the last drawing: the output never grows."""
    from IPython.display import Image

    from quicknets.plots.figures import plot_history, to_png

    handle.update(Image(to_png(plot_history(history))))


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


# Layers whose CPU kernels give the same bits for any thread count: matrix products (under MKL's
# strict mode), elementwise ops, row-wise softmax, dropout's masks (drawn in fixed chunks), and
# BatchNorm1d as train_epoch runs it (batchnorm.InvariantBatchNorm). torch's own BatchNorm
# kernel (BatchNorm2d) and convolutions split their sums by thread (benchmarks/README.md).
THREAD_FREE_LAYERS = (
    nn.Flatten,
    nn.Linear,
    nn.Dropout,
    nn.LogSoftmax,
    nn.BatchNorm1d,
    *ACTIVATIONS.values(),
)


def thread_free(model: nn.Module, config: TrainConfig, device: torch.device) -> bool:
    """Whether this run's numbers are the same for any thread count, so that the core lease may
    change its threads between steps: fp32 on the CPU, with MKL's strict mode on, and only layers
    of THREAD_FREE_LAYERS (an MLP, with or without BatchNorm; the fused pass is one)."""
    if device.type != "cpu" or config.bf16 or config.fp16 or config.compile:
        return False
    leaves = [m for m in model.modules() if not list(m.children())]
    return all(type(m) in THREAD_FREE_LAYERS for m in leaves) and thread_invariant()


def batchnorm_mode(model: nn.Module, config: TrainConfig | None, device: torch.device):
    """What a training step's forward runs within: batchnorm.InvariantBatchNorm for a model with
    BatchNorm1d trained in fp32 on the CPU, not compiled, where MKL's strict mode holds (its
    matrix products then give the same bits at any thread count, and so does its BatchNorm1d);
    else nothing (torch's kernel)."""
    other = config is not None and (config.bf16 or config.fp16 or config.compile)
    batchnorm1d = any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    if device.type == "cpu" and batchnorm1d and not other and thread_invariant():
        return InvariantBatchNorm()
    return nullcontext()


def recipe_notes(model: nn.Module, config: TrainConfig, device: torch.device) -> list:
    """One line for each setting this run takes but that does nothing useful here: bf16 on a
    CPU where it is slower than float32 (emulated, or no AMX: machine.native_bf16),
    channels-last for a network without convolutions (no image tensors to lay out). Said, not
    refused: the run trains to the same numbers with them."""
    from quicknets.base.machine import native_bf16

    notes = []
    if config.bf16 and device.type == "cpu" and not native_bf16("cpu"):
        notes.append(
            "note: --bf16 on this CPU (no AMX, nor AMD's AVX-512 bf16) is emulated or "
            "slower than float32 (machine.native_bf16), with bf16's rounding"
        )
    if config.channels_last and not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        notes.append(
            "note: --channels-last lays out convolutions' inputs; this network has none, so "
            "it changes nothing"
        )
    return notes


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def train_epoch(
    model,
    opt,
    loss_fn,
    x,
    y,
    batch_size,
    generator,
    bar=None,
    *,
    config: TrainConfig | None = None,
    first_step=0,
    total_steps=0,
    scaler=None,
    fused=None,
    lease=None,
) -> tuple:
    """One pass over (x, y) in a shuffled order; returns (sum of batch losses, correct count).

    `config` switches on the tricks (augmentation, per-step schedule, bf16, fp16); `first_step`
    and `total_steps` place this epoch's steps on the schedule; `scaler` (a GradScaler, with
    fp16) scales the loss; `fused` (fused.fused_step) replaces autograd for a Linear+ReLU
    network; `lease` (machine.CoreLease) is asked after each step how many threads to use.
    """
    model.train()
    order = torch.randperm(len(y), generator=generator).to(x.device)
    loss_sum = torch.zeros((), device=x.device)  # accumulated on the device: no sync per batch
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    moves = None
    if config is not None and (config.translate or config.flip):  # fresh moves each epoch
        moves = [
            t.to(x.device) for t in draw_augment(len(y), config.translate, config.flip, generator)
        ]
    use_bf16 = config is not None and config.bf16
    use_fp16 = config is not None and config.fp16
    bounds = batch_bounds(len(y), batch_size, has_batchnorm(model))
    norm = batchnorm_mode(model, config, x.device)
    for step, (start, end) in enumerate(bounds, first_step):
        check_ctrl_c()  # a Ctrl-C swallowed on its way (interrupts.py) stops here
        idx = order[start:end]
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)  # (B, C, H, W), (B,)
        if moves is not None and config is not None:  # moves come only with a config
            xb = augment(xb, moves[0][idx], moves[1][idx], config.translate)
        if config is not None and config.schedule != "constant":
            for group in opt.param_groups:
                warmup = config.warmup or 0.0  # None: a schedule without one
                group["lr"] = lr_at(step, total_steps, config.lr, config.schedule, warmup)
        if fused is not None:  # a Linear+ReLU network: the pass written out, same numbers
            loss, log_probs = fused(xb, yb)
            opt.step()
        else:
            with (
                torch.autocast(
                    x.device.type,
                    dtype=torch.float16 if use_fp16 else torch.bfloat16,
                    enabled=use_bf16 or use_fp16,
                ),
                norm,
            ):
                log_probs = model(xb)
            loss = loss_fn(log_probs.float(), yb)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:  # fp16: small gradients would underflow; inf steps skipped
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
        loss_sum += loss.detach()
        correct += (log_probs.detach().argmax(1) == yb).sum()
        if lease is not None:  # fewer threads while other quicknets runs share the cores
            lease.step()
        if bar is not None:
            bar.update(1)
    return loss_sum.item(), correct.item()


def train(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    quiet: bool = False,
    log=print,
    after_epoch=None,
    resume: dict | None = None,
    live_plot: bool = False,
    **settings,
) -> list:
    """Train `model` on `data` in place; return the history, one dict per epoch
    (epoch, epochs, train_loss_sum, train_loss, train_accuracy, [val_loss, val_accuracy],
    seconds). The model keeps the data's preprocessing (model.preprocessing), with the
    temperature fitted on the validation split where the data has one, and ends in eval mode,
    ready for `model(x)`.

    Settings are TrainConfig's fields, given as a config or as keywords (optimizer="sgd", lr=0.01,
    epochs=7, batch_size=64, seed=0, device="auto", patience=3, ...). Unknown or out-of-range
    settings, and a model or data of the wrong kind or shape, raise QuicknetsError before
    anything trains (lr="auto" too: see lr_finder.lr_find and experiment.setup).

    `after_epoch(epoch, model, opt, generator, history, best, scaler)` is called after each
    epoch (the CLI saves a checkpoint there; `best`: the best epoch's weights under early
    stopping, else None; `scaler`: the fp16 GradScaler, else None); `resume` is a checkpoint
    (quicknets.training.checkpoint) to continue from, its epoch numbering included. `live_plot`: in
    Jupyter, the curves redrawn in place after each epoch.
    """
    if config is None:
        config = make(TrainConfig, settings)
    else:
        config = check(config.replace(**settings) if settings else config)
    if config.lr == "auto":  # lr_finder imports this module: it is found by the run's setup
        raise QuicknetsError(
            "lr 'auto' is found when a run is set up (quicknets train --lr "
            "auto, experiment.setup); here find it first: found = "
            "lr_find(model, data, ...), then train(..., lr=found.lr)"
        )
    config = resolve(config)
    return fit(
        model,
        data,
        config,
        quiet=quiet,
        log=log,
        after_epoch=after_epoch,
        resume=resume,
        live_plot=live_plot,
    )


def check_inputs(model, data, config: TrainConfig) -> None:
    """The model and data are what training needs (one clear error, not an AttributeError)."""
    if not isinstance(model, nn.Module):
        raise QuicknetsError(
            f"train needs a network (quicknets.network(...) or any "
            f"nn.Module), not {type(model).__name__}"
        )
    if not isinstance(data, Dataset):
        raise QuicknetsError(
            f"train needs a dataset (quicknets.load_dataset(...)), not {type(data).__name__}"
        )
    if len(data.train_labels) == 0:
        raise QuicknetsError(f"{data.name} has no training images")
    if config.patience and data.val_images is None:
        raise QuicknetsError(
            f"early stopping (patience {config.patience}) watches "
            f"{config.monitor} on a validation set, and {data.name} was loaded "
            "without one: load it with val_split (e.g. 0.1; --val-split)"
        )
    if has_batchnorm(model) and (config.batch_size < 2 or len(data.train_labels) < 2):
        raise QuicknetsError(
            "BatchNorm needs batches of at least 2 images (--batch-size 2 "
            "or more, and 2 or more training images)"
        )
    preprocessing_of(model, data)  # the network's outputs fit the data's classes
    class_weights(config, data)  # the classes it names are the data's
    if getattr(model, "config", None):  # a quicknets network: estimate a batch's memory first
        from quicknets.networks.models import check_memory

        c = model.config
        check_memory(
            c["network"],
            c["activation"],
            c["dropout"],
            c["batchnorm"],
            c["input_shape"],
            c["num_classes"],
            min(config.batch_size, len(data.train_labels)),
            extra=data.train_images.numel() * 4,
        )  # the normalised images, float32


def fit(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig,
    *,
    quiet: bool = False,
    log=print,
    after_epoch=None,
    resume: dict | None = None,
    live_plot: bool = False,
) -> list:
    """The loop, for a checked and resolved config (see `train`). The model ends in eval mode
    (dropout off, BatchNorm on its running statistics), ready for `model(x)`, as after Keras'
    or skorch's fit; the caller's torch thread count and global generator are restored. In MKL's
    strict mode (machine.use_strict_math), as the CLI. Trainings in several threads of one
    process run one at a time (machine.TRAINING), each to the numbers it has alone."""
    check_inputs(model, data, config)
    for note in [] if quiet else recipe_notes(model, config, torch.device(config.device)):
        log(note)
    use_strict_math()  # before the first matrix product: the CLI's numbers
    device = torch.device(config.device)
    weights = class_weights(config, data)  # None: every image weighs the same
    fused = fused_step(model, config, device, weights)  # None: autograd (see fused.py)
    with TRAINING:
        # Other quicknets trainings share the cores through the lease: a run whose numbers do
        # not depend on the thread count gives threads up to them, any other keeps its threads
        # and takes turns with them (machine.CoreLease, machine.turns).
        lease = (
            CoreLease(config.threads, flexible=thread_free(model, config, device))
            if device.type == "cpu"
            else None
        )
        caller_threads = torch.get_num_threads()
        torch.set_num_threads(config.threads)
        try:  # the run's RNG: the caller's global generator is put back afterwards
            with (
                lease or nullcontext(),
                flush_denormals(),
                torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
            ):
                if (
                    lease is not None
                    and lease.crowded > usable_cores() - config.threads
                    and not quiet
                ):
                    log(
                        f"note: the cores are busy with other work ({lease.crowded} other "
                        f"threads ready to run, besides quicknets trainings, which take turns "
                        f"with this one); this run keeps its {config.threads} threads, as its "
                        f"numbers depend on the thread count (convolutions, bf16), "
                        f"and may run many times slower than with --threads 1 while they stay"
                    )
                return _loop(
                    model,
                    data,
                    config,
                    device,
                    quiet,
                    log,
                    after_epoch,
                    resume,
                    live_plot,
                    fused,
                    lease,
                    weights,
                )
        finally:
            torch.set_num_threads(caller_threads)
            model.eval()


def _loop(
    model, data, config, device, quiet, log, after_epoch, resume, plot, fused, lease, weights
) -> list:
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
    scaler = torch.amp.GradScaler(device.type) if config.fp16 else None
    loss_fn = loss_function(config, weights).to(device)
    steps = len(batch_bounds(len(y), config.batch_size, has_batchnorm(model)))
    history, first_epoch, best = [], 1, None  # best: the best epoch's weights (early stopping)
    if resume is not None:  # weights, optimizer moments, RNG states and history as they were
        history, first_epoch = restore(resume, model, opt, generator, scaler)
        best = resume.get("best")
    notebook = not quiet and in_jupyter()
    run_bar = (
        progress_bar((config.epochs - first_epoch + 1) * steps, "training", True)
        if notebook
        else None
    )  # in Jupyter one widget for the run: no pile of finished bars
    handle = start_live_plot() if plot else None
    for epoch in range(first_epoch, config.epochs + 1):
        if history and "stopped" in history[-1]:
            break  # resumed after early stopping had stopped: only restoring the best is left
        start = time.perf_counter()
        bar = run_bar or (None if quiet else progress_bar(steps, f"epoch {epoch}", False))
        loss_sum, correct = train_epoch(
            step_model,
            opt,
            loss_fn,
            x,
            y,
            config.batch_size,
            generator,
            bar,
            config=config,
            first_step=(epoch - 1) * steps,
            total_steps=config.epochs * steps,
            scaler=scaler,
            fused=fused,
            lease=lease,
        )
        if bar is not None and bar is not run_bar:
            bar.close()
        if not math.isfinite(loss_sum):
            raise QuicknetsError(
                f"training diverged in epoch {epoch}: the loss became "
                f"{loss_sum}; try a lower --lr (it was {config.lr})"
            )
        row = {
            "epoch": epoch,
            "epochs": config.epochs,
            "train_loss_sum": loss_sum,
            "train_loss": loss_sum / steps,
            "train_accuracy": correct / len(y),
        }
        if data.val_images is not None:
            scores = evaluate(model, data, "val")
            row["val_loss"], row["val_accuracy"] = scores["loss"], scores["accuracy"]
        row["seconds"] = time.perf_counter() - start
        if config.patience and note_early_stopping(history, row, config):  # a new best
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}  # on device
        history.append(row)
        if not quiet:
            log(format_epoch(row))
        if handle is not None:
            update_live_plot(handle, history)
        if after_epoch is not None:
            after_epoch(epoch, model, opt, generator, history, best, scaler)
    if run_bar is not None:
        run_bar.close()
    if best is not None:  # early stopping: the model ends with its best epoch's weights
        model.load_state_dict(best)
        best_epoch = history[-1]["best_epoch"]
        if not quiet and best_epoch != history[-1]["epoch"]:
            log(
                f"restored: the weights of epoch {best_epoch} ({config.monitor} "
                f"{history[best_epoch - 1][config.monitor]:.4f})"
            )
    if data.val_images is not None and len(data.val_labels):  # the kept weights' temperature
        set_temperature(model, data)
    return history
