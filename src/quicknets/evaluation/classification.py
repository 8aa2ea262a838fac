"""Classify one image: the top classes with their probabilities.

    classify(model, 0, data)                    # test-set image 0
    classify(model, "shoe.jpg", top=3)          # any image file, brought to the model's shape
    classify(model, data.test_images[0])        # uint8 (28, 28) pixels
    classify(model, ToTensor()(pil_image))      # floats in [0, 1]: read as such (scale="auto")
    print(banner("Ankle Boot"))                 # the notebook's banner

    predict(model, data.test_images)            # a whole batch: class indices (N,), as sklearn
    predict(model, ["a.png", "b.jpg"], names=True)   # or their class names
    predict_proba(model, data.test_images[:64]) # probabilities (N, classes)
    predict(model, x, scale="normalized")       # floats already normalised: say so
    classes, scores, familiar = predict(model, images, familiarity=True)   # and how familiar
    familiarity_note(model, "shoe.jpg")         # "does not look like Fashion-MNIST (...)" or ""

classify returns [{"class": name, "index": i, "probability": p}, ...], most likely first. A
trained model brings its own preprocessing (shape, normalisation, class names, how files are
laid out, and the temperature fitted on its validation split), so every form of image gets
what the network was trained on, and every probability is the calibrated one (reported).

What the values of an image mean, `scale` (Preprocessing.scale_of): uint8 and other integer
images are pixels 0..255. Floats are "pixels" (0..255, as np.asarray(pil_image, np.float32)),
"unit" (0..1, as torchvision's ToTensor) or "normalized" ((pixel / 255 - mean) / std with the
model's mean and std). The default, "auto", reads the whole batch: a value below -0.05 means
normalised (black normalises below 0 with any mean above 0), else a largest value of at most 1
means unit, above 1.05 pixels. Where that is unsure (no black pixel at all) it warns; where it
cannot tell (values just beyond 0..1, as resampling leaves unit images; a model normalised with
mean 0) it is an error. Values that fit no reading are an error, never a guess.

Familiarity (familiarity.py): a model loaded from a run (load_model) or a safetensors export
carries `model.familiarity`, its fitted statistics and threshold; predict(familiarity=True)
returns every image's score and whether it passes, familiarity_note the words classify prints.
"""

from pathlib import Path

import numpy as np
import torch
from torch import nn

from quicknets.base.errors import QuicknetsError
from quicknets.base.machine import use_strict_math
from quicknets.data.images import as_tensor, load_image, to_chw, to_nchw
from quicknets.data.preprocessing import Preprocessing, preprocessing_of
from quicknets.evaluation.calibration import temperature_scale

BATCH_SIZE = 1024  # images per forward pass in predict: (1024, 784) floats are 3 MB


def reported(log_probs: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """The probabilities quicknets reports for a network's log-probabilities (N, classes):
    softmax(log_probs / T) with the preprocessing's temperature T (calibration.
    temperature_scale; T = 1, no temperature: exp(log_probs) as they are), float32."""
    return temperature_scale(log_probs.float(), pre.temperature).exp()


def as_input(image, pre: Preprocessing, data=None) -> torch.Tensor:
    """Any accepted form of one image -> (1, C, H, W) of its own values (uint8 pixels or
    floats, read by `scale` later): a test-set index of `data`, an image file (brought to the
    shape by pre.layout), or a tensor or NumPy array laid out (C, H, W), (H, W, C)
    channels-last, (H, W) for one channel, or flat (C*H*W,) in C, H, W order, leading 1s
    allowed ((1, C, H, W))."""
    if isinstance(image, int) and not isinstance(image, bool):
        if data is None:
            raise QuicknetsError("classifying by index needs the dataset (pass data=...)")
        if not 0 <= image < len(data.test_images):
            raise QuicknetsError(
                f"index {image} is outside the test set (0..{len(data.test_images) - 1})"
            )
        image = data.test_images[image]
    elif isinstance(image, (str, Path)):
        image = load_image(image, pre.shape, pre.layout)
    elif isinstance(image, (list, tuple)):
        raise QuicknetsError(
            f"classify takes one image, not a {type(image).__name__}: for "
            "several, predict(model, images)"
        )
    return to_chw(_tensor(image, "classify"), pre.shape)[None]  # any layout -> (1, C, H, W)


@torch.no_grad()
def probabilities(model: nn.Module, image, data=None, scale: str = "auto") -> torch.Tensor:
    """Class probabilities (classes,) of one image (see as_input; `scale`: what its values
    are, see the module docstring), with the model's own preprocessing."""
    use_strict_math()  # before anything multiplies: the CLI's math mode, as train()
    pre = preprocessing_of(model, data)
    x = as_input(image, pre, data)
    x = pre.prepare(x, pre.scale_of(x, scale))
    was_training = model.training
    model.eval()
    try:
        log_probs = model(x.to(_device(model)))
    finally:
        model.train(was_training)
    return reported(log_probs, pre)[0].cpu()


def classify(
    model: nn.Module, image, data=None, top: int = 3, classes=None, scale: str = "auto"
) -> list:
    """The `top` most likely classes for `image` (a test-set index of `data`, an image file,
    or a tensor or array; see as_input), with probabilities: [{"class", "index",
    "probability"}], most likely first. `scale`: what the image's values are, "auto",
    "pixels", "unit" or "normalized" (the module docstring). Class names: `classes`, else the
    model's own, else the data's, else numbers. Raises QuicknetsError for an image of another
    shape or whose values fit no scale."""
    if top < 1:
        raise QuicknetsError(f"top must be at least 1, not {top}")
    probs = probabilities(model, image, data, scale)
    own = getattr(model, "preprocessing", None)
    names = list(
        classes
        or (own.classes if own is not None and own.classes else ())
        or (data.classes if data is not None else [str(i) for i in range(len(probs))])
    )
    if len(names) != len(probs):
        raise QuicknetsError(f"{len(names)} class names for a model with {len(probs)} outputs")
    values, indices = probs.topk(min(top, len(probs)))
    return [
        {"class": names[i], "index": int(i), "probability": float(p)}
        for p, i in zip(values.tolist(), indices.tolist())
    ]


def as_batch(images, pre: Preprocessing) -> torch.Tensor:
    """A batch in any accepted form -> (N, C, H, W) of its own values (uint8 pixels or floats,
    read by `scale` later): a tensor or NumPy array (N, C, H, W), (N, H, W, C) channels-last,
    (N, H, W) for one channel or flat (N, C*H*W); a list of image files, tensors or arrays (one
    image each, as classify takes it; an empty list is an empty batch); or one image file."""
    c, h, w = pre.shape
    if isinstance(images, (str, Path)):
        images = [images]
    if isinstance(images, (list, tuple)):
        if not images:
            return torch.empty(0, c, h, w, dtype=torch.uint8)
        items = [as_input(i, pre) for i in images]
        if len({x.is_floating_point() for x in items}) > 1:
            raise QuicknetsError(
                "a batch mixes pixels (uint8, or image files) and floats: give one or the other"
            )
        return torch.cat([x.float() if x.is_floating_point() else x for x in items])
    return to_nchw(_tensor(images, "predict"), pre.shape)  # any layout -> (N, C, H, W)


def _tensor(image, verb: str) -> torch.Tensor:
    """A tensor of uint8 pixels or floats from a tensor or NumPy array (images.as_tensor)."""
    if not isinstance(image, (np.ndarray, torch.Tensor)):
        raise QuicknetsError(
            f"cannot {verb} a {type(image).__name__}: give a tensor, a numpy "
            "array or an image file" + (", or a test-set index" if verb == "classify" else "")
        )
    return as_tensor(image).detach()


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.inference_mode()
def predict_proba(
    model: nn.Module, images, batch_size: int = BATCH_SIZE, scale: str = "auto"
) -> torch.Tensor:
    """Class probabilities (N, classes), float32 on the CPU, for a batch of images (see
    as_batch; `scale`: what their values are, read once for the whole batch, see the module
    docstring), with the model's own preprocessing. An empty batch gives (0, classes). Runs
    on the device the model is on, in batches of `batch_size`; uint8 pixels travel to it as
    bytes and are normalised there. Raises QuicknetsError for images of another shape or
    whose values fit no scale."""
    if batch_size < 1:
        raise QuicknetsError(f"batch_size must be at least 1, not {batch_size}")
    use_strict_math()  # before anything multiplies: the CLI's math mode, as train()
    pre = preprocessing_of(model)
    x = as_batch(images, pre)
    scale = pre.scale_of(x, scale)
    device = _device(model)
    was_training = model.training
    model.eval()
    try:
        if len(x) == 0:  # the number of classes, from one blank image
            k = model(torch.zeros(1, *pre.shape, device=device)).shape[1]
            return torch.empty(0, k)
        out = []
        for i in range(0, len(x), batch_size):
            batch = pre.prepare(x[i : i + batch_size].to(device, non_blocking=True), scale)
            out.append(reported(model(batch), pre).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def predict(
    model: nn.Module,
    images,
    batch_size: int = BATCH_SIZE,
    names: bool = False,
    scale: str = "auto",
    familiarity: bool = False,
):
    """The most likely class of each image in a batch (see as_batch; `scale` as for
    predict_proba): class indices (N,) as a LongTensor, as scikit-learn's predict; with
    names=True, their class names (a list: the model's own classes, or "0", "1", ... for a
    model that has none). An empty batch gives an empty result. With familiarity=True, a tuple
    (classes, scores, familiar): also each image's familiarity score ((N,) float64, higher is
    more like the training images) and whether it reaches the model's threshold ((N,) bool);
    a model without `model.familiarity` (see familiarity_of) is then a QuicknetsError."""
    fitted = familiarity_of(model) if familiarity else None
    probs = predict_proba(model, images, batch_size, scale)
    indices = probs.argmax(1)
    result = indices
    if names:
        pre = getattr(model, "preprocessing", None)
        classes = (
            list(pre.classes)
            if pre is not None and pre.classes
            else [str(i) for i in range(probs.shape[1])]
        )
        result = [classes[i] for i in indices.tolist()]
    if fitted is None:
        return result
    scores = _familiarity_scores(model, images, fitted, batch_size, scale)
    return result, scores, scores >= fitted.threshold


def familiarity_of(model: nn.Module):
    """The model's fitted familiarity (familiarity.Familiarity): what load_model or
    load_exported (safetensors) attached, or what a caller set as
    model.familiarity = fit_familiarity(model, data). Raises QuicknetsError when it has none."""
    fitted = getattr(model, "familiarity", None)
    if fitted is None:
        raise QuicknetsError(
            "this model carries no familiarity statistics: load it with load_model, or fit "
            "them with model.familiarity = fit_familiarity(model, data) (ONNX and TorchScript "
            "exports carry none; safetensors exports do)"
        )
    return fitted


def _display_name(dataset: str) -> str:
    """A built-in dataset's name as its authors write it: fashion-mnist -> Fashion-MNIST."""
    return "-".join(
        part.upper() if part.endswith("mnist") else part.capitalize() for part in dataset.split("-")
    )


def _familiarity_scores(model, images, fitted, batch_size: int, scale: str) -> torch.Tensor:
    from quicknets.evaluation.familiarity import familiarity_scores

    pre = preprocessing_of(model)
    x = as_batch(images, pre)
    if len(x) == 0:
        return torch.empty(0, dtype=torch.float64)
    return familiarity_scores(model, x, fitted, batch_size, scale)


def familiarity_note(model: nn.Module, image, data=None, scale: str = "auto") -> str:
    """The words classify prints beside the class when `image` (any form classify takes) is
    unlike the training images: "does not look like Fashion-MNIST (familiarity -0.62 <
    threshold -0.41)"; "" when it passes or the model carries no familiarity statistics."""
    fitted = getattr(model, "familiarity", None)
    if fitted is None:
        return ""
    pre = preprocessing_of(model, data)
    x = as_input(image, pre, data)
    value = _familiarity_scores(model, x, fitted, BATCH_SIZE, scale)[0].item()
    if value >= fitted.threshold:
        return ""
    if pre.dataset and pre.layout != "resize":  # a built-in dataset
        where = _display_name(pre.dataset)
    else:  # your own data: named after its file or folder
        where = f"the training images ({pre.dataset})" if pre.dataset else "the training images"
    return (
        f"does not look like {where} (familiarity {value:.4g} < threshold {fitted.threshold:.4g})"
    )


def banner(text: str, width: int = 40) -> str:
    """The notebook's banner: the class name framed in # signs."""
    width = max(width, len(text) + 4)
    return "\n".join(["#" * width, f"#{text:^{width - 2}}#", "#" * width])
