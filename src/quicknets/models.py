"""Networks from compact specs: the notebook's MLP, a small CNN family, and named presets.

    model = network("784-256-128-64-10")               # the notebook's nn.Sequential + LogSoftmax
    model = network([784, 256, 10], activation="gelu", dropout=0.2, batchnorm=True)
    model = network("conv32-conv64-fc128")             # 3x3 conv + pool blocks, then dense layers
    model = network("cnn")                             # a named preset, see PRESETS
    print(summary(model))

Every network ends in LogSoftmax (outputs are log-probabilities, for NLLLoss) and takes images
as (B, 1, 28, 28) or flat (B, 784). `model.config` holds the keyword arguments that rebuild it.
"""
import re

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
}


class Network(nn.Sequential):
    """An nn.Sequential that remembers the arguments it was built from (`config`)."""

    def __init__(self, layers, config: dict):
        super().__init__(*layers)
        self.config = dict(config)


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
            in_features=784, num_classes=10) -> Network:
    """Build a network from a spec string, a list of sizes, or a preset name (see PRESETS)."""
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
    if not tokens[0].startswith(("conv", "fc")):
        raise QuicknetsError(f"unknown network {spec!r}: give sizes like 784-256-10, layers like "
                             f"conv32-conv64-fc128, or a preset: {', '.join(PRESETS)}")
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
