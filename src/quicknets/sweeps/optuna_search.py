"""The Optuna search of `quicknets sweep --search optuna`: TPE sampling, pruning, shared studies.

    url = storage_url(None, runs_dir)                    # runs/optuna.sqlite3
    create_study(url, "lr-search", search)               # refused if the name is taken
    stopped = run_study(url, "lr-search", search, job, workers, threads, tell)
    groups = study_table(url, "lr-search", search.metric)

A study lives in runs/optuna.sqlite3 unless `storage` names a database: with
postgresql://user@host/db, `quicknets sweep --resume-sweep NAME --storage URL` on other machines
joins the study one machine created; it stops taking new trials once it holds `trials` of them.
The Search is saved in the study, so a joining worker needs only the name. Each trial trains one
recorded run per seed, tagged with the sweep name (the trial keeps their names in its `runs`
attribute); the first seed's per-epoch score feeds the median pruner, which stops hopeless
trials from their second epoch on (their runs stay, marked pruned and resumable). Parallel
samplers are seeded differently on purpose: identical seeds make parallel workers propose
identical trials, so a parallel search's order is not reproducible, while every trial's run is
(its settings and seed are recorded).
"""
import dataclasses
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass

from quicknets.errors import QuicknetsError
from quicknets.sweeps.pool import Job, Outcome, execute, train_job
from quicknets.sweeps.space import PER_EPOCH, Range, Search

SPEC_ATTR = "quicknets_search"  # the study's user attribute holding Search.to_dict()
FIRST_PRUNABLE_EPOCH = 2  # a trial's first epoch is never judged (the README says so)


class TrialFailed(Exception):
    """A trial that did not finish (failed or interrupted): Optuna records it as FAIL."""


def storage_url(storage: str | None, runs_dir=None) -> str:
    """An SQLAlchemy URL: the runs folder's SQLite file by default; postgresql:// goes through
    psycopg (3) when psycopg2 is not installed."""
    from quicknets.runs import runs_root
    if not storage:
        root = runs_root(runs_dir)
        root.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(root / 'optuna.sqlite3').resolve()}"
    if storage.startswith("postgresql://"):
        try:
            import psycopg2  # noqa: F401  SQLAlchemy's default driver for postgresql://
        except ImportError:
            storage = "postgresql+psycopg://" + storage.removeprefix("postgresql://")
    return storage


def where(url: str) -> str:
    return url.split("@")[-1]  # no user name or password in messages


@contextmanager
def quiet_optuna():
    """Optuna's own log lines off (a failed trial is logged with a traceback); the sweep prints
    one line per trial instead. The caller's verbosity is restored."""
    import optuna
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def make_pruner():
    """Median pruning after 3 finished trials, never in a trial's first epoch: epochs are
    reported as steps 1, 2, ..., and Optuna prunes from step n_warmup_steps on."""
    import optuna
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=FIRST_PRUNABLE_EPOCH)


def storage_of(url: str):
    import optuna
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


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


def create_study(url: str, name: str, search: Search) -> None:
    """A new study holding the search's description; a name already taken is refused."""
    import optuna
    from quicknets.metrics import higher_is_better

    def create(storage):
        try:
            study = optuna.create_study(
                storage=storage, study_name=name, pruner=make_pruner(),
                direction="maximize" if higher_is_better(search.metric) else "minimize")
        except optuna.exceptions.DuplicatedStudyError:
            raise QuicknetsError(f"an Optuna study named {name!r} exists at {where(url)}; "
                                 f"choose another --name, or join it with `quicknets sweep "
                                 f"--resume-sweep {name}`") from None
        study.set_user_attr(SPEC_ATTR, search.to_dict())
    _open("create", url, name, create)


def delete_if_empty(url: str, name: str) -> None:
    import optuna

    def delete(storage):
        if not optuna.load_study(study_name=name, storage=storage).trials:
            optuna.delete_study(study_name=name, storage=storage)
    _open("delete", url, name, delete)


def load_search(url: str, name: str) -> Search:
    """The Search a study was created with (to join or continue it)."""
    import optuna

    def load(storage):
        try:
            attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
        except KeyError:
            raise QuicknetsError(f"no Optuna study named {name!r} at {where(url)} (start it "
                                 f"with --search optuna --name {name})") from None
        if SPEC_ATTR not in attrs:
            raise QuicknetsError(f"the Optuna study {name!r} was not made by this version "
                                 f"of quicknets sweep; start a new one")
        return Search.from_dict(attrs[SPEC_ATTR])
    return _open("open", url, name, load)


def suggest(trial, space: dict) -> dict:
    out = {}
    for key, values in space.items():
        if isinstance(values, Range):
            if isinstance(values.low, int) and isinstance(values.high, int):
                out[key] = trial.suggest_int(key, values.low, values.high, log=values.log)
            else:
                out[key] = trial.suggest_float(key, values.low, values.high, log=values.log)
        else:
            out[key] = trial.suggest_categorical(key, values)
    return out


def pruning_check(trial, metric: str):
    """Feed the per-epoch score to the pruner: the metric itself when every epoch records it
    (validation, training), else the training metric of the same direction (the test set is
    never looked at during training)."""
    import optuna

    from quicknets.metrics import higher_is_better
    key = metric if metric in PER_EPOCH else \
        "train_accuracy" if higher_is_better(metric) else "train_loss"

    def check(epoch, row):
        trial.report(row[key], epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}: {key} {row[key]:.4f}")
    return check


@dataclass(frozen=True)
class StudyWork:
    """One worker's part of an Optuna search: trials from the study until it holds enough."""
    url: str
    name: str
    search: Search
    job: Job           # every trial's job, but for its overrides
    sampler_seed: int


def study_worker(work: StudyWork, tell, stop) -> None:
    """The work of an Optuna search in one process (pool.execute's `work`)."""
    import optuna
    from optuna.study import MaxTrialsCallback

    from quicknets.comparison import mean_std
    search = work.search
    with quiet_optuna():
        study = optuna.load_study(study_name=work.name, storage=storage_of(work.url),
                                  sampler=optuna.samplers.TPESampler(seed=work.sampler_seed),
                                  pruner=make_pruner())

    def objective(trial):
        start, runs, values = time.perf_counter(), [], []
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")

        def started(path):
            runs.append(path.name)
            trial.set_user_attr("runs", runs)  # linked before training: pruned runs too
        overrides, outcome = {}, None
        try:
            overrides = suggest(trial, search.space)
            for i, seed in enumerate(search.seeds):
                job = dataclasses.replace(work.job, overrides={**overrides, "seed": seed})
                check = pruning_check(trial, search.metric) if search.prune and i == 0 else None
                outcome = train_job(job, stop, on_epoch=check, on_start=started)
                if outcome is None or outcome.status != "done":
                    break
                values.append(outcome.value)
        except KeyboardInterrupt:  # in this process, outside a training
            outcome = None
        status = "done" if outcome and outcome.status == "done" else \
            outcome.status if outcome else "interrupted"
        message = outcome.message if outcome else "stopped before it trained"
        mean = mean_std(values)[0]
        trial.set_user_attr("values", values)
        if status != "done":
            trial.set_user_attr("outcome", status)
            trial.set_user_attr("message", message)
        tell(Outcome(overrides, status, time.perf_counter() - start, runs, mean, message,
                     trial.number))
        if status == "done":
            return mean
        if status == "pruned":
            raise optuna.TrialPruned(message)
        if status == "interrupted":
            stop.set()
            study.stop()
        raise TrialFailed(message)

    def stop_if_asked(study, trial):
        if stop.is_set():
            study.stop()
    if stop.is_set() or len(study.trials) >= search.trials:
        return
    with quiet_optuna():
        study.optimize(objective, catch=(TrialFailed,),
                       callbacks=[MaxTrialsCallback(search.trials, states=None), stop_if_asked])


def run_study(url: str, name: str, search: Search, job: Job, workers: int, threads: int,
              tell) -> bool:
    """Take trials from the study in `workers` processes; True if stopped by Ctrl-C."""
    seed0 = int.from_bytes(os.urandom(2), "little")  # see the module docstring
    tasks = [StudyWork(url, name, search, job, seed0 + i) for i in range(workers)]
    return execute(study_worker, tasks, workers, threads, tell)


STATES = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "RUNNING": "RUNNING", "WAITING": "RUNNING"}


def study_table(url: str, name: str, metric: str) -> list:
    """The study's trials as ranked groups (settings, n, metric as (mean, std), runs, state,
    and why a trial did not finish)."""
    import optuna

    from quicknets.comparison import METRICS, mean_std, rank
    with quiet_optuna():
        study = optuna.load_study(study_name=name, storage=storage_of(url))
    groups = []
    for t in study.trials:
        values = t.user_attrs.get("values", [])
        state = STATES.get(t.state.name) or t.user_attrs.get("outcome", "failed").upper()
        group = {m: (None, None) for m in METRICS}
        group.update({"settings": dict(t.params), "n": len(values), "seeds": [],
                      "names": t.user_attrs.get("runs", []), "state": state,
                      "number": t.number, "message": t.user_attrs.get("message", "")})
        if state == "COMPLETE":
            group[metric] = mean_std(values)
        groups.append(group)
    return rank(groups, metric)
