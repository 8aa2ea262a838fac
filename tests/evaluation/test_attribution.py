"""Attribution maps: each method against a reference made by hand, shapes, targets, errors, the
model left as found, and Adebayo et al.'s model-randomisation check on trained networks."""

import copy
import dataclasses
import re
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import need
from quicknets.base.errors import QuicknetsError
from quicknets.data.preprocessing import Preprocessing
from quicknets.evaluation.attribution import (
    METHODS,
    OCCLUSION_STRIDE,
    OCCLUSION_WINDOW,
    explain,
    explain_batch,
    method_name,
    methods_for,
)
from quicknets.networks.models import network

CLASSES = tuple(f"class {i}" for i in range(10))
GRAY = Preprocessing(classes=CLASSES)
# Per-channel statistics: a black image is a different value in each channel
RGB = Preprocessing((3, 32, 32), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), CLASSES, "", "resize")
SPECS = {"mlp": "784-256-128-64-10", "cnn": "conv8-fc32"}  # the default MLP; the smallest CNN


def untrained(spec: str, pre: Preprocessing = GRAY, **kwargs) -> nn.Module:
    model = network(spec, input_shape=pre.shape, **kwargs)
    model.preprocessing = pre
    return model


def images(pre: Preprocessing, n: int, seed: int = 0) -> torch.Tensor:
    """uint8 (n, C, H, W): noise under three black rows, so black pixels are there to check."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *pre.shape), generator=g, dtype=torch.uint8)
    x[..., :3, :] = 0
    return x


def log_probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def last_conv(model: nn.Module) -> nn.Conv2d:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]


_TRAINED = {}


def trained(kind: str, fashion) -> nn.Module:
    """The default MLP or the smallest CNN, one epoch on 20,000 Fashion-MNIST training images
    (each test file trains them once)."""
    if kind not in _TRAINED:
        from quicknets.training.loop import train

        small = dataclasses.replace(
            fashion,
            train_images=fashion.train_images[:20000],
            train_labels=fashion.train_labels[:20000],
        )
        model = network(SPECS[kind])
        train(model, small, epochs=1, quiet=True, threads=1)
        _TRAINED[kind] = model
    return _TRAINED[kind]


# --- what each method computes, against references made by hand -----------------------------


def test_integrated_gradients_sums_to_the_change_from_black(fashion):
    model = trained("mlp", fashion)
    pre = model.preprocessing
    x = fashion.test_images[:20]
    heat = explain_batch(model, x)  # each image's predicted class
    targets = log_probs(model, pre.normalize(x)).argmax(1)
    change = log_probs(model, pre.normalize(x)) - log_probs(model, pre.normalize(x * 0))
    # Completeness (Sundararajan et al.), within the 5% of the change they ask of the integral
    # (50 Gauss-Legendre points: 0.6% median, 6.6% at worst on 100 Fashion-MNIST test images)
    assert heat.double().sum((1, 2)).tolist() == pytest.approx(
        change[range(20), targets].tolist(), rel=0.05
    )
    assert (heat[x == 0] == 0).all()  # black pixels: image - baseline is 0


def test_integrated_gradients_start_from_black_in_every_channel():
    model = untrained("fc32", RGB)  # per-channel statistics: black differs per channel
    x = images(RGB, 3)
    heat = explain_batch(model, x, targets=[0, 4, 9])
    assert heat.shape == (3, 32, 32)
    assert (heat[(x == 0).all(1)] == 0).all() and (
        heat[~(x == 0).all(1)] != 0
    ).float().mean() > 0.99
    change = log_probs(model, RGB.normalize(x)) - log_probs(model, RGB.normalize(x * 0))
    largest = float(change.abs().max())  # an untrained network's changes are near 0
    assert heat.double().sum((1, 2)).tolist() == pytest.approx(
        change[[0, 1, 2], [0, 4, 9]].tolist(), abs=0.05 * largest
    )


def test_saliency_is_the_absolute_gradient_summed_over_channels():
    model = untrained("conv8-fc32", RGB)
    x = RGB.normalize(images(RGB, 1)).requires_grad_()
    (grad,) = torch.autograd.grad(model.eval()(x)[0, 3], x)
    heat = explain(model, x.detach(), "saliency", target=3, scale="normalized")
    torch.testing.assert_close(heat, grad[0].abs().sum(0))


@pytest.mark.parametrize("pre", [GRAY, RGB], ids=["gray", "rgb"])
def test_occlusion_averages_the_drop_under_each_black_square(pre):
    model = untrained("784-32-10" if pre is GRAY else "fc16", pre)
    raw = images(pre, 1)
    x = pre.normalize(raw)
    black = pre.normalize(raw * 0)
    target = 2
    full = log_probs(model, x)[0, target]
    total, count = torch.zeros(pre.shape[1:]), torch.zeros(pre.shape[1:])
    h, w = pre.shape[1:]
    for top in range(0, h - OCCLUSION_WINDOW + 1, OCCLUSION_STRIDE):
        for left in range(0, w - OCCLUSION_WINDOW + 1, OCCLUSION_STRIDE):
            square = (..., slice(top, top + OCCLUSION_WINDOW), slice(left, left + OCCLUSION_WINDOW))
            occluded = x.clone()
            occluded[square] = black[square]
            total[square[1:]] += full - log_probs(model, occluded)[0, target]
            count[square[1:]] += 1
    assert count.min() >= 1  # the squares cover the image: 28x28 and 32x32 exactly
    heat = explain(model, raw[0], "occlusion", target=target)
    # each pixel's drop is counted once per channel, as Captum sums the channels' maps
    torch.testing.assert_close(heat, pre.shape[0] * total / count, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("flip_tta", [False, True])
def test_grad_cam_is_the_last_conv_layers_weighted_map_upsampled(flip_tta):
    model = untrained("conv4-conv8-fc16", GRAY)
    model.eval()
    x = GRAY.normalize(images(GRAY, 1))
    acts = []
    hook = last_conv(model).register_forward_hook(lambda m, i, out: acts.append(out))
    (grad,) = torch.autograd.grad(model(x)[0, 5], acts)
    hook.remove()
    weights = grad.mean((2, 3), keepdim=True)  # (1, 8, 1, 1): the mean gradient per channel
    cam = F.relu((weights * acts[0]).sum(1, keepdim=True))  # (1, 1, 14, 14)
    reference = F.interpolate(cam, size=(28, 28), mode="bilinear")[0, 0]
    if not flip_tta:
        torch.testing.assert_close(explain(model, x, "grad_cam", 5, scale="normalized"), reference)
        return
    tta = untrained("conv4-conv8-fc16", GRAY, flip_tta=True)  # the same weights (seed 0)
    heat = explain(tta, x, "grad_cam", target=5, scale="normalized")
    mirrored = explain(tta, x.flip(-1), "grad_cam", target=5, scale="normalized")
    torch.testing.assert_close(heat, mirrored.flip(-1))  # TTA's prediction does not see a flip
    assert not torch.allclose(heat, reference)  # both halves count, not only the first


# --- shapes, targets, determinism, errors, the model left as found ----------------------------


@pytest.mark.parametrize(
    "spec, pre",
    [("784-16-10", GRAY), ("conv4-fc16", GRAY), ("fc16", RGB), ("conv4-conv8-fc16", RGB)],
)
def test_each_method_gives_one_map_of_the_images_size(spec, pre):
    model = untrained(spec, pre)
    expected = (
        list(METHODS) if "conv" in spec else ["integrated_gradients", "occlusion", "saliency"]
    )
    assert methods_for(model) == expected
    x = images(pre, 2)
    for method in methods_for(model):
        heat = explain(model, x[0], method)
        assert heat.shape == pre.shape[1:] and heat.dtype == torch.float32
        assert torch.isfinite(heat).all() and heat.abs().sum() > 0, method
        batch = explain_batch(model, x, method)
        assert batch.shape == (2, *pre.shape[1:])
        torch.testing.assert_close(batch[0], heat, atol=1e-5, rtol=1e-4)
        assert torch.equal(explain(model, x[0], method), heat)  # the same bits every time
        if method in ("saliency", "grad_cam"):
            assert heat.min() >= 0, method


def test_the_target_is_the_predicted_class_unless_named():
    model = untrained("784-16-10")
    x = images(GRAY, 1)[0]
    predicted = int(log_probs(model, GRAY.normalize(x[None])).argmax())
    other = (predicted + 1) % 10
    heat = explain(model, x, "saliency")
    assert torch.equal(heat, explain(model, x, "saliency", target=predicted))
    assert torch.equal(
        explain(model, x, "saliency", target=CLASSES[other]),
        explain(model, x, "saliency", target=np.int64(other)),
    )
    assert not torch.allclose(heat, explain(model, x, "saliency", target=other))
    x4 = images(GRAY, 4)
    torch.testing.assert_close(
        explain_batch(model, x4, "saliency", targets=torch.tensor([1, 2, 3, 4]))[2],
        explain(model, x4[2], "saliency", target=3),
    )
    for bad, match in [
        (10, "0..9"),
        (-1, "0..9"),
        (1.0, "class index"),
        (True, "class index"),
        ("Sandal", "unknown class 'Sandal'"),
    ]:
        with pytest.raises(QuicknetsError, match=match):
            explain(model, x, "saliency", target=bad)
    with pytest.raises(QuicknetsError, match="3 targets for 4 images"):
        explain_batch(model, x4, "saliency", targets=[1, 2, 3])


def test_a_method_the_network_lacks_is_one_error_naming_those_it_has(fashion):
    mlp = network("784-16-10")  # untrained: it takes the data's preprocessing
    for spelling in ("grad_cam", "gradcam", "Grad-CAM", "GRAD CAM"):  # one method, any spelling
        with pytest.raises(
            QuicknetsError,
            match="^Grad-CAM needs a convolutional network, and this one has no conv layer; "
            "for it choose from integrated_gradients, occlusion, saliency$",
        ):
            explain(mlp, 0, spelling, data=fashion)
    for bad in ("lime", "grad-cam++", "integrated", "", None, 3):
        with pytest.raises(
            QuicknetsError,
            match=f"^unknown attribution method {re.escape(repr(bad))}; choose from "
            "integrated_gradients, occlusion, saliency, grad_cam$",
        ):
            explain(mlp, 0, bad, data=fashion)
    assert [method_name(m) for m in ("Integrated-Gradients", "OCCLUSION", "Saliency")] == [
        "integrated_gradients",
        "occlusion",
        "saliency",
    ]
    heat = explain(mlp, 0, "integrated gradients", data=fashion)
    assert torch.equal(heat, explain(mlp, 0, data=fashion))
    with pytest.raises(QuicknetsError, match=r"laid out \(1, 28, 28\).*not \(3, 32, 32\)"):
        explain(mlp, torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(QuicknetsError, match="needs the dataset"):
        explain(mlp, 0)
    assert explain_batch(mlp, torch.zeros(0, 28, 28, dtype=torch.uint8)).shape == (0, 28, 28)


class LeavesTorch(nn.Module):
    """A network run outside torch, as onnxruntime runs an ONNX export: no gradient."""

    def __init__(self, spec: str, pre: Preprocessing):
        super().__init__()
        self.net, self.preprocessing = untrained(spec, pre), pre

    def forward(self, x):
        return torch.from_numpy(self.net(x).detach().numpy())


@pytest.mark.parametrize("spec, pre", [("784-16-10", GRAY), ("conv4-fc16", RGB)])
def test_a_network_without_gradients_offers_occlusion_alone(spec, pre):
    model = LeavesTorch(spec, pre)
    model.train()
    assert methods_for(model) == ["occlusion"]
    assert model.training and model.net.training  # the probe put each mode back
    x = images(pre, 1)[0]
    torch.testing.assert_close(explain(model, x, "occlusion"), explain(model.net, x, "occlusion"))
    for method in ("integrated_gradients", "saliency"):
        with pytest.raises(
            QuicknetsError,
            match=f"^{METHODS[method].title} needs the network's gradients, and this one gives "
            r"none \(an ONNX export runs outside torch\); for it choose from occlusion$",
        ):
            explain(model, x, method)
    assert methods_for(untrained(spec, pre)) != ["occlusion"]  # the same network in torch


def test_without_captum_it_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "captum.attr", None)  # import captum.attr fails
    model = untrained("784-16-10")
    model.train()
    with pytest.raises(QuicknetsError, match=r"pip install 'quicknets\[explain\]'"):
        explain(model, images(GRAY, 1)[0])
    assert model.training


@pytest.mark.parametrize("method", list(METHODS))
def test_the_model_is_left_as_found(method):
    model = untrained("conv4-fc16", GRAY, dropout=0.5, batchnorm=True)
    model.train()
    model[-2].eval()  # a mixed model: each module gets its own mode back
    modes = [m.training for m in model.modules()]
    state = copy.deepcopy(model.state_dict())
    x = images(GRAY, 2)
    heat = explain_batch(model, x, method)
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # BN stats too
    model.eval()
    torch.testing.assert_close(explain_batch(model, x, method), heat)  # dropout was off
    with torch.inference_mode():  # a caller's no-grad context does not stop it
        torch.testing.assert_close(explain_batch(model, x, method), heat)
    assert all(p.grad is None for p in model.parameters())


# --- Adebayo et al.'s model-randomisation check ----------------------------------------------


def randomised(model: nn.Module) -> nn.Module:
    """The same network with every layer's weights drawn afresh (seed 1): Adebayo's full
    randomisation of all layers at once."""
    other = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for m in other.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return other


def rank_correlations(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Spearman's rho between maps a[i] and b[i] over their pixels. A constant map (Grad-CAM's
    ReLU can leave all zeros) ranks nothing: 0 against a varying map, 1 against a constant."""
    stats = need("scipy.stats")
    rho = []
    for x, y in zip(a.flatten(1).numpy(), b.flatten(1).numpy()):
        if x.std() == 0 or y.std() == 0:
            rho.append(float(x.std() == y.std() == 0))
        else:
            rho.append(stats.spearmanr(x, y).statistic)
    return np.array(rho)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_maps_change_when_the_weights_are_randomised(kind, fashion):
    model = trained(kind, fashion)
    accuracy = (
        (
            log_probs(model, GRAY.normalize(fashion.test_images[:1000])).argmax(1)
            == fashion.test_labels[:1000]
        )
        .float()
        .mean()
    )
    assert accuracy > 0.7  # it learned: its maps have something to show
    x = fashion.test_images[:100]
    random = randomised(model)
    targets = log_probs(model, GRAY.normalize(x)).argmax(1)  # the same question to both
    found, maps = {}, {}
    for method in methods_for(model, default_only=True):
        maps[method] = (
            explain_batch(model, x, method, targets),
            explain_batch(random, x, method, targets),
        )
        rho = rank_correlations(*maps[method])
        found[method] = (float(np.median(rho)), float(rho.mean()))
    assert all(median < 0.5 for median, _ in found.values()), found  # (median, mean) per method
    # The check can fail: as absolute values, IG's and Occlusion's maps share the garment's
    # outline (every black pixel is 0 for both networks, image - baseline being 0 there)
    for method in ("integrated_gradients", "occlusion"):
        rho = rank_correlations(*(m.abs() for m in maps[method]))
        assert np.median(rho) > 0.5, (method, np.median(rho))
