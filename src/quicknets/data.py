"""Load Fashion-MNIST, MNIST or KMNIST as uint8 tensors: found or fetched, verified, cached.

    data = load_dataset("fashion-mnist", val_split=0.1, seed=0)
    data.train_images   # uint8 (54000, 28, 28); data.val_images (6000, 28, 28); data.classes

Files are looked for, in order, in `data_dir`, `$QUICKNETS_DATA`, the user cache, the Debian
package's folder, then fetched from the official mirrors into `data_dir` or the cache. The decoded
tensors are cached, so the next load skips decompressing and hashing.
"""
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from quicknets.datasets import DATASETS, FILES, DatasetInfo, identify
from quicknets.errors import QuicknetsError
from quicknets.fetch import fetch_files
from quicknets.idx import read_idx
from quicknets.preprocessing import DEFAULT_MEAN, DEFAULT_STD, Preprocessing, dataset_layout
from quicknets.preprocessing import normalize  # noqa: F401  (quicknets.data.normalize, as before)
from quicknets.storage import atomic_torch_save, cache_dir


@dataclass
class Dataset:
    """One dataset in memory: uint8 images (N, H, W), int64 labels, and how it was made.
    `preprocessing` says what a network trained on it needs (shape, normalisation, classes)."""
    name: str
    classes: list
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    mean: float = DEFAULT_MEAN  # normalisation: x = (pixel / 255 - mean) / std
    std: float = DEFAULT_STD
    val_split: float = 0.0
    seed: int = 0
    source: str = ""

    @property
    def preprocessing(self) -> Preprocessing:
        """What a network trained on this data needs: shape, normalisation, classes, layout."""
        images = self.train_images if len(self.train_images) else self.test_images
        shape = tuple(images.shape[1:]) if images.dim() == 4 else (1, *images.shape[1:])
        return Preprocessing(shape, (self.mean,), (self.std,), tuple(self.classes), self.name,
                             dataset_layout(self.name))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W) → float (B, 1, H, W), on whatever device `images` is on."""
        return self.preprocessing.normalize(images)


def search_dirs(info: DatasetInfo, data_dir=None) -> list:
    """Where the files are looked for, in order."""
    dirs = []
    if data_dir:
        dirs += [Path(data_dir), Path(data_dir) / info.torchvision_name / "raw"]
    if os.environ.get("QUICKNETS_DATA"):
        env = Path(os.environ["QUICKNETS_DATA"])
        dirs += [env, env / info.name, env / info.torchvision_name / "raw"]
    dirs.append(cache_dir() / info.name)
    if info.debian_dir:
        dirs.append(Path(info.debian_dir))
    return dirs


def find_files(folder: Path) -> dict | None:
    """The four IDX files in `folder` (raw or .gz), or None if any is missing."""
    found = {}
    for key, stem in FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def _cache_key(files: dict) -> str:
    """Identify a set of source files by path, size and modification time (no hashing needed)."""
    h = hashlib.sha256()
    for key in sorted(files):
        st = files[key].stat()
        h.update(f"{files[key].resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _verify(info: DatasetInfo, key: str, path: Path, digest: str) -> None:
    expected = info.sha256[key]
    if expected is None or digest == expected:
        return
    other = identify(digest)
    if other is not None and other != info.name:
        raise QuicknetsError(f"{path} holds {other} data, not {info.name}; delete it (or point "
                             f"--data-dir at the right folder) and fetch the data again")
    raise QuicknetsError(f"{path} does not match the official {info.name} content (sha256 "
                         f"{digest[:12]}..., expected {expected[:12]}...): it is corrupt or a "
                         "different dataset; delete it and fetch again, or pass --no-verify "
                         "for your own files")


def _decode(info: DatasetInfo, files: dict, verify: bool) -> dict:
    """Read, check and convert the four files into tensors."""
    arrays = {}
    for key, path in files.items():
        array, digest = read_idx(path)
        if verify:
            _verify(info, key, path, digest)
        arrays[key] = array
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise QuicknetsError(f"{files[f'{split}_images']} holds {images.dtype} images of "
                                 f"shape {images.shape[1:]}, expected uint8 28x28")
        if labels.ndim != 1 or len(labels) != len(images):
            raise QuicknetsError(f"{files[f'{split}_labels']} has {labels.shape} labels for "
                                 f"{len(images)} images")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(info.classes)):
            raise QuicknetsError(f"{files[f'{split}_labels']} has labels outside "
                                 f"0..{len(info.classes) - 1}")
    tensors = {k: torch.from_numpy(a) for k, a in arrays.items()}
    for split in ("train", "test"):
        tensors[f"{split}_labels"] = tensors[f"{split}_labels"].long()
    return tensors


def _load_files(info: DatasetInfo, files: dict, verify: bool) -> dict:
    """Decoded tensors for `files`, from the decoded cache when it holds them."""
    cached = cache_dir() / "decoded" / f"{info.name}-{_cache_key(files)}{'' if verify else '-nv'}.pt"
    if cached.is_file():
        try:
            return torch.load(cached, weights_only=True)
        except Exception:  # a damaged cache file is only a cache: decode again and replace it
            pass
    tensors = _decode(info, files, verify)
    try:
        atomic_torch_save(tensors, cached)
    except OSError as e:  # a read-only cache slows the next load; it does not stop this one
        print(f"warning: cannot write the decoded cache {cached}: {e}", file=sys.stderr)
    return tensors


def locate(name: str, data_dir=None, download: bool = True) -> dict:
    """The paths of the four files of dataset `name`, fetching them if allowed and needed."""
    info = dataset_info(name)
    dirs = search_dirs(info, data_dir)
    if data_dir and not Path(data_dir).is_dir():
        dirs = [Path(data_dir)]  # a new folder (or a typo): fetch into it, never fall back to others
    for folder in dirs:
        files = find_files(folder)
        if files:
            return files
    target = Path(data_dir) if data_dir else cache_dir() / info.name
    why = "downloads are off"
    if download:
        fetched, why = fetch_files(info, target)
        if fetched:
            return fetched
    searched = "\n  ".join(str(d) for d in dirs)
    hint = "apt-get install dataset-fashion-mnist, or " if info.debian_dir else ""
    raise QuicknetsError(
        f"{info.name} not found and could not be downloaded ({why}). Searched:\n  {searched}\n"
        f"To get it: {hint}put the four IDX files ({', '.join(FILES.values())}, .gz or raw) "
        "in one of those folders or in --data-dir.")


def dataset_info(name: str) -> DatasetInfo:
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        raise QuicknetsError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return DATASETS[key]


def load_dataset(name: str = "fashion-mnist", data_dir=None, val_split: float = 0.0,
                 seed: int = 0, mean: float = DEFAULT_MEAN, std: float = DEFAULT_STD,
                 download: bool = True, verify: bool = True) -> Dataset:
    """Train and test tensors, class names, and an optional seeded validation split.

    val_split: the fraction of the training set held out for validation (0 for none); which
    images go there is fixed by `seed`, so the split is recorded by (val_split, seed).
    """
    if not 0.0 <= val_split < 1.0:
        raise QuicknetsError(f"val_split must be in [0, 1), not {val_split}")
    if std <= 0:
        raise QuicknetsError(f"std must be positive, not {std}")
    info = dataset_info(name)
    files = locate(info.name, data_dir, download)
    t = _load_files(info, files, verify)
    data = Dataset(info.name, list(info.classes), t["train_images"], t["train_labels"],
                   t["test_images"], t["test_labels"], mean=mean, std=std, val_split=val_split,
                   seed=seed, source=str(files["train_images"].parent))
    if val_split > 0:
        n_val = int(round(len(data.train_labels) * val_split))
        if n_val < 1 or n_val >= len(data.train_labels):
            raise QuicknetsError(f"val_split {val_split} leaves no validation or no training images")
        order = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(seed))
        val, keep = order[:n_val].sort().values, order[n_val:].sort().values
        data.val_images, data.val_labels = data.train_images[val], data.train_labels[val]
        data.train_images, data.train_labels = data.train_images[keep], data.train_labels[keep]
    return data


def load_recorded(config, data_dir=None) -> Dataset:
    """The dataset a RunConfig describes: same files, normalisation and split (`data_dir`
    overrides the recorded folder)."""
    d = config.data
    return load_dataset(d.dataset, data_dir or d.data_dir or None, val_split=d.val_split,
                        seed=config.train.seed, mean=d.mean, std=d.std, verify=d.verify)


def describe(data: Dataset) -> dict:
    """What a run records about its data (JSON-ready)."""
    return {"dataset": data.name, "source": data.source, "train": len(data.train_labels),
            "val": 0 if data.val_labels is None else len(data.val_labels),
            "test": len(data.test_labels), "val_split": data.val_split, "split_seed": data.seed,
            "mean": data.mean, "std": data.std}

