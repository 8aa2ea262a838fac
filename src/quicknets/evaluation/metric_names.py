"""The one vocabulary of metric names, each with its direction; no torch, so a sweep's parent
process, `runs` and `compare` rank and check names without importing it (~2 s).

    METRICS["val_accuracy"]                    # "max": higher is better
    metric_name("val_acc")                     # "val_accuracy": an earlier record's name
    higher_is_better("test_loss")              # False

metrics.py measures them (evaluate); this module only names them.
"""

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


def upgrade_history(history: list) -> list:
    """A recorded history with the current metric names (records before format 2 said
    train_acc and val_acc)."""
    return [
        {OLD_NAMES.get(k, k): v for k, v in row.items()} if isinstance(row, dict) else row
        for row in history
    ]
