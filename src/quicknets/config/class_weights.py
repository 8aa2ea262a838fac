"""Class weights of the training loss: the setting as written (`--class-weights`) and the
numbers it gives once the data is known.

    normalize("Shirt = 2, coat=0.5")            # "Shirt=2,coat=0.5" (checked, one spelling)
    normalize({"Shirt": 2})                     # "Shirt=2": a dict from Python or TOML
    resolve("auto", ["a", "b"], [30, 10])       # [0.667, 2.0]: n / (classes * count)
    resolve("b=3", ["a", "b"], [30, 10])        # [1.0, 3.0]: classes not named weigh 1

`auto` is scikit-learn's "balanced" (sklearn.utils.class_weight.compute_class_weight): each
class weighs n_images / (n_classes * its count) over the training split, so every class adds
the same total weight to the loss. The weights enter the training loss as torch's
NLLLoss(weight=...): each batch's loss is sum(w_y * nll) / sum(w_y). The validation loss, and
so early stopping, and the test metrics stay unweighted (as Keras' class_weight).
"""

import math

from quicknets.base.errors import QuicknetsError

NONE, AUTO = "none", "auto"
FORM = "none, auto, or NAME=WEIGHT,NAME=WEIGHT (e.g. Shirt=2,Coat=1.5)"


def _number(w: float) -> str:
    """The shortest text that reads back as `w` (2.0 -> "2", 0.1 -> "0.1")."""
    return f"{w:g}" if float(f"{w:g}") == w else repr(w)


def parse(value) -> str | dict:
    """NONE, AUTO, or {class name: weight} from the setting's value: a string as on the
    command line ("" is NONE) or a dict {name: number}. Raises QuicknetsError for anything
    else: no "=", a weight that is not a positive finite number, a name given twice."""
    if isinstance(value, str) and value.strip().lower() in ("", NONE, AUTO):
        return value.strip().lower() or NONE
    if isinstance(value, dict):
        pairs = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, str):
        parts = [p for p in value.split(",") if p.strip()]
        if not parts or any("=" not in p for p in parts):
            raise QuicknetsError(f"--class-weights must be {FORM}, got {value!r}")
        pairs = [tuple(p.rsplit("=", 1)) for p in parts]
    else:
        raise QuicknetsError(f"--class-weights must be {FORM}, got {value!r}")
    weights: dict[str, float] = {}
    for name, text in pairs:
        name = name.strip()
        try:
            if isinstance(text, bool) or not name:
                raise ValueError
            w = float(text)
        except (TypeError, ValueError):
            raise QuicknetsError(
                f"--class-weights must be {FORM}, got {name or '(no name)'}={text!r}"
            ) from None
        if not (math.isfinite(w) and w > 0):
            raise QuicknetsError(
                f"--class-weights: the weight of {name} must be a positive number, got {text!r} "
                "(to leave a class out of training, leave its images out)"
            )
        if name in weights:
            raise QuicknetsError(f"--class-weights names {name} twice")
        weights[name] = w
    return weights


def normalize(value) -> str:
    """The setting checked (parse) and written one way: "none", "auto" or "A=2,B=0.5"."""
    parsed = parse(value)
    if isinstance(parsed, str):
        return parsed
    return ",".join(f"{name}={_number(w)}" for name, w in parsed.items())


def resolve(value, classes: list, counts: list) -> list | None:
    """The weight of each class (floats, in class order), or None for NONE. `classes`: the
    data's class names; `counts`: training images per class. AUTO gives
    n / (n_classes * count) over the classes that have images (a class with none weighs 1:
    no image uses it). A name matches a class exactly, else its one case-insensitive match;
    an unknown name is a QuicknetsError listing the classes."""
    parsed = parse(value)
    if parsed == NONE:
        return None
    if parsed == AUTO:
        present = [c for c in counts if c > 0]
        total = sum(present)
        return [total / (len(present) * c) if c > 0 else 1.0 for c in counts]
    names = [str(c) for c in classes]
    weights, named = [1.0] * len(names), {}
    for name, w in parsed.items():
        matches = (
            [names.index(name)]
            if name in names
            else [i for i, c in enumerate(names) if c.lower() == name.lower()]
        )
        if len(matches) != 1:
            raise QuicknetsError(
                f"--class-weights names {name!r}, which is not a class of the data; "
                f"the classes are: {', '.join(names)}"
            )
        if matches[0] in named:
            raise QuicknetsError(
                f"--class-weights names class {names[matches[0]]} twice "
                f"({named[matches[0]]} and {name})"
            )
        named[matches[0]] = name
        weights[matches[0]] = w
    return weights
