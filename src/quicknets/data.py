"""Load Fashion-MNIST, MNIST or KMNIST as uint8 tensors: found or fetched, verified, cached.

    data = load_dataset("fashion-mnist", val_split=0.1, seed=0)
    data.train_images   # uint8 (54000, 28, 28); data.val_images (6000, 28, 28); data.classes

A `data_dir` is the only place looked in (it, `<data_dir>/<dataset>/` and torchvision's
`<data_dir>/<Name>/raw/`); files missing there are fetched into it, never taken from another copy.
Without one, files are looked for in `$QUICKNETS_DATA` (same layouts), the user cache and the Debian
package's folder, then fetched into the cache. The four files are found under their common names
(`train-images-idx3-ubyte.gz`, `train-images.idx3-ubyte`, any case). The decoded tensors are cached
under a SHA-256 of the files' bytes, so an edited or replaced file is decoded again.
"""
import hashlib
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from quicknets.datasets import DATASETS, FILES, DatasetInfo, file_key, identify
from quicknets.errors import QuicknetsError
from quicknets.fetch import fetch_files
from quicknets.idx import decompress, parse_idx, read_raw
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


def _layouts(root: Path, info: DatasetInfo) -> list:
    """The folders under `root` that may hold the files: itself, `<dataset>/`, `<Name>/raw/`."""
    return [root, root / info.name, root / info.torchvision_name / "raw"]


def search_dirs(info: DatasetInfo, data_dir=None) -> list:
    """Where the files are looked for, in order: `data_dir`'s layouts alone when it is given."""
    if data_dir:
        return _layouts(Path(data_dir), info)
    env = os.environ.get("QUICKNETS_DATA")
    dirs = _layouts(Path(env), info) if env else []
    dirs.append(cache_dir() / info.name)
    if info.debian_dir:
        dirs.append(Path(info.debian_dir))
    return dirs


def find_files(folder: Path) -> dict:
    """Those of the four IDX files that `folder` holds, {key: path}, under any common name.

    Where one file is there twice (torchvision keeps the .gz and the unpacked copy) the published
    name wins, unpacked first, then the others by name.
    """
    try:
        paths = [p for p in Path(folder).iterdir() if file_key(p.name)]
    except OSError:  # no such folder, or not a folder
        return {}
    found = {}
    for path in sorted(paths, key=lambda p: (_rank(p.name), p.name)):
        key = file_key(path.name)
        if key not in found and path.is_file():
            found[key] = path
    return {key: found[key] for key in FILES if key in found}  # train images first, as published


def _rank(name: str) -> int:
    stem = FILES[file_key(name)]
    return 0 if name == stem else 1 if name == f"{stem}.gz" else 2


_CACHE_FORMAT = 2  # in the key: bump it when what _decode returns changes


def _cache_key(raw: dict) -> str:
    """SHA-256 over the four files' bytes as stored: the cache follows content, not path or mtime.

    It costs about 0.02 s for Fashion-MNIST's 31 MB of .gz (a cold decode is 0.27 s).
    """
    h = hashlib.sha256(f"quicknets decoded v{_CACHE_FORMAT}".encode())
    for key in sorted(raw):
        h.update(key.encode() + hashlib.sha256(raw[key]).digest())
    return h.hexdigest()


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


def _decode(info: DatasetInfo, files: dict, raw: dict, verify: bool) -> dict:
    """Check and convert the four files (their bytes as stored in `raw`) into tensors."""
    arrays = {}
    for key, path in files.items():
        content = decompress(raw[key], path)
        arrays[key] = parse_idx(content, str(path))
        if verify:
            _verify(info, key, path, hashlib.sha256(content).hexdigest())
    for split in ("train", "test"):
        _check_split(info, files, arrays, split)
    tensors = {k: torch.from_numpy(a) for k, a in arrays.items()}
    for split in ("train", "test"):
        tensors[f"{split}_labels"] = tensors[f"{split}_labels"].long()
    return tensors


def _check_split(info: DatasetInfo, files: dict, arrays: dict, split: str) -> None:
    """One line for each way an unverified file can hold something other than a split's data."""
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    images_path, labels_path = files[f"{split}_images"], files[f"{split}_labels"]
    if images.ndim != 3:
        raise QuicknetsError(f"{images_path} holds an array of shape {images.shape}, not images "
                             "(N, 28, 28); is it a labels file?")
    if images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise QuicknetsError(f"{images_path} holds {images.dtype} images of "
                             f"{images.shape[1]}x{images.shape[2]} pixels; quicknets takes uint8 "
                             "28x28 images, as the MNIST family has")
    if len(images) == 0:
        raise QuicknetsError(f"{images_path} holds no images")
    if labels.ndim != 1:
        raise QuicknetsError(f"{labels_path} holds an array of shape {labels.shape}, not labels "
                             "(N,); is it an images file?")
    if len(labels) != len(images):
        raise QuicknetsError(f"{labels_path} holds {len(labels)} labels but {images_path} holds "
                             f"{len(images)} images")
    n = len(info.classes)
    bad = labels[(labels < 0) | (labels >= n)]
    if len(bad):
        raise QuicknetsError(f"{labels_path} holds label {int(bad[0])}, outside the {n} classes "
                             f"of {info.name} (0..{n - 1})")


def _read_cache(cached: Path, key: str) -> dict | None:
    """The tensors saved in `cached` for source `key`; None if missing, stale or damaged."""
    try:
        saved = torch.load(cached, weights_only=True)
        tensors = saved["tensors"]
        if saved["key"] == key and sorted(tensors) == sorted(FILES) and all(
                zlib.crc32(tensors[k].numpy()) == saved["crc32"][k] for k in FILES):
            return tensors
    except Exception:  # missing, or damaged: torch.load reads a flipped byte without a word
        pass
    return None


def _load_files(info: DatasetInfo, files: dict, verify: bool) -> dict:
    """Decoded tensors for `files`, from the decoded cache when it holds their content."""
    raw = {key: read_raw(path) for key, path in files.items()}  # read once: hashed, maybe decoded
    key = _cache_key(raw)
    cached = cache_dir() / "decoded" / f"{info.name}-{key[:16]}{'' if verify else '-nv'}.pt"
    tensors = _read_cache(cached, key)
    if tensors is not None:
        return tensors
    tensors = _decode(info, files, raw, verify)
    crc32 = {k: zlib.crc32(t.numpy()) for k, t in tensors.items()}  # ~0.014 s: catches bit damage
    try:
        atomic_torch_save({"key": key, "crc32": crc32, "tensors": tensors}, cached)
    except OSError as e:  # a read-only cache slows the next load; it does not stop this one
        print(f"warning: cannot write the decoded cache {cached}: {e}", file=sys.stderr)
    return tensors


def locate(name: str, data_dir=None, download: bool = True) -> dict:
    """The paths of the four files of dataset `name`, fetching them if allowed and needed."""
    info = dataset_info(name)
    if data_dir:
        return _locate_in(info, Path(data_dir), download)
    dirs = search_dirs(info)
    for folder in dirs:
        files = find_files(folder)
        if len(files) == len(FILES):
            return files
    target = cache_dir() / info.name
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


def _locate_in(info: DatasetInfo, root: Path, download: bool) -> dict:
    """The files in the folder the user named, or fetched into it; never another copy."""
    for folder in _layouts(root, info):
        files = find_files(folder)
        if len(files) == len(FILES):
            return files
        if files:  # part of a set: fetching the rest would mix the user's files with others
            missing = [FILES[k] for k in FILES if k not in files]
            raise QuicknetsError(f"{folder} holds {', '.join(p.name for p in files.values())} "
                                 f"but not {', '.join(missing)} (.gz or raw); add the missing "
                                 "files, or empty the folder to download the set into it")
    if root.exists() and not root.is_dir():
        raise QuicknetsError(f"--data-dir {root} is a file, not a folder")
    why = "downloads are off"
    if download:
        fetched, why = fetch_files(info, root)
        if fetched:
            return fetched
    if not root.exists():
        raise QuicknetsError(f"{root} does not exist and {info.name} could not be downloaded "
                             f"into it ({why})")
    raise QuicknetsError(
        f"{root} does not hold the {info.name} files and they could not be downloaded into it "
        f"({why}); expected {', '.join(FILES.values())} (.gz or raw, also spelt like "
        f"train-images.idx3-ubyte) in it, in {root / info.name} or in "
        f"{root / info.torchvision_name / 'raw'}")


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

