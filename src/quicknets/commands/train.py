"""quicknets train: load the data, build the network, train, test, save the run."""

from quicknets.commands.common import add_runs_dir, given, preset_name
from quicknets.config.configs import DataConfig, NetworkConfig, TrainConfig, add_flags
from quicknets.config.presets import PRESETS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a network and save the run (no flags: the notebook's quick pass)",
        description="Train a network and save the run. With no flags: Fashion-MNIST, "
        "784-256-128-64-10 with ReLU and LogSoftmax, Adam at lr 0.003, batch 64, "
        "7 epochs, as in the notebook.",
    )
    for cls in (DataConfig, NetworkConfig, TrainConfig):
        add_flags(p, cls)
    p.add_argument(
        "--preset",
        default=None,
        choices=list(PRESETS),
        type=preset_name,
        help="a training recipe for time-to-accuracy (fast: 0.90, an MLP; balanced: "
        "0.92, a small CNN; accurate: 0.935, a CNN; thorough: 0.94, a small "
        "ResNet; best: aims at 0.95, GPU recommended; times in the README); it "
        "fills in the network and train settings, and flags given explicitly "
        "still win",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE.toml",
        type=given,
        help="settings from a TOML file (the flags' names, top level or in [data], "
        "[network], [train] tables; `preset = NAME` too); flags override it",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved settings as a TOML file for --config, and stop",
    )
    add_runs_dir(p)
    p.add_argument("--quiet", action="store_true", help="print only the final results")
    p.add_argument(
        "--resume",
        metavar="RUN",
        default=None,
        type=given,
        help="continue a stopped run from its last checkpoint, with its own settings "
        "(only --threads, --device and --data-dir may be given)",
    )
    p.add_argument(
        "--seeds",
        default=None,
        metavar="N|LIST",
        help="train this run once per seed (5 means 0-4; or a list 0,7,9), each its own "
        "run record, an MLP's seeds together in one step; prints the mean ± std",
    )
    p.add_argument(
        "--no-stack",
        dest="stack",
        action="store_false",
        default=None,
        help="with --seeds: train the seeds one after another instead of in one step",
    )
    p.add_argument(
        "--log-to",
        default="",
        metavar="NAMES",
        help="also log each epoch to tensorboard and/or mlflow (comma list)",
    )
    p.set_defaults(handler=run)


RESUME_FLAGS = ("threads", "device", "data_dir")  # where and how fast, never what is trained


def resume(args) -> int:
    from quicknets.base.errors import QuicknetsError
    from quicknets.config.configs import given_flags
    from quicknets.evaluation.metrics import format_results
    from quicknets.records import experiment
    from quicknets.training.loggers import parse_log_to, require

    given = [k for k in given_flags(args) if k not in RESUME_FLAGS]
    if given or args.preset or args.config:
        given += ["preset"] * bool(args.preset) + ["config"] * bool(args.config)
        raise QuicknetsError(
            "--resume continues a run with its saved settings; drop "
            + ", ".join("--" + g.replace("_", "-") for g in given)
        )
    threads = given_flags(args).get("threads")
    log_to = parse_log_to(args.log_to)
    require(log_to)  # a missing package: an error before the run is touched
    path, results = experiment.resume(
        args.resume,
        args.runs_dir,
        threads=int(threads) if threads is not None else None,
        device=args.device,
        data_dir=args.data_dir,
        quiet=args.quiet,
        log_to=log_to,
    )
    print(format_results(results))
    print(f"saved: {path}")
    return 0


def run_config(args):
    """The RunConfig the flags describe: a --config file, then --preset, then the flags."""
    from quicknets.config.configs import RunConfig, given_flags, read_toml

    settings = {**(read_toml(args.config) if args.config else {}), **given_flags(args)}
    preset = args.preset or settings.pop("preset", None)
    return RunConfig.build(preset=preset, **settings)


def print_config(args) -> int:
    """--print-config: the resolved settings (threads and device made concrete, as recorded) as
    TOML; `train --config` with that file trains the same run."""
    import dataclasses

    from quicknets.base.machine import resolve
    from quicknets.config.configs import to_toml

    if args.resume:
        from quicknets.records.experiment import load_config
        from quicknets.records.runs import find_run

        config = load_config(find_run(args.resume, args.runs_dir))
    else:
        config = run_config(args)
        config = dataclasses.replace(config, train=resolve(config.train))
    print(to_toml(config), end="")
    return 0


def seeds(args) -> int:
    """--seeds: one run per seed, stacked (training/stacked.py) where the network allows;
    each run's results line and folder, then the test accuracy's mean ± std."""
    import dataclasses
    import statistics

    from quicknets.base.errors import QuicknetsError
    from quicknets.config.configs import given_flags
    from quicknets.records import experiment
    from quicknets.sweeps.space import seed_list
    from quicknets.training.stackable import stack_key
    from quicknets.training.stacked import stack_refusal

    clashing = {
        "--seed": "seed" in given_flags(args),
        "--resume": args.resume,
        "--print-config": args.print_config,
        "--log-to": args.log_to,
    }
    given = [flag for flag, on in clashing.items() if on]
    if given:  # name only the flags given, as the user wrote them
        raise QuicknetsError(f"--seeds trains one run per seed; drop {', '.join(given)}")
    config = run_config(args)
    runs = [dataclasses.replace(config, train=config.train.replace(seed=s)) for s in
            seed_list(args.seeds)]  # fmt: skip
    say = (lambda *a: None) if args.quiet else print
    set_up = experiment.setup_sharing(runs)  # the data loaded once, not once per seed
    configs, models, datas = (list(x) for x in zip(*set_up))
    if config.train.lr == "auto":  # found once: the seeds are one variant
        first = configs[0].train
        say(f"lr: auto -> {first.lr:g} (found once, with seed {first.seed}; every seed uses it)")
    key = stack_key(configs[0])
    reason = (
        "--no-stack"
        if args.stack is False
        else key
        if isinstance(key, str)
        else stack_refusal(models, [c.train for c in configs], datas)
    )
    if reason is None:
        say(f"seeds: {len(runs)} runs in one step (stacked; --no-stack trains them apart)")
        done = experiment.train_stacked_recorded(
            configs, models, datas, args.runs_dir, quiet=args.quiet, log=print
        )
    else:
        say(f"seeds: {len(runs)} runs one after another ({reason})")
        done = [
            experiment.train_recorded(c, m, d, args.runs_dir, quiet=args.quiet)
            for c, m, d in zip(configs, models, datas)
        ]
    accuracies = []
    for config, (path, results) in zip(configs, done):
        if isinstance(results, QuicknetsError):
            print(f"seed {config.train.seed}: failed: {results}  {path}")
            continue
        accuracies.append(results["accuracy"])
        print(f"seed {config.train.seed}: test accuracy {results['accuracy']:.4f}  saved: {path}")
    if not accuracies:
        raise QuicknetsError("no seed's run finished")
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    print(
        f"test accuracy over {len(accuracies)} seed(s): "
        f"{statistics.mean(accuracies):.4f} ± {spread:.4f} (sample std)"
    )
    return 0


def run(args) -> int:
    if not (args.print_config or args.resume):  # where run folders go: checked before any work
        from quicknets.base.storage import output_path
        from quicknets.records.runs import runs_root

        output_path(runs_root(args.runs_dir), folder=True)
    if args.seeds is not None:
        return seeds(args)
    if args.stack is False:
        from quicknets.base.errors import QuicknetsError

        raise QuicknetsError("--no-stack is for --seeds (one run trains alone)")
    if args.print_config:
        return print_config(args)
    if args.resume:
        return resume(args)
    from quicknets.evaluation.metrics import format_results
    from quicknets.networks.models import totals
    from quicknets.records import experiment
    from quicknets.training.loggers import parse_log_to, require
    from quicknets.training.loop import class_weights

    log_to = parse_log_to(args.log_to)
    require(log_to)  # a missing package: an error before the run folder is made
    config, model, data = experiment.setup(run_config(args))
    say = (lambda *a: None) if args.quiet else print
    if config.preset:
        say(f"preset: {config.preset} ({PRESETS[config.preset]['target']})")
    if config.lr_find:
        found = config.lr_find
        say(
            f"lr: auto -> {found['lr']:g} ({found['method']}, {found['source']}; "
            f"{found['steps']} steps, {found['stopped']})"
        )
    say("config: " + "  ".join(f"{k}={v}" for k, v in config.flat().items()))
    if not args.quiet:
        params, flops = totals(model)
        counted = (
            "forward pass of the image and its mirror: flip TTA"
            if config.network.flip_tta
            else "forward pass"
        )
        say(f"network: {params:,} parameters, {flops:,} FLOPs per image ({counted})")
    say(
        f"data: {data.name} from {data.source}: {len(data.train_labels)} train, "
        f"{0 if data.val_labels is None else len(data.val_labels)} validation, "
        f"{len(data.test_labels)} test images"
    )
    weights = class_weights(config.train, data)
    if weights is not None:
        say(
            f"class weights ({config.train.class_weights}): "
            + ", ".join(f"{c}={w:.4g}" for c, w in zip(data.classes, weights))
        )
    # checkpoints each epoch into the run folder; Ctrl-C or a kill leaves it resumable
    path, results = experiment.train_recorded(
        config,
        model,
        data,
        args.runs_dir,
        quiet=args.quiet,
        log_to=log_to,
        on_start=lambda p: say(f"run: {p}"),
    )
    print(format_results(results))
    print(f"saved: {path}")
    return 0
