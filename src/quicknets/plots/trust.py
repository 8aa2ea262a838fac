"""Figures of how far a network can be trusted; each returns its Figure (plots/figures.py's style).

    plot_reliability(probs, labels)               # reliability diagram, ECE in the title
    plot_familiarity(test_scores, {"noise": s}, threshold=fitted.threshold)
    plot_robustness(robustness(model, images, labels))   # accuracy against severity

Like plots/figures.py: matplotlib's object API on an Agg canvas, never pyplot.
"""

import numpy as np
from matplotlib.figure import Figure

from quicknets.base.errors import QuicknetsError
from quicknets.evaluation.calibration import BINS, bin_gaps, reliability
from quicknets.plots.figures import NEUTRAL, WRONG, new_figure


def plot_reliability(probs, labels, bins: int = BINS, title=None) -> Figure:
    """Guo et al.'s reliability diagram of probabilities (N, C) against labels (N,): each
    bin's accuracy as a bar against the diagonal of perfect calibration, the gap to the bin's
    mean confidence shaded, the share of images per bin below; ECE and MCE in the title."""
    diagram = reliability(probs, labels, bins)
    gaps = bin_gaps(diagram)
    edges = np.asarray(diagram["edges"])
    width = np.diff(edges)
    accuracy = np.nan_to_num(np.asarray(diagram["accuracy"]))
    confidence = np.asarray(diagram["confidence"])
    share = np.asarray(diagram["count"]) / max(1, sum(diagram["count"]))
    fig = new_figure(4.5, 5.2)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.bar(
        edges[:-1],
        accuracy,
        width,
        align="edge",
        color=NEUTRAL,
        edgecolor="white",
        label="accuracy",
    )
    filled = ~np.isnan(confidence)
    top.bar(
        edges[:-1][filled],
        (confidence - accuracy)[filled],
        width[filled],
        align="edge",
        bottom=accuracy[filled],
        color=WRONG,
        alpha=0.3,
        edgecolor=WRONG,
        hatch="//",
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(fontsize=8, loc="upper left")
    ece, mce = sum(w * g for w, g in gaps), max(g for _, g in gaps)
    top.set_title(title or f"reliability: ECE {ece:.4f}, MCE {mce:.4f} ({bins} bins)", fontsize=10)
    bottom.bar(edges[:-1], share, width, align="edge", color=NEUTRAL, edgecolor="white")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("share of images")
    return fig


def plot_familiarity(inside, outside: dict, threshold=None, title=None) -> Figure:
    """Histograms of familiarity scores: `inside` (the test images', (N,)) against each set
    in `outside` ({name: scores}), with the threshold as a vertical line."""
    inside = np.asarray(inside, dtype=np.float64)
    sets = {name: np.asarray(s, dtype=np.float64) for name, s in outside.items()}
    if inside.size == 0 or any(s.size == 0 for s in sets.values()):
        raise QuicknetsError("no familiarity scores to plot")
    values = np.concatenate([inside, *sets.values()])
    bins = np.linspace(values.min(), values.max(), 50)
    fig = new_figure(6, 3.5)
    ax = fig.subplots()
    ax.hist(inside, bins, density=True, alpha=0.6, label="test images")
    for name, s in sets.items():
        ax.hist(s, bins, density=True, alpha=0.5, label=name)
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1, label="threshold")
    ax.set_xlabel("familiarity score (higher: more like the training images)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.set_title(title or "familiarity", fontsize=10)
    return fig


def plot_robustness(result: dict, title=None) -> Figure:
    """Accuracy against severity (0 = clean), one line per corruption, from
    robustness.robustness; the mean corruption accuracy in the title."""
    if not isinstance(result, dict) or "accuracy" not in result:
        raise QuicknetsError("not a robustness result: it needs accuracy per corruption")
    fig = new_figure(7, 4.2)
    ax = fig.subplots()
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    for i, (name, accs) in enumerate(result["accuracy"].items()):
        ax.plot(
            result["severities"], accs, "o-" if i < 10 else "s--", color=palette[i % 10], label=name
        )
    ax.set_xlabel("severity (0: clean)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncols=2)
    ax.set_title(
        title or f"robustness: mean corruption accuracy {result['mean_corruption_accuracy']:.4f}",
        fontsize=10,
    )
    return fig
