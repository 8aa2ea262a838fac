"""What a sweep tries: the settings held fixed, those varied (lists, or ranges for random and
Optuna search), the seeds, and the trial list of a grid or of random draws.

    search = Search.build(base={"epochs": 2}, space={"lr": "log:1e-4:1e-2", "network": [...]},
                          seeds=2, kind="random", trials=10)
    search.plan()      # [{"lr": 0.00213, "network": "784-256-10", "seed": 0}, ...]

As scikit-learn's ParameterGrid and ParameterSampler, this only describes a search; pool.py runs
it. Every value is checked by its config field as the search is built, so a wrong type or a bad
value is one error line naming the setting before anything trains. A Search is saved as JSON
with the sweep (to_dict / from_dict), which is how `--resume-sweep` knows what is left to do.
"""

import itertools
import math
import random
from dataclasses import asdict, dataclass, fields

from quicknets.base.errors import QuicknetsError
from quicknets.config.configs import SECTIONS, convert_setting, setting
from quicknets.evaluation.metric_names import AFTER_TRAINING, METRICS, metric_name

SETTINGS = {f.name: f for cls in SECTIONS.values() for f in fields(cls)}  # name -> field
KINDS = ("grid", "random", "optuna")
PER_EPOCH = ("train_loss_sum", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


@dataclass
class Range:
    """A numeric interval for random and Optuna search (log: sampled uniformly in log space)."""

    low: float
    high: float
    log: bool = False


def convert(key: str, value):
    """One value of a setting, checked and typed by its config class."""
    return convert_setting(key, value)


def check_range(key: str, low, high, log, text) -> Range:
    low, high = convert(key, low), convert(key, high)
    if not isinstance(log, bool):
        raise QuicknetsError(f"{key}: a range's log must be true or false, got {log!r}")
    if not low < high or (log and low <= 0):
        raise QuicknetsError(
            f"--{key.replace('_', '-')} range {text}: need LOW < HIGH (and LOW > 0 on a log scale)"
        )
    return Range(low, high, log)


def parse_values(key: str, text: str):
    """'0.001,0.003' → [0.001, 0.003]; for numbers also 'LOW:HIGH' or 'log:LOW:HIGH' → Range.
    Class weights, whose one value holds commas ('Shirt=2,Coat=3'), are told apart by ';'
    ('none;auto;Shirt=2,Coat=3'); without one, a value naming weights is one value."""
    key = setting(key)
    if key == "class_weights" and (";" in text or "=" in text):
        try:
            return [convert(key, v.strip()) for v in text.split(";") if v.strip()]
        except QuicknetsError as e:
            raise QuicknetsError(f"{e} (a sweep tells class weights apart by ';')") from None
    if SETTINGS[key].type in (int, float) and ":" in text:
        parts = text.split(":")
        log = parts[0] == "log"
        parts = parts[1:] if log else parts
        if len(parts) != 2:
            raise QuicknetsError(
                f"--{key.replace('_', '-')} range must be LOW:HIGH or log:LOW:HIGH, got {text!r}"
            )
        return check_range(key, parts[0], parts[1], log, repr(text))
    return [convert(key, v) for v in _items(key, text)]


def check_space(space) -> dict:
    """Keys as setting names, values as checked lists or Ranges. A value is a list, a Range, a
    {low, high, log} table (TOML) or a string as on the command line."""
    if not isinstance(space, dict):
        raise QuicknetsError(
            f"the settings to vary ([vary]) must be a table of setting = values, got {space!r}"
        )
    out = {}
    for key, values in space.items():
        key = setting(key)
        if key == "seed":
            raise QuicknetsError("vary the seed with seeds=N (--seeds N), not as a setting")
        if isinstance(values, Range):
            out[key] = check_range(key, values.low, values.high, values.log, str(values))
        elif isinstance(values, dict):  # TOML: lr = {low = 1e-4, high = 1e-2, log = true}
            if not {"low", "high"} <= set(values) or set(values) - {"low", "high", "log"}:
                raise QuicknetsError(
                    f"{key}: a range is {{low = ..., high = ..., log = "
                    f"true|false}} (log optional), got {values}"
                )
            out[key] = check_range(
                key, values["low"], values["high"], values.get("log", False), str(values)
            )
        elif isinstance(values, str):
            out[key] = parse_values(key, values)
        elif isinstance(values, (list, tuple)):
            if any(isinstance(v, (dict, list, tuple)) for v in values):
                raise QuicknetsError(
                    f"{key}: a list of values holds plain values, got {list(values)}"
                )
            out[key] = [convert(key, v) for v in values]
        else:  # one value varies nothing: it is a fixed setting
            raise QuicknetsError(
                f"{key}: give a list of values to try (or a {{low, high}} "
                f"range), got {values!r}; a fixed setting belongs in [base]"
            )
        if isinstance(out[key], list):
            if not out[key]:
                raise QuicknetsError(f"no values given for {key}")
            _refuse_repeats(key, out[key])
    return out


def check_base(base) -> dict:
    """The fixed settings by field name, each value checked."""
    if not isinstance(base, dict):
        raise QuicknetsError(
            f"the fixed settings ([base]) must be a table of setting = value, got {base!r}"
        )
    out = {setting(k): v for k, v in base.items()}
    if "seed" in out:
        raise QuicknetsError("set the seeds with seeds=N (--seeds N), not as a setting")
    return {k: convert(k, v) for k, v in out.items()}


def _refuse_repeats(key: str, values: list) -> None:
    """A repeated value would train the same run twice and count it as two seeds."""
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise QuicknetsError(f"{key} lists {', '.join(repeated)} more than once")


MAX_SEEDS = 10_000  # each seed is a run with its own folder: more is a mistake, not a study


def seed_list(seeds) -> list:
    """3 → [0, 1, 2]; a list (or '0,7,9' as on the command line) is taken as it is.
    Errors (QuicknetsError): fewer than 1 or more than MAX_SEEDS seeds (checked before any
    list is built), a seed that is not a whole number, a repeated seed."""
    shape = "a number of seeds (3 means 0, 1, 2) or a list of seeds (0,7,9)"
    if isinstance(seeds, str):
        text = seeds.strip()
        if text.lstrip("-").isdigit():
            seeds = int(text)
        else:
            items = [s.strip() for s in text.split(",")]
            if not text or not all(items):
                raise QuicknetsError(f"seeds must be {shape}, got {seeds!r}")
            seeds = items
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise QuicknetsError(f"seeds must be {shape}; {seeds} seeds is less than 1")
        _refuse_too_many(seeds)
        return list(range(seeds))
    if not isinstance(seeds, (list, tuple)) or not seeds:
        raise QuicknetsError(f"seeds must be {shape}, got {seeds!r}")
    _refuse_too_many(len(seeds))
    try:
        seeds = [convert("seed", s) for s in seeds]
    except QuicknetsError:  # name the flag given (--seeds), not the one converted (--seed)
        raise QuicknetsError(f"seeds must be {shape}, got {','.join(map(str, seeds))!r}") from None
    _refuse_repeats("seeds", seeds)
    return seeds


def _refuse_too_many(count: int) -> None:
    if count > MAX_SEEDS:
        raise QuicknetsError(
            f"{count} seeds is too many: at most {MAX_SEEDS:,}, as each seed is a run "
            "trained and saved in a folder of its own"
        )


def check_class_names(base: dict, space: dict) -> None:
    """Class weights naming a class that a built-in dataset of the sweep lacks: the error
    `train` gives, before any trial starts (not as each trial's failure). Data from a path is
    checked by each trial, as its class names need the data read (the sweep's own process
    does not load data)."""
    from quicknets.config.class_weights import resolve
    from quicknets.config.configs import DataConfig
    from quicknets.data.datasets import DATASETS

    weights = space.get("class_weights", [base.get("class_weights")])
    datasets = space.get("dataset", [base.get("dataset", DataConfig().dataset)])
    for name in datasets:
        info = DATASETS.get(name) if isinstance(name, str) else None
        for value in weights if info is not None and isinstance(weights, list) else []:
            if value is not None:
                resolve(value, list(info.classes), [1] * len(info.classes))


def check_stack(stack) -> bool:
    """stack=: True or False only ("no" is a string, and true as a condition)."""
    if not isinstance(stack, bool):
        raise QuicknetsError(f"stack must be true or false, got {stack!r}")
    return stack


def _items(key: str, text: str) -> list:
    """The items of a comma list, stripped; an empty one ('0.001,' or ',0.001') is an error
    naming the flag, not dropped (as for --seeds)."""
    items = [v.strip() for v in text.split(",")]
    if not all(items):
        raise QuicknetsError(
            f"--{key.replace('_', '-')} {text!r} has an empty item: "
            "give values separated by commas, with none left empty"
        )
    return items


def whole_number(key: str, value, low: int, meaning: str = "") -> int:
    """A count such as trials or workers: an int (not a bool) of at least `low`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise QuicknetsError(
            f"{key} must be a whole number of at least {low}{meaning}, got {value!r}"
        )
    return value


def grid_trials(space: dict, seeds: list) -> list:
    """Every combination of the listed values, each with every seed (seeds vary fastest)."""
    ranges = [k for k, v in space.items() if isinstance(v, Range)]
    if ranges:
        raise QuicknetsError(
            f"a grid needs lists of values; {', '.join(ranges)} is a range "
            f"(use --search random or optuna)"
        )
    keys = list(space)
    return [
        {**dict(zip(keys, combo)), "seed": seed}
        for combo in itertools.product(*(space[k] for k in keys))
        for seed in seeds
    ]


def draw(value, rng: random.Random):
    if isinstance(value, list):
        return rng.choice(value)
    if isinstance(value.low, int) and isinstance(value.high, int) and not value.log:
        return rng.randint(value.low, value.high)
    if value.log:
        x = math.exp(rng.uniform(math.log(value.low), math.log(value.high)))
    else:
        x = rng.uniform(value.low, value.high)
    return round(x) if isinstance(value.low, int) else float(f"{x:.4g}")  # readable names


def random_trials(space: dict, n: int, seeds: list, draw_seed: int = 0) -> list:
    """`n` random variants (drawn by `draw_seed`), each with every seed."""
    rng = random.Random(draw_seed)
    variants = [{k: draw(v, rng) for k, v in space.items()} for _ in range(n)]
    return [{**v, "seed": seed} for v in variants for seed in seeds]


def choose_metric(metric, base: dict, space: dict) -> str:
    """auto: the validation accuracy when every trial has a validation split, else the test
    accuracy. A validation metric without a validation split is refused."""
    val_splits = space.get("val_split", [base.get("val_split", 0.0)])
    has_val = (
        min(val_splits.low, val_splits.high) > 0
        if isinstance(val_splits, Range)
        else min(val_splits) > 0
    )
    if metric == "auto":
        return "val_accuracy" if has_val else "test_accuracy"
    if not isinstance(metric, str):
        raise QuicknetsError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    metric = metric_name(metric)
    if metric in AFTER_TRAINING:
        raise QuicknetsError(
            f"metric {metric} is measured after training (quicknets evaluate RUN --robustness), "
            "so no trial reports it; rank the finished runs with `quicknets runs --sort`"
        )
    if metric.startswith("val_") and not has_val:
        raise QuicknetsError(
            f"metric {metric} needs a validation split in every trial (--val-split 0.1)"
        )
    return metric


@dataclass(frozen=True)
class Search:
    """A checked description of a sweep; `plan()` lists the grid's or random search's trials
    (Optuna proposes its own, optuna_search.py)."""

    base: dict  # fixed settings, by field name
    space: dict  # setting -> list of values or Range
    seeds: list  # every variant trains once per seed
    kind: str = "grid"  # grid, random or optuna
    trials: int = 10  # random variants, or Optuna trials
    draw_seed: int = 0  # seeds the random draws (not the training)
    metric: str = "test_accuracy"  # what ranks the variants (metric_names.METRICS)
    prune: bool = True  # Optuna: stop hopeless trials early

    @classmethod
    def build(
        cls,
        base=None,
        space=None,
        seeds=1,
        kind="grid",
        trials=10,
        draw_seed=0,
        metric="auto",
        prune=True,
    ) -> "Search":
        if kind not in KINDS:
            raise QuicknetsError(f"search must be grid, random or optuna, got {kind!r}")
        base, space = check_base(base or {}), check_space(space or {})
        if not isinstance(prune, bool):
            raise QuicknetsError(f"prune must be true or false, got {prune!r}")
        search = cls(
            base,
            space,
            seed_list(seeds),
            kind,
            whole_number("trials", trials, 1),
            whole_number("draw_seed", draw_seed, 0),
            choose_metric(metric, base, space),
            prune,
        )
        check_class_names(base, space)
        if kind == "grid":
            grid_trials(space, [0])  # ranges are refused here, before anything runs
        # settings that must fit together (momentum with sgd, warmup with onecycle), before
        # anything trains: every planned trial, or for Optuna every listed value with each end
        # of every range (what a setting needs turns on at a threshold: patience 0 or more)
        from quicknets.config.configs import RunConfig

        ends = {k: [v.low, v.high] if isinstance(v, Range) else v for k, v in space.items()}
        for trial in search.plan() if kind != "optuna" else grid_trials(ends, [0]):
            RunConfig.build(**{**search.base, **trial})
        return search

    def plan(self) -> list:
        """The trials of a grid or random search: settings dicts, each with its seed."""
        if self.kind == "grid":
            return grid_trials(self.space, self.seeds)
        return random_trials(self.space, self.trials, self.seeds, self.draw_seed)

    def to_dict(self) -> dict:
        space = {k: asdict(v) if isinstance(v, Range) else v for k, v in self.space.items()}
        return {**asdict(self), "space": space}

    @classmethod
    def from_dict(cls, d: dict) -> "Search":
        return cls.build(
            d["base"],
            d["space"],
            d["seeds"],
            d["kind"],
            d["trials"],
            d["draw_seed"],
            d["metric"],
            d["prune"],
        )
