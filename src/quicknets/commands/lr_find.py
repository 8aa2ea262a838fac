"""quicknets lr-find: sweep the learning rate on a copy of the network, plot loss against lr,
print and save the suggested rate.

    quicknets lr-find                                  # the notebook's network and Adam
    quicknets lr-find --optimizer sgd --network cnn --plot sgd-cnn.png
    quicknets train --lr auto                          # the same sweep, then training at its lr

Every `train` flag sets up the run the rate is for (network, optimizer, batch size, seed, ...).
It writes the figure (--plot, default lr_find.png) and, beside it, a JSON file with the rates,
the losses and the suggestion.
"""

from quicknets.commands.common import add_runs_dir, given, preset_name
from quicknets.config.configs import DataConfig, NetworkConfig, TrainConfig, add_flags
from quicknets.config.presets import PRESETS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "lr-find",
        help="find a learning rate: an exponential LR sweep, plotted, with a suggestion",
        description="Train a copy of the network for a few hundred steps while the learning "
        "rate grows exponentially (Smith's LR range test, as fastai's lr_find), "
        "plot the smoothed loss against the rate and suggest one (fastai's "
        "'valley': halfway down the longest descent). Takes every train flag.",
    )
    for cls in (DataConfig, NetworkConfig, TrainConfig):
        add_flags(p, cls)
    p.add_argument(
        "--preset",
        default=None,
        choices=list(PRESETS),
        type=preset_name,
        help="a training recipe, as for train",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE.toml",
        type=given,
        help="settings from a TOML file, as for train; flags override it",
    )
    p.add_argument(
        "--steps", type=int, default=200, help="optimizer steps of the sweep (default: 200)"
    )
    p.add_argument("--start-lr", type=float, default=1e-7, help="first rate (default: 1e-7)")
    p.add_argument("--end-lr", type=float, default=10.0, help="last rate (default: 10)")
    p.add_argument(
        "--plot",
        default="lr_find.png",
        metavar="FILE",
        type=given,
        help="the figure (.png, .svg or .pdf; default: lr_find.png); the numbers "
        "go beside it as FILE.json",
    )
    p.add_argument("--quiet", action="store_true", help="print only the suggested rate")
    add_runs_dir(p)  # accepted as for train: a file of train settings may name it
    p.set_defaults(handler=run, print_config=False, resume=None)


def run(args) -> int:
    from quicknets.base.storage import atomic_write_json, output_path
    from quicknets.commands.train import run_config
    from quicknets.plots.figures import figure_path, save_figure
    from quicknets.records import experiment
    from quicknets.training.lr_finder import lr_find, plot_lr_find

    plot = figure_path(args.plot)  # a bad name or place is an error before the sweep, not after
    numbers = output_path(plot.with_suffix(".json"))
    config = run_config(args)
    if config.train.lr == "auto":  # the rate is what we look for: setup must not find it first
        config = config.replace(lr=TrainConfig().lr)  # (the sweep sets its own rates)
    config, model, data = experiment.setup(config)
    train = config.train
    found = lr_find(
        model, data, train, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps
    )
    what = (
        f"{train.optimizer} on {config.network.network}, batch {train.batch_size}, "
        f"seed {train.seed}"
    )
    if not args.quiet:
        print(
            f"lr-find: {what}: {len(found.lrs)} steps from {found.lrs[0]:.2g} "
            f"({found.stopped}), {found.seconds:.1f} s"
        )
    print(f"suggested lr: {found.lr:g} ({found.describe()})")
    save_figure(plot_lr_find(found, title=f"LR range test: {what}"), plot)
    atomic_write_json(
        numbers,
        {
            **found.record(),
            "settings": config.flat(),
            "lrs": found.lrs,
            "losses": found.losses,
            "raw": found.raw,
        },
    )
    if not args.quiet:
        print(f"wrote: {plot}")
        print(f"wrote: {numbers}")
        print(f"train with it: quicknets train --lr {found.lr:g} (or --lr auto)")
    return 0
