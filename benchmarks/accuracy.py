"""Time to test accuracy 0.87, 0.90, 0.92, 0.93, 0.94 and 0.95 with each preset, over seeds.

    PYTHONPATH=src python benchmarks/accuracy.py --presets notebook fast cnn --seeds 0 1 2
    PYTHONPATH=src python benchmarks/accuracy.py --presets fast --set label_smoothing=0  # ablation

Each run trains with the preset's settings for this device (`notebook` is the plain default:
the notebook's MLP, Adam 0.003, batch 64, 7 epochs) and, after every epoch, tests on the 10,000
test images. The clock counts training only (data to tensors, the epochs); the per-epoch tests
are timed and taken off. The first time each threshold is reached is printed per seed, then the
mean ± std over seeds that reached it, with how many did; and the final accuracy and training
time. Accuracy at an early epoch of a one-cycle run is the recipe's, not a shorter run's.
"""

import argparse
import math
import time

import torch

from quicknets.base.machine import free_cores, pick_device
from quicknets.config.configs import RunConfig
from quicknets.data.loading import load_dataset
from quicknets.evaluation.metrics import evaluate, log_probabilities
from quicknets.records.experiment import setup
from quicknets.training.loop import train

THRESHOLDS = (0.87, 0.90, 0.92, 0.93, 0.94, 0.95)


def one_run(name: str, seed: int, data, device, threads: int, overrides: dict) -> dict:
    """Train once; return {threshold: seconds}, the final accuracy and the training seconds."""
    config = RunConfig.build(
        preset=None if name == "notebook" else name,
        device_type=device.type,
        seed=seed,
        device=device.type,
        threads=threads,
        **overrides,
    )  # checked ("false" -> False)
    config, model, _ = setup(config, data)
    x_test = data.normalize(data.test_images).to(device)
    y_test = data.test_labels.to(device)
    reached, accs, testing = {}, [], [0.0]
    start = time.perf_counter()

    def after_epoch(line: str) -> None:  # train() calls this after each epoch
        tick = time.perf_counter()
        trained = tick - start - testing[0]  # training seconds so far
        acc = evaluate(model, data)["accuracy"]
        accs.append(acc)
        testing[0] += time.perf_counter() - tick
        for t in THRESHOLDS:
            if acc >= t and t not in reached:
                reached[t] = trained
        print(f"  {name} seed {seed}: {line}  test_acc: {acc:.4f}", flush=True)

    train(model, data, config.train, log=after_epoch)
    seconds = time.perf_counter() - start - testing[0]
    with torch.no_grad():  # would test-time flip averaging pay? (reported, not used above)
        model.eval()
        both = torch.stack(
            [log_probabilities(model, x_test), log_probabilities(model, x_test.flip(-1))]
        )
        tta = (torch.logsumexp(both, 0) - math.log(2)).argmax(1)  # the mean probability
    return {
        "reached": reached,
        "final": accs[-1],
        "seconds": seconds,
        "final_tta": (tta == y_test).float().mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["notebook", "fast", "accurate"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="0: free_cores() at the start")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="settings over the presets' (ablations), e.g. bf16=false",
    )
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    device = pick_device(args.device)
    threads = args.threads or free_cores()
    data = load_dataset("fashion-mnist")
    summary = {}
    for name in args.presets:  # seeds interleave within a preset; presets run in turn
        summary[name] = [one_run(name, s, data, device, threads, overrides) for s in args.seeds]
    print(f"device: {device}  threads: {threads}  seeds: {args.seeds}  set: {overrides}")
    for name, runs in summary.items():
        finals = [r["final"] for r in runs]
        secs = [r["seconds"] for r in runs]
        parts = [
            f"{name:<9} final {mean_std(finals, 4)}  train {mean_std(secs, 1)} s  with "
            f"flip TTA {mean_std([r['final_tta'] for r in runs], 4)}"
        ]
        for t in THRESHOLDS:
            hit = [r["reached"][t] for r in runs if t in r["reached"]]
            parts.append(f"{t}: {mean_std(hit, 1) + ' s' if hit else '-'} ({len(hit)}/{len(runs)})")
        print("  ".join(parts))


def mean_std(values: list, digits: int) -> str:
    """`0.9240 ± 0.0007`, as the comparisons print it: one value has no std (the mean alone)."""
    from quicknets.records.comparison import fmt_mean_std
    from quicknets.records.comparison import mean_std as mean_and_std

    return fmt_mean_std(mean_and_std(values), digits, len(values)).strip()


if __name__ == "__main__":
    main()
