import math
import re

import numpy as np
import pytest

from quicknets.base.errors import QuicknetsError
from quicknets.sweeps.importance import (
    format_importance,
    param_importance,
    plot_parallel_coordinates,
    scales,
)

LRS, DROPOUTS = (0.0001, 0.003, 0.03), (0, 0.05)


def grid(accuracy, seeds=(0,)) -> list:
    """The issue's grid, lr x dropout (x seeds), each trial's value accuracy(lr, dropout, seed)."""
    return [
        ({"lr": lr, "dropout": d, "seed": s, "network": "784-32-10"}, accuracy(lr, d, s))
        for lr in LRS
        for d in DROPOUTS
        for s in seeds
    ]


def simulated(lr, dropout, seed):
    """lr moves accuracy by 0.18, dropout by 0.004, the seed by about 0.002."""
    noise = np.random.default_rng([seed, LRS.index(lr), DROPOUTS.index(dropout)]).normal(0, 0.002)
    return {0.0001: 0.70, 0.003: 0.88, 0.03: 0.84}[lr] + (0.004 if dropout else 0) + noise


def shares_of(line: str) -> list:
    return [(k, float(v)) for k, v in re.findall(r"(\w+) ([01]\.\d+)", line)]


def test_lr_matters_most_in_a_simulated_grid():
    result = param_importance(grid(simulated))
    assert result.reason is None and result.trials == 6
    assert [k for k, _ in result.shares] == ["lr", "dropout"]  # seed, network: one value
    assert result.shares[0][1] > 0.9
    assert sum(s for _, s in result.shares) == pytest.approx(1.0)
    assert all(type(s) is float for _, s in result.shares)  # JSON-ready
    line = format_importance(result)
    assert line.startswith("importance: lr ") and line.endswith("(fANOVA over 6 trials)")
    assert shares_of(line) == [(k, pytest.approx(s, abs=0.005)) for k, s in result.shares]


def test_over_seeds_the_seed_gets_its_small_share():
    result = param_importance(grid(simulated, seeds=(0, 1, 2)))
    names = [k for k, _ in result.shares]
    assert names[0] == "lr" and set(names) == {"lr", "dropout", "seed"}
    assert result.trials == 18


def test_the_same_seed_gives_the_same_shares():
    assert param_importance(grid(simulated)) == param_importance(grid(simulated))


def test_a_setting_that_does_not_matter_ranks_last():
    """A random search: the metric follows log10(lr) and a categorical optimizer; batch_size
    is noise."""
    rng = np.random.default_rng(0)
    trials = []
    for _ in range(40):
        lr, opt, bs = (
            10 ** rng.uniform(-4, -1),
            rng.choice(["adam", "sgd"]),
            int(rng.choice([32, 64, 128])),
        )
        value = 0.9 - 0.05 * (math.log10(lr) + 2.5) ** 2 - (0.05 if opt == "sgd" else 0)
        trials.append(({"lr": lr, "optimizer": str(opt), "batch_size": bs}, value))
    result = param_importance(trials)
    assert [k for k, _ in result.shares][2] == "batch_size" and result.shares[2][1] < 0.05
    assert scales(trials) == {"lr": "log", "optimizer": "categorical", "batch_size": "int"}


def test_scales_of_each_kind():
    trials = [
        ({"lr": 0.001, "dropout": 0.0, "epochs": 1, "flip": False, "net": [1, 2], "x": 1}, 0.5),
        ({"lr": 0.01, "dropout": 0.5, "epochs": 7, "flip": True, "net": [3], "x": 1}, 0.6),
        ({"lr": 0.03, "dropout": 0.2, "epochs": 3, "flip": True, "net": [3]}, 0.7),
    ]
    assert scales(trials) == {
        "lr": "log",  # 30x
        "dropout": "linear",  # starts at 0: no log
        "epochs": "int",  # 7x: under LOG_SPREAD
        "flip": "categorical",
        "net": "categorical",
        "x": "categorical",  # one trial lacks it: None is one of its values
    }
    assert scales(trials, log_settings=("epochs",))["epochs"] == "log"
    assert scales([({"dropout": 0}, 0.5), ({"dropout": 0.05}, 0.6)]) == {"dropout": "linear"}


@pytest.mark.parametrize(
    "trials, reason",
    [
        ([], "0 finished trials (fANOVA needs 2)"),
        ([({"lr": 0.1}, 0.5)], "1 finished trial (fANOVA needs 2)"),
        ([({"lr": 0.1}, 0.5), ({"lr": 0.2}, float("nan"))], "1 finished trial (fANOVA needs 2)"),
        ([({"lr": 0.1}, 0.5), ({"lr": 0.2}, None)], "1 finished trial"),
        ([({"lr": 0.1}, 0.5), ({"lr": 0.1}, 0.6)], "no setting varies"),
        ([({"lr": 0.1}, 0.5), ({"lr": 0.2}, 0.5)], "the metric is 0.5 in every trial"),
    ],
)
def test_no_importance_says_why(trials, reason):
    result = param_importance(trials)
    assert result.shares == [] and reason in result.reason
    assert format_importance(result) == f"importance: not given: {result.reason}"


def test_diverged_trials_are_left_out_and_counted():
    trials = grid(simulated) + [({"lr": 0.3, "dropout": 0, "seed": 0}, float("nan"))]
    result = param_importance(trials)
    assert result.trials == 6 and result.left_out == 1 and result.shares[0][0] == "lr"
    assert "1 without a finite value left out" in format_importance(result)


@pytest.mark.parametrize("trials", [[{"lr": 0.1}], [({"lr": 0.1},)], "lr", [(["lr"], 0.5)]])
def test_trials_that_are_not_pairs_are_an_error(trials):
    with pytest.raises(QuicknetsError, match="list of \\(settings dict, metric value\\) pairs"):
        param_importance(trials)


def test_parallel_coordinates_draw_without_pyplot():
    trials = grid(simulated) + [({"lr": 0.01, "dropout": 0.05, "seed": 0}, None)]
    trials[0][0]["optimizer"] = "sgd"
    fig = plot_parallel_coordinates(trials, "test_accuracy")
    assert fig.canvas.manager is None  # made without pyplot (its figures have a manager)
    ax, colorbar = fig.axes
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["lr", "dropout", "optimizer", "test_accuracy"]  # seed, network: constant
    (lines,) = ax.collections
    segments = lines.get_segments()
    assert len(segments) == 6 and all(s.shape == (4, 2) for s in segments)
    # the best (highest accuracy) is drawn last; lr on a log axis: 0.003 sits at
    # log10(0.003/0.0001) / log10(0.03/0.0001) of the way up
    assert segments[-1][0, 1] == pytest.approx(math.log10(30) / math.log10(300))
    assert segments[-1][3, 1] == pytest.approx(1.0)
    texts = {t.get_text() for t in ax.texts}
    assert {"0.0001", "0.003", "0.03", "None", "sgd"} <= texts
    assert "6 trials, 1 without a finite value left out" in ax.get_title()
    assert colorbar.get_ylabel() == "test_accuracy"
    fig.canvas.draw()  # renders on its Agg canvas


def test_for_a_loss_the_lowest_is_drawn_on_top():
    trials = [({"lr": lr}, loss) for lr, loss in ((0.001, 0.5), (0.01, 0.3), (0.1, 0.9))]
    (lines,) = plot_parallel_coordinates(trials, "test_loss").axes[0].collections
    assert lines.get_segments()[-1][0, 1] == pytest.approx(0.5)  # lr 0.01: the middle of 3 decades


@pytest.mark.parametrize(
    "trials, message",
    [
        ([({"lr": 0.1}, 0.5)], "need 2 finished trials, not 1"),
        ([({"lr": 0.1}, 0.5), ({"lr": 0.1}, 0.7)], "no setting varies"),
    ],
)
def test_parallel_coordinates_refuse_what_they_cannot_draw(trials, message):
    with pytest.raises(QuicknetsError, match=message):
        plot_parallel_coordinates(trials, "test_accuracy")


def test_a_real_grid_on_tiny_data_puts_lr_first(tiny):
    """The issue's check on real training (tiny generated data, 1 epoch each)."""
    from quicknets.evaluation.metrics import evaluate
    from quicknets.networks.models import network
    from quicknets.training.loop import train

    trials = []
    for lr in LRS:
        for dropout in DROPOUTS:
            model = network("784-32-10", dropout=dropout)
            train(model, tiny, lr=lr, epochs=1, seed=0, quiet=True, device="cpu")
            trials.append(({"lr": lr, "dropout": dropout}, evaluate(model, tiny)["accuracy"]))
    result = param_importance(trials)
    assert result.shares[0][0] == "lr", format_importance(result)
