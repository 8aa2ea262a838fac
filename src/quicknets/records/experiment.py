"""One recorded run, start to finish: what `quicknets train`, every sweep trial and `--resume` do.

    config = RunConfig.build(network="784-256-10", lr=0.01)
    path, results = run(config, runs_dir="runs")             # setup + train_recorded
    config, model, data = setup(config)                      # the one place a run is set up
    path, results = resume("mlp-256-10_adam_lr0.01_s0-1a2b3c")   # after a kill or Ctrl-C

`setup` resolves the config once (threads, device: machine.resolve; a dataset path made
absolute), loads the data it names and builds the network seeded by the run's seed, shaped by
the data (fit_network: the default MLP takes the data's input size and classes); with
`lr = "auto"` it runs the LR finder on a copy of that network and records its suggestion as the
run's lr (and how it was found as config.lr_find). The optimizer is made by the training loop,
after the network is on its device. The run folder is created before the
first epoch; after each epoch the checkpoint, the history and the index row are updated, so a
run killed at any moment resumes from its last finished epoch and ends with the numbers it would
have had. Ctrl-C keeps that checkpoint, marks the run interrupted and raises Interrupted, whose
message says how to resume it.
"""

import dataclasses
import json

from quicknets.base.errors import Interrupted, QuicknetsError
from quicknets.base.interrupts import ctrl_c_deferred, ctrl_c_pressed
from quicknets.base.machine import resolve, torch_threads, use_strict_math
from quicknets.base.storage import atomic_write_json
from quicknets.config.configs import RunConfig
from quicknets.records.runfolder import read_json
from quicknets.records.runs import (
    CHECKPOINT_FILE,
    check_resumable,
    find_run,
    finish_run,
    fit_run_familiarity,
    hold_run,
    is_finished,
    mark,
    start_run,
    unfinished_message,
)


def setup(config: RunConfig, data=None, recorded: dict | None = None) -> tuple:
    """(resolved config, seeded initial network, dataset) for a run config. `data` is used
    instead of loading the data the config names (a caller that has it loaded already).
    An `auto` lr becomes the LR finder's suggestion: the run then trains exactly as one given
    that lr (the finder works on a copy, with generators of its own). `recorded`: the run's
    recorded data (resume), which data from a path must still match."""
    from quicknets.data.loading import load_recorded, resolve_paths
    from quicknets.networks.models import network
    from quicknets.training.loop import class_weights

    use_strict_math()  # before anything multiplies (the LR finder): the record's math mode
    config = dataclasses.replace(
        config,
        train=resolve(config.train),  # recorded as resolved
        data=resolve_paths(config.data),
    )
    if data is None:
        data = load_recorded(config, recorded=recorded, changed="error")
    class_weights(config.train, data)  # names a class the data lacks: an error before training
    pre = data.preprocessing
    n = dataclasses.replace(config.network, network=fit_network(config.network.network, pre))
    config = dataclasses.replace(config, network=n)
    model = network(
        n.network,
        n.activation,
        n.dropout,
        n.batchnorm,
        input_shape=pre.shape,
        num_classes=len(pre.classes),
        flip_tta=n.flip_tta,
        seed=config.train.seed,
    )
    if config.train.lr == "auto":
        from quicknets.training.lr_finder import lr_find

        found = lr_find(model, data, config.train)
        config = dataclasses.replace(
            config, lr_find=found.record(), train=dataclasses.replace(config.train, lr=found.lr)
        )
    return config, model, data


def setup_sharing(configs: list) -> list:
    """setup() for each of several run configs (the seeds of one variant, the runs of one
    stack): [(config, model, data), ...], reading each dataset once: shared by the configs
    whose data settings agree, and with a validation split, which the seed picks, split per
    seed in memory (loading.split_dataset: the split, and normalisation, that loading the data
    with that seed gives). An `auto` lr is found once per variant (configs alike but for the seed),
    with its first seed's run, as that run alone would find it; its other seeds train with
    that lr, each recording it as found (config.lr_find). Errors: setup's, for the first
    config that has one."""
    from quicknets.data.loading import load_recorded, resolve_paths, split_dataset
    from quicknets.data.preprocessing import DEFAULT_MEAN, DEFAULT_STD

    datas: dict = {}  # (data settings, the seed where it picks the split) -> Dataset
    read: dict = {}  # data settings but split and normalisation -> the Dataset as read
    found: dict = {}  # variant -> its first seed's config, lr found
    done = []
    for config in configs:
        d = config.data
        same = (repr(d), config.train.seed if d.val_split else None)
        if d.val_split and same not in datas:
            as_read = dataclasses.replace(d, val_split=0.0, mean=DEFAULT_MEAN, std=DEFAULT_STD)
            if repr(as_read) not in read:
                whole = dataclasses.replace(config, data=resolve_paths(as_read))
                read[repr(as_read)] = load_recorded(whole, changed="error")
            seed = config.train.seed
            datas[same] = split_dataset(read[repr(as_read)], d.val_split, seed, d.mean, d.std)
        variant = repr(dataclasses.replace(config, train=config.train.replace(seed=0)))
        first = found.get(variant) if config.train.lr == "auto" else None
        if first is not None:
            train = config.train.replace(lr=first.train.lr)
            config = dataclasses.replace(config, train=train, lr_find=first.lr_find)
        config, model, data = setup(config, datas.get(same))
        datas[same] = data
        found.setdefault(variant, config)
        done.append((config, model, data))
    return done


ADAPTING = ("784-256-128-64-10", "mlp")  # the default network, by its spec and its name


def fit_network(spec: str, pre) -> str:
    """The network spec for images `pre` (a Preprocessing): the default MLP (its spec or the
    name mlp) gets the data's input size and class count at its ends (3072-256-128-64-3 for
    32x32 RGB in 3 classes); layer sizes written out must fit the data, else an error names
    the spec that does; conv and ResNet specs adapt by themselves."""
    from quicknets.networks.specs import NETWORKS, parse_sizes

    sizes = parse_sizes(NETWORKS.get(spec, spec)) if isinstance(spec, str) else None
    if not sizes or len(sizes) < 2:
        return spec
    c, h, w = pre.shape
    fitted = [pre.features, *sizes[1:-1], len(pre.classes)]
    if sizes == fitted:
        return spec
    if spec.strip() in ADAPTING:
        return "-".join(map(str, fitted))
    raise QuicknetsError(
        f"the first size must be the input size {pre.features} ({c}x{h}x{w} "
        f"images) and the last the number of classes {len(pre.classes)}, got "
        f"{spec}: give --network {'-'.join(map(str, fitted))}"
    )


def epoch_saver(path, loggers=(), on_epoch=None, config: RunConfig | None = None):
    """The after_epoch step of a recorded run: checkpoint (with the `config` trained with),
    history, status, loggers, and `on_epoch(epoch, row)` (an Optuna trial's pruning check; may
    raise TrialPruned)."""
    from quicknets.training.checkpoint import save_checkpoint

    trained_with = config.to_dict() if config is not None else None

    def after_epoch(epoch, model, opt, generator, history, best=None, scaler=None, rng=None):
        with ctrl_c_deferred():  # the epoch's record whole: checkpoint, history and status agree
            save_checkpoint(
                path / CHECKPOINT_FILE,
                epoch,
                model,
                opt,
                generator,
                history,
                best,
                scaler,
                trained_with,
                rng,
            )
            # progress, readable while training; never recreates a run removed meanwhile
            atomic_write_json(path / "history.json", history, parents=False)
            mark(path, "running", epoch)
        for logger in loggers:
            logger.log(history[-1], epoch)
        if on_epoch is not None:
            on_epoch(epoch, history[-1])

    return after_epoch


def train_recorded(
    config: RunConfig,
    model,
    data,
    runs_dir=None,
    *,
    path=None,
    resume=None,
    quiet=False,
    log=print,
    log_to=(),
    sweep=None,
    on_epoch=None,
    on_start=None,
) -> tuple:
    """Train a set-up run with a checkpoint each epoch, test it and finish its record:
    (path, results). A new run folder is made unless `path` (with `resume`, a checkpoint) names
    the one to continue (inside its `hold_run`). `on_start(path)` is told the folder before
    training begins. The familiarity statistics (familiarity.pt) are fitted at the end, except
    for a sweep's trial (meta.json's "sweep"), which has them fitted at its first use."""
    from contextlib import ExitStack

    from quicknets.data.loading import describe
    from quicknets.evaluation.metrics import evaluate
    from quicknets.training.loggers import open_loggers
    from quicknets.training.loop import class_weights, fit

    with ExitStack() as held:
        try:
            if path is None:
                weights = class_weights(config.train, data)  # recorded as numbers: "auto"'s
                named = None if weights is None else dict(zip(map(str, data.classes), weights))
                # made, locked and told at once: a Ctrl-C then finds it, to mark it interrupted
                with ctrl_c_deferred():
                    path = start_run(
                        config, describe(data), runs_dir, sweep=sweep, class_weights=named
                    )
                    held.enter_context(hold_run(path))  # `runs` shows it running
                    if on_start is not None:
                        on_start(path)
            else:  # a resume holds its run's lock already
                if on_start is not None:
                    on_start(path)
                if resume is not None:
                    mark(path, "running", resume["epoch"])
            loggers = open_loggers(log_to, path, config.to_dict())
            try:
                history = fit(
                    model,
                    data,
                    config.train,
                    quiet=quiet,
                    log=log,
                    resume=resume,
                    after_epoch=epoch_saver(path, loggers, on_epoch, config),
                )
            finally:
                for logger in loggers:
                    logger.close()
            with torch_threads(config.train.threads):  # the run's threads, as its epochs
                results = evaluate(model, data)
                # before results.json (which closes the record). A sweep's trial skips it (4.3
                # MiB and a second or two each, for trials mostly never used): it is fitted and
                # kept at its first use instead (records.runs.run_familiarity)
                if not read_json(path / "meta.json", dict).get("sweep"):
                    results["familiarity"] = fit_run_familiarity(path, model, data)
            finish_run(path, model, history, results)
        except BrokenPipeError:  # `quicknets train | head`: the reader left; resumable, not failed
            if path is None or is_finished(path):
                raise
            mark(path, "interrupted")
            raise QuicknetsError(
                f"the output was closed, so training stopped; {unfinished_message(path)}"
            ) from None
        except BaseException as e:
            if path is None or is_finished(path):  # before the run, or after it was recorded
                raise
            if isinstance(e, KeyboardInterrupt) or ctrl_c_pressed():  # another error after a
                mark(path, "interrupted")  # Ctrl-C is the Ctrl-C's doing (interrupts.py)
                raise Interrupted(unfinished_message(path)) from None
            # pruned by Optuna (resumable like any stopped run), diverged, or failed
            mark(path, "pruned" if type(e).__name__ == "TrialPruned" else "failed")
            raise
    return path, results


def train_stacked_recorded(
    configs: list,
    models: list,
    datas: list,
    runs_dir=None,
    *,
    sweep=None,
    quiet=True,
    log=print,
    on_start=None,
    should_stop=None,
) -> list:
    """Train set-up variants in one stack (training/stacked.py), each into a run folder of its
    own, written as train_recorded writes one: checkpoint and history each epoch, then test
    results. meta.json says `stacked` (the group's id, its size). Returns per variant
    (path, results), or (path, the QuicknetsError that stopped it: marked failed). Ctrl-C, or
    `should_stop()` after an epoch, marks them all interrupted (each resumable alone) and
    raises Interrupted."""
    import secrets
    from contextlib import ExitStack

    from quicknets.data.loading import describe
    from quicknets.evaluation.metrics import evaluate
    from quicknets.training.stacked import fit_stacked

    group = {"group": secrets.token_hex(4), "variants": len(configs)}
    paths, done = [], []
    with ExitStack() as held:
        try:
            for config, data in zip(configs, datas):
                with ctrl_c_deferred():  # made, locked and told at once (as train_recorded)
                    path = start_run(config, describe(data), runs_dir, sweep=sweep, stacked=group)
                    held.enter_context(hold_run(path))
                    paths.append(path)
                    if on_start is not None:
                        on_start(path)
            savers = [epoch_saver(p, (), None, c) for p, c in zip(paths, configs)]
            histories = fit_stacked(
                models,
                datas,
                [c.train for c in configs],
                quiet=quiet,
                log=log,
                after_epochs=savers,
                should_stop=should_stop,
            )
            for path, model, data, history in zip(paths, models, datas, histories):
                if isinstance(history, QuicknetsError):
                    mark(path, "failed")
                    done.append((path, history))
                    continue
                with torch_threads(configs[0].train.threads):  # the stack's, as train_recorded
                    results = evaluate(model, data)
                    if sweep is None:  # as train_recorded; a sweep's trial fits it at first use
                        results["familiarity"] = fit_run_familiarity(path, model, data)
                finish_run(path, model, history, results)
                done.append((path, results))
        except BaseException as e:
            told = {p for p, _ in done}  # finished, or failed on its own
            left = [p for p in paths if p not in told]
            if not left:
                raise
            if isinstance(e, KeyboardInterrupt) or ctrl_c_pressed():  # as train_recorded
                for path in left:
                    mark(path, "interrupted")
                raise Interrupted("; ".join(unfinished_message(p) for p in left)) from None
            for path in left:
                mark(path, "failed")
            raise
    return done


def run(config: RunConfig, runs_dir=None, *, data=None, **options) -> tuple:
    """Set up, train, test and record one run: (path, results). Options as train_recorded."""
    config, model, data = setup(config, data)
    return train_recorded(config, model, data, runs_dir, **options)


def load_config(path) -> RunConfig:
    try:
        return RunConfig.from_dict(json.loads((path / "config.json").read_text()))
    except (OSError, ValueError) as e:
        raise QuicknetsError(f"{path / 'config.json'} is unreadable ({e})") from None


def resume(
    ref,
    runs_dir=None,
    *,
    threads=None,
    device=None,
    data_dir=None,
    quiet=False,
    log=print,
    log_to=(),
) -> tuple:
    """Continue a stopped run from its checkpoint, in the same folder: (path, results). Only
    where and how fast it runs may change: threads, device, data_dir."""
    from quicknets.training.checkpoint import check_trained_with, load_checkpoint

    path = find_run(ref, runs_dir)
    with hold_run(path):  # one trainer per run: a second --resume is refused, not run
        check_resumable(path)
        state = load_checkpoint(path / CHECKPOINT_FILE)
        config = load_config(path)
        check_trained_with(state, config, f"run {path.name}")  # config.json edited by hand
        # The same thread count as before unless asked: float sums, hence the numbers, depend
        # on it.
        config = config.replace(
            threads=threads or config.train.threads or state.get("threads", 0),
            device=device or config.train.device,
            data_dir=data_dir or config.data.data_dir,
        )
        recorded = read_json(path / "meta.json", dict).get("data")
        config, model, data = setup(config, recorded=recorded)  # changed data: an error
        if not quiet:
            log(f"resuming {path.name} after epoch {state['epoch']} of {config.train.epochs}")
        return train_recorded(
            config, model, data, path=path, resume=state, quiet=quiet, log=log, log_to=log_to
        )
