"""Attribution maps drawn: over the image (gray and RGB), in view_classify's middle panel, beside
each top loss, and blended into an array for the demo; each against the map explain() made."""

import numpy as np
import pytest
import torch
from matplotlib import colormaps

from conftest import need
from quicknets.base.errors import QuicknetsError
from quicknets.data.preprocessing import Preprocessing
from quicknets.evaluation.attribution import explain, explain_batch
from quicknets.networks.models import network
from quicknets.plots.attribution import (
    OPACITY,
    blend_explanation,
    draw_explanation,
    normalized_map,
    plot_top_losses_explained,
)
from quicknets.plots.figures import image_pixels, top_losses, view_classify

CLASSES = tuple(f"class {i}" for i in range(10))
GRAY = Preprocessing(classes=CLASSES)
RGB = Preprocessing((3, 32, 32), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), CLASSES, "", "resize")


@pytest.fixture(autouse=True)
def captum():
    need("captum")


def untrained(spec: str, pre: Preprocessing = GRAY):
    model = network(spec, input_shape=pre.shape)
    model.preprocessing = pre
    return model


def images(pre: Preprocessing, n: int, seed: int = 0) -> torch.Tensor:
    """uint8 (n, C, H, W): noise under three black rows."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *pre.shape), generator=g, dtype=torch.uint8)
    x[..., :3, :] = 0
    return x


def test_draw_explanation_paints_the_map_over_the_image():
    model = untrained("784-16-10")
    x = images(GRAY, 1)[0]
    heat = explain(model, x)
    kept = heat.clone()
    fig = draw_explanation(x, heat, model=model, title="IG")
    ax = fig.axes[0]
    assert len(ax.images) == 2 and ax.get_title() == "IG"
    overlay = ax.images[1].get_array()
    np.testing.assert_allclose(overlay, normalized_map(heat.numpy()))
    assert overlay.min() >= -1 and overlay.max() <= 1 and np.abs(overlay).max() == 1
    assert torch.equal(heat, kept)
    from matplotlib.figure import Figure

    mine = Figure()
    axes = mine.subplots(1, 2)
    assert draw_explanation(images(RGB, 1)[0], torch.zeros(32, 32), ax=axes[1]) is mine
    assert (axes[1].images[1].get_array() == 0).all()
    with pytest.raises(QuicknetsError, match=r"map is \(32, 32\), the image 28x28"):
        draw_explanation(x, torch.zeros(32, 32))
    with pytest.raises(QuicknetsError, match="NaN"):
        draw_explanation(x, torch.full((28, 28), float("nan")))


@pytest.mark.parametrize("spec, pre", [("784-16-10", GRAY), ("conv4-fc16", RGB)])
def test_view_classify_draws_the_map_between_the_image_and_the_bars(spec, pre):
    model = untrained(spec, pre)
    x = images(pre, 1)[0]
    heat = explain(model, x, "occlusion")
    fig = view_classify(x, model, explanation=heat, explanation_title="Occlusion\nfor it")
    assert len(fig.axes) == 3 and len(view_classify(x, model).axes) == 2
    image, overlay = fig.axes[1].images
    np.testing.assert_allclose(image.get_array(), image_pixels(x, pre))  # RGB stays RGB
    assert image.get_array().shape == (*pre.shape[1:], 3)[: 2 if pre is GRAY else 3]
    np.testing.assert_allclose(overlay.get_array(), normalized_map(heat.numpy()))
    assert fig.axes[1].get_title() == "Occlusion\nfor it"
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), image_pixels(x, pre))
    with pytest.raises(QuicknetsError, match=r"map is \(28, 28\)"):
        view_classify(images(RGB, 1)[0], untrained("fc16", RGB), explanation=torch.zeros(28, 28))


class Shifted(torch.nn.Module):
    """A fixed random MLP whose answer is moved one class on: mostly wrong, so top losses."""

    def __init__(self):
        super().__init__()
        self.net = network("784-16-10")

    def forward(self, x):
        return self.net(x).roll(1, dims=1)


def test_each_top_loss_beside_its_map_for_the_predicted_class(tiny):
    model = Shifted()  # no preprocessing of its own: the data's serves both
    rows = top_losses(model, tiny, k=4)
    assert len(rows) == 4
    chosen = tiny.test_images[[r["index"] for r in rows]]
    maps = explain_batch(model, chosen, targets=[r["predicted"] for r in rows], data=tiny)
    fig = plot_top_losses_explained(model, tiny, k=4)
    axes = fig.axes
    assert len(axes) == 2 * 6  # two lines of three (image, map) pairs; the last 2 pairs empty
    for i, r in enumerate(rows):
        image, heat = axes[2 * i], axes[2 * i + 1]
        np.testing.assert_allclose(image.images[0].get_array(), image_pixels(chosen[i]))
        np.testing.assert_allclose(heat.images[1].get_array(), normalized_map(maps[i].numpy()))
        assert heat.get_title() == f"for {tiny.classes[r['predicted']]}"
        assert image.get_title().startswith(
            f"{tiny.classes[r['predicted']]} / {tiny.classes[r['true']]}"
        )
    assert all(not ax.axison for ax in axes[8:])
    assert "Integrated Gradients" in fig._suptitle.get_text()
    occlusion = plot_top_losses_explained(model, tiny, k=1, method="Occlusion")
    assert "Occlusion" in occlusion._suptitle.get_text() and len(occlusion.axes) == 2
    with pytest.raises(QuicknetsError, match="Grad-CAM needs a convolutional network"):
        plot_top_losses_explained(model, tiny, method="gradcam")


def test_blend_explanation_is_the_overlay_as_an_array():
    gray = torch.full((28, 28), 128, dtype=torch.uint8)
    heat = torch.zeros(28, 28)
    assert np.array_equal(blend_explanation(gray, heat), np.full((28, 28, 3), 128, np.uint8))
    heat[5, 7], heat[9, 9] = 2.0, -2.0  # the two strongest: saturated red and blue
    out = blend_explanation(gray, heat)
    level = 128 / 255
    red = np.array(colormaps["bwr"](1.0)[:3])  # (1, 0, 0)
    blue = np.array(colormaps["bwr"](0.0)[:3])  # (0, 0, 1)
    assert out[5, 7].tolist() == np.round(255 * ((1 - OPACITY) * level + OPACITY * red)).tolist()
    assert out[9, 9].tolist() == np.round(255 * ((1 - OPACITY) * level + OPACITY * blue)).tolist()
    assert (out[0, 0] == 128).all()
    rgb = images(RGB, 1)[0]
    assert np.array_equal(
        blend_explanation(rgb, torch.zeros(32, 32)),
        np.round(255 * image_pixels(rgb)).astype(np.uint8),
    )
    with pytest.raises(QuicknetsError, match=r"map is \(28, 28\), the image 32x32"):
        blend_explanation(rgb, heat)
