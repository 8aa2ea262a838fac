"""Optional copies of the per-epoch metrics to TensorBoard and MLflow.

    quicknets train --log-to tensorboard          # then: tensorboard --logdir runs
    quicknets train --log-to tensorboard,mlflow   # MLflow: $MLFLOW_TRACKING_URI or ./mlruns

Each integration is imported only when asked for, and a missing package is a clear error before
training starts. The run record stays the source of truth; these are views of the same numbers.
"""

from pathlib import Path

from quicknets.base.errors import QuicknetsError

KINDS = ("tensorboard", "mlflow")


def parse_log_to(text) -> tuple:
    """'tensorboard,mlflow' → ('tensorboard', 'mlflow'), unknown names refused."""
    names = tuple(n.strip() for n in (text or "").split(",") if n.strip())
    for name in names:
        if name not in KINDS:
            raise QuicknetsError(f"--log-to must be among {', '.join(KINDS)}, got {name!r}")
    return names


def require(kinds) -> None:
    """Refuse a logger whose package is not installed, before anything is made: the loggers
    open inside the run folder, which the command line must not create for nothing."""
    import importlib.util
    import sys

    for kind in kinds:
        module = sys.modules.get(kind, False)  # None: an import known to fail
        if module is None or (module is False and importlib.util.find_spec(kind) is None):
            raise QuicknetsError(
                f"--log-to {kind} needs the {kind} package: pip install 'quicknets[{kind}]'"
            )


def numbers(row: dict) -> dict:
    """The numeric metrics of one history row, without the epoch counters."""
    return {
        k: float(v)
        for k, v in row.items()
        if k not in ("epoch", "epochs") and isinstance(v, (int, float))
    }


class TensorBoardLogger:
    """Scalars under <run folder>/tensorboard, so `tensorboard --logdir runs` shows every run."""

    def __init__(self, path: Path, config: dict):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise QuicknetsError(
                "--log-to tensorboard needs the tensorboard package: "
                "pip install 'quicknets[tensorboard]'"
            ) from None
        self.writer = SummaryWriter(log_dir=str(path / "tensorboard"))
        self.writer.add_text("config", f"```\n{config}\n```")

    def log(self, row: dict, step: int) -> None:
        for key, value in numbers(row).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()  # visible while training

    def close(self) -> None:
        self.writer.close()


class MlflowLogger:
    """One MLflow run per quicknets run, named like the folder, with the settings as params."""

    def __init__(self, path: Path, config: dict):
        try:
            import mlflow
        except ImportError:
            raise QuicknetsError(
                "--log-to mlflow needs the mlflow package: pip install 'quicknets[mlflow]'"
            ) from None
        self.mlflow = mlflow
        mlflow.start_run(run_name=path.name)
        mlflow.log_params(
            {f"{part}.{k}": v for part, values in config.items() for k, v in values.items()}
        )
        mlflow.set_tag("quicknets.run", str(path))

    def log(self, row: dict, step: int) -> None:
        self.mlflow.log_metrics(numbers(row), step=step)

    def close(self) -> None:
        self.mlflow.end_run()


def open_loggers(kinds, path: Path, config: dict) -> list:
    """The loggers asked for (names or a comma list), opened for one run."""
    if isinstance(kinds, str):
        kinds = parse_log_to(kinds)
    makers = {"tensorboard": TensorBoardLogger, "mlflow": MlflowLogger}
    return [makers[kind](Path(path), config) for kind in parse_log_to(",".join(kinds))]
