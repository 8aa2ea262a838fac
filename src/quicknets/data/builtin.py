"""The built-in datasets, by name: their four IDX files found or fetched, verified, decoded
and cached. `loading.load_dataset` calls `read_builtin` for a name, as it calls
`sources.read_source` for a path.

    info, tensors, source = read_builtin("fashion-mnist")   # tensors: train/test images, labels
    locate("mnist", data_dir)                                # {key: path} of the four files

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
from pathlib import Path

import numpy as np
import torch

from quicknets.base.errors import QuicknetsError
from quicknets.base.storage import atomic_torch_save, cache_dir
from quicknets.data.datasets import DATASETS, FILES, DatasetInfo, file_key, identify
from quicknets.data.fetch import fetch_files
from quicknets.data.idx import decompress, parse_idx, read_raw


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


def find_files(folder: Path, files: dict = FILES) -> dict:
    """Those of the four IDX files that `folder` holds, {key: path}, under any common name
    (`files`: the dataset's file stems).

    Where one file is there twice (torchvision keeps the .gz and the unpacked copy) the published
    name wins, unpacked first, then the others by name.
    """
    try:
        paths = [p for p in Path(folder).iterdir() if file_key(p.name, files)]
    except OSError:  # no such folder, or not a folder
        return {}
    found = {}
    for path in sorted(paths, key=lambda p: (_rank(p.name, files), p.name)):
        key = file_key(path.name, files)
        if key not in found and path.is_file():
            found[key] = path
    return {key: found[key] for key in FILES if key in found}  # train images first, as published


def _rank(name: str, files: dict = FILES) -> int:
    stem = files[file_key(name, files)]
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
        raise QuicknetsError(
            f"{path} holds {other} data, not {info.name}; delete it (or point "
            f"--data-dir at the right folder) and fetch the data again"
        )
    raise QuicknetsError(
        f"{path} does not match the official {info.name} content (sha256 "
        f"{digest[:12]}..., expected {expected[:12]}...): it is corrupt or a "
        "different dataset; delete it and fetch again, or pass --no-verify "
        "for your own files"
    )


def _decode(info: DatasetInfo, files: dict, raw: dict, verify: bool) -> dict:
    """Check and convert the four files (their bytes as stored in `raw`) into tensors."""
    arrays = {}
    for key, path in files.items():
        content = decompress(raw[key], path)
        arrays[key] = parse_idx(content, str(path))
        if verify:
            _verify(info, key, path, hashlib.sha256(content).hexdigest())
        if key.endswith("labels") and info.label_column is not None and arrays[key].ndim == 2:
            arrays[key] = arrays[key][:, info.label_column]  # QMNIST: (N, 8) -> the class (N,)
    for split in ("train", "test"):
        _check_split(info, files, arrays, split)
        if info.transpose:  # EMNIST is stored column by column: read it upright
            arrays[f"{split}_images"] = np.ascontiguousarray(
                arrays[f"{split}_images"].transpose(0, 2, 1)
            )
    tensors = {k: torch.from_numpy(a) for k, a in arrays.items()}
    for split in ("train", "test"):
        tensors[f"{split}_labels"] = tensors[f"{split}_labels"].long()
    return tensors


def _check_split(info: DatasetInfo, files: dict, arrays: dict, split: str) -> None:
    """One line for each way an unverified file can hold something other than a split's data."""
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    images_path, labels_path = files[f"{split}_images"], files[f"{split}_labels"]
    if images.ndim != 3:
        raise QuicknetsError(
            f"{images_path} holds an array of shape {images.shape}, not images "
            "(N, 28, 28); is it a labels file?"
        )
    if images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise QuicknetsError(
            f"{images_path} holds {images.dtype} images of "
            f"{images.shape[1]}x{images.shape[2]} pixels; quicknets takes uint8 "
            "28x28 images, as the MNIST family has"
        )
    if len(images) == 0:
        raise QuicknetsError(f"{images_path} holds no images")
    if labels.ndim != 1:
        raise QuicknetsError(
            f"{labels_path} holds an array of shape {labels.shape}, not labels "
            "(N,); is it an images file?"
        )
    if len(labels) != len(images):
        raise QuicknetsError(
            f"{labels_path} holds {len(labels)} labels but {images_path} holds {len(images)} images"
        )
    n = len(info.classes)
    bad = labels[(labels < 0) | (labels >= n)]
    if len(bad):
        raise QuicknetsError(
            f"{labels_path} holds label {int(bad[0])}, outside the {n} classes "
            f"of {info.name} (0..{n - 1})"
        )


def _read_cache(cached: Path, key: str) -> dict | None:
    """The tensors saved in `cached` for source `key`; None if missing, stale or damaged."""
    try:
        saved = torch.load(cached, weights_only=True)
        tensors = saved["tensors"]
        if (
            saved["key"] == key
            and sorted(tensors) == sorted(FILES)
            and all(zlib.crc32(tensors[k].numpy()) == saved["crc32"][k] for k in FILES)
        ):
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
        files = find_files(folder, info.files)
        if len(files) == len(FILES):
            return files
    target = cache_dir() / info.name
    why = "downloads are off" if info.fetch else "quicknets does not download it"
    if download and info.fetch:
        fetched, why = fetch_files(info, target)
        if fetched:
            return fetched
    searched = ", ".join(str(d) for d in dirs)
    hint = "apt-get install dataset-fashion-mnist, or " if info.debian_dir else ""
    if not info.fetch:
        hint = (
            f"torchvision.datasets.{info.torchvision_name}(ROOT, download=True) puts them "
            f"in ROOT/{info.torchvision_name}/raw; pass that ROOT as --data-dir, or "
        )
    raise QuicknetsError(
        f"{info.name} not found and could not be downloaded ({why}); searched {searched}; "
        f"to get it: {hint}put the four IDX files ({', '.join(info.files.values())}, .gz or "
        "raw) in one of those folders or in --data-dir."
    )


def _locate_in(info: DatasetInfo, root: Path, download: bool) -> dict:
    """The files in the folder the user named, or fetched into it; never another copy."""
    for folder in _layouts(root, info):
        files = find_files(folder, info.files)
        if len(files) == len(FILES):
            return files
        if files:  # part of a set: fetching the rest would mix the user's files with others
            missing = [info.files[k] for k in FILES if k not in files]
            raise QuicknetsError(
                f"{folder} holds {', '.join(p.name for p in files.values())} "
                f"but not {', '.join(missing)} (.gz or raw); add the missing "
                "files, or empty the folder to download the set into it"
            )
    if root.exists() and not root.is_dir():
        raise QuicknetsError(f"--data-dir {root} is a file, not a folder")
    why = "downloads are off" if info.fetch else "quicknets does not download it"
    if download and info.fetch:
        fetched, why = fetch_files(info, root)
        if fetched:
            return fetched
    if not root.exists():
        raise QuicknetsError(
            f"{root} does not exist and {info.name} could not be downloaded into it ({why})"
        )
    raise QuicknetsError(
        f"{root} does not hold the {info.name} files and they could not be downloaded into it "
        f"({why}); expected {', '.join(info.files.values())} (.gz or raw, also spelt like "
        f"train-images.idx3-ubyte) in it, in {root / info.name} or in "
        f"{root / info.torchvision_name / 'raw'}"
    )


def dataset_info(name: str) -> DatasetInfo:
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        raise QuicknetsError(
            f"unknown dataset {name!r}: not a built-in one ({', '.join(DATASETS)}) "
            "nor the path of a CSV file, an .npz file or a folder"
        )
    return DATASETS[key]


def read_builtin(name: str, data_dir=None, download: bool = True, verify: bool = True) -> tuple:
    """(info, tensors, source) of built-in dataset `name`: its DatasetInfo, the decoded
    {"train_images": uint8 (N, 28, 28), "train_labels": int64 (N,), "test_images", ...} and
    the folder the files were found in. Raises QuicknetsError for an unknown name, files that
    cannot be found or fetched, or files that fail their digests (verify=True)."""
    info = dataset_info(name)
    files = locate(info.name, data_dir, download)
    return info, _load_files(info, files, verify), str(files["train_images"].parent)
