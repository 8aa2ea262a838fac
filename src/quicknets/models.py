"""Networks from compact specs: the notebook's MLP, a small CNN family, and named presets.

    model = network("784-256-128-64-10")               # the notebook's nn.Sequential + LogSoftmax
    model = network([784, 256, 10], activation="gelu", dropout=0.2, batchnorm=True)
    model = network("conv32-conv64-fc128")             # 3x3 conv + pool blocks, then dense layers
    model = network("cnn")                             # a named preset, see PRESETS
    model = network("res64-res128-res256")             # conv+pool blocks, each with a residual
    print(summary(model))

Every network ends in LogSoftmax (outputs are log-probabilities, for NLLLoss) and takes images
as (B, 1, 28, 28) or flat (B, 784). `model.config` holds the keyword arguments that rebuild it.
"""
import math
import re
from collections import OrderedDict

import torch
from torch import nn

from quicknets.errors import QuicknetsError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
               "elu": nn.ELU, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU}

# name -> spec. Presets are plain specs, so every command that takes a spec takes a name.
PRESETS = {
    "mlp": "784-256-128-64-10",          # the notebook's network
    "cnn": "conv32-conv64-fc128",        # two conv/pool blocks: ~0.91-0.92 in a few epochs
    "cnn-wide": "conv64-conv128-conv256-fc256",
    "resnet": "res64-res128-res256",    # the `best` preset's network (airbench-style blocks)
}


class Network(nn.Sequential):
    """An nn.Sequential that remembers the arguments it was built from (`config`)."""

    def __init__(self, layers, config: dict | None = None):
        if isinstance(layers, OrderedDict):  # nn.Sequential builds slices (model[:4]) this way
            super().__init__(layers)
        else:
            super().__init__(*layers)
        self.config = dict(config or {})  # empty for a slice: it was not built from a spec


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise QuicknetsError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def parse_sizes(spec) -> list | None:
    """'784-256-10' or [784, 256, 10] -> [784, 256, 10]; None when spec is not a list of sizes."""
    if isinstance(spec, (list, tuple)):
        parts = list(spec)
    elif isinstance(spec, str) and re.fullmatch(r"\s*\d+(\s*-\s*\d+)*\s*", spec):
        parts = spec.split("-")
    else:
        return None
    try:
        return [int(p) for p in parts]
    except (TypeError, ValueError):
        raise QuicknetsError(f"layer sizes must be whole numbers, got {spec!r}") from None


def mlp(sizes: list, activation="relu", dropout=0.0, batchnorm=False,
        in_features=784, num_classes=10) -> list:
    """Flatten, then Linear(+BatchNorm)+activation(+Dropout) per hidden size, Linear, LogSoftmax."""
    if len(sizes) < 2:
        raise QuicknetsError(f"a layer spec needs at least two sizes (input and output), got {sizes}")
    if any(s <= 0 for s in sizes):
        raise QuicknetsError(f"layer sizes must be positive, got {sizes}")
    if sizes[0] != in_features:
        raise QuicknetsError(f"the first size must be the input size {in_features} "
                             f"(28x28 images), got {sizes[0]}")
    if sizes[-1] != num_classes:
        raise QuicknetsError(f"the last size must be the number of classes {num_classes}, "
                             f"got {sizes[-1]}")
    layers = [nn.Flatten()]  # (B, 1, 28, 28) or (B, 784) -> (B, 784)
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        layers.append(nn.Linear(n_in, n_out))
        if batchnorm:
            layers.append(nn.BatchNorm1d(n_out))
        layers.append(_activation(activation))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(sizes[-2], sizes[-1]), nn.LogSoftmax(dim=1)]
    return layers


def resnet(tokens: list, activation="relu", dropout=0.0, batchnorm=True,
           in_features=784, num_classes=10) -> list:
    """resN: 3x3 conv to N channels + BatchNorm + activation + 2x2 max-pool, then a residual
    pair of the same (x + f(f(x))), as in the speed-run records' ResNet-style nets. BatchNorm is
    always on; `batchnorm` is accepted for a uniform call. Ends in a global max-pool, a dense
    layer (scaled down, as airbench does) and LogSoftmax."""
    side = int(round(in_features ** 0.5))
    if side * side != in_features:
        raise QuicknetsError(f"a ResNet needs square images; input size {in_features} is not")
    layers, channels = [_Image(side)], 1
    for token in tokens:
        m = re.fullmatch(r"res(\d+)", token)
        if not m or int(m.group(1)) <= 0:
            raise QuicknetsError(f"unknown layer {token!r} in a ResNet spec: use resN blocks, "
                                 "e.g. res64-res128-res256")
        if side < 2:
            raise QuicknetsError(f"too many res blocks: the image is {side}x{side} before "
                                 f"{token!r}, and each block halves it")
        n = int(m.group(1))
        layers += [*_conv_bn(channels, n, activation), nn.MaxPool2d(2),
                   _Residual(nn.Sequential(*_conv_bn(n, n, activation),
                                           *_conv_bn(n, n, activation)))]
        channels, side = n, side // 2  # (B, n, side/2, side/2)
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]  # (B, C, h, w) -> (B, C)
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers += [_Scale(nn.Linear(channels, num_classes, bias=False), 0.125), nn.LogSoftmax(dim=1)]
    return layers


def _conv_bn(n_in: int, n_out: int, activation: str) -> list:
    return [nn.Conv2d(n_in, n_out, 3, padding=1, bias=False), nn.BatchNorm2d(n_out),
            _activation(activation)]


class _Residual(nn.Module):
    """x + body(x): the skip connection of a ResNet block."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


class _FlipPair(nn.Module):
    """Eval mode: (B, C, H, W) -> (2B, C, H, W), the images then their mirror images."""

    def forward(self, x):
        return torch.cat([x, x.flip(-1)]) if not self.training else x


class _MeanPair(nn.Module):
    """Eval mode: log-probabilities (2B, K) -> (B, K), the log of each pair's mean probability."""

    def forward(self, log_probs):
        if self.training:
            return log_probs
        pair = log_probs.reshape(2, -1, log_probs.shape[-1])  # (2, B, K)
        return torch.logsumexp(pair, 0) - math.log(2.0)


class _Scale(nn.Module):
    """inner(x) * scale: airbench scales its final logits down (x 1/8) for calmer early steps."""

    def __init__(self, inner: nn.Module, scale: float):
        super().__init__()
        self.inner, self.scale = inner, scale

    def forward(self, x):
        return self.inner(x) * self.scale


def cnn(tokens: list, activation="relu", dropout=0.0, batchnorm=False,
        in_features=784, num_classes=10) -> list:
    """convN: 3x3 conv with N channels (+BatchNorm), activation, 2x2 max-pool; fcN: dense layer."""
    side = int(round(in_features ** 0.5))  # images are square: 784 -> 28
    channels, layers, flat = 1, [], None
    if side * side != in_features:
        raise QuicknetsError(f"a CNN needs square images; input size {in_features} is not")
    for token in tokens:
        m = re.fullmatch(r"(conv|fc)(\d+)", token)
        if not m:
            raise QuicknetsError(f"unknown layer {token!r}: use convN (3x3 conv + pool) or fcN "
                                 "(dense), e.g. conv32-conv64-fc128")
        kind, n = m.group(1), int(m.group(2))
        if n <= 0:
            raise QuicknetsError(f"layer {token!r} needs a positive size")
        if kind == "conv":
            if flat is not None:
                raise QuicknetsError(f"{token!r} comes after a dense layer; put convs first")
            if side < 2:
                raise QuicknetsError(f"too many conv layers: the image is {side}x{side} before "
                                     f"{token!r}, and each conv layer halves it")
            layers.append(nn.Conv2d(channels, n, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(n))
            layers += [_activation(activation), nn.MaxPool2d(2)]
            channels, side = n, side // 2  # (B, n, side/2, side/2)
        else:
            if flat is None:
                layers.append(nn.Flatten())  # (B, C, H, W) -> (B, C*H*W)
                flat = channels * side * side
            layers += [nn.Linear(flat, n), _activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            flat = n
    if flat is None:
        layers.append(nn.Flatten())
        flat = channels * side * side
    layers += [nn.Linear(flat, num_classes), nn.LogSoftmax(dim=1)]
    return [_Image(int(round(in_features ** 0.5)))] + layers


class _Image(nn.Module):
    """(B, 784) or (B, 1, 28, 28) -> (B, 1, 28, 28): lets a CNN take the MLP's flat input too."""

    def __init__(self, side: int):
        super().__init__()
        self.side = side

    def forward(self, x):
        return x.reshape(x.shape[0], 1, self.side, self.side)


def network(spec="784-256-128-64-10", activation="relu", dropout=0.0, batchnorm=False,
            in_features=784, num_classes=10, flip_tta=False) -> Network:
    """Build a network from a spec string, a list of sizes, or a preset name (see PRESETS).

    flip_tta: in eval mode, a conv network averages its prediction over each image and its
    mirror image (test-time augmentation, for nets trained with flips); training is unchanged.
    """
    if flip_tta:
        model = network(spec, activation, dropout, batchnorm, in_features, num_classes)
        if not isinstance(model[0], _Image):
            raise QuicknetsError("flip_tta needs a conv network (convN or resN layers): an MLP "
                                 "sees no image to mirror")
        model = Network([model[0], _FlipPair(), *list(model)[1:], _MeanPair()], model.config)
        model.config["flip_tta"] = True
        return model
    if not 0.0 <= dropout < 1.0:
        raise QuicknetsError(f"dropout must be in [0, 1), not {dropout}")
    _activation(activation)  # fail on a bad name before anything else
    config = {"spec": spec if isinstance(spec, str) else "-".join(str(s) for s in spec),
              "activation": activation, "dropout": dropout, "batchnorm": batchnorm,
              "in_features": in_features, "num_classes": num_classes}
    resolved = PRESETS.get(spec, spec) if isinstance(spec, str) else spec
    sizes = parse_sizes(resolved)
    kwargs = dict(activation=activation, dropout=dropout, batchnorm=batchnorm,
                  in_features=in_features, num_classes=num_classes)
    if sizes is not None:
        return Network(mlp(sizes, **kwargs), config)
    if not isinstance(resolved, str) or not resolved.strip():
        raise QuicknetsError(f"cannot read the network spec {spec!r}")
    tokens = [t.strip().lower() for t in resolved.split("-")]
    if re.fullmatch(r"res\d+", tokens[0]):
        return Network(resnet(tokens, **kwargs), config)
    if not tokens[0].startswith(("conv", "fc")):
        raise QuicknetsError(f"unknown network {spec!r}: give sizes like 784-256-10, layers like "
                             f"conv32-conv64-fc128 or res64-res128, or a preset: "
                             f"{', '.join(PRESETS)}")
    return Network(cnn(tokens, **kwargs), config)


def summary(model: nn.Module, input_shape=(1, 1, 28, 28)) -> str:
    """A table of the model's layers, their output shapes and parameter counts."""
    rows, hooks = [], []
    for name, module in model.named_modules():
        if list(module.children()):
            continue  # containers: their leaves are listed

        def hook(mod, inp, out, name=name):
            n = sum(p.numel() for p in mod.parameters(recurse=False))
            rows.append((name, type(mod).__name__, tuple(out.shape), n))
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines = [f"{'layer':<8} {'type':<14} {'output shape':<20} {'params':>10}"]
    lines += [f"{n:<8} {t:<14} {str(s):<20} {p:>10,}" for n, t, s, p in rows]
    lines.append(f"total params: {total:,} (trainable {trainable:,})")
    return "\n".join(lines)
