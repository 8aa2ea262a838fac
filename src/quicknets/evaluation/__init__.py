"""Evaluation: how well a network does and on what. metrics.py: evaluate (exact loss and
accuracy, per class, confusion matrix); metric_names.py: METRICS with their directions (no
torch); classification.py:
classify one image, predict, predict_proba. How far to trust a network: calibration.py (ECE,
temperature scaling), familiarity.py (is an image like the training data), robustness.py
(accuracy under graded corruptions).

May import: base, data, config, networks.
"""
