"""Checkpoints for exact resume: weights, optimizer state, epoch, RNG states and history.

    save_checkpoint(path, epoch, model, opt, generator, history, best, scaler, config)
    state = load_checkpoint(path)                                  # weights only: no code runs
    check_trained_with(state, config_from_the_record)   # a hand-edited config.json: an error
    history, next_epoch = restore(state, model, opt, generator, scaler)   # inside train()
    state["best"]                                    # the best epoch's weights (early stopping)

Restoring puts back everything the next epoch depends on: the weights, the optimizer's moments
and step counts, the shuffling generator and the global torch RNG (dropout masks), the fp16
gradient scaler's scale, and for early stopping the best epoch's weights (the rest of its state,
the best epoch and the epochs waited, follows from the history), so a resumed
run repeats the uninterrupted one number for number on the same device and thread count. A
checkpoint is written to a temporary file and renamed, so a crash while saving leaves the previous
one intact; a truncated or foreign file is reported, never loaded half-way. It also holds the
run config it was trained with, so a config.json edited since is refused on resume rather than
recorded as settings the run was not trained with.
"""

from pathlib import Path

import torch

from quicknets.base.errors import QuicknetsError
from quicknets.base.storage import atomic_torch_save, load_refusal

FORMAT = 1  # bumped when the layout below changes


def save_checkpoint(
    path,
    epoch: int,
    model,
    opt,
    generator: torch.Generator,
    history: list,
    best: dict | None = None,
    scaler=None,
    config: dict | None = None,
    rng: torch.Tensor | None = None,
) -> None:
    """Everything needed to continue after `epoch` (1-based, completed). `best`: the best
    epoch's weights under early stopping; `scaler`: the fp16 GradScaler; `config`: the run
    config trained with (RunConfig.to_dict()); `rng`: the dropout generator's state where it is
    not torch's global one (a variant of a stack, stacked.py), restored as the global one."""
    state = {
        "format": FORMAT,
        "epoch": epoch,
        # clone: a stacked variant's weights are views, and a view saves its whole storage
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "generator": generator.get_state(),  # shuffling order of the next epochs
        "torch_rng": torch.get_rng_state() if rng is None else rng,  # dropout masks on the CPU
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "threads": torch.get_num_threads(),  # floating-point sums depend on it
        "history": history,
        "best": {k: v.detach().cpu() for k, v in best.items()} if best is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "config": config,
    }
    atomic_torch_save(state, path, parents=False)  # never recreates a removed run


def load_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise QuicknetsError(
            f"no checkpoint at {path}: the run stopped before its first epoch ended; train it again"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holding code
        raise QuicknetsError(
            f"checkpoint {path} is corrupt or foreign, not loaded: {load_refusal(e)}"
        ) from None
    missing = {"format", "epoch", "model", "optimizer", "generator", "torch_rng", "history"} - set(
        state if isinstance(state, dict) else ()
    )
    if missing or state["format"] != FORMAT:
        raise QuicknetsError(
            f"checkpoint {path} is not a quicknets checkpoint of format "
            f"{FORMAT} (missing {', '.join(sorted(missing)) or 'nothing'})"
        )
    return state


def check_trained_with(state: dict, config, run: str = "the run") -> None:
    """Raise a QuicknetsError naming every setting in which `config` (the record's RunConfig)
    differs from the one the checkpoint was trained with, except configs.MAY_CHANGE: a
    config.json edited after the run started (configs.changed_since). A checkpoint from before
    configs were kept in it is not checked."""
    if not state.get("config"):
        return
    from quicknets.config.configs import changed_since

    changed = changed_since(state["config"], config, run, kept="checkpoint.pt")
    if changed:
        raise QuicknetsError(
            f"{changed}; put config.json back to resume (a record must hold the settings it "
            "was trained with), or train a new run"
        )


def restore(state: dict, model, opt, generator: torch.Generator, scaler=None) -> tuple:
    """Load a checkpoint into the model, optimizer, RNGs and fp16 scaler; return (history,
    next epoch). The best weights (early stopping) stay in state["best"], on the CPU."""
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise QuicknetsError(
            f"the checkpoint does not fit this network or optimizer: {str(e).splitlines()[0]}"
        ) from None
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return list(state["history"]), state["epoch"] + 1
