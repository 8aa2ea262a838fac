"""The trust figures: each a Figure made without pyplot, drawing the numbers it is given."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from quicknets.base.errors import QuicknetsError
from quicknets.plots.trust import plot_familiarity, plot_reliability, plot_robustness


def test_reliability_diagram_draws_each_bin():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(300, 4, generator=g) * 2, 1)
    labels = torch.randint(0, 4, (300,), generator=g)
    fig = plot_reliability(probs, labels, bins=10)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    top, bottom = fig.axes
    shares = [p.get_height() for p in bottom.patches]
    assert len(shares) == 10 and sum(shares) == pytest.approx(1.0)
    assert "ECE" in top.get_title()
    assert fig.canvas.manager is None  # made without pyplot (its figures have a manager)


def test_familiarity_histogram_and_robustness_curves():
    fig = plot_familiarity(
        np.random.default_rng(0).normal(size=100), {"noise": [-3.0, -2.5]}, threshold=-1.0
    )
    assert sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts()) == [
        "noise",
        "test images",
        "threshold",
    ]
    with pytest.raises(QuicknetsError, match="no familiarity scores"):
        plot_familiarity([], {"noise": [1.0]})
    result = {
        "severities": [0, 1, 2],
        "accuracy": {"rotate": [0.9, 0.5, 0.2], "stripe": [0.9, 0.8, 0.7]},
        "mean_corruption_accuracy": 0.55,
    }
    ax = plot_robustness(result).axes[0]
    assert [list(line.get_ydata()) for line in ax.lines] == [[0.9, 0.5, 0.2], [0.9, 0.8, 0.7]]
    assert "0.5500" in ax.get_title()
    with pytest.raises(QuicknetsError, match="not a robustness result"):
        plot_robustness({"accuracy_by": {}})
