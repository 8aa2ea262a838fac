"""Audit a dataset before trusting a test accuracy on it: duplicates, near duplicates, likely
label errors, class balance and outliers.

    data = load_dataset("fashion-mnist")                  # or your own: a CSV file, a folder, ...
    found = audit(data, seed=0)                           # an Audit
    found.duplicates["train_test"]    # [[train index, test index], ...]: test images in train
    found.label_issues[:3]            # [{"index", "split", "label", "suggested", "score"}, ...]
    print("\\n".join(summary_lines(found)))
    write_audit(found, data, "runs/audits/fashion-mnist.html")   # the page, and .json beside it

Indices are 0-based positions in the split as loaded. What each finding means:
- exact duplicates: images whose uint8 bytes are the same (a BLAKE2b digest of each). A group of
  k copies gives k - 1 pairs [first, copy]; in train_test each test image that is also a training
  image gives [its first training copy, test index].
- near duplicates: not exact, but closer than NEAR_RMS in root-mean-square pixel difference
  (pixels in [0, 1]). Candidates are each image's NEIGHBOURS nearest on 2x2-pooled pixels.
- label issues: cleanlab's find_label_issues (Confident Learning, Northcutt et al. 2021) on
  out-of-sample probabilities: K-fold cross-validation of a small quicknets network over the
  training split (duplicate groups kept in one fold, so no copy vouches for its own label); the
  test split is predicted by the mean of the K fold models, none of which saw it. Ranked by
  self-confidence, the out-of-sample probability of the given label (`score`, low first).
- outliers: the images farthest from their NEIGHBOURS-th nearest neighbour on the pooled
  pixels (distance to the k-th neighbour, a standard kNN outlier score), the top OUTLIER_SHARE.
- class counts and imbalance: the ratio of the largest class to the smallest, flagged at
  IMBALANCE_RATIO or more.
"""

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from quicknets.base.errors import QuicknetsError
from quicknets.base.machine import available_memory
from quicknets.evaluation.metrics import IMBALANCE_RATIO

NEAR_RMS = 0.05  # measured on Fashion-MNIST: below it every pair looked at was one photo
NEIGHBOURS = 10  # k of the kNN search: near-duplicate candidates and the outlier score
OUTLIER_SHARE = 0.001  # the share of images listed as outliers (the farthest first)
# The folds, network and epochs, measured on benchmarks/audit.py's planted CSV (8,020 train rows,
# 100 flipped labels; flipped among the first 200 suspects): 784-256-10 with 3 folds x 4 epochs
# 85, 4 x 4 82, 4 x 8 81, 3 x 8 80, 5 x 8 73; 784-128-10 4 x 4 80; convp8-convp16-fc64 4 x 3 78
# at several times the time. More epochs fit the wrong labels too; so the cheapest did best.
FOLDS = 3  # cross-validation folds for the out-of-sample probabilities
NETWORK = "784-256-10"  # the small network of each fold; its ends adapt to the data's shape
EPOCHS = 4  # epochs of each fold's training
LR = 0.003  # Adam's learning rate for the folds
BLOCK = 2**24  # distances computed at once in the kNN search (64 MB of float32)


@dataclass
class Audit:
    """What an audit found (see the module docstring); `to_dict()` is the JSON form."""

    dataset: str
    classes: list
    sizes: dict  # {"train": N, "test": M}
    duplicates: dict  # {"train", "test", "train_test"}: [[i, j], ...]
    near_duplicates: dict  # the same keys: [[i, j, rms distance], ...], nearest first
    label_issues: list  # [{"index", "split", "label", "suggested", "score"}], training split
    test_label_issues: list  # the same for the test split
    class_counts: dict  # {"train": {class: count}, "test": {...}}
    imbalance: dict  # {"ratio": largest / smallest (training split), "imbalanced": bool}
    outliers: list  # [{"index", "split", "label", "distance"}], farthest first
    method: dict = field(default_factory=dict)  # folds, network, epochs, seed, thresholds
    seconds: dict = field(default_factory=dict)  # time of each step

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "classes": list(self.classes),
            "sizes": self.sizes,
            "duplicates": self.duplicates,
            "near_duplicates": self.near_duplicates,
            "label_issues": self.label_issues,
            "test_label_issues": self.test_label_issues,
            "class_counts": self.class_counts,
            "imbalance": self.imbalance,
            "outliers": self.outliers,
            "method": self.method,
            "seconds": self.seconds,
        }


# -- exact duplicates ----------------------------------------------------------------------------


def image_digests(images: torch.Tensor) -> list:
    """One 16-byte BLAKE2b digest per uint8 image (N, ...): equal digests, equal bytes."""
    rows = images.flatten(1).numpy()  # (N, pixels)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def _groups(digests: list) -> dict:
    """digest -> indices holding it, in order."""
    groups = {}
    for i, d in enumerate(digests):
        groups.setdefault(d, []).append(i)
    return groups


def exact_duplicates(train_images: torch.Tensor, test_images: torch.Tensor) -> dict:
    """{"train": [[first, copy], ...], "test": [...], "train_test": [[train, test], ...]}.

    Images are uint8 (N, H, W) or (N, C, H, W), both splits of one shape. A group of k equal
    images in a split gives k - 1 pairs, each copy with the group's first index; a test image
    equal to training images gives one pair, with the first of them."""
    train, test = _groups(image_digests(train_images)), _groups(image_digests(test_images))
    within = lambda groups: sorted([g[0], i] for g in groups.values() for i in g[1:])  # noqa: E731
    across = sorted([train[d][0], j] for d, js in test.items() if d in train for j in js)
    return {"train": within(train), "test": within(test), "train_test": across}


# -- near duplicates and outliers: a kNN search on pixels ----------------------------------------


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W) or (N, C, H, W) -> float32 (N, C*H*W) pixels in [0, 1]."""
    return images.flatten(1).float().div_(255)


def pooled_features(images: torch.Tensor) -> torch.Tensor:
    """float32 (N, C*H'*W'): pixels in [0, 1] averaged over 2x2 blocks (H' = ceil(H / 2)), so a
    kNN search costs a quarter. Scaled so that the pooled RMS distance of two images is at most
    their full one (the mean of a block's differences is at most their root mean square): a
    pair within a distance on full pixels is within it on pooled ones too."""
    x = images.float().div_(255)
    x = x if x.dim() == 4 else x.unsqueeze(1)  # (N, C, H, W)
    h, w = x.shape[2:]
    x = F.avg_pool2d(F.pad(x, (0, w % 2, 0, h % 2)), 2)  # an odd side padded with zeros
    return x.reshape(len(x), -1) * (4 * x[0].numel() / (x.shape[1] * h * w)) ** 0.5  # 1 if even


def nearest_neighbours(x: torch.Tensor, k: int = NEIGHBOURS) -> tuple:
    """The k nearest other rows of x (N, D) by Euclidean distance: (RMS distances (N, k) =
    distance / sqrt(D), indices (N, k)), nearest first. Computed a block of rows at a time."""
    n = len(x)
    k = min(k, n - 1)
    squares = (x * x).sum(1)
    block = max(1, BLOCK // max(n, 1))
    dists, index = torch.empty(n, k), torch.empty(n, k, dtype=torch.long)
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        d2 = squares[rows, None] + squares[None, :] - 2 * x[rows] @ x.T  # (b, N)
        d2[torch.arange(d2.shape[0]), torch.arange(rows.start, rows.stop)] = float("inf")
        d, i = d2.topk(k, dim=1, largest=False)
        dists[rows], index[rows] = d.clamp_(min=0).div_(x.shape[1]).sqrt_(), i
    return dists, index


def near_duplicates(
    images: torch.Tensor, n_train: int, neighbours: tuple, threshold: float = NEAR_RMS
) -> dict:
    """Near-duplicate pairs of `images` (train then test, pooled), from the kNN candidates
    `neighbours` = nearest_neighbours(...) on pooled pixels, checked on the full pixels:
    {"train": [[i, j, rms], ...], "test": [...], "train_test": [[train, test, rms], ...]},
    nearest first, exact duplicates (rms 0) left out (they are exact_duplicates')."""
    dists, index = neighbours
    found = {"train": [], "test": [], "train_test": []}
    seen = set()
    for i, j in (dists < threshold).nonzero().tolist():  # pooled RMS <= full RMS
        a, b = sorted((i, int(index[i, j])))
        if (a, b) in seen:
            continue
        seen.add((a, b))
        rms = float((images[a].float() - images[b].float()).div_(255).pow_(2).mean().sqrt())
        if 0 < rms < threshold:
            key = "train" if b < n_train else "test" if a >= n_train else "train_test"
            found[key].append(
                [
                    a - (n_train if a >= n_train else 0),
                    b - (n_train if b >= n_train else 0),
                    round(rms, 4),
                ]
            )
    return {key: sorted(pairs, key=lambda p: (p[2], p[0], p[1])) for key, pairs in found.items()}


def outliers(
    neighbours: tuple,
    labels: torch.Tensor,
    n_train: int,
    classes: list,
    share: float = OUTLIER_SHARE,
) -> list:
    """The `share` of images farthest from their k-th nearest neighbour (at least 1):
    [{"index", "split", "label", "distance"}], farthest first."""
    far = neighbours[0][:, -1]
    n = max(1, round(len(far) * share))
    order = far.argsort(descending=True)[:n].tolist()
    return [
        {
            "index": i if i < n_train else i - n_train,
            "split": "train" if i < n_train else "test",
            "label": classes[int(labels[i])],
            "distance": round(float(far[i]), 4),
        }
        for i in order
    ]


# -- class balance -------------------------------------------------------------------------------


def class_counts(labels: torch.Tensor, classes: list) -> dict:
    """{class name: count} in class order."""
    counts = torch.bincount(labels, minlength=len(classes)).tolist()
    return dict(zip(map(str, classes), counts))


def imbalance(counts: dict, ratio: float = IMBALANCE_RATIO) -> dict:
    """{"ratio": largest / smallest count, "imbalanced": ratio >= `ratio`}; an empty class
    makes the ratio infinite (written as null in JSON)."""
    values = list(counts.values())
    r = max(values) / min(values) if min(values) > 0 else float("inf")
    return {
        "ratio": round(r, 3) if r != float("inf") else None,
        "imbalanced": r >= ratio,
        "largest": max(counts, key=counts.get),
        "smallest": min(counts, key=counts.get),
    }


# -- label issues: out-of-sample probabilities by K-fold cross-validation, then cleanlab ----------


def duplicate_groups(n: int, pairs) -> torch.Tensor:
    """(n,) the smallest index of each image's group, where `pairs` [[i, j, ...], ...] join
    images (union-find over the pairs: copies of copies are one group)."""
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for pair in pairs:
        a, b = root(pair[0]), root(pair[1])
        parent[max(a, b)] = min(a, b)
    return torch.tensor([root(i) for i in range(n)], dtype=torch.long)


def assign_folds(labels: torch.Tensor, groups: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """(N,) fold numbers 0..folds-1: stratified (each class dealt round the folds in a seeded
    order) and by group (every image in its group's first image's fold)."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    order = order[labels[order].argsort(stable=True)]  # by class, shuffled within each
    fold = torch.empty(len(labels), dtype=torch.long)
    fold[order] = torch.arange(len(labels)) % folds
    return fold[groups]


def _fold_spec(spec: str, pre) -> str:
    """The audit's default network gets the data's input size and class count at its ends;
    a spec the user gave must fit (experiment.fit_network)."""
    from quicknets.networks.specs import parse_sizes
    from quicknets.records.experiment import fit_network

    if spec == NETWORK:
        return "-".join(map(str, [pre.features, *parse_sizes(spec)[1:-1], len(pre.classes)]))
    return fit_network(spec, pre)


def check_fold_settings(data, spec: str = NETWORK, seed: int = 0) -> None:
    """Raise QuicknetsError now, as cross_val_probabilities would after the slow steps, for a
    network spec that does not fit the data or a seed train() refuses: one fold's network is
    built (and dropped) and the seed checked as a setting."""
    from quicknets.config.configs import convert_setting
    from quicknets.networks.models import network

    convert_setting("seed", seed)
    pre = data.preprocessing
    network(_fold_spec(spec, pre), input_shape=pre.shape, num_classes=len(data.classes), seed=0)


def cross_val_probabilities(
    data,
    folds: int = FOLDS,
    spec: str = NETWORK,
    epochs: int = EPOCHS,
    lr: float = LR,
    seed: int = 0,
    groups=None,
    log=None,
) -> tuple:
    """Out-of-sample class probabilities: (train (N, K), test (M, K)) float64 numpy arrays.

    Each training image is predicted by the one of `folds` networks (quicknets network(spec),
    train(): Adam at `lr`, `epochs`, batch 64, seeded) that did not train on its fold; the
    test images by the mean of the `folds` networks. `groups` (N,): images in one group share a
    fold (duplicate_groups). `log(text)` hears of each fold."""
    import dataclasses

    from quicknets.evaluation.metrics import log_probabilities
    from quicknets.networks.models import network
    from quicknets.training.loop import train

    if folds < 2:
        raise QuicknetsError(f"cross-validation needs at least 2 folds, not {folds}")
    labels = data.train_labels
    groups = torch.arange(len(labels)) if groups is None else groups
    fold = assign_folds(labels, groups, folds, seed)
    pre = data.preprocessing
    spec = _fold_spec(spec, pre)
    train_probs = torch.zeros(len(labels), len(data.classes), dtype=torch.float64)
    test_probs = torch.zeros(len(data.test_labels), len(data.classes), dtype=torch.float64)
    for k in range(folds):
        held = fold == k
        part = dataclasses.replace(
            data,
            train_images=data.train_images[~held],
            train_labels=labels[~held],
            val_images=None,
            val_labels=None,
            val_split=0.0,
        )
        model = network(spec, input_shape=pre.shape, num_classes=len(data.classes), seed=seed + k)
        start = time.perf_counter()
        train(model, part, epochs=epochs, lr=lr, batch_size=64, seed=seed + k, quiet=True)
        train_probs[held] = (
            log_probabilities(model, pre.normalize(data.train_images[held])).double().exp()
        )
        test_probs += log_probabilities(model, pre.normalize(data.test_images)).double().exp()
        if log is not None:
            log(
                f"fold {k + 1}/{folds}: {int((~held).sum())} images trained, {int(held.sum())} "
                f"predicted, {time.perf_counter() - start:.1f} s"
            )
    return train_probs.numpy(), (test_probs / folds).numpy()


def _cleanlab_filter():
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        raise QuicknetsError(
            "finding label issues needs cleanlab: pip install 'quicknets[audit]'"
        ) from None
    return find_label_issues


def label_issues(labels: torch.Tensor, probs: np.ndarray, classes: list, split: str) -> list:
    """cleanlab's likely label errors among `labels` (N,) given out-of-sample `probs` (N, K):
    [{"index", "split", "label", "suggested", "score"}], the most likely first. `score` is the
    label's self-confidence, the probability the networks gave the given label (0..1, low: the
    label is likely wrong); `suggested` the most probable class."""
    find_label_issues = _cleanlab_filter()
    y = labels.numpy()
    present = np.unique(y)
    if len(present) < 2:
        return []
    # cleanlab needs every column to be a class that occurs: drop absent ones, renumber
    remap = -np.ones(len(classes), dtype=np.int64)
    remap[present] = np.arange(len(present))
    p = probs[:, present]
    p = p / p.sum(1, keepdims=True)
    ranked = find_label_issues(remap[y], p, return_indices_ranked_by="self_confidence", n_jobs=1)
    suggested = probs.argmax(1)
    return [
        {
            "index": int(i),
            "split": split,
            "label": str(classes[y[i]]),
            "suggested": str(classes[suggested[i]]),
            "score": float(f"{probs[i, y[i]]:.4g}"),
        }
        for i in ranked
    ]


# -- the whole audit ------------------------------------------------------------------------------


def memory_needed(n_images: int, pixels: int) -> int:
    """Bytes an audit of `n_images` images of `pixels` values each needs besides the uint8
    images: the float32 pixels for the kNN search and the normalised training copy (4 bytes a
    value each), a fold's uint8 copy, and three blocks of distances."""
    return n_images * pixels * (4 + 4 + 1) + BLOCK * 4 * 3


def check_memory(n_images: int, pixels: int, what, loading: int = 0) -> None:
    """QuicknetsError when auditing `what` (n_images of `pixels` values; reading it takes
    `loading` bytes more) needs more memory than is available now."""
    need, have = memory_needed(n_images, pixels) + loading, available_memory()
    if have and need > have:
        raise QuicknetsError(
            f"auditing {what} needs about {_size(need)} of memory "
            f"(~{n_images} images of {pixels} values, read and held as float32 "
            f"for the neighbour search and the networks), and "
            f"{_size(have)} are available; audit a part of it"
        )


def _size(n: int) -> str:
    """Bytes as GiB to one place, or MiB below 1 GiB (0.0 GiB would say nothing)."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def estimate_images(path, test=None, image_size: int = 0, channels: int = 0) -> tuple | None:
    """(images, values per image, bytes to read them) of a CSV or .npz file (and its --test
    file) from its size or headers, or of a folder of class folders from its files and its
    first image's header (`image_size`, `channels`: what the images are brought to, 0: kept),
    before reading it; None for other sources or where it cannot tell (the loader says why)."""
    import os
    import zipfile
    from pathlib import Path

    if Path(path).is_dir():
        return _folder_estimate(Path(path), test, image_size, channels)
    paths = [
        Path(p)
        for p in (path, test)
        if p and str(p).lower().endswith((".csv", ".csv.gz", ".npz")) and Path(p).is_file()
    ]
    if not paths or paths[0] != Path(path):
        return None
    images, pixels, loading = 0, 0, 0
    for p in paths:
        if p.name.lower().endswith(".npz"):
            try:
                shapes = _npz_shapes(p)
            except (zipfile.BadZipFile, ValueError, OSError):
                return None  # not readable as an .npz: the loader says why
            for shape in shapes:
                images += shape[0]
                pixels = max(pixels, int(np.prod(shape[1:])))
                loading += int(np.prod(shape)) * 2  # the array, then its uint8 copy
            continue
        size = os.path.getsize(p)
        opener = __import__("gzip").open if p.name.lower().endswith(".gz") else open
        with opener(p, "rb") as f:
            head = f.read(1 << 20)
        if p.name.lower().endswith(".gz"):
            size = max(size, len(head)) * 4  # text compresses about 4x; the size is unknown
        lines = head.split(b"\n")[1:-1] or head.split(b"\n")[:1]  # a header, a cut last line
        per_line = sum(map(len, lines)) / len(lines) + 1
        values = lines[0].count(b",")
        n = int(size / per_line)
        images += n
        pixels = max(pixels, values)
        loading += 2 * size + n * (values + 1) * 8  # the text, its lines, int64 values
    return images, pixels, loading


def _folder_estimate(root, test, image_size: int, channels: int) -> tuple | None:
    """estimate_images for a folder of class folders (and a --test folder): every file under
    them counts as an image (hidden ones aside), each the size of the first one, decoded to
    uint8 twice over (the decoded images, then the dataset's copy)."""
    import os
    from pathlib import Path

    from PIL import Image, UnidentifiedImageError

    first, n = None, 0
    for top in [root] + ([Path(test)] if test and Path(test).is_dir() else []):
        for folder, dirs, names in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files = sorted(f for f in names if not f.startswith("."))
            n += len(files)
            first = first or (os.path.join(folder, files[0]) if files else None)
    if first is None:
        return None
    try:
        with Image.open(first) as image:  # the header alone: nothing decoded
            bands, (w, h) = len(image.getbands()), image.size
    except (OSError, UnidentifiedImageError):
        return None
    pixels = (image_size**2 if image_size else w * h) * (channels or bands)
    return n, pixels, 2 * n * pixels


def _npz_shapes(path) -> list:
    """The shapes of x_train and x_test in an .npz file, from their headers alone."""
    import zipfile

    shapes = []
    with zipfile.ZipFile(path) as z:
        for name in ("x_train.npy", "x_test.npy"):
            if name in z.namelist():
                with z.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shapes.append(read(f)[0])
    return shapes


def audit(
    data,
    folds: int = FOLDS,
    spec: str = NETWORK,
    epochs: int = EPOCHS,
    lr: float = LR,
    seed: int = 0,
    labels: bool = True,
    log=None,
) -> Audit:
    """Audit a loaded Dataset (see the module docstring): both splits, train then test.
    `labels=False` skips the cross-validation (no label issues). `log(text)` hears of each
    step. Raises QuicknetsError for data with fewer than 2 classes in its training split or
    too large for the memory available, and (for label issues) when cleanlab is missing."""
    n_train, n_test = len(data.train_labels), len(data.test_labels)
    present = torch.unique(data.train_labels)
    if len(present) < 2:
        found = [data.classes[int(c)] for c in present]
        raise QuicknetsError(
            f"{data.name} has {len(present)} class in its training split "
            f"({', '.join(map(str, found)) or 'none'}); an audit needs 2 or more "
            "(label issues and balance are between classes)"
        )
    if labels:
        _cleanlab_filter()  # missing: say so now, not after the slow steps
        check_fold_settings(data, spec, seed)  # so is a network or seed the folds cannot use
    check_memory(n_train + n_test, data.train_images[0].numel(), data.name)
    seconds, say = {}, (log or (lambda text: None))
    start = time.perf_counter()
    duplicates = exact_duplicates(data.train_images, data.test_images)
    seconds["duplicates"] = round(time.perf_counter() - start, 2)

    start = time.perf_counter()
    images = torch.cat([data.train_images, data.test_images])
    neighbours = nearest_neighbours(pooled_features(images))
    near = near_duplicates(images, n_train, neighbours)
    all_labels = torch.cat([data.train_labels, data.test_labels])
    far = outliers(neighbours, all_labels, n_train, data.classes)
    seconds["neighbours"] = round(time.perf_counter() - start, 2)
    say(f"neighbours: {seconds['neighbours']} s")

    train_issues, test_issues = [], []
    if labels:
        start = time.perf_counter()
        groups = duplicate_groups(n_train, duplicates["train"] + near["train"])
        train_probs, test_probs = cross_val_probabilities(
            data, folds, spec, epochs, lr, seed, groups, log
        )
        train_issues = label_issues(data.train_labels, train_probs, data.classes, "train")
        if n_test and len(torch.unique(data.test_labels)) >= 2:
            test_issues = label_issues(data.test_labels, test_probs, data.classes, "test")
        seconds["label_issues"] = round(time.perf_counter() - start, 2)
    counts = {
        "train": class_counts(data.train_labels, data.classes),
        "test": class_counts(data.test_labels, data.classes),
    }
    method = {
        "folds": folds if labels else 0,
        "network": _fold_spec(spec, data.preprocessing),
        "epochs": epochs,
        "lr": lr,
        "batch_size": 64,
        "seed": seed,
        "near_rms": NEAR_RMS,
        "neighbours": NEIGHBOURS,
        "outlier_share": OUTLIER_SHARE,
        "imbalance_ratio": IMBALANCE_RATIO,
        "ranked_by": "self_confidence (cleanlab find_label_issues, prune_by_noise_rate)",
    }
    return Audit(
        data.name,
        list(map(str, data.classes)),
        {"train": n_train, "test": n_test},
        duplicates,
        near,
        train_issues,
        test_issues,
        counts,
        imbalance(counts["train"]),
        far,
        method,
        seconds,
    )


def summary_lines(found: Audit) -> list:
    """One line per kind of finding, `kind: ...`."""
    d, near, imb = found.duplicates, found.near_duplicates, found.imbalance
    ratio = "inf (an empty class)" if imb["ratio"] is None else f"{imb['ratio']:.2f}"
    m = found.method
    lines = [
        f"data: {found.dataset}, {found.sizes['train']} train and {found.sizes['test']} test "
        f"images, {len(found.classes)} classes",
        f"duplicates: {len(d['train'])} in train, {len(d['test'])} in test, "
        f"{len(d['train_test'])} test images also in train",
        f"near duplicates: {len(near['train'])} in train, {len(near['test'])} in test, "
        f"{len(near['train_test'])} train-test (RMS pixel difference < {m['near_rms']})",
    ]
    if m["folds"]:
        lines.append(
            f"label issues: {len(found.label_issues)} in train, "
            f"{len(found.test_label_issues)} in test (cleanlab on {m['folds']}-fold "
            f"out-of-sample probabilities of {m['network']}, {m['epochs']} "
            f"epoch{'s' * (m['epochs'] != 1)}, "
            f"seed {m['seed']})"
        )
    counts = found.class_counts["train"]
    large, small = imb["largest"], imb["smallest"]
    spread = (
        f"every class {max(counts.values())} images in train"
        if imb["ratio"] == 1
        else f"in train the largest class, {large}, has {counts[large]} images and the "
        f"smallest, {small}, {counts[small]}: a ratio of {ratio}"
    )
    lines += [
        f"classes: {'imbalanced' if imb['imbalanced'] else 'balanced'}, {spread}"
        + ("; train with --class-weights auto to weigh them evenly" if imb["imbalanced"] else ""),
        f"outliers: {len(found.outliers)} farthest from their {m['neighbours']}th nearest "
        "neighbour",
    ]
    return lines
