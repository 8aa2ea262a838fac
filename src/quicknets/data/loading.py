"""Load a dataset as uint8 tensors: a built-in one found or fetched, verified, cached, or your own.

    data = load_dataset("fashion-mnist", val_split=0.1, seed=0)
    data.train_images   # uint8 (54000, 28, 28); data.val_images (6000, 28, 28); data.classes
    data = load_dataset("pets/", image_size=32, mean="auto")   # your own (sources.py)
    data.train_images   # uint8 (N, 3, 32, 32): 1-channel images are (N, H, W), as ever
    len(data), data[0]  # the training set, normalised: (float (C, H, W), label)
    loader = data.loader("train", batch_size=64)   # a torch DataLoader; data.split("test")

Built-in: Fashion-MNIST, MNIST, KMNIST (fetched when missing), the EMNIST splits and QMNIST
(local files only; datasets.py). Your own: a CSV file, a folder of class folders or an .npz
(sources.py), cached and recorded with a content digest.

load_dataset decides once what `name` is (is_path) and calls one reader once: builtin.py for a
built-in name (where its files are looked for, fetched, verified and cached), sources.py for a path.
"""

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from quicknets.base.errors import QuicknetsError
from quicknets.data.builtin import read_builtin
from quicknets.data.datasets import DATASETS
from quicknets.data.preprocessing import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    Preprocessing,
    dataset_layout,
    normalize,  # noqa: F401  (quicknets.data.loading.normalize, as before)
)
from quicknets.data.sources import SUFFIXES, as_fraction, read_source, resolve_path


@dataclass
class Dataset:
    """One dataset in memory: uint8 images (N, H, W) for 1 channel or (N, C, H, W), int64
    labels, and how it was made. `preprocessing` says what a network trained on it needs
    (shape, normalisation, classes). len() and indexing are the training set's, normalised;
    split() and loader() give any split as a torch Dataset or DataLoader.

    Built by hand (Dataset("mine", classes, x_train, y_train, x_test, y_test)), the images may
    be tensors or NumPy arrays of pixels 0..255, uint8 or any integer type, (N, H, W), (N, C, H,
    W) or channels-last (N, H, W, C) with C 1 or 3; labels any integer type, class numbers
    0..len(classes)-1. Floats are refused, not guessed: [0, 1] and 0..255 would both be
    plausible, so convert them (`(x * 255).round().to(torch.uint8)` for ToTensor's floats).
    A QuicknetsError says what is wrong."""

    name: str
    classes: list
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    mean: float | tuple = DEFAULT_MEAN  # x = (pixel / 255 - mean) / std; one, or per channel
    std: float | tuple = DEFAULT_STD
    val_split: float = 0.0
    seed: int = 0
    val_stratified: bool = True  # False: the plain random split of records made before
    source: str = ""
    layout: str = ""  # how an image file is brought to the shape; "": the dataset name's
    origin: dict = field(default_factory=dict)  # your own data: path, digest, test set, ...

    def __post_init__(self):
        self.classes = list(self.classes)
        if not self.classes:
            raise QuicknetsError("a dataset needs its class names (one per class)")
        shapes = set()
        for split in ("train", "test", "val"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if split == "val" and images is None and labels is None:
                continue
            images = as_pixels(images, f"{split}_images")
            labels = as_labels(labels, len(self.classes), f"{split}_labels")
            if len(images) != len(labels):
                raise QuicknetsError(
                    f"{split}_images holds {len(images)} images but "
                    f"{split}_labels {len(labels)} labels"
                )
            setattr(self, f"{split}_images", images)
            setattr(self, f"{split}_labels", labels)
            if len(images):
                shapes.add(tuple(images.shape[1:]) if images.dim() == 4 else (1, *images.shape[1:]))
        if len(shapes) > 1:
            raise QuicknetsError(
                f"the splits' images differ in shape (C, H, W): "
                f"{', '.join(map(str, sorted(shapes)))}"
            )

    @property
    def preprocessing(self) -> Preprocessing:
        """What a network trained on this data needs: shape, normalisation, classes, layout."""
        images = self.train_images if len(self.train_images) else self.test_images
        shape = tuple(images.shape[1:]) if images.dim() == 4 else (1, *images.shape[1:])
        return Preprocessing(
            shape,
            _per_channel(self.mean),
            _per_channel(self.std),
            tuple(self.classes),
            self.name,
            self.layout or dataset_layout(self.name),
        )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W) or (B, C, H, W) → float (B, C, H, W), on the device of `images`."""
        return self.preprocessing.normalize(images)

    def __len__(self) -> int:
        return len(self.train_labels)

    def __getitem__(self, index):
        return self.split("train")[index]

    def split(self, name: str = "train") -> "ImageSplit":
        """One split ("train", "val" or "test") as a torch Dataset of (normalised float image
        (C, H, W), int label) pairs, for a DataLoader, Lightning or skorch."""
        if name not in ("train", "val", "test"):
            raise QuicknetsError(f"split must be train, val or test, not {name!r}")
        images, labels = getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")
        if images is None:
            raise QuicknetsError(f"this dataset has no {name} split (set val_split to make one)")
        return ImageSplit(images, labels, self.preprocessing)

    def loader(
        self,
        split: str = "train",
        batch_size: int = 64,
        shuffle: bool | None = None,
        seed: int = 0,
        **options,
    ) -> torch.utils.data.DataLoader:
        """A torch DataLoader over one split: batches (float (B, C, H, W), int64 (B,)),
        shuffled (training split by default) in an order fixed by `seed`. `options` go to
        DataLoader (num_workers, pin_memory, ...)."""
        shuffle = split == "train" if shuffle is None else shuffle
        return torch.utils.data.DataLoader(
            self.split(split),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(seed) if shuffle else None,
            **options,
        )


class ImageSplit(torch.utils.data.Dataset):
    """A split's uint8 images and labels, served one normalised image at a time."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, pre: Preprocessing):
        self.images, self.labels, self.preprocessing = images, labels, pre

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        x = self.preprocessing.normalize(self.images[index][None])[0]  # (C, H, W) float32
        return x, int(self.labels[index])


def as_pixels(images, what: str = "images") -> torch.Tensor:
    """Images as a uint8 tensor (N, H, W) or (N, C, H, W): from a tensor or NumPy array (any
    strides) of whole pixels 0..255 of any integer type; channels-last (N, H, W, C) with C 1 or
    3 is moved to (N, C, H, W). Floats and values outside 0..255 are a QuicknetsError."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise QuicknetsError(
            f"{what} must be a tensor or NumPy array of uint8 pixels, not {type(images).__name__}"
        )
    if images.dim() not in (3, 4):
        raise QuicknetsError(
            f"{what} has shape {tuple(images.shape)}; images are (N, H, W), "
            "(N, C, H, W) or (N, H, W, C)"
        )
    if images.dim() == 4 and images.shape[1] not in (1, 3) and images.shape[3] in (1, 3):
        images = images.permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)
    if images.dtype == torch.uint8:
        return images
    if images.is_floating_point() or images.is_complex() or images.dtype == torch.bool:
        raise QuicknetsError(
            f"{what} holds {images.dtype} values; a dataset keeps uint8 pixels 0..255, and "
            "floats could mean 0..1 or 0..255: convert them, (x * 255).round().to(torch.uint8) "
            "for ToTensor's [0, 1], x.round().to(torch.uint8) for 0..255"
        )
    if images.numel() and (images.min() < 0 or images.max() > 255):
        raise QuicknetsError(
            f"{what} holds values from {int(images.min())} to "
            f"{int(images.max())}; pixels are 0..255"
        )
    return images.to(torch.uint8)


def as_labels(labels, classes: int, what: str = "labels") -> torch.Tensor:
    """Labels as an int64 tensor (N,): from a tensor, NumPy array or list of class numbers of
    any integer type, each in 0..classes-1; anything else is a QuicknetsError."""
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(np.ascontiguousarray(labels))
    elif isinstance(labels, (list, tuple)):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError):
            raise QuicknetsError(f"{what} must be class numbers 0..{classes - 1}") from None
    if not isinstance(labels, torch.Tensor):
        raise QuicknetsError(
            f"{what} must be a tensor, NumPy array or list of class numbers, "
            f"not {type(labels).__name__}"
        )
    if labels.dim() == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]  # (N, 1), as CIFAR's and Keras's
    if labels.dim() != 1:
        raise QuicknetsError(f"{what} has shape {tuple(labels.shape)}; labels are (N,)")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise QuicknetsError(
            f"{what} holds {labels.dtype} values, not class numbers (an integer type)"
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)][0]
        raise QuicknetsError(
            f"{what} holds class {int(bad)}, outside the {classes} classes (0..{classes - 1})"
        )
    return labels.long()


def _per_channel(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def is_path(name, test: bool = False) -> bool:
    """Whether --dataset (or, with test=True, --test) names a file or folder rather than a
    built-in dataset (or a fraction): a path separator, a data suffix, or something there."""
    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        return False
    text = str(name)
    if test and as_fraction(text) is not None:
        return False
    if not test and text.lower().replace("_", "-") in DATASETS:
        return False
    return (
        "/" in text
        or os.sep in text
        or text.startswith("~")
        or text.lower().endswith(SUFFIXES)
        or Path(text).exists()
    )


def load_dataset(
    name: str = "fashion-mnist",
    data_dir=None,
    val_split: float = 0.0,
    seed: int = 0,
    mean=DEFAULT_MEAN,
    std=DEFAULT_STD,
    download: bool = True,
    verify: bool = True,
    *,
    test=None,
    image_size: int = 0,
    channels: int = 0,
    stratify: bool = True,
) -> Dataset:
    """Train and test tensors, class names, and an optional seeded validation split.

    name: a built-in dataset, or the path of your own (a CSV file, a folder of class folders,
    an .npz; see sources.py), with its `test` set (a path, or the fraction held out; default:
    found beside it, else 0.2) and `image_size`/`channels` to bring its images to (0: keep).
    val_split: the fraction of the training set held out for validation (0 for none), the
    same fraction of each class (stratified_split: every class keeps at least one training
    image, or it is an error); which images go there is fixed by `seed`, so the split is
    recorded by (val_split, seed). stratify=False: the plain random split that records made
    before had (load_recorded picks it for them).
    mean, std: one value, one per channel, or "auto" (computed per channel on the training
    images, after the validation split).
    """
    _check_split(val_split, mean, std)  # before reading anything
    if is_path(name):
        data = _own_data(name, data_dir, test, image_size, channels)
    else:
        if test or image_size or channels:
            raise QuicknetsError(
                "test, image_size and channels are for your own data (a path); "
                f"{name} has its own test set and 28x28 grey images"
            )
        info, t, source = read_builtin(name, data_dir, download, verify)
        data = Dataset(
            info.name,
            list(info.classes),
            t["train_images"],
            t["train_labels"],
            t["test_images"],
            t["test_labels"],
            source=source,
        )
    return split_dataset(data, val_split, seed, mean, std, stratify)


def split_dataset(
    data: Dataset,
    val_split: float = 0.0,
    seed: int = 0,
    mean=DEFAULT_MEAN,
    std=DEFAULT_STD,
    stratify: bool = True,
) -> Dataset:
    """`data`, a Dataset with no validation split yet (as read), with load_dataset's split and
    normalisation: `val_split` of its training set held out by `seed` (stratified_split, or
    random_split with stratify=False), then `mean` and `std` ("auto": per channel on the
    training images left). A new Dataset, sharing the tensors it does not split; `data` is
    unchanged. So a dataset read once gives each seed its own split, the one load_dataset with
    that seed gives (records.experiment.setup_sharing). Raises QuicknetsError as load_dataset,
    and for a dataset that has a validation split already."""
    _check_split(val_split, mean, std)
    if data.val_images is not None:
        raise QuicknetsError("this dataset has a validation split already: split it only once")
    train_images, train_labels = data.train_images, data.train_labels
    val_images = val_labels = None
    if val_split > 0:
        split = stratified_split if stratify else random_split
        keep, val = split(train_labels, val_split, seed)
        val_images, val_labels = train_images[val], train_labels[val]
        train_images, train_labels = train_images[keep], train_labels[keep]
    auto_mean, auto_std = channel_stats(train_images) if "auto" in (mean, std) else (0, 0)
    out = dataclasses.replace(
        data,
        train_images=train_images,
        train_labels=train_labels,
        val_images=val_images,
        val_labels=val_labels,
        val_split=val_split,
        seed=seed,
        val_stratified=stratify,
        mean=auto_mean if mean == "auto" else _plain(mean),
        std=auto_std if std == "auto" else _plain(std),
    )
    _ = out.preprocessing  # checks mean and std against the channels: one value, or one each
    return out


def _check_split(val_split: float, mean, std) -> None:
    if not 0.0 <= val_split < 1.0:
        raise QuicknetsError(f"val_split must be in [0, 1), not {val_split}")
    for label, value in (("std", std), ("mean", mean)):
        if value != "auto" and not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in _per_channel(value)
        ):
            raise QuicknetsError(
                f"{label} must be a number, one per channel, or auto, not {value!r}"
            )
    if std != "auto" and min(_per_channel(std)) <= 0:
        raise QuicknetsError(f"std must be positive, not {std}")


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple:
    """(kept, held): sorted index tensors that split `labels` (N,) as scikit-learn's
    train_test_split(stratify=labels) does: round(N * fraction) images held, each class giving
    its share (floor of its proportional share, the rest to the largest remainders, ties to the
    lower class), every class keeping at least one image; which images, a seeded draw per class.
    A fraction that leaves nothing on one side, or fewer images than classes, is refused."""
    n = len(labels)
    n_held = int(round(n * fraction))
    if n_held < 1 or n_held >= n:
        raise QuicknetsError(
            f"val_split {fraction} leaves no validation or no training images (of {n})"
        )
    present, counts = labels.unique(return_counts=True)
    counts = counts.tolist()
    shares = [c * n_held / n for c in counts]
    quota = [int(s) for s in shares]
    by_remainder = sorted(range(len(counts)), key=lambda i: (-(shares[i] - quota[i]), i))
    left = n_held - sum(quota)
    while left:
        open_ = [i for i in by_remainder if quota[i] < counts[i] - 1]  # keep one for training
        if not open_:
            raise QuicknetsError(
                f"val_split {fraction} would hold out {n_held} of {n} images and leave a class "
                f"with no training images ({len(counts)} classes, each keeps at least one): "
                "use a smaller val_split"
            )
        for i in open_[:left]:
            quota[i] += 1
        left = n_held - sum(quota)
    generator = torch.Generator().manual_seed(seed)
    held = [
        (labels == c).nonzero().flatten()[torch.randperm(counts[i], generator=generator)[:q]]
        for i, (c, q) in enumerate(zip(present.tolist(), quota))
    ]
    held = torch.cat(held).sort().values
    kept = torch.ones(n, dtype=torch.bool)
    kept[held] = False
    return kept.nonzero().flatten(), held


def random_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple:
    """(kept, held) as the records made before stratified_split have it: round(N * fraction)
    images drawn at random (seeded), whatever their classes. Kept so those reload with their
    own split and numbers."""
    n = len(labels)
    n_held = int(round(n * fraction))
    if n_held < 1 or n_held >= n:
        raise QuicknetsError(f"val_split {fraction} leaves no validation or no training images")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_held:].sort().values, order[:n_held].sort().values


def _plain(value):
    """A float, or a tuple of floats per channel."""
    return float(value) if not isinstance(value, (tuple, list)) else tuple(map(float, value))


def _own_data(path, data_dir, test, image_size, channels) -> Dataset:
    if data_dir:
        raise QuicknetsError(
            f"data_dir is for the built-in datasets; {path} is read where it "
            "is (give its new path if it moved)"
        )
    source = read_source(path, test=test, image_size=image_size, channels=channels)
    t = source.tensors
    return Dataset(
        source.name,
        list(source.classes),
        t["train_images"],
        t["train_labels"],
        t["test_images"],
        t["test_labels"],
        source=source.origin["path"],
        layout="resize",
        origin=source.origin,
    )


def channel_stats(images: torch.Tensor) -> tuple:
    """(mean, std) of pixel / 255 per channel over uint8 images (N, H, W) or (N, C, H, W):
    floats for one channel, tuples for several. From each channel's 256-bin histogram, so
    exact and light on memory (no float copy of the images)."""
    x = images if images.dim() == 4 else images.unsqueeze(1)  # (N, C, H, W)
    means, stds = [], []
    levels = torch.arange(256, dtype=torch.float64) / 255
    for c in range(x.shape[1]):
        counts = torch.bincount(x[:, c].reshape(-1).long(), minlength=256).double()
        total = counts.sum()
        mean = (counts * levels).sum() / total
        means.append(round(float(mean), 6))
        stds.append(
            max(round(float(((counts * (levels - mean) ** 2).sum() / total).sqrt()), 6), 1e-6)
        )  # a blank image set has no spread: keep the divisor positive
    return (means[0], stds[0]) if len(means) == 1 else (tuple(means), tuple(stds))


def resolve_paths(data_config):
    """The DataConfig with its dataset and test paths made absolute (a record read from
    another folder finds them); built-in names and fractions are left as they are."""
    changes = {}
    if is_path(data_config.dataset):
        changes["dataset"] = resolve_path(data_config.dataset)
        if data_config.test and is_path(data_config.test, test=True):
            changes["test"] = resolve_path(data_config.test)
    return dataclasses.replace(data_config, **changes) if changes else data_config


def load_recorded(
    config, data_dir=None, recorded: dict | None = None, changed: str = "warn"
) -> Dataset:
    """The dataset a RunConfig describes: same files, normalisation and split (`data_dir`
    overrides the recorded folder; for your own data, the folder it moved to). With the
    run's `recorded` data (its meta.json "data"), data from a path whose content digest
    differs is an error (changed="error") or a warning on stderr (changed="warn"), and a run
    recorded before validation splits were stratified (no "val_stratified") gets its own
    random split back."""
    d = config.data
    dataset, test, folder = d.dataset, d.test, data_dir or d.data_dir or None
    if is_path(dataset):
        if folder:  # moved: the same file or folder name in the new place
            dataset = str(Path(folder) / Path(dataset).name)
            if test and is_path(test, test=True):
                test = str(Path(folder) / Path(test).name)
        if recorded and not Path(dataset).exists():  # a run's data: not "--dataset takes ..."
            raise QuicknetsError(
                f"the run's data {Path(dataset).name} is not in {folder}"
                if folder
                else f"the run's data {dataset} is not there any more: if it moved, give the "
                f"folder now holding {Path(dataset).name} with --data-dir"
            )
        folder = None
    # a run recorded before the split was stratified keeps its own (random) validation split
    stratify = recorded is None or bool(recorded.get("val_stratified"))
    data = load_dataset(
        dataset,
        folder,
        val_split=d.val_split,
        seed=config.train.seed,
        mean=d.mean,
        std=d.std,
        verify=d.verify,
        test=test or None,
        image_size=d.image_size,
        channels=d.channels,
        stratify=stratify,
    )
    was, now = (recorded or {}).get("digest"), data.origin.get("digest")
    if was and now and was != now:
        message = (
            f"{dataset} changed since the run was made: its content digest is "
            f"{now[:12]}..., the run recorded {was[:12]}..."
        )
        if changed == "error":
            raise QuicknetsError(message)
        print(f"warning: {message}; the numbers are for the data as it is now", file=sys.stderr)
    return data


def describe(data: Dataset) -> dict:
    """What a run records about its data (JSON-ready): for your own data also its path,
    content digest and test set (data.origin), and for all the image shape and classes."""
    pre = data.preprocessing
    return {
        "dataset": data.name,
        "source": data.source,
        "train": len(data.train_labels),
        "val": 0 if data.val_labels is None else len(data.val_labels),
        "test": len(data.test_labels),
        "val_split": data.val_split,
        "split_seed": data.seed,
        "val_stratified": data.val_stratified,
        "mean": data.mean,
        "std": data.std,
        "shape": list(pre.shape),
        "classes": list(data.classes),
        **data.origin,
    }
