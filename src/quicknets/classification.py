"""Classify one image: the top classes with their probabilities.

    classify(model, 0, data)                    # test-set image 0
    classify(model, "shoe.jpg", top=3)          # any image file, brought to the model's shape
    classify(model, data.test_images[0])        # uint8 (28, 28) pixels; float = already normalised
    print(banner("Ankle Boot"))                 # the notebook's banner

Returns [{"class": name, "index": i, "probability": p}, ...], most likely first. A trained
model brings its own preprocessing (shape, normalisation, class names, how files are laid out).
"""
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quicknets.errors import QuicknetsError
from quicknets.images import load_image
from quicknets.preprocessing import Preprocessing, preprocessing_of

def as_input(image, pre: Preprocessing, data=None) -> torch.Tensor:
    """Any accepted image form -> normalised float (1, C, H, W) for a network whose images get
    `pre`: a test-set index of `data`, an image file (brought to the shape by pre.layout),
    uint8 pixels of the right size, or floats already normalised."""
    if isinstance(image, int) and not isinstance(image, bool):
        if data is None:
            raise QuicknetsError("classifying by index needs the dataset (pass data=...)")
        if not 0 <= image < len(data.test_images):
            raise QuicknetsError(f"index {image} is outside the test set "
                                 f"(0..{len(data.test_images) - 1})")
        image = data.test_images[image]
    elif isinstance(image, (str, Path)):
        image = load_image(image, pre.shape, pre.layout)
    elif isinstance(image, np.ndarray):
        image = torch.from_numpy(image)
    if not isinstance(image, torch.Tensor):
        raise QuicknetsError(f"cannot classify a {type(image).__name__}: give a tensor, a "
                             "test-set index or an image file")
    c, h, w = pre.shape
    if image.numel() != pre.features:
        raise QuicknetsError(f"an image must have {c}x{h}x{w} = {pre.features} values, this "
                             f"one has shape {tuple(image.shape)}")
    x = image.reshape(1, c, h, w)
    if x.dtype == torch.uint8:
        return pre.normalize(x)
    return x.float()  # already normalised, as the notebook's DataLoader gave them


@torch.no_grad()
def probabilities(model: nn.Module, image, data=None) -> torch.Tensor:
    """Class probabilities (classes,) of one image (see as_input), with the model's own
    preprocessing."""
    pre = preprocessing_of(model, data)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        log_probs = model(as_input(image, pre, data).to(device))
    finally:
        model.train(was_training)
    return log_probs[0].float().exp().cpu()


def classify(model: nn.Module, image, data=None, top: int = 3, classes=None) -> list:
    """The `top` most likely classes for `image` (a test-set index of `data`, an image file,
    or a tensor), with probabilities: [{"class", "index", "probability"}], most likely first.
    Class names: `classes`, else the model's own, else the data's, else numbers."""
    if top < 1:
        raise QuicknetsError(f"top must be at least 1, not {top}")
    probs = probabilities(model, image, data)
    own = getattr(model, "preprocessing", None)
    names = list(classes or (own.classes if own is not None and own.classes else ()) or
                 (data.classes if data is not None else [str(i) for i in range(len(probs))]))
    if len(names) != len(probs):
        raise QuicknetsError(f"{len(names)} class names for a model with {len(probs)} outputs")
    values, indices = probs.topk(min(top, len(probs)))
    return [{"class": names[i], "index": int(i), "probability": float(p)}
            for p, i in zip(values.tolist(), indices.tolist())]


def banner(text: str, width: int = 40) -> str:
    """The notebook's banner: the class name framed in # signs."""
    width = max(width, len(text) + 4)
    return "\n".join(["#" * width, f"#{text:^{width - 2}}#", "#" * width])
