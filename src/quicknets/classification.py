"""Classify one image: the top classes with their probabilities.

    classify(model, 0, data)                    # test-set image 0
    classify(model, "shoe.jpg", top=3)          # any image file, brought to the model's shape
    classify(model, data.test_images[0])        # uint8 (28, 28) pixels; float = already normalised
    print(banner("Ankle Boot"))                 # the notebook's banner

    predict(model, data.test_images)            # a whole batch: class indices (N,), as sklearn
    predict(model, ["a.png", "b.jpg"], names=True)   # or their class names
    predict_proba(model, data.test_images[:64]) # probabilities (N, classes)

classify returns [{"class": name, "index": i, "probability": p}, ...], most likely first. A
trained model brings its own preprocessing (shape, normalisation, class names, how files are
laid out), so every form of image gets what the network was trained on.
"""
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quicknets.errors import QuicknetsError
from quicknets.images import as_tensor, load_image, to_chw, to_nchw
from quicknets.preprocessing import Preprocessing, preprocessing_of

BATCH_SIZE = 1024  # images per forward pass in predict: (1024, 784) floats are 3 MB

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
        image = as_tensor(image)
    if not isinstance(image, torch.Tensor):
        raise QuicknetsError(f"cannot classify a {type(image).__name__}: give a tensor, a "
                             "test-set index or an image file")
    x = to_chw(image, pre.shape)[None]  # any layout of one image -> (1, C, H, W)
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


def as_batch(images, pre: Preprocessing) -> torch.Tensor:
    """A batch in any accepted form -> (N, C, H, W), uint8 pixels or floats already normalised:
    a tensor or numpy array laid out as images.to_nchw takes it ((N, C, H, W), (N, H, W, C),
    (N, H, W) or flat (N, C*H*W)); a list of image files, tensors or arrays (one image each, in
    any layout images.to_chw takes); or one image file."""
    if isinstance(images, (str, Path)):
        images = [images]
    if isinstance(images, (list, tuple)):
        if not images:
            raise QuicknetsError("no images to predict")
        items = [load_image(i, pre.shape, pre.layout) if isinstance(i, (str, Path))
                 else to_chw(_tensor(i), pre.shape) for i in images]
        if len({x.dtype for x in items}) > 1:
            raise QuicknetsError("a batch mixes uint8 pixels and floats: give one or the other")
        images = torch.stack(items)
    return to_nchw(_tensor(images), pre.shape)  # any layout of a batch -> (N, C, H, W)


def _tensor(image) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        image = as_tensor(image)
    if not isinstance(image, torch.Tensor):
        raise QuicknetsError(f"cannot predict a {type(image).__name__}: give tensors, numpy "
                             "arrays or image files")
    if image.dtype != torch.uint8 and not image.is_floating_point():
        raise QuicknetsError(f"images are uint8 pixels (0..255) or floats already normalised, "
                             f"not {image.dtype}")
    return image


@torch.inference_mode()
def predict_proba(model: nn.Module, images, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """Class probabilities (N, classes), float32 on the CPU, for a batch of images (see
    as_batch), with the model's own preprocessing. Runs on the device the model is on, in
    batches of `batch_size`; uint8 pixels travel to it as bytes and are normalised there."""
    if batch_size < 1:
        raise QuicknetsError(f"batch_size must be at least 1, not {batch_size}")
    pre = preprocessing_of(model)
    x = as_batch(images, pre)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        out = []
        for i in range(0, len(x), batch_size):
            batch = x[i:i + batch_size].to(device, non_blocking=True)
            batch = pre.normalize(batch) if batch.dtype == torch.uint8 else batch.float()
            out.append(model(batch).float().exp().cpu())  # log-probabilities -> probabilities
    finally:
        model.train(was_training)
    return torch.cat(out)


def predict(model: nn.Module, images, batch_size: int = BATCH_SIZE, names: bool = False):
    """The most likely class of each image in a batch (see as_batch): class indices (N,) as a
    LongTensor, as scikit-learn's predict; with names=True, their class names (a list: the
    model's own classes, or "0", "1", ... for a model that has none)."""
    probs = predict_proba(model, images, batch_size)
    indices = probs.argmax(1)
    if not names:
        return indices
    pre = getattr(model, "preprocessing", None)
    classes = list(pre.classes) if pre is not None and pre.classes else \
        [str(i) for i in range(probs.shape[1])]
    return [classes[i] for i in indices.tolist()]


def banner(text: str, width: int = 40) -> str:
    """The notebook's banner: the class name framed in # signs."""
    width = max(width, len(text) + 4)
    return "\n".join(["#" * width, f"#{text:^{width - 2}}#", "#" * width])
