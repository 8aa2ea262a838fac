"""quicknets train: load the data, build the network, train, test, save the run."""
from quicknets.commands.common import add_runs_dir
from quicknets.config import DataConfig, ModelConfig, TrainConfig, add_flags, from_args
from quicknets.presets import PRESETS, native_bf16, preset_settings


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a network and save the run (no flags: the notebook's quick pass)",
        description="Train a network and save the run. With no flags: Fashion-MNIST, "
                    "784-256-128-64-10 with ReLU and LogSoftmax, Adam at lr 0.003, batch 64, "
                    "7 epochs, as in the notebook.")
    for cls in (DataConfig, ModelConfig, TrainConfig):
        add_flags(p, cls)
    p.add_argument("--preset", default=None, choices=list(PRESETS),
                   help="a recipe for time-to-accuracy (fast: 0.90 in 30 s on a CPU; cnn: 0.93 "
                        "in 5 min; best: 0.95, GPU recommended); it fills in the model and train "
                        "settings, and flags given explicitly still win")
    add_runs_dir(p)
    p.add_argument("--quiet", action="store_true", help="print only the final results")
    p.add_argument("--resume", metavar="RUN", default=None,
                   help="continue a stopped run from its last checkpoint, with its own settings "
                        "(only --threads, --device and --data-dir may be given)")
    p.add_argument("--log-to", default="", metavar="NAMES",
                   help="also log each epoch to tensorboard and/or mlflow (comma list)")
    p.set_defaults(handler=run)


RESUME_FLAGS = ("threads", "device", "data_dir")  # where and how fast, never what is trained


def resume(args) -> int:
    from dataclasses import fields

    from quicknets.errors import QuicknetsError
    from quicknets.experiment import resume_experiment
    from quicknets.loggers import parse_log_to
    from quicknets.metrics import format_results

    given = [f.name for c in (DataConfig, ModelConfig, TrainConfig) for f in fields(c)
             if getattr(args, f.name, None) is not None and f.name not in RESUME_FLAGS]
    if given:
        raise QuicknetsError(f"--resume continues a run with its saved settings; drop "
                             + ", ".join("--" + g.replace("_", "-") for g in given))
    threads = int(args.threads) if args.threads is not None else None
    path, results = resume_experiment(args.resume, args.runs_dir, threads=threads,
                                      device=args.device, data_dir=args.data_dir,
                                      quiet=args.quiet, log_to=parse_log_to(args.log_to))
    print(format_results(results))
    print(f"saved: {path}")
    return 0


def run(args) -> int:
    if args.resume:
        return resume(args)
    import dataclasses

    import torch

    from quicknets.data import dataset_info, load_dataset
    from quicknets.experiment import run_experiment
    from quicknets.loggers import parse_log_to
    from quicknets.metrics import format_results
    from quicknets.models import network
    from quicknets.training import pick_device, resolve

    preset = {"model": {}, "train": {}}
    if args.preset:
        device_type = pick_device(args.device or "auto").type
        preset = preset_settings(args.preset, device_type, native_bf16(device_type))
    data_cfg = from_args(DataConfig, args)
    model_cfg = from_args(ModelConfig, args, preset["model"])
    train_cfg = from_args(TrainConfig, args, preset["train"])
    train_cfg = resolve(train_cfg)  # threads and device as used, so the record can reproduce it
    config = {"data": dataclasses.asdict(data_cfg), "model": dataclasses.asdict(model_cfg),
              "train": dataclasses.asdict(train_cfg)}
    if args.preset:
        config["preset"] = args.preset
    say = (lambda *a: None) if args.quiet else print
    log_to = parse_log_to(args.log_to)
    if args.preset:
        say(f"preset: {args.preset} ({PRESETS[args.preset]['target']})")
    say("config: " + "  ".join(f"{k}={v}" for part in (data_cfg, model_cfg, train_cfg)
                               for k, v in dataclasses.asdict(part).items()))
    torch.manual_seed(train_cfg.seed)  # the initial weights
    model = network(model_cfg.model, model_cfg.activation, model_cfg.dropout,  # spec errors first
                    model_cfg.batchnorm, num_classes=len(dataset_info(data_cfg.dataset).classes),
                    flip_tta=model_cfg.flip_tta)
    data = load_dataset(data_cfg.dataset, data_cfg.data_dir or None, data_cfg.val_split,
                        train_cfg.seed, data_cfg.mean, data_cfg.std, verify=data_cfg.verify)
    say(f"data: {data.name} from {data.source}: {len(data.train_labels)} train, "
        f"{0 if data.val_labels is None else len(data.val_labels)} validation, "
        f"{len(data.test_labels)} test images")
    # checkpoints each epoch into the run folder; Ctrl-C or a kill leaves it resumable
    path, results = run_experiment(config, args.runs_dir, data=data, model=model,
                                   quiet=args.quiet, log_to=log_to,
                                   on_start=lambda p: say(f"run: {p}"))
    print(format_results(results))
    print(f"saved: {path}")
    return 0
