"""Plots: the figures, each returning its matplotlib Figure. figures.py: imshow, view_classify,
batches, predictions, top losses, curves, the confusion matrix, and saving them; trust.py: figures
of calibration, familiarity and robustness; attribution.py: an attribution map over its image,
the top losses beside theirs. Every name is public here:

    from quicknets.plots import imshow, plot_history, plot_reliability

May import: base, data, config, networks, evaluation. Training, records, sweeps and outputs all
draw with these.
"""

from quicknets.plots.attribution import (
    blend_explanation,
    draw_explanation,
    plot_top_losses_explained,
)
from quicknets.plots.figures import (
    NEUTRAL,
    OTHER,
    RIGHT,
    WRONG,
    figure_format,
    figure_path,
    image_pixels,
    imshow,
    new_figure,
    plot_confusion_matrix,
    plot_history,
    plot_paths,
    plot_top_losses,
    save_figure,
    show_batch,
    show_predictions,
    to_png,
    top_losses,
    view_classify,
)
from quicknets.plots.trust import plot_familiarity, plot_reliability, plot_robustness

__all__ = [
    "blend_explanation",
    "draw_explanation",
    "NEUTRAL",
    "OTHER",
    "RIGHT",
    "WRONG",
    "figure_format",
    "figure_path",
    "image_pixels",
    "imshow",
    "new_figure",
    "plot_confusion_matrix",
    "plot_familiarity",
    "plot_history",
    "plot_paths",
    "plot_reliability",
    "plot_robustness",
    "plot_top_losses",
    "plot_top_losses_explained",
    "save_figure",
    "show_batch",
    "show_predictions",
    "to_png",
    "top_losses",
    "view_classify",
]
