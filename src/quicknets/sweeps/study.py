"""The study a sweep's workers share, on one machine or many: where it lives, and what each
kind of search puts in it.

    url = storage_url("postgresql://user@host/db")   # or journal:///shared/sweep.log, or None
    created = create_study(url, "g12", search)        # False: joined the same plan, made elsewhere
    search, heartbeat = load_search(url, "g12")       # to join it, continue it or show it

Every Optuna search has a study (runs/optuna.sqlite3 unless `--storage` names one), and so does
a grid or random search given `--storage`: its trials, one per variant and seed, are queued in
the study when it is created (Optuna's enqueue_trial), and each worker takes them one at a time
(worker.py), so N workers on N machines run each once. An Optuna search queues `trials` empty
trials, whose settings TPE proposes as each is taken (optuna_search.py). The study also holds
the Search and the heartbeat every worker keeps, so a joining worker needs only the name and
the storage. A journal file on a shared file system (Optuna's JournalStorage, with its file
lock) serves where no database server does; SQLite does not (its locks are unreliable on NFS).
"""

import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from quicknets.base.errors import QuicknetsError
from quicknets.base.interrupts import ctrl_c_deferred
from quicknets.evaluation.metric_names import higher_is_better
from quicknets.sweeps.space import Search

SPEC_ATTR = "quicknets_search"  # the study's user attribute holding Search.to_dict()
HEARTBEAT_ATTR = "quicknets_heartbeat"  # the study's beat (s), the same for every worker
HEARTBEAT_S = 10  # default seconds between beats
GRACE_BEATS = 3  # beats missed before a trial is taken as dead (Optuna's default is 2)
MAX_RETRY = 3  # copies of one trial at most: a trial that kills its worker stops there
SPEC_WAIT_S = 60  # how long a joiner waits for the creator to finish queuing the trials


def storage_url(storage: str | None, runs_dir=None) -> str:
    """An SQLAlchemy URL (the runs folder's SQLite file by default; postgresql:// goes through
    psycopg 3 when psycopg2 is not installed), or journal:///ABSOLUTE/PATH for a journal file
    (`journal:///shared/sweep.log`, or any path ending in .log)."""
    from quicknets.records.runs import runs_root

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
    beats = (
        {}
        if heartbeat is None
        else {
            "heartbeat_interval": heartbeat,
            "grace_period": GRACE_BEATS * heartbeat,
            "heartbeat_stale_trial_callback": retry_callback(),
        }
    )
    storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, **beats)
    if url.startswith("sqlite"):
        write_at_once(storage.engine)
    return storage


def write_at_once(engine) -> None:
    """Every SQLite transaction takes the write lock when it begins (BEGIN IMMEDIATE), as
    SQLAlchemy's pysqlite notes advise. Optuna's writes read first, and SQLite answers a read
    lock's upgrade that would wait on another writer with "database is locked" at once,
    whatever the busy timeout. Taken at the start, the lock is waited for (the 120 s timeout).
    A Ctrl-C never lands inside a write (interrupts.ctrl_c_deferred): one that did could leave the
    lock held, and the other workers' writes then failed after their timeout."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, record):
        dbapi_connection.isolation_level = None  # pysqlite's own BEGIN off: ours below

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners are not reused


def using_storage(what: str, url: str, name: str, action):
    """`action(storage)`, quietly; an unreachable server or a bad URL is one error line."""
    for attempt in range(3):  # workers starting together may race to create the tables
        try:
            with quiet_optuna():
                return action(storage_of(url))
        except ImportError as e:
            raise QuicknetsError(
                f"the storage {url.split('://')[0]} needs a package: {e}"
            ) from None
        except (QuicknetsError, KeyError):
            raise
        except Exception as e:  # unreachable server, bad credentials, bad URL, a race
            if attempt == 2:
                raise QuicknetsError(
                    f"cannot {what} the Optuna study {name!r} at {where(url)}: "
                    f"{str(e).splitlines()[0]}"
                ) from None
            time.sleep(1 + attempt)


def study_exists(url: str, name: str) -> bool:
    import optuna

    return using_storage("read", url, name, lambda s: name in optuna.get_all_study_names(storage=s))


def create_study(url: str, name: str, search: Search, heartbeat: int = HEARTBEAT_S) -> bool:
    """A new study holding the search's description, with a grid's or random search's trials
    queued: True. If a study of that name holds the same plan (the same command, started on
    another machine first), it is joined: False. Another plan under that name is refused."""
    import optuna

    def create(storage):
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=name,
                direction="maximize" if higher_is_better(search.metric) else "minimize",
            )
        except optuna.exceptions.DuplicatedStudyError:
            if _wait_for_search(storage, name)[0] == search:
                return False
            raise QuicknetsError(
                f"an Optuna study named {name!r} exists at {where(url)} with "
                f"another plan; choose another --name, or join it with "
                f"`quicknets sweep --resume-sweep {name}`"
            ) from None
        # the trials, queued: a grid's or random search's one per variant and seed, with its
        # settings; an Optuna search's empty, for TPE to fill in as each is taken
        for overrides in search.plan() if search.kind != "optuna" else [{}] * search.trials:
            study.enqueue_trial(overrides)
        study.set_user_attr(HEARTBEAT_ATTR, heartbeat)
        study.set_user_attr(SPEC_ATTR, search.to_dict())  # last: joiners wait for it
        return True

    # whole: a Ctrl-C meanwhile left a study without its plan, whose name then could be
    # neither resumed nor used again
    with ctrl_c_deferred():
        return using_storage("create", url, name, create)


def delete_if_unused(url: str, name: str) -> None:
    """Delete a study none of whose trials was ever taken (a sweep that made no run)."""
    import optuna

    def delete(storage):
        trials = optuna.load_study(study_name=name, storage=storage).trials
        if all(t.state.name == "WAITING" for t in trials):
            optuna.delete_study(study_name=name, storage=storage)

    using_storage("delete", url, name, delete)


def _wait_for_search(storage, name: str) -> tuple:
    """(Search, heartbeat) of a study, waiting while its creator still queues its trials."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise QuicknetsError(
            f"no Optuna study named {name!r} (start it with quicknets sweep --name {name})"
        ) from None
    deadline = time.monotonic() + SPEC_WAIT_S
    while SPEC_ATTR not in (attrs := study.user_attrs) and time.monotonic() < deadline:
        time.sleep(0.5)
    if SPEC_ATTR not in attrs:
        raise QuicknetsError(
            f"the Optuna study {name!r} was not made by this version of "
            f"quicknets sweep; start a new one"
        )
    return Search.from_dict(attrs[SPEC_ATTR]), attrs.get(HEARTBEAT_ATTR, HEARTBEAT_S)


def load_search(url: str, name: str) -> tuple:
    """(Search, heartbeat seconds) a study was created with (to join, continue or show it)."""
    return using_storage("open", url, name, lambda storage: _wait_for_search(storage, name))
