"""Sweeps: many ordinary recorded runs over a grid, random draws or an Optuna search.

    groups = sweep({"epochs": 2}, grid={"model": ["784-256-10", "784-512-256-10"],
                                        "lr": [0.001, 0.003]}, seeds=2)
    groups[0]["settings"], groups[0]["test_accuracy"]        # the best variant: (mean, std)

Any setting of DataConfig, ModelConfig or TrainConfig can vary: a list of values, or a Range
(`Range(1e-4, 1e-2, log=True)`) for random and Optuna search. Each trial is one run record in the
runs folder, tagged with the sweep's name; the table is read back from those records and ranks
the variants by the mean over seeds. Trials run in worker processes, the free cores divided
between them (workers x threads <= cores): two PyTorch processes that each take every core slow
each other down several times. Optuna trials share a study in an SQLite file in the runs folder
or, with storage="postgresql://...", in a database that workers on other machines join.
"""
import itertools
import os
import random
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields

from quicknets.config import FIELDS as SECTION_OF, SECTIONS, RunConfig, make, setting
from quicknets.errors import QuicknetsError

FIELDS = {f.name: (part, f) for part, cls in SECTIONS.items() for f in fields(cls)}


@dataclass
class Range:
    """A numeric interval for random and Optuna search (log: sampled uniformly in log space)."""
    low: float
    high: float
    log: bool = False


def convert(key: str, value):
    """One value of a setting, checked and typed by its config class."""
    return getattr(make(SECTIONS[SECTION_OF[key]], {key: value}), key)


def parse_values(key: str, text: str):
    """'0.001,0.003' → [0.001, 0.003]; for numbers also 'LOW:HIGH' or 'log:LOW:HIGH' → Range."""
    key = setting(key)
    kind = FIELDS[key][1].type
    if kind in (int, float) and ":" in text:
        parts = text.split(":")
        log = parts[0] == "log"
        parts = parts[1:] if log else parts
        if len(parts) != 2:
            raise QuicknetsError(f"--{key.replace('_', '-')} range must be LOW:HIGH or "
                                 f"log:LOW:HIGH, got {text!r}")
        low, high = convert(key, parts[0]), convert(key, parts[1])
        if not low < high or (log and low <= 0):
            raise QuicknetsError(f"--{key.replace('_', '-')} range {text!r}: need LOW < HIGH "
                                 f"(and LOW > 0 on a log scale)")
        return Range(low, high, log)
    return [convert(key, v.strip()) for v in text.split(",") if v.strip()]


def normalise_space(space: dict) -> dict:
    """Keys as setting names, values as checked lists or Ranges (from Python or TOML)."""
    out = {}
    for key, values in (space or {}).items():
        key = setting(key)
        if isinstance(values, Range):
            out[key] = Range(convert(key, values.low), convert(key, values.high), values.log)
        elif isinstance(values, dict):  # TOML: lr = {low = 1e-4, high = 1e-2, log = true}
            out[key] = Range(convert(key, values["low"]), convert(key, values["high"]),
                             bool(values.get("log", False)))
        elif isinstance(values, str):
            out[key] = parse_values(key, values)
        elif isinstance(values, (list, tuple)):
            out[key] = [convert(key, v) for v in values]
        else:
            out[key] = [convert(key, values)]
        if isinstance(out[key], list) and not out[key]:
            raise QuicknetsError(f"no values given for {key}")
        if isinstance(out[key], list):
            _refuse_repeats(key, out[key])
    return out


def _refuse_repeats(key: str, values: list) -> None:
    """A repeated value would train the same run twice and count it as two seeds."""
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise QuicknetsError(f"{key} lists {', '.join(repeated)} more than once")


def seed_list(seeds) -> list:
    """3 → [0, 1, 2]; a list is taken as it is."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise QuicknetsError(f"seeds must be at least 1, got {seeds}")
        return list(range(seeds))
    seeds = [convert("seed", s) for s in seeds]
    _refuse_repeats("seeds", seeds)
    return seeds


def grid_trials(space: dict, seeds: list) -> list:
    """Every combination of the listed values, each with every seed (seeds vary fastest)."""
    ranges = [k for k, v in space.items() if isinstance(v, Range)]
    if ranges:
        raise QuicknetsError(f"a grid needs lists of values; {', '.join(ranges)} is a range "
                             f"(use --search random or optuna)")
    keys = list(space)
    return [{**dict(zip(keys, combo)), "seed": seed}
            for combo in itertools.product(*(space[k] for k in keys)) for seed in seeds]


def draw(value, rng: random.Random):
    if isinstance(value, list):
        return rng.choice(value)
    if isinstance(value.low, int) and isinstance(value.high, int) and not value.log:
        return rng.randint(value.low, value.high)
    if value.log:
        import math
        x = math.exp(rng.uniform(math.log(value.low), math.log(value.high)))
    else:
        x = rng.uniform(value.low, value.high)
    return round(x) if isinstance(value.low, int) else float(f"{x:.4g}")  # readable names


def random_trials(space: dict, n: int, seeds: list, draw_seed: int = 0) -> list:
    """`n` random variants (drawn by `draw_seed`), each with every seed."""
    rng = random.Random(draw_seed)
    variants = [{k: draw(v, rng) for k, v in space.items()} for _ in range(n)]
    return [{**v, "seed": seed} for v in variants for seed in seeds]


def plan_workers(n_trials: int, workers: int = 0, threads: int = 0, cores: int = 0,
                 free: int = 0) -> tuple:
    """(workers, threads per worker) with workers x threads <= cores. By default one
    single-threaded worker per free core (cores not busy with other work; small nets gain
    little from a second thread); more workers than cores is refused."""
    from quicknets.machine import free_cores, usable_cores
    cores = cores or usable_cores()
    free = free or free_cores()
    if workers < 0 or threads < 0:
        raise QuicknetsError(f"workers and threads must be at least 1 (0: choose for me), got "
                             f"{workers} workers, {threads} threads")
    if workers > cores:
        raise QuicknetsError(f"{workers} workers on {cores} cores would oversubscribe them; "
                             f"use --workers {cores} or fewer")
    workers = workers or max(1, min(n_trials, free // max(1, threads or 1)))
    threads = threads or max(1, min(free, cores) // workers)
    if workers * threads > cores:
        raise QuicknetsError(f"{workers} workers x {threads} threads > {cores} cores: "
                             f"that oversubscribes them")
    return workers, threads


def trial_config(base: dict, overrides: dict, threads: int) -> RunConfig:
    """The RunConfig of one trial: base settings, then the trial's."""
    return RunConfig.build(**{**base, **overrides, "threads": threads})


def init_worker(threads: int) -> None:
    """In each worker process, before torch starts its thread pools. Ctrl-C reaches every
    process of the terminal: an idle worker ignores it (see `interruptible`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


@contextmanager
def ignoring_ctrl_c():
    """Processes started in here ignore Ctrl-C from birth (the setting survives exec), so one
    pressed while a worker is still importing cannot kill it with a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; a caller's thread leaves them be
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def interruptible():
    """Ctrl-C stops a training in a worker (its run is marked interrupted) but not an idle one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_trial(base: dict, overrides: dict, threads: int, runs_dir, name: str, log_to=()) -> dict:
    """Train one recorded trial (in a worker); a failure is reported, not raised."""
    from quicknets.experiment import run
    start = time.perf_counter()
    try:
        with interruptible():
            path, results = run(trial_config(base, overrides, threads), runs_dir,
                                quiet=True, sweep=name, log_to=log_to)
    except QuicknetsError as e:
        return {"overrides": overrides, "error": str(e), "seconds": time.perf_counter() - start}
    return {"overrides": overrides, "run": path.name, "accuracy": results["accuracy"],
            "seconds": time.perf_counter() - start}


def run_trials(base: dict, trials: list, runs_dir, name: str, workers: int, threads: int,
               log=print, log_to=()) -> list:
    """Every trial as a recorded run, `workers` at a time; one line per finished trial."""
    done = []

    def report(result):
        done.append(result)
        what = " ".join(f"{k}={v}" for k, v in result["overrides"].items())
        outcome = (f"error: {result['error']}" if "error" in result
                   else f"test_accuracy {result['accuracy']:.4f}  {result['run']}")
        log(f"trial {len(done)}/{len(trials)} ({result['seconds']:.1f} s)  {what}  {outcome}")

    if workers == 1:  # here, in this process: train() sets the threads from the trial's config
        for overrides in trials:
            report(run_trial(base, overrides, threads, runs_dir, name, log_to))
        return done
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    # spawn, not fork: a forked copy of a process whose torch thread pools already run can hang
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=init_worker, initargs=(threads,)) as pool:
        with ignoring_ctrl_c():  # the workers start on submit
            futures = [pool.submit(run_trial, base, o, threads, runs_dir, name, log_to)
                       for o in trials]
        for future in as_completed(futures):
            report(future.result())
    return done


def choose_metric(metric: str, base: dict) -> str:
    """auto: the validation accuracy when there is a validation split, else test accuracy."""
    from quicknets.metrics import metric_name
    if metric == "auto":
        return "val_accuracy" if float(base.get("val_split", 0) or 0) > 0 else "test_accuracy"
    return metric_name(metric)


def results_table(name: str, runs_dir=None, metric: str = "test_accuracy") -> tuple:
    """(ranked groups over seeds, differing setting names) of a sweep's finished trials."""
    from quicknets.comparison import compare_runs, rank
    from quicknets.runs import list_runs
    runs = list_runs(runs_dir, sweep=name)
    if not runs:
        raise QuicknetsError(f"sweep {name!r} has no finished runs")
    table = compare_runs(runs)
    return rank(table["groups"], metric), table["differing"]


def check_base(base: dict) -> dict:
    return {setting(k): convert(setting(k), v) for k, v in (base or {}).items()}


def new_name() -> str:
    return f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"


def sweep(base: dict | None = None, grid: dict | None = None, seeds=1, *, search: str = "grid",
          trials: int = 10, workers: int = 0, threads: int = 0, runs_dir=None,
          name: str | None = None, storage: str | None = None, metric: str = "auto",
          prune: bool = True, draw_seed: int = 0, log=print, log_to=()) -> list:
    """Run a sweep and return its variants ranked best first: dicts with `settings`, `n`,
    `names`, `seeds` and each metric as (mean, std). See the module docstring."""
    base, space, seeds = check_base(base), normalise_space(grid), seed_list(seeds)
    metric = choose_metric(metric, base)
    if "seed" in space:
        raise QuicknetsError("vary the seed with seeds=N (--seeds N), not as a setting")
    name = name or new_name()
    if search == "optuna":
        from quicknets.optuna_search import optuna_sweep
        return optuna_sweep(base, space, seeds, trials, workers, threads, runs_dir, name, storage,
                     metric, prune, log, log_to)
    elif search in ("grid", "random"):
        plan = grid_trials(space, seeds) if search == "grid" else \
            random_trials(space, trials, seeds, draw_seed)
        n_workers, n_threads = plan_workers(len(plan), workers, threads)
        log(f"sweep {name}: {len(plan) // len(seeds)} variants x {len(seeds)} seed(s) = "
            f"{len(plan)} runs; {n_workers} worker(s) x {n_threads} thread(s)")
        start = time.perf_counter()
        run_trials(base, plan, runs_dir, name, n_workers, n_threads, log, log_to)
        log(f"sweep {name}: {len(plan)} runs in {time.perf_counter() - start:.1f} s")
    else:
        raise QuicknetsError(f"search must be grid, random or optuna, got {search!r}")
    groups, _ = results_table(name, runs_dir, metric)
    return groups
