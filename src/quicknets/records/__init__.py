"""Records: one self-describing folder per run, and what reads many of them. runfolder.py: a
folder's state and lock; runs.py: start, finish, save, load, list, remove; index.py: the SQLite
index of the folders; experiment.py: a recorded run start to finish (setup, train, resume);
comparison.py: differing settings, mean and std over seeds, ranking.

May import: base, data, config, networks, evaluation, plots, training.
"""
