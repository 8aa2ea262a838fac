"""Compare finished runs: the settings that differ, their metrics, mean ± std over seeds.

    table = compare(["mlp-256-128-64_adam_lr0.003_s0-1a2b3c", "mlp-512-256_sgd_lr0.01_s0-4d5e6f"])
    print(format_compare(table))
    save_figure(plot_curves(table), "curves.png")   # per-epoch curves, one colour per variant

Everything here reads run records (nothing trains). Runs whose settings differ only in the seed
form one group, reported as mean ± std (sample std, n - 1) over its seeds: one run is an anecdote.
"""
import math

from quicknets.errors import QuicknetsError
from quicknets.metrics import METRICS, higher_is_better

# Where and how fast a run trained, not what it trained: never a reason to tell runs apart.
IGNORED = ("data_dir", "device", "threads", "verify")


def settings(run) -> dict:
    """The run's settings, flat ({lr: 0.003, network: '784-256-10', ...}), minus IGNORED."""
    return {k: v for k, v in run.config.flat().items() if k not in IGNORED}


def metrics(run) -> dict:
    """Final numbers of one run (METRICS' names): test metrics, last-epoch validation and
    training, total time."""
    last = run.history[-1] if run.history else {}
    return {"test_accuracy": run.results.get("accuracy"), "test_loss": run.results.get("loss"),
            "val_accuracy": last.get("val_accuracy"), "val_loss": last.get("val_loss"),
            "train_accuracy": last.get("train_accuracy"), "train_loss": last.get("train_loss"),
            "train_loss_sum": last.get("train_loss_sum"),
            "seconds": sum(row.get("seconds", 0.0) for row in run.history),
            "epochs": len(run.history)}


def differing(all_settings: list) -> list:
    """Keys whose value is not the same in every dict (missing counts as a value), sorted."""
    keys = sorted({k for s in all_settings for k in s})
    return [k for k in keys if len({repr(s.get(k)) for s in all_settings}) > 1]


def shown_keys(all_settings: list) -> list:
    """The settings that tell variants apart (differing); when they are all one variant (a
    sweep over seeds only), those set away from the defaults, not all thirty-odd of them."""
    from quicknets.config import RunConfig
    keys = differing(all_settings)
    if keys or not all_settings:
        return keys
    defaults = RunConfig().flat()
    return [k for k, v in all_settings[0].items() if k not in defaults or v != defaults[k]]


def mean_std(values: list) -> tuple:
    """(mean, sample std) of the numbers given, ignoring None; std is 0 for one value."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None, None
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return mean, std


def group_by_seed(rows: list) -> list:
    """Rows {name, settings, metrics} → groups of runs equal in everything but the seed:
    [{settings (without seed), names, seeds, n, <metric>: (mean, std), ...}] in first-seen order."""
    groups = {}
    for row in rows:
        key = repr(sorted((k, repr(v)) for k, v in row["settings"].items() if k != "seed"))
        groups.setdefault(key, []).append(row)
    out = []
    for members in groups.values():
        group = {"settings": {k: v for k, v in members[0]["settings"].items() if k != "seed"},
                 "names": [m["name"] for m in members],
                 "seeds": [m["settings"].get("seed") for m in members], "n": len(members)}
        for metric in METRICS:
            group[metric] = mean_std([m["metrics"].get(metric) for m in members])
        out.append(group)
    return out


def rank(groups: list, metric: str) -> list:
    """Groups best first by the mean of `metric`, in its declared direction (metrics.METRICS)."""
    higher = higher_is_better(metric)
    known = [g for g in groups if g[metric][0] is not None]
    unknown = [g for g in groups if g[metric][0] is None]

    def tie(g):  # equal scores: the lower test loss first
        return g["test_loss"][0] if g["test_loss"][0] is not None else 0.0
    return sorted(known, key=lambda g: (-g[metric][0] if higher else g[metric][0], tie(g))) \
        + unknown


def compare_runs(runs: list) -> dict:
    """The comparison of loaded Run records (pure: reads only the records)."""
    rows = [{"name": r.name, "settings": settings(r), "metrics": metrics(r), "run": r}
            for r in runs]
    keys = differing([r["settings"] for r in rows])
    groups = group_by_seed(rows)
    return {"differing": keys, "runs": rows, "groups": groups}


def compare(refs, runs_dir=None) -> dict:
    """Load runs by name, prefix or folder (or take Run records) and compare them."""
    from quicknets.runs import Run, load_run
    runs = {}  # by folder: a run named twice (by name and prefix, or also matched by --where)
    for ref in refs:  # counts once, not as two seeds with a std of 0
        run = ref if isinstance(ref, Run) else load_run(ref, runs_dir)
        runs.setdefault(run.path.resolve(), run)
    runs = list(runs.values())
    if not runs:
        raise QuicknetsError("nothing to compare: give at least one run")
    return compare_runs(runs)


def fmt(value, digits=4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def fmt_mean_std(pair, digits=4, n=2) -> str:
    """`0.8424 ± 0.0017`; for one run the mean alone, padded (a std of one value is unknown)."""
    mean, std = pair
    if mean is None:
        return "-"
    if n < 2:
        return f"{mean:.{digits}f}   {'':{digits + 2}}"  # padded so the means line up
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def label(settings_: dict, keys: list) -> str:
    """The differing settings of one run or group, `lr=0.003 optimizer=adam`."""
    def show(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    return " ".join(f"{k}={show(settings_.get(k))}" for k in keys) or "(same settings)"


def format_groups(groups: list, keys: list, metric: str = "test_accuracy") -> str:
    """A table of groups: rank, the settings that differ, n seeds, metrics as mean ± std."""
    keys = [k for k in keys if k != "seed"]
    shown = [m for m in ("test_accuracy", "test_loss", "val_accuracy") if
             any(g[m][0] is not None for g in groups)]
    head = f"{'#':>3}  {'settings':<44} {'n':>2}  " + "  ".join(f"{m:>17}" for m in shown)
    lines = [head]
    for i, g in enumerate(groups, 1):
        cells = "  ".join(f"{fmt_mean_std(g[m], n=g['n']):>17}" for m in shown)
        if g.get("state", "COMPLETE") != "COMPLETE":  # an Optuna trial pruned or failed
            cells = f"{g['state'].lower():>17}"
        lines.append(f"{i:>3}  {label(g['settings'], keys):<44} {g['n']:>2}  {cells}")
    return "\n".join(lines)


def format_compare(table: dict) -> str:
    """Differing settings, one line per run, then the seed groups with mean ± std."""
    keys = table["differing"]
    lines = ["differing settings: " + (", ".join(keys) or "none")]
    lines.append(f"{'run':<48} {'settings':<36} {'epochs':>6} {'test_accuracy':>13} "
                 f"{'test_loss':>9}")
    for row in table["runs"]:
        m = row["metrics"]
        lines.append(f"{row['name']:<48} {label(row['settings'], keys):<36} {m['epochs']:>6} "
                     f"{fmt(m['test_accuracy']):>13} {fmt(m['test_loss']):>9}")
    if any(g["n"] > 1 for g in table["groups"]):
        lines += ["", "over seeds (mean ± sample std), best test accuracy first:",
                  format_groups(rank(table["groups"], "test_accuracy"), keys)]
    return "\n".join(lines)


def plot_curves(table: dict):
    """Per-epoch loss and accuracy of every compared run overlaid (plots.plot_history), the
    seeds of one variant in one colour: a matplotlib Figure (save it with plots.save_figure)."""
    from quicknets.plots import plot_history
    keys = [k for k in table["differing"] if k != "seed"]
    curves = {}
    for group in table["groups"]:
        runs = [row for row in table["runs"] if row["name"] in group["names"]]
        name = label(group["settings"], keys) if len(table["runs"]) > 1 else runs[0]["name"]
        curves[name] = [row["run"].history for row in runs]
    return plot_history(curves)
