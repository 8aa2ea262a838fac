"""quicknets: build, train, test and compare small networks on Fashion-MNIST and the MNIST family.

    from quicknets import load_dataset, network, train, evaluate, classify
    data = load_dataset("fashion-mnist")
    model = network("784-256-128-64-10")
    history = train(model, data, optimizer="adam", lr=0.003, epochs=7)
    results = evaluate(model, data)

Names are imported on first use, so `import quicknets` (and `quicknets --help`) stays fast.
"""
import importlib

__version__ = "0.1.0"

# public name -> module that defines it. No module may share a name with an export: importing
# quicknets.X binds the module as attribute X of the package, hiding a lazy export named X.
_EXPORTS = {
    "load_dataset": "quicknets.data", "Dataset": "quicknets.data",
    "network": "quicknets.models", "summary": "quicknets.models", "NETWORKS": "quicknets.models",
    "PRESETS": "quicknets.presets",
    "train": "quicknets.training",
    "evaluate": "quicknets.metrics",
    "classify": "quicknets.classification", "banner": "quicknets.classification",
    "predict": "quicknets.classification", "predict_proba": "quicknets.classification",
    "export": "quicknets.exporting", "load_exported": "quicknets.exporting",
    "save_run": "quicknets.runs", "load_run": "quicknets.runs", "load_model": "quicknets.runs",
    "list_runs": "quicknets.runs",
    "compare": "quicknets.comparison", "sweep": "quicknets.sweeps",
    "imshow": "quicknets.plots", "view_classify": "quicknets.plots",
    "show_batch": "quicknets.plots", "show_predictions": "quicknets.plots",
    "plot_top_losses": "quicknets.plots", "plot_history": "quicknets.plots",
    "plot_confusion_matrix": "quicknets.plots",
    "RunConfig": "quicknets.config", "DataConfig": "quicknets.config",
    "NetworkConfig": "quicknets.config", "TrainConfig": "quicknets.config",
    "QuicknetsError": "quicknets.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'quicknets' has no attribute {name!r}")


def __dir__():
    return __all__ + ["__version__"]
