"""Data: images and labels as uint8 tensors, and what a network needs to read them.

    from quicknets.data import load_dataset, Dataset     # the group's face (loading.py)

loading.py is the front door (load_dataset, Dataset, load_recorded, describe); below it the
built-in sets (datasets.py: names, files, digests; idx.py; fetch.py), your own data (sources.py:
CSV files in csvdata.py, folders in imagefolders.py, .npz; rawdata.py what they share), a user's
image file (images.py) and preprocessing.py (shape, mean/std, classes of a network's input).

May import: base. Imported lazily here, so `import quicknets.data.datasets` (as the command line
does) does not import torch.
"""

import importlib

_FACE = {"load_dataset": "quicknets.data.loading", "Dataset": "quicknets.data.loading"}


def __getattr__(name):
    if name in _FACE:
        return getattr(importlib.import_module(_FACE[name]), name)
    raise AttributeError(f"module 'quicknets.data' has no attribute {name!r}")
