"""An attribution map drawn over its image; returns the Figure (plots.py's style).

    draw_explanation(data.test_images[0], explain(model, 0, data), model=model)
    draw_explanation(image, heat, ax=axes[1], title="Grad-CAM")   # into a figure of your own
    plot_top_losses_explained(model, data, k=9)   # each top loss beside its map
    blend_explanation(pixels, heat)               # uint8 (H, W, 3): the overlay as an array

Like plots.py: matplotlib's object API on an Agg canvas, never pyplot. The colours follow
Captum's visualize_image_attr: the map is divided by the 98th percentile of its absolute
values and clipped to -1..1 (a few extreme pixels do not wash out the rest); red speaks for
the class, blue against it, and a pixel's opacity grows with its size, so a pixel that did not
matter leaves the image as it is.
"""

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from quicknets.data.preprocessing import Preprocessing, preprocessing_of
from quicknets.plots.figures import (
    CMAP,
    OPACITY,
    WRONG,
    checked_map,
    image_pixels,
    new_figure,
    normalized_map,
    paint_explanation,
    top_losses,
)


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
    heat = checked_map(attribution, pixels)  # before a figure is made
    fig = new_figure(3, 3.2) if ax is None else ax.figure
    paint_explanation(ax if ax is not None else fig.add_subplot(), pixels, heat, title)
    return fig


def plot_top_losses_explained(
    model, data, k: int = 9, method: str = "integrated_gradients", split: str = "test"
) -> Figure:
    """plot_top_losses' k most confidently wrong images, each beside its attribution map
    (attribution.explain_batch's `method`) for the class the network wrongly chose: what it
    saw of that class. Three pairs a row. Errors as top_losses and explain."""
    from quicknets.evaluation.attribution import METHODS, check_method, explain_batch

    method = check_method(model, method)  # before any work: a method the network lacks
    rows = top_losses(model, data, k, split)
    images = getattr(data, f"{split}_images")
    if not rows:
        fig = new_figure(4, 1.5)
        fig.text(0.5, 0.5, f"no mistakes on the {len(images)} {split} images", ha="center")
        return fig
    chosen = images[[r["index"] for r in rows]]
    maps = explain_batch(model, chosen, method, [r["predicted"] for r in rows], data=data)
    pairs = min(3, len(rows))  # (image, map) pairs a line
    lines = -(-len(rows) // pairs)  # rows of pairs, rounded up
    fig = new_figure(3.2 * pairs, 1.9 * lines + 0.5)
    axes = fig.subplots(lines, 2 * pairs, squeeze=False).ravel()
    pre = preprocessing_of(model, data)
    for i, ax in enumerate(axes[::2]):
        if i >= len(rows):
            ax.axis("off")
            axes[2 * i + 1].axis("off")
            continue
        r = rows[i]
        pixels = image_pixels(chosen[i], pre)
        ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, vmin=0.0, vmax=1.0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(
            f"{data.classes[r['predicted']]} / {data.classes[r['true']]}\n"
            f"{r['probability']:.2f} / {r['loss']:.2f}",
            color=WRONG,
            fontsize=9,
        )
        paint_explanation(axes[2 * i + 1], pixels, checked_map(maps[i], pixels))
        axes[2 * i + 1].set_title(f"for {data.classes[r['predicted']]}", fontsize=9)
    fig.suptitle(
        "most confidently wrong: predicted / true, probability of the prediction / loss;\n"
        f"beside each, {METHODS[method].title} for the predicted class (red: for it, blue: "
        "against)",
        fontsize=10,
    )
    return fig


def blend_explanation(image, attribution, *, model=None, scale: str = "auto") -> np.ndarray:
    """The overlay draw_explanation paints, as a uint8 (H, W, 3) RGB array: the image (gray or
    colour) blended with the map's colour at its opacity. For pages that show an array (the
    demo). Errors as draw_explanation."""
    pre = preprocessing_of(model) if model is not None else Preprocessing()
    pixels = image_pixels(image, pre, scale)  # (H, W) or (H, W, 3) in [0, 1]
    heat = checked_map(attribution, pixels)
    rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)
    scaled = normalized_map(heat)
    colour = colormaps[CMAP]((scaled + 1) / 2)[..., :3]  # -1..1 onto the colormap's 0..1
    alpha = (OPACITY * np.abs(scaled))[..., None]
    return np.round(255 * ((1 - alpha) * rgb + alpha * colour)).astype(np.uint8)
