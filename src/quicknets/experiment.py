"""One recorded training run, start to finish: what `quicknets train` and every sweep trial do.

    config = {"data": asdict(DataConfig()), "model": asdict(ModelConfig()), "train": asdict(...)}
    path, results = run_experiment(config, runs_dir="runs")
    path, results = resume_experiment("mlp-256-128-64_adam_lr0.003_s0-1a2b3c")   # after a kill

The run folder is created before the first epoch; after each epoch the checkpoint, the history
and the index row are updated, so a run killed at any moment resumes from its last finished epoch
and ends with the numbers it would have had. Ctrl-C keeps that checkpoint, marks the run
interrupted and says how to resume it.
"""
import dataclasses
import sys

from quicknets.config import TrainConfig, make
from quicknets.errors import QuicknetsError
from quicknets.runs import (CHECKPOINT_FILE, find_run, finish_run, is_finished, mark, start_run,
                            training_pid)
from quicknets.storage import atomic_write_json


def prepare(config: dict, data=None, model=None):
    """The seeded initial network and the dataset for a run config (or the ones given)."""
    import torch
    from quicknets.data import dataset_info, load_recorded
    from quicknets.models import network
    d, m, t = config["data"], config["model"], config["train"]
    if model is None:
        torch.manual_seed(t["seed"])  # the initial weights
        model = network(m["model"], m["activation"], m["dropout"], m["batchnorm"],
                        num_classes=len(dataset_info(d["dataset"]).classes),
                        flip_tta=m.get("flip_tta", False))
    if data is None:
        data = load_recorded(config)
    return model, data


def epoch_saver(path, loggers=(), report=None):
    """The after_epoch step of a recorded run: checkpoint, history, index, loggers, report."""
    from quicknets.checkpoint import save_checkpoint

    def after_epoch(epoch, model, opt, generator, history):
        save_checkpoint(path / CHECKPOINT_FILE, epoch, model, opt, generator, history)
        atomic_write_json(path / "history.json", history)  # progress, readable while training
        mark(path, "running", epoch)
        for logger in loggers:
            logger.log(history[-1], epoch)
        if report is not None:
            report(epoch, history[-1])  # an Optuna trial's pruning check; may raise TrialPruned
    return after_epoch


def _train_recorded(path, model, data, train_cfg, *, quiet, log, log_to, report, resume=None):
    """Train with checkpoints into the existing run folder `path`, test, and finish the record."""
    from quicknets.loggers import open_loggers
    from quicknets.metrics import evaluate
    from quicknets.training import train
    config = load_config(path)
    loggers = open_loggers(log_to, path, config)
    try:
        history = train(model, data, train_cfg, quiet=quiet, log=log, resume=resume,
                        after_epoch=epoch_saver(path, loggers, report))
    except KeyboardInterrupt:
        mark(path, "interrupted")
        print(f"interrupted: {path.name} keeps its last finished epoch; continue it with "
              f"`quicknets train --resume {path.name}`", file=sys.stderr)
        raise
    except BaseException as e:
        # pruned by Optuna (resumable like any stopped run), diverged, or failed
        mark(path, "pruned" if type(e).__name__ == "TrialPruned" else "failed")
        raise
    finally:
        for logger in loggers:
            logger.close()
    results = evaluate(model, data)
    finish_run(path, model, history, results)
    return results


def load_config(path) -> dict:
    import json
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise QuicknetsError(f"{path / 'config.json'} is unreadable ({e})") from None


def run_experiment(config: dict, runs_dir=None, *, data=None, model=None, quiet=False,
                   log=print, log_to=(), sweep=None, report=None, on_start=None) -> tuple:
    """Build (unless given), train (checkpointing each epoch), test and record one run:
    (path, results). `on_start(path)` is told the run folder before training begins."""
    from quicknets.data import describe
    from quicknets.training import resolve
    model, data = prepare(config, data, model)
    config["model"]["spec"] = model.config["spec"]
    train_cfg = resolve(make(TrainConfig, config["train"]))  # record the threads and device used
    config["train"] = dataclasses.asdict(train_cfg)
    path = start_run(config, describe(data), runs_dir, sweep=sweep)
    if on_start is not None:
        on_start(path)
    results = _train_recorded(path, model, data, train_cfg, quiet=quiet, log=log,
                              log_to=log_to, report=report)
    return path, results


def resume_experiment(ref, runs_dir=None, *, threads=None, device=None, data_dir=None,
                      quiet=False, log=print, log_to=()) -> tuple:
    """Continue a stopped run from its checkpoint, in the same folder: (path, results)."""
    from quicknets.checkpoint import load_checkpoint
    path = find_run(ref, runs_dir)
    if is_finished(path):
        raise QuicknetsError(f"run {path.name} is finished; a finished record stays as it is "
                             f"(train a new run to train longer)")
    pid = training_pid(path)
    if pid is not None:  # two processes would write one record
        raise QuicknetsError(f"run {path.name} is still training (process {pid}); resume it "
                             f"once it has stopped")
    state = load_checkpoint(path / CHECKPOINT_FILE)
    config = load_config(path)
    if data_dir:
        config["data"]["data_dir"] = data_dir  # where the files are now; the data is the same
    train_cfg = make(TrainConfig, config["train"])
    # Same thread count as before unless asked: float sums, hence the numbers, depend on it.
    train_cfg = dataclasses.replace(train_cfg, threads=threads or train_cfg.threads
                                    or state.get("threads", 0),
                                    device=device or train_cfg.device)
    model, data = prepare(config)
    if not quiet:
        log(f"resuming {path.name} after epoch {state['epoch']} of {train_cfg.epochs}")
    mark(path, "running", state["epoch"])
    results = _train_recorded(path, model, data, train_cfg, quiet=quiet, log=log,
                              log_to=log_to, report=None, resume=state)
    return path, results
