"""Sweeps: many ordinary recorded runs over a grid, random draws or an Optuna search.

    groups = sweep({"epochs": 2}, grid={"network": ["784-256-10", "784-512-256-10"],
                                        "lr": [0.001, 0.003]}, seeds=2, name="first")
    groups[0]["settings"], groups[0]["test_accuracy"]        # the best variant: (mean, std)
    groups = resume_sweep("first")          # after Ctrl-C: only the runs not finished yet

Any setting of the run config can vary: a list of values, or a Range
(`Range(1e-4, 1e-2, log=True)`) for random and Optuna search. Each trial is one run record in the
runs folder, tagged with the sweep's name; the table is read back from those records and ranks
the variants by the mean over seeds, in the metric's direction. A trial that fails is marked
failed and ranked last with its reason; the others run. A name is used once: the sweep's plan is
saved as runs/sweeps/NAME.json (and an Optuna study keeps it too), which `resume_sweep` reads.

The package: space.py says what to try, pool.py runs trials in worker processes, and
optuna_search.py is the Optuna search. A script that calls sweep() with several workers must do
so under `if __name__ == "__main__":`: each spawned worker imports the script again.
"""
import dataclasses
import json
import re
import time

from quicknets.errors import Interrupted, QuicknetsError
from quicknets.sweeps.pool import Job, Outcome, plan_workers, refuse_reimport, run_jobs
from quicknets.sweeps.space import Range, Search

__all__ = ["sweep", "resume_sweep", "format_ranking", "Range", "Search"]

RECORDS = "sweeps"  # runs/sweeps/NAME.json: each sweep's Search, for --resume-sweep


def sweep(base: dict | None = None, grid: dict | None = None, seeds=1, *, search: str = "grid",
          trials: int = 10, workers: int = 0, threads: int = 0, runs_dir=None,
          name: str | None = None, storage: str | None = None, metric: str = "auto",
          prune: bool = True, draw_seed: int = 0, log=print, log_to=()) -> list:
    """Run a new sweep and return its variants ranked best first: dicts with `settings`, `n`,
    `names`, `seeds`, each metric as (mean, std), and `state`/`message` for those that did not
    finish. `grid` holds the settings varied (for every kind of search). See the module
    docstring; Ctrl-C raises Interrupted, whose message says how to continue."""
    refuse_reimport()
    spec = Search.build(base, grid, seeds, search, trials, draw_seed, metric, prune)
    name = check_name(name) if name is not None else new_name()
    refuse_used_name(name, runs_dir)
    url = None
    if spec.kind == "optuna":
        from quicknets.sweeps.optuna_search import create_study, storage_url
        url = storage_url(storage, runs_dir)
        create_study(url, name, spec)
    save_record(name, spec, runs_dir, storage)
    try:
        if url:
            return _optuna(name, spec, url, workers, threads, runs_dir, log, log_to)
        jobs = [Job(spec.base, o, name, spec.metric, runs_dir=runs_dir, log_to=tuple(log_to))
                for o in spec.plan()]
        variants = len(jobs) // len(spec.seeds)
        return _run(name, spec, jobs, workers, threads, runs_dir, log,
                    f"{variants} variants x {len(spec.seeds)} seed(s) = {len(jobs)} runs")
    except QuicknetsError:  # e.g. too many workers: a sweep that made no run keeps no name
        release_name(name, runs_dir, url)
        raise


def resume_sweep(name: str, *, workers: int = 0, threads: int = 0, runs_dir=None,
                 storage: str | None = None, log=print, log_to=()) -> list:
    """Continue a sweep by its name and return its ranked table. A grid or random search
    trains only the trials without a finished run (a stopped run continues from its
    checkpoint); an Optuna search takes trials until its study holds `trials` (`storage`
    names its database, where another machine may have created it)."""
    refuse_reimport()
    name = check_name(name)
    record = load_record(name, runs_dir)
    if record is None or record["search"]["kind"] == "optuna":
        return _join_study(name, record, runs_dir, storage, workers, threads, log, log_to)
    spec = Search.from_dict(record["search"])
    jobs, finished, running = remaining_jobs(name, spec, runs_dir, log_to)
    resumed = sum(job.resume is not None for job in jobs)
    total = len(spec.plan())
    still = f", {running} still training elsewhere" if running else ""
    return _run(name, spec, jobs, workers, threads, runs_dir, log,
                f"{finished} of {total} runs finished{still}; continuing {len(jobs)} "
                f"({resumed} from their checkpoints)")


def _join_study(name, record, runs_dir, storage, workers, threads, log, log_to) -> list:
    """Continue an Optuna sweep of this runs folder, or join one another machine started."""
    from quicknets.runs import runs_root
    from quicknets.sweeps.optuna_search import load_search, storage_url, study_exists
    root = runs_root(runs_dir)
    if record is not None and record["storage"] and not storage:
        raise QuicknetsError(f"sweep {name}'s study is in a database: give its --storage URL")
    if record is None and not storage:  # only this runs folder's study file could hold it
        local = root / "optuna.sqlite3"  # (opening a file that is not there would create it)
        if not (local.is_file() and study_exists(storage_url(None, runs_dir), name)):
            from quicknets import index
            old = index.query(root, status="all", sweep=name)
            raise QuicknetsError(f"sweep {name!r} was made by an earlier quicknets that did "
                                 f"not save its plan; it cannot be resumed" if old else
                                 f"no sweep named {name!r} in {root} to resume")
    url = storage_url(storage, runs_dir)
    spec = load_search(url, name)
    if record is None:  # this runs folder now knows the sweep
        save_record(name, spec, runs_dir, storage)
    return _optuna(name, spec, url, workers, threads, runs_dir, log, log_to)


def _run(name, spec, jobs, workers, threads, runs_dir, log, what) -> list:
    """Train a grid's or random search's jobs; the table of the sweep's finished runs."""
    workers, threads = plan_workers(len(jobs), workers, threads)
    log(f"sweep {name}: {what}; {workers} worker(s) x {threads} thread(s)")
    jobs = [dataclasses.replace(job, threads=threads) for job in jobs]
    start, told = time.perf_counter(), []

    def tell(outcome):
        told.append(outcome)
        log(trial_line(outcome, len(told), len(jobs), spec.metric))
    outcomes, stopped = run_jobs(jobs, workers, threads, tell)
    failed = [o for o in outcomes if o.status == "failed"]
    if stopped:
        stopped_runs = sum(o.status == "interrupted" for o in outcomes)
        raise Interrupted(f"sweep {name}: {stopped_runs} run(s) interrupted, "
                          f"{len(jobs) - len(outcomes)} not started; continue it with "
                          f"`{continue_command(name, runs_dir)}`")
    log(f"sweep {name}: {len(jobs)} runs in {time.perf_counter() - start:.1f} s"
        + (f", {len(failed)} failed" if failed else ""))
    return results_table(name, runs_dir, spec, failed)


def _optuna(name, spec, url, workers, threads, runs_dir, log, log_to) -> list:
    from quicknets.metrics import higher_is_better
    from quicknets.sweeps.optuna_search import run_study, study_table, where
    workers, threads = plan_workers(spec.trials, workers, threads)
    direction = "maximize" if higher_is_better(spec.metric) else "minimize"
    log(f"sweep {name}: Optuna TPE{' with pruning' if spec.prune else ''}, up to {spec.trials} "
        f"trials x {len(spec.seeds)} seed(s), {spec.metric} to {direction}; {workers} "
        f"worker(s) x {threads} thread(s); study at {where(url)}")
    job = Job(spec.base, {}, name, spec.metric, threads, runs_dir, tuple(log_to))
    start = time.perf_counter()
    stopped = run_study(url, name, spec, job, workers, threads,
                        lambda o: log(trial_line(o, 0, spec.trials, spec.metric)))
    if stopped:
        raise Interrupted(f"sweep {name}: stopped; its interrupted runs keep their last "
                          f"finished epoch; continue the study with "
                          f"`{continue_command(name, runs_dir)}`")
    log(f"sweep {name}: done in {time.perf_counter() - start:.1f} s")
    return study_table(url, name, spec.metric)


def trial_line(outcome: Outcome, count: int, total: int, metric: str) -> str:
    """`trial 3/8 (1.2 s)  lr=0.001 seed=0  test_accuracy 0.8530  RUN`, or why it stopped."""
    number = outcome.number + 1 if outcome.number is not None else count
    from quicknets.comparison import label
    what = label(outcome.settings, list(outcome.settings))
    if outcome.status == "done":
        value = "-" if outcome.value is None else f"{outcome.value:.4f}"
        result = f"{metric} {value}"
    else:
        result = f"{outcome.status}: {outcome.message}"
    runs = "  " + " ".join(outcome.runs) if outcome.runs else ""
    return f"trial {number}/{total} ({outcome.seconds:.1f} s)  {what}  {result}{runs}"


def trial_settings(base: dict, overrides: dict) -> dict:
    """A trial's settings as the ranking compares runs (comparison.settings)."""
    from quicknets.comparison import IGNORED
    from quicknets.config import RunConfig
    flat = RunConfig.build(**{**base, **overrides}).flat()
    return {k: v for k, v in flat.items() if k not in IGNORED}


def results_table(name: str, runs_dir, spec: Search, failed: list) -> list:
    """The sweep's finished runs grouped over seeds, and its failed trials, ranked."""
    from quicknets.comparison import METRICS, compare_runs, rank
    from quicknets.runs import list_runs
    runs = list_runs(runs_dir, sweep=name)
    groups = compare_runs(runs)["groups"] if runs else []
    by_variant = {}
    for o in failed:
        settings = {k: v for k, v in trial_settings(spec.base, o.settings).items()
                    if k != "seed"}
        group = by_variant.setdefault(repr(sorted(settings.items())), {
            **{m: (None, None) for m in METRICS}, "settings": settings, "names": [],
            "seeds": [], "n": 0, "state": "FAILED", "message": o.message})
        group["names"] += o.runs
        group["seeds"].append(o.settings.get("seed"))
        group["n"] += 1
    return rank(groups + list(by_variant.values()), spec.metric)


def format_ranking(groups: list, metric: str) -> str:
    """The ranked table (mean ± std over seeds), then why each trial that did not finish
    stopped: `  4  failed: training diverged in epoch 1 ...`."""
    from quicknets.comparison import format_groups, shown_keys
    keys = shown_keys([g["settings"] for g in groups])
    lines = [format_groups(groups, keys, metric)]
    lines += [f"{i:>3}  {g['state'].lower()}: {g['message']}" for i, g in enumerate(groups, 1)
              if g.get("state", "COMPLETE") != "COMPLETE" and g.get("message")]
    return "\n".join(lines)


def remaining_jobs(name: str, spec: Search, runs_dir, log_to) -> tuple:
    """(jobs, finished, running) of a grid or random sweep being resumed: a job per trial
    without a finished run, continuing its stopped run where one kept a checkpoint."""
    from quicknets import index
    from quicknets.runs import CHECKPOINT_FILE, runs_root
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
        stopped = [r["name"] for r in mine if (root / r["name"] / CHECKPOINT_FILE).is_file()
                   and r["status"] in ("interrupted", "stopped", "pruned")]
        jobs.append(Job(spec.base, overrides, name, spec.metric, runs_dir=runs_dir,
                        log_to=tuple(log_to), resume=stopped[-1] if stopped else None))
    return jobs, finished, running


def check_name(name) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise QuicknetsError(f"a sweep name is letters, digits, '.', '_' and '-', starting with "
                             f"a letter or digit; got {name!r}")
    return name


def new_name() -> str:
    import os
    return f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"


def record_path(name: str, runs_dir=None):
    from quicknets.runs import runs_root
    return runs_root(runs_dir) / RECORDS / f"{name}.json"


def refuse_used_name(name: str, runs_dir=None) -> None:
    """A sweep's name is used once: runs of an earlier sweep of that name would be ranked as
    extra seeds of this one."""
    from quicknets import index
    from quicknets.runs import runs_root
    root = runs_root(runs_dir)
    runs = index.query(root, status="all", sweep=name)
    if runs or record_path(name, runs_dir).is_file():
        hint = f", or continue it with `quicknets sweep --resume-sweep {name}`" \
            if record_path(name, runs_dir).is_file() else ""
        raise QuicknetsError(f"the sweep name {name!r} is already used in {root} "
                             f"({len(runs)} run(s)); choose another --name, look at it with "
                             f"`quicknets compare --sweep {name}`{hint}")


def release_name(name: str, runs_dir, url: str | None) -> None:
    """Forget a sweep that made no run: its record, and its study if it holds no trial."""
    from quicknets import index
    from quicknets.runs import runs_root
    if index.query(runs_root(runs_dir), status="all", sweep=name):
        return
    record_path(name, runs_dir).unlink(missing_ok=True)
    if url:
        from quicknets.sweeps.optuna_search import delete_if_empty
        delete_if_empty(url, name)


def save_record(name: str, spec: Search, runs_dir, storage) -> None:
    from quicknets.storage import atomic_write_json
    atomic_write_json(record_path(name, runs_dir),
                      {"name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "storage": bool(storage), "search": spec.to_dict()})


def load_record(name: str, runs_dir=None) -> dict | None:
    path = record_path(name, runs_dir)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise QuicknetsError(f"{path} is unreadable ({e})") from None


def continue_command(name: str, runs_dir) -> str:
    return f"quicknets sweep --resume-sweep {name}" + \
        (f" --runs-dir {runs_dir}" if runs_dir else "")
