"""What quicknets knows about each dataset: class names, file names and official digests.

The digests are SHA-256 of the decompressed IDX content, so repackaged `.gz` files (Debian's
dataset-fashion-mnist) verify as long as the data is the same.
"""
from dataclasses import dataclass

FILES = {  # key -> file stem, the same for every dataset of the family
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_KEYS = {stem: key for key, stem in FILES.items()}


def file_key(name: str) -> str | None:
    """Which of the four files a file name is, in any of its common spellings, or None.

    The published `train-images-idx3-ubyte.gz` and its unpacked form; `train-images.idx3-ubyte`
    as Windows unpackers, Kaggle and LeCun-mirror copies have it (raw or .gz); any case.
    """
    stem = name.lower().removesuffix(".gz").replace(".", "-").replace("_", "-")
    return _KEYS.get(stem)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    torchvision_name: str  # the torchvision class: its mirrors and .gz MD5s are used to fetch
    classes: tuple
    sha256: dict  # key -> SHA-256 of the decompressed file, None where no digest is known
    debian_dir: str | None = None
    layout: str = "fashion"  # how a user's image file is laid out (images.py): fashion, digits


DATASETS = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle Boot"),
        {"train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
         "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
         "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
         "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"},
        "/usr/share/datasets/fashion-mnist"),
    "mnist": DatasetInfo(
        "mnist", "MNIST", tuple(str(d) for d in range(10)),
        {"train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
         "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
         "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
         "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"},
        layout="digits"),
    # KMNIST: no published digest of the decompressed files; fetched .gz files are checked
    # against torchvision's MD5s instead, and local raw files are checked for structure only.
    "kmnist": DatasetInfo(
        "kmnist", "KMNIST", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        dict.fromkeys(FILES), layout="digits"),
}


def identify(sha256: str) -> str | None:
    """The dataset whose official file has this digest, if any (catches MNIST served as Fashion)."""
    for info in DATASETS.values():
        if sha256 in info.sha256.values():
            return info.name
    return None
