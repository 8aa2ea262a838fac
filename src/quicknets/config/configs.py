"""Typed configs, one per concern, and the run config that holds them. Each field is one
command-line flag (`--batch-size` sets `TrainConfig.batch_size`) and is saved with every run.

    cfg = TrainConfig(lr=0.01, optimizer="sgd")
    cfg = make(TrainConfig, {"lr": "0.01"})      # strings or JSON: unknown keys, bad values fail
    run = RunConfig.build(preset="fast", epochs=5)   # keywords, flat: every field name is unique
    run = RunConfig.from_dict(json.load(f))      # a record's config.json, old layouts included
    run.flat()                                   # {"dataset": ..., "network": ..., "lr": ...}
    print(to_toml(run))                          # the same run as a file read_toml reads back

The help text, choices and bounds live in each field's metadata; `add_flags` turns them into
argparse options and `from_args` reads them back, so the CLI and the configs cannot drift.
A boolean is spelled the same everywhere: `--batchnorm`, `--no-batchnorm`, `--batchnorm false`
(and `batchnorm = false` in a file).
"""

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field, fields

from quicknets.base.errors import QuicknetsError
from quicknets.config.class_weights import normalize as normalize_class_weights
from quicknets.data.datasets import DATASETS
from quicknets.data.preprocessing import DEFAULT_MEAN, DEFAULT_STD


def opt(default, help: str, choices=None, low=None, high=None, flags=(), auto=False):
    """A config field with its flag's help text, allowed values and bounds (inclusive low).
    `auto`: the string "auto" is allowed too, made concrete when the run is set up."""
    return field(
        default=default,
        metadata={
            "help": help,
            "choices": choices,
            "low": low,
            "high": high,
            "flags": flags,
            "auto": auto,
        },
    )


class Stat:
    """The type of --mean and --std: "auto" (computed per channel on the training images), one
    number, or one per channel ("0.49,0.48,0.45", kept as a list). A single number stays a
    float, so records keep the layout they always had."""


def _stat(name: str, value, low: float | None):
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    parts = (
        value.split(",")
        if isinstance(value, str)
        else list(value)
        if isinstance(value, (list, tuple))
        else [value]
    )
    try:
        if not parts or any(isinstance(p, bool) for p in parts):
            raise ValueError
        numbers = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise QuicknetsError(
            f"{name} must be auto, a number or one number per channel "
            f"(0.49,0.48,0.45), got {value!r}"
        ) from None
    if len(numbers) not in (1, 3) or any(x != x or abs(x) == float("inf") for x in numbers):
        raise QuicknetsError(
            f"{name} must be auto, one number or 3 (one per channel), got {value!r}"
        )
    if low is not None and min(numbers) < low:
        raise QuicknetsError(f"{name} must be at least {low}, got {value!r}")
    return numbers[0] if len(numbers) == 1 else numbers


class ClassWeights:
    """The type of --class-weights: "none", "auto" or "NAME=W,NAME=W", kept as one normalised
    string (class_weights.normalize); a dict {name: weight} is accepted and written so."""


@dataclass
class DataConfig:
    """Which data a run trains and tests on, and how its pixels are normalised: one field per
    `train` flag (`--dataset`, `--val-split`, `--mean`, ...)."""

    dataset: str = opt(
        "fashion-mnist",
        "a built-in dataset (" + ", ".join(DATASETS) + "), "
        "or the path of your own: a CSV file (label, then pixels), a folder of "
        "class folders, or an .npz (x_train, y_train, x_test, y_test)",
    )
    data_dir: str = opt(
        "",
        "folder holding the IDX files (searched first; downloads go here); "
        "for a dataset given by path, the folder it moved to",
    )
    test: str = opt(
        "",
        "your own data's test set: a file or folder of the dataset's kind "
        "(none given: x_test.csv beside x_train.csv, test/ beside train/, an "
        ".npz's x_test), or a fraction of the training set held out, the same "
        "images whatever the seed (0.2 where there is no test set)",
    )
    image_size: int = opt(
        0,
        "your own data: bring every image to SIZE x SIZE pixels (0: keep "
        "the images' size; needed when they differ)",
        low=0,
        high=1024,
    )
    channels: int = opt(
        0,
        "your own data: bring every image to 1 (grey) or 3 (RGB) channels "
        "(0: keep theirs; needed when they differ)",
        [0, 1, 3],
    )
    val_split: float = opt(
        0.0,
        "fraction of the training set held out for validation, "
        "chosen by --seed (0: no validation set)",
        low=0.0,
        high=0.99,
    )
    mean: Stat = opt(
        DEFAULT_MEAN,
        "normalisation: x = (pixel/255 - mean) / std; 0.5/0.5 "
        "gives [-1, 1]; one value per channel (0.49,0.48,0.45), or "
        "auto: computed per channel on the training images; saved "
        "with the model",
    )
    std: Stat = opt(
        DEFAULT_STD,
        "normalisation divisor (see --mean; auto: the training "
        "images' per-channel standard deviation)",
        low=1e-6,
    )
    verify: bool = opt(
        True, "check the files against the official digests (--no-verify for your own IDX files)"
    )


@dataclass
class NetworkConfig:
    """Which network a run trains: a spec or a name, and its dropout, BatchNorm and activation;
    one field per `train` flag."""

    network: str = opt(
        "784-256-128-64-10",
        "the network: layer sizes (784-256-10), a CNN spec "
        "(conv32-conv64-fc128: convN = 3x3 conv + 2x2 pool, convpN = the same "
        "pooled before BatchNorm and activation, fcN = dense), a "
        "ResNet spec (res64-res128) or a network name (mlp, cnn, cnn-wide, "
        "resnet)",
        flags=("--layers", "--model"),
    )
    activation: str = opt(
        "relu",
        "activation after each hidden layer",
        ["relu", "gelu", "tanh", "sigmoid", "elu", "silu", "leaky_relu"],
    )
    dropout: float = opt(
        0.0, "dropout probability after each hidden dense layer", low=0.0, high=0.95
    )
    batchnorm: bool = opt(False, "BatchNorm after each hidden layer")
    flip_tta: bool = opt(
        False,
        "test-time augmentation: a conv network predicts from each "
        "image and its mirror image, averaged (for nets trained with "
        "--flip)",
    )


# The optimizers that take a momentum, and their own default: the notebook's 0.9 for SGD;
# torch's 0 for RMSprop (RMSprop with SGD's 0.9 trains the default network to chance level).
MOMENTUM = {"sgd": 0.9, "rmsprop": 0.0}


@dataclass
class TrainConfig:
    """How a run trains: optimizer, learning rate, epochs, batch size, seed, device, threads and
    the single tricks; one field per `train` flag."""

    optimizer: str = opt(
        "adam",
        "optimizer (torch.optim's Adam, SGD, AdamW, RMSprop, NAdam, RAdam, Adagrad)",
        ["adam", "sgd", "adamw", "rmsprop", "nadam", "radam", "adagrad"],
    )
    # "auto" until the run is set up: then the LR finder's suggestion (lr_finder.py), recorded
    lr: float = opt(
        0.003,
        "learning rate (the notebook: 0.003 for Adam, 0.01 for SGD); auto: "
        "run the LR finder first and train with its suggestion",
        low=1e-12,
        high=100.0,
        auto=True,
    )
    # None (not given): the optimizer's own (MOMENTUM), filled in as the config is built
    momentum: float | None = opt(
        None,
        "momentum of sgd and rmsprop (default: the optimizer's "
        "own, 0.9 for sgd as in the notebook, 0 for rmsprop as in "
        "torch; the other optimizers have none, and refuse it)",
        low=0.0,
        high=0.999,
    )
    weight_decay: float = opt(0.0, "weight decay (L2; decoupled for adamw)", low=0.0)
    epochs: int = opt(7, "passes over the training set", low=1, high=100000)
    batch_size: int = opt(64, "images per optimizer step", low=1, high=1000000)
    seed: int = opt(
        0, "seed for weights, shuffling, dropout and the validation split", low=0, high=2**63 - 1
    )  # a 64-bit signed integer: what SQLite and JSON keep
    device: str = opt(
        "auto", "auto (CUDA when present, else Apple's MPS, else the CPU), cpu, cuda, cuda:N or mps"
    )
    threads: int = opt(
        0,
        "CPU threads for PyTorch (0: every usable core, whatever the load; "
        "a run whose numbers do not depend on it takes fewer while other work "
        "shares the cores, see machine.CoreLease)",
        low=0,
        high=1024,
    )
    # Speed-run tricks (tricks.py); the presets (presets.py) pick the ones that pay.
    schedule: str = opt(
        "constant",
        "learning-rate schedule per step: constant, onecycle (rise "
        "from lr/10 over --warmup, then linear to 0) or linear (lr to 0)",
        ["constant", "onecycle", "linear"],
    )
    warmup: float | None = opt(
        None,
        "fraction of the steps spent rising, for --schedule onecycle (default: 0.2; "
        "the other schedules refuse it)",
        low=0.0,
        high=1.0,
    )
    label_smoothing: float = opt(
        0.0,
        "label smoothing: the fraction of each target spread evenly over all classes",
        low=0.0,
        high=0.99,
    )
    # Made numbers per class when the data is known (class_weights.resolve), recorded in meta.json
    class_weights: ClassWeights = opt(
        "none",
        "weights of the classes in the training loss: auto (n_images / (n_classes x the "
        "class's count), scikit-learn's 'balanced'), or NAME=W,NAME=W by class name "
        "(classes not named weigh 1); the validation loss, early stopping and the test "
        "metrics stay unweighted",
    )
    translate: int = opt(
        0,
        "augmentation: shift each training image by up to this many pixels "
        "(a fresh random shift per image and epoch; 0: off)",
        low=0,
        high=14,
    )
    flip: bool = opt(
        False, "augmentation: mirror a random half of the training images left-right each epoch"
    )
    bf16: bool = opt(
        False, "bfloat16 autocast for the forward pass (CUDA, or a CPU with AVX-512 bf16/AMX)"
    )
    channels_last: bool = opt(False, "channels-last memory layout for conv networks")
    compile: bool = opt(
        False,
        "torch.compile the model (pays on a GPU for long runs; the first epoch includes compiling)",
    )
    fp16: bool = opt(
        False,
        "float16 autocast with a gradient scaler (for CUDA GPUs without "
        "bf16; works but is slow on most CPUs)",
    )
    # Early stopping (training.early_stopping): needs a validation set (--val-split).
    patience: int = opt(
        0,
        "early stopping: stop after this many epochs without improvement of "
        "--monitor on the validation set, and keep the best epoch's weights "
        "(0: off; needs --val-split)",
        low=0,
        high=100000,
    )
    min_delta: float | None = opt(
        None,
        "early stopping: the least change of --monitor that counts as an improvement "
        "(default: 0; needs --patience)",
        low=0.0,
    )
    # The validation metrics of metric_names.METRICS (a test keeps them in step; config sits
    # below evaluation, so it cannot ask there); their directions come from METRICS.
    monitor: str | None = opt(
        None,
        "early stopping: the validation metric watched (default: val_loss; needs --patience)",
        ["val_loss", "val_accuracy"],
    )

    def __post_init__(self):
        if self.bf16 is True and self.fp16 is True:
            raise QuicknetsError("--bf16 and --fp16 exclude each other: choose one")
        self.fill_recipe_settings()

    def fill_recipe_settings(self) -> None:
        """Each setting of RECIPE_SETTINGS takes its default where the recipe uses it and stays
        None where it does not; given where it is not used, it is an error naming what it
        needs. The config then says the number the run uses."""
        for name, (default, needs) in RECIPE_SETTINGS.items():
            used = default(self)
            value = getattr(self, name)
            if used is None and value is not None:
                raise QuicknetsError(f"--{name.replace('_', '-')} {value} is for {needs(self)}")
            if value is None:
                setattr(self, name, used)

    def replace(self, **settings) -> "TrainConfig":
        """A copy with some settings changed (field names), as give_way says: another
        optimizer brings its own momentum. Not checked (config.check does that)."""
        old = dataclasses.asdict(self)
        kept = give_way(old, settings)
        changes: dict[str, typing.Any] = {k: None for k in old if k not in kept}
        return dataclasses.replace(self, **{**changes, **settings})


# Settings that one recipe alone uses: {field: (its default where used, else None; what it
# needs, as the error says it)}. TrainConfig fills them in or refuses them (fill_recipe_settings).
RECIPE_SETTINGS = {
    "momentum": (
        lambda t: MOMENTUM.get(t.optimizer),
        lambda t: f"{' and '.join(MOMENTUM)}; {t.optimizer} has no momentum setting (leave it out)",
    ),
    "warmup": (
        lambda t: 0.2 if t.schedule == "onecycle" else None,
        lambda t: f"--schedule onecycle; --schedule {t.schedule} has none (leave it out)",
    ),
    "min_delta": (
        lambda t: 0.0 if t.patience else None,
        lambda t: (
            "early stopping, which is off: give --patience N (with --val-split), or leave it out"
        ),
    ),
    "monitor": (
        lambda t: "val_loss" if t.patience else None,
        lambda t: (
            "early stopping, which is off: give --patience N (with --val-split), or leave it out"
        ),
    ),
}


def give_way(old: dict, settings: dict) -> dict:
    """`old` (flat settings: a preset's, a config's) less each RECIPE_SETTINGS value that
    `settings` do not give and whose default they change: another optimizer brings its own
    momentum (rmsprop's 0, not sgd's 0.9), another schedule its own warmup, and patience 0
    no min_delta or monitor. Where the default stays, the value stays (patience 3 -> 5)."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    typed = {k: _typed(k, v) for k, v in settings.items() if k in defaults}
    before = types.SimpleNamespace(**{**defaults, **old})
    after = types.SimpleNamespace(**{**defaults, **old, **typed})
    return {
        k: v
        for k, v in old.items()
        if k not in RECIPE_SETTINGS
        or k in settings
        or RECIPE_SETTINGS[k][0](before) == RECIPE_SETTINGS[k][0](after)
    }


def _typed(key: str, value):
    """A setting's value typed as its field says ("0" -> 0), or as it is where it cannot be
    (out of range for a caller that does not check it, or an error that make() will give)."""
    try:
        return convert_setting(key, value)
    except QuicknetsError:
        return value


def _convert(cls, f, value):
    """Check and convert one value (a string from the CLI, or a JSON value)."""
    meta, kind = f.metadata, f.type  # real types: this module does not use string annotations
    name = f"--{f.name.replace('_', '-')}"
    if f.default is None:  # an optional setting (float | None): None is "not given"
        if value is None:
            return None
        kind = next(t for t in typing.get_args(kind) if t is not type(None))
    if kind is Stat:
        return _stat(name, value, meta.get("low"))
    if kind is ClassWeights:
        return normalize_class_weights(value)
    if meta.get("auto") and isinstance(value, str) and value.lower() == "auto":
        return "auto"
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
        raise QuicknetsError(
            f"{name} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}"
        )
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
        raise QuicknetsError(
            f"unknown {cls.__name__} setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    return cls(**{k: _convert(cls, known[k], v) for k, v in values.items()})


def convert_setting(key: str, value):
    """One setting's value (by field name) checked and typed by its field alone, as make
    does; settings that must fit together are checked when the whole config is built."""
    cls = SECTIONS[FIELDS[key]]
    return _convert(cls, {f.name: f for f in fields(cls)}[key], value)


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
        if f.default is not None:  # None: the help says what not giving it means
            help_text += f" (default: {f.default if f.default != '' else 'none'})"
        if f.type is bool:  # --batchnorm, --batchnorm true|false, --no-batchnorm
            group.add_argument(
                flag,
                dest=f.name,
                nargs="?",
                const=True,
                default=None,
                metavar="true|false",
                help=help_text,
            )
            group.add_argument(
                f"--no-{f.name.replace('_', '-')}",
                dest=f.name,
                action="store_const",
                const=False,
                default=None,
                help=argparse.SUPPRESS,
            )
        else:
            group.add_argument(
                flag,
                *f.metadata["flags"],
                dest=f.name,
                default=None,
                metavar=f.name.upper(),
                help=help_text,
            )


def given_flags(args) -> dict:
    """The settings given as flags (flat: {field: value}), none of the defaults."""
    return {k: getattr(args, k) for k in FIELDS if getattr(args, k, None) is not None}


SECTIONS = {"data": DataConfig, "network": NetworkConfig, "train": TrainConfig}
FIELDS = {f.name: section for section, cls in SECTIONS.items() for f in fields(cls)}
# Names earlier versions used, still read from records, flags, sweep files and filters.
ALIASES = {"model": "network", "layers": "network"}
# config.json layout: 1 had a "model" section with a "model" field (and "spec"); 2 saved
# momentum 0.9 for every optimizer (used by sgd and rmsprop alone); 3: null where not given;
# 4: RECIPE_SETTINGS as used (warmup only with onecycle, monitor and min_delta only with
# patience; 3 saved their defaults with every recipe, and null for sgd's and rmsprop's momentum)
FORMAT = 4


def setting(key: str) -> str:
    """The field name of a setting given as `batch-size`, `batch_size` or an old alias."""
    key = key.replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in FIELDS:
        raise QuicknetsError(f"unknown setting {key!r}; known: {', '.join(FIELDS)}")
    return key


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run: data, network, training, and the preset it came from.
    Built once (from flags, a TOML file or keywords), checked as it is built, resolved once
    (machine.resolve; `lr = "auto"` by experiment.setup), and saved as the run's config.json.
    `lr_find`: how an `auto` lr was found (lr_finder.LRFound.record()), None otherwise."""

    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str | None = None
    lr_find: dict | None = None

    def __post_init__(self):
        if self.train.patience and not self.data.val_split:
            raise QuicknetsError(
                f"--patience {self.train.patience} (early stopping) watches "
                f"{self.train.monitor} on a validation set: add --val-split "
                "(e.g. 0.1)"
            )

    @classmethod
    def build(
        cls, preset: str | None = None, device_type: str | None = None, **settings
    ) -> "RunConfig":
        """From flat settings (any field, by name or alias), over a preset's settings, over the
        defaults. `device_type` picks the preset's variant for cpu or cuda (default: the device
        the settings ask for)."""
        settings = {setting(k): v for k, v in settings.items()}
        base = {}
        if preset is not None:
            from quicknets.config.presets import preset_settings

            preset, base = preset_settings(preset, device_type or _device_type(settings))
        if _is_true(settings.get("fp16")) and "bf16" not in settings:
            base.pop("bf16", None)  # --fp16 given: the preset's bf16 gives way
        base = give_way(base, settings)  # the preset's momentum was for its optimizer
        parts = {section: {} for section in SECTIONS}
        for key, value in {**base, **settings}.items():
            parts[FIELDS[key]][key] = value
        return cls(**{s: make(SECTIONS[s], parts[s]) for s in SECTIONS}, preset=preset)

    @classmethod
    def from_dict(cls, config: dict) -> "RunConfig":
        """A saved config ({data, network, train, preset}); format 1 records are upgraded."""
        if not isinstance(config, dict) or not isinstance(config.get("train"), dict):
            raise QuicknetsError(
                "not a quicknets run config: it needs data, network and train sections"
            )
        config = upgrade(config)
        unknown = sorted(set(config) - {*SECTIONS, "preset", "lr_find"})
        if unknown:  # a setting written beside the sections would be silently ignored
            raise QuicknetsError(
                f"unknown config key(s) {', '.join(unknown)}: a run config holds the sections "
                f"{', '.join(SECTIONS)} (each setting in its section: lr in train) and preset"
            )
        wrong = [s for s in SECTIONS if not isinstance(config.get(s, {}), (dict, type(None)))]
        if wrong:
            raise QuicknetsError(
                f"config section(s) {', '.join(wrong)} must be tables of settings "
                f"(e.g. network: {{network: '784-128-10'}}), not "
                f"{', '.join(type(config[s]).__name__ for s in wrong)}"
            )
        return cls(
            **{s: make(SECTIONS[s], config.get(s) or {}) for s in SECTIONS},
            preset=config.get("preset"),
            lr_find=config.get("lr_find"),
        )

    def to_dict(self) -> dict:
        found = {"lr_find": self.lr_find} if self.lr_find is not None else {}
        return {
            "format": FORMAT,
            **{s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS},
            "preset": self.preset,
            **found,
        }

    def flat(self) -> dict:
        """Every setting in one dict (field names are unique across the sections)."""
        return {k: v for s in SECTIONS for k, v in dataclasses.asdict(getattr(self, s)).items()}

    def replace(self, **settings) -> "RunConfig":
        """A copy with some settings changed (flat names), checked."""
        parts = {s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}
        settings = {setting(k): v for k, v in settings.items()}
        parts["train"] = give_way(parts["train"], settings)  # another optimizer: its momentum
        for key, value in settings.items():
            parts[FIELDS[key]][key] = value
        return RunConfig(
            **{s: make(SECTIONS[s], parts[s]) for s in SECTIONS},
            preset=self.preset,
            lr_find=self.lr_find,
        )


# Where and how fast a run trains, not what it trains: the settings that may differ between a
# run's record and the settings it was trained with (a resume elsewhere, data moved).
MAY_CHANGE = ("threads", "device", "data_dir")


def trained_settings(config: RunConfig) -> dict:
    """What a run is trained with, as kept beside its record (meta.json's `trained_with`, the
    checkpoint's config) to tell a config.json edited later: the config's dict less MAY_CHANGE."""
    saved = config.to_dict()
    for section in SECTIONS:
        saved[section] = {k: v for k, v in saved[section].items() if k not in MAY_CHANGE}
    return saved


def changed_since(
    trained: dict, config: RunConfig, run: str = "the run", kept: str = "meta.json"
) -> str | None:
    """One line naming each setting (MAY_CHANGE aside) in which `config` (a record's
    config.json) differs from `trained` (the settings it was trained with, any recorded
    layout, as the file `kept` holds them: meta.json's trained_with or checkpoint.pt), or None
    when none does. Either file may be the edited one, so the line names both: `run X's
    config.json and meta.json disagree on the settings it was trained with: lr 0.01 in
    config.json, 0.003 in meta.json`. The caller adds what to do about it."""
    was, now = RunConfig.from_dict(trained).flat(), config.flat()
    changed = [
        k for k in dict.fromkeys([*was, *now]) if k not in MAY_CHANGE and was.get(k) != now.get(k)
    ]
    if not changed:
        return None
    diff = ", ".join(
        f"{k} {now.get(k)!r} in config.json, {was.get(k)!r} in {kept}" for k in changed
    )
    return f"{run}'s config.json and {kept} disagree on the settings it was trained with: {diff}"


def _is_true(value) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1", "yes"))


def _device_type(settings: dict) -> str:
    from quicknets.base.machine import device_name

    return device_name(str(settings.get("device", "auto"))).partition(":")[0]


def upgrade(config: dict) -> dict:
    """A config dict in the current layout: format 1's "model" section (with "model" and
    "spec" fields) becomes the "network" section with a "network" field; before format 3 the
    momentum saved with an optimizer that has none (0.9, unused) is dropped, before format 4
    the warmup, min_delta and monitor saved with a recipe that does not use them. sgd and
    rmsprop keep their momentum: the one they trained with (null: their own, filled in)."""
    config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    if "network" not in config and isinstance(config.get("model"), dict):
        old = config.pop("model")
        old["network"] = old.pop("model", None) or old.get("spec")
        old.pop("spec", None)
        config["network"] = {k: v for k, v in old.items() if v is not None}
    saved = config.pop("format", 1)
    if isinstance(config.get("train"), dict):
        train = config["train"]
        unused: tuple[str, ...] = ("warmup", "min_delta", "monitor") if saved < 4 else ()
        unused += ("momentum",) if saved < 3 else ()  # format 2 saved 0.9 for every optimizer
        recipe = types.SimpleNamespace(
            **{**{f.name: f.default for f in fields(TrainConfig)}, **train}
        )
        for key in unused:
            if RECIPE_SETTINGS[key][0](recipe) is None:
                train.pop(key, None)  # not a setting that recipe had
    return config


def load_toml(path) -> dict:
    """A TOML file's content; a missing or invalid file is one QuicknetsError."""
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise QuicknetsError(f"cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise QuicknetsError(f"{path} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:  # TOML is UTF-8 text; tomllib lets this one through
        raise QuicknetsError(f"{path} is not valid TOML: not UTF-8 text (byte {e.start})") from None


def read_toml(path) -> dict:
    """Flat settings from a TOML file: keys at the top level or in [data], [network] and
    [train] tables; unknown keys are errors."""
    spec = load_toml(path)
    flat = {}
    for key, value in spec.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    for key in flat:
        if key != "preset":
            setting(key)
    return flat


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # 0.003, 1e-05, 7: TOML reads each back as the same number
    if isinstance(value, (list, tuple)):  # a mean or std per channel
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def to_toml(config: RunConfig) -> str:
    """The config as a TOML file that read_toml (`quicknets train --config`) reads back into the
    same config: `preset` at the top, then [data], [network] and [train] tables."""
    lines = ["# quicknets train --config FILE (flags given with it still win)"]
    if config.preset:
        lines.append(f"preset = {_toml_value(config.preset)}")
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        lines += [
            f"{k} = {_toml_value(v)}"  # None (TOML has no null): not given
            for k, v in dataclasses.asdict(getattr(config, section)).items()
            if v is not None
        ]
    return "\n".join(lines) + "\n"
