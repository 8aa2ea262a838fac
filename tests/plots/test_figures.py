"""Every figure: drawn, the expected panels, bars and titles, its inputs left unchanged.

The models are either a hand-made oracle for the generated data (class c is a bright bar in row
band c, so reading the bands classifies every image right) or a fixed random network (mostly
wrong), so what each figure must show is known exactly.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from quicknets.base.errors import QuicknetsError
from quicknets.networks.models import network
from quicknets.plots import figures as plots


class BandReader(nn.Module):
    """Log-probabilities from the mean brightness of each class's row band: always right on
    the generated data; `wrong_for` shifts the answer by one for those classes."""

    def __init__(self, wrong_for=()):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))
        self.wrong_for = set(wrong_for)

    def forward(self, x):  # (B, 1, 28, 28) normalised
        bands = torch.stack(
            [x[:, 0, 2 + 2 * c : 4 + 2 * c, 4:24].mean((1, 2)) for c in range(10)], 1
        )
        logits = self.scale * bands  # (B, 10)
        for c in self.wrong_for:  # move class c's evidence to class c + 1
            logits[:, [c, (c + 1) % 10]] = logits[:, [(c + 1) % 10, c]]
        return F.log_softmax(logits, 1)


def drawn(fig, ink: float = 0.02) -> np.ndarray:
    """Render the figure and check it is not blank (at least `ink` of its pixels not light)."""
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    assert rgb.std() > 10, "the figure is blank"
    assert (rgb.min(2) < 200).mean() > ink, "almost nothing is drawn"
    return rgb


def image_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.images]


@pytest.fixture
def random_net():
    torch.manual_seed(0)
    return network("784-32-10").eval()


def test_imshow_undoes_the_normalisation_in_gray(tiny):
    raw = tiny.test_images[0]  # uint8 (28, 28)
    x = tiny.normalize(raw[None])[0]  # float (1, 28, 28)
    before = x.clone()
    fig = plots.imshow(x, title="first", data=tiny)
    drawn(fig)
    (ax,) = image_axes(fig)
    shown = ax.images[0].get_array()
    assert ax.images[0].get_cmap().name == "gray"
    assert np.allclose(shown, raw.numpy() / 255.0, atol=1e-6)
    assert ax.get_title() == "first"
    assert torch.equal(x, before)
    # uint8 pixels are drawn as they are; a 3-channel float image in colour
    assert np.allclose(image_axes(plots.imshow(raw))[0].images[0].get_array(), raw / 255.0)
    rgb = torch.rand(3, 28, 28, generator=torch.Generator().manual_seed(0))
    shown = image_axes(plots.imshow(rgb, mean=0.0, std=1.0))[0].images[0].get_array()
    assert shown.shape == (28, 28, 3) and np.allclose(shown, rgb.permute(1, 2, 0).numpy())


@pytest.mark.parametrize("shape", [(2, 28, 28), (5,), (4, 3, 28, 28), (28, 28, 4)])
def test_imshow_refuses_a_wrong_shape(shape):
    with pytest.raises(
        QuicknetsError,
        match=r"an image is laid out \(H, W\), \(H, W, C\) or "
        r"\(C, H, W\) with 1 or 3 channels, not ",
    ):
        plots.imshow(torch.zeros(shape))


def test_imshow_and_view_classify_take_channels_last(tiny):
    """The issue's member: (28, 28, 1), the Keras/NumPy layout classify takes, was refused.
    (tests/data/test_images.py tries every layout in classify, predict and both figures.)"""
    raw = tiny.test_images[0].numpy()  # uint8 (28, 28)
    want = image_axes(plots.imshow(raw))[0].images[0].get_array()
    for image in (raw[..., None], raw[None, ..., None], raw.reshape(-1)):
        assert np.array_equal(image_axes(plots.imshow(image))[0].images[0].get_array(), want)
        fig = plots.view_classify(image, torch.full((10,), 0.1), data=tiny)
        assert np.array_equal(image_axes(fig)[0].images[0].get_array(), want)
    rgb = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    shown = image_axes(plots.imshow(rgb))[0].images[0].get_array()  # any size, channels last
    assert np.allclose(shown, rgb / 255.0)


def test_view_classify_bars_names_and_colours(tiny):
    model = BandReader(wrong_for=[int(tiny.test_labels[0])])
    image = tiny.test_images[0].clone()
    before = image.clone()
    true = int(tiny.test_labels[0])
    fig = plots.view_classify(image, model, tiny.classes, true_label=true, data=tiny)
    drawn(fig)
    assert torch.equal(image, before)
    assert model.training  # put back in the mode it was in
    ax_img, ax_bar = fig.axes
    bars = ax_bar.patches
    assert len(bars) == 10
    assert [t.get_text() for t in ax_bar.get_yticklabels()] == tiny.classes
    pred = (true + 1) % 10  # the oracle was told to get this class wrong
    assert f"predicted: {tiny.classes[pred]}" in ax_img.get_title()
    assert f"true: {tiny.classes[true]}" in ax_img.get_title()
    colors = [tuple(round(c, 3) for c in b.get_facecolor()[:3]) for b in bars]
    red, green = (0.839, 0.153, 0.157), (0.173, 0.627, 0.173)
    assert colors[pred] == red and colors[true] == green
    assert sum(c in (red, green) for c in colors) == 2
    widths = [b.get_width() for b in bars]
    assert int(np.argmax(widths)) == pred and abs(sum(widths) - 1) < 1e-4


def test_view_classify_is_a_drop_in_for_the_course_helper(fashion):
    """The notebook's call: a (1, 784) normalised image and exp(log-probs) of shape (1, 10)."""
    torch.manual_seed(0)
    model = network("784-256-128-64-10")
    img = fashion.normalize(fashion.test_images[:1]).view(1, 784)
    ps = torch.exp(model(img))  # (1, 10), requires grad
    before_img, before_ps = img.clone(), ps.detach().clone()
    fig = plots.view_classify(img, ps, version="Fashion")
    drawn(fig)
    assert img.shape == (1, 784) and torch.equal(img, before_img)  # the helper resized it
    assert torch.equal(ps.detach(), before_ps)
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == fashion.classes
    shown = image_axes(fig)[0].images[0].get_array()
    assert np.allclose(shown, fashion.test_images[0].numpy() / 255.0, atol=1e-6)


def test_view_classify_reads_an_image_file(tmp_path, tiny):
    from PIL import Image

    path = tmp_path / "band.png"
    Image.fromarray(tiny.test_images[3].numpy()).save(path)
    fig = plots.view_classify(path, BandReader(), tiny.classes)
    drawn(fig)
    assert f"predicted: {tiny.classes[int(tiny.test_labels[3])]}" in fig.axes[0].get_title()
    with pytest.raises(QuicknetsError, match="no image file"):
        plots.view_classify(tmp_path / "missing.png", BandReader(), tiny.classes)


def test_view_classify_bad_input():
    image = torch.zeros(28, 28, dtype=torch.uint8)
    with pytest.raises(QuicknetsError, match="not probabilities"):
        plots.view_classify(image, torch.log(torch.full((10,), 0.1)))
    with pytest.raises(QuicknetsError, match="not probabilities"):
        plots.view_classify(image, torch.full((10,), float("nan")))
    with pytest.raises(QuicknetsError, match="3 class names for 10"):
        plots.view_classify(image, torch.full((10,), 0.1), ["a", "b", "c"])
    with pytest.raises(QuicknetsError, match=r"an image is laid out .* not \(2, 28, 28\)"):
        plots.view_classify(torch.zeros(2, 28, 28), torch.full((10,), 0.1))
    with pytest.raises(QuicknetsError, match="outside 0..9"):
        plots.view_classify(image, torch.full((10,), 0.1), true_label=10)


def test_show_batch_titles_every_image_with_its_class(tiny):
    before = tiny.train_images.clone()
    fig = plots.show_batch(tiny, n=6)
    drawn(fig)
    axes = image_axes(fig)
    assert len(axes) == 6
    assert [ax.get_title() for ax in axes] == [tiny.classes[y] for y in tiny.train_labels[:6]]
    assert torch.equal(tiny.train_images, before)
    with pytest.raises(QuicknetsError, match="positive whole number"):
        plots.show_batch(tiny, n=0)


def test_show_predictions_colours_right_and_wrong(tiny):
    wrong_class = int(tiny.test_labels[0])
    fig = plots.show_predictions(BandReader(wrong_for=[wrong_class]), tiny, n=16)
    drawn(fig)
    axes = image_axes(fig)
    assert len(axes) == 16
    labels = tiny.test_labels[:16].tolist()
    for ax, y in zip(axes, labels):
        color = ax.title.get_color()
        if y == wrong_class:
            assert color == plots.WRONG and f"(true: {tiny.classes[y]})" in ax.get_title()
        else:
            assert color == plots.RIGHT and ax.get_title() == tiny.classes[y]
    n_right = sum(y != wrong_class for y in labels)
    assert f"{n_right} of 16 right" in fig._suptitle.get_text()


def test_top_losses_are_the_wrong_images_with_the_highest_loss(tiny, random_net):
    rows = plots.top_losses(random_net, tiny, k=5)
    log_probs = random_net(tiny.normalize(tiny.test_images)).detach()
    reference = []  # brute force: every image, one at a time
    for i in range(len(tiny.test_labels)):
        y = int(tiny.test_labels[i])
        if int(log_probs[i].argmax()) != y:
            reference.append((-float(log_probs[i, y]), i))
    reference.sort(key=lambda r: -r[0])
    assert [r["index"] for r in rows] == [i for _, i in reference[:5]]
    assert all(abs(r["loss"] - loss) < 1e-4 for r, (loss, _) in zip(rows, reference))
    fig = plots.plot_top_losses(random_net, tiny, k=5)
    drawn(fig)
    axes = image_axes(fig)
    assert len(axes) == 5
    first = rows[0]
    assert axes[0].get_title() == (
        f"{tiny.classes[first['predicted']]} / "
        f"{tiny.classes[first['true']]}\n"
        f"{first['probability']:.2f} / {first['loss']:.2f}"
    )


def test_top_losses_of_a_perfect_model(tiny):
    assert plots.top_losses(BandReader(), tiny) == []
    fig = plots.plot_top_losses(BandReader(), tiny)
    drawn(fig, ink=0.005)  # one line of text
    assert "no mistakes on the 100 test images" in fig.texts[0].get_text()


def test_plot_history_one_run_and_several():
    history = [
        {
            "epoch": e,
            "epochs": 3,
            "train_loss": 1.0 / e,
            "train_accuracy": 0.5 + 0.1 * e,
            "val_loss": 1.1 / e,
            "val_accuracy": 0.45 + 0.1 * e,
        }
        for e in (1, 2, 3)
    ]
    before = copy.deepcopy(history)
    fig = plots.plot_history(history, {"loss": 0.4, "accuracy": 0.8})
    drawn(fig)
    ax_loss, ax_acc = fig.axes
    assert [line.get_label() for line in ax_loss.lines] == ["train", "validation", "test"]
    assert list(ax_acc.lines[0].get_ydata()) == [0.6, 0.7, 0.8]
    assert history == before
    no_val = [{k: v for k, v in row.items() if not k.startswith("val")} for row in history]
    fig = plots.plot_history({"adam": history, "sgd": no_val})
    assert [line.get_label() for line in fig.axes[0].lines] == [
        "adam train",
        "adam validation",
        "sgd train",
    ]
    with pytest.raises(QuicknetsError, match="empty"):
        plots.plot_history([])
    with pytest.raises(QuicknetsError, match="train_loss"):
        plots.plot_history([{"epoch": 1}])


def test_plot_confusion_matrix_names_and_rows(tiny, random_net):
    from quicknets.evaluation.metrics import evaluate

    results = evaluate(random_net, tiny)
    before = copy.deepcopy(results)
    fig = plots.plot_confusion_matrix(results)
    drawn(fig)
    ax = image_axes(fig)[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == tiny.classes
    assert [t.get_text() for t in ax.get_yticklabels()] == tiny.classes
    shares = ax.images[0].get_array()
    counts = np.array(results["confusion"])
    assert np.allclose(shares.sum(1), 100.0)
    assert np.allclose(shares, 100 * counts / counts.sum(1, keepdims=True))
    assert results == before
    counted = image_axes(plots.plot_confusion_matrix(results, normalize=False))[0]
    assert np.array_equal(counted.images[0].get_array(), counts)
    with pytest.raises(QuicknetsError, match="confusion matrix"):
        plots.plot_confusion_matrix({"accuracy": 0.5})


def test_save_figure_writes_atomically_and_checks_the_format(tmp_path, tiny):
    fig = plots.show_batch(tiny, n=4)
    path = plots.save_figure(fig, tmp_path / "batch.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plots.save_figure(fig, tmp_path / "batch.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(QuicknetsError, match="ending in .png"):
        plots.save_figure(fig, tmp_path / "batch.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.png", "batch.svg", "tiny"]
    assert [p.name for p in plots.plot_paths(tmp_path / "x.png", 2)] == ["x-0.png", "x-1.png"]


def test_figures_do_not_collect_in_pyplot(tiny):
    """Made without pyplot: a loop of figures leaves nothing open and nothing to show."""
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    for _ in range(3):
        plots.show_batch(tiny, n=2)
    assert plt.get_fignums() == open_before


def test_colour_images_with_per_channel_normalisation():
    from quicknets.data.loading import Dataset

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 12, 10), dtype=torch.uint8, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    data = Dataset(
        "mine",
        ["a", "b", "c"],
        images,
        labels,
        images,
        labels,
        mean=(0.2, 0.4, 0.6),
        std=(0.3, 0.2, 0.1),
        layout="resize",
    )
    x = data.normalize(images[:1])[0]  # float (3, 12, 10)
    shown = image_axes(plots.imshow(x, data=data))[0].images[0].get_array()
    assert shown.shape == (12, 10, 3)
    assert np.allclose(shown, images[0].permute(1, 2, 0).numpy() / 255.0, atol=1e-6)
    grid = image_axes(plots.show_batch(data, n=6))
    assert [ax.images[0].get_array().shape for ax in grid] == [(12, 10, 3)] * 6
    model = network("conv4-fc8", input_shape=(3, 12, 10), num_classes=3)
    fig = plots.view_classify(images[2], model, data=data, true_label=2)
    assert image_axes(fig)[0].images[0].get_array().shape == (12, 10, 3)


def test_imshow_reads_float_images_as_classify_does(fashion):
    """ToTensor's 0..1 floats, 0..255 floats and normalised floats draw the same picture as the
    uint8 pixels (the kind: what a float image means, judged once for drawing and predicting)."""
    from quicknets.plots.figures import image_pixels

    pre = fashion.preprocessing
    raw = fashion.test_images[0]
    want = image_pixels(raw, pre)
    unit, normalised = raw.float() / 255, pre.normalize(raw[None])[0]
    for image, scale in (
        (unit, "auto"),
        (raw.float(), "auto"),
        (normalised, "auto"),
        (unit, "unit"),
        (normalised, "normalized"),
    ):
        assert np.allclose(image_pixels(image, pre, scale), want, atol=1e-6)
