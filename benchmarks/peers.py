"""One epoch of the notebook's task in quicknets and in its peers, side by side.

    pip install -e ".[peers]"     # skorch, fastai, pytorch-lightning, keras (torch unchanged)
    PYTHONPATH=src python benchmarks/peers.py --rounds 3 --threads 2
    PYTHONPATH=src python benchmarks/peers.py --contenders quicknets plain keras --limit 50

The task, the same for all: Fashion-MNIST's 60,000 training images (the Debian package's IDX
files), normalised with mean 0.5 and std 0.5; the 784-256-128-64-10 ReLU MLP; NLL of the
log-probabilities; Adam at lr 0.003 (betas 0.9/0.999, no weight decay); batches of 64 in a fresh
shuffled order each epoch. Each contender runs in a fresh child process per round (imports,
threads and allocator state do not leak), all of them one after another in each round, the
order rotated by one place each round. Every child sets `torch.set_num_threads(--threads)` and
runs with OMP_NUM_THREADS and MKL_NUM_THREADS set the same, seeds python's, numpy's and torch's
generators with the round's seed (0, 1, ...), and trains two epochs.

Timing rule, the same for all: the first epoch is the warm-up; the time reported is the wall
time from the end of the first epoch to the end of the second, as the library's own end-of-epoch
hook sees it (a callback, or the loop itself), so it holds everything the library does once per
epoch. Each child also reports the second epoch's mean training loss (over its batches; skorch and
Keras report their own figure, weighted by batch size) and the test accuracy after it, so a
contender doing something else shows up; and the threads torch had at the end of the epoch.

The contenders, each on its library's usual path:
- quicknets: `quicknets.train(network("784-256-128-64-10"), load_dataset("fashion-mnist"),
  epochs=2, threads=N, device="cpu")`, the notebook's settings (its defaults), timed by its
  `after_epoch` hook; with MKL's strict mode (MKL_CBWR=AUTO,STRICT) that the `quicknets`
  command and train() use (machine.use_strict_math), so the fused pass runs as it does there.
  With that mode its run is thread-invariant, so its core lease may take fewer threads than
  asked while the run queue shows other work (machine.CoreLease): on a busy machine it may run
  at 1 thread where the others keep N. The `threads` column and a note at the end show it.
- plain: the loop everyone writes: the normalised tensors in memory, `torch.randperm` batches,
  `nn.Sequential`, `torch.optim.Adam` (its default, not fused), zero_grad / backward / step.
- notebook: the notebook's own pipeline from benchmarks/notebook.py: torchvision FashionMNIST +
  ToTensor + Normalize + DataLoader(batch_size=64, shuffle=True), its loop.
- skorch: `NeuralNetClassifier(module, criterion=NLLLoss, optimizer=torch.optim.Adam, lr=0.003,
  batch_size=64, max_epochs=2, train_split=None, iterator_train__shuffle=True, verbose=0)` on
  the numpy arrays. skorch's classifier takes the log of the module's output itself ("the module
  should return probabilities"), so its module ends in Softmax instead of LogSoftmax: the same
  loss. skorch does not shuffle by default, hence iterator_train__shuffle.
- fastai: `DataLoaders.from_dsets` over TensorDatasets (fastai's TfmdDL, bs=64, the training
  set shuffled, drop_last=False to keep all 60,000 images), `Learner(dls, model,
  loss_func=nn.NLLLoss(), opt_func=partial(Adam, sqr_mom=0.999, eps=1e-8, wd=0))` (fastai's own
  Adam at torch's defaults: its own defaults are beta2 0.99, eps 1e-5 and weight decay 0.01),
  `fit(2, lr=0.003)` (plain fit, no one-cycle), quiet: `learn.no_logging()`, and no progress bar
  (`fastai.basics` does not load one). The task has no validation set; fastai wants one, so it
  gets an empty one. TfmdDL loads batches in worker processes by default (one per usable core,
  at most 16: 2 on a 2-core machine, sharing the cores with the training's threads); kept, as
  fastai's users get it.
- lightning: a LightningModule (`training_step` logging its loss per epoch with `self.log`, as
  the docs do; `configure_optimizers` returning torch Adam 0.003), `Trainer(max_epochs=2,
  accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
  enable_progress_bar=False, enable_model_summary=False)` over `DataLoader(TensorDataset,
  batch_size=64, shuffle=True)`. pytorch-lightning, not the `lightning` package: the same Trainer.
- keras: Keras 3 with KERAS_BACKEND=torch: `keras.Sequential` of Dense 256/128/64 (ReLU) and 10
  (softmax), `sparse_categorical_crossentropy`, `Adam(learning_rate=0.003, epsilon=1e-8)`,
  `fit(x, y, batch_size=64, epochs=2, verbose=0)`; its initial weights are Keras's (Glorot).

A contender whose library is not installed is skipped with one line. `--limit N` trains every
contender on the first N batches' images only: for a quick check that everything runs, not for
numbers. Installed with torch 2.14.1 unchanged: skorch 1.4.0, fastai 2.8.12, pytorch-lightning
2.6.6, keras 3.15.1.
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

CONTENDERS = ("quicknets", "plain", "notebook", "skorch", "fastai", "lightning", "keras")
NEEDS = {
    "skorch": "skorch",
    "fastai": "fastai",
    "lightning": "pytorch_lightning",
    "keras": "keras",
}  # contender -> the module it imports (the rest need torch only)
EPOCHS = 2  # the first is the warm-up; the second is timed
BATCH = 64
LR = 0.003  # Adam's learning rate, the notebook's


# ---- the children: one contender, one seed, one process ----


def mlp(last=None):
    """The notebook's network; `last` replaces its LogSoftmax (skorch wants probabilities)."""
    from torch import nn

    return nn.Sequential(
        nn.Linear(784, 256),
        nn.ReLU(),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
        last or nn.LogSoftmax(dim=1),
    )


def tensors(limit: int) -> tuple:
    """(x, y, x_test, y_test): normalised float images (N, 784) and int64 labels, as quicknets
    loads and normalises them; the training set cut to `limit` batches (0: all)."""
    from quicknets.data.loading import load_dataset

    data = load_dataset("fashion-mnist")
    n = limit * BATCH if limit else len(data.train_labels)
    x = data.preprocessing.normalize(data.train_images[:n]).reshape(-1, 784)  # (N, 784)
    xt = data.preprocessing.normalize(data.test_images).reshape(-1, 784)
    return x, data.train_labels[:n], xt, data.test_labels


def module_accuracy(model, xt, yt) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        return (model(xt).argmax(1) == yt).float().mean().item()


def run_quicknets(seed, limit, ends):
    import torch

    import quicknets
    from quicknets.data.loading import load_dataset
    from quicknets.evaluation.metrics import evaluate

    data = load_dataset("fashion-mnist")
    if limit:
        data.train_images, data.train_labels = (
            data.train_images[: limit * BATCH],
            data.train_labels[: limit * BATCH],
        )
    model = quicknets.network("784-256-128-64-10", seed=seed)
    threads = []
    history = quicknets.train(
        model,
        data,
        epochs=EPOCHS,
        seed=seed,
        device="cpu",
        quiet=True,
        threads=torch.get_num_threads(),
        after_epoch=lambda *a: (
            ends.append(time.perf_counter()),
            threads.append(torch.get_num_threads()),
        ),
    )
    return (
        history[-1]["train_loss"],
        evaluate(model, data, "test")["accuracy"],
        {"quicknets": f"{quicknets.__version__} ({os.path.dirname(quicknets.__file__)})"},
        threads[-1],
    )


def run_plain(seed, limit, ends):
    import torch
    from torch import nn

    x, y, xt, yt = tensors(limit)
    model, criterion = mlp(), nn.NLLLoss()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    for _epoch in range(EPOCHS):
        model.train()
        order, total, batches = torch.randperm(len(y)), 0.0, 0
        for start in range(0, len(y), BATCH):
            idx = order[start : start + BATCH]
            opt.zero_grad()
            loss = criterion(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total, batches = total + loss.item(), batches + 1
        ends.append(time.perf_counter())
    return total / batches, module_accuracy(model, xt, yt), {}, torch.get_num_threads()


def run_notebook(seed, limit, ends):
    import notebook  # benchmarks/notebook.py: the notebook's own pieces
    import torch
    import torchvision

    trainloader, testloader = notebook.loaders(notebook.make_root())
    if limit:
        subset = torch.utils.data.Subset(trainloader.dataset, range(limit * BATCH))
        trainloader = torch.utils.data.DataLoader(subset, batch_size=BATCH, shuffle=True)
    model, criterion, optimizer = notebook.model_and_optimizer()
    for _epoch in range(EPOCHS):
        model.train()
        loss_sum = notebook.train_epoch(model, criterion, optimizer, trainloader)
        ends.append(time.perf_counter())
    return (
        loss_sum / len(trainloader),
        notebook.test_accuracy(model, testloader),
        {"torchvision": torchvision.__version__},
        torch.get_num_threads(),
    )


def run_skorch(seed, limit, ends):
    import skorch
    import torch
    from skorch.callbacks import Callback
    from torch import nn

    class Clock(Callback):
        def on_epoch_end(self, net, **kwargs):
            ends.append(time.perf_counter())

    x, y, xt, yt = tensors(limit)
    net = skorch.NeuralNetClassifier(
        mlp(nn.Softmax(dim=1)),
        criterion=nn.NLLLoss,
        optimizer=torch.optim.Adam,
        lr=LR,
        batch_size=BATCH,
        max_epochs=EPOCHS,
        train_split=None,
        iterator_train__shuffle=True,
        callbacks=[Clock()],
        device="cpu",
        verbose=0,
    )
    net.fit(x.numpy(), y.numpy())
    accuracy = float((net.predict(xt.numpy()) == yt.numpy()).mean())
    return (
        net.history[-1]["train_loss"],
        accuracy,
        {"skorch": skorch.__version__},
        torch.get_num_threads(),
    )


def run_fastai(seed, limit, ends):
    from functools import partial

    import fastai
    import torch
    from fastai.basics import Adam, Callback, DataLoaders, Learner  # as `import *` users have it
    from torch import nn
    from torch.utils.data import TensorDataset

    class Clock(Callback):  # fastai's Recorder keeps a smoothed loss, not the epoch's mean
        def before_train(self):
            self.total, self.batches = 0.0, 0

        def after_batch(self):
            if self.training:
                self.total, self.batches = self.total + self.learn.loss.item(), self.batches + 1

        def after_epoch(self):
            ends.append(time.perf_counter())
            self.mean_loss = self.total / self.batches

    x, y, xt, yt = tensors(limit)
    dls = DataLoaders.from_dsets(
        TensorDataset(x, y), TensorDataset(x[:0], y[:0]), bs=BATCH, drop_last=False, device="cpu"
    )  # empty: no validation set
    clock = Clock()
    learn = Learner(
        dls,
        mlp(),
        loss_func=nn.NLLLoss(),
        cbs=[clock],
        opt_func=partial(Adam, sqr_mom=0.999, eps=1e-8, wd=0.0),
    )
    with learn.no_logging():  # no per-epoch table; fastai.basics loads no progress bar
        learn.fit(EPOCHS, lr=LR)
    return (
        clock.mean_loss,
        module_accuracy(learn.model, xt, yt),
        {"fastai": fastai.__version__},
        torch.get_num_threads(),
    )


def run_lightning(seed, limit, ends):
    import pytorch_lightning as pl
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, self.loss_fn = mlp(), nn.NLLLoss()

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            loss = self.loss_fn(self.net(xb), yb)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=LR)

    class Clock(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            ends.append(time.perf_counter())

    x, y, xt, yt = tensors(limit)
    model = Classifier()
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Clock()],
    )
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True))
    return (
        trainer.callback_metrics["train_loss"].item(),
        module_accuracy(model.net, xt, yt),
        {"pytorch-lightning": pl.__version__},
        torch.get_num_threads(),
    )


def run_keras(seed, limit, ends):
    import keras
    import torch

    if keras.backend.backend() != "torch":
        raise RuntimeError(
            f"Keras runs on {keras.backend.backend()}, not torch "
            "(KERAS_BACKEND=torch; Keras 3 needed)"
        )
    keras.utils.set_random_seed(seed)
    x, y, xt, yt = (t.numpy() for t in tensors(limit))
    losses = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            ends.append(time.perf_counter())
            losses.append(logs["loss"])

    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LR, epsilon=1e-8),
        loss="sparse_categorical_crossentropy",
    )
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=True, verbose=0, callbacks=[Clock()])
    accuracy = float((model.predict(xt, batch_size=1000, verbose=0).argmax(1) == yt).mean())
    return losses[-1], accuracy, {"keras": keras.__version__}, torch.get_num_threads()


def child(name: str, seed: int, threads: int, limit: int) -> None:
    """Train contender `name` and print one `result:` line (JSON) for the parent."""
    import random

    import numpy as np
    import torch

    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    ends = []
    loss, accuracy, versions, threads_seen = globals()[f"run_{name}"](seed, limit, ends)
    if len(ends) != EPOCHS:
        raise RuntimeError(f"saw {len(ends)} epoch ends, not {EPOCHS}")
    print(
        "result: "
        + json.dumps(
            {
                "seconds": ends[1] - ends[0],
                "loss": float(loss),
                "accuracy": float(accuracy),
                "threads": threads_seen,
                "versions": {"torch": torch.__version__, **versions},
            }
        )
    )


# ---- the parent: rounds of children, then medians ----


def run_child(name: str, seed: int, threads: int, limit: int) -> dict:
    """One child's result, or {"error": its last line of stderr}."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if name == "keras":
        env["KERAS_BACKEND"] = "torch"
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            name,
            "--seed",
            str(seed),
            "--threads",
            str(threads),
            "--limit",
            str(limit),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    for line in reversed(done.stdout.splitlines()):
        if done.returncode == 0 and line.startswith("result: "):
            return json.loads(line[len("result: ") :])
    last = [line for line in done.stderr.splitlines() if line.strip()]
    return {"error": last[-1] if last else f"exit status {done.returncode}, no output"}


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, as the quicknets command does
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args():
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in every child")
    parser.add_argument(
        "--contenders",
        nargs="+",
        default=list(CONTENDERS),
        metavar="NAME",
        help=f"a subset of: {' '.join(CONTENDERS)}",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=0,
        help="train on the first N batches only (a quick check; 0: all)",
    )
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    if not 1 <= args.threads <= cores:
        parser.error(
            f"--threads must be 1 to {cores} (the cores this process may use), not {args.threads}"
        )
    if args.limit < 0:
        parser.error(f"--limit must be 0 (all) or more, not {args.limit}")
    unknown = [c for c in args.contenders if c not in CONTENDERS]
    if unknown:
        parser.error(f"unknown contender {unknown[0]!r}; choose from {' '.join(CONTENDERS)}")
    args.contenders = list(dict.fromkeys(args.contenders))  # each once, in the order given
    return args


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    args = parse_args()
    if args.child:
        return child(args.child, args.seed, args.threads, args.limit)
    names = []
    for name in args.contenders:
        if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
            print(
                f"{name}: skipped, {NEEDS[name]} is not installed in {sys.executable} "
                '(pip install -e ".[peers]")'
            )
        else:
            names.append(name)
    if not names:
        print("error: no contender left to run", file=sys.stderr)
        sys.exit(1)
    print(
        f"threads: {args.threads} in every child  rounds: {args.rounds}  timed: epoch 2 of "
        f"{EPOCHS}  images: {args.limit * BATCH if args.limit else 60000}  MKL_CBWR: quicknets "
        f"AUTO,STRICT, the others {os.environ.get('MKL_CBWR', '(unset)')}  "
        f"load at start: {load()}",
        flush=True,
    )
    results = {name: [] for name in names}
    versions = {}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # each starts a round in turn
        for name in order:
            res = run_child(name, r, args.threads, args.limit)
            if "error" in res:
                print(f"round {r + 1}/{args.rounds}  {name:<10} failed: {res['error']}", flush=True)
                continue
            results[name].append(res)
            versions.update(res["versions"])
            print(
                f"round {r + 1}/{args.rounds}  {name:<10} {res['seconds']:7.3f} s  loss "
                f"{res['loss']:.4f}  accuracy {res['accuracy']:.4f}  threads {res['threads']}"
                f"  (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    print(f"load at end: {load()}")
    med = {n: statistics.median(x["seconds"] for x in v) for n, v in results.items() if v}
    base = med.get("quicknets")
    print("medians (seconds of one epoch; ratio to quicknets; loss; test accuracy):")
    for name in names:
        if name not in med:
            print(f"  {name:<10} no result")
            continue
        runs = results[name]
        ratio = f"{med[name] / base:5.2f}x" if base else "    -"
        print(
            f"  {name:<10} {med[name]:7.3f} s  {ratio}  loss "
            f"{statistics.median(x['loss'] for x in runs):.4f}  accuracy "
            f"{statistics.median(x['accuracy'] for x in runs):.4f}  ({len(runs)} of "
            f"{args.rounds} rounds; {min(x['seconds'] for x in runs):.3f}-"
            f"{max(x['seconds'] for x in runs):.3f} s)"
        )
    for name, runs in results.items():
        fewer = [x["threads"] for x in runs if x["threads"] != args.threads]
        why = " (its lease yields to other work on the cores)" if name == "quicknets" else ""
        if fewer:
            print(
                f"note: {name} had {min(fewer)} threads, not {args.threads}, at the end of "
                f"its timed epoch in {len(fewer)} of {len(runs)} rounds{why}"
            )
    print(
        f"versions: python {sys.version.split()[0]}  "
        + "  ".join(f"{k} {v}" for k, v in versions.items())
    )


if __name__ == "__main__":
    main()
