"""A run's figures, and one self-contained HTML page that shows the whole run; the same for a
whole sweep.

    run = load_run("mlp-256-128-64_adam_lr0.003_s0-1a2b3c")
    figures = run_figures(run, load_model(run), data)    # {name: Figure}, as `quicknets show` saves
    path = write_report(run)                             # runs/<run>/report.html
    path = write_sweep_report(load_sweep("g12", storage=URL))   # runs/sweeps/g12.html

The page holds the run's settings, how it was made, the per-epoch table, the test metrics, the
per-class table, the figures and the section "Can you trust it?" (trust_section.py). Figures
are embedded as base64 PNG data URIs and the styles are inline, so the page fetches nothing and
opens offline in any browser; all text is escaped. Both read the run record and the saved model;
nothing is retrained. The sweep page holds the ranked table, the curves of the best variants,
each varied setting against the metric, the trials (who ran what, when) and links to the runs'
own pages that are in this runs folder; it reads only the sweep's study or run records
(sweeps/view.py).
"""

import base64
import importlib.util
from html import escape
from pathlib import Path

from quicknets.base.errors import QuicknetsError
from quicknets.base.storage import atomic_write_bytes
from quicknets.evaluation.calibration import (
    format_calibration,
)
from quicknets.outputs.trust_section import reliability_figure
from quicknets.plots.figures import (
    plot_confusion_matrix,
    plot_history,
    plot_top_losses,
    save_figure,
    show_predictions,
    to_png,
)

FIGURES = {  # file stem -> caption
    "curves": "Loss and accuracy per epoch (the star: the test set after the last epoch)",
    "confusion": "Confusion matrix on the test set: each true class's images, by predicted class",
    "predictions": "The first 16 test images with their predicted class",
    "top_losses": "The most confidently wrong test images, each beside its Integrated Gradients "
    "map for the class the network chose (red: for it, blue: against; where Captum is "
    "installed, else the images alone)",
    "reliability": "Reliability diagram of the test set (Guo et al. 2017): accuracy against "
    "confidence in 15 equal-width bins, of the probabilities the model reports (after its "
    "temperature, if it has one); below, the share of images per bin",
}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1050px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; word-break: break-all; } h2 { border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
.bar { background: #1f77b4; height: 0.8em; display: inline-block; }
.big { font-size: 1.3em; } pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
.figures { display: flex; flex-wrap: wrap; gap: 0 1.5em; align-items: flex-start; }
figure { margin: 1em 0 1.5em; flex: 0 1 auto; min-width: 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.what { color: #444; }
figcaption { color: #555; font-size: 0.9em; }
"""


def run_figures(run, model, data, reliability: bool = True) -> dict:
    """The run's figures (FIGURES): curves and confusion matrix from its record, predictions,
    top losses and, with `reliability`, the reliability diagram from its saved model on its
    test set (the report draws that one in its section "Can you trust it?")."""
    figures = {
        "curves": plot_history(run.history, run.results, title=run.name),
        "confusion": plot_confusion_matrix(run.results),
        "predictions": show_predictions(model, data, n=16),
        "top_losses": _top_losses(model, data),
    }
    if reliability:
        figures["reliability"] = reliability_figure(model, data)
    return figures


def _top_losses(model, data):
    """The 9 top losses, each beside its Integrated Gradients map (9 maps: 20 ms for the
    default MLP, 0.4 s for the cnn preset, attribution.py); without Captum, the images alone."""
    from quicknets.plots.attribution import plot_top_losses_explained

    if importlib.util.find_spec("captum") is None:
        return plot_top_losses(model, data, k=9)
    return plot_top_losses_explained(model, data, k=9, method="integrated_gradients")


def save_figures(figures: dict, folder) -> list:
    """Write each figure as <folder>/<name>.png (atomically); return the paths."""
    return [save_figure(fig, Path(folder) / f"{name}.png") for name, fig in figures.items()]


def _cell(value) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4f}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{escape(str(value))}</td>"


def _table(header: list, rows: list) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _settings(config: dict, meta: dict) -> str:
    """The config (data, model, train) and what made the run, as key/value tables."""
    import dataclasses

    parts = []
    for section in ("data", "network", "train"):
        items = dataclasses.asdict(getattr(config, section))
        rows = [(k, str(v)) for k, v in items.items()]  # as recorded: lr 1e-05 stays 1e-05
        parts.append(f"<h3>{escape(section)}</h3>" + _table(["setting", "value"], rows))
    made = {
        k: meta[k]
        for k in (
            "created",
            "seed",
            "code_version",
            "quicknets",
            "torch",
            "python",
            "cuda",
            "platform",
            "command",
        )
        if k in meta
    }
    made.update({f"data {k}": v for k, v in (meta.get("data") or {}).items()})
    made_rows = [(k, str(v)) for k, v in made.items()]
    parts.append("<h3>made by</h3>" + _table(["", "value"], made_rows))
    return "".join(parts)


def _history(history: list) -> str:
    keys = [k for k in dict.fromkeys(k for row in history for k in row) if k != "epochs"]
    return _table(keys, [[row.get(k, "") for k in keys] for row in history])


def _results(results: dict) -> str:
    split = results.get("split", "test")
    parts = [
        f'<p class="big">{escape(split)} accuracy <b>{results["accuracy"]:.4f}</b>, '
        f"loss <b>{results['loss']:.4f}</b>, on {results['n']} images</p>"
    ]
    if results.get("calibration"):  # records before calibration was measured have none
        parts.append(f"<p>{escape(format_calibration(results['calibration']))}</p>")
    rows = []
    for row in results.get("per_class", []):
        acc = row["accuracy"]  # None (NaN in older records): a class with no images
        known = acc is not None and acc == acc
        width = round(150 * acc) if known else 0
        shown = f"{acc:.4f}" if known else "-"
        rows.append(
            f'<tr><td>{escape(str(row["class"]))}</td><td class="num">{shown}</td>'
            f'<td class="num">{row["n"]}</td>'
            f'<td><span class="bar" style="width:{width}px"></span></td></tr>'
        )
    parts.append(
        "<table><tr><th>class</th><th>accuracy</th><th>images</th><th></th></tr>"
        + "".join(rows)
        + "</table>"
    )
    if results.get("most_confused"):
        parts.append(
            "<p>Most confused (true &rarr; predicted: images): "
            + ", ".join(
                f"{escape(p['true'])} &rarr; {escape(p['predicted'])}: {p['count']}"
                for p in results["most_confused"]
            )
            + "</p>"
        )
    if results.get("familiarity"):
        parts.append(_familiarity(results["familiarity"]))
    return "".join(parts)


def _familiarity(fit: dict) -> str:
    """The run's familiarity fit (records.runs.fit_run_familiarity) in one sentence."""
    held_out = {"val": "validation images", "train": "held-out training images"}
    where = held_out.get(fit.get("threshold_split"), "held-out images")

    def number(key, form: str, scale: float = 1) -> str:  # "?" for a value JSON lost (null)
        value = fit.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return format(value * scale, form) if ok else "?"

    return (
        f"<p>Familiarity: {escape(str(fit.get('method')))} (k = {number('k', 'd')}), "
        f"threshold <b>{number('threshold', '.4g')}</b>, passed by "
        f"{number('pass_rate', '.0f', 100)}% of the {where}; an image scoring below it is "
        "said not to look like the training images.</p>"
    )


def _network(layers) -> str:
    """The network's layers (models.layer_table rows) as a table with the totals; a summary
    string as it is."""
    if isinstance(layers, str):
        return f"<h2>Network</h2><pre>{escape(layers)}</pre>" if layers else ""

    def row(name, kind, shape, params, flops):
        return (
            f"<tr><td>{escape(name)}</td><td>{escape(kind)}</td><td>{escape(shape)}</td>"
            f'<td class="num">{params:,}</td><td class="num">{flops:,}</td></tr>'
        )

    body = "".join(
        row(r["layer"], r["type"], str(r["output shape"]), r["params"], r["flops"]) for r in layers
    )
    body += row("total", "", "", sum(r["params"] for r in layers), sum(r["flops"] for r in layers))
    return (
        "<h2>Network</h2><table><tr><th>layer</th><th>type</th><th>output shape</th>"
        f"<th>params</th><th>FLOPs</th></tr>{body}</table>"
        + "<p>FLOPs of the forward pass of one image, counted by torch.utils.flop_counter "
        "(2 per multiply-add of the matrix products and convolutions).</p>"
    )


def render_report(run, pngs: dict, model_summary="", trust_pngs: dict | None = None) -> str:
    """The page as a string; `pngs` maps figure names (see FIGURES) to PNG bytes;
    `model_summary` is the network's models.layer_table (or a summary text); `trust_pngs`
    the figures of "Can you trust it?" (trust.TRUST_FIGURES; None: no such section)."""
    from quicknets.outputs.trust_section import render_trust

    figures = "".join(
        f'<figure><img alt="{escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode("ascii")}">'
        f"<figcaption>{escape(FIGURES.get(name, name))}</figcaption></figure>"
        for name, png in pngs.items()
    )
    network = _network(model_summary)
    data, net, train = run.config.data, run.config.network, run.config.train
    epochs = len(run.history)
    what = (
        f"{net.network} on {data.dataset}, {train.optimizer} at lr {train.lr}, batch "
        f"{train.batch_size}, {epochs} epoch{'s' * (epochs != 1)}, seed {train.seed}"
        + (f", preset {run.config.preset}" if run.config.preset else "")
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>quicknets run {escape(run.name)}</title><style>{STYLE}</style></head>
<body>
<h1>quicknets run {escape(run.name)}</h1>
<p class="what">{escape(what)}</p>
<h2>Test results</h2>{_results(run.results)}
<h2>Figures</h2><div class="figures">{figures}</div>
{render_trust(trust_pngs, run.name) if trust_pngs is not None else ""}
<h2>Epochs</h2>{_history(run.history)}
{network}
<h2>Settings</h2>{_settings(run.config, run.meta)}
</body></html>
"""


def write_report(run, model=None, data=None, path=None, data_dir=None) -> Path:
    """Write the run's HTML page to `path` (default <run folder>/report.html); return the path.
    The model and data are loaded from the record unless given."""
    from quicknets.data.loading import load_recorded
    from quicknets.networks.models import layer_table
    from quicknets.outputs.trust_section import trust_figures
    from quicknets.records.runs import load_model

    model = model if model is not None else load_model(run)
    data = (
        data
        if data is not None
        else load_recorded(run.config, data_dir, recorded=run.meta.get("data"))
    )
    figures = run_figures(run, model, data, reliability=False)  # in the trust section
    pngs = {name: to_png(fig) for name, fig in figures.items()}
    trust = {name: to_png(fig) for name, fig in trust_figures(run, model, data).items()}
    page = render_report(run, pngs, layer_table(model), trust)
    path = Path(path) if path is not None else run.path / "report.html"
    try:
        atomic_write_bytes(path, page.encode("utf-8"))
    except OSError as e:
        raise QuicknetsError(f"cannot write {path}: {e.strerror or e}") from None
    return path


# --- the sweep page: one sweep, every trial, from its study or this runs folder ---

SWEEP_FIGURES = {  # figure name -> caption
    "curves": "Loss and accuracy per epoch of the best variants, ranked as in the table (each "
    "variant's seeds in one colour)",
    "settings": "Each varied setting against the ranking metric: a dot per finished run, the "
    "line through the means",
    "parallel": "Parallel coordinates: an axis per varied setting, then the ranking metric "
    "(mean over seeds); a line per finished variant, coloured by the metric, the best on top",
}


def _run_link(name: str, root: Path, page_dir: Path) -> str:
    """A run's name, linked to its own report where that page exists in this runs folder."""
    import os
    from urllib.parse import quote

    page = root / name / "report.html"
    if page.is_file():
        href = quote(Path(os.path.relpath(page, page_dir)).as_posix())
        return f'<a href="{href}">{escape(name)}</a>'
    local = "*" if (root / name).is_dir() else ""
    return f"<code>{escape(name)}</code>{local}"


def _ranking(view, root: Path, page_dir: Path, all_settings: bool = False) -> str:
    """The ranked variants: the settings that differ (all with `all_settings`), seeds, the
    metrics as mean ± std, the 95% interval of the ranking metric and each variant against the
    best (as `sweep --show`: comparison.mark_variants), then what those mean and how many
    equal settings are hidden."""
    from quicknets.evaluation.significance import format_mark
    from quicknets.records.comparison import (
        fmt_mean_std,
        hidden_line,
        judged_columns,
        mark_variants,
        settings_columns,
        significance_lines,
    )

    keys, hidden = settings_columns([g["settings"] for g in view.groups], all_settings)
    metrics = list(dict.fromkeys([view.metric, "test_accuracy", "test_loss"]))
    marks = mark_variants(view.groups, view.metric)
    interval, versus = judged_columns(marks)
    extra = [f"95% CI of {view.metric}"] * interval + ["vs best"] * versus
    head = "".join(f"<th>{escape(h)}</th>" for h in ["#", *keys, "n", *metrics, *extra, "runs"])
    rows = []
    for i, (g, mark) in enumerate(zip(view.groups, marks), 1):
        cells = [f'<td class="num">{i}</td>']
        cells += [_setting_cell(g["settings"].get(k)) for k in keys]
        cells.append(f'<td class="num">{g["n"]}</td>')
        if g.get("state", "COMPLETE") == "COMPLETE":
            for m in metrics:  # as `sweep --show` prints them: no std of one seed, NaN said
                text = fmt_mean_std(g[m], n=g["n"]).strip()
                cells.append(f'<td class="num">{escape(text)}</td>')
            if interval:
                s = mark.summary if mark is not None else None
                ci = "-" if s is None or s.low is None else f"[{s.low:.4f}, {s.high:.4f}]"
                cells.append(f'<td class="num">{ci}</td>')
            if versus:
                cells.append(_cell(format_mark(mark) if mark is not None else "?"))
        else:
            cells.append(
                f'<td colspan="{len(metrics) + len(extra)}">{escape(g["state"].lower())}: '
                f"{escape(g.get('message', ''))}</td>"
            )
        cells.append("<td>" + " ".join(_run_link(n, root, page_dir) for n in g["names"]) + "</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    notes = significance_lines(marks, view.metric) + hidden_line(hidden)
    below = "".join(f'<p class="what">{escape(line.strip())}</p>' for line in notes)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{below}"


def _setting_cell(value) -> str:
    """A setting as the text tables show it (comparison.label): 0.003 and 0.0030001 apart."""
    if isinstance(value, float):
        return f'<td class="num">{value:.6g}</td>'
    return _cell(value)


def _trials(view, root: Path, page_dir: Path) -> str:
    """A study's trials in order: state, who ran them, when, how long, what."""
    rows = []
    for t in view.trials:
        note = f"trained again as trial {t['retried_as']}" if t["retried_as"] is not None else ""
        started = t["started"].strftime("%Y-%m-%d %H:%M:%S") if t["started"] else ""
        seconds = f"{t['seconds']:.1f}" if t["seconds"] is not None else ""
        params = " ".join(f"{k}={v}" for k, v in t["params"].items())
        rows.append(
            f'<tr><td class="num">{t["number"]}</td>{_cell(t["state"])}'
            f'{_cell(t["worker"])}{_cell(started)}<td class="num">{seconds}</td>'
            f"{_cell(params)}<td>"
            + " ".join(_run_link(n, root, page_dir) for n in t["runs"])
            + f"</td>{_cell(note)}</tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("trial", "state", "worker", "started", "seconds", "settings", "runs", "")
    )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def render_sweep_report(
    view, pngs: dict, root: Path, page_dir: Path, all_settings: bool = False
) -> str:
    """The sweep page as a string; `pngs` maps figure names (SWEEP_FIGURES) to PNG bytes. Run
    names link to their own pages where those are in `root` (relative to `page_dir`). The
    ranking shows the settings that differ (all with `all_settings`), then which settings
    matter (sweep_importance)."""
    from quicknets.sweeps.importance import format_importance
    from quicknets.sweeps.view import format_sweep, sweep_importance

    summary = format_sweep(view).splitlines()[:2]  # what it is; trials by state and worker
    figures = (
        "".join(
            f'<figure><img alt="{escape(name)}" src="data:image/png;base64,'
            f'{base64.b64encode(png).decode("ascii")}">'
            f"<figcaption>{escape(SWEEP_FIGURES.get(name, name))}</figcaption></figure>"
            for name, png in pngs.items()
        )
        or "<p>No finished run yet.</p>"
    )
    notes = "".join(f"<li>{escape(n)}</li>" for n in view.notes)
    parts = [
        f"<h1>quicknets sweep {escape(view.name)}</h1>",
        "".join(f'<p class="what">{escape(line)}</p>' for line in summary),
        f"<h2>Ranking</h2>{_ranking(view, root, page_dir, all_settings)}",
        f'<p class="what">{escape(format_importance(sweep_importance(view)))}</p>',
        f"<ul>{notes}</ul>" if notes else "",
        "<p>Linked runs have their own page here; * marks a run in this runs folder "
        "without one yet (<code>quicknets report RUN</code> writes it).</p>",
        f'<h2>Figures</h2><div class="figures">{figures}</div>',
    ]
    if view.trials:
        parts.append(f"<h2>Trials</h2>{_trials(view, root, page_dir)}")
    if view.search is not None:
        fixed = [(k, str(v)) for k, v in view.search.base.items()]
        fixed.append(("seeds", ", ".join(map(str, view.search.seeds))))
        parts.append("<h2>Fixed settings</h2>" + _table(["setting", "value"], fixed))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>quicknets sweep {escape(view.name)}</title><style>{STYLE}</style></head>
<body>
{"".join(parts)}
</body></html>
"""


def write_sweep_report(view, path=None, runs_dir=None, all_settings: bool = False) -> Path:
    """Write the sweep's page (default: runs/sweeps/NAME.html); return its path. It reads the
    view alone (the study or the run records): no model or data is loaded. `all_settings`:
    the ranking shows every setting, not only those that differ."""
    from quicknets.records.runs import runs_root
    from quicknets.sweeps.view import sweep_figures

    root = runs_root(runs_dir)
    path = Path(path) if path is not None else root / "sweeps" / f"{view.name}.html"
    pngs = {name: to_png(fig) for name, fig in sweep_figures(view).items()}
    page = render_sweep_report(view, pngs, root, path.resolve().parent, all_settings)
    try:
        atomic_write_bytes(path, page.encode("utf-8"))
    except OSError as e:
        raise QuicknetsError(f"cannot write {path}: {e.strerror or e}") from None
    return path
