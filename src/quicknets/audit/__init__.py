"""Audit: a dataset checked before training on it (`quicknets audit`). checks.py finds exact
and near duplicates (also between train and test), likely label errors (cleanlab on K-fold
probabilities of networks it trains), class balance and outliers; page.py writes the findings
as an offline HTML page and a JSON file.

May import: every group but commands (it trains networks and borrows the report's style).
"""
