"""Issue 20's measures: familiarity methods against the reference outside sets, calibration before
and after temperature scaling, and the cost of each, for the default network (and a CNN preset).

    PYTHONPATH=src python benchmarks/trust.py --threads 1            # the default network
    PYTHONPATH=src python benchmarks/trust.py --threads 1 --presets fast,balanced,accurate \
        --no-robustness --default-only     # the README's table: the default method, each preset
    PYTHONPATH=src python benchmarks/trust.py --epochs 1 --no-robustness   # a quick look

The default network (784-256-128-64-10) trains with the notebook's settings (Adam, lr 0.003,
batch 64, 7 epochs, seed 0) on Fashion-MNIST with a seeded 10% validation split. Every
familiarity method (familiarity.METHODS, at the layers and k below) is fitted on the training
images, its threshold set on the validation images (95% pass), and scored on the 10,000 test
images against each reference set (familiarity.reference_sets: 1,797 scikit-learn digits in
MNIST's layout, 100 crops of the two sample photos, 1,000 uniform-noise images): AUROC and FPR
at 95% TPR, plus the seconds of the fit (forward pass over the training images, statistics,
threshold) and of scoring the test set. Then calibration (temperature fitted on the validation
split, the test set before and after) and robustness (all corruptions x 5 severities over the
10,000 test images), each timed. The issue's targets: AUROC >= 0.95 against digits and photos,
>= 0.99 against noise. --presets trains each named preset's network with its own recipe (on the
same data and split) and measures it the same way; --default-only measures the chosen default
method alone on the presets (familiarity.DEFAULT_METHOD), --cnn is --presets balanced.
"""

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from quicknets import load_dataset, network, train
from quicknets.config.presets import preset_settings
from quicknets.evaluation.calibration import calibrate
from quicknets.evaluation.familiarity import (
    familiarity_scores,
    fit_familiarity,
    ood_metrics,
    reference_sets,
)
from quicknets.evaluation.metrics import evaluate
from quicknets.evaluation.robustness import format_robustness, robustness

TARGETS = {"digits": 0.95, "photos": 0.95, "noise": 0.99}  # least AUROC (issue 20)
# (label, fit_familiarity keywords): the papers' variants on the penultimate features (layers
# (-1,)), then on the first dense hidden layer (1,), then on every dense hidden layer (None)
VARIANTS = [
    ("msp", {"method": "msp"}),
    ("energy", {"method": "energy"}),
    ("mahalanobis L-1", {"method": "mahalanobis", "layers": (-1,)}),
    ("mahalanobis all", {"method": "mahalanobis"}),
    ("knn L-1 k1", {"method": "knn", "layers": (-1,), "k": 1}),
    ("knn L-1 k10", {"method": "knn", "layers": (-1,), "k": 10}),
    ("knn L1 k1", {"method": "knn", "layers": (1,), "k": 1}),
    ("knn all k1 (default)", {"method": "knn", "k": 1}),
    ("knn all k10", {"method": "knn", "k": 10}),
    ("knn all k1 bank 2000", {"method": "knn", "k": 1, "bank_size": 2000}),
    ("knn all k1 bank 20000", {"method": "knn", "k": 1, "bank_size": 20000}),
]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def familiarity_table(model, data, sets: dict, variants=VARIANTS) -> None:
    print(
        f"{'method':<22} {'digits AUROC/FPR95':>19} {'photos AUROC/FPR95':>19} "
        f"{'noise AUROC/FPR95':>18} {'test pass':>9} {'fit s':>6} {'score s':>7} "
        f"{'numbers':>9}  targets"
    )
    for label, settings in variants:
        start = time.perf_counter()
        fitted = fit_familiarity(model, data, **settings)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        inside = familiarity_scores(model, data.test_images, fitted)
        score_seconds = time.perf_counter() - start
        cells, met = [], True
        for name, images in sets.items():
            m = ood_metrics(inside, familiarity_scores(model, images, fitted))
            cells.append(f"{m['auroc']:.4f}/{m['fpr95']:.3f}")
            met &= m["auroc"] >= TARGETS[name]
        passing = (inside >= fitted.threshold).double().mean().item()
        print(
            f"{label:<22} {cells[0]:>19} {cells[1]:>19} {cells[2]:>18} {passing:>9.4f} "
            f"{fit_seconds:>6.2f} {score_seconds:>7.2f} {fitted.size():>9}  "
            f"{'met' if met else 'not met'}",
            flush=True,
        )


def measure(model, data, label: str, with_robustness: bool, variants=VARIANTS) -> None:
    print(f"\n== {label}: familiarity (load {load()})")
    sets = reference_sets(tuple(model.preprocessing.shape))
    familiarity_table(model, data, sets, variants)
    start = time.perf_counter()
    result = calibrate(model, data)
    seconds = time.perf_counter() - start
    before, after = result["before"], result["after"]
    print(
        f"\n== {label}: calibration (test set; T fitted on validation, {seconds:.2f} s "
        f"with both forward passes)\nT = {result['temperature']:.4f}  "
        f"ece {before['ece']:.4f} -> {after['ece']:.4f}  mce {before['mce']:.4f} -> "
        f"{after['mce']:.4f}  nll {before['nll']:.4f} -> {after['nll']:.4f}  brier "
        f"{before['brier']:.4f} -> {after['brier']:.4f}  accuracy {before['accuracy']:.4f}"
    )
    if with_robustness:
        start = time.perf_counter()
        result = robustness(model, data.test_images, data.test_labels)
        seconds = time.perf_counter() - start
        print(
            f"\n== {label}: robustness ({len(data.test_labels)} test images, "
            f"{seconds:.1f} s, load {load()})\n{format_robustness(result)}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--epochs", type=int, default=7, help="the default network's epochs")
    parser.add_argument("--seed", type=int, default=0, help="the networks' seed")
    parser.add_argument("--cnn", action="store_true", help="also the `balanced` preset's CNN")
    parser.add_argument(
        "--presets", default="", help="also these presets, comma-separated (fast,balanced,...)"
    )
    parser.add_argument(
        "--default-only",
        action="store_true",
        help="the presets: only the default familiarity method",
    )
    parser.add_argument("--no-robustness", action="store_true", help="skip robustness")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"CPU: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s); load average at start {load()}"
    )
    data = load_dataset("fashion-mnist", val_split=0.1, seed=0)
    model = network("784-256-128-64-10", seed=args.seed)
    start = time.perf_counter()
    train(
        model,
        data,
        optimizer="adam",
        lr=0.003,
        batch_size=64,
        epochs=args.epochs,
        seed=args.seed,
        threads=args.threads,
        quiet=True,
    )
    print(
        f"default network, seed {args.seed}: {args.epochs} epochs in "
        f"{time.perf_counter() - start:.1f} s"
    )
    variants = [v for v in VARIANTS if "(default)" in v[0]] if args.default_only else VARIANTS
    measure(model, data, "784-256-128-64-10", not args.no_robustness)
    presets = [p for p in args.presets.split(",") if p] + (["balanced"] if args.cnn else [])
    for name in presets:
        _, settings = preset_settings(name)
        spec = settings.pop("network")
        net = network(
            spec,
            batchnorm=settings.pop("batchnorm", False),
            flip_tta=settings.pop("flip_tta", False),
            seed=args.seed,
        )
        start = time.perf_counter()
        train(net, data, threads=args.threads, quiet=True, seed=args.seed, **settings)
        accuracy = evaluate(net, data)["accuracy"]
        print(
            f"\n{name} ({spec}): {settings['epochs']} epochs in "
            f"{time.perf_counter() - start:.1f} s, test accuracy {accuracy:.4f}"
        )
        measure(net, data, f"{name} ({spec})", not args.no_robustness, variants)
    print(f"\nload average at the end {load()}")


if __name__ == "__main__":
    main()
