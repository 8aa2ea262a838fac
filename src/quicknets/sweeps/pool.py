"""How a sweep runs: each trial a Job, trained in worker processes, the cores divided between them.

    workers, threads = plan_workers(len(jobs))          # workers x threads <= cores
    outcomes, stopped = run_jobs(jobs, workers, threads, tell=print_line)

`execute(work, tasks, workers, threads, tell)` is the one pool for every kind of search: it
calls `work(task, tell, stop)` for each task, here in this process for one worker, else in
spawned worker processes, and `tell(outcome)` here for every finished trial, whichever process
trained it. A grid's task is one Job; an Optuna worker's task takes trials from the study.

Spawn, not fork: a forked copy of a process whose torch thread pools already run can hang. Two
PyTorch processes that each take every core slow each other down several times, hence the plan.
Ctrl-C reaches every process of the terminal: a worker lets it stop a training (the run is
marked interrupted) and ignores it otherwise; the sweep then sets `stop`, so no worker starts
another trial, and a training still running stops after its epoch. A second Ctrl-C ends the
workers at once (their runs then show as stopped, resumable).
"""

import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from quicknets.base.errors import QuicknetsError
from quicknets.base.interrupts import ctrl_c_deferred, watch_ctrl_c
from quicknets.evaluation.metric_names import upgrade_history
from quicknets.training.stackable import stack_key

WORKER_NAME = "quicknets-sweep-worker"  # a spawned worker knows itself by it from its start
REIMPORT_EXIT = 86  # a worker's exit status when re-importing the main script ran a sweep
GUARD = (
    'a script that runs a sweep must call it under `if __name__ == "__main__":` (each '
    "worker process imports the script again, and would start the sweep again)"
)


@dataclass(frozen=True)
class Job:
    """One training of a sweep, all that a worker process needs (it is pickled to it)."""

    base: dict  # the sweep's fixed settings
    overrides: dict  # this trial's settings, its seed included
    sweep: str  # the sweep's name, recorded with the run
    metric: str  # the metric reported back (metric_names.METRICS)
    threads: int = 1  # PyTorch threads in the worker
    runs_dir: str | None = None
    log_to: tuple = ()  # tensorboard, mlflow
    resume: str | None = None  # a stopped run of this trial, continued instead of a new one

    def config(self):
        from quicknets.config.configs import RunConfig

        return RunConfig.build(**{**self.base, **self.overrides, "threads": self.threads})


@dataclass
class Outcome:
    """A finished trial, as it is told to the sweep's process."""

    settings: dict  # the trial's settings (with its seed for a single run)
    status: str  # done, failed, pruned or interrupted
    seconds: float
    runs: list = field(default_factory=list)  # the run folders it made
    value: float | None = None  # the metric (an Optuna trial: the mean over its seeds)
    message: str = ""  # why it failed, was pruned or was interrupted
    number: int | None = None  # a trial's number in its study
    retry_of: int | None = None  # the study's trial this one trains again (its worker died)
    values: list = field(default_factory=list)  # a study trial's metric, per seed
    history: list = field(default_factory=list)  # a finished run's per-epoch history
    test: dict = field(default_factory=dict)  # test accuracy, loss, balanced accuracy, images


def plan_workers(
    n_trials: int, workers: int = 0, threads: int = 0, cores: int = 0, free: int = 0
) -> tuple:
    """(workers, threads per worker) with workers x threads <= cores. By default one
    single-threaded worker per free core (cores not busy with other work; small nets gain
    little from a second thread); more workers than cores is refused."""
    from quicknets.base.machine import free_cores, usable_cores

    for key, value in (("workers", workers), ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise QuicknetsError(
                f"{key} must be a whole number of at least 1 (0: choose for me), got {value!r}"
            )
    cores = cores or usable_cores()
    if workers > cores:
        raise QuicknetsError(
            f"{workers} workers on {cores} cores would oversubscribe them; "
            f"use --workers {cores} or fewer"
        )
    free = free or free_cores()
    workers = workers or max(1, min(n_trials, free // max(1, threads or 1)))
    threads = threads or max(1, min(free, cores) // workers)
    if workers * threads > cores:
        raise QuicknetsError(
            f"{workers} workers x {threads} threads > {cores} cores: that oversubscribes them"
        )
    return workers, threads


def refuse_reimport() -> None:
    """Stop a worker that is importing the main script again (spawn does that) and meets the
    script's sweep() call: without the guard, every worker would run the whole sweep. Its exit
    status tells the sweep's process, which raises the one error (see execute)."""
    if multiprocessing.current_process().name.startswith(WORKER_NAME):
        raise SystemExit(REIMPORT_EXIT)


@contextmanager
def on_ctrl_c(handler):
    """SIGINT handled by `handler` in here (SIG_IGN, signal.default_int_handler or a function),
    then as before. Processes started while it is ignored ignore it from birth (that survives
    exec), so a Ctrl-C while a worker still imports cannot kill it with a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; a caller's thread leaves them be
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def score(history: list, results: dict, metric: str):
    """A run's value of `metric`, computed as the ranking table computes it."""
    from quicknets.records.comparison import metrics

    return metrics(SimpleNamespace(history=history, results=results))[metric]


def kept(path) -> str:
    """What an interrupted run at `path` (None: none made) keeps, for its trial's line."""
    from quicknets.records.runs import CHECKPOINT_FILE

    if path is None:
        return "stopped before it trained"
    if not (Path(path) / CHECKPOINT_FILE).is_file():
        return "stopped before its first epoch ended: nothing kept, it trains again"
    return "it keeps its last finished epoch"


def train_job(job: Job, stop, on_epoch=None, on_start=None) -> Outcome | None:
    """Train one recorded run; a failure is an Outcome, not an exception. None when the sweep
    is stopping. `on_epoch` (an Optuna pruning check) and `on_start(path)` as experiment.run's."""
    import json

    from quicknets.records.experiment import resume, run

    if stop.is_set():
        return None
    start, runs = time.perf_counter(), []

    def started(path):
        runs.append(path.name)
        if on_start is not None:
            with ctrl_c_deferred():  # a study's trial records its run
                on_start(path)

    def after_epoch(epoch, row):
        if on_epoch is not None:
            with ctrl_c_deferred():  # a pruning check writes to the study
                on_epoch(epoch, row)
        if stop.is_set():  # another trial was interrupted: stop here, resumable
            raise KeyboardInterrupt

    def outcome(status, **more):
        return Outcome(job.overrides, status, time.perf_counter() - start, runs, **more)

    def folder(name):
        from quicknets.records.runs import runs_root

        return runs_root(job.runs_dir) / name

    pressed = []
    try:
        with watch_ctrl_c() as pressed:  # a training stops, marked interrupted
            if job.resume:
                runs.append(job.resume)
                path, results = resume(
                    job.resume, job.runs_dir, threads=job.threads, quiet=True, log_to=job.log_to
                )
            else:
                path, results = run(
                    job.config(),
                    job.runs_dir,
                    quiet=True,
                    sweep=job.sweep,
                    log_to=job.log_to,
                    on_start=started,
                    on_epoch=after_epoch,
                )
    except KeyboardInterrupt:  # the sweep's own message says how to continue
        stop.set()
        return outcome("interrupted", message=kept(folder(runs[-1]) if runs else None))
    except Exception as e:  # one trial's failure is reported, the others go on
        if pressed:  # Ctrl-C inside torch.save comes out as a RuntimeError; the checkpoint
            # of the epoch before is intact (written atomically): the run is resumable
            from quicknets.records.runs import mark, runs_root

            if runs:
                mark(runs_root(job.runs_dir) / runs[-1], "interrupted")
            stop.set()
            return outcome("interrupted", message=kept(folder(runs[-1]) if runs else None))
        pruned = type(e).__name__ == "TrialPruned"  # as experiment.py: optuna not imported
        message = str(e).splitlines()[0] if str(e) else ""
        if not pruned and not isinstance(e, QuicknetsError):
            message = f"{type(e).__name__}: {message}"
        return outcome("pruned" if pruned else "failed", message=message)
    history = upgrade_history(json.loads((path / "history.json").read_text()))
    test = {k: results[k] for k in ("accuracy", "loss", "balanced_accuracy", "n") if k in results}
    return outcome("done", value=score(history, results, job.metric), history=history, test=test)


def train_stack(jobs: tuple, stop) -> list:
    """Train jobs planned into one stack (plan_stacks) as one stacked training, each into its
    own run record: an Outcome per job. Where their networks turn out not to stack after all
    (stacked.stack_refusal), each trains apart, said in its Outcome's message."""
    from quicknets.records.experiment import setup_sharing, train_stacked_recorded
    from quicknets.training.stacked import stack_refusal

    if stop.is_set():
        return []
    start, runs = time.perf_counter(), []
    configs, models, loaded = [], [], []
    try:  # one dataset for the variants whose data agree
        set_up = setup_sharing([job.config() for job in jobs])
        configs, models, loaded = (list(x) for x in zip(*set_up))
        reason = stack_refusal(models, [c.train for c in configs], loaded)
    except QuicknetsError as e:
        reason = str(e)
    if reason is not None:  # apart, as without stacking
        outcomes = [train_job(job, stop) for job in jobs]
        for o in outcomes:
            if o is not None:
                o.message = o.message or f"trained apart: {reason}"
        return [o for o in outcomes if o is not None]

    def outcome(job, status, path=None, **more):
        names = [path.name] if path is not None else []
        seconds = (time.perf_counter() - start) / len(jobs)
        return Outcome(job.overrides, status, seconds, names, **more)

    pressed = []
    try:
        with watch_ctrl_c() as pressed:
            done = train_stacked_recorded(
                configs,
                models,
                loaded,
                jobs[0].runs_dir,
                sweep=jobs[0].sweep,
                on_start=lambda path: runs.append(path),
                should_stop=stop.is_set,
            )
    except (Exception, KeyboardInterrupt) as e:  # a failure of the whole stack, or Ctrl-C:
        if isinstance(e, KeyboardInterrupt) or pressed:  # Interrupted is not an Exception
            if not isinstance(e, KeyboardInterrupt):  # raised as another error (train_job)
                from quicknets.records.runs import mark

                for path in runs:
                    mark(path, "interrupted")
            stop.set()
            return [outcome(j, "interrupted", p, message=kept(p)) for j, p in zip(jobs, runs)]
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        return [outcome(j, "failed", p, message=message) for j, p in zip(jobs, runs)]
    outcomes = []
    for job, (path, results) in zip(jobs, done):
        if isinstance(results, QuicknetsError):
            outcomes.append(outcome(job, "failed", path, message=str(results)))
            continue
        history = upgrade_history(json.loads((path / "history.json").read_text()))
        test = {k: results[k] for k in ("accuracy", "loss", "n") if k in results}
        value = score(history, results, job.metric)
        outcomes.append(outcome(job, "done", path, value=value, history=history, test=test))
    return outcomes


def job_worker(job, tell, stop) -> None:
    """The work of a grid or random search: one job, one outcome; or a stack of jobs (a
    tuple, plan_stacks), trained in one step, an outcome each."""
    if isinstance(job, tuple):
        for outcome in train_stack(job, stop):
            tell(outcome)
        return
    outcome = train_job(job, stop)
    if outcome is not None:
        tell(outcome)


def plan_stacks(jobs: list, workers: int) -> tuple:
    """(tasks, plan line): the jobs whose settings stack (stackable.stack_key) grouped, each group
    cut into at most `workers` stacks of near-equal size so that every worker has one; a job
    that continues a stopped run, or stacks with no other, stays alone."""
    groups: dict = {}
    alone, reasons = [], set()
    for job in jobs:
        key = stack_key(job.config()) if job.resume is None else "it continues a stopped run"
        if isinstance(key, str):
            alone.append(job)
            reasons.add(key)
        else:
            groups.setdefault(key, []).append(job)
    tasks: list = []
    for group in groups.values():
        if len(group) == 1:
            alone.append(group[0])
            reasons.add("no other variant of its shape")
            continue
        parts = min(workers, len(group) // 2) or 1  # a stack holds 2 variants or more
        size = -(-len(group) // parts)
        tasks += [tuple(group[i : i + size]) for i in range(0, len(group), size)]
    sizes = [len(t) for t in tasks]
    line = (
        f"stacked: {sum(sizes)} runs in {len(sizes)} stack(s) of {'+'.join(map(str, sizes))}"
        " (one step for each stack's variants; --no-stack trains them apart)"
        if tasks
        else "stacked: none"
    )
    if alone:
        line += f"; {len(alone)} apart ({'; '.join(sorted(reasons))})"
    return tasks + alone, line


def run_jobs(jobs: list, workers: int, threads: int, tell=lambda outcome: None) -> tuple:
    """(outcomes, stopped): every job as a recorded run, `workers` at a time."""
    outcomes = []

    def collect(outcome):
        outcomes.append(outcome)
        tell(outcome)

    stopped = execute(job_worker, jobs, workers, threads, collect)
    return outcomes, stopped


def init_worker(threads: int) -> None:
    """In each worker process, before torch starts its thread pools. Ctrl-C stops a training
    (see train_job) and is ignored otherwise."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def worker_main(work, todo, conn, stop, threads: int) -> None:
    """A worker process: tasks from `todo` until None. It tells the sweep's process through
    its own pipe, (kind, payload); a send is written before it returns, so what a worker said
    arrives even if it is killed next."""
    init_worker(threads)
    tell = lambda outcome: conn.send(("trial", outcome))  # noqa: E731
    while (item := todo.get()) is not None:
        index, task = item
        conn.send(("start", index))
        try:
            work(task, tell, stop)
        except BaseException:  # a bug, not a failed trial (those are Outcomes)
            conn.send(("crash", traceback.format_exc()))
            raise SystemExit(1) from None


def execute(work, tasks: list, workers: int, threads: int, tell) -> bool:
    """Call `work(task, tell, stop)` for every task, `workers` at a time; True if Ctrl-C (or
    an interrupted training) stopped it early."""
    if workers == 1:  # here, in this process: training sets and restores torch's threads
        stop = threading.Event()
        # as in a worker process: Ctrl-C stops a training (train_job), and elsewhere only sets
        # `stop`; raised there, it could leave a study's trial taken and never told
        with on_ctrl_c(lambda signum, frame: stop.set()):
            import torch  # noqa: F401  here, where Ctrl-C cannot cut its import (cli.py)

            for task in tasks:
                work(task, tell, stop)
        return stop.is_set()
    return _execute_spawned(work, tasks, workers, threads, tell)


def _execute_spawned(work, tasks, workers, threads, tell) -> bool:
    from multiprocessing.connection import wait

    # A worker ended after Ctrl-C (terminate, below) can leave a semaphore that multiprocessing's
    # resource tracker then removes at exit, with a warning in the user's terminal; it starts
    # with this process's -W options, so its cleanup stays quiet.
    quiet = "ignore::UserWarning:multiprocessing.resource_tracker"
    if quiet not in sys.warnoptions:
        sys.warnoptions.append(quiet)
    ctx = multiprocessing.get_context("spawn")
    todo, stop, pressed = ctx.Queue(), ctx.Event(), []
    todo.cancel_join_thread()  # tasks left over when the sweep stops are dropped at exit
    for item in [*enumerate(tasks), *[None] * workers]:
        todo.put(item)
    running = {}  # a worker's pipe -> [its process, the index of its task]
    with on_ctrl_c(signal.SIG_IGN):
        for i in range(workers):
            reader, writer = ctx.Pipe(duplex=False)
            p = ctx.Process(
                target=worker_main,
                name=f"{WORKER_NAME}-{i}",
                args=(work, todo, writer, stop, threads),
            )
            p.start()
            writer.close()  # the worker's copy is the only one: end of file once it is gone
            running[reader] = [p, None]

    def gone(p, index):
        p.join()
        if p.exitcode == REIMPORT_EXIT:
            raise QuicknetsError(f"sweep() ran again in a worker process: {GUARD}")
        if p.exitcode != 0:
            how = f"signal {-p.exitcode}" if p.exitcode < 0 else f"exit status {p.exitcode}"
            task = tasks[index] if index is not None else None
            tell(
                Outcome(
                    getattr(task, "overrides", {}),
                    "failed",
                    0.0,
                    message=f"its worker process stopped ({how}; out of memory?)",
                )
            )

    try:
        # Ctrl-C here only sets `stop`: no worker starts another trial, and the trainings
        # (stopped by the same Ctrl-C, or after their epoch) report back before we return.
        with on_ctrl_c(lambda signum, frame: pressed.append(signum)):
            while running:
                for reader in wait(list(running), timeout=0.2):
                    try:
                        kind, payload = reader.recv()
                    except EOFError:  # the worker has exited
                        kind, payload = "gone", running.pop(reader)
                    if kind == "gone":
                        gone(*payload)
                    elif kind == "trial":
                        tell(payload)
                    elif kind == "start":
                        running[reader][1] = payload
                    else:
                        raise RuntimeError(f"a sweep worker failed:\n{payload}")
                if pressed:
                    stop.set()
                if len(pressed) > 1:  # a second Ctrl-C: no more waiting (see finally)
                    raise KeyboardInterrupt
        return stop.is_set()
    finally:  # after an error, a worker still alive stops after its epoch, or is ended
        stop.set()
        for p, _ in running.values():
            p.join(timeout=0 if len(pressed) > 1 else 5)
            if p.is_alive():
                p.terminate()
                p.join()
