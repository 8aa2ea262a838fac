"""Sweeps: many ordinary recorded runs over a grid, random draws or an Optuna search.

    groups = sweep({"epochs": 2}, grid={"network": ["784-256-10", "784-512-256-10"],
                                        "lr": [0.001, 0.003]}, seeds=2, name="first")
    groups[0]["settings"], groups[0]["test_accuracy"]        # the best variant: (mean, std)
    groups = resume_sweep("first")          # after Ctrl-C: only the runs not finished yet
    sweep(..., name="g", storage="postgresql://user@host/db")   # the same on every machine
    print(format_sweep(load_sweep("g", storage="postgresql://user@host/db")))  # from anywhere

Any setting of the run config can vary: a list of values, or a Range
(`Range(1e-4, 1e-2, log=True)`) for random and Optuna search. Each trial is one run record in the
runs folder, tagged with the sweep's name; the table is read back from those records and ranks
the variants by the mean over seeds, in the metric's direction. A trial that fails is marked
failed and ranked last with its reason; the others run. A name is used once: the sweep's plan is
saved as runs/sweeps/NAME.json (and a study keeps it too), which `resume_sweep` reads.

With `storage` (a database URL or a journal file), every kind of search puts its trials in one
study that workers on many machines share: each trial runs once, a dead worker's trial is
trained again by another, and `load_sweep` ranks them all from the study, on any machine.

The package: space.py says what to try, pool.py runs trials in worker processes, study.py is
the shared study and its workers' loop, optuna_search.py what TPE proposes and prunes, view.py
the whole sweep read back (table, figures). A script that calls sweep() with several workers must do
so under `if __name__ == "__main__":`: each spawned worker imports the script again.

May import: base, data, config, networks, evaluation, plots, training, records.
"""

import dataclasses
import time

from quicknets.base.errors import Interrupted, QuicknetsError
from quicknets.evaluation.metric_names import higher_is_better
from quicknets.sweeps.pool import (
    Job,
    Outcome,
    plan_stacks,
    plan_workers,
    refuse_reimport,
    run_jobs,
)
from quicknets.sweeps.record import (
    check_name,
    continue_command,
    load_record,
    new_name,
    refuse_used_name,
    release_name,
    save_record,
)
from quicknets.sweeps.space import Range, Search, check_stack, whole_number
from quicknets.sweeps.view import format_ranking, format_sweep, load_sweep, trial_settings

__all__ = [
    "sweep",
    "resume_sweep",
    "load_sweep",
    "format_ranking",
    "format_sweep",
    "Range",
    "Search",
]


def sweep(
    base: dict | None = None,
    grid: dict | None = None,
    seeds=1,
    *,
    search: str = "grid",
    trials: int = 10,
    workers: int = 0,
    threads: int = 0,
    runs_dir=None,
    name: str | None = None,
    storage: str | None = None,
    metric: str = "auto",
    prune: bool = True,
    draw_seed: int = 0,
    heartbeat: int = 10,
    log=print,
    log_to=(),
    stack: bool = True,
) -> list:
    """Run a new sweep and return its variants ranked best first: dicts with `settings`, `n`,
    `names`, `seeds`, each metric as (mean, std), and `state`/`message` for those that did not
    finish. `grid` holds the settings varied (for every kind of search). A grid or random
    search without `storage` trains the variants that share a network's shape in one step
    (training/stacked.py: seeds, lr, weight decay, dropout, ...), each still its own run
    record; `stack=False` trains every run apart. With `storage`, the
    trials go through that study (a study of that name with the same plan is joined), whose
    workers beat every `heartbeat` seconds. See the module docstring; Ctrl-C raises
    Interrupted, whose message says how to continue."""
    refuse_reimport()
    check_stack(stack)
    spec = Search.build(base, grid, seeds, search, trials, draw_seed, metric, prune)
    name = check_name(name) if name is not None else new_name()
    whole_number("heartbeat", heartbeat, 1, " (seconds)")
    refuse_used_name(name, runs_dir)
    url, created = None, False
    if spec.kind == "optuna" or storage:
        from quicknets.sweeps.study import create_study, storage_url

        url = storage_url(storage, runs_dir)
        created = create_study(url, name, spec, heartbeat)
        if not created:
            log(f"sweep {name}: joining the study another worker created with this plan")
    save_record(name, spec, runs_dir, storage)
    try:
        if url:
            return _study(name, spec, url, workers, threads, runs_dir, log, log_to, storage)
        jobs = [
            Job(spec.base, o, name, spec.metric, runs_dir=runs_dir, log_to=tuple(log_to))
            for o in spec.plan()
        ]
        variants = len(jobs) // len(spec.seeds)
        return _run(
            name,
            spec,
            jobs,
            workers,
            threads,
            runs_dir,
            log,
            f"{variants} variants x {len(spec.seeds)} seed(s) = {len(jobs)} runs",
            stack,
        )
    except QuicknetsError:  # e.g. too many workers: a sweep that made no run keeps no name
        release_name(name, runs_dir, url if created else None)
        raise


def resume_sweep(
    name: str,
    *,
    workers: int = 0,
    threads: int = 0,
    runs_dir=None,
    storage: str | None = None,
    log=print,
    log_to=(),
    stack: bool = True,
) -> list:
    """Continue a sweep by its name and return its ranked table (`stack` as in sweep). A grid
    or random search without a study trains only the trials without a finished run (a stopped
    run continues from its checkpoint); a sweep with a study takes the trials still queued in
    it, those of stopped workers included (`storage` names it, where another machine may have
    made it)."""
    refuse_reimport()
    check_stack(stack)
    name = check_name(name)
    record = load_record(name, runs_dir)
    if record is None or record["search"]["kind"] == "optuna" or record["storage"]:
        return _join_study(name, record, runs_dir, storage, workers, threads, log, log_to)
    spec = Search.from_dict(record["search"])
    jobs, finished, running = remaining_jobs(name, spec, runs_dir, log_to)
    resumed = sum(job.resume is not None for job in jobs)
    total = len(spec.plan())
    still = f", {running} still training elsewhere" if running else ""
    return _run(
        name,
        spec,
        jobs,
        workers,
        threads,
        runs_dir,
        log,
        f"{finished} of {total} runs finished{still}; continuing {len(jobs)} "
        f"({resumed} from their checkpoints)",
        stack,
    )


def _join_study(name, record, runs_dir, storage, workers, threads, log, log_to) -> list:
    """Continue a sweep with a study (this runs folder's, or one at `storage`), or join one
    another machine started."""
    from quicknets.records.runs import runs_root
    from quicknets.sweeps.study import load_search, storage_url, study_exists

    root = runs_root(runs_dir)
    if record is not None and record["storage"] and not storage:
        raise QuicknetsError(f"sweep {name}'s study is in a database: give its --storage URL")
    if record is None and not storage:  # only this runs folder's study file could hold it
        local = root / "optuna.sqlite3"  # (opening a file that is not there would create it)
        if not (local.is_file() and study_exists(storage_url(None, runs_dir), name)):
            from quicknets.records import index

            old = index.query(root, status="all", sweep=name)
            raise QuicknetsError(
                f"sweep {name!r} was made by an earlier quicknets that did "
                f"not save its plan; it cannot be resumed"
                if old
                else f"no sweep named {name!r} in {root} to resume"
            )
    url = storage_url(storage, runs_dir)
    spec, _ = load_search(url, name)
    if record is None:  # this runs folder now knows the sweep
        save_record(name, spec, runs_dir, storage)
    return _study(name, spec, url, workers, threads, runs_dir, log, log_to, storage)


def _run(name, spec, jobs, workers, threads, runs_dir, log, what, stack=True) -> list:
    """Train a grid's or random search's jobs, those of one shape stacked (plan_stacks) unless
    `stack` is False; the table of the sweep's finished runs."""
    workers, threads = plan_workers(len(jobs), workers, threads)
    jobs = [dataclasses.replace(job, threads=threads) for job in jobs]
    tasks, stacking = plan_stacks(jobs, workers) if stack else (jobs, "stacked: no (--no-stack)")
    workers = min(workers, len(tasks))
    log(f"sweep {name}: {what}; {stacking}; {workers} worker(s) x {threads} thread(s)")
    start, told = time.perf_counter(), []

    def tell(outcome):
        told.append(outcome)
        log(trial_line(outcome, len(told), len(jobs), spec.metric))

    outcomes, stopped = run_jobs(tasks, workers, threads, tell)
    failed = [o for o in outcomes if o.status == "failed"]
    if stopped:
        stopped_runs = sum(o.status == "interrupted" for o in outcomes)
        raise Interrupted(
            f"sweep {name}: {stopped_runs} run(s) interrupted, "
            f"{len(jobs) - len(outcomes)} not started; continue it with "
            f"`{continue_command(name, runs_dir)}`"
        )
    log(
        f"sweep {name}: {len(jobs)} runs in {time.perf_counter() - start:.1f} s"
        + (f", {len(failed)} failed" if failed else "")
    )
    return results_table(name, runs_dir, spec, failed, log)


def _study(name, spec, url, workers, threads, runs_dir, log, log_to, storage) -> list:
    """Take trials from the sweep's study until none is left; the whole study's table."""
    from quicknets.sweeps.study import load_search, where
    from quicknets.sweeps.view import from_study
    from quicknets.sweeps.worker import run_study

    total = spec.trials if spec.kind == "optuna" else len(spec.plan())
    workers, threads = plan_workers(total, workers, threads)
    _, heartbeat = load_search(url, name)  # the study's: every worker judges beats alike
    plan = f"{workers} worker(s) x {threads} thread(s); study at {where(url)}"
    if spec.kind == "optuna":
        direction = "maximize" if higher_is_better(spec.metric) else "minimize"
        log(
            f"sweep {name}: Optuna TPE{' with pruning' if spec.prune else ''}, up to "
            f"{spec.trials} trials x {len(spec.seeds)} seed(s), {spec.metric} to {direction}; "
            f"{plan}"
        )
    else:
        log(
            f"sweep {name}: {spec.kind} search, {total // len(spec.seeds)} variants x "
            f"{len(spec.seeds)} seed(s) = {total} trials, each taken by one worker; {plan}"
        )
    job = Job(spec.base, {}, name, spec.metric, threads, runs_dir, tuple(log_to))
    start = time.perf_counter()
    stopped = run_study(
        url,
        name,
        spec,
        job,
        workers,
        threads,
        lambda o: log(trial_line(o, 0, total, spec.metric)),
        heartbeat,
    )
    if stopped:
        raise Interrupted(
            f"sweep {name}: stopped; its interrupted runs keep their last "
            f"finished epoch; continue the study with "
            f"`{continue_command(name, runs_dir, storage)}`"
        )
    log(f"sweep {name}: done in {time.perf_counter() - start:.1f} s")
    view = from_study(url, name, runs_dir)
    for note in view.notes:
        log(note)
    return view.groups


def trial_line(outcome: Outcome, count: int, total: int, metric: str) -> str:
    """`trial 3/8 (1.2 s)  lr=0.001 seed=0  test_accuracy 0.8530  RUN`, or why it stopped."""
    number = outcome.number + 1 if outcome.number is not None else count
    head = (
        f"trial {number}/{total}"
        if outcome.retry_of is None
        else f"trial {number} (trial {outcome.retry_of + 1} again)"
    )
    from quicknets.records.comparison import fmt, label

    what = label(outcome.settings, list(outcome.settings))
    if outcome.status == "done":
        result = f"{metric} {fmt(outcome.value)}"  # `nan (diverged)` said as such
    else:
        result = f"{outcome.status}: {outcome.message}"
    runs = "  " + " ".join(outcome.runs) if outcome.runs else ""
    return f"{head} ({outcome.seconds:.1f} s)  {what}  {result}{runs}"


def results_table(name: str, runs_dir, spec: Search, failed: list, log=print) -> list:
    """The sweep's finished runs grouped over seeds, and its failed trials, ranked; a run left
    out (unreadable, or counted once) is logged with why."""
    from quicknets.records.comparison import compare_runs, rank
    from quicknets.records.runs import list_runs
    from quicknets.sweeps.view import unfinished_groups

    skipped = []
    runs = list_runs(runs_dir, sweep=name, skipped=skipped)
    table = compare_runs(runs, skipped) if runs else {"groups": [], "skipped": skipped}
    for line in table["skipped"]:
        log(f"skipped {line}")
    groups = table["groups"]
    failed = [(trial_settings(spec.base, o.settings), "failed", o.message, o.runs) for o in failed]
    return rank(groups + unfinished_groups(failed), spec.metric)


def remaining_jobs(name: str, spec: Search, runs_dir, log_to) -> tuple:
    """(jobs, finished, running) of a grid or random sweep being resumed: a job per trial
    without a finished run, continuing its stopped run where one kept a checkpoint."""
    from quicknets.records import index
    from quicknets.records.runs import CHECKPOINT_FILE, runs_root

    root = runs_root(runs_dir)
    rows = index.query(root, status="all", sweep=name)
    jobs, finished, running = [], 0, 0
    for overrides in spec.plan():
        want = trial_settings(spec.base, overrides)
        mine = [r for r in rows if all(r["settings"].get(k) == v for k, v in want.items())]
        statuses = {r["status"] for r in mine}
        if "done" in statuses or "running" in statuses:
            finished += "done" in statuses
            running += "done" not in statuses
            continue
        stopped = [
            r["name"]
            for r in mine
            if (root / r["name"] / CHECKPOINT_FILE).is_file()
            and r["status"] in ("interrupted", "stopped", "pruned")
        ]
        jobs.append(
            Job(
                spec.base,
                overrides,
                name,
                spec.metric,
                runs_dir=runs_dir,
                log_to=tuple(log_to),
                resume=stopped[-1] if stopped else None,
            )
        )
    return jobs, finished, running
