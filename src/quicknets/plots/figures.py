"""Figures of images, predictions, training curves and test results; each returns its Figure.

    imshow(data.test_images[0], title="Ankle Boot")         # uint8 pixels, or normalised floats
    view_classify(data.test_images[0], model, data.classes, true_label=9)
    show_batch(data); show_predictions(model, data); plot_top_losses(model, data, k=9)
    plot_history(history); plot_confusion_matrix(results)
    save_figure(fig, "out.png")                             # written atomically

Figures are made with matplotlib's object API (a Figure on an Agg canvas), never with pyplot: no
window opens, nothing waits in pyplot's global list of figures, so they work headless and in
loops. In Jupyter the returned Figure is shown inline (a PNG display is registered for Figure when
IPython is running). No function changes its inputs: images are copied before they are reshaped
or un-normalised, and models are put back in the mode they were in.
"""

import io
import math
import sys
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from quicknets.base.errors import QuicknetsError
from quicknets.base.storage import atomic_write, output_path
from quicknets.data.datasets import DATASETS
from quicknets.data.images import to_chw
from quicknets.data.preprocessing import Preprocessing, preprocessing_of
from quicknets.evaluation.calibration import temperature_scale
from quicknets.evaluation.classification import load_image, probabilities
from quicknets.evaluation.metric_names import upgrade_history
from quicknets.evaluation.metrics import log_probabilities

RIGHT, WRONG, NEUTRAL, OTHER = "#2ca02c", "#d62728", "#1f77b4", "#c7c7c7"  # green, red, blue, gray
# An attribution map's colours (plots/attribution.py), as Captum's visualize_image_attr:
OUTLIER_PERCENT = 2  # the top 2% of |map| saturate the colours, as Captum's default
CMAP = "bwr"  # diverging: blue (against), white (0), red (for)
OPACITY = 0.8  # of the most important pixels; 0 at a pixel whose attribution is 0


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def figure_format(path) -> str:
    """The file format named by the suffix of `path` (png, svg, pdf, ...), checked."""
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in FigureCanvasAgg.get_supported_filetypes():
        raise QuicknetsError(
            f"cannot save a figure as {path}: give a file name ending in .png, .svg or .pdf"
        )
    return fmt


def figure_path(path) -> Path:
    """`path` as a Path, checked before the figure is drawn: a figure format's suffix
    (figure_format) and a place that can take the file (storage.output_path); raises
    QuicknetsError."""
    figure_format(path)
    return output_path(path)


def plot_paths(path, n: int) -> list:
    """Where n figures go, each checked (figure_path): `path` itself for one, path-0.png,
    path-1.png, ... for several."""
    path = Path(path)
    if n == 1:
        return [figure_path(path)]
    return [figure_path(path.with_name(f"{path.stem}-{i}{path.suffix}")) for i in range(n)]


def save_figure(fig: Figure, path, dpi: int = 100) -> Path:
    """Write the figure to `path` (format from the suffix: .png, .svg, .pdf, ...), atomically."""
    path = Path(path)
    fmt = figure_format(path)
    try:
        atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))
    except OSError as e:
        raise QuicknetsError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def _show_inline_in_jupyter() -> None:
    """A Figure made without pyplot has no notebook display of its own until matplotlib's inline
    backend is loaded: give it a PNG one, unless one is registered already."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return
    png = shell.display_formatter.formatters["image/png"]
    try:
        png.lookup_by_type(Figure)  # `%matplotlib inline` or the user's own: keep theirs
    except KeyError:
        png.for_type(Figure, to_png)


def new_figure(width: float, height: float) -> Figure:
    """An empty figure (inches) on an Agg canvas, laid out so titles and labels do not overlap."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    _show_inline_in_jupyter()
    return fig


def image_pixels(image, pre: Preprocessing | None = None, scale: str = "auto") -> np.ndarray:
    """A copy of `image` ready to draw: (H, W) or (H, W, 3) floats in [0, 1].

    What its values are is read as classify reads it (Preprocessing.scale_of, `scale`): uint8
    and other integer images are pixels 0..255; floats are pixels, unit (0..1, ToTensor's) or
    normalised by `pre` (default: the default preprocessing), x = (pixel / 255 - mean) / std,
    mapped back. Layouts as images.to_chw takes them: of pre's shape in any layout classify
    takes (flat too), or any (H, W), (H, W, C), (C, H, W) with C = 1 or 3.
    """
    pre = pre or Preprocessing()
    size = image.numel() if isinstance(image, torch.Tensor) else np.size(image)
    x = to_chw(image, pre.shape if size == pre.features else None)  # (C, H, W)
    reading = pre.scale_of(x, scale)
    x = x.detach().to("cpu", torch.float32, copy=True)
    x = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)  # (H, W) or (H, W, 3), as matplotlib
    if reading == "normalized":  # undo (pixel / 255 - mean) / std, per channel
        mean = torch.tensor(pre.mean) if x.dim() == 3 else torch.tensor(pre.mean[:1])
        std = torch.tensor(pre.std) if x.dim() == 3 else torch.tensor(pre.std[:1])
        return (x * std + mean).clamp(0.0, 1.0).numpy()
    return (x / (255.0 if reading == "pixels" else 1.0)).clamp(0.0, 1.0).numpy()


def _draw_image(ax, pixels: np.ndarray, title=None, color="black", fontsize=9) -> None:
    if pixels.ndim == 2:
        ax.imshow(pixels, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(pixels, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, color=color, fontsize=fontsize)


def _preprocessing(data=None, model=None, mean=None, std=None) -> Preprocessing:
    """The normalisation to undo: the model's own, else the data's, else the default; `mean`
    and `std` given explicitly replace its values."""
    pre = (
        preprocessing_of(model, data)
        if model is not None
        else data.preprocessing
        if data is not None
        else Preprocessing()
    )
    if mean is None and std is None:
        return pre

    def values(given, own):  # one number, or one per channel
        return (
            own if given is None else tuple(given) if isinstance(given, (tuple, list)) else (given,)
        )

    return Preprocessing(
        pre.shape,
        values(mean, pre.mean),
        values(std, pre.std),
        pre.classes,
        pre.dataset,
        pre.layout,
    )


def imshow(
    image, title=None, *, data=None, model=None, mean=None, std=None, ax=None, scale: str = "auto"
) -> Figure:
    """Draw one image in gray (colour for 3 channels), its normalisation undone: the model's,
    else the data's, else mean/std, else the default 0.5/0.5. `scale`: what its values are
    (pixels, unit, normalized; auto reads them as classify does, see image_pixels). With `ax`,
    draws there and returns that axes' figure."""
    pixels = image_pixels(image, _preprocessing(data, model, mean, std), scale)
    fig = new_figure(3, 3.2) if ax is None else ax.figure
    _draw_image(ax if ax is not None else fig.add_subplot(), pixels, title, fontsize=11)
    return fig


def _class_names(class_names, data, k: int) -> list:
    """Names for k classes: a list, a dataset name ('Fashion', 'MNIST', 'kmnist'), or the data's."""
    if isinstance(class_names, str):
        key = class_names.lower().replace("_", "-")
        key = {"fashion": "fashion-mnist", "fashionmnist": "fashion-mnist"}.get(key, key)
        if key not in DATASETS:
            raise QuicknetsError(
                f"unknown dataset {class_names!r} for class names; choose from "
                f"{', '.join(DATASETS)} or pass a list of names"
            )
        class_names = DATASETS[key].classes
    names = (
        list(class_names)
        if class_names is not None
        else (list(data.classes) if data is not None else [str(i) for i in range(k)])
    )
    if len(names) != k:
        raise QuicknetsError(f"{len(names)} class names for {k} probabilities")
    return names


def _as_probs(probs) -> np.ndarray:
    p = torch.as_tensor(np.asarray(probs) if not isinstance(probs, torch.Tensor) else probs)
    if p.dim() == 2 and p.shape[0] == 1:
        p = p[0]  # (1, classes), as the notebook's model(img) gives
    if p.dim() != 1 or len(p) < 2:
        raise QuicknetsError(
            f"give the probabilities of one image, shape (classes,) or "
            f"(1, classes), not {tuple(p.shape)}"
        )
    p = p.detach().to("cpu", torch.float64, copy=True)
    if not torch.isfinite(p).all() or p.min() < -1e-6 or abs(p.sum().item() - 1.0) > 1e-2:
        raise QuicknetsError(
            f"these are not probabilities (they sum to {p.sum().item():.3g}); "
            "for a model's log-probabilities pass torch.exp(log_probs)"
        )
    return p.clamp(0.0, 1.0).numpy()


def view_classify(
    image,
    probs,
    class_names=None,
    true_label=None,
    *,
    data=None,
    mean=None,
    std=None,
    version=None,
    scale: str = "auto",
    explanation=None,
    explanation_title=None,
) -> Figure:
    """The image beside horizontal bars of its class probabilities, the predicted class in colour
    (green if right, red if wrong, blue when the true class is not given) and the true one in green.

    `image`: a tensor or array (see image_pixels) or an image file; `scale`: what its values
    are, read once for the drawing and the model alike (Preprocessing.scale_of). `probs`:
    probabilities (classes,) or (1, classes), or a model, which is then run on the image.
    `class_names`: a list, a dataset name, or None for the model's or data's classes. A model
    brings its own preprocessing (normalisation, shape, how a file is laid out). A drop-in for
    the course helper's view_classify(img, ps, version="Fashion"); unlike it, `image` is left
    as it was. `explanation`: an attribution map (H, W) of the image (attribution.explain's),
    drawn over it in a middle panel titled `explanation_title` (plots.attribution's colours).
    """
    model = probs if isinstance(probs, torch.nn.Module) else None
    pre = _preprocessing(data, model, mean, std)
    if isinstance(image, (str, Path)):
        image = load_image(image, pre.shape, pre.layout)  # uint8, as the model sees the file
    if model is not None:
        probs = probabilities(model, image, data, scale)
    p = _as_probs(probs)
    if class_names is None and version is None and data is None and pre.classes:
        class_names = list(pre.classes)
    names = _class_names(class_names if class_names is not None else version, data, len(p))
    if isinstance(true_label, str):
        if true_label not in names:
            raise QuicknetsError(f"true label {true_label!r} is not one of the classes")
        true_label = names.index(true_label)
    if true_label is not None and not 0 <= int(true_label) < len(p):
        raise QuicknetsError(f"true label {true_label} is outside 0..{len(p) - 1}")
    pred = int(p.argmax())
    colors = [OTHER] * len(p)
    if true_label is None:
        colors[pred] = NEUTRAL
    else:
        true_label = int(true_label)
        colors[true_label] = RIGHT
        colors[pred] = RIGHT if pred == true_label else WRONG
    pixels = image_pixels(image, pre, scale)  # (H, W) or (H, W, 3) in [0, 1]
    height = max(3.2, 0.3 * len(p) + 0.6)
    if explanation is None:
        fig = new_figure(7.5, height)
        ax_img, ax_bar = fig.subplots(1, 2, width_ratios=[1, 1.4])
    else:
        heat = checked_map(explanation, pixels)  # before a figure is made
        fig = new_figure(10.5, height)
        ax_img, ax_map, ax_bar = fig.subplots(1, 3, width_ratios=[1, 1, 1.4])
        paint_explanation(ax_map, pixels, heat, explanation_title)
    title = f"predicted: {names[pred]} ({p[pred]:.0%})"
    if true_label is not None:
        title += f"\ntrue: {names[true_label]}"
    _draw_image(ax_img, pixels, title, colors[pred], fontsize=11)
    rows = np.arange(len(p))
    ax_bar.barh(rows, p, color=colors)
    for row, value in zip(rows, p):
        if value >= 0.0005:  # the rest would all read 0.000
            ax_bar.text(value + 0.01, row, f"{value:.3f}", va="center", fontsize=8)
    ax_bar.set_yticks(rows, names)
    for i, label in enumerate(ax_bar.get_yticklabels()):
        if colors[i] != OTHER:
            label.set_color(colors[i])
            label.set_fontweight("bold")
    ax_bar.invert_yaxis()  # class 0 at the top, in reading order
    ax_bar.set_xlim(0, 1.15)
    ax_bar.set_title("Class Probability")
    return fig


def paint_explanation(ax, pixels: np.ndarray, heat: np.ndarray, title=None) -> None:
    """Paint an (H, W) attribution map (checked_map's) over `pixels` (H, W[, 3]) in [0, 1] on
    `ax`: plots/attribution.py's draw_explanation, and view_classify's middle panel."""
    gray = "gray" if pixels.ndim == 2 else None
    ax.imshow(pixels, cmap=gray, vmin=0.0, vmax=1.0, interpolation="nearest")
    scaled = normalized_map(heat)
    ax.imshow(
        scaled,
        cmap=CMAP,
        vmin=-1.0,
        vmax=1.0,
        alpha=OPACITY * np.abs(scaled),
        interpolation="nearest",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=11)


def normalized_map(heat: np.ndarray) -> np.ndarray:
    """The map divided by the (100 - OUTLIER_PERCENT)th percentile of its absolute values,
    clipped to -1..1, as Captum's visualize_image_attr scales it; all zeros stay zeros."""
    top = float(np.percentile(np.abs(heat), 100 - OUTLIER_PERCENT))
    if top == 0:
        top = float(np.abs(heat).max())
    return np.clip(heat / top, -1.0, 1.0) if top > 0 else np.zeros_like(heat)


def checked_map(attribution, pixels: np.ndarray) -> np.ndarray:
    """The map as float32 (H, W), checked against the image's pixels (H, W[, 3])."""
    if isinstance(attribution, torch.Tensor):
        attribution = attribution.detach().to("cpu", torch.float32).numpy()
    heat = np.array(attribution, dtype=np.float32)  # a copy: the caller's map is left alone
    if heat.ndim == 3 and heat.shape[0] == 1:
        heat = heat[0]  # (1, H, W), as explain_batch(...)[:1] gives
    if heat.ndim != 2:
        raise QuicknetsError(
            f"an attribution map is (H, W), not {heat.shape}: one image's map, "
            "as explain() returns it"
        )
    if not np.isfinite(heat).all():
        raise QuicknetsError("the attribution map holds NaN or infinite values")
    if heat.shape != pixels.shape[:2]:
        raise QuicknetsError(
            f"the attribution map is {tuple(heat.shape)}, the image "
            f"{pixels.shape[0]}x{pixels.shape[1]}: give the map explain() made for it"
        )
    return heat


def _grid(n: int, ncols=None) -> tuple:
    ncols = ncols or min(n, math.ceil(math.sqrt(n)))
    return math.ceil(n / ncols), ncols


def _split(data, split: str) -> tuple:
    if split not in ("train", "val", "test"):
        raise QuicknetsError(f"split must be train, val or test, not {split!r}")
    images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
    if images is None or len(images) == 0:
        raise QuicknetsError(f"this dataset has no {split} images")
    return images, labels


def _image_grid(images, titles: list, colors: list, suptitle: str, ncols=None) -> Figure:
    """uint8 images (n, H, W) grey or (n, 3, H, W) colour in a grid, one title per image."""
    rows, cols = _grid(len(images), ncols)
    fig = new_figure(1.6 * cols, 1.75 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        if i < len(images):
            _draw_image(ax, image_pixels(images[i]), titles[i], colors[i])
        else:
            ax.axis("off")  # the grid's last row may be part empty
    fig.suptitle(suptitle, fontsize=10)
    return fig


def _check_n(n: int, name: str = "n") -> None:
    if not isinstance(n, int) or n < 1:
        raise QuicknetsError(f"{name} must be a positive whole number, not {n!r}")


def show_batch(data, n: int = 16, split: str = "train", ncols=None) -> Figure:
    """The first n images of a split in a grid, each titled with its class."""
    _check_n(n)
    images, labels = _split(data, split)
    images, labels = images[:n], labels[:n].tolist()
    titles = [data.classes[y] for y in labels]
    return _image_grid(
        images,
        titles,
        ["black"] * len(titles),
        f"{data.name}: the first {len(titles)} {split} images",
        ncols,
    )


def show_predictions(model, data, n: int = 16, split: str = "test", ncols=None) -> Figure:
    """The first n images of a split, titled with the prediction: green if right, red if wrong
    (then with the true class below)."""
    _check_n(n)
    images, labels = _split(data, split)
    images, labels = images[:n], labels[:n]
    pre = preprocessing_of(model, data)
    preds = log_probabilities(model, pre.normalize(images)).argmax(1).cpu().tolist()
    titles, colors = [], []
    for pred, true in zip(preds, labels.tolist()):
        right = pred == true
        titles.append(
            data.classes[pred] if right else f"{data.classes[pred]}\n(true: {data.classes[true]})"
        )
        colors.append(RIGHT if right else WRONG)
    n_right = colors.count(RIGHT)
    return _image_grid(
        images,
        titles,
        colors,
        f"predicted class, green if right, red if wrong: {n_right} of {len(titles)} right",
        ncols,
    )


def top_losses(model, data, k: int = 9, split: str = "test") -> list:
    """The k wrongly classified images with the highest loss, highest first:
    [{index, predicted, true, probability (of the predicted class), loss}], both of the
    probabilities the model reports (after its temperature, if it has one)."""
    _check_n(k, "k")
    images, labels = _split(data, split)
    pre = preprocessing_of(model, data)
    # (N, classes), with the model's temperature: the probabilities it reports
    log_probs = temperature_scale(
        log_probabilities(model, pre.normalize(images)).cpu(), pre.temperature
    )
    losses = -log_probs.gather(1, labels.view(-1, 1)).squeeze(1)  # NLL per image
    preds = log_probs.argmax(1)
    wrong = (preds != labels).nonzero().squeeze(1)
    order = wrong[losses[wrong].argsort(descending=True, stable=True)][:k]
    return [
        {
            "index": int(i),
            "predicted": int(preds[i]),
            "true": int(labels[i]),
            "probability": float(log_probs[i, preds[i]].exp()),
            "loss": float(losses[i]),
        }
        for i in order
    ]


def plot_top_losses(model, data, k: int = 9, split: str = "test", ncols=None) -> Figure:
    """The most confidently wrong images, captioned predicted / true / probability / loss."""
    rows = top_losses(model, data, k, split)
    images, _ = _split(data, split)
    if not rows:
        fig = new_figure(4, 1.5)
        fig.text(
            0.5, 0.5, f"no mistakes on the {len(images)} {split} images", ha="center", va="center"
        )
        return fig
    titles = [
        f"{data.classes[r['predicted']]} / {data.classes[r['true']]}\n"
        f"{r['probability']:.2f} / {r['loss']:.2f}"
        for r in rows
    ]
    return _image_grid(
        images[[r["index"] for r in rows]],
        titles,
        [WRONG] * len(rows),
        "most confidently wrong: predicted / true\nprobability of the prediction / loss",
        ncols,
    )


def plot_history(history, results=None, title=None) -> Figure:
    """Loss and accuracy per epoch, training solid and validation dashed.

    `history`: a run's list of per-epoch dicts; or {label: history} to overlay several runs, where
    a history may also be a list of histories (the seeds of one variant: one colour, one label).
    `results`: the test results (or {label: results}), drawn as a star at the last epoch.
    """
    runs = history if isinstance(history, dict) else {"": history}
    tests = (results or {}) if isinstance(history, dict) else {"": results}
    runs = (
        {
            label: [h] if not h or isinstance(h[0], dict) else list(h)
            for label, h in runs.items()
            if isinstance(h, (list, tuple))
        }
        if runs
        else {}
    )
    if not runs or any(
        not h or not all(isinstance(x, list) and x for x in h) for h in runs.values()
    ):
        raise QuicknetsError("the history is empty: nothing to plot")
    runs = {label: [upgrade_history(x) for x in h] for label, h in runs.items()}
    for h in runs.values():
        if any(not isinstance(row, dict) or "train_loss" not in row for x in h for row in x):
            raise QuicknetsError("not a training history: each epoch needs a train_loss")
    fig = new_figure(10, 3.8)
    ax_loss, ax_acc = fig.subplots(1, 2)
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    cmap = colormaps["tab10" if len(runs) <= 10 else "tab20"]
    assert isinstance(cmap, ListedColormap)  # tab10 and tab20 are lists of colours
    palette = list(cmap.colors)  # type: ignore[arg-type]  # a list of RGB tuples here
    for i, (label, seeds) in enumerate(runs.items()):
        color = palette[i % len(palette)]
        name = f"{label} " if label else ""
        for s, h in enumerate(seeds):  # the seeds of one variant: one colour, one legend entry
            epochs = [row.get("epoch", j + 1) for j, row in enumerate(h)]
            for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
                ax.plot(
                    epochs,
                    [row.get(f"train_{key}") for row in h],
                    "o-",
                    color=color,
                    label=f"{name}train" if s == 0 else None,
                )
                if all(f"val_{key}" in row for row in h):
                    ax.plot(
                        epochs,
                        [row[f"val_{key}"] for row in h],
                        "s--",
                        color=color,
                        label=f"{name}validation" if s == 0 else None,
                    )
        test = tests.get(label)
        if test is not None:
            star = {"ms": 13, "color": color if label else "black", "label": f"{name}test"}
            ax_loss.plot(epochs[-1], test["loss"], "*", **star)
            ax_acc.plot(epochs[-1], test["accuracy"], "*", **star)
    for ax, ylabel in ((ax_loss, "loss (mean NLL per image)"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    if title:
        fig.suptitle(title)
    return fig


def plot_confusion_matrix(results: dict, normalize: bool = True, title=None) -> Figure:
    """The confusion matrix, true classes down, predicted across, class names on both axes.
    normalize=True shows each true class's row as percentages of its images (rows sum to 100)."""
    if not isinstance(results, dict) or "confusion" not in results:
        raise QuicknetsError("these results hold no confusion matrix (evaluate() makes one)")
    counts = np.array(results["confusion"], dtype=np.float64)  # (k, k), row = true class
    k = len(counts)
    names = list(results.get("classes") or [str(i) for i in range(k)])
    if counts.shape != (k, k) or len(names) != k:
        raise QuicknetsError(f"a confusion matrix of shape {counts.shape} for {len(names)} classes")
    totals = counts.sum(1, keepdims=True)
    cells = (
        100 * np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        if normalize
        else counts
    )  # percent of each true class's images, or counts
    fig = new_figure(0.55 * k + 2.8, 0.5 * k + 1.8)
    ax = fig.add_subplot()
    top = 100.0 if normalize else max(1.0, cells.max())
    im = ax.imshow(cells, cmap="Blues", vmin=0.0, vmax=top)
    for i in range(k):
        for j in range(k):
            if counts[i, j] == 0:
                continue  # empty cells stay blank, so the mistakes stand out
            text = f"{int(counts[i, j])}"
            if normalize:
                text = f"{cells[i, j]:.0f}" if cells[i, j] >= 1 else "<1"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if cells[i, j] > 0.6 * top else "black",
            )
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    split = results.get("split", "test")
    ax.set_title(
        title
        or (
            f"confusion matrix, {split}: % of each true class"
            if normalize
            else f"confusion matrix, {split}: image counts"
        ),
        fontsize=10,
    )
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig
