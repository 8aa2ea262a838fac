"""An audit's HTML page and JSON file (audit/checks.py finds; this shows).

    html, js = write_audit(found, data, "runs/audits/fashion-mnist.html")   # .json beside it

The page shows the images of each finding with their labels (and, for label issues, the
suggested label), the class counts and how the audit was made; figures are base64 PNGs and the
styles inline, as on a run's report page, so it opens offline. The JSON file holds every index
(Audit.to_dict()); the page shows the first SHOWN of each kind.
"""

import base64
from html import escape
from pathlib import Path

import torch

from quicknets.audit.checks import Audit, summary_lines
from quicknets.base.errors import QuicknetsError
from quicknets.base.storage import atomic_write_bytes, atomic_write_json, html_path
from quicknets.outputs.report import STYLE, _table
from quicknets.plots.figures import _image_grid, to_png

SHOWN = 24  # images (or pairs) of each kind drawn on the page


def _split_images(data, split: str) -> torch.Tensor:
    return data.train_images if split == "train" else data.test_images


def _label(data, split: str, i: int) -> str:
    labels = data.train_labels if split == "train" else data.test_labels
    return str(data.classes[int(labels[i])])


def _png(images: list, titles: list, suptitle: str, ncols: int) -> str:
    fig = _image_grid(torch.stack(images), titles, ["black"] * len(titles), suptitle, ncols)
    return (
        f'<img alt="{escape(suptitle)}" src="data:image/png;base64,'
        f'{base64.b64encode(to_png(fig)).decode("ascii")}">'
    )


def _pairs(data, pairs: list, splits: tuple, what: str) -> str:
    """Pairs side by side: each image titled with its split, index and label."""
    if not pairs:
        return f"<p>No {escape(what)}.</p>"
    images, titles = [], []
    for pair in pairs[: SHOWN // 2]:
        for split, i in zip(splits, pair[:2]):
            images.append(_split_images(data, split)[i])
            titles.append(f"{split} {i}\n{_label(data, split, i)[:14]}")
        if len(pair) > 2:  # a near duplicate's distance, under the second image
            titles[-1] += f"\nrms {pair[2]:.3f}"
    more = len(pairs) - SHOWN // 2
    note = f"<p>{more} more in the JSON file.</p>" if more > 0 else ""
    return _png(images, titles, f"{what}: pairs side by side", ncols=8) + note


def _issues(data, issues: list, what: str) -> str:
    """Images titled index, given label -> suggested label, score."""
    if not issues:
        return f"<p>No {escape(what)}.</p>"
    shown = issues[:SHOWN]
    images = [_split_images(data, x["split"])[x["index"]] for x in shown]
    titles = [
        f"{x['split']} {x['index']}\n{x['label'][:12]} -> {x['suggested'][:12]}\np={x['score']:.2g}"
        for x in shown
    ]
    more = len(issues) - len(shown)
    rows = [[x["split"], x["index"], x["label"], x["suggested"], x["score"]] for x in shown]
    return (
        _png(
            images,
            titles,
            f"{what}: given label -> suggested label, p = the "
            "out-of-sample probability of the given label",
            ncols=8,
        )
        + _table(["split", "index", "label", "suggested", "score"], rows)
        + (f"<p>{more} more in the JSON file.</p>" if more > 0 else "")
    )


def _outliers(data, found: list) -> str:
    if not found:
        return "<p>No outliers.</p>"
    shown = found[:SHOWN]
    images = [_split_images(data, x["split"])[x["index"]] for x in shown]
    titles = [f"{x['split']} {x['index']}\n{x['label'][:14]}\nd={x['distance']:.3f}" for x in shown]
    return _png(images, titles, "outliers: farthest from their neighbours first", ncols=8)


def render_audit(found: Audit, data) -> str:
    """The page as a string."""
    counts = found.class_counts
    count_rows = [[c, counts["train"][c], counts["test"][c]] for c in counts["train"]]
    method_rows = [[k, str(v)] for k, v in found.method.items()] + [
        [f"seconds ({k})", v] for k, v in found.seconds.items()
    ]
    summary = "".join(f"<li>{escape(line)}</li>" for line in summary_lines(found))
    d, near = found.duplicates, found.near_duplicates
    sections = [
        (
            "Exact duplicates in train",
            _pairs(data, d["train"], ("train", "train"), "duplicates in train"),
        ),
        (
            "Exact duplicates in test",
            _pairs(data, d["test"], ("test", "test"), "duplicates in test"),
        ),
        (
            "Test images also in train",
            _pairs(data, d["train_test"], ("train", "test"), "test images also in train"),
        ),
        (
            "Near duplicates",
            _pairs(data, near["train"], ("train", "train"), "near duplicates in train")
            + _pairs(data, near["test"], ("test", "test"), "near duplicates in test")
            + _pairs(data, near["train_test"], ("train", "test"), "near duplicates train-test"),
        ),
        (
            "Likely label errors in train",
            _issues(data, found.label_issues, "label issues in train"),
        ),
        (
            "Likely label errors in test",
            _issues(data, found.test_label_issues, "label issues in test"),
        ),
        ("Outliers", _outliers(data, found.outliers)),
        ("Class counts", _table(["class", "train", "test"], count_rows)),
        ("How it was audited", _table(["setting", "value"], method_rows)),
    ]
    body = "".join(f"<h2>{escape(title)}</h2>{html}" for title, html in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>quicknets audit {escape(found.dataset)}</title><style>{STYLE}</style></head>
<body>
<h1>quicknets audit {escape(found.dataset)}</h1>
<ul>{summary}</ul>
{body}
</body></html>
"""


def page_path(path) -> Path:
    """`path` as a Path; raises QuicknetsError unless it names an HTML file (.html, .htm)."""
    return html_path(path, "the audit page")


def write_audit(found: Audit, data, path) -> tuple:
    """Write the page to `path` and the findings to the same name with .json; return both
    paths. Raises QuicknetsError when a file cannot be written."""
    path = page_path(path)
    json_path = path.with_suffix(".json")
    try:
        atomic_write_json(json_path, found.to_dict())
        atomic_write_bytes(path, render_audit(found, data).encode("utf-8"))
    except OSError as e:
        raise QuicknetsError(f"cannot write {path}: {e.strerror or e}") from None
    return path, json_path
