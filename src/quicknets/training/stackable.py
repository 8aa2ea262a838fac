"""Which variants can train in one stack (stacked.py), from their configs alone and without
torch, so that a sweep's process plans its stacks before its workers import it.

    key = stack_key(config)     # a hashable key: configs with equal keys stack; or why not (str)

Variants stack when they differ only in PER_VARIANT's settings and dropout, train a ReLU MLP
without BatchNorm, in fp32 on the CPU, with the unweighted loss.
"""

import json

from quicknets.base.machine import resolve
from quicknets.networks.specs import NETWORKS, parse_sizes

# Settings that may differ inside one stack: each variant has its own.
PER_VARIANT = (
    "seed",
    "lr",
    "weight_decay",
    "momentum",
    "schedule",
    "warmup",
    "label_smoothing",
    "translate",
    "flip",
    "patience",
    "min_delta",
    "monitor",
)

# The stacked step's loss is the unweighted mean over the batch: class weights train apart.
UNWEIGHTED = "stacking covers the unweighted loss, not --class-weights"


def stack_key(config) -> tuple | str:
    """What variants must share to train in one stack, from a RunConfig alone (a hashable key),
    or why this one cannot stack (one line): every setting but PER_VARIANT's and dropout."""
    n, t = config.network, resolve(config.train)
    if not parse_sizes(NETWORKS.get(n.network, n.network)):
        return f"stacking covers MLPs (layer sizes), not {n.network}"
    if n.activation != "relu" or n.batchnorm or n.flip_tta:
        return "stacking covers ReLU MLPs without BatchNorm"
    if t.device != "cpu" or t.bf16 or t.fp16 or t.compile:
        return "stacking covers fp32 training on the CPU (not bf16, fp16, compile or a GPU)"
    if t.class_weights not in (None, "none"):
        return UNWEIGHTED
    whole = config.to_dict()
    for key in PER_VARIANT:
        whole["train"].pop(key, None)
    whole["network"].pop("dropout", None)
    whole.pop("lr_find", None)
    return ("stack", json.dumps(whole, sort_keys=True, default=str))
