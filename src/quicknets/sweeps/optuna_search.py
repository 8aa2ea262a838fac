"""The Optuna search of `quicknets sweep --search optuna`: what TPE proposes, and pruning.

    trial = study.ask()
    overrides = suggest(trial, search.space)         # lr=..., network=... from the ranges
    check = pruning_check(trial, "val_accuracy")     # after each epoch: report, maybe prune

TPE proposes each trial's settings from the trials before it; a trial trains one recorded run
per seed, and the first seed's per-epoch score feeds the median pruner, which stops hopeless
trials from their second epoch on (their runs stay, marked pruned and resumable). The study
itself, shared by every worker, and the loop that takes trials from it are in study.py.
"""

from quicknets.evaluation.metric_names import higher_is_better
from quicknets.sweeps.space import PER_EPOCH, Range

FIRST_PRUNABLE_EPOCH = 2  # a trial's first epoch is never judged (the README says so)


def make_pruner():
    """Median pruning after 3 finished trials, never in a trial's first epoch: epochs are
    reported as steps 1, 2, ..., and Optuna prunes from step n_warmup_steps on."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=FIRST_PRUNABLE_EPOCH)


def suggest(trial, space: dict) -> dict:
    """A trial's settings from the space: a list is categorical, a Range an int or float
    interval. A queued trial (a grid's or random search's, or a retry) gets its fixed values."""
    out = {}
    for key, values in space.items():
        if isinstance(values, Range):
            if isinstance(values.low, int) and isinstance(values.high, int):
                out[key] = trial.suggest_int(key, values.low, values.high, log=values.log)
            else:
                out[key] = trial.suggest_float(key, values.low, values.high, log=values.log)
        else:
            out[key] = trial.suggest_categorical(key, values)
    return out


def pruning_check(trial, metric: str):
    """Feed the per-epoch score to the pruner: the metric itself when every epoch records it
    (validation, training), else the training metric of the same direction (the test set is
    never looked at during training)."""
    import optuna

    key = (
        metric
        if metric in PER_EPOCH
        else "train_accuracy"
        if higher_is_better(metric)
        else "train_loss"
    )

    def check(epoch, row):
        trial.report(row[key], epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}: {key} {row[key]:.4f}")

    return check
