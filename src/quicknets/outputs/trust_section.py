"""The report's section "Can you trust it?": how sure the network is, whether an image is like
its training images, why it chose, and where it breaks.

    figures = trust_figures(run, model, data)   # {name: Figure}, names as TRUST_FIGURES
    html = render_trust(pngs, run.name)         # the section, a line for what is missing

The figures read the saved model on the run's test set (nothing is retrained):
- "reliability": Guo et al.'s reliability diagram of the test probabilities (plots/trust.py);
- "familiarity": the familiarity scores (evaluation/familiarity.py) of the test images against
  NOISE images of uniform noise, with the run's own fit and threshold: the statistics saved in
  its familiarity.pt (`model.familiarity`, as load_model attaches them), the threshold that
  classify, the demo and `evaluate --ood` use too; a run trained before runs kept them has
  them fitted once here and saved (records.runs.run_familiarity). At most SCORED test images
  (a seeded sample) are shown, the AUROC in the title;
- "attribution": Integrated Gradients maps (evaluation/attribution.py) of the first EXPLAINED
  test images for their predicted class; left out, with a line saying why, without Captum;
- "robustness": accuracy against corruption severity, from the record's `robustness` entry
  (`quicknets evaluate RUN --robustness` writes it; without it, a line saying so).
"""

from html import escape

import torch
from matplotlib.figure import Figure

from quicknets.base.errors import QuicknetsError
from quicknets.data.preprocessing import preprocessing_of
from quicknets.evaluation.calibration import calibration_summary, temperature_scale
from quicknets.evaluation.metrics import log_probabilities
from quicknets.plots.trust import plot_reliability

TRUST_FIGURES = {  # figure name -> caption
    "reliability": "Reliability on the test set: each confidence bin's accuracy against the "
    "diagonal of perfect calibration (ECE in the title); below, the share of images per bin",
    "familiarity": "Familiarity of the test images against uniform noise: images left of the "
    "threshold are unlike the training images, and their predictions are not to be trusted",
    "attribution": "Why it chose: Integrated Gradients over the first test images, for the "
    "predicted class (red: pixels for it, blue: against it)",
    "robustness": "Accuracy of the test set under each corruption (as MNIST-C) at severities "
    "1-5; severity 0 is the clean accuracy",
}
SCORED = 2000  # test images scored, at most (knn: each against 5,000 features)
NOISE = 1000  # images of uniform noise 0..255, as familiarity.reference_sets' "noise"
EXPLAINED = 4  # test images with an attribution map
SEED = 0  # the subsample of test images and the noise


def reliability_figure(model, data, split: str = "test") -> Figure:
    """plots.plot_reliability of a split's probabilities as the model reports them: the
    network's log-probabilities scaled by its temperature (model.preprocessing.temperature),
    titled with the ECE after and before it."""
    images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
    if images is None or len(labels) == 0:
        raise QuicknetsError(f"{data.name} has no {split} images to draw a reliability diagram of")
    pre = preprocessing_of(model, data)
    log_probs = log_probabilities(model, pre.normalize(images)).cpu()  # (N, classes)
    summary = calibration_summary(log_probs, labels, pre.temperature)
    title = None  # plot_reliability's own: ECE and MCE
    if summary["after"] is not None:
        title = (
            f"reliability at temperature {pre.temperature:.3f}: ECE "
            f"{summary['after']['ece']:.4f} (before: {summary['before']['ece']:.4f})"
        )
    probs = temperature_scale(log_probs, pre.temperature).exp()
    return plot_reliability(probs, labels, title=title)


def trust_figures(run, model, data) -> dict:
    """The section's figures (see TRUST_FIGURES) of `run`'s `model` on `data`'s test set;
    attribution left out without Captum, robustness without the record's `robustness` entry.
    The familiarity figure uses the run's fit (fitted and saved in the run folder first when
    the model has none: records.runs.run_familiarity)."""
    from quicknets.plots.trust import plot_robustness
    from quicknets.records.runs import run_familiarity

    figures = {"reliability": reliability_figure(model, data)}  # after the model's temperature
    figures["familiarity"] = familiarity_figure(model, data, run_familiarity(run, model, data))
    try:
        figures["attribution"] = attribution_figure(model, data)
    except QuicknetsError as e:
        if "Captum" not in str(e):
            raise
    if isinstance(run.results.get("robustness"), dict):
        figures["robustness"] = plot_robustness(run.results["robustness"])
    return figures


def familiarity_figure(model, data, fitted, scored: int = SCORED, noise: int = NOISE):
    """Histograms of the familiarity scores (by `fitted`, a familiarity.Familiarity of this
    model) of at most `scored` test images (a seeded sample) and of `noise` uniform-noise
    images of the model's shape, `fitted.threshold` as a line, the AUROC (test against noise)
    in the title."""
    from quicknets.data.preprocessing import preprocessing_of
    from quicknets.evaluation.familiarity import familiarity_scores, ood_metrics
    from quicknets.plots.trust import plot_familiarity

    generator = torch.Generator().manual_seed(SEED)
    images = data.test_images
    if len(images) > scored:
        images = images[torch.randperm(len(images), generator=generator)[:scored]]
    shape = tuple(preprocessing_of(model, data).shape)  # (C, H, W)
    outside = torch.randint(0, 256, (noise, *shape), dtype=torch.uint8, generator=generator)
    test = familiarity_scores(model, images, fitted)
    noisy = familiarity_scores(model, outside, fitted)
    auroc = ood_metrics(test, noisy)["auroc"]
    return plot_familiarity(
        test.numpy(),
        {"uniform noise": noisy.numpy()},
        threshold=fitted.threshold,
        title=f"familiarity ({fitted.method}): test images against noise, AUROC {auroc:.4f}",
    )


def attribution_figure(model, data, n: int = EXPLAINED):
    """Integrated Gradients maps of the first `n` test images for their predicted class, one
    panel each, titled with the predicted and the true class. Raises QuicknetsError without
    Captum."""
    from quicknets.evaluation.attribution import explain_batch
    from quicknets.evaluation.classification import predict
    from quicknets.plots.attribution import draw_explanation
    from quicknets.plots.figures import new_figure

    images, labels = data.test_images[:n], data.test_labels[:n]
    maps = explain_batch(model, images)  # (n, H, W), for the predicted class
    predicted = predict(model, images, names=True)
    fig = new_figure(2.6 * len(images), 3.2)
    axes = fig.subplots(1, len(images), squeeze=False)[0]
    for ax, image, heat, name, y in zip(axes, images, maps, predicted, labels.tolist()):
        title = f"{name}\n(true: {data.classes[y]})"
        draw_explanation(image, heat, model=model, ax=ax, title=title)
    return fig


def render_trust(pngs: dict, run_name: str = "RUN") -> str:
    """The section's HTML: the figures given as PNG bytes (names as TRUST_FIGURES), then a line
    for each that is missing and what adds it (for the run `run_name`)."""
    import base64

    figures = "".join(
        f'<figure><img alt="{escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode("ascii")}">'
        f"<figcaption>{escape(TRUST_FIGURES.get(name, name))}</figcaption></figure>"
        for name, png in pngs.items()
    )
    missing = []
    if "attribution" not in pngs:
        missing.append(
            "Attribution maps need Captum, an optional extra: "
            "<code>pip install 'quicknets[explain]'</code>."
        )
    if "robustness" not in pngs:
        missing.append(
            f"No robustness yet: <code>quicknets evaluate {escape(run_name)} --robustness"
            "</code> tests the run under corruptions and adds its figure here."
        )
    notes = "".join(f"<p>{line}</p>" for line in missing)
    return f'<h2>Can you trust it?</h2><div class="figures">{figures}</div>{notes}'
