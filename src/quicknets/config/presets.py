"""Presets: named training recipes for time-to-accuracy, each a network and the train settings
that reach a target test accuracy in the least wall time measured on the device at hand.

    quicknets train --preset fast              # >= 0.90 in about 12 s on a 2-core CPU
    quicknets train --preset balanced          # >= 0.92, a small CNN in 4 epochs: ~18 s
    quicknets train --preset accurate --seed 3 # explicit flags still win over the preset
    quicknets train --preset thorough          # >= 0.94, a small ResNet: ~9 min at 2 threads
    name, settings = preset_settings("best", "cuda")   # flat {setting: value}

A preset only fills in settings the user did not give; the resolved config is printed and saved
with the run (config.json's "preset"). Presets are recipes; the networks they train have names
of their own (specs.NETWORKS), and each single trick is a setting (tricks.py). The numbers
behind each choice are in benchmarks/README.md; a trick is in a preset only where that benchmark
showed it pays.
"""

from typing import Any

from quicknets.base.errors import QuicknetsError

# name -> what it promises, and its settings (NetworkConfig and TrainConfig fields), with issue
# 13's targets (2-core CPU, whole process, mean over seeds 0-2). Measured with
# benchmarks/accuracy.py at 1 thread (benchmarks/README.md, "Issue 13's presets"). `fast` went
# from 10 epochs to 8: 0.9054 ± 0.0013 against 0.9077 ± 0.0010, a fifth less training (7 epochs
# gave 0.9029 ± 0.0014: too close to 0.90; fewer epochs at larger batches or higher lr stayed
# below 0.90 too). `balanced`: 0.9240 ± 0.0007 over seeds 0-2 (each >= 0.9233), 23-24 s of
# training at 1 thread under load ~2; the fc64 net gave 0.9210 ± 0.0018 (two seeds at 0.920),
# conv (not convp) blocks were 1.8x slower a step. `accurate`: 0.9355 ± 0.0007 (each >= 0.9348)
# in 94 ± 2 s of training at 1 thread, against 0.9338 in 229 s for the 15-epoch conv32-conv64
# recipe with shifts; shifts of 2 px cost 0.5 points in a run this short, 6 epochs gave 0.9337
# ± 0.0022 (seed 2: 0.9316, too little margin).
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {
        "target": "0.905 test accuracy in ~12 s, whole process, measured on a 2-core CPU"
        "; target: 5 s, out of reach with torch's ~3.3 s start-up",
        "settings": {
            "network": "784-512-256-10",
            "batchnorm": True,
            "optimizer": "adam",
            "lr": 0.003,
            "batch_size": 256,
            "epochs": 8,
            "schedule": "onecycle",
            "warmup": 0.2,
            "label_smoothing": 0.1,
            "bf16": True,
        },
    },
    "balanced": {
        "target": "0.92 test accuracy in ~18 s, whole process, measured on a 2-core CPU"
        "; target: 30 s",
        "settings": {
            "network": "convp16-convp32-fc128",
            "batchnorm": True,
            "optimizer": "adam",
            "lr": 0.01,
            "batch_size": 256,
            "epochs": 4,
            "schedule": "onecycle",
            "warmup": 0.2,
            "label_smoothing": 0.1,
            "bf16": True,
            "channels_last": True,
        },
    },
    "accurate": {
        "target": "0.935 test accuracy in ~62 s, whole process, measured on a 2-core CPU"
        "; target: 90 s",
        "settings": {
            "network": "convp32-convp64-fc128",
            "batchnorm": True,
            "flip_tta": True,
            "optimizer": "adam",
            "lr": 0.01,
            "batch_size": 256,
            "epochs": 7,
            "schedule": "onecycle",
            "warmup": 0.2,
            "label_smoothing": 0.1,
            "flip": True,
            "bf16": True,
            "channels_last": True,
        },
    },
    # A small ResNet (4x accurate's FLOPs, ~3x its epoch time; `best`'s net is ~3.1-3.4x this
    # one's) with `best`'s recipe (issue 13). Measured at 1 thread (benchmarks/README.md):
    # 0.9411 ± 0.0023 over seeds 0-2 (0.9404, 0.9436, 0.9392), 903-936 s of training at 1
    # thread beside other work; 15 epochs gave 0.9391 (seed 0, 678 s): too close, hence 20. At
    # 2 threads, quiet: 0.9421 ± 0.0024 (seed 2: 0.9395) in 526 ± 28 s whole process.
    # BatchNorm is always in resN blocks; the setting says so in the config.
    "thorough": {
        "target": "0.94 test accuracy in ~9 minutes, whole process, measured on a 2-core CPU"
        "; target: 10 minutes",
        "settings": {
            "network": "res32-res64-res128",
            "batchnorm": True,
            "flip_tta": True,
            "optimizer": "sgd",
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "batch_size": 256,
            "epochs": 20,
            "schedule": "onecycle",
            "warmup": 0.2,
            "label_smoothing": 0.1,
            "translate": 2,
            "flip": True,
            "bf16": True,
            "channels_last": True,
        },
    },
    # `best`: 0.9483, 0.9492, 0.9479 over seeds 0-2 at 2 threads on this CPU (30 epochs, ~40
    # minutes each; benchmarks/README.md, "`best` on this CPU"): 0.95 not reached, still rising
    # at the end. Left as it is until it can be tuned where an epoch is cheap (a GPU).
    "best": {
        "target": "aims at 0.95 test accuracy on a GPU; ~0.949 in ~40 minutes measured on a "
        "2-core CPU",
        "settings": {
            "network": "resnet",
            "batchnorm": True,
            "flip_tta": True,
            "optimizer": "sgd",
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "batch_size": 256,
            "epochs": 30,
            "schedule": "onecycle",
            "warmup": 0.2,
            "label_smoothing": 0.1,
            "translate": 2,
            "flip": True,
            "bf16": True,
            "channels_last": True,
        },
    },
}
"""Presets by name: name -> {"target": what it promises, "settings": {field: value}}, the
settings being NetworkConfig and TrainConfig fields (flattened per device by preset_settings)."""
OLD_NAMES = {"cnn": "accurate"}  # `--preset cnn` was renamed: `cnn` names a network

# Changes on a CUDA GPU: larger batches fill the device. Not measured yet (no GPU was at hand):
# starting points from the speed-run records, to be tuned with benchmarks/accuracy.py --device cuda.
CUDA = {
    "fast": {"batch_size": 512, "lr": 0.004},
    "balanced": {"batch_size": 512, "lr": 0.01},
    "accurate": {"batch_size": 512, "lr": 0.01},
    "thorough": {"batch_size": 512, "lr": 0.2},
    "best": {"batch_size": 512, "lr": 0.2},
}


def preset_settings(name: str, device_type: str = "cpu") -> tuple:
    """(the preset's name, its flat settings on a device of type `device_type`). bf16 autocast
    is turned off where the hardware would emulate it (machine.native_bf16)."""
    from quicknets.base.machine import native_bf16

    name = OLD_NAMES.get(name, name)
    if name not in PRESETS:
        raise QuicknetsError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    settings = dict(PRESETS[name]["settings"])
    if device_type == "cuda":
        settings.update(CUDA.get(name, {}))
    if settings.get("bf16") and not native_bf16(device_type):
        settings["bf16"] = False
    return name, settings
