"""Why a network chose a class: an attribution map over the image's pixels, from Captum.

    explain(model, 0, data)                                 # test image 0, its predicted class
    explain(model, "shoe.jpg", method="occlusion")          # any image classify takes
    explain(model, x, method="grad_cam", target="Sneaker")  # a conv network; a class by name
    explain_batch(model, data.test_images[:100])            # (100, 28, 28), one map per image
    draw_explanation(data.test_images[0], explain(model, 0, data))  # attributionplots.py

A map is (H, W) float32 on the CPU: how much each pixel moved the network's output for the
target class (its log-probability: every quicknets network ends in LogSoftmax), summed over
the channels with their signs, as Captum's visualize_image_attr(sign="all") sums them. Positive
pixels speak for the class, negative ones against it. The methods (METHODS):

- integrated_gradients (Sundararajan et al., ICML 2017): the gradient averaged along the
  straight path from the baseline, a black image (pixel 0, normalised as the model normalises),
  to the image, times (image - baseline); IG_STEPS points (Gauss-Legendre, Captum's default).
  The map sums to the change of the log-probability from black to the image (completeness).
- occlusion (Zeiler & Fergus, ECCV 2014): the drop of the log-probability when a square of
  OCCLUSION_WINDOW pixels is painted black, slid by OCCLUSION_STRIDE, averaged per pixel over
  the squares that cover it. 4 and 2 cover 28x28 and 32x32 exactly (13x13 and 15x15 squares).
- saliency (Simonyan et al., 2014): the absolute gradient, never negative.
- grad_cam (Selvaraju et al., ICCV 2017): Captum's LayerGradCam on the last Conv2d's output,
  ReLU applied as in the paper, upsampled bilinearly to (H, W); never negative. Convolutional
  networks only; with flip_tta the mirrored half's map is mirrored back and the two averaged.

Methods offered by default (methods_for(model, default_only=True): what the CLI, the report
and the demo show) pass Adebayo et al.'s model-randomisation check ("Sanity Checks for Saliency
Maps", NeurIPS 2018; tests/test_attribution.py): over 100 Fashion-MNIST test images, the maps
of a trained network and of the same network with its weights drawn afresh have a median
Spearman rank correlation below 0.5, both asked about the trained network's predicted class.
Measured after one epoch on 20,000 images (default MLP; conv8-fc32), medians: Integrated
Gradients 0.02; 0.01, Occlusion 0.02; -0.02, Saliency -0.00; 0.04, Grad-CAM 0.15 (the same
to 0.03 with AVX2 kernels). As absolute values, though, Integrated Gradients' and Occlusion's
maps correlate 0.91 and 0.75 (0.90; 0.73 on the CNN): black pixels are 0 in every map, image minus
baseline being 0 there, so the garment's outline shows whatever the weights; their colours
(the signs) are what the training put there.

Cost per image (a batch of 100 through explain_batch, 1 thread on a busy 2-core Xeon, load
3 to 4; repeated runs differ by up to half): default MLP IG 1.8 ms, Occlusion 4 ms, Saliency
0.05 ms; conv8-fc32 10-16, 13, 0.3, Grad-CAM 0.2-0.3 ms; the cnn preset (conv32-conv64-fc128)
44-47, 107-135, 1.4-2.1, 1.0-1.3 ms.

The model is left as found: each module's train/eval mode restored, no gradient in its
parameters' .grad.
"""

import contextlib
import math
import operator
from dataclasses import dataclass

import torch
from torch import nn

from quicknets.base.errors import QuicknetsError
from quicknets.base.machine import use_strict_math
from quicknets.data.preprocessing import Preprocessing, preprocessing_of
from quicknets.evaluation.classification import as_batch, as_input

IG_STEPS = 50  # points along the path from black to the image: Captum's default
OCCLUSION_WINDOW = 4  # pixels per side of the black square; 1/7 of a 28x28 image's side
OCCLUSION_STRIDE = 2  # pixels between squares: each pixel is covered by up to 4 squares
ROWS = 512  # images per forward pass inside a method (IG's path points, occluded copies)


@dataclass(frozen=True)
class Method:
    """title: the method's name in figures; networks: "any" or "conv" (needs a Conv2d);
    gradients: needs the output's gradient with respect to the image (Occlusion does not: an
    ONNX export, run by onnxruntime, gives none);
    default: offered by methods_for(model, default_only=True), as it passes the
    model-randomisation check (the module docstring)."""

    title: str
    networks: str
    gradients: bool
    default: bool


METHODS = {
    "integrated_gradients": Method("Integrated Gradients", "any", True, True),
    "occlusion": Method("Occlusion", "any", False, True),
    "saliency": Method("Saliency", "any", True, True),
    "grad_cam": Method("Grad-CAM", "conv", True, True),
}


def method_name(method) -> str:
    """The METHODS key that `method` spells, case, "-", "_" and spaces aside ("gradcam",
    "Grad-CAM" and "grad_cam" are grad_cam); raises QuicknetsError naming METHODS for any other."""
    if isinstance(method, str):
        key = _spelling(method)
        for name, m in METHODS.items():
            if key in (_spelling(name), _spelling(m.title)):
                return name
    raise QuicknetsError(f"unknown attribution method {method!r}; choose from {', '.join(METHODS)}")


def _spelling(text: str) -> str:
    return "".join(c for c in text.lower() if c not in "-_ ")


def methods_for(model: nn.Module, default_only: bool = False) -> list:
    """The names of the methods that work for `model` (Grad-CAM needs a Conv2d; all but
    Occlusion need gradients, which an ONNX export does not give), in METHODS' order;
    default_only: only those offered by default."""
    conv = _last_conv(model) is not None
    gradients = _gives_gradients(model)
    return [
        name
        for name, m in METHODS.items()
        if (m.networks == "any" or conv)
        and (gradients or not m.gradients)
        and (m.default or not default_only)
    ]


def _gives_gradients(model: nn.Module) -> bool:
    """Whether the output of one black image carries a gradient back to it (an ONNX export
    run by onnxruntime, or any module that leaves torch, does not). An image the model
    refuses is left to the real call to report."""
    pre = preprocessing_of(model)
    device = next(model.parameters(), torch.empty(0)).device
    with _evaluating(model), torch.inference_mode(False), torch.enable_grad():
        x = torch.zeros(1, *pre.shape, device=device, requires_grad=True)
        try:
            return bool(model(x).requires_grad)
        except Exception:  # noqa: BLE001 -- the shape or anything else: not this question
            return True


@contextlib.contextmanager
def _evaluating(model: nn.Module):
    """The model in eval mode (dropout off, BatchNorm on its running statistics, as classify
    predicts), each module's own mode restored after: a mixed model too."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes.items():
            m.training = training


def explain(
    model: nn.Module,
    image,
    method: str = "integrated_gradients",
    target=None,
    data=None,
    scale: str = "auto",
) -> torch.Tensor:
    """The attribution map (H, W), float32 on the CPU, of one image for class `target`: how
    much each pixel moved the network's log-probability of that class, summed over the
    channels with their signs; positive speaks for the class, negative against it. Units:
    nats of log-probability for Integrated Gradients and Occlusion (IG's map sums to the change
    from a black image); Saliency and Grad-CAM are gradients, read by their ranking alone.

    image: any form classify takes (a test-set index of `data`, an image file, a tensor or
    array in any layout; classification.as_input); `scale`: what its values are ("auto",
    "pixels", "unit", "normalized"; Preprocessing.scale_of). target: a class index or name,
    default the predicted class. method: one of METHODS, spelled as you like ("gradcam" is
    grad_cam; method_name): integrated_gradients (Sundararajan et al., "Axiomatic Attribution
    for Deep Networks", ICML 2017) and occlusion (Zeiler & Fergus, "Visualizing and
    Understanding Convolutional Networks", ECCV 2014) for every network, saliency (Simonyan et
    al. 2014), grad_cam (Selvaraju et al., "Grad-CAM", ICCV 2017) for convolutional ones; all
    computed by Captum (Kokhlikyan et al. 2020, captum.ai). The module docstring says what each
    map means and what it costs. Raises QuicknetsError for an unknown method, one the network
    does not support (Grad-CAM without a conv layer: the error names those it supports), an
    unknown target, an image classify refuses, or Captum missing."""
    use_strict_math()  # before anything multiplies: the CLI's math mode, as train()
    pre = preprocessing_of(model, data)
    x = as_input(image, pre, data)  # (1, C, H, W) of its own values
    return _attribute(model, pre, pre.prepare(x, pre.scale_of(x, scale)), method, target)[0]


def explain_batch(
    model: nn.Module,
    images,
    method: str = "integrated_gradients",
    targets=None,
    scale: str = "auto",
    data=None,
) -> torch.Tensor:
    """Attribution maps (N, H, W), float32 on the CPU, of a batch of images in any form
    predict takes (classification.as_batch), one per image, for `targets`: a class index or
    name for all, one per image (a sequence or tensor of N), or None for each image's
    predicted class. `data`: its preprocessing serves a model that has none of its own.
    Errors as explain."""
    use_strict_math()  # before anything multiplies: the CLI's math mode, as train()
    pre = preprocessing_of(model, data)
    x = as_batch(images, pre)  # (N, C, H, W) of their own values
    return _attribute(model, pre, pre.prepare(x, pre.scale_of(x, scale)), method, targets)


def _attribute(model: nn.Module, pre: Preprocessing, x: torch.Tensor, method, targets):
    """Maps (N, H, W) of normalised images x (N, C, H, W) (see explain_batch)."""
    method = check_method(model, method)  # Captum installed, before the model is touched
    device = next(model.parameters(), torch.empty(0)).device
    # Captum differentiates with torch.autograd.grad: only the input's gradient is formed, so
    # the parameters' .grad stays as it was. Works inside the caller's no_grad too.
    with _evaluating(model), torch.inference_mode(False), torch.enable_grad():
        x = x.to(device).clone()  # a normal tensor, even from an inference-mode caller
        if len(x) == 0:
            return torch.empty(0, *x.shape[2:])
        targets = _targets(model, pre, x, targets)
        step = max(1, ROWS // _rows_per_image(method, x))
        maps = [
            _maps(model, pre, method, x[i : i + step], targets[i : i + step])
            for i in range(0, len(x), step)
        ]
    return torch.cat(maps).float().cpu()


def check_method(model: nn.Module, method) -> str:
    """The METHODS key `method` spells (method_name), if `model` supports it and Captum is
    installed; else the QuicknetsError that names the methods it does support (Grad-CAM needs
    a Conv2d), or says how to install Captum."""
    method = method_name(method)
    usable = methods_for(model)
    if method not in usable:
        needs = (
            "a convolutional network, and this one has no conv layer"
            if METHODS[method].networks == "conv" and _last_conv(model) is None
            else "the network's gradients, and this one gives none (an ONNX export runs "
            "outside torch)"
        )
        raise QuicknetsError(
            f"{METHODS[method].title} needs {needs}; for it choose from {', '.join(usable)}"
        )
    _captum()
    return method


def _targets(model: nn.Module, pre: Preprocessing, x: torch.Tensor, targets) -> torch.Tensor:
    """The class index (N,) each map is for: `targets` checked, or the predicted classes."""
    with torch.no_grad():  # the predicted classes, ROWS images at a time
        log_probs = torch.cat([model(x[i : i + ROWS]) for i in range(0, len(x), ROWS)])
    k = log_probs.shape[1]
    if targets is None:
        return log_probs.argmax(1)  # (N,)
    if isinstance(targets, torch.Tensor):
        targets = targets.tolist()
    if isinstance(targets, (str, int)) or not hasattr(targets, "__len__"):
        targets = [targets] * len(x)
    if len(targets) != len(x):
        raise QuicknetsError(f"{len(targets)} targets for {len(x)} images")
    return torch.tensor([_class_index(t, pre, k) for t in targets], device=x.device)


def _class_index(target, pre: Preprocessing, k: int) -> int:
    if isinstance(target, str):
        if target not in pre.classes:
            known = (
                f"the classes: {', '.join(pre.classes)}"
                if pre.classes
                else ("the model has no class names: give a class index")
            )
            raise QuicknetsError(f"unknown class {target!r}; {known}")
        return list(pre.classes).index(target)
    try:
        index = operator.index(target)  # int, NumPy or 0-d tensor integers; not 1.0
    except TypeError:
        index = None
    if isinstance(target, bool) or index is None or not 0 <= index < k:
        raise QuicknetsError(
            f"a target is a class index 0..{k - 1} or a class name, not {target!r}"
        )
    return index


def _rows_per_image(method: str, x: torch.Tensor) -> int:
    """Images one image becomes inside the method, to keep a forward pass near ROWS rows."""
    if method == "integrated_gradients":
        return IG_STEPS
    if method == "occlusion":
        return _occlusion_positions(x.shape[2]) * _occlusion_positions(x.shape[3])
    return 1


def _occlusion_positions(side: int) -> int:
    """Squares along one side, as Captum slides them (the last one may overhang)."""
    return math.ceil(max(0, side - OCCLUSION_WINDOW) / OCCLUSION_STRIDE) + 1


def _maps(model: nn.Module, pre: Preprocessing, method: str, x: torch.Tensor, targets):
    """Maps (n, H, W) of normalised images x (n, C, H, W) for class indices targets (n,)."""
    captum_attr = _captum()
    if method == "grad_cam":
        return _grad_cam(model, captum_attr.LayerGradCam(model, _last_conv(model)), x, targets)
    black = _black(pre, x)  # (1, C, 1, 1): pixel 0, normalised, broadcast over the image
    if method == "integrated_gradients":
        attr = captum_attr.IntegratedGradients(model).attribute(
            x, baselines=black, target=targets, n_steps=IG_STEPS
        )
    elif method == "occlusion":
        c = x.shape[1]
        n_windows = _rows_per_image(method, x)
        attr = captum_attr.Occlusion(model).attribute(
            x,
            sliding_window_shapes=(c, OCCLUSION_WINDOW, OCCLUSION_WINDOW),
            strides=(c, OCCLUSION_STRIDE, OCCLUSION_STRIDE),
            baselines=black,
            target=targets,
            perturbations_per_eval=max(1, min(n_windows, ROWS // len(x))),
        )
    else:  # the input needs its gradient (Captum warns when it sets requires_grad itself)
        attr = captum_attr.Saliency(model).attribute(x.requires_grad_(), target=targets, abs=True)
    return attr.detach().sum(1)  # (n, C, H, W) -> (n, H, W), channels with their signs


def _captum():
    """captum.attr, imported only here, or the one error line that says how to install it."""
    try:
        import captum.attr
    except ImportError:
        raise QuicknetsError(
            "attribution maps need Captum, an optional extra: pip install 'quicknets[explain]'"
        ) from None
    return captum.attr


def _black(pre: Preprocessing, x: torch.Tensor) -> torch.Tensor:
    """A black image as the model sees it: (0 - mean) / std per channel, (1, C, 1, 1)."""
    c = x.shape[1]
    mean = torch.tensor(pre.mean * (c if len(pre.mean) == 1 else 1), device=x.device)
    std = torch.tensor(pre.std * (c if len(pre.std) == 1 else 1), device=x.device)
    return (-mean / std).reshape(1, c, 1, 1).to(x.dtype)


def _grad_cam(model: nn.Module, cam, x: torch.Tensor, targets: torch.Tensor):
    """Grad-CAM (n, H, W): the last conv layer's map, ReLU'd, upsampled to the image."""
    maps = cam.attribute(x, target=targets, relu_attributions=True).detach()  # (n, 1, h, w)
    if len(maps) == 2 * len(x):  # flip_tta: the images, then their mirror images
        maps = (maps[: len(x)] + maps[len(x) :].flip(-1)) / 2
    return _captum().LayerAttribution.interpolate(maps, tuple(x.shape[2:]), "bilinear")[:, 0]


def _last_conv(model: nn.Module):
    """The last nn.Conv2d in the model's modules (the last applied, in a Sequential), or None."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None
