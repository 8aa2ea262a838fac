"""Where `quicknets train`'s CPU goes outside its epochs: each phase of one run, timed alone.

    PYTHONPATH=src python benchmarks/phases.py --preset fast      # 1 epoch at 1 thread
    PYTHONPATH=src python benchmarks/phases.py                    # the default (notebook) run

In one process, the steps `quicknets train --epochs 1 --threads 1` takes (commands/train.py,
records/experiment.py), each timed with time.process_time (CPU seconds of the process, all its
threads) and time.perf_counter (wall): importing torch, setting the run up (data, network), the
network's FLOPs (the line `train` prints unless --quiet), the class weights (asked 5 times a
run), the epoch (fit), then the test pass (evaluate) and the familiarity fit (fit_familiarity)
at the run's thread count and again at torch's default (every core). Prints one line per
phase, then the numbers that must not change (test loss and accuracy, the familiarity
threshold) as exact floats, so that two versions of the code can be compared:
PYTHONPATH=/work/main/src against PYTHONPATH=src.
"""

import argparse
import time

from quicknets.base.machine import use_strict_math

use_strict_math()  # as the CLI at its entry: before torch starts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="the run's threads (default 1)")
    args = parser.parse_args()
    rows = []

    def timed(name, f, *a, **k):
        cpu, wall = time.process_time(), time.perf_counter()
        out = f(*a, **k)
        rows.append((name, time.process_time() - cpu, time.perf_counter() - wall))
        return out

    torch = timed("import torch", __import__, "torch")
    default = torch.get_num_threads()

    from quicknets.config.configs import RunConfig
    from quicknets.evaluation.familiarity import fit_familiarity
    from quicknets.evaluation.metrics import evaluate
    from quicknets.networks.models import totals
    from quicknets.records import experiment
    from quicknets.training.loop import class_weights, fit

    config = RunConfig.build(preset=args.preset, epochs=args.epochs, threads=args.threads)
    config, model, data = timed("setup (data, network)", experiment.setup, config)
    timed("totals (FLOPs line)", totals, model)
    timed("class_weights", class_weights, config.train, data)
    timed(f"fit ({args.epochs} epoch)", fit, model, data, config.train, quiet=True)
    results, fitted = {}, {}
    for threads in (args.threads, default):
        torch.set_num_threads(threads)
        results[threads] = timed(f"evaluate, {threads} threads", evaluate, model, data)
        fitted[threads] = timed(f"fit_familiarity, {threads} threads", fit_familiarity, model, data)
    torch.set_num_threads(default)
    for name, cpu, wall in rows:
        print(f"{name:<30} {cpu:7.3f} s CPU {wall:7.3f} s wall")
    for threads in results:
        r, f = results[threads], fitted[threads]
        print(
            f"{threads} threads: test loss {r['loss']!r} accuracy {r['accuracy']!r} "
            f"familiarity threshold {f.threshold!r}"
        )


if __name__ == "__main__":
    main()
