"""Typed configs, one per concern. Each field is one command-line flag (`--batch-size` sets
`TrainConfig.batch_size`) and is saved with every run.

    cfg = TrainConfig(lr=0.01, optimizer="sgd")
    cfg = make(TrainConfig, {"lr": "0.01"})      # from strings or JSON: unknown keys, bad values fail

The help text, choices and bounds live in each field's metadata; `add_flags` turns them into
argparse options and `from_args` reads them back, so the CLI and the configs cannot drift.
"""
import argparse
import dataclasses
from dataclasses import dataclass, field, fields

from quicknets.errors import QuicknetsError


def opt(default, help: str, choices=None, low=None, high=None, flags=()):
    """A config field with its flag's help text, allowed values and bounds (inclusive low)."""
    return field(default=default, metadata={"help": help, "choices": choices, "low": low,
                                            "high": high, "flags": flags})


@dataclass
class DataConfig:
    dataset: str = opt("fashion-mnist", "which dataset", ["fashion-mnist", "mnist", "kmnist"])
    data_dir: str = opt("", "folder holding the IDX files (searched first; downloads go here)")
    val_split: float = opt(0.0, "fraction of the training set held out for validation, "
                                "chosen by --seed (0: no validation set)", low=0.0, high=0.99)
    mean: float = opt(0.5, "normalisation: x = (pixel/255 - mean) / std; 0.5/0.5 gives [-1, 1]")
    std: float = opt(0.5, "normalisation divisor (see --mean)", low=1e-6)
    verify: bool = opt(True, "check the files against the official digests (--no-verify for "
                             "your own files)")


@dataclass
class ModelConfig:
    model: str = opt("784-256-128-64-10", "the network: layer sizes (784-256-10), a CNN spec "
                     "(conv32-conv64-fc128: convN = 3x3 conv + 2x2 pool, fcN = dense) or a "
                     "network name (mlp, cnn, cnn-wide, resnet; not --preset)", flags=("--layers",))
    activation: str = opt("relu", "activation after each hidden layer",
                          ["relu", "gelu", "tanh", "sigmoid", "elu", "silu", "leaky_relu"])
    dropout: float = opt(0.0, "dropout probability after each hidden dense layer",
                         low=0.0, high=0.95)
    batchnorm: bool = opt(False, "BatchNorm after each hidden layer")
    flip_tta: bool = opt(False, "test-time augmentation: a conv network predicts from each "
                                "image and its mirror image, averaged (for nets trained with "
                                "--flip)")


@dataclass
class TrainConfig:
    optimizer: str = opt("adam", "optimizer", ["adam", "sgd", "adamw"])
    lr: float = opt(0.003, "learning rate (the notebook: 0.003 for Adam, 0.01 for SGD)",
                    low=1e-12, high=100.0)
    momentum: float = opt(0.9, "SGD momentum (ignored by Adam and AdamW)", low=0.0, high=0.999)
    weight_decay: float = opt(0.0, "weight decay (L2 for adam and sgd, decoupled for adamw)",
                              low=0.0)
    epochs: int = opt(7, "passes over the training set", low=1, high=100000)
    batch_size: int = opt(64, "images per optimizer step", low=1, high=1000000)
    seed: int = opt(0, "seed for weights, shuffling, dropout and the validation split", low=0)
    device: str = opt("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    threads: int = opt(0, "CPU threads for PyTorch (0: the cores not busy with other work)",
                       low=0, high=1024)
    # Speed-run tricks (recipes.py); the presets (presets.py) pick the ones that pay.
    schedule: str = opt("constant", "learning-rate schedule per step: constant, onecycle (rise "
                        "from lr/10 over --warmup, then linear to 0) or linear (lr to 0)",
                        ["constant", "onecycle", "linear"])
    warmup: float = opt(0.2, "fraction of the steps spent rising, for --schedule onecycle",
                        low=0.0, high=1.0)
    label_smoothing: float = opt(0.0, "label smoothing: the fraction of each target spread "
                                      "evenly over all classes", low=0.0, high=0.99)
    translate: int = opt(0, "augmentation: shift each training image by up to this many pixels "
                            "(a fresh random shift per image and epoch; 0: off)", low=0, high=14)
    flip: bool = opt(False, "augmentation: mirror a random half of the training images "
                            "left-right each epoch")
    bf16: bool = opt(False, "bfloat16 autocast for the forward pass (CUDA, or a CPU with "
                            "AVX-512 bf16/AMX)")
    channels_last: bool = opt(False, "channels-last memory layout for conv networks")
    compile: bool = opt(False, "torch.compile the model (pays on a GPU for long runs; the first "
                               "epoch includes compiling)")


def _convert(cls, f, value):
    """Check and convert one value (a string from the CLI, or a JSON value)."""
    meta, kind = f.metadata, f.type  # real types: this module does not use string annotations
    name = f"--{f.name.replace('_', '-')}"
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value = value.lower() in ("true", "1", "yes")
            elif not isinstance(value, bool):
                raise ValueError
        elif kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            value = int(value)
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
        else:
            value = str(value)
    except (TypeError, ValueError):
        raise QuicknetsError(f"{name} must be {kind.__name__}, got {value!r}") from None
    if meta.get("choices") and value not in meta["choices"]:
        raise QuicknetsError(f"{name} must be one of {', '.join(map(str, meta['choices']))}, "
                             f"got {value!r}")
    if meta.get("low") is not None and value < meta["low"]:
        raise QuicknetsError(f"{name} must be at least {meta['low']}, got {value}")
    if meta.get("high") is not None and value > meta["high"]:
        raise QuicknetsError(f"{name} must be at most {meta['high']}, got {value}")
    return value


def make(cls, values: dict):
    """Build config `cls` from a dict, checking every key and value."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise QuicknetsError(f"unknown {cls.__name__} setting(s) {', '.join(unknown)}; "
                             f"known: {', '.join(known)}")
    return cls(**{k: _convert(cls, known[k], v) for k, v in values.items()})


def check(cfg):
    """Re-check a config built directly (TrainConfig(lr=-1) is caught here)."""
    return make(type(cfg), dataclasses.asdict(cfg))


def add_flags(parser, cls) -> None:
    """One argparse option per field of `cls`, defaults left to the dataclass."""
    group = parser.add_argument_group(f"{cls.__name__.removesuffix('Config').lower()} settings")
    for f in fields(cls):
        flag = f"--{f.name.replace('_', '-')}"
        choices = f.metadata.get("choices")
        help_text = f.metadata["help"]
        help_text += f" (one of: {', '.join(map(str, choices))})" if choices else ""
        help_text += f" (default: {f.default if f.default != '' else 'none'})"
        if f.type is bool:
            group.add_argument(flag, dest=f.name, action="store_true", default=None,
                               help=help_text)
            group.add_argument(f"--no-{f.name.replace('_', '-')}", dest=f.name,
                               action="store_false", default=None, help=argparse.SUPPRESS)
        else:
            group.add_argument(flag, *f.metadata["flags"], dest=f.name, default=None,
                               metavar=f.name.upper(), help=help_text)


def from_args(cls, args, defaults: dict | None = None):
    """The config of `cls` from parsed flags: only the flags given override `defaults` (a
    preset's settings), which override the dataclass defaults."""
    given = {f.name: getattr(args, f.name) for f in fields(cls)
             if getattr(args, f.name, None) is not None}
    return make(cls, {**(defaults or {}), **given})
