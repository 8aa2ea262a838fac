"""Wall time of one small sweep under different worker x thread plans (run by hand, not a test).

    PYTHONPATH=src python benchmarks/sweep_plan.py [--trials 4] [--epochs 1]

Trains the same Fashion-MNIST trials (784-256-10, Adam, one seed each) with 1x1, 1xC, Cx1 and the
oversubscribed Cx C plan (C = usable cores), each into a fresh temporary runs folder, and prints
the seconds per plan. The oversubscribed plan bypasses plan_workers on purpose: it is what the
sweep refuses to do. On a shared machine, note the load average printed with the numbers.
"""

import argparse
import os
import tempfile
import time

from quicknets.sweeps.pool import Job, run_jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    base = {"network": "784-256-10", "epochs": args.epochs}
    trials = [{"lr": 0.001 * (i + 1), "seed": 0} for i in range(args.trials)]
    plans = [(1, 1), (1, cores), (cores, 1), (cores, cores)]
    print(
        f"{args.trials} trials x {args.epochs} epoch(s) on {cores} cores; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    for workers, threads in plans:
        with tempfile.TemporaryDirectory() as runs:
            start = time.perf_counter()
            jobs = [Job(base, t, "bench", "test_accuracy", threads, runs) for t in trials]
            run_jobs(jobs, workers, threads)
            seconds = time.perf_counter() - start
        note = "  (oversubscribed)" if workers * threads > cores else ""
        print(f"{workers} worker(s) x {threads} thread(s): {seconds:6.1f} s{note}")


if __name__ == "__main__":
    main()
