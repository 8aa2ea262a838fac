"""Optuna search for `quicknets sweep --search optuna`: TPE sampling, pruning, shared studies.

    optuna_sweep(base, {"lr": Range(1e-4, 1e-2, log=True), "model": [...]}, seeds=[0], trials=20,
                 workers=0, threads=0, runs_dir=None, name="lr-search", storage=None, ...)

The study lives in runs/optuna.sqlite3 unless `storage` names a database: with
postgresql://user@host/db, `quicknets sweep --search optuna --name S --storage URL` on several
machines works on one study; the study stops taking new trials once it holds `trials` of them.
Each trial trains one recorded run per seed (tagged with the sweep name; the trial keeps their
names in its `runs` attribute); the first seed's per-epoch score feeds the pruner, which stops
hopeless trials early (their runs stay, marked pruned and resumable). Parallel samplers are
seeded differently on purpose: identical seeds make parallel workers propose identical trials, so
a parallel search's order is not reproducible, while every trial's run is (its settings and seed
are recorded).
"""
import json
import os
import socket
import time

from quicknets.errors import QuicknetsError
from quicknets.runs import runs_root


def storage_url(storage: str | None, runs_dir=None) -> str:
    """An SQLAlchemy URL: the runs folder's SQLite file by default; postgresql:// goes through
    psycopg (3) when psycopg2 is not installed."""
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


def open_study(url: str, name: str, direction: str, sampler_seed, create: bool):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    for attempt in range(3):  # workers starting together may race to create the tables
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            sampler = optuna.samplers.TPESampler(seed=sampler_seed)
            pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
            if create:
                return optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                           direction=direction, pruner=pruner,
                                           load_if_exists=True)
            return optuna.load_study(storage=storage, study_name=name, sampler=sampler,
                                     pruner=pruner)
        except ImportError as e:
            raise QuicknetsError(f"the storage {url.split('://')[0]} needs a package: "
                                 f"{e}") from None
        except Exception as e:  # unreachable server, bad credentials, bad URL, a race
            if attempt == 2:
                raise QuicknetsError(f"cannot open the Optuna study {name!r} at "
                                     f"{url.split('@')[-1]}: {str(e).splitlines()[0]}") from None
            time.sleep(1 + attempt)


def suggest(trial, space: dict) -> dict:
    from quicknets.sweeps import Range
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


def score(history: list, results: dict, metric: str):
    return results["accuracy"] if metric == "test_accuracy" else \
        results["loss"] if metric == "test_loss" else history[-1].get(metric)


def pruning_check(trial, metric: str):
    """Feed the per-epoch score to the pruner: the validation metric, else training accuracy
    or loss (the test set is never looked at during training)."""
    import optuna
    key = metric if metric.startswith("val_") else \
        "train_accuracy" if metric.endswith("accuracy") else "train_loss"

    def check(epoch, row):
        trial.report(row[key], epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}: {key} {row[key]:.4f}")
    return check


def worker(url, name, direction, sampler_seed, base, space, seeds, trials, threads, runs_dir,
           metric, prune, log_to, fresh=True) -> int:
    """One worker process: take trials from the shared study until it holds `trials`."""
    import optuna
    from optuna.study import MaxTrialsCallback

    from quicknets.comparison import mean_std
    from quicknets.experiment import run
    from quicknets.sweeps import init_worker, interruptible, trial_config
    if fresh:  # a new worker process (not this one: train() sets threads per trial anyway)
        init_worker(threads)
    study = open_study(url, name, direction, sampler_seed, create=False)

    def objective(trial):
        overrides = suggest(trial, space)
        names, values = [], []
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        for i, seed in enumerate(seeds):
            def started(path):
                names.append(path.name)
                trial.set_user_attr("runs", names)  # linked before training: pruned runs too
            path, results = run(
                trial_config(base, {**overrides, "seed": seed}, threads), runs_dir, quiet=True,
                sweep=name, log_to=log_to, on_start=started,
                on_epoch=pruning_check(trial, metric) if prune and i == 0 else None)
            from quicknets.metrics import upgrade_history
            history = upgrade_history(json.loads((path / "history.json").read_text()))
            values.append(score(history, results, metric))
        trial.set_user_attr("values", values)
        return mean_std(values)[0]

    if len(study.trials) >= trials:
        return 0
    with interruptible():
        study.optimize(objective, catch=(QuicknetsError,),
                       callbacks=[MaxTrialsCallback(trials, states=None)])
    return 0


def optuna_sweep(base, space, seeds, trials, workers, threads, runs_dir, name, storage,
                 metric, prune, log=print, log_to=()) -> list:
    from quicknets.sweeps import plan_workers
    url = storage_url(storage, runs_dir)
    from quicknets.metrics import higher_is_better
    direction = "maximize" if higher_is_better(metric) else "minimize"
    open_study(url, name, direction, None, create=True)
    n_workers, n_threads = plan_workers(trials, workers, threads)
    log(f"sweep {name}: Optuna TPE{' with pruning' if prune else ''}, up to {trials} trials x "
        f"{len(seeds)} seed(s), {metric} to {direction}; {n_workers} worker(s) x {n_threads} "
        f"thread(s); study at {url.split('@')[-1]}")
    start = time.perf_counter()
    args = (url, name, direction, base, space, seeds, trials, n_threads, runs_dir, metric,
            prune, log_to)
    seed0 = int.from_bytes(os.urandom(2), "little")  # see the module docstring
    if n_workers == 1:
        worker(url, name, direction, seed0, *args[3:], fresh=False)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from quicknets.sweeps import ignoring_ctrl_c
        with ProcessPoolExecutor(n_workers,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            with ignoring_ctrl_c():  # the workers start on submit
                futures = [pool.submit(worker, url, name, direction, seed0 + i, *args[3:])
                           for i in range(n_workers)]
            for f in futures:
                f.result()
    log(f"sweep {name}: done in {time.perf_counter() - start:.1f} s")
    return study_table(url, name, metric)


def study_table(url: str, name: str, metric: str) -> list:
    """The study's trials as ranked groups (settings, n, metric as (mean, std), runs, state)."""
    from quicknets.comparison import METRICS, mean_std
    study = open_study(url, name, "maximize", None, create=False)
    groups = []
    for t in study.trials:
        values = t.user_attrs.get("values", [])
        group = {m: (None, None) for m in METRICS}
        group.update({"settings": dict(t.params), "n": len(values), "seeds": [],
                      "names": t.user_attrs.get("runs", []), "state": t.state.name,
                      "number": t.number})
        group[metric] = mean_std(values)
        groups.append(group)
    from quicknets.comparison import rank
    return rank(groups, metric)
