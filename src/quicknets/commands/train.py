"""quicknets train: load the data, build the network, train, test, save the run."""
from quicknets.commands.common import add_runs_dir
from quicknets.config import DataConfig, ModelConfig, TrainConfig, add_flags, from_args


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a network and save the run (no flags: the notebook's quick pass)",
        description="Train a network and save the run. With no flags: Fashion-MNIST, "
                    "784-256-128-64-10 with ReLU and LogSoftmax, Adam at lr 0.003, batch 64, "
                    "7 epochs, as in the notebook.")
    for cls in (DataConfig, ModelConfig, TrainConfig):
        add_flags(p, cls)
    add_runs_dir(p)
    p.add_argument("--quiet", action="store_true", help="print only the final results")
    p.set_defaults(handler=run)


def run(args) -> int:
    import dataclasses

    import torch

    from quicknets.data import dataset_info, describe, load_dataset
    from quicknets.metrics import evaluate, format_results
    from quicknets.models import network
    from quicknets.runs import save_run
    from quicknets.train import resolve, train

    data_cfg, model_cfg, train_cfg = (from_args(c, args)
                                      for c in (DataConfig, ModelConfig, TrainConfig))
    train_cfg = resolve(train_cfg)  # threads and device as used, so the record can reproduce it
    config = {"data": dataclasses.asdict(data_cfg), "model": dataclasses.asdict(model_cfg),
              "train": dataclasses.asdict(train_cfg)}
    say = (lambda *a: None) if args.quiet else print
    say("config: " + "  ".join(f"{k}={v}" for part in config.values() for k, v in part.items()))
    torch.manual_seed(train_cfg.seed)  # the initial weights
    model = network(model_cfg.model, model_cfg.activation, model_cfg.dropout,  # spec errors first
                    model_cfg.batchnorm, num_classes=len(dataset_info(data_cfg.dataset).classes))
    data = load_dataset(data_cfg.dataset, data_cfg.data_dir or None, data_cfg.val_split,
                        train_cfg.seed, data_cfg.mean, data_cfg.std, verify=data_cfg.verify)
    say(f"data: {data.name} from {data.source}: {len(data.train_labels)} train, "
        f"{0 if data.val_labels is None else len(data.val_labels)} validation, "
        f"{len(data.test_labels)} test images")
    config["model"]["spec"] = model.config["spec"]
    history = train(model, data, train_cfg, quiet=args.quiet)
    results = evaluate(model, data)
    print(format_results(results))
    path = save_run(model, config, history, results, describe(data), args.runs_dir)
    print(f"saved: {path}")
    return 0
