import math
import re

import numpy as np
import pytest
from scipy import stats

from quicknets.base.errors import QuicknetsError
from quicknets.evaluation.significance import (
    ONE_SEED,
    compare_seeds,
    correct_predictions,
    format_mark,
    format_mcnemar,
    format_seed_comparison,
    format_summary,
    holm,
    mcnemar,
    not_worse_than_best,
    summarize,
)


def disagreeing(only_a: int, only_b: int, both: int = 50, neither: int = 7) -> tuple:
    """Correctness arrays with the given cells of the 2x2 table."""
    a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    return np.array(a), np.array(b)


@pytest.mark.parametrize(
    "only_a, only_b, p",
    [
        (10, 2, 2 * (1 + 12 + 66) / 2**12),  # 2 * P(X <= 2), X ~ Binomial(12, 1/2)
        (2, 10, 2 * (1 + 12 + 66) / 2**12),  # symmetric
        (0, 5, 2 / 2**5),  # 2 * P(X = 0) of 5
        (3, 3, 1.0),  # 2 * P(X <= 3) of 6 = 2 * 42/64 > 1: capped
        (0, 0, 1.0),  # no disagreement: nothing tells them apart
    ],
)
def test_mcnemar_exact_p_by_hand(only_a, only_b, p):
    a, b = disagreeing(only_a, only_b)
    test = mcnemar(a, b)
    assert (test.only_a, test.only_b, test.n) == (only_a, only_b, len(a))
    assert test.p_value == pytest.approx(p, rel=1e-12)
    assert test.accuracy_a == pytest.approx((only_a + 50) / len(a))


def test_predictions_and_labels_give_the_same_test():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    pred_a = np.where(rng.random(500) < 0.8, labels, (labels + 1) % 10)
    pred_b = np.where(rng.random(500) < 0.7, labels, (labels + 3) % 10)
    from_preds = mcnemar(pred_a, pred_b, labels=labels)
    assert from_preds == mcnemar(pred_a == labels, pred_b == labels)
    assert from_preds == mcnemar(list(pred_a), list(pred_b), labels=(labels, labels.copy()))
    import torch

    assert from_preds == mcnemar(torch.tensor(pred_a == labels), torch.tensor(pred_b == labels))


def test_a_clearly_worse_classifier_is_significant_on_10000_images():
    rng = np.random.default_rng(1)
    good = rng.random(10_000) < 0.88  # about a 7-epoch run's accuracy
    # the weak run (1 epoch at lr 0.0001, ~0.70) errs mostly where the good one errs too
    weak = good & (rng.random(10_000) < 0.80)
    test = mcnemar(weak, good)
    assert test.only_b > 1500 and test.p_value < 0.001
    line = format_mcnemar(test, "weak", "good")
    assert line.startswith("mcnemar:") and "good is better" in line
    p = float(re.search(r"p=([0-9.e+-]+)", line).group(1))
    assert p == pytest.approx(test.p_value, rel=1e-2)
    counts = [int(x) for x in re.findall(r"right (\d+)", line)]
    assert counts == [test.only_a, test.only_b]


def test_equal_classifiers_are_seldom_called_different():
    """Under the null (the same accuracy, independent errors) the exact test rejects at most
    about alpha of the time: it is exact, so conservative, never liberal."""
    rng = np.random.default_rng(2)
    rejected = 0
    for _ in range(400):
        a, b = rng.random(1000) < 0.85, rng.random(1000) < 0.85
        rejected += mcnemar(a, b).p_value < 0.05
    assert rejected / 400 <= 0.06


def test_format_says_when_there_is_no_difference():
    line = format_mcnemar(mcnemar(*disagreeing(3, 3)), "run1", "run2")
    assert line.startswith("mcnemar: only run1 right 3, only run2 right 3, p=1 ")
    assert "no significant difference" in line


@pytest.mark.parametrize(
    "a, b, labels, message",
    [
        ([True] * 10, [True] * 9, None, "different test sets: 10 images against 9"),
        ([1, 2, 3], [1, 2], [1, 2, 3], "different test sets: 3 images against 2"),
        ([1, 2, 3], [1, 2, 3], [1, 2], "different test sets: 3 images against 2"),
        ([1, 2], [1, 2], ([1, 2], [1, 2, 3]), "different test sets: 2 images against 3"),
        ([1, 2, 3], [1, 2, 3], ([1, 2, 3], [1, 0, 3]), "labels differ at 1 of 3 images"),
        ([1, 0, 1], [1, 1, 1], None, "must be bool, not int64 (give labels="),
        ([[True]], [[True]], None, "(1-D), not shape (1, 1)"),
        ([], [], [], "at least one test image"),
    ],
)
def test_bad_inputs_get_one_clear_error(a, b, labels, message):
    if labels == []:
        a, b, labels = np.array([], bool), np.array([], bool), None
    with pytest.raises(QuicknetsError, match=re.escape(message)):
        mcnemar(a, b, labels=labels)


def test_correct_predictions_score_as_evaluate_does(tiny):
    from quicknets.evaluation.metrics import evaluate
    from quicknets.networks.models import network

    model = network("784-32-10")
    correct = correct_predictions(model, tiny)
    assert correct.shape == (len(tiny.test_labels),) and correct.dtype == bool
    assert correct.mean() == pytest.approx(evaluate(model, tiny)["accuracy"], abs=1e-12)
    with pytest.raises(QuicknetsError, match="split must be"):
        correct_predictions(model, tiny, "nope")


def test_summary_interval_against_the_t_table():
    s = summarize([1.0, 2.0, 3.0])
    assert (s.n, s.mean, s.std) == (3, 2.0, 1.0)
    assert all(type(x) is float for x in (s.mean, s.std, s.low, s.high))  # JSON-ready
    half = 4.303 / math.sqrt(3)  # t(0.975, 2 df) = 4.303, printed t tables
    assert s.low == pytest.approx(2 - half, abs=1e-3) and s.high == pytest.approx(
        2 + half, abs=1e-3
    )
    assert format_summary(s, 2) == "2.00 ± 1.00, 95% CI [-0.48, 4.48] (n=3)"


@pytest.mark.parametrize("values", [[0.88], [0.88, float("nan")], [float("inf"), 0.9, 0.8]])
def test_no_interval_without_two_finite_seeds(values):
    s = summarize(values)
    assert s.std is None and s.low is None and s.high is None and s.reason
    assert "±" not in format_summary(s) and s.reason in format_summary(s)
    c = compare_seeds(values, [0.9, 0.91, 0.92])
    assert c.test is None and c.p_value is None and c.reason == s.reason
    assert "no test" in format_seed_comparison(c)


@pytest.mark.parametrize(
    "values, bounds, low_cut, high_cut",
    [
        ([0.999, 0.98, 0.995], (0.0, 1.0), False, True),  # an accuracy near 1
        ([1.0, 0.99], (0.0, 1.0), False, True),
        ([0.002, 0.05, 0.001], (0.0, math.inf), True, False),  # an ECE or a loss near 0
        ([0.0, 1.0], (0.0, 1.0), True, True),
        ([0.80, 0.83, 0.81], (0.0, 1.0), False, False),  # well inside: as without bounds
    ],
)
def test_the_interval_stays_within_the_values_the_metric_can_take(
    values, bounds, low_cut, high_cut
):
    """Student t's interval is symmetric around the mean; the mean of an accuracy cannot pass
    1, nor a loss fall below 0, so the interval is clipped there (and says it was)."""
    n, mean, std = len(values), np.mean(values), np.std(values, ddof=1)
    half = stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)  # the reference, scipy.stats
    s = summarize(values, bounds=bounds)
    free = summarize(values)
    assert free.low == pytest.approx(mean - half, rel=1e-12, abs=1e-15) and not free.clipped
    assert free.high == pytest.approx(mean + half, rel=1e-12)
    assert (free.low < bounds[0], free.high > bounds[1]) == (low_cut, high_cut)  # the case
    assert s.low == (bounds[0] if low_cut else free.low)
    assert s.high == (bounds[1] if high_cut else free.high)
    assert s.clipped == (low_cut or high_cut) and type(s.low) is type(s.high) is float
    assert (s.n, s.mean, s.std) == (free.n, free.mean, free.std)


def test_marks_clip_the_interval_to_the_metric():
    near_one = [[0.999, 0.98, 0.995], [0.90, 0.91, 0.92]]
    marks = not_worse_than_best(near_one, "test_accuracy")
    assert marks[0].summary.high == 1.0 and marks[0].summary.clipped
    assert not marks[1].summary.clipped and marks[1].summary.high < 1.0
    ece = not_worse_than_best([[0.002, 0.05, 0.001], [0.2, 0.25, 0.21]], "test_ece")
    assert ece[0].summary.low == 0.0 and ece[0].summary.clipped
    unknown = not_worse_than_best(near_one, "acc", "max")  # no range known: not clipped
    assert unknown[0].summary.high > 1.0 and not unknown[0].summary.clipped


def test_one_seed_says_so():
    assert summarize([0.9]).reason == ONE_SEED == "no interval can be given with one seed"
    with pytest.raises(QuicknetsError, match="one value per seed"):
        summarize([])


def test_welch_against_its_formula():
    a, b = [0.81, 0.83, 0.86, 0.80], [0.88, 0.87, 0.91]
    c = compare_seeds(a, b)
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    t = (np.mean(b) - np.mean(a)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 2)  # Welch-Satterthwaite
    assert c.test == "welch" and c.difference == pytest.approx(np.mean(b) - np.mean(a))
    assert c.p_value == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)
    assert "Welch's t-test, 4 and 3 seeds" in format_seed_comparison(c)


def test_paired_by_shared_seeds_in_any_order():
    a = {0: 0.850, 1: 0.870, 2: 0.860, 3: 0.880}
    b = {0: 0.856, 1: 0.873, 2: 0.869, 3: 0.884}
    order_b = [2, 0, 3, 1]
    c = compare_seeds(list(a.values()), [b[s] for s in order_b], paired_by=(list(a), order_b))
    d = np.array([b[s] - a[s] for s in a])
    t = d.mean() / (d.std(ddof=1) / 2)  # one-sample t of the differences, n = 4
    assert c.test == "paired" and c.p_value == pytest.approx(2 * stats.t.sf(abs(t), 3), rel=1e-9)
    assert "paired t-test over 4 shared seeds" in format_seed_comparison(c)
    # the same values unpaired: the seed-to-seed spread hides the difference
    assert compare_seeds(list(a.values()), list(b.values())).p_value > c.p_value


def test_different_seeds_fall_back_to_welch():
    c = compare_seeds([0.8, 0.82], [0.85, 0.84], paired_by=([0, 1], [1, 2]))
    assert c.test == "welch"
    with pytest.raises(QuicknetsError, match="one seed per value"):
        compare_seeds([0.8, 0.82], [0.85, 0.84], paired_by=([0], [1, 2]))


def test_no_spread_gives_no_test():
    for c in (
        compare_seeds([0.9, 0.9], [0.8, 0.8]),
        compare_seeds([0.9, 0.8], [0.95, 0.85], paired_by=([0, 1], [0, 1])),  # +0.05 each seed
    ):
        assert c.test is None and "do not vary" in c.reason
    marks = not_worse_than_best([[0.9, 0.9], [0.9, 0.9], [0.8, 0.8]], "test_accuracy")
    assert [m.not_worse for m in marks] == [True, True, None]


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_two_variants_from_one_distribution_over_3_seeds_are_not_marked_different():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.88, 0.003, 3), rng.normal(0.88, 0.003, 3)
    marks = not_worse_than_best([list(a), list(b)], "test_accuracy")
    assert [m.not_worse for m in marks] == [True, True]
    assert sum(m.best for m in marks) == 1


def test_the_false_worse_rate_stays_at_alpha():
    """Equal variants, 3 seeds each: the loser is called worse at most alpha of the time (here
    0.028 of 1000 draws: Welch's test is conservative with 2 df). A one-sided test at alpha
    against the best, picked after seeing the values, would do so 0.083 of the time."""
    rng = np.random.default_rng(4)
    worse, one_sided = 0, 0
    for _ in range(1000):
        a, b = rng.normal(0, 1, 3), rng.normal(0, 1, 3)
        marks = not_worse_than_best([a, b], "acc", "max")
        worse += marks[0].not_worse is False or marks[1].not_worse is False
        one_sided += stats.ttest_ind(a, b, equal_var=False).pvalue / 2 < 0.05
    assert worse / 1000 <= 0.05 < 0.065 <= one_sided / 1000


def test_marks_of_a_sweep():
    groups = [[0.870, 0.872, 0.869], [0.890, 0.893, 0.888], [0.889, 0.884, 0.892], [0.95]]
    marks = not_worse_than_best(groups[:3], "test_accuracy")
    assert [m.best for m in marks] == [False, True, False]
    assert [m.not_worse for m in marks] == [False, True, True]
    assert [format_mark(m).split(" ")[0] for m in marks] == ["worse", "best", "~best"]
    raw = [compare_seeds(groups[1], groups[i]).p_value for i in (0, 2)]
    assert [marks[0].p_value, marks[2].p_value] == pytest.approx(holm(raw))
    # the best has one seed: nobody can be marked, and each mark says why
    marks = not_worse_than_best(groups, "test_accuracy")
    assert marks[3].best and [m.not_worse for m in marks[:3]] == [None] * 3
    assert all(ONE_SEED in m.reason for m in marks[:3])


def test_lower_is_better_for_a_loss_and_a_diverged_variant_is_never_best():
    groups = [[0.35, 0.36, 0.34], [float("nan"), 0.3, 0.31], [0.45, 0.47, 0.46]]
    marks = not_worse_than_best(groups, "test_loss")  # direction from metric_names.METRICS: min
    assert [m.best for m in marks] == [True, False, False]
    assert marks[1].not_worse is None and "not every value is finite" in marks[1].reason
    assert marks[2].not_worse is False
    ones = not_worse_than_best([[0.3], [0.4]], "test_loss")
    assert ones[0].best and ones[1].not_worse is None and ONE_SEED in ones[1].reason


def test_paired_marks_use_shared_seeds():
    groups = [[0.850, 0.870, 0.860, 0.880], [0.853, 0.871, 0.864, 0.882]]
    marks = not_worse_than_best(groups, "val_accuracy", seeds=[[0, 1, 2, 3]] * 2)
    assert marks[0].test == "paired" and marks[0].not_worse is False
    assert not_worse_than_best(groups, "val_accuracy")[0].not_worse is True  # unpaired


@pytest.mark.parametrize(
    "groups, direction, message",
    [
        ([[0.9]], "up", "direction must be"),
        ([], "max", "at least one variant"),
        ([[]], "max", "one value per seed"),
    ],
)
def test_bad_marks_input(groups, direction, message):
    with pytest.raises(QuicknetsError, match=message):
        not_worse_than_best(groups, "test_accuracy", direction)
