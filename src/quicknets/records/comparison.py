"""Compare finished runs: the settings that differ, their metrics, mean ± std over seeds.

    table = compare(["mlp-256-128-64_adam_lr0.003_s0-1a2b3c", "mlp-512-256_sgd_lr0.01_s0-4d5e6f"])
    print(format_compare(table))
    save_figure(plot_curves(table), "curves.png")   # per-epoch curves, one colour per variant

Everything here reads run records (nothing trains). Runs whose settings differ only in the seed
form one group, reported as mean ± std (sample std, n - 1) over its seeds: one run is an anecdote.
"""

import math

from quicknets.base.errors import QuicknetsError
from quicknets.evaluation.metric_names import (
    METRICS,
    higher_is_better,
    metric_name,
    metric_range,
)
from quicknets.records.runfolder import final_metrics

# Where and how fast a run trained, not what it trained: never a reason to tell runs apart.
IGNORED = ("data_dir", "device", "threads", "verify")
# How far to trust a run, in results.json once measured: a column when any run compared has it.
TRUST_METRICS = ("test_ece", "mean_corruption_accuracy")


def settings(run) -> dict:
    """The run's settings, flat ({lr: 0.003, network: '784-256-10', ...}), minus IGNORED."""
    return {k: v for k, v in run.config.flat().items() if k not in IGNORED}


def metrics(run) -> dict:
    """The final numbers of one run (runfolder.final_metrics: validation and training of the
    epoch whose weights it kept, test, total time)."""
    return final_metrics(run.history, run.results)


def differing(all_settings: list) -> list:
    """Keys whose value is not the same in every dict (missing counts as a value), sorted."""
    keys = sorted({k for s in all_settings for k in s})
    return [k for k in keys if len({repr(s.get(k)) for s in all_settings}) > 1]


def settings_columns(all_settings: list, every: bool = False, seed: bool = False) -> tuple:
    """(keys a table shows, how many it hides): the settings that tell runs apart (shown_keys),
    or with `every` all of them, sorted; the hidden are those equal in every run. The seed is
    shown only with `seed` (a table of single runs; a table of variants groups seeds)."""
    keys = sorted({k for s in all_settings for k in s if seed or k != "seed"})
    if every:
        return keys, 0
    shown = [k for k in shown_keys(all_settings) if seed or k != "seed"]
    return shown, len(keys) - len(shown)


def hidden_line(hidden: int) -> list:
    """The line under a table that hides settings equal in every run, or none."""
    if not hidden:
        return []
    equal = f"{hidden} setting{'s' * (hidden != 1)} equal in every run"
    return [f"{equal} not shown (--all-settings shows them)"]


def shown_keys(all_settings: list) -> list:
    """The settings that tell variants apart (differing); when they are all one variant (a
    sweep over seeds only), those set away from the defaults, not all thirty-odd of them."""
    from quicknets.config.configs import RunConfig

    keys = differing(all_settings)
    if keys or not all_settings:
        return keys
    defaults = RunConfig().flat()
    return [k for k, v in all_settings[0].items() if k not in defaults or v != defaults[k]]


def mean_std(values: list) -> tuple:
    """(mean, sample std) of the numbers given, ignoring None. One value has no std (None, not
    0); a NaN or infinite value (a diverged run) makes the mean NaN or infinite and the std None;
    no value at all is (None, None)."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None, None
    mean = sum(xs) / len(xs)
    if len(xs) < 2 or not math.isfinite(mean):
        return mean, None
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def diverged(value) -> bool:
    """Whether a metric is NaN or infinite (a run that diverged, or a record that says so)."""
    return isinstance(value, float) and not math.isfinite(value)


def run_identity(run) -> str:
    """What stays the same when a run folder is copied or renamed: the run id written into its
    meta.json at start; for a record made before run ids, its first name and creation time."""
    meta = run.meta or {}
    if meta.get("run_id"):
        return meta["run_id"]
    if meta.get("name") and meta.get("created"):
        return f"{meta['name']} {meta['created']}"
    return str(run.path.resolve())


def run_row(run) -> dict:
    """A loaded Run as the row group_by_seed takes: name, settings, metrics, and what tells a
    copy of it (id: run_identity; original: its folder has the name it was created with)."""
    return {
        "name": run.name,
        "settings": settings(run),
        "metrics": metrics(run),
        "run": run,
        "id": run_identity(run),
        "where": str(run.path),
        "original": (run.meta or {}).get("name") == run.name,
    }


def count_once(rows: list, seeds: bool = True) -> tuple:
    """(rows, skipped): each run once and (with `seeds`) each seed of a variant once, in the
    given order. Left out, with one line each saying why: a copy of a run already counted (the
    same `id`: a `cp -r` backup, a renamed folder, the same run in two runs folders; the folder
    holding the run's first name is the one kept), and a second run with the same settings and
    seed (no new seed, on one machine the same numbers: counting it would fake a seed and
    shrink the std)."""
    order = sorted(range(len(rows)), key=lambda i: not rows[i].get("original", True))
    by_id, by_seed, kept, skipped = {}, {}, set(), []
    for i in order:
        row = rows[i]
        where = row.get("where", row["name"])
        if row.get("id") is not None and row["id"] in by_id:
            skipped.append(
                (i, f"{where}: a copy of run {by_id[row['id']]} (the same run id); counted once")
            )
            continue
        key = repr(sorted((k, repr(v)) for k, v in row["settings"].items()))
        if seeds and key in by_seed:
            skipped.append(
                (
                    i,
                    f"{where}: the same settings and seed "
                    f"({row['settings'].get('seed')}) as run {by_seed[key]}, so no "
                    "new seed; counted once",
                )
            )
            continue
        if row.get("id") is not None:
            by_id[row["id"]] = where
        by_seed[key] = where
        kept.add(i)
    return [row for i, row in enumerate(rows) if i in kept], [line for _, line in sorted(skipped)]


def group_by_seed(rows: list, skipped: list | None = None) -> list:
    """Rows {name, settings, metrics} → groups of runs equal in everything but the seed:
    [{settings (without seed), names, seeds, n, <metric>: (mean, std), ...}] in first-seen order.
    Each run and seed counts once (count_once); what was left out is appended to `skipped`
    (one line each), or without that list given as a warning."""
    rows, left_out = count_once(rows)
    for line in left_out:
        if skipped is None:
            import warnings

            warnings.warn(f"skipped run {line}", stacklevel=2)
        else:
            skipped.append(line)
    groups = {}
    for row in rows:
        key = repr(sorted((k, repr(v)) for k, v in row["settings"].items() if k != "seed"))
        groups.setdefault(key, []).append(row)
    out = []
    for members in groups.values():
        group = {
            "settings": {k: v for k, v in members[0]["settings"].items() if k != "seed"},
            "names": [m["name"] for m in members],
            "seeds": [m["settings"].get("seed") for m in members],
            "n": len(members),
        }
        for metric in METRICS:
            group[metric] = mean_std([m["metrics"].get(metric) for m in members])
        # per seed, for the interval and the tests (mark_variants): {metric: [value per seed]}
        group["values"] = {m: [r["metrics"].get(m) for r in members] for m in METRICS}
        out.append(group)
    return out


def rank(groups: list, metric: str) -> list:
    """Groups best first by the mean of `metric`, in its declared direction
    (metric_names.METRICS)."""
    higher = higher_is_better(metric)
    known = [g for g in groups if g[metric][0] is not None and not diverged(g[metric][0])]
    nan = [g for g in groups if diverged(g[metric][0])]  # after every number, never first
    unknown = [g for g in groups if g[metric][0] is None]

    def tie(g):  # equal scores: the lower test loss first
        loss = g["test_loss"][0]
        return loss if loss is not None and not diverged(loss) else math.inf

    return (
        sorted(known, key=lambda g: (-g[metric][0] if higher else g[metric][0], tie(g)))
        + nan
        + unknown
    )


def compare_runs(runs: list, skipped=()) -> dict:
    """The comparison of loaded Run records (pure: reads only the records): {differing, runs
    (a row per run, copies left out), groups (each seed counted once), skipped (a line per run
    left out of either, after those given: runs a reader could not load)}."""
    skipped = list(skipped)
    rows, copies = count_once([run_row(r) for r in runs], seeds=False)  # every run, once
    keys = differing([r["settings"] for r in rows])
    groups = group_by_seed(rows, skipped)  # and every seed once
    return {"differing": keys, "runs": rows, "groups": groups, "skipped": skipped + copies}


def compare(refs, runs_dir=None, skipped=()) -> dict:
    """Load runs by name, prefix or folder (or take Run records) and compare them. `skipped`:
    lines naming runs already left out (list_runs'), kept in the table's `skipped`."""
    from quicknets.records.runs import Run, load_run

    by_folder = {}  # a run named twice (by name and prefix, or also matched by --where)
    for ref in refs:  # is one run: not a copy, nothing to report
        run = ref if isinstance(ref, Run) else load_run(ref, runs_dir)
        by_folder.setdefault(run.path.resolve(), run)
    runs = list(by_folder.values())
    if not runs:
        raise QuicknetsError("nothing to compare: give at least one run")
    return compare_runs(runs, skipped)


def run_predictions(run, data_dir=None) -> dict:
    """What McNemar's test needs of one finished run (a Run): {"predicted": int (n,), "labels":
    int (n,), "images": its test images as loaded}, from its saved model and the data it
    recorded (as `quicknets evaluate` loads them; `data_dir` for data that moved). Raises
    QuicknetsError when the model or the data cannot be loaded."""
    from quicknets.data.loading import load_recorded
    from quicknets.evaluation.significance import predicted_classes
    from quicknets.records.runs import load_model

    model = load_model(run)
    data = load_recorded(run.config, data_dir, recorded=(run.meta or {}).get("data"))
    return {
        "predicted": predicted_classes(model, data),
        "labels": data.test_labels.numpy(),
        "images": data.test_images,
    }


def mcnemar_runs(a: dict, b: dict):
    """McNemar's exact test (significance.mcnemar) of two runs' run_predictions. Raises
    QuicknetsError when they were tested on different test sets: a different number of images,
    different labels, or different images of the same shape."""
    import torch

    from quicknets.evaluation.significance import mcnemar

    test = mcnemar(a["predicted"], b["predicted"], labels=(a["labels"], b["labels"]))
    same_shape = a["images"].shape == b["images"].shape
    if same_shape and not torch.equal(a["images"], b["images"]):
        differ = (a["images"] != b["images"]).flatten(1).any(1).sum()
        raise QuicknetsError(
            f"the runs were tested on different test sets: their test images differ at "
            f"{int(differ)} of {len(a['labels'])} images"
        )
    return test


def fmt(value, digits=4) -> str:
    if value is None:
        return "-"
    if diverged(value):
        return f"{value} (diverged)"  # `nan (diverged)`, never a number that looks like one
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def fmt_mean_std(pair, digits=4, n=2) -> str:
    """`0.8424 ± 0.0017`; for one run (n < 2, or no std) the mean alone, padded (a std of one
    value is unknown, never 0); `nan (diverged)` when a run's value is NaN or infinite."""
    mean, std = pair
    if mean is None:
        return "-"
    if diverged(mean):
        return fmt(mean)
    if n < 2 or std is None:
        return f"{mean:.{digits}f}   {'':{digits + 2}}"  # padded so the means line up
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def label(settings_: dict, keys: list) -> str:
    """The differing settings of one run or group, `lr=0.003 optimizer=adam`."""

    def show(v):  # 6 digits: 0.003 and 0.0030001 are two settings, and look it
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    return " ".join(f"{k}={show(settings_.get(k))}" for k in keys) or "(same settings)"


def finished_group(g: dict) -> bool:
    """A variant whose runs finished (not a failed or pruned trial listed with the ranking)."""
    return g.get("state", "COMPLETE") == "COMPLETE" and "values" in g


def mark_variants(groups: list, metric: str) -> list:
    """For each group (group_by_seed's, in any order): a significance.Mark of its per-seed
    values of `metric` against the best variant's (not_worse_than_best: two-sided t-tests,
    paired over shared seeds, else Welch's, Holm-corrected), or None for a group that did not
    finish or has no value of the metric. A run without the metric is left out of its variant;
    a NaN (diverged) value gives its variant no mark, with the reason."""
    from quicknets.evaluation.significance import not_worse_than_best

    at = []
    for i, g in enumerate(groups):
        if not finished_group(g):
            continue
        pairs = [(s, v) for s, v in zip(g["seeds"], g["values"][metric]) if v is not None]
        if pairs:
            at.append((i, [s for s, _ in pairs], [v for _, v in pairs]))
    marks = [None] * len(groups)
    if at:
        found = not_worse_than_best(
            [values for *_, values in at], metric, seeds=[seeds for _, seeds, _ in at]
        )
        for (i, *_), mark in zip(at, found):
            marks[i] = mark
    return marks


def judged_columns(marks: list) -> tuple:
    """(show the 95% CI column, show the `vs best` column) of a ranking with these marks: an
    interval once a variant has 2 seeds, a mark once another variant stands beside it."""
    marks = [m for m in marks if m is not None]
    interval = any(m.summary.n >= 2 for m in marks)
    return interval, interval and len(marks) >= 2


def significance_lines(marks: list, metric: str) -> list:
    """What the columns `95% CI` and `vs best` of a ranking mean, which test gave them, and why
    a variant has no mark (and, where an interval was clipped to the values the metric can
    take, that it was); with one run per variant, the one line saying that no interval can be
    given (and the table shows no mark)."""
    from quicknets.evaluation.significance import ALPHA, CONFIDENCE, ONE_SEED

    marks = [m for m in marks if m is not None]
    interval, versus = judged_columns(marks)
    if not interval:
        return [
            f"one run per variant: {ONE_SEED}, so no variant is marked better or worse "
            "(run each variant over seeds for that)"
        ] * (len(marks) > 1)
    ci = f"{CONFIDENCE:.0%} CI: the confidence interval of the mean {metric} over seeds (Student t)"
    if any(m.summary.clipped for m in marks):  # t's interval is symmetric; the values are not
        low, high = metric_range(metric)
        ci += (
            f", clipped to its range [{low:g}, {high:g}]"
            if math.isfinite(high)
            else f", clipped at {low:g}, its least value"
        )
    if not versus:
        return [ci]
    tests = {m.test for m in marks if m.test is not None}
    compared = sum(m.p_value is not None and not m.best for m in marks)
    how = {
        frozenset({"paired"}): "paired t-test over the seeds they share",
        frozenset({"welch"}): "Welch's t-test",
        frozenset({"paired", "welch"}): "paired t-test where two variants ran the same "
        "seeds, else Welch's t-test",
    }.get(frozenset(tests))
    lines = [
        ci,
        f"vs best: ~best = not significantly worse than the best, worse = significantly worse "
        f"({ALPHA:.0%} level)",
    ]
    if how is not None:
        lines.append(
            f"  by a two-sided {how} against the best, Holm-corrected over {compared} "
            f"comparison{'s' * (compared != 1)}"
        )
    reasons = dict.fromkeys(m.reason for m in marks if m.not_worse is None and m.reason)
    lines += [f"  ? = no test: {reason}" for reason in reasons]
    return lines


def format_groups(groups: list, keys: list, metric: str = "test_accuracy", hidden: int = 0) -> str:
    """A table of groups: rank, the settings that differ, n seeds, metrics as mean ± std, the
    95% interval of `metric` and each variant's mark against the best (mark_variants); then
    what those mean (significance_lines) and how many equal settings are hidden."""
    from quicknets.evaluation.significance import format_mark

    keys = [k for k in keys if k != "seed"]
    shown = [
        m
        for m in ("test_accuracy", "test_loss", "val_accuracy", *TRUST_METRICS)
        if any(g.get(m, (None,))[0] is not None for g in groups)  # a study's: no trust metrics
    ]
    marks = mark_variants(groups, metric)
    interval, versus = judged_columns(marks)
    extra = f"  {'95% CI':>17}" * interval + f"  {'vs best':<16}" * versus
    head = f"{'#':>3}  {'settings':<44} {'n':>2}  " + "  ".join(
        f"{m:>{max(17, len(m))}}" for m in shown
    )
    lines = [(head + extra).rstrip()]
    for i, (g, mark) in enumerate(zip(groups, marks), 1):
        cells = "  ".join(f"{fmt_mean_std(g[m], n=g['n']):>{max(17, len(m))}}" for m in shown)
        if g.get("state", "COMPLETE") != "COMPLETE":  # an Optuna trial pruned or failed
            cells = f"{g['state'].lower():>17}"
        elif interval and mark is not None:
            s = mark.summary
            ci = "-" if s.low is None else f"[{s.low:.4f}, {s.high:.4f}]"
            cells += f"  {ci:>17}" + f"  {format_mark(mark):<16}" * versus
        lines.append(f"{i:>3}  {label(g['settings'], keys):<44} {g['n']:>2}  {cells}".rstrip())
    lines += [  # why each trial that did not finish stopped
        f"{i:>3}  {g['state'].lower()}: {g['message']}"
        for i, g in enumerate(groups, 1)
        if g.get("state", "COMPLETE") != "COMPLETE" and g.get("message")
    ]
    return "\n".join(lines + significance_lines(marks, metric) + hidden_line(hidden))


def sort_runs(rows: list, metric: str) -> list:
    """compare's run rows best first by `metric` in its declared direction (metric_names.METRICS),
    then NaN, then those without it; equal values keep their order."""
    higher = higher_is_better(metric)

    def key(row):
        value = row["metrics"].get(metric)
        if value is None:
            return (2, 0.0)
        if diverged(value):
            return (1, 0.0)
        return (0, -value if higher else value)

    return sorted(rows, key=key)


def format_compare(table: dict, all_settings: bool = False, sort: str | None = None) -> str:
    """Differing settings (every setting with `all_settings`), one line per run (best `sort`
    first when given, else as given; the trust metrics as columns when a run has them, "-"
    where one lacks them), then the variants over seeds with mean ± std, the 95% interval and a
    mark against the best, ranked by `sort` (default test_accuracy)."""
    metric = metric_name(sort) if sort else "test_accuracy"
    every = [r["settings"] for r in table["runs"]]
    keys, hidden = settings_columns(every, all_settings, seed=True)
    if not all_settings:
        keys = table["differing"]  # only these, even when no setting differs
        hidden = len(settings_columns(every, True, seed=True)[0]) - len(keys)
    rows = sort_runs(table["runs"], metric) if sort else table["runs"]
    shown = ["test_accuracy", "test_loss"]
    shown += [
        m for m in TRUST_METRICS if m == metric or any(r["metrics"][m] is not None for r in rows)
    ]
    widths = {m: max(9, len(m)) for m in shown}
    lines = ["differing settings: " + (", ".join(table["differing"]) or "none")]
    lines.append(
        f"{'run':<48} {'settings':<36} {'epochs':>6} "
        + " ".join(f"{m:>{widths[m]}}" for m in shown)
    )
    for row in rows:
        m = row["metrics"]
        lines.append(
            f"{row['name']:<48} {label(row['settings'], keys):<36} {m['epochs']:>6} "
            + " ".join(f"{fmt(m[k]):>{widths[k]}}" for k in shown)
        )
    lines += hidden_line(hidden)
    if any(g["n"] > 1 for g in table["groups"]):
        lines += [
            "",
            f"over seeds (mean ± sample std), best {metric.replace('_', ' ')} first:",
            format_groups(rank(table["groups"], metric), keys, metric),
        ]
    elif len(table["runs"]) > 2:  # two runs: McNemar's test on their test set judges them
        lines += significance_lines(mark_variants(table["groups"], metric), metric)
    return "\n".join(lines + [f"skipped {line}" for line in table.get("skipped", ())])


def plot_curves(table: dict):
    """Per-epoch loss and accuracy of every compared run overlaid (plots.plot_history), the
    seeds of one variant in one colour: a matplotlib Figure (save it with plots.save_figure)."""
    from quicknets.plots.figures import plot_history

    keys = [k for k in table["differing"] if k != "seed"]
    curves = {}
    for group in table["groups"]:
        runs = [row for row in table["runs"] if row["name"] in group["names"]]
        name = label(group["settings"], keys) if len(table["runs"]) > 1 else runs[0]["name"]
        curves[name] = [row["run"].history for row in runs]
    return plot_history(curves)
