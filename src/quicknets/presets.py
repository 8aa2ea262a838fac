"""Named recipes for time-to-accuracy: a network and train settings that reach a target test
accuracy in the least wall time measured on the device at hand.

    quicknets train --preset fast              # >= 0.90 in about 20 s on a 2-core CPU
    quicknets train --preset cnn --seed 3      # explicit flags still win over the preset
    settings = preset_settings("best", "cuda") # {"model": {...}, "train": {...}}

A preset only fills in settings the user did not give; the resolved config is printed and saved
with the run like any other. The numbers behind each choice are in benchmarks/README.md; a trick
is in a preset only where that benchmark showed it pays.
"""
from pathlib import Path

from quicknets.errors import QuicknetsError

# name -> what it promises, then settings for ModelConfig ("model") and TrainConfig ("train").
PRESETS = {
    "fast": {
        "target": ">= 0.90 test accuracy in at most 30 s, whole process, on a 2-core CPU",
        "model": {"model": "784-512-256-10", "batchnorm": True},
        "train": {"optimizer": "adam", "lr": 0.003, "batch_size": 256, "epochs": 10,
                  "schedule": "onecycle", "warmup": 0.2, "label_smoothing": 0.1, "bf16": True},
    },
    "cnn": {
        "target": ">= 0.93 test accuracy in at most 5 minutes on a 2-core CPU",
        "model": {"model": "conv32-conv64-fc128", "batchnorm": True, "flip_tta": True},
        "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 256, "epochs": 15,
                  "schedule": "onecycle", "warmup": 0.2, "label_smoothing": 0.1,
                  "translate": 2, "flip": True, "bf16": True, "channels_last": True},
    },
    "best": {
        "target": ">= 0.95 test accuracy, on a GPU (an epoch is ~25 TFLOP: minutes on a CPU)",
        "model": {"model": "resnet", "flip_tta": True},
        "train": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                  "batch_size": 256, "epochs": 30, "schedule": "onecycle", "warmup": 0.2,
                  "label_smoothing": 0.1, "translate": 2, "flip": True, "bf16": True,
                  "channels_last": True},
    },
}

# Changes on a CUDA GPU: larger batches fill the device. Not measured yet (no GPU was at hand):
# starting points from the speed-run records, to be tuned with benchmarks/accuracy.py --device cuda.
CUDA = {
    "fast": {"batch_size": 512, "lr": 0.004},
    "cnn": {"batch_size": 512, "lr": 0.01},
    "best": {"batch_size": 512, "lr": 0.2},
}


def preset_settings(name: str, device_type: str = "cpu", bf16: bool = True) -> dict:
    """The settings of preset `name` on a device of type `device_type` ("cpu" or "cuda"):
    {"model": {ModelConfig fields}, "train": {TrainConfig fields}}, fresh dicts.
    bf16=False (see native_bf16) turns bf16 autocast off where the hardware would emulate it."""
    if name not in PRESETS:
        raise QuicknetsError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    train = dict(PRESETS[name]["train"])
    if device_type == "cuda":
        train.update(CUDA.get(name, {}))
    if not bf16:
        train["bf16"] = False
    return {"model": dict(PRESETS[name]["model"]), "train": train}


def native_bf16(device_type: str) -> bool:
    """Whether bf16 runs natively here: a CUDA GPU with bf16, or a CPU with AVX-512 bf16 or AMX
    (elsewhere autocast emulates it, slower than fp32)."""
    if device_type == "cuda":
        import torch
        return torch.cuda.is_bf16_supported()
    try:  # Linux names the instruction sets in the CPU flags
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
