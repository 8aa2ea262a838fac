"""An attribution map drawn over its image; returns the Figure (plots.py's style).

    draw_explanation(data.test_images[0], explain(model, 0, data), model=model)
    draw_explanation(image, heat, ax=axes[1], title="Grad-CAM")   # into a figure of your own

Like plots.py: matplotlib's object API on an Agg canvas, never pyplot. The colours follow
Captum's visualize_image_attr: the map is divided by the 98th percentile of its absolute
values and clipped to -1..1 (a few extreme pixels do not wash out the rest); red speaks for
the class, blue against it, and a pixel's opacity grows with its size, so a pixel that did not
matter leaves the image as it is.
"""

import numpy as np
import torch
from matplotlib.figure import Figure

from quicknets.base.errors import QuicknetsError
from quicknets.data.preprocessing import Preprocessing, preprocessing_of
from quicknets.plots.figures import image_pixels, new_figure

OUTLIER_PERCENT = 2  # the top 2% of |map| saturate the colours, as Captum's default
CMAP = "bwr"  # diverging: blue (against), white (0), red (for)
OPACITY = 0.8  # of the most important pixels; 0 at a pixel whose attribution is 0


def draw_explanation(
    image,
    attribution,
    *,
    model=None,
    data=None,
    title=None,
    ax=None,
    scale: str = "auto",
) -> Figure:
    """Draw `attribution`, an (H, W) map (attribution.explain's; a tensor or array), over
    `image` (any layout plots.imshow takes; `scale`: what its values are, read as classify
    reads them with the model's preprocessing, else the data's, else the default), in gray
    (colour for 3 channels). With `ax`, draws there and returns that axes' figure. Raises
    QuicknetsError for a map that is not (H, W) of the image's size, or not finite."""
    pre = (
        preprocessing_of(model, data)
        if model is not None
        else data.preprocessing
        if data is not None
        else Preprocessing()
    )
    pixels = image_pixels(image, pre, scale)  # (H, W) or (H, W, 3) in [0, 1]
    heat = _as_map(attribution)
    if heat.shape != pixels.shape[:2]:
        raise QuicknetsError(
            f"the attribution map is {tuple(heat.shape)}, the image "
            f"{pixels.shape[0]}x{pixels.shape[1]}: give the map explain() made for it"
        )
    fig = new_figure(3, 3.2) if ax is None else ax.figure
    ax = ax if ax is not None else fig.add_subplot()
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
    return fig


def normalized_map(heat: np.ndarray) -> np.ndarray:
    """The map divided by the (100 - OUTLIER_PERCENT)th percentile of its absolute values,
    clipped to -1..1, as Captum's visualize_image_attr scales it; all zeros stay zeros."""
    top = float(np.percentile(np.abs(heat), 100 - OUTLIER_PERCENT))
    if top == 0:
        top = float(np.abs(heat).max())
    return np.clip(heat / top, -1.0, 1.0) if top > 0 else np.zeros_like(heat)


def _as_map(attribution) -> np.ndarray:
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
    return heat
