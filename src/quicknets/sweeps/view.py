"""A sweep seen whole, from any machine: its variants ranked (mean ± std over seeds), who ran
what, and its figures.

    view = load_sweep("g12", storage="postgresql://user@host/db")   # or from this runs folder
    print(format_sweep(view))            # what `quicknets sweep --show g12 --storage ...` prints
    print(format_importance(sweep_importance(view)))  # importance: lr 0.93, dropout 0.07 (...)
    figures = sweep_figures(view)        # {"curves": Figure, "settings": Figure}

A sweep with a study (every Optuna search; a grid or random search given --storage) is read from
the study alone: each finished trial holds its runs' names, seeds, per-epoch histories and test
metrics (study.py), so a machine that ran none of them ranks and draws them all. A grid or random
search without a study is read from this runs folder's records. Finished runs are ranked; trials
that failed, were pruned or stopped follow, with why. A trial whose worker died, trained again by
another worker, counts once: as that retry.
"""

import math
from dataclasses import dataclass, field

from quicknets.base.errors import QuicknetsError
from quicknets.evaluation.metric_names import higher_is_better

TOP_CURVES = 8  # variants overlaid in the curves figure, best first: more is a tangle


@dataclass
class SweepView:
    name: str
    metric: str  # what ranks the variants (metric_names.METRICS)
    where: str  # the study's place, or the runs folder
    search: object = None  # its Search (None for a sweep saved before plans were kept)
    rows: list = field(default_factory=list)  # finished runs: name, settings, metrics,
    #                                             history, results, worker, local (a folder here)
    groups: list = field(default_factory=list)  # variants ranked, then the unfinished ones
    trials: list = field(default_factory=list)  # a study's trials: number, state, worker, ...
    notes: list = field(default_factory=list)  # lines: retried trials, runs still training


def load_sweep(name: str, runs_dir=None, storage: str | None = None) -> SweepView:
    """The sweep from its study (`storage`, or this runs folder's study file for an Optuna
    search), else from this runs folder's run records."""
    from quicknets.records.runs import runs_root
    from quicknets.sweeps.record import check_name, load_record
    from quicknets.sweeps.space import Search
    from quicknets.sweeps.study import storage_url, study_exists

    name = check_name(name)
    if storage:
        return from_study(storage_url(storage), name, runs_dir)
    record, root = load_record(name, runs_dir), runs_root(runs_dir)
    if record is None:
        local = root / "optuna.sqlite3"
        if local.is_file() and study_exists(storage_url(None, runs_dir), name):
            return from_study(storage_url(None, runs_dir), name, runs_dir)
        raise QuicknetsError(
            f"no sweep named {name!r} in {root} (a sweep run elsewhere: give its --storage URL)"
        )
    if record["storage"]:
        raise QuicknetsError(f"sweep {name}'s trials are in a shared study: give its --storage URL")
    if record["search"]["kind"] == "optuna":
        return from_study(storage_url(None, runs_dir), name, runs_dir)
    return from_runs(name, runs_dir, Search.from_dict(record["search"]))


def unfinished_groups(items: list) -> list:
    """(settings with seed, status, message, run names) of runs or trials that did not finish
    → one group per variant and status, as the ranking lists them (after the finished)."""
    from quicknets.records.comparison import METRICS

    groups = {}
    for settings, status, message, runs in items:
        variant = {k: v for k, v in settings.items() if k != "seed"}
        group = groups.setdefault(
            repr((status, sorted(variant.items()))),
            {
                **{m: (None, None) for m in METRICS},
                "settings": variant,
                "names": [],
                "seeds": [],
                "n": 0,
                "state": status.upper(),
                "message": message,
            },
        )
        group["names"] += runs
        group["seeds"].append(settings.get("seed"))
        group["n"] += 1
    return list(groups.values())


STATES = {"COMPLETE": "done", "PRUNED": "pruned", "RUNNING": "running", "WAITING": "queued"}


def from_study(url: str, name: str, runs_dir=None) -> SweepView:
    import optuna

    from quicknets.records.comparison import group_by_seed, rank
    from quicknets.records.runfolder import final_metrics
    from quicknets.records.runs import runs_root
    from quicknets.sweeps.study import load_search, using_storage, where

    search, _ = load_search(url, name)
    trials = using_storage(
        "read",
        url,
        name,
        lambda storage: optuna.load_study(study_name=name, storage=storage).get_trials(
            deepcopy=False
        ),
    )
    root = runs_root(runs_dir)
    # trials are numbered from 1 here, as the sweep's lines print them (Optuna counts from 0)
    retried_as = {
        t.system_attrs["retry_history"][-1]: t.number + 1
        for t in trials
        if t.system_attrs.get("retry_history")
    }
    view = SweepView(name, search.metric, f"study at {where(url)}", search)
    unfinished = []
    for t in trials:
        attrs, worker = t.user_attrs, t.user_attrs.get("worker", "")
        state = STATES.get(t.state.name) or attrs.get("outcome", "running")
        if state == "running":  # failed as stale, never closed: its worker died
            state = "stopped"
        overrides = {k: v for k, v in t.params.items() if k != "seed"}
        if t.state.name == "COMPLETE":
            for r in attrs.get("results", []):
                view.rows.append(
                    {
                        "name": r["run"],
                        "history": r["history"],
                        "results": r["test"],
                        "settings": trial_settings(search.base, {**overrides, "seed": r["seed"]}),
                        "metrics": final_metrics(r["history"], r["test"]),
                        "worker": worker,
                        "trial": t.number + 1,
                        "local": (root / r["run"]).is_dir(),
                    }
                )
        elif t.number in retried_as:
            why = "was stopped" if state == "interrupted" else "lost its worker (no heartbeat)"
            view.notes.append(
                f"trial {t.number + 1} ({worker or 'no worker'}) {why}: trained "
                f"again as trial {retried_as[t.number]}"
            )
        elif state in ("failed", "pruned", "interrupted", "stopped"):
            message = attrs.get("message") or "its worker stopped (killed?), and no retry is left"
            settings = trial_settings(search.base, dict(t.params))
            unfinished.append((settings, state, message, attrs.get("runs", [])))
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        view.trials.append(
            {
                "number": t.number + 1,
                "state": state,
                "worker": worker,
                "params": dict(t.params),
                "runs": attrs.get("runs", []),
                "seconds": seconds,
                "retried_as": retried_as.get(t.number),
                "started": t.datetime_start,
            }
        )
    skipped = []
    view.groups = rank(
        group_by_seed(view.rows, skipped) + unfinished_groups(unfinished), search.metric
    )
    view.notes += [f"skipped {line}" for line in skipped]
    return view


def from_runs(name: str, runs_dir, search) -> SweepView:
    from quicknets.records import index
    from quicknets.records.comparison import IGNORED, compare_runs, rank
    from quicknets.records.runs import list_runs, runs_root

    root = runs_root(runs_dir)
    view = SweepView(name, search.metric, f"runs folder {root}", search)
    skipped = []
    table = compare_runs(list_runs(runs_dir, sweep=name, skipped=skipped), skipped)
    for row in table["runs"]:
        run = row["run"]
        view.rows.append(
            {
                **row,
                "history": run.history,
                "results": run.results,
                "worker": run.meta.get("host", ""),
                "local": True,
            }
        )
    unfinished, running = [], 0
    for row in index.query(root, status="all", sweep=name):
        if row["status"] == "running":
            running += 1
        elif row["status"] != "done":
            shown = {k: v for k, v in row["settings"].items() if k not in IGNORED}
            unfinished.append((shown, row["status"], row.get("problem") or "", [row["name"]]))
    if running:
        view.notes.append(f"{running} run(s) still training")
    listed = {name for *_, names in unfinished for name in names}  # ranked with the reason
    view.notes += [
        f"skipped {line}" for line in table["skipped"] if line.split(":")[0] not in listed
    ]
    view.groups = rank(table["groups"] + unfinished_groups(unfinished), search.metric)
    return view


def describe_search(view: SweepView) -> str:
    s = view.search
    if s is None:
        return "a sweep"
    seeds = f"{len(s.seeds)} seed(s)"
    if s.kind == "optuna":
        return f"Optuna search, up to {s.trials} trials x {seeds}"
    variants = len(s.plan()) // len(s.seeds)
    return f"{s.kind} search, {variants} variants x {seeds}"


def format_sweep(view: SweepView, all_settings: bool = False) -> str:
    """What `quicknets sweep --show` prints: what the sweep is, its trials by state and by
    worker, the ranked table (the settings that differ, or all with `all_settings`; the 95%
    interval and the mark against the best, format_ranking), and the trials trained again."""
    from collections import Counter

    better = "higher" if higher_is_better(view.metric) else "lower"
    lines = [
        f"sweep {view.name}: {describe_search(view)}; {view.metric}, {better} is better; "
        f"{view.where}"
    ]
    if view.trials:
        states = Counter(t["state"] for t in view.trials if t["retried_as"] is None)
        retried = sum(t["retried_as"] is not None for t in view.trials)
        workers = Counter(t["worker"] for t in view.trials if t["worker"])
        lines.append(
            f"trials: {', '.join(f'{n} {s}' for s, n in states.items())}"
            + (f", {retried} trained again" if retried else "")
            + f"; {len(workers)} worker(s): "
            + ", ".join(f"{w} ({n})" for w, n in workers.items())
        )
    else:
        lines.append(f"runs: {len(view.rows)} finished")
    lines.append(f"ranked by {view.metric} (mean ± sample std over seeds; n = seeds):")
    lines.append(
        format_ranking(view.groups, view.metric, all_settings) if view.groups else "  (none yet)"
    )
    return "\n".join(lines + view.notes)


def finished(view: SweepView) -> list:
    return [g for g in view.groups if g.get("state", "COMPLETE") == "COMPLETE"]


def sweep_importance(view: SweepView, seed: int = 0):
    """Which settings matter (importance.param_importance, fANOVA): each finished variant is
    one trial, its settings (the seed left out) and the mean of the ranking metric over its
    seeds; settings the search draws on a log scale are weighed so. An Importance whose
    `reason` says why there are no shares (fewer than 2 finished variants, optuna or
    scikit-learn missing, ...)."""
    from quicknets.sweeps.importance import param_importance

    return param_importance(variant_trials(view), log_settings=log_settings(view), seed=seed)


def variant_trials(view: SweepView) -> list:
    """(settings without the seed, mean of the ranking metric over its seeds) of each finished
    variant, best first: the trials importance and parallel coordinates read."""
    return [
        ({k: v for k, v in g["settings"].items() if k != "seed"}, g[view.metric][0])
        for g in finished(view)
    ]


def log_settings(view: SweepView) -> list:
    """The settings the search draws on a log scale."""
    from quicknets.sweeps.space import Range

    space = view.search.space if view.search is not None else {}
    return [k for k, v in space.items() if isinstance(v, Range) and v.log]


def plot_sweep_parallel(view: SweepView):
    """Parallel coordinates of the finished variants (importance.plot_parallel_coordinates):
    an axis per varied setting, then the ranking metric's mean over seeds, a line per variant.
    Raises QuicknetsError for fewer than 2 finished variants or no setting that varies."""
    from quicknets.sweeps.importance import plot_parallel_coordinates

    return plot_parallel_coordinates(variant_trials(view), view.metric, log_settings(view))


def plot_sweep_curves(view: SweepView, top: int = TOP_CURVES):
    """The per-epoch curves of the best `top` variants overlaid, each variant's seeds in one
    colour (plots.plot_history)."""
    from quicknets.plots.figures import plot_history
    from quicknets.records.comparison import label, shown_keys

    done = finished(view)
    if not done:
        raise QuicknetsError(f"sweep {view.name} has no finished run to plot")
    keys = [k for k in shown_keys([g["settings"] for g in done]) if k != "seed"]
    histories = {row["name"]: row["history"] for row in view.rows}
    return plot_history(
        {
            f"#{i} {label(g['settings'], keys)}": [histories[n] for n in g["names"]]
            for i, g in enumerate(done[:top], 1)
        }
    )


def plot_settings(view: SweepView):
    """Each varied setting against the ranking metric: a dot per finished run, and the mean
    over the runs that share a value (a line through the means). Numbers on their own scale
    (logarithmic for a log range, or values spread over 20x and more), other values in order."""
    import numpy as np

    from quicknets.plots.figures import NEUTRAL, new_figure
    from quicknets.records.comparison import differing
    from quicknets.sweeps.space import Range

    rows = [r for r in view.rows if r["metrics"].get(view.metric) is not None]
    if not rows:
        raise QuicknetsError(f"sweep {view.name} has no finished run to plot")
    keys = [k for k in differing([r["settings"] for r in rows]) if k != "seed"]
    if not keys:
        raise QuicknetsError(f"sweep {view.name}: no setting varies among its finished runs")
    cols = min(3, len(keys))
    fig = new_figure(4.0 * cols, 3.2 * math.ceil(len(keys) / cols))
    axes = fig.subplots(math.ceil(len(keys) / cols), cols, squeeze=False).ravel()
    space = view.search.space if view.search is not None else {}
    for ax, key in zip(axes, keys):
        xs_raw = [r["settings"].get(key) for r in rows]
        ys = np.array([r["metrics"][view.metric] for r in rows], dtype=float)
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs_raw)
        if numeric:
            xs = np.array(xs_raw, dtype=float)
            spread = xs.min() > 0 and xs.max() / xs.min() >= 20
            if (isinstance(space.get(key), Range) and space[key].log) or spread:
                ax.set_xscale("log")
            jitter = np.zeros(len(xs))
        else:
            values = list(dict.fromkeys(str(x) for x in xs_raw))  # first-seen order
            xs = np.array([values.index(str(x)) for x in xs_raw], dtype=float)
            ax.set_xticks(
                range(len(values)),
                [v if len(v) <= 16 else v[:15] + "…" for v in values],
                rotation=20,
                fontsize=8,
            )
            jitter = (np.arange(len(xs)) % 5 - 2) * 0.04  # dots of one value side by side
        ax.plot(xs + jitter, ys, "o", color=NEUTRAL, alpha=0.6, ms=4, label="a run")
        at = sorted(set(xs.tolist()))
        ax.plot(at, [ys[xs == x].mean() for x in at], "D-", color="black", ms=5, lw=1, label="mean")
        ax.set_xlabel(key)
        ax.set_ylabel(view.metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    fig.suptitle(f"sweep {view.name}: {view.metric} by setting")
    return fig


def sweep_figures(view: SweepView) -> dict:
    """{name: Figure} of the sweep page: the curves, the settings against the metric, and
    parallel coordinates of the variants (a figure that has nothing to show is left out)."""
    figures = {}
    makers = (
        ("curves", plot_sweep_curves),
        ("settings", plot_settings),
        ("parallel", plot_sweep_parallel),
    )
    for name, make in makers:
        try:
            figures[name] = make(view)
        except QuicknetsError:
            continue
    return figures


def trial_settings(base: dict, overrides: dict) -> dict:
    """A trial's settings as the ranking compares runs (comparison.settings)."""
    from quicknets.config.configs import RunConfig
    from quicknets.records.comparison import IGNORED

    flat = RunConfig.build(**{**base, **overrides}).flat()
    return {k: v for k, v in flat.items() if k not in IGNORED}


def format_ranking(groups: list, metric: str, all_settings: bool = False) -> str:
    """The ranked table (comparison.format_groups: mean ± std over seeds, the 95% interval,
    each variant against the best; the settings that differ, or all with `all_settings`), then
    why each trial that did not finish stopped: `  4  failed: training diverged in epoch 1 ...`."""
    from quicknets.records.comparison import format_groups, settings_columns

    keys, hidden = settings_columns([g["settings"] for g in groups], all_settings)
    return format_groups(groups, keys, metric, hidden)
