"""Which settings matter: parameter importance and parallel coordinates of a finished search.

    trials = [({"lr": 0.003, "dropout": 0.0}, 0.884), ({"lr": 0.0001, "dropout": 0.05}, 0.71)]
    result = param_importance(trials)            # Importance: shares, most important first
    print(format_importance(result))             # importance: lr 0.93, dropout 0.07 (fANOVA, ...)
    fig = plot_parallel_coordinates(trials, "test_accuracy")

A trial is (settings, value): the settings of one finished run (a dict) and its metric. Grid,
random and Optuna searches alike: the trials are put into an in-memory Optuna study, each
setting with a distribution inferred from its values (`scales`), and Optuna's fANOVA evaluator
(Hutter et al., "An Efficient Approach for Assessing Hyperparameter Importance", ICML 2014)
fits a random forest to them and splits the variance of its predictions among the settings.
Settings with one value in every trial are left out: nothing can be said of them. fANOVA needs
optuna and scikit-learn.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from quicknets.base.errors import QuicknetsError
from quicknets.evaluation.metric_names import METRICS, OLD_NAMES

LOG_SPREAD = 20  # a positive range whose max / min is at least this is drawn on a log scale,
#                  as the sweep page's settings figure does (lr 1e-4..3e-2, not dropout 0..0.5)

LABEL_BOX = {"fc": "white", "ec": "none", "alpha": 0.7, "pad": 0.5}  # tick labels over lines


@dataclass
class Importance:
    shares: list = field(default_factory=list)  # [(setting, share 0..1)], largest first, sum 1
    trials: int = 0  # trials whose value fANOVA used
    left_out: int = 0  # trials without a finite value (a diverged or unfinished run)
    reason: str | None = None  # why there are no shares


def scales(trials: list, log_settings=()) -> dict:
    """{setting: "log" | "linear" | "int" | "categorical"} of the settings that vary across the
    trials, in first-seen order. Numbers (not bools) are "log" when named in `log_settings` (a
    search's log ranges) or when all are positive and spread over LOG_SPREAD x and more, "int"
    when all are integers, else "linear"; anything else (strings, bools, lists, a setting some
    trials lack) is "categorical". Raises QuicknetsError for trials that are not
    (dict, value) pairs."""
    columns = _columns(trials)
    out = {}
    for key, values in columns.items():
        if len({repr(v) for v in values}) < 2:
            continue  # one value in every trial
        if all(_number(v) for v in values):
            xs = np.array(values, dtype=float)
            if key in log_settings or (xs.min() > 0 and xs.max() / xs.min() >= LOG_SPREAD):
                out[key] = "log"
            elif all(isinstance(v, (int, np.integer)) for v in values):
                out[key] = "int"
            else:
                out[key] = "linear"
        else:
            out[key] = "categorical"
    return out


def _number(v) -> bool:
    return (
        isinstance(v, (int, float, np.integer, np.floating))
        and not isinstance(v, bool)
        and (math.isfinite(v))
    )


def _columns(trials: list) -> dict:
    """{setting: [its value in each trial, None where a trial lacks it]}."""
    if not isinstance(trials, (list, tuple)) or not all(
        isinstance(t, (list, tuple)) and len(t) == 2 and isinstance(t[0], dict) for t in trials
    ):
        raise QuicknetsError("trials must be a list of (settings dict, metric value) pairs")
    keys = list(dict.fromkeys(k for settings, _ in trials for k in settings))
    return {k: [settings.get(k) for settings, _ in trials] for k in keys}


def _finite(trials: list) -> tuple:
    """(trials with a finite value, how many were left out)."""
    kept = [t for t in trials if _number(t[1])]
    return kept, len(trials) - len(kept)


def param_importance(trials: list, log_settings=(), seed: int = 0) -> Importance:
    """Each varied setting's share of the variance of the metric (fANOVA, Optuna's
    FanovaImportanceEvaluator with `seed`), over `trials`: (settings dict, value) pairs. Shares
    sum to 1, largest first. Trials whose value is None, NaN or infinite are left out and
    counted. No shares, and a reason, for fewer than 2 such trials, no setting that varies, a
    metric with one value in every trial, or optuna or scikit-learn missing. Raises
    QuicknetsError for trials that are not (dict, value) pairs."""
    _columns(trials)
    kept, left_out = _finite(trials)
    result = Importance(trials=len(kept), left_out=left_out)
    kinds = scales(kept, log_settings) if kept else {}
    if len(kept) < 2:
        result.reason = f"{len(kept)} finished trial{'s' * (len(kept) != 1)} (fANOVA needs 2)"
    elif not kinds:
        result.reason = "no setting varies across the finished trials"
    elif len({t[1] for t in kept}) < 2:
        result.reason = f"the metric is {kept[0][1]} in every trial, so no setting changes it"
    if result.reason:
        return result
    try:
        import optuna
        import sklearn  # noqa: F401  (fANOVA's random forest)
    except ImportError:
        result.reason = "parameter importance needs optuna and scikit-learn (pip install them)"
        return result
    result.shares = _fanova(kept, kinds, seed, optuna)
    return result


def _fanova(trials: list, kinds: dict, seed: int, optuna) -> list:
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    from quicknets.sweeps.study import quiet_optuna

    columns = _columns(trials)
    coded: dict[str, list] = {}
    distributions: dict[str, BaseDistribution] = {}
    for key, kind in kinds.items():
        values = columns[key]
        if kind == "categorical":
            labels = list(dict.fromkeys(str(v) for v in values))
            coded[key], distributions[key] = (
                [str(v) for v in values],
                CategoricalDistribution(labels),
            )
        elif kind == "log":
            # Optuna's fANOVA ignores log=True (it transforms with transform_log=False), so the
            # forest would weigh lr's range by its width in raw units: 0.0001..0.003 a 20th of
            # 0.0001..0.03. Given log10(lr), each decade weighs the same.
            xs = [math.log10(v) for v in values]
            coded[key], distributions[key] = xs, FloatDistribution(min(xs), max(xs))
        elif kind == "int":
            ints = [int(v) for v in values]
            coded[key], distributions[key] = ints, IntDistribution(min(ints), max(ints))
        else:
            xs = [float(v) for v in values]
            coded[key], distributions[key] = xs, FloatDistribution(min(xs), max(xs))
    with quiet_optuna():
        study = optuna.create_study()
        study.add_trials(
            optuna.trial.create_trial(
                params={key: coded[key][i] for key in kinds},
                distributions=distributions,
                value=float(value),
            )
            for i, (_, value) in enumerate(trials)
        )
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        shares = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return sorted(((k, float(v)) for k, v in shares.items()), key=lambda kv: -kv[1])


def format_importance(result: Importance, digits: int = 2) -> str:
    """The line `quicknets sweep --show` prints: 'importance: lr 0.93, dropout 0.07 (fANOVA over
    6 trials)', or 'importance: not given: REASON'."""
    if result.reason is not None:
        return f"importance: not given: {result.reason}"
    shares = ", ".join(f"{key} {share:.{digits}f}" for key, share in result.shares)
    note = f"; {result.left_out} without a finite value left out" if result.left_out else ""
    return f"importance: {shares} (fANOVA over {result.trials} trials{note})"


def plot_parallel_coordinates(
    trials: list, metric: str, log_settings=(), direction: str | None = None
):
    """A matplotlib Figure (no pyplot): one vertical axis per varied setting, then the metric;
    one line per trial with a finite value, coloured by the metric, the best drawn on top.
    Numbers sit on their own scale (log for `scales`' "log"), categories spread evenly in
    first-seen order. `direction` ("max" or "min", default the metric's in
    metric_names.METRICS, else "max") says which end is best. Raises QuicknetsError for fewer
    than 2 trials with a finite value or no setting that varies."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    from quicknets.plots import new_figure

    _columns(trials)
    kept, left_out = _finite(trials)
    if len(kept) < 2:
        raise QuicknetsError(f"parallel coordinates need 2 finished trials, not {len(kept)}")
    kinds = scales(kept, log_settings)
    if not kinds:
        raise QuicknetsError("no setting varies across the finished trials")
    if direction is None:
        direction = _direction(metric)
    columns = _columns(kept)
    values = np.array([v for _, v in kept], dtype=float)
    axes = [_axis(columns[key], kind) for key, kind in kinds.items()]
    axes.append(_axis(list(values), "linear"))
    ys = np.array([pos for pos, _ in axes]).T  # (trials, axes), each in 0..1
    order = np.argsort(values if direction == "max" else -values)  # the best drawn last
    norm = Normalize(values.min(), values.max())
    cmap = colormaps["viridis" if direction == "max" else "viridis_r"]
    fig = new_figure(max(4.0, 1.6 * len(axes)), 4.0)
    ax = fig.add_subplot()
    xs = np.arange(len(axes))
    lines = LineCollection(
        [np.column_stack([xs, ys[i]]) for i in order], colors=cmap(norm(values[order])), lw=1.2
    )
    ax.add_collection(lines)
    for x, (_, ticks) in zip(xs, axes):
        ax.axvline(float(x), color="black", lw=0.8)
        for y, text in ticks:
            ax.text(x + 0.04, y, text, fontsize=7, va="center", bbox=LABEL_BOX)
    ax.set_xlim(-0.1, len(axes) - 0.4)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(xs, [*kinds, metric], fontsize=8)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label=metric)
    note = f", {left_out} without a finite value left out" if left_out else ""
    ax.set_title(f"{len(kept)} trials{note}", fontsize=9)
    return fig


def _direction(metric: str) -> str:

    return METRICS.get(OLD_NAMES.get(metric, metric), "max")


def _axis(values: list, kind: str) -> tuple:
    """(position of each value in 0..1, [(position, tick label)]) on one axis."""
    if kind == "categorical":
        labels = list(dict.fromkeys(str(v) for v in values))
        at = {label: i / max(1, len(labels) - 1) for i, label in enumerate(labels)}
        ticks = [(at[label], label if len(label) <= 16 else label[:15] + "…") for label in labels]
        return np.array([at[str(v)] for v in values]), ticks
    xs = np.array(values, dtype=float)
    scaled = np.log10(xs) if kind == "log" else xs
    lo, hi = scaled.min(), scaled.max()
    span = hi - lo if hi > lo else 1.0
    distinct = np.unique(scaled)
    marks = distinct if len(distinct) <= 6 else np.linspace(lo, hi, 5)
    ticks = [((m - lo) / span, f"{10**m if kind == 'log' else m:.3g}") for m in marks]
    return (scaled - lo) / span, ticks
