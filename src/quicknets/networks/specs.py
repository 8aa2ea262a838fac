"""Network specs read without torch: the named networks and the layer sizes of an MLP's spec,
so that a sweep's process plans its stacks (and `runs`, `compare` read records) without
importing torch (~2 s).

    NETWORKS["mlp"]                  # "784-256-128-64-10": a name is a plain spec
    parse_sizes("784-256-10")        # [784, 256, 10]; None for "conv32-fc64" (not an MLP)

models.py builds networks from these specs.
"""

import re

from quicknets.base.errors import QuicknetsError

# name -> spec. Names are plain specs, so every command that takes a spec takes a name.
NETWORKS = {
    "mlp": "784-256-128-64-10",  # the notebook's network
    "cnn": "conv32-conv64-fc128",  # two conv/pool blocks: ~0.91-0.92 in a few epochs
    "cnn-wide": "conv64-conv128-conv256-fc256",
    "resnet": "res64-res128-res256",  # the `best` preset's network (airbench-style blocks)
}
"""Networks by name: name -> spec. `network("cnn")` is `network("conv32-conv64-fc128")`."""


def parse_sizes(spec) -> list | None:
    """'784-256-10' or [784, 256, 10] -> [784, 256, 10]; None when spec is not a list of sizes;
    QuicknetsError for a list whose sizes are not whole numbers."""
    if isinstance(spec, (list, tuple)):
        parts = list(spec)
    elif isinstance(spec, str) and re.fullmatch(r"\s*\d+(\s*-\s*\d+)*\s*", spec):
        parts = spec.split("-")
    else:
        return None

    def whole(p):
        if isinstance(p, bool) or not isinstance(p, (int, str)):
            raise ValueError
        return int(p)

    try:
        return [whole(p) for p in parts]
    except (TypeError, ValueError):
        raise QuicknetsError(f"layer sizes must be whole numbers, got {spec!r}") from None
