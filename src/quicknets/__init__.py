"""quicknets: build, train, test and compare small networks on Fashion-MNIST and the MNIST family.

    from quicknets import load_dataset, network, train, evaluate, classify, explain
    data = load_dataset("fashion-mnist")
    model = network("784-256-128-64-10")
    history = train(model, data, optimizer="adam", lr=0.003, epochs=7)
    results = evaluate(model, data)
    heat = explain(model, 0, data=data)   # (28, 28): why test image 0 got its class

Names are imported on first use, so `import quicknets` (and `quicknets --help`) stays fast.
"""

import importlib

__version__ = "0.1.0"

# public name -> module that defines it. No module may share a name with an export: importing
# quicknets.X binds the module as attribute X of the package, hiding a lazy export named X.
_EXPORTS = {
    "load_dataset": "quicknets.data.loading",
    "Dataset": "quicknets.data.loading",
    "network": "quicknets.networks.models",
    "summary": "quicknets.networks.models",
    "NETWORKS": "quicknets.networks.specs",
    "PRESETS": "quicknets.config.presets",
    "train": "quicknets.training.loop",
    "evaluate": "quicknets.evaluation.metrics",
    "calibrate": "quicknets.evaluation.calibration",
    "classify": "quicknets.evaluation.classification",
    "banner": "quicknets.evaluation.classification",
    "predict": "quicknets.evaluation.classification",
    "predict_proba": "quicknets.evaluation.classification",
    "explain": "quicknets.evaluation.attribution",
    "robustness": "quicknets.evaluation.robustness",
    "corrupt": "quicknets.evaluation.robustness",
    "fit_familiarity": "quicknets.evaluation.familiarity",
    "export": "quicknets.outputs.exporting",
    "load_exported": "quicknets.outputs.exporting",
    "save_run": "quicknets.records.runs",
    "load_run": "quicknets.records.runs",
    "load_model": "quicknets.records.runs",
    "list_runs": "quicknets.records.runs",
    "compare": "quicknets.records.comparison",
    "mark_variants": "quicknets.records.comparison",
    "mcnemar": "quicknets.evaluation.significance",
    "compare_seeds": "quicknets.evaluation.significance",
    "not_worse_than_best": "quicknets.evaluation.significance",
    "param_importance": "quicknets.sweeps.importance",
    "sweep": "quicknets.sweeps",
    "imshow": "quicknets.plots.figures",
    "view_classify": "quicknets.plots.figures",
    "show_batch": "quicknets.plots.figures",
    "show_predictions": "quicknets.plots.figures",
    "plot_top_losses": "quicknets.plots.figures",
    "plot_history": "quicknets.plots.figures",
    "plot_confusion_matrix": "quicknets.plots.figures",
    "RunConfig": "quicknets.config.configs",
    "DataConfig": "quicknets.config.configs",
    "NetworkConfig": "quicknets.config.configs",
    "TrainConfig": "quicknets.config.configs",
    "QuicknetsError": "quicknets.base.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'quicknets' has no attribute {name!r}")


def __dir__():
    return __all__ + ["__version__"]
