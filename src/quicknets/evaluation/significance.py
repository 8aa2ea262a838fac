"""Is B really better than A? Significance tests for runs compared on one test set or over seeds.

    test = mcnemar(correct_a, correct_b)          # two runs, one test set: per-image correctness
    test = mcnemar(pred_a, pred_b, labels=labels)  # or predicted classes and the labels
    print(format_mcnemar(test, "A", "B"))          # mcnemar: only A right 31, only B right 9, p=...
    seeds = compare_seeds([0.881, 0.884, 0.879], [0.890, 0.887, 0.892], paired_by=([0, 1, 2],) * 2)
    marks = not_worse_than_best([[0.88, 0.89], [0.85, 0.86], [0.9]], "test_accuracy")

Two runs on the same test set are judged by McNemar's exact test on the images where they
disagree (Dietterich, "Approximate Statistical Tests for Comparing Supervised Classification
Learning Algorithms", Neural Computation 1998). Variants run over several seeds are judged by
their spread over seeds: a 95% confidence interval of the mean (Student t) and Welch's t-test,
or a paired t-test when both ran the same seeds. One run per variant carries no interval and no
test, and the functions here say so instead of printing a 0 std. scipy computes every test.
"""

import math
from dataclasses import dataclass

import numpy as np

from quicknets.base.errors import QuicknetsError
from quicknets.evaluation.metric_names import METRICS, metric_name, metric_range

ALPHA = 0.05  # significance level: a difference is claimed when p < ALPHA
CONFIDENCE = 0.95  # of the interval around a mean over seeds
ONE_SEED = "no interval can be given with one seed"


@dataclass
class McNemar:
    """McNemar's exact test of two classifiers on one test set of `n` images."""

    n: int  # test images
    only_a: int  # images A got right and B wrong (b in the 2x2 table)
    only_b: int  # images A got wrong and B right (c)
    accuracy_a: float  # fraction of the n images, 0..1
    accuracy_b: float
    p_value: float  # exact two-sided: binomial test of min(b, c) of b + c at 0.5; 1.0 if b + c = 0


def mcnemar(a, b, labels=None) -> McNemar:
    """McNemar's exact test of runs A and B on the same test images.

    Without `labels`, `a` and `b` are per-image correctness: bool arrays of shape (n,). With
    `labels` (n,) integers, `a` and `b` are predicted classes (n,); `labels` may also be a pair
    (labels_a, labels_b), the test labels each run was scored on, which must agree. Arrays may
    be numpy arrays, lists or CPU tensors. The p-value is exact (scipy.stats.binomtest), not the
    chi-squared approximation, so it holds for few disagreements too. Raises QuicknetsError for
    arrays of different lengths or labels that differ (the runs were tested on different test
    sets), an empty test set, arrays that are not 1-D, or correctness that is not bool.
    """
    if labels is None:
        correct_a, correct_b = _flat(a, "A's correctness"), _flat(b, "B's correctness")
        for name, x in (("A", correct_a), ("B", correct_b)):
            if x.dtype != bool:
                raise QuicknetsError(
                    f"{name}'s per-image correctness must be bool, not {x.dtype} "
                    "(give labels= to test predicted classes)"
                )
        _same_length(correct_a, correct_b)
    else:
        pred_a, pred_b = _flat(a, "A's predictions"), _flat(b, "B's predictions")
        labels_a, labels_b = _labels(labels)
        _same_length(pred_a, pred_b)
        _same_length(pred_a, labels_a)
        _same_length(labels_a, labels_b)
        differ = int((labels_a != labels_b).sum())
        if differ:
            raise QuicknetsError(
                f"the runs were tested on different test sets: their labels differ at {differ} "
                f"of {len(labels_a)} images"
            )
        correct_a, correct_b = pred_a == labels_a, pred_b == labels_a
    n = len(correct_a)
    if n == 0:
        raise QuicknetsError("McNemar's test needs at least one test image, not an empty set")
    only_a = int((correct_a & ~correct_b).sum())
    only_b = int((~correct_a & correct_b).sum())
    disagree = only_a + only_b
    from scipy import stats  # here: scipy.stats takes ~0.6 s to import, a sweep's summary none

    p = stats.binomtest(min(only_a, only_b), disagree, 0.5).pvalue if disagree else 1.0
    return McNemar(
        n=n,
        only_a=only_a,
        only_b=only_b,
        accuracy_a=float(correct_a.mean()),
        accuracy_b=float(correct_b.mean()),
        p_value=float(p),
    )


def _flat(x, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise QuicknetsError(f"{what} must be one value per test image (1-D), not shape {x.shape}")
    return x


def _labels(labels) -> tuple:
    if isinstance(labels, tuple) and len(labels) == 2:
        return _flat(labels[0], "A's labels"), _flat(labels[1], "B's labels")
    labels = _flat(labels, "the labels")
    return labels, labels


def _same_length(x: np.ndarray, y: np.ndarray) -> None:
    if len(x) != len(y):
        raise QuicknetsError(
            f"the runs were tested on different test sets: {len(x)} images against {len(y)}"
        )


def predicted_classes(model, data, split: str = "test") -> np.ndarray:
    """The class `model` predicts for each image of a split of `data` ("test", "val" or
    "train"): int64 (n,), its images normalised by the model's own preprocessing, as
    metrics.evaluate scores them. Raises QuicknetsError as evaluate does for a split the data
    lacks."""
    from quicknets.data.preprocessing import preprocessing_of
    from quicknets.evaluation.metrics import evaluate, log_probabilities

    evaluate(model, data, split)  # its checks: a network, a dataset, the split, shapes, classes
    images = getattr(data, f"{split}_images")
    pre = preprocessing_of(model, data)
    return log_probabilities(model, pre.normalize(images)).argmax(1).cpu().numpy()


def correct_predictions(model, data, split: str = "test") -> np.ndarray:
    """Per-image correctness (n,) bool of `model` on a split of `data` (predicted_classes
    against the split's labels). Raises QuicknetsError as predicted_classes does."""
    predicted = predicted_classes(model, data, split)  # first: its checks name a bad split
    return predicted == np.asarray(getattr(data, f"{split}_labels"))


def format_mcnemar(test: McNemar, name_a: str = "A", name_b: str = "B") -> str:
    """The line `quicknets compare A B` prints: 'mcnemar: only A right 31, only B right 9,
    p=0.00061 (exact, 40 disagreements among 10000 test images); B is better at the 5% level'."""
    line = (
        f"mcnemar: only {name_a} right {test.only_a}, only {name_b} right {test.only_b}, "
        f"p={test.p_value:.3g} (exact, {test.only_a + test.only_b} disagreements among "
        f"{test.n} test images)"
    )
    if test.p_value >= ALPHA:
        return f"{line}; no significant difference at the {ALPHA:.0%} level"
    better = name_a if test.only_a > test.only_b else name_b
    return f"{line}; {better} is better at the {ALPHA:.0%} level"


@dataclass
class Summary:
    """A metric over the seeds of one variant."""

    n: int  # seeds
    mean: float
    std: float | None  # sample std (n - 1); None for one seed or a value that is not finite
    low: float | None  # the 95% confidence interval of the mean (Student t), or None
    high: float | None
    reason: str | None = None  # why std and interval are None
    clipped: bool = False  # the interval was cut at the values the metric can take (bounds)


def summarize(
    values, confidence: float = CONFIDENCE, bounds: tuple = (-math.inf, math.inf)
) -> Summary:
    """Mean, sample std and the confidence interval of the mean (Student t with n - 1 degrees
    of freedom) of per-seed values (n,). `bounds` (low, high), the values the metric can take
    (metric_names.metric_range: [0, 1] for an accuracy), clip the interval, as the mean cannot
    leave them: t's interval is symmetric, and for accuracies near 1 over few seeds it reached
    past 1 (`clipped` says so). One seed, or a NaN or infinite value (a diverged run), gives no
    std and no interval, and a reason. Raises QuicknetsError for no values."""
    xs = _values(values)
    n, mean = len(xs), float(np.mean(xs))
    if not np.isfinite(xs).all():
        return Summary(n, mean, None, None, None, "not every value is finite (a diverged run)")
    if n < 2:
        return Summary(n, mean, None, None, None, ONE_SEED)
    std = float(np.std(xs, ddof=1))
    # Student t's quantile: scipy.stats.t.ppf's own function, without importing scipy.stats
    # (~0.6 s here, at the end of every sweep of seeds)
    from scipy.special import stdtrit

    half = float(stdtrit(n - 1, 0.5 + confidence / 2)) * std / math.sqrt(n)
    low, high = mean - half, mean + half
    clipped = low < bounds[0] or high > bounds[1]
    low, high = float(max(low, bounds[0])), float(min(high, bounds[1]))
    return Summary(n, mean, std, low, high, clipped=clipped)


def _values(values) -> np.ndarray:
    xs = np.asarray(values, dtype=float)
    if xs.ndim != 1 or len(xs) == 0:
        raise QuicknetsError(f"give one value per seed (a non-empty list), not shape {xs.shape}")
    return xs


@dataclass
class SeedComparison:
    """Variant B against variant A over seeds."""

    a: Summary
    b: Summary
    difference: float  # mean of B - mean of A
    test: str | None  # "welch" (scipy ttest_ind, equal_var=False), "paired" (ttest_rel), None
    p_value: float | None  # two-sided; None when no test can be given
    reason: str | None = None  # why test and p_value are None


def compare_seeds(a_values, b_values, paired_by=None) -> SeedComparison:
    """Variant A's per-seed values (n_a,) against B's (n_b,): each summarized (mean, std, 95%
    interval) and a two-sided t-test of the means. `paired_by` = (seeds_a, seeds_b), the seed of
    each value: when both ran the same seeds (the same set, each once), the values are paired
    by seed and tested with a paired t-test (scipy.stats.ttest_rel), which removes what a seed
    does to both; otherwise Welch's t-test (scipy.stats.ttest_ind, equal_var=False), which does
    not assume equal spreads. `test` says which. A variant with one seed, a value that is not
    finite, or no spread at all gives no test, and a reason. Raises QuicknetsError for no
    values, or seeds that are not one per value."""
    a, b = summarize(a_values), summarize(b_values)
    xa, xb = _values(a_values), _values(b_values)
    test, p, reason = _t_test(xa, xb, _pairs(xa, xb, paired_by), a, b)
    return SeedComparison(a, b, b.mean - a.mean, test, p, reason)


def _pairs(xa: np.ndarray, xb: np.ndarray, paired_by) -> tuple | None:
    """(xa, xb) reordered so that position i is one seed in both, when both ran the same seeds;
    None otherwise (no seeds given, or different seeds)."""
    if paired_by is None:
        return None
    seeds_a, seeds_b = (list(s) for s in paired_by)
    if len(seeds_a) != len(xa) or len(seeds_b) != len(xb):
        raise QuicknetsError(
            f"paired_by needs one seed per value: {len(seeds_a)} seeds for {len(xa)} values "
            f"and {len(seeds_b)} for {len(xb)}"
        )
    if len(set(seeds_a)) != len(seeds_a) or sorted(seeds_a) != sorted(seeds_b):
        return None
    order_b = [seeds_b.index(s) for s in seeds_a]
    return xa, xb[order_b]


def _t_test(xa, xb, pairs, a: Summary, b: Summary) -> tuple:
    """(test, two-sided p, reason) of B against A."""
    for s in (a, b):
        if s.reason is not None:
            return None, None, s.reason
    # t = difference / 0: scipy says p = 0 (or NaN for no difference), a claim no spread carries
    spread = np.ptp(pairs[1] - pairs[0]) if pairs is not None else (a.std or 0.0) + (b.std or 0.0)
    if spread <= 4 * np.finfo(float).eps * max(np.abs(xa).max(), np.abs(xb).max()):  # rounding
        return None, None, "the values do not vary over seeds, so no t-test can be given"
    from scipy import stats

    if pairs is not None:
        return "paired", float(stats.ttest_rel(pairs[1], pairs[0]).pvalue), None
    return "welch", float(stats.ttest_ind(xb, xa, equal_var=False).pvalue), None


def format_summary(s: Summary, digits: int = 4) -> str:
    """'0.8812 ± 0.0021, 95% CI [0.8760, 0.8864] (n=3)', or the mean and why there is no
    interval: '0.8812 (n=1: no interval can be given with one seed)'."""
    if s.reason is not None:
        return f"{s.mean:.{digits}f} (n={s.n}: {s.reason})"
    return (
        f"{s.mean:.{digits}f} ± {s.std:.{digits}f}, {CONFIDENCE:.0%} CI "
        f"[{s.low:.{digits}f}, {s.high:.{digits}f}] (n={s.n})"
    )


def format_seed_comparison(c: SeedComparison, name_a: str = "A", name_b: str = "B") -> str:
    """'seeds: B - A = +0.0090, p=0.012 (paired t-test over 3 shared seeds)', or why no test."""
    head = f"seeds: {name_b} - {name_a} = {c.difference:+.4f}"
    if c.test is None:
        return f"{head}, no test: {c.reason}"
    how = (
        f"paired t-test over {c.a.n} shared seeds"
        if c.test == "paired"
        else f"Welch's t-test, {c.a.n} and {c.b.n} seeds"
    )
    return f"{head}, p={c.p_value:.3g} ({how})"


@dataclass
class Mark:
    """One variant against the best of its group of variants."""

    summary: Summary
    best: bool  # the variant with the best mean
    not_worse: bool | None  # not significantly worse than the best; None: no mark can be given
    p_value: float | None  # Holm-adjusted two-sided p against the best (None for the best)
    test: str | None  # "welch" or "paired", as compare_seeds chose
    reason: str | None = None  # why not_worse is None


def not_worse_than_best(
    groups: list, metric: str, direction: str | None = None, alpha: float = ALPHA, seeds=None
) -> list:
    """A Mark for each variant (in the order given): whether it is not significantly worse than
    the variant with the best mean of `metric`; each Mark's summary has the interval of the mean
    clipped to the values `metric` can take (summarize, metric_names.metric_range).

    `groups` holds each variant's per-seed values; `seeds` (optional, the same shape) the seed
    of each value, so that two variants that ran the same seeds are compared by a paired t-test,
    others by Welch's (compare_seeds). `direction` is "max" or "min" (default: the metric's,
    metric_names.METRICS). The test: each variant against the best, two-sided, with Holm's
    correction over the k - 1 comparisons, marked not worse when the adjusted p >= alpha. Why
    not one-sided at alpha: the best is picked after seeing the values, so the difference always
    points the "worse" way, and a one-sided test at alpha would call the loser of two equal
    variants worse 2 * alpha of the time; the two-sided p is the one-sided p at alpha / 2. Why
    Holm: a sweep tests many variants at once, and a mark that says "worse" is a claim the
    numbers must carry; Holm keeps the chance of any false "worse" at alpha, and is never less
    powerful than Bonferroni. A variant with one seed, or whose values are not all finite, gets
    no mark and a reason (so does every variant when the best has one seed). Raises
    QuicknetsError for an unknown direction, no variants, or a variant with no values.
    """
    if direction is None:
        direction = METRICS[metric_name(metric)]
    if direction not in ("max", "min"):
        raise QuicknetsError(f"direction must be 'max' or 'min', not {direction!r}")
    if not groups:
        raise QuicknetsError("not_worse_than_best needs at least one variant")
    seeds = seeds if seeds is not None else [None] * len(groups)
    if len(seeds) != len(groups):
        raise QuicknetsError(f"{len(seeds)} lists of seeds for {len(groups)} variants")
    summaries = [summarize(g, bounds=metric_range(metric)) for g in groups]
    finite = [i for i, s in enumerate(summaries) if math.isfinite(s.mean)]
    if not finite:
        return [Mark(s, False, None, None, None, s.reason) for s in summaries]
    sign = 1 if direction == "max" else -1
    best = max(finite, key=lambda i: sign * summaries[i].mean)  # the first of equal means
    marks, tested = [], []
    for i, s in enumerate(summaries):
        if i == best:
            marks.append(Mark(s, True, True, None, None))
            continue
        if summaries[best].reason == ONE_SEED:
            marks.append(
                Mark(s, False, None, None, None, f"the best variant has one seed: {ONE_SEED}")
            )
            continue
        paired = None if seeds[i] is None or seeds[best] is None else (seeds[best], seeds[i])
        c = compare_seeds(groups[best], groups[i], paired_by=paired)
        if c.test is None and s.reason is None and c.difference == 0:
            marks.append(Mark(s, False, True, 1.0, None))  # the same values, without spread
            continue
        marks.append(Mark(s, False, None, c.p_value, c.test, c.reason))
        if c.p_value is not None:
            tested.append(i)
    for i, p in zip(tested, holm([marks[i].p_value for i in tested])):
        marks[i].p_value, marks[i].not_worse = p, p >= alpha
    return marks


def holm(p_values: list) -> list:
    """Holm's step-down adjusted p-values, in the order given: the i-th smallest of m is
    multiplied by m - i (i from 0), then made non-decreasing and capped at 1."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def format_mark(mark: Mark) -> str:
    """A short cell for a ranking table: 'best', '~best' (not significantly worse, p=0.41),
    'worse' (p=0.003), or '?' with no mark."""
    if mark.best:
        return "best"
    if mark.not_worse is None:
        return "?"
    p = "" if mark.p_value is None else f" (p={mark.p_value:.2g})"
    return f"~best{p}" if mark.not_worse else f"worse{p}"
