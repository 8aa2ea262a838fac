"""The loop every worker of a study runs: take a trial, beat while training it, tell how it
ended; a dead worker's trial is trained again by another.

    stopped = run_study(url, "g12", search, job, workers, threads, tell, heartbeat=10)

While a trial trains, its worker beats every `heartbeat` seconds (Optuna's heartbeat in a
database; a time stamp in the trial for a journal file, whose storage has none). A trial whose
beats stop for GRACE_BEATS beats (its worker was killed, or its machine lost) is failed by the
next worker that looks, and a copy of it is queued (RetryHeartbeatStaleTrialCallback, at most
MAX_RETRY times); so is the trial of a worker stopped by Ctrl-C. The first taker trains it again
as a new run, or continues the stopped run from its checkpoint when that run is in its own runs
folder (the worker was started again on that machine); a dead worker's run elsewhere stays in
its runs folder, stopped, and is counted nowhere (only a finished trial's runs are). A worker
leaves once nothing is queued and no trial runs elsewhere: while one still runs, it waits, since
that trial may come back.

Each trial keeps, in its user attributes, what it trained: the worker (host:pid), its run
folders' names (`runs`), and for each finished run its seed, per-epoch history and test metrics
(`results`), so the whole sweep can be ranked and drawn from the study alone (view.py). Each
write is a transaction, so a trial makes few: the worker, its runs, its results, its outcome.
"""

import dataclasses
import os
import random
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from quicknets.base.interrupts import ctrl_c_deferred
from quicknets.sweeps.pool import Job, Outcome, execute, train_job
from quicknets.sweeps.space import Range, Search
from quicknets.sweeps.study import (
    GRACE_BEATS,
    HEARTBEAT_S,
    quiet_optuna,
    retry_callback,
    storage_of,
)

BEAT_ATTR = "quicknets_beat"  # a journal trial's last beat (time.time() of its worker)
PROBES = 4  # random guesses at a queued trial's number before listing the queue


def beat(storage, trial_id: int) -> None:
    from optuna.storages import JournalStorage

    if isinstance(storage, JournalStorage):
        storage.set_trial_system_attr(trial_id, BEAT_ATTR, time.time())
    else:
        storage.record_heartbeat(trial_id)


@contextmanager
def beating(storage, trial_id: int, interval: int):
    """Beat now, then every `interval` seconds in a thread, until the block ends."""
    with ctrl_c_deferred():
        beat(storage, trial_id)
    done = threading.Event()

    def loop():
        while not done.wait(interval):
            try:
                beat(storage, trial_id)
            except Exception:  # noqa: BLE001  a lost beat or two are what the grace is for
                pass

    thread = threading.Thread(target=loop, name="quicknets-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def fail_stale(study, storage, study_id: int, heartbeat: int) -> None:
    """Fail the trials whose beats stopped; each gets a queued copy (retry_callback)."""
    import optuna
    from optuna.trial import TrialState

    if not isinstance(storage, optuna.storages.JournalStorage):
        optuna.storages.fail_stale_trials(study)  # the storage was made with `heartbeat`
        return
    # A journal has no heartbeat of its own: the beats are wall-clock times in the trials, so
    # the machines' clocks must agree to well within the grace (NTP does that).
    now = time.time()
    for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        last = t.system_attrs.get(BEAT_ATTR)
        if last is None or now - last <= GRACE_BEATS * heartbeat:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            failed = storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first
        if failed:
            retry_callback()(study, storage.get_trial(trial_id))


def replaced(trials: list) -> set:
    """Numbers of the trials a queued copy replaces (retried after a kill or a Ctrl-C)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


@dataclass
class Queued:
    """A queued trial this worker took (a grid's or random search's, or a copy of a failed
    one), written through the storage as Optuna's Trial would (it has no sampler to ask)."""

    storage: object
    trial_id: int
    number: int
    params: dict  # its settings, the seed included
    user_attrs: dict  # as queued: a copy carries its original's
    retry_of: int | None

    def set_user_attr(self, key: str, value) -> None:
        self.storage.set_trial_user_attr(self.trial_id, key, value)


def distribution(values):
    """The Optuna distribution a trial's setting is drawn from (as suggest would)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if not isinstance(values, Range):
        return CategoricalDistribution(values)
    if isinstance(values.low, int) and isinstance(values.high, int):
        return IntDistribution(values.low, values.high, log=values.log)
    return FloatDistribution(values.low, values.high, log=values.log)


def claim(storage, study_id: int, queued: int):
    """(trial id, frozen trial) of a queued trial, now RUNNING for this worker alone (as
    Study.ask takes one), or None. The `queued` trials made with the study are numbers 0 ..
    queued-1: a few random guesses find a free one at once while many are left; then the queue
    is listed, short by then (listing it for every take would cost in proportion to its
    length). Random order also keeps workers that ask together off the same trial."""
    import optuna
    from optuna.trial import TrialState

    def numbers():
        yield from random.sample(range(queued), min(PROBES, queued))
        listed = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
        yield from (t.number for t in random.sample(listed, len(listed)))

    for number in numbers():
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                continue  # another worker took it
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        beat(storage, trial_id)  # at once: a RUNNING trial with no beat is never found stale
        return trial_id, storage.get_trial(trial_id)
    return None


def fixed_trial(storage, trial_id: int, frozen, search: Search) -> Queued:
    """A grid's or random search's trial (or a copy of one), its settings recorded as
    Trial.suggest_* would record them."""
    params = {**frozen.system_attrs.get("fixed_params", {}), **frozen.params}
    space = {**search.space, "seed": search.seeds}
    for key, value in params.items():
        if key not in frozen.params:
            dist = distribution(space[key])
            storage.set_trial_param(trial_id, key, dist.to_internal_repr(value), dist)
    return Queued(
        storage, trial_id, frozen.number, params, dict(frozen.user_attrs), retried(frozen)
    )


def next_trial(study, storage, study_id: int, search: Search):
    """(trial, trial id, retry_of) to train next, or None. Every search queues its trials
    when its study is made (a grid's and random search's with their settings, an Optuna
    search's empty, for TPE to fill in as each is taken), so each runs exactly once."""
    import optuna
    from optuna.trial import TrialState

    optuna_search = search.kind == "optuna"
    claimed = claim(storage, study_id, search.trials if optuna_search else len(search.plan()))
    if claimed is None and optuna_search:  # a study made before trials were queued up front
        trials = study.get_trials(deepcopy=False)
        if len(trials) - len(replaced(trials)) < search.trials:
            trial = study.ask()
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            beat(storage, trial_id)
            return trial, trial_id, None
    if claimed is None:
        return None
    trial_id, frozen = claimed
    if not optuna_search:
        queued = fixed_trial(storage, trial_id, frozen, search)
        return queued, trial_id, queued.retry_of
    # read through the study, so that its storage's cache knows the trial TPE fills in
    study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return optuna.trial.Trial(study, trial_id), trial_id, retried(frozen)


def retried(trial) -> int | None:
    """The number of the trial this queued copy trains again, or None."""
    history = trial.system_attrs.get("retry_history")
    return history[-1] if history else None


def still_running(study) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)))


@dataclass(frozen=True)
class StudyWork:
    """One worker's part of a sweep with a study: trials until none is left to take."""

    url: str
    name: str
    search: Search
    job: Job  # every trial's job, but for its overrides
    sampler_seed: int
    heartbeat: int = HEARTBEAT_S


def study_worker(work: StudyWork, tell, stop) -> None:
    """The work of a sweep with a study in one process (pool.execute's `work`)."""
    import optuna

    from quicknets.sweeps.optuna_search import make_pruner

    sampler = (
        optuna.samplers.TPESampler(seed=work.sampler_seed)
        if work.search.kind == "optuna"
        else optuna.samplers.RandomSampler(seed=work.sampler_seed)
    )  # grid: unused
    with quiet_optuna():
        storage = storage_of(work.url, work.heartbeat)
        study = optuna.load_study(
            study_name=work.name, storage=storage, sampler=sampler, pruner=make_pruner()
        )
        study_id = storage.get_study_id_from_name(work.name)
        while not stop.is_set():
            with ctrl_c_deferred():  # storage writes end whole (see ctrl_c_deferred)
                fail_stale(study, storage, study_id, work.heartbeat)
                taken = next_trial(study, storage, study_id, work.search)
            if taken is None:
                if not still_running(study):
                    return
                stop.wait(work.heartbeat)  # a trial running elsewhere may yet come back
                continue
            trial, trial_id, retry_of = taken
            with beating(storage, trial_id, work.heartbeat):
                outcome = train_trial(trial, work, stop)
            outcome = dataclasses.replace(outcome, retry_of=retry_of)
            with ctrl_c_deferred():
                tell(close_trial(study, storage, trial, trial_id, outcome))


def set_attrs(trial, **attrs) -> None:
    """Trial user attributes; a trial failed meanwhile as stale takes none (close_trial says)."""
    import optuna

    with ctrl_c_deferred():
        for key, value in attrs.items():
            try:
                trial.set_user_attr(key, value)
            except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
                return


def resumable(names: list, runs_dir) -> str | None:
    """The last of a queued copy's runs that this runs folder holds and can continue: its
    worker was stopped here (Ctrl-C, or killed and started again on this machine)."""
    from quicknets.records.runfolder import run_state
    from quicknets.records.runs import CHECKPOINT_FILE, runs_root

    for name in reversed(names):
        path = runs_root(runs_dir) / name
        if (path / CHECKPOINT_FILE).is_file() and run_state(path)["status"] in (
            "interrupted",
            "stopped",
        ):
            return name
    return None


def train_trial(trial, work: StudyWork, stop) -> Outcome:
    """Train a trial's runs (each seed of an Optuna trial; the one seed of a grid's)."""
    from quicknets.records.comparison import mean_std
    from quicknets.sweeps.optuna_search import pruning_check, suggest

    search, start = work.search, time.perf_counter()
    runs, values, results = [], [], []
    # a queued copy carries its original's attributes: these are this trial's own (few
    # writes: each is a transaction, and they add up over many workers)
    fresh = {"runs": [], "results": [], "outcome": "running", "message": "", "values": []}
    resume = (
        resumable(trial.user_attrs.get("runs", []), work.job.runs_dir)
        if search.kind != "optuna"
        else None
    )
    if resume is not None:  # its run is here, stopped: continued from its checkpoint
        runs.append(resume)
        fresh["runs"] = runs
    set_attrs(
        trial,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        **{k: v for k, v in fresh.items() if k in trial.user_attrs},
    )

    def started(path):
        runs.append(path.name)
        set_attrs(trial, runs=runs)  # linked before training: a stopped run too

    outcome = None
    try:
        if search.kind == "optuna":
            with ctrl_c_deferred():  # TPE's proposal is written to the study
                overrides, seeds = suggest(trial, search.space), search.seeds
        else:  # a queued trial: its settings were fixed when it was queued
            overrides = {k: v for k, v in trial.params.items() if k != "seed"}
            seeds = [trial.params["seed"]]
        for i, seed in enumerate(seeds):
            job = dataclasses.replace(
                work.job, overrides={**overrides, "seed": seed}, resume=resume
            )
            prune = search.kind == "optuna" and search.prune and i == 0
            check = pruning_check(trial, search.metric) if prune else None
            outcome = train_job(job, stop, on_epoch=check, on_start=started)
            if outcome is None or outcome.status != "done":
                break
            values.append(outcome.value)
            results.append(
                {
                    "run": outcome.runs[-1],
                    "seed": seed,
                    "history": outcome.history,
                    "test": outcome.test,
                    "seconds": round(outcome.seconds, 3),
                }
            )
            set_attrs(trial, results=results)
    except KeyboardInterrupt:  # in this process, outside a training
        outcome = None
    status = (
        "done"
        if outcome and outcome.status == "done"
        else outcome.status
        if outcome
        else "interrupted"
    )
    message = (
        outcome.message
        if outcome and status != "done"
        else ""
        if outcome
        else "stopped before it trained"
    )
    return Outcome(
        dict(trial.params),
        status,
        time.perf_counter() - start,
        runs,
        mean_std(values)[0],
        message,
        trial.number,
        values=values,
    )


def close_trial(study, storage, trial, trial_id: int, outcome: Outcome) -> Outcome:
    """Tell the study how the trial ended; a trial stopped by Ctrl-C is queued again. A trial
    that was failed as stale meanwhile (its worker too slow to beat) keeps that state: its run
    here is finished but not counted, and the Outcome says so."""
    import optuna
    from optuna.trial import TrialState

    set_attrs(
        trial,
        outcome=outcome.status,
        **({"message": outcome.message} if outcome.message else {}),
        **({"values": outcome.values} if len(outcome.values) > 1 else {}),
    )  # per seed
    state = {"done": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(
        outcome.status, TrialState.FAIL
    )
    value = outcome.value if state == TrialState.COMPLETE else None
    try:
        if isinstance(trial, Queued):  # no sampler to tell
            storage.set_trial_state_values(trial_id, state, None if value is None else [value])
        else:
            study.tell(trial, value, state=state)
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
        if storage.get_trial(trial_id).state == TrialState.RUNNING:
            raise
        return dataclasses.replace(
            outcome,
            status="failed",
            message=(
                "its worker missed its heartbeats, so the trial was retried elsewhere; this run "
                "is not counted"
            ),
        )
    if outcome.status == "interrupted":  # another worker may take it
        retry_callback()(study, storage.get_trial(trial_id))
    return outcome


def run_study(
    url: str,
    name: str,
    search: Search,
    job: Job,
    workers: int,
    threads: int,
    tell,
    heartbeat: int = HEARTBEAT_S,
) -> bool:
    """Take trials from the study in `workers` processes; True if stopped by Ctrl-C. Parallel
    samplers are seeded differently on purpose: identical seeds make parallel workers propose
    identical trials."""
    seed0 = int.from_bytes(os.urandom(2), "little")
    tasks = [StudyWork(url, name, search, job, seed0 + i, heartbeat) for i in range(workers)]
    return execute(study_worker, tasks, workers, threads, tell)
