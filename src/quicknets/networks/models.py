"""Networks from compact specs: the notebook's MLP, a small CNN family, a ResNet, and names.

    model = network("784-256-128-64-10")               # the notebook's nn.Sequential + LogSoftmax
    model = network([784, 256, 10], activation="gelu", dropout=0.2, batchnorm=True)
    model = network("conv32-conv64-fc128")             # 3x3 conv + pool blocks, then dense layers
    model = network("convp16-convp32-fc64")            # the same, pooled before BatchNorm + ReLU
    model = network("cnn")                             # a named network, see NETWORKS
    model = network("res64-res128-res256")             # conv+pool blocks, each with a residual
    print(summary(model))

Every network ends in LogSoftmax (outputs are log-probabilities, for NLLLoss) and takes images
as (B, C, H, W) or flat (B, C*H*W), by default (B, 1, 28, 28). Its initial weights are drawn
from `seed` (0 unless given; None draws from torch's global generator), without touching the
global generator. `model.config` holds the keyword arguments that rebuild it, and
`model.preprocessing` (quicknets.data.preprocessing) what its images need, once it has been trained.
A network too large for this machine's memory is refused before any of it is allocated.
"""

import math
import re
from collections import OrderedDict
from contextlib import nullcontext

import torch
from torch import nn

from quicknets.base.errors import QuicknetsError
from quicknets.base.machine import TRAINING, use_strict_math
from quicknets.base.storage import load_refusal
from quicknets.networks.specs import NETWORKS, parse_sizes

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
}


class Network(nn.Sequential):
    """An nn.Sequential that remembers the arguments it was built from (`config`) and, once
    trained, the preprocessing its images need (`preprocessing`)."""

    def __init__(self, layers, config: dict | None = None, preprocessing=None):
        if isinstance(layers, OrderedDict):  # nn.Sequential builds slices (model[:4]) this way
            super().__init__(layers)
        else:
            super().__init__(*layers)
        self.config = dict(config or {})  # empty for a slice: it was not built from a spec
        self.preprocessing = preprocessing


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise QuicknetsError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(
    sizes: list,
    activation="relu",
    dropout=0.0,
    batchnorm=False,
    input_shape=(1, 28, 28),
    num_classes=10,
) -> list:
    """Flatten, then Linear(+BatchNorm)+activation(+Dropout) per hidden size, Linear, LogSoftmax."""
    if len(sizes) < 2:
        raise QuicknetsError(
            f"a layer spec needs at least two sizes (input and output), got {sizes}"
        )
    if any(s <= 0 for s in sizes):
        raise QuicknetsError(f"layer sizes must be positive, got {sizes}")
    c, h, w = input_shape
    if sizes[0] != c * h * w:
        raise QuicknetsError(
            f"the first size must be the input size {c * h * w} "
            f"({c}x{h}x{w} images), got {sizes[0]}"
        )
    if sizes[-1] != num_classes:
        raise QuicknetsError(
            f"the last size must be the number of classes {num_classes}, got {sizes[-1]}"
        )
    layers = [nn.Flatten()]  # (B, C, H, W) or (B, C*H*W) -> (B, C*H*W)
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        layers.append(nn.Linear(n_in, n_out))
        if batchnorm:
            layers.append(nn.BatchNorm1d(n_out))
        layers.append(_activation(activation))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(sizes[-2], sizes[-1]), nn.LogSoftmax(dim=1)]
    return layers


def resnet(
    tokens: list,
    activation="relu",
    dropout=0.0,
    batchnorm=True,
    input_shape=(1, 28, 28),
    num_classes=10,
) -> list:
    """resN: 3x3 conv to N channels + BatchNorm + activation + 2x2 max-pool, then a residual
    pair of the same (x + f(f(x))), as in the speed-run records' ResNet-style nets. BatchNorm is
    always on; `batchnorm` is accepted for a uniform call. Ends in a global max-pool, a dense
    layer (scaled down, as airbench does) and LogSoftmax."""
    channels, height, width = input_shape
    layers = [_Image(input_shape)]
    for token in tokens:
        m = re.fullmatch(r"res(\d+)", token)
        if not m or int(m.group(1)) <= 0:
            raise QuicknetsError(
                f"unknown layer {token!r} in a ResNet spec: use resN blocks, "
                "e.g. res64-res128-res256"
            )
        if min(height, width) < 2:
            raise QuicknetsError(
                f"too many res blocks: the image is {height}x{width} before "
                f"{token!r}, and each block halves it"
            )
        n = int(m.group(1))
        layers += [
            *_conv_bn(channels, n, activation),
            nn.MaxPool2d(2),
            _Residual(nn.Sequential(*_conv_bn(n, n, activation), *_conv_bn(n, n, activation))),
        ]
        channels, height, width = n, height // 2, width // 2  # (B, n, H/2, W/2)
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten()]  # (B, C, h, w) -> (B, C)
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers += [_Scale(nn.Linear(channels, num_classes, bias=False), 0.125), nn.LogSoftmax(dim=1)]
    return layers


def _conv_bn(n_in: int, n_out: int, activation: str) -> list:
    return [
        nn.Conv2d(n_in, n_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(n_out),
        _activation(activation),
    ]


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


def cnn(
    tokens: list,
    activation="relu",
    dropout=0.0,
    batchnorm=False,
    input_shape=(1, 28, 28),
    num_classes=10,
) -> list:
    """convN: 3x3 conv with N channels (+BatchNorm), activation, 2x2 max-pool; convpN: 3x3 conv,
    2x2 max-pool, (+BatchNorm), activation (airbench's order: the elementwise layers, most of a
    small net's CPU time, see a quarter of the values); fcN: dense layer."""
    channels, height, width = input_shape
    layers, flat = [], None
    for token in tokens:
        m = re.fullmatch(r"(conv|convp|fc)(\d+)", token)
        if not m:
            raise QuicknetsError(
                f"unknown layer {token!r}: use convN (3x3 conv + pool), convpN "
                "(the same, pooled first) or fcN (dense), e.g. "
                "conv32-conv64-fc128"
            )
        kind, n = m.group(1), int(m.group(2))
        if n <= 0:
            raise QuicknetsError(f"layer {token!r} needs a positive size")
        if kind in ("conv", "convp"):
            if flat is not None:
                raise QuicknetsError(f"{token!r} comes after a dense layer; put convs first")
            if min(height, width) < 2:
                raise QuicknetsError(
                    f"too many conv layers: the image is {height}x{width} before "
                    f"{token!r}, and each conv layer halves it"
                )
            conv = nn.Conv2d(channels, n, 3, padding=1, bias=not batchnorm)
            norm_act = ([nn.BatchNorm2d(n)] if batchnorm else []) + [_activation(activation)]
            if kind == "conv":
                layers += [conv, *norm_act, nn.MaxPool2d(2)]
            else:  # BatchNorm and activation on a quarter of the values (airbench's order)
                layers += [conv, nn.MaxPool2d(2), *norm_act]
            channels, height, width = n, height // 2, width // 2  # (B, n, H/2, W/2)
        else:
            if flat is None:
                layers.append(nn.Flatten())  # (B, C, H, W) -> (B, C*H*W)
                flat = channels * height * width
            layers += [nn.Linear(flat, n), _activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            flat = n
    if flat is None:
        layers.append(nn.Flatten())
        flat = channels * height * width
    layers += [nn.Linear(flat, num_classes), nn.LogSoftmax(dim=1)]
    return [_Image(input_shape)] + layers


class _Image(nn.Module):
    """(B, C*H*W) or (B, C, H, W) -> (B, C, H, W): lets a CNN take the MLP's flat input too."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


def network(
    spec="784-256-128-64-10",
    activation="relu",
    dropout=0.0,
    batchnorm=False,
    input_shape=(1, 28, 28),
    num_classes=10,
    flip_tta=False,
    seed=0,
) -> Network:
    """Build a network from a spec string, a list of sizes, or a name (see NETWORKS).

    input_shape: (channels, height, width) of one image; num_classes: outputs.
    flip_tta: in eval mode, a conv network averages its prediction over each image and its
    mirror image (test-time augmentation, for nets trained with flips); training is unchanged.
    seed: the initial weights are drawn from torch.manual_seed(seed) in a forked generator
    (the global one is left as it was); None draws them from the global generator.
    Raises QuicknetsError for a spec it cannot read, bad sizes, or a network too large for
    this machine's memory (estimated before anything is allocated).
    """
    if not isinstance(spec, (str, list, tuple)):
        raise QuicknetsError(
            f"a network spec is a string such as '784-256-10', a list of "
            f"sizes or a name ({', '.join(NETWORKS)}), not {spec!r}"
        )
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, (int, float))
        or not 0.0 <= dropout < 1.0
    ):
        raise QuicknetsError(f"dropout must be a number in [0, 1), not {dropout!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise QuicknetsError(
            f"num_classes must be a whole number of at least 2, not {num_classes!r}"
        )
    shape = tuple(input_shape)
    if len(shape) != 3 or any(
        isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape
    ):
        raise QuicknetsError(f"input_shape is (channels, height, width), not {input_shape!r}")
    _activation(activation)  # fail on a bad name before anything else
    config = {
        "network": spec if isinstance(spec, str) else "-".join(str(s) for s in spec),
        "activation": activation,
        "dropout": dropout,
        "batchnorm": batchnorm,
        "input_shape": list(shape),
        "num_classes": num_classes,
        "flip_tta": flip_tta,
    }
    check_memory(spec, activation, dropout, batchnorm, shape, num_classes)  # before allocating
    if seed is None:
        layers = _layers(spec, activation, dropout, batchnorm, shape, num_classes)
    else:
        # TRAINING: a training in another thread may be drawing dropout masks from it
        with TRAINING, torch.random.fork_rng(devices=[]):  # the caller's generator: left alone
            torch.manual_seed(seed)
            layers = _layers(spec, activation, dropout, batchnorm, shape, num_classes)
    if flip_tta:
        if not isinstance(layers[0], _Image):
            raise QuicknetsError(
                "flip_tta needs a conv network (convN or resN layers): an MLP "
                "sees no image to mirror"
            )
        layers = [layers[0], _FlipPair(), *layers[1:], _MeanPair()]
    return Network(layers, config)


def _layers(spec, activation, dropout, batchnorm, input_shape, num_classes) -> list:
    """The layers of a spec (see `network`)."""
    resolved = NETWORKS.get(spec, spec) if isinstance(spec, str) else spec
    sizes = parse_sizes(resolved)
    kwargs = dict(
        activation=activation,
        dropout=dropout,
        batchnorm=batchnorm,
        input_shape=input_shape,
        num_classes=num_classes,
    )
    if sizes is not None:
        return mlp(sizes, **kwargs)
    if not isinstance(resolved, str) or not resolved.strip():
        raise QuicknetsError(f"cannot read the network spec {spec!r}")
    tokens = [t.strip().lower() for t in resolved.split("-")]
    if re.fullmatch(r"res\d+", tokens[0]):
        return resnet(tokens, **kwargs)
    if not tokens[0].startswith(("conv", "fc")):
        raise QuicknetsError(
            f"unknown network {spec!r}: give sizes like 784-256-10, layers like "
            f"conv32-conv64-fc128 or res64-res128, or a name: "
            f"{', '.join(NETWORKS)}"
        )
    return cnn(tokens, **kwargs)


BYTES_PER_PARAMETER = 16  # fp32 weights, gradients and Adam's two moments: 4 copies x 4 bytes
BYTES_PER_ACTIVATION = 8  # each layer's fp32 output, and its gradient in the backward pass


def memory_needed(layers: list, input_shape, batch_size: int = 1) -> tuple:
    """(parameters, bytes) to train `layers` (built on the meta device) on batches of
    `batch_size`: weights, gradients and optimizer state, plus every layer's output and its
    gradient for one batch. An estimate: allocator overheads and workspaces are not counted."""
    params = sum(p.numel() for layer in layers for p in layer.parameters())
    shape, activations = tuple(input_shape), 0
    for layer in layers:
        shape, outputs = _output_shape(layer, shape)
        activations += outputs
    return params, params * BYTES_PER_PARAMETER + activations * batch_size * BYTES_PER_ACTIVATION


def _output_shape(layer: nn.Module, shape: tuple) -> tuple:
    """(shape of one image's output, values output inside the layer) by arithmetic on the
    layer kinds the builders use. (A forward pass on the meta device would do it for any layer,
    but its first use costs about 1.7 s a process.)"""
    if isinstance(layer, (nn.Sequential, _Residual)):
        outputs, inner = 0, shape
        for child in layer.body if isinstance(layer, _Residual) else layer:
            inner, n = _output_shape(child, inner)
            outputs += n
        return (shape if isinstance(layer, _Residual) else inner), outputs + math.prod(shape)
    if isinstance(layer, _Scale):
        return _output_shape(layer.inner, shape)
    if isinstance(layer, nn.Linear):
        shape = (layer.out_features,)
    elif isinstance(layer, nn.Conv2d):
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
        shape = (
            layer.out_channels,
            (shape[1] + 2 * ph - kh) // sh + 1,
            (shape[2] + 2 * pw - kw) // sw + 1,
        )
    elif isinstance(layer, nn.MaxPool2d):
        k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
        shape = (shape[0], shape[1] // k, shape[2] // k)
    elif isinstance(layer, nn.AdaptiveMaxPool2d):
        shape = (shape[0], 1, 1)
    elif isinstance(layer, nn.Flatten):
        shape = (math.prod(shape),)
    elif isinstance(layer, _Image):
        shape = layer.shape
    return shape, math.prod(shape)  # anything else keeps its input's shape


def check_memory(
    spec,
    activation="relu",
    dropout=0.0,
    batchnorm=False,
    input_shape=(1, 28, 28),
    num_classes=10,
    batch_size: int = 1,
    extra: int = 0,
) -> None:
    """Refuse a network whose training would not fit in the memory available now (`extra`
    bytes more are needed besides, e.g. the normalised training images)."""
    from quicknets.base.machine import available_memory

    with torch.device("meta"):  # shapes only: nothing is allocated
        layers = _layers(spec, activation, dropout, batchnorm, tuple(input_shape), num_classes)
        params, need = memory_needed(layers, input_shape, batch_size)
    need += extra
    have = available_memory()
    if have and need > have:
        batch = f" at batch size {batch_size}" if batch_size > 1 else ""
        raise QuicknetsError(
            f"the network ({params:,} parameters) needs about "
            f"{need / 2**30:.1f} GiB to train{batch} (weights, gradients "
            f"and optimizer state, each layer's outputs"
            f"{', the training images' if extra else ''}), and this machine "
            f"has {have / 2**30:.1f} GiB available"
        )


def from_config(config: dict, seed=None) -> Network:
    """The network a saved `model.config` describes (older files: `spec`, `in_features`)."""
    config = dict(config)
    if "spec" in config:
        config["network"] = config.pop("spec")
    if "in_features" in config:  # format 1: square grey images of in_features pixels
        side = int(round(config.pop("in_features") ** 0.5))
        config["input_shape"] = [1, side, side]
    return network(config.pop("network"), **config, seed=seed)


# What layer_table counts from shapes alone: a network built only of these module types gets
# each Linear's and Conv2d's FLOPs from its shapes (torch.utils.flop_counter's formulas), and 0
# for the others, which do no matrix product or convolution (as FlopCounterMode counts them).
# Why: FlopCounterMode's dispatch mode imports torch._dynamo at its first operation, and
# flop_counter itself costs 0.25 s to import (`quicknets train` prints the FLOPs before training:
# 1.3-2 s of CPU in all; benchmarks/README.md, issue 22 part 5). The tests compare the two.
_BY_SHAPE = (nn.Linear, nn.Conv2d)
_NO_PRODUCTS = (
    *ACTIVATIONS.values(),
    nn.Sequential,
    nn.Flatten,
    nn.Dropout,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.MaxPool2d,
    nn.AdaptiveMaxPool2d,
    nn.LogSoftmax,
)  # and this module's own: Network, _Residual, _Scale, _FlipPair, _MeanPair, _Image


def _shape_flops(module: nn.Module, out: torch.Tensor) -> int:
    """FLOPs of one call of `module` from its output's shape, as torch.utils.flop_counter counts
    them (2 per multiply-add, bias not counted): a Linear multiplies each row of its output
    (B, out) by in_features weights, a Conv2d each output value (B, C_out, H, W) by
    C_in / groups x kernel-height x kernel-width; 0 for anything else (_NO_PRODUCTS)."""
    if type(module) is nn.Linear:
        return 2 * out.numel() * module.in_features
    if type(module) is nn.Conv2d:
        return 2 * out.numel() * math.prod(module.weight.shape[1:])  # (C_out, C_in/g, kh, kw)
    return 0


def _counted_by_shape(model: nn.Module) -> bool:
    """Whether every module of `model` is of a type _shape_flops counts exactly."""
    own = (Network, _Residual, _Scale, _FlipPair, _MeanPair, _Image)
    return all(type(m) in _BY_SHAPE + _NO_PRODUCTS + own for m in model.modules())


def layer_table(model: nn.Module, input_shape=None, by_shape: bool | None = None) -> list:
    """One row per leaf layer for one input of `input_shape` (B, C, H, W) (default: one image of
    the network's own shape): {layer, type, output shape, params, flops}. FLOPs are torch's own
    count (torch.utils.flop_counter): 2 per multiply-add of the matrix products and
    convolutions, which is nearly all the work; other layers count 0. `by_shape` (None: where
    every module is of a kind quicknets builds) takes them from each layer's shapes with
    flop_counter's formulas instead of running FlopCounterMode, which imports torch._dynamo
    (1.3-2 s of CPU); both give the same numbers."""
    from quicknets.base.machine import use_strict_math

    use_strict_math()  # a forward pass: MKL's mode is fixed by its first product (train's)
    if input_shape is None:
        input_shape = (1, *getattr(model, "config", {}).get("input_shape", (1, 28, 28)))
    if by_shape is None:
        by_shape = _counted_by_shape(model)
    rows, hooks = [], []
    for name, module in model.named_modules():
        if list(module.children()):
            continue  # containers: their leaves are listed

        def hook(mod, inp, out, name=name):
            n = sum(p.numel() for p in mod.parameters(recurse=False))
            rows.append(
                {
                    "layer": name,
                    "type": type(mod).__name__,
                    "output shape": tuple(out.shape),
                    "params": n,
                    "flops": _shape_flops(mod, out) if by_shape else 0,
                }
            )

        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    counter = None
    if not by_shape:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter or nullcontext():
            model(torch.zeros(input_shape, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if counter is not None:
        counts = counter.get_flop_counts()  # keyed "<class>.<module name>", parents included
        for row in rows:
            row["flops"] = sum(counts.get(f"{type(model).__name__}.{row['layer']}", {}).values())
    return rows


def summary(model: nn.Module, input_shape=None) -> str:
    """A table of the model's layers: output shapes, parameters and FLOPs (layer_table), and the
    totals. FLOPs are for the forward pass of one input of `input_shape` (default: one image)."""
    rows = layer_table(model, input_shape)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flops = sum(row["flops"] for row in rows)
    images = rows[0]["output shape"][0] if rows else 1
    w = max([5] + [len(r["layer"]) for r in rows])  # ResNet blocks: "10.body.0"
    t = max([4] + [len(r["type"]) for r in rows])
    lines = [f"{'layer':<{w}} {'type':<{t}} {'output shape':<20} {'params':>10} {'FLOPs':>12}"]
    lines += [
        f"{r['layer']:<{w}} {r['type']:<{t}} {str(r['output shape']):<20} "
        f"{r['params']:>10,} {r['flops']:>12,}"
        for r in rows
    ]
    lines.append(f"total params: {total:,} (trainable {trainable:,})")
    lines.append(
        f"total FLOPs: {flops:,} per forward pass of {images} image(s) "
        "(torch.utils.flop_counter: 2 per multiply-add)"
    )
    return "\n".join(lines)


def totals(model: nn.Module) -> tuple:
    """(parameters, forward FLOPs for one image): what `quicknets train` prints."""
    return (
        sum(p.numel() for p in model.parameters()),
        sum(row["flops"] for row in layer_table(model)),
    )


@torch.no_grad()
def log_probabilities(model: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Log-probabilities (N, classes) for normalised images x (N, C, H, W), in eval mode, in
    the CLI's math mode where the process has not chosen another (machine.use_strict_math):
    the network's own outputs, without the temperature its preprocessing may hold (the
    probabilities quicknets reports: classification.reported)."""
    use_strict_math()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        out = [
            model(x[i : i + batch_size].to(device)).float() for i in range(0, len(x), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


MODEL_FORMAT = 2  # model.pt: 1 held state_dict and config; 2 adds the preprocessing


def save_model(model: Network, path) -> None:
    """Write the weights, the config that rebuilds the network and its preprocessing to `path`
    (a model.pt), atomically. Loading it runs no code (torch.load weights_only)."""
    from quicknets.base.storage import atomic_torch_save

    pre = getattr(model, "preprocessing", None)
    atomic_torch_save(
        {
            "format": MODEL_FORMAT,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "config": dict(model.config),
            "preprocessing": pre.to_dict() if pre is not None else None,
        },
        path,
        parents=False,
    )  # into an existing folder: a removed run stays removed


def load_saved(path, preprocessing=None) -> Network:
    """The network saved at `path` by save_model, in eval mode, with its preprocessing (or
    `preprocessing` for a file written before models carried their own). A truncated, foreign
    or code-carrying file is a QuicknetsError; nothing in it is executed."""
    import warnings
    from pathlib import Path

    from quicknets.data.preprocessing import Preprocessing

    path = Path(path)
    if not path.is_file():
        raise QuicknetsError(f"no saved model at {path}")
    try:
        with warnings.catch_warnings():  # torch warns before refusing a pickle; the error says it
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict) or not {"state_dict", "config"} <= set(saved):
            raise QuicknetsError(f"{path} is not a quicknets model file (no weights and config)")
        model = from_config(saved["config"])
        model.load_state_dict(saved["state_dict"])
    except QuicknetsError:
        raise
    except Exception as e:  # unpickling refused, truncated file, mismatched weights
        raise QuicknetsError(f"cannot load {path}: {load_refusal(e)}") from None
    if saved.get("preprocessing"):
        model.preprocessing = Preprocessing.from_dict(saved["preprocessing"])
    else:
        model.preprocessing = preprocessing
    return model.eval()
