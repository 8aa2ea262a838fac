"""Folders of class folders: one folder of images per class (see sources.py).

    files, classes = list_images(Path("pets/train"))   # [(file, class index)], folder names
    images = decode_images([f for f, _ in files], 32, 3, Path("pets"))   # uint8 (N, 3, 32, 32)

A large folder is decoded by worker processes (one per free core); an image is read as
images.decode_image reads a file to classify, so both get the same pixels.
"""

import hashlib
import os
from pathlib import Path

import numpy as np

from quicknets.base.errors import QuicknetsError
from quicknets.data.rawdata import grey_3d

IGNORED = {"thumbs.db", "desktop.ini", "__macosx"}  # besides names starting with "."
POOL_MIN = 2000  # a folder with fewer images is decoded in this process


def folder_plan(root: Path, test_path, look: bool):
    """(name, test folder or None, content digest, build): the files are listed and hashed
    now; build(image_size, channels) decodes them into (tensors, classes) on a cache miss.
    `test_path`: the test folder, else (when `look`) root/test beside root/train."""
    train_root, test_root = root, test_path
    split = {p.name.lower(): p for p in _entries(root) if p.is_dir()}
    if "train" in split:  # train/ and test/, rather than class folders
        train_root = split["train"]
        test_root = test_root or (split.get("test") if look else None)
    train_files, classes = list_images(train_root)
    test_files = []
    if test_root is not None:
        if not test_root.is_dir():
            raise QuicknetsError(
                f"--test {test_root} is not a folder of class folders, as {root} is"
            )
        test_files, test_classes = list_images(test_root, single=True)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise QuicknetsError(
                f"{test_root / unknown[0]} is a class that {train_root} does "
                f"not have (its classes: {', '.join(classes[:10])}"
                f"{', ...' if len(classes) > 10 else ''})"
            )
        index = {c: i for i, c in enumerate(classes)}
        test_files = [(p, index[test_classes[c]]) for p, c in test_files]
    files = [("train", p) for p, _ in train_files] + [("test", p) for p, _ in test_files]
    digest = _filescontent_digest(files, root)

    def build(image_size, channels):
        import torch

        paths = [p for _, p in files]
        arrays = decode_images(paths, image_size, channels, root)
        n = len(train_files)
        tensors = {
            "train_images": arrays[:n],
            "train_labels": torch.tensor([c for _, c in train_files], dtype=torch.long),
        }
        if test_files:
            tensors |= {
                "test_images": arrays[n:],
                "test_labels": torch.tensor([c for _, c in test_files], dtype=torch.long),
            }
        return {k: grey_3d(v) for k, v in tensors.items()}, classes

    return root.name, test_root if test_files else None, digest, build


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED


def _entries(folder: Path) -> list:
    try:
        return sorted(p for p in folder.iterdir() if not _hidden(p.name))
    except OSError as e:
        raise QuicknetsError(f"cannot read the folder {folder}: {e.strerror or e}") from None


def list_images(root: Path, single: bool = False) -> tuple:
    """([(file, class index)], class names) of a folder of class folders, files (str: 60,000
    Path objects cost a second) in sorted order, hidden ones skipped. No class folder, one
    (unless `single`, for a test folder) or an empty one is an error."""
    classes = [p.name for p in _entries(root) if p.is_dir()]
    if not classes:
        raise QuicknetsError(
            f"{root} holds no class folders (one folder of images per class, "
            f"such as {root / 'cat' / '1.png'})"
        )
    if len(classes) == 1 and not single:
        raise QuicknetsError(
            f"{root} holds a single class folder ({classes[0]}); a classifier needs at least two"
        )
    files = []
    for index, name in enumerate(classes):
        found = []
        for folder, dirs, names in os.walk(root / name):
            dirs[:] = sorted(d for d in dirs if not _hidden(d))
            found += [os.path.join(folder, f) for f in sorted(names) if not _hidden(f)]
        if not found:
            raise QuicknetsError(f"{root / name} holds no images (an empty class folder)")
        files += [(p, index) for p in found]
    return files, classes


def _filescontent_digest(files: list, root: Path) -> str:
    """SHA-256 over each file's place under `root` and its content. Read in this thread: for
    60,000 small files, threads only add contention (measured 2.8 s against 0.9 s)."""
    h = hashlib.sha256(b"quicknets folder")
    start = len(str(root)) + 1
    for split, path in files:
        try:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).digest()
        except OSError as e:
            raise QuicknetsError(f"cannot read {path}: {e.strerror or e}") from None
        h.update(f"{split}/{str(path)[start:]}".encode() + b"\0" + digest)
    return h.hexdigest()


def decode_images(paths: list, image_size: int, channels: int, root: Path):
    """uint8 (N, C, H, W) of image files, in worker processes for a large folder. Unreadable
    files are refused (the count and the first); sizes or channels that differ without
    image_size / channels are an error listing them."""
    import torch

    size = (image_size, image_size) if image_size else None
    jobs = [(paths[i : i + 500], size, channels or None) for i in range(0, len(paths), 500)]
    workers = _workers(len(paths))
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork where there is one: the workers run PIL and numpy, never torch (whose thread
        # pools a fork cannot copy), as DataLoader's workers do on Linux; and unlike spawn it
        # needs no `if __name__ == "__main__":` in the script that loads the data
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as p:
            results = [r for chunk in p.map(_decode_chunk, jobs) for r in chunk]
    else:
        results = [r for job in jobs for r in _decode_chunk(job)]
    bad = [(p, r) for p, r in zip(paths, results) if isinstance(r, str)]
    if bad:
        raise QuicknetsError(
            f"{len(bad)} of {len(paths)} files in {root} cannot be read as "
            f"images, so none were used; the first: {bad[0][1]}. Remove or "
            "replace them (hidden files are ignored)"
        )
    shapes = {}
    for path, array in zip(paths, results):
        shapes.setdefault(array.shape, []).append(path)
    if len(shapes) > 1:
        raise QuicknetsError(_mixed(shapes, root))
    return (
        torch.from_numpy(np.stack(results))
        if results
        else torch.zeros(0, 1, 1, 1, dtype=torch.uint8)
    )


def _workers(n: int) -> int:
    if n < POOL_MIN:
        return 1
    from quicknets.base.machine import free_cores

    return max(1, min(free_cores(), 8, n // 1000))


def _decode_chunk(job) -> list:
    """Each file as uint8 (C, H, W), or the reason it cannot be read (a str). Runs in a worker
    process: imports no torch."""
    from quicknets.data.images import decode_image

    paths, size, channels = job
    out = []
    for path in paths:
        try:
            out.append(decode_image(path, size, channels))
        except QuicknetsError as e:
            out.append(str(e))
    return out


def _mixed(shapes: dict, root: Path) -> str:
    """One line for images that differ in channels or size."""
    by_channels, by_size = {}, {}
    for (c, h, w), paths in shapes.items():
        by_channels.setdefault(c, []).extend(paths)
        by_size.setdefault((h, w), []).extend(paths)
    if len(by_channels) > 1:
        parts = [
            f"{len(p)} {'grey' if c == 1 else 'colour'} (e.g. {p[0]})"
            for c, p in sorted(by_channels.items())
        ]
        return (
            f"{root} holds grey and colour images: {', '.join(parts)}; give --channels 1 "
            "or 3 to bring them to one"
        )
    common = sorted(by_size.items(), key=lambda kv: -len(kv[1]))
    parts = [f"{h}x{w}: {len(p)}" for (h, w), p in common[:4]]
    odd = common[1][1][0]
    return (
        f"{root} holds images of {len(by_size)} sizes ({', '.join(parts)}"
        f"{', ...' if len(common) > 4 else ''}; e.g. {odd}); give --image-size SIZE to "
        "bring them to SIZE x SIZE"
    )
