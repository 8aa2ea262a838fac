"""The one vocabulary of metric names, each with its direction; no torch, so a sweep's parent
process, `runs` and `compare` rank and check names without importing it (~2 s).

    METRICS["val_accuracy"]                    # "max": higher is better
    metric_name("val_acc")                     # "val_accuracy": an earlier record's name
    higher_is_better("test_loss")              # False
    metric_range("test_loss")                  # (0.0, inf): the values it can take

metrics.py measures them (evaluate); this module only names them.
"""

import math

from quicknets.base.errors import QuicknetsError

# Every metric a run reports: name -> the direction that is better. A split's results hold
# "loss" and "accuracy"; the history, the index, sweeps and comparisons prefix the split.
METRICS = {
    "test_accuracy": "max",
    "test_loss": "min",
    "test_balanced_accuracy": "max",  # the mean of the per-class accuracies (class weights)
    "test_ece": "min",  # of the probabilities the model reports (after its temperature)
    "val_accuracy": "max",
    "val_loss": "min",
    "train_accuracy": "max",
    "train_loss": "min",
    "train_loss_sum": "min",
    "seconds": "min",
    "mean_corruption_accuracy": "max",  # robustness.py, written by `evaluate --robustness`
}
# The values each metric can take, (low, high): accuracies and the ECE are fractions; a loss
# (cross-entropy, with label smoothing or class weights too) and a time are never negative. A
# confidence interval of a mean over seeds is clipped to them (significance.summarize).
FRACTION, NOT_NEGATIVE = (0.0, 1.0), (0.0, math.inf)
RANGES = {
    "test_accuracy": FRACTION,
    "test_loss": NOT_NEGATIVE,
    "test_balanced_accuracy": FRACTION,
    "test_ece": FRACTION,
    "val_accuracy": FRACTION,
    "val_loss": NOT_NEGATIVE,
    "train_accuracy": FRACTION,
    "train_loss": NOT_NEGATIVE,
    "train_loss_sum": NOT_NEGATIVE,
    "seconds": NOT_NEGATIVE,
    "mean_corruption_accuracy": FRACTION,
}
# Written into a finished record after training (by `quicknets evaluate RUN --robustness`), so
# no training reports them: runs and compare sort by them, a sweep cannot rank by them.
AFTER_TRAINING = ("mean_corruption_accuracy",)
OLD_NAMES = {
    "test_acc": "test_accuracy",
    "val_acc": "val_accuracy",
    "train_acc": "train_accuracy",
}  # written by earlier versions; still read


def metric_name(name: str) -> str:
    """The metric's name in METRICS (old names accepted); unknown names are an error
    (QuicknetsError)."""
    name = OLD_NAMES.get(name, name)
    if name not in METRICS:
        raise QuicknetsError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    return name


def higher_is_better(name: str) -> bool:
    """True for a metric whose larger values are better (accuracy), False for a loss;
    QuicknetsError for an unknown name."""
    return METRICS[metric_name(name)] == "max"


def metric_range(name: str) -> tuple:
    """(low, high): the values metric `name` can take (RANGES; old names accepted), or
    (-inf, inf) for a name that is none of ours (a value whose range is not known)."""
    return RANGES.get(OLD_NAMES.get(name, name), (-math.inf, math.inf))


def upgrade_history(history: list) -> list:
    """A recorded history with the current metric names (records before format 2 said
    train_acc and val_acc)."""
    return [
        {OLD_NAMES.get(k, k): v for k, v in row.items()} if isinstance(row, dict) else row
        for row in history
    ]
