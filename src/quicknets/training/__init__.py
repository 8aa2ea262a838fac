"""Training: one plain loop and what it may switch on. loop.py: train(), fit(); fused.py: the
Linear+ReLU pass written out; stacked.py: several MLP variants in one step (stackable.py: which
stack, without torch); tricks.py: LR schedules and batched augmentation; lr_finder.py:
the LR range test; checkpoint.py: exact resume; loggers.py: copies of each epoch's numbers to
TensorBoard and MLflow.

May import: base, data, config, networks, evaluation, plots.
"""
