"""The study a sweep's workers share, on one machine or many: where it lives, what each kind of
search puts in it, and the loop every worker runs.

    url = storage_url("postgresql://user@host/db")   # or journal:///shared/sweep.log, or None
    created = create_study(url, "g12", search)        # False: joined the same plan, made elsewhere
    stopped = run_study(url, "g12", search, job, workers, threads, tell)

Every Optuna search has a study (runs/optuna.sqlite3 unless `--storage` names one), and so does
a grid or random search given `--storage`: its trials, one per variant and seed, are queued in
the study when it is created (Optuna's enqueue_trial), and each worker takes them one at a time
(a queued trial turns RUNNING for exactly one taker), so N workers on N machines run each once.
An Optuna search's trials are proposed by TPE as workers ask (optuna_search.py).

While a trial trains, its worker beats every `heartbeat` seconds (Optuna's heartbeat in a
database; a time stamp in the trial for a journal file, whose storage has none). A trial whose
beats stop for GRACE_BEATS beats (its worker was killed, or its machine lost) is failed by the
next worker that looks, and a copy of it is queued (RetryHeartbeatStaleTrialCallback, at most
MAX_RETRY times); so is the trial of a worker stopped by Ctrl-C. The first taker trains it again
as a new run; the dead worker's run stays in its own runs folder, stopped, and is counted nowhere
(only a finished trial's runs are). A worker leaves once nothing is queued and no trial runs
elsewhere: while one still runs, it waits, since that trial may come back.

Each trial keeps, in its user attributes, what it trained: the worker (host:pid), its run
folders' names (`runs`), and for each finished run its seed, per-epoch history and test metrics
(`results`), so the whole sweep can be ranked and drawn from the study alone (view.py).
"""
import dataclasses
import os
import socket
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from quicknets.errors import QuicknetsError
from quicknets.sweeps.pool import Job, Outcome, execute, train_job
from quicknets.sweeps.space import Search

SPEC_ATTR = "quicknets_search"  # the study's user attribute holding Search.to_dict()
HEARTBEAT_ATTR = "quicknets_heartbeat"  # the study's beat (s), the same for every worker
BEAT_ATTR = "quicknets_beat"  # a journal trial's last beat (time.time() of its worker)
HEARTBEAT_S = 10     # default seconds between beats
GRACE_BEATS = 3      # beats missed before a trial is taken as dead (Optuna's default is 2)
MAX_RETRY = 3        # copies of one trial at most: a trial that kills its worker stops there
SPEC_WAIT_S = 60     # how long a joiner waits for the creator to finish queuing the trials


def storage_url(storage: str | None, runs_dir=None) -> str:
    """An SQLAlchemy URL (the runs folder's SQLite file by default; postgresql:// goes through
    psycopg 3 when psycopg2 is not installed), or journal:///ABSOLUTE/PATH for a journal file
    (`journal:///shared/sweep.log`, or any path ending in .log)."""
    from quicknets.runs import runs_root
    if not storage:
        root = runs_root(runs_dir)
        root.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(root / 'optuna.sqlite3').resolve()}"
    if storage.startswith("journal://") or ("://" not in storage and storage.endswith(".log")):
        path = storage.removeprefix("journal://")
        return f"journal://{Path(path).expanduser().resolve()}"
    if storage.startswith("postgresql://"):
        try:
            import psycopg2  # noqa: F401  SQLAlchemy's default driver for postgresql://
        except ImportError:
            storage = "postgresql+psycopg://" + storage.removeprefix("postgresql://")
    return storage


def where(url: str) -> str:
    if url.startswith("journal://"):
        return url.removeprefix("journal://")
    return url.split("@")[-1]  # no user name or password in messages


@contextmanager
def quiet_optuna():
    """Optuna's own log lines and warnings off (a failed trial is logged with a traceback; the
    heartbeat is 'experimental'); the sweep prints one line per trial instead. The caller's
    verbosity is restored."""
    import optuna
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            yield
    finally:
        optuna.logging.set_verbosity(previous)


def retry_callback():
    """Queues a copy of a failed trial (same settings), up to MAX_RETRY copies of one trial."""
    import optuna
    with quiet_optuna():  # "experimental" since Optuna 2.8
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def storage_of(url: str, heartbeat: int | None = None):
    """The storage at `url`; with `heartbeat`, stale trials are failed and retried (RDB)."""
    import optuna
    if url.startswith("journal://"):
        from optuna.storages.journal import JournalFileBackend
        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal://")))
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    beats = {} if heartbeat is None else {
        "heartbeat_interval": heartbeat, "grace_period": GRACE_BEATS * heartbeat,
        "heartbeat_stale_trial_callback": retry_callback()}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, **beats)


def _open(what: str, url: str, name: str, action):
    for attempt in range(3):  # workers starting together may race to create the tables
        try:
            with quiet_optuna():
                return action(storage_of(url))
        except ImportError as e:
            raise QuicknetsError(f"the storage {url.split('://')[0]} needs a package: "
                                 f"{e}") from None
        except (QuicknetsError, KeyError):
            raise
        except Exception as e:  # unreachable server, bad credentials, bad URL, a race
            if attempt == 2:
                raise QuicknetsError(f"cannot {what} the Optuna study {name!r} at {where(url)}: "
                                     f"{str(e).splitlines()[0]}") from None
            time.sleep(1 + attempt)


def study_exists(url: str, name: str) -> bool:
    import optuna
    return _open("read", url, name, lambda s: name in optuna.get_all_study_names(storage=s))


def create_study(url: str, name: str, search: Search, heartbeat: int = HEARTBEAT_S) -> bool:
    """A new study holding the search's description, with a grid's or random search's trials
    queued: True. If a study of that name holds the same plan (the same command, started on
    another machine first), it is joined: False. Another plan under that name is refused."""
    import optuna
    from quicknets.metrics import higher_is_better

    def create(storage):
        try:
            study = optuna.create_study(
                storage=storage, study_name=name,
                direction="maximize" if higher_is_better(search.metric) else "minimize")
        except optuna.exceptions.DuplicatedStudyError:
            if _wait_for_search(storage, name)[0] == search:
                return False
            raise QuicknetsError(f"an Optuna study named {name!r} exists at {where(url)} with "
                                 f"another plan; choose another --name, or join it with "
                                 f"`quicknets sweep --resume-sweep {name}`") from None
        if search.kind != "optuna":
            for overrides in search.plan():  # one fixed trial per variant and seed
                study.enqueue_trial(overrides)
        study.set_user_attr(HEARTBEAT_ATTR, heartbeat)
        study.set_user_attr(SPEC_ATTR, search.to_dict())  # last: joiners wait for it
        return True
    return _open("create", url, name, create)


def delete_if_unused(url: str, name: str) -> None:
    """Delete a study none of whose trials was ever taken (a sweep that made no run)."""
    import optuna

    def delete(storage):
        trials = optuna.load_study(study_name=name, storage=storage).trials
        if all(t.state.name == "WAITING" for t in trials):
            optuna.delete_study(study_name=name, storage=storage)
    _open("delete", url, name, delete)


def _wait_for_search(storage, name: str) -> tuple:
    """(Search, heartbeat) of a study, waiting while its creator still queues its trials."""
    import optuna
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise QuicknetsError(f"no Optuna study named {name!r} (start it with quicknets sweep "
                             f"--name {name})") from None
    deadline = time.monotonic() + SPEC_WAIT_S
    while SPEC_ATTR not in (attrs := study.user_attrs) and time.monotonic() < deadline:
        time.sleep(0.5)
    if SPEC_ATTR not in attrs:
        raise QuicknetsError(f"the Optuna study {name!r} was not made by this version of "
                             f"quicknets sweep; start a new one")
    return Search.from_dict(attrs[SPEC_ATTR]), attrs.get(HEARTBEAT_ATTR, HEARTBEAT_S)


def load_search(url: str, name: str) -> tuple:
    """(Search, heartbeat seconds) a study was created with (to join, continue or show it)."""
    return _open("open", url, name, lambda storage: _wait_for_search(storage, name))


def beat(storage, trial_id: int) -> None:
    from optuna.storages import JournalStorage
    if isinstance(storage, JournalStorage):
        storage.set_trial_system_attr(trial_id, BEAT_ATTR, time.time())
    else:
        storage.record_heartbeat(trial_id)


@contextmanager
def beating(storage, trial_id: int, interval: int):
    """Beat now, then every `interval` seconds in a thread, until the block ends."""
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


def next_trial(study, storage, study_id: int, search: Search):
    """(trial, trial id) to train next, or None: a queued trial (the plan of a grid or random
    search, or a retry); for an Optuna search, else a new proposal until the study holds
    `search.trials` (a worker may start one more as another finishes the last)."""
    import optuna
    from optuna.trial import TrialState
    if search.kind == "optuna":
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and len(trials) - len(replaced(trials)) >= search.trials:
            return None
        trial = study.ask()  # takes a queued retry first
        return trial, storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    # read through the study: its storage's cache then knows the trial we take
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:  # as Study.ask: only one worker turns a queued trial RUNNING
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return optuna.trial.Trial(study, trial_id), trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def still_running(study) -> bool:
    from optuna.trial import TrialState
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)))


@dataclass(frozen=True)
class StudyWork:
    """One worker's part of a sweep with a study: trials until none is left to take."""
    url: str
    name: str
    search: Search
    job: Job           # every trial's job, but for its overrides
    sampler_seed: int
    heartbeat: int = HEARTBEAT_S


def study_worker(work: StudyWork, tell, stop) -> None:
    """The work of a sweep with a study in one process (pool.execute's `work`)."""
    import optuna

    from quicknets.sweeps.optuna_search import make_pruner
    sampler = optuna.samplers.TPESampler(seed=work.sampler_seed) if work.search.kind == \
        "optuna" else optuna.samplers.RandomSampler(seed=work.sampler_seed)  # grid: unused
    with quiet_optuna():
        storage = storage_of(work.url, work.heartbeat)
        study = optuna.load_study(study_name=work.name, storage=storage, sampler=sampler,
                                  pruner=make_pruner())
        study_id = storage.get_study_id_from_name(work.name)
        while not stop.is_set():
            fail_stale(study, storage, study_id, work.heartbeat)
            taken = next_trial(study, storage, study_id, work.search)
            if taken is None:
                if not still_running(study):
                    return
                stop.wait(work.heartbeat)  # a trial running elsewhere may yet come back
                continue
            trial, trial_id = taken
            with beating(storage, trial_id, work.heartbeat):
                outcome = train_trial(trial, work, stop)
            tell(close_trial(study, storage, trial, trial_id, outcome))


def set_attrs(trial, **attrs) -> None:
    """Trial user attributes; a trial failed meanwhile as stale takes none (close_trial says)."""
    import optuna
    for key, value in attrs.items():
        try:
            trial.set_user_attr(key, value)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
            return


def train_trial(trial, work: StudyWork, stop) -> Outcome:
    """Train a trial's runs (each seed of an Optuna trial; the one seed of a grid's)."""
    from quicknets.comparison import mean_std
    from quicknets.sweeps.optuna_search import pruning_check, suggest
    search, start = work.search, time.perf_counter()
    runs, values, results = [], [], []
    # a queued copy carries its original's attributes: these are this trial's own
    set_attrs(trial, worker=f"{socket.gethostname()}:{os.getpid()}", runs=[], results=[],
              outcome="running", message="")

    def started(path):
        runs.append(path.name)
        set_attrs(trial, runs=runs)  # linked before training: a stopped run too
    outcome = None
    try:
        overrides = suggest(trial, search.space)
        seeds = search.seeds if search.kind == "optuna" else \
            [trial.suggest_categorical("seed", search.seeds)]
        for i, seed in enumerate(seeds):
            job = dataclasses.replace(work.job, overrides={**overrides, "seed": seed})
            prune = search.kind == "optuna" and search.prune and i == 0
            check = pruning_check(trial, search.metric) if prune else None
            outcome = train_job(job, stop, on_epoch=check, on_start=started)
            if outcome is None or outcome.status != "done":
                break
            values.append(outcome.value)
            results.append({"run": outcome.runs[-1], "seed": seed, "history": outcome.history,
                            "test": outcome.test, "seconds": round(outcome.seconds, 3)})
            set_attrs(trial, results=results)
    except KeyboardInterrupt:  # in this process, outside a training
        outcome = None
    status = "done" if outcome and outcome.status == "done" else \
        outcome.status if outcome else "interrupted"
    message = outcome.message if outcome and status != "done" else \
        "" if outcome else "stopped before it trained"
    return Outcome(dict(trial.params), status, time.perf_counter() - start, runs,
                   mean_std(values)[0], message, trial.number, values=values)


def close_trial(study, storage, trial, trial_id: int, outcome: Outcome) -> Outcome:
    """Tell the study how the trial ended; a trial stopped by Ctrl-C is queued again. A trial
    that was failed as stale meanwhile (its worker too slow to beat) keeps that state: its run
    here is finished but not counted, and the Outcome says so."""
    import optuna
    from optuna.trial import TrialState
    set_attrs(trial, values=outcome.values, outcome=outcome.status, message=outcome.message)
    history = storage.get_trial(trial_id).system_attrs.get("retry_history") or [None]
    outcome = dataclasses.replace(outcome, retry_of=history[-1])
    state = {"done": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(outcome.status,
                                                                           TrialState.FAIL)
    try:
        study.tell(trial, outcome.value if state == TrialState.COMPLETE else None, state=state)
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
        if storage.get_trial(trial_id).state == TrialState.RUNNING:
            raise
        return dataclasses.replace(outcome, status="failed", message=(
            "its worker missed its heartbeats, so the trial was retried elsewhere; this run "
            "is not counted"))
    if outcome.status == "interrupted":  # another worker may take it
        retry_callback()(study, storage.get_trial(trial_id))
    return outcome


def run_study(url: str, name: str, search: Search, job: Job, workers: int, threads: int,
              tell, heartbeat: int = HEARTBEAT_S) -> bool:
    """Take trials from the study in `workers` processes; True if stopped by Ctrl-C. Parallel
    samplers are seeded differently on purpose: identical seeds make parallel workers propose
    identical trials."""
    seed0 = int.from_bytes(os.urandom(2), "little")
    tasks = [StudyWork(url, name, search, job, seed0 + i, heartbeat) for i in range(workers)]
    return execute(study_worker, tasks, workers, threads, tell)
