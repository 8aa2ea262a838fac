"""The metric vocabulary: every name's direction, earlier names, and no torch to ask it."""

import math
import subprocess
import sys

import pytest

from quicknets.base.errors import QuicknetsError
from quicknets.evaluation.metric_names import (
    METRICS,
    RANGES,
    higher_is_better,
    metric_name,
    metric_range,
    upgrade_history,
)


def test_every_metric_declares_its_direction():
    assert set(METRICS.values()) == {"max", "min"}
    assert higher_is_better("test_accuracy") and higher_is_better("val_acc")  # old name read
    assert not higher_is_better("val_loss") and not higher_is_better("seconds")
    assert metric_name("train_acc") == "train_accuracy"
    with pytest.raises(QuicknetsError, match="unknown metric 'accuracy_top5'"):
        metric_name("accuracy_top5")


def test_every_metric_declares_the_values_it_can_take():
    assert RANGES.keys() == METRICS.keys()
    for name in METRICS:
        low, high = metric_range(name)
        assert low == 0.0 and high == (1.0 if "accuracy" in name or "ece" in name else math.inf)
    assert metric_range("val_acc") == (0.0, 1.0)  # an old name
    assert metric_range("my_score") == (-math.inf, math.inf)  # none of ours: no range known


def test_old_histories_read_with_todays_names():
    old = [{"epoch": 1, "train_acc": 0.5, "val_acc": 0.4, "val_loss": 1.0}]
    assert upgrade_history(old) == [
        {"epoch": 1, "train_accuracy": 0.5, "val_accuracy": 0.4, "val_loss": 1.0}
    ]


def test_the_names_need_no_torch():
    code = (
        "import sys; from quicknets.evaluation.metric_names import higher_is_better; "
        "higher_is_better('val_loss'); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "False\n", out.stderr
