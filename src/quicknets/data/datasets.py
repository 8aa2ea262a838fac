"""What quicknets knows about each built-in dataset: class names, file names, official digests.

The digests are SHA-256 of the decompressed IDX content, so repackaged `.gz` files (Debian's
dataset-fashion-mnist) verify as long as the data is the same. Fashion-MNIST, MNIST and KMNIST
are fetched when missing; the EMNIST splits and QMNIST are read from local files only, under the
names torchvision gives them (`emnist-balanced-train-images-idx3-ubyte`, in `<root>/EMNIST/raw/`
after `torchvision.datasets.EMNIST(root, split="balanced", download=True)`).
"""

import string
from dataclasses import dataclass, field

FILES = {  # key -> file stem, the same for every dataset of the family
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_KEYS = {stem: key for key, stem in FILES.items()}


def file_key(name: str, files: dict = FILES) -> str | None:
    """Which of the four files a file name is, in any of its common spellings, or None.

    The published `train-images-idx3-ubyte.gz` and its unpacked form; `train-images.idx3-ubyte`
    as Windows unpackers, Kaggle and LeCun-mirror copies have it (raw or .gz); any case.
    `files` maps the keys to a dataset's stems (FILES for the MNIST-style sets).
    """
    stem = name.lower().removesuffix(".gz").replace(".", "-").replace("_", "-")
    keys = _KEYS if files is FILES else {v: k for k, v in files.items()}
    return keys.get(stem)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    torchvision_name: str  # the torchvision class: its mirrors and .gz MD5s are used to fetch
    classes: tuple
    sha256: dict  # key -> SHA-256 of the decompressed file, None where no digest is known
    debian_dir: str | None = None
    layout: str = "fashion"  # how a user's image file is laid out (images.py): fashion, digits
    files: dict = field(default_factory=lambda: dict(FILES))  # key -> file stem
    fetch: bool = True  # False: local files only (no mirror keeps them as four .gz files)
    transpose: bool = False  # EMNIST stores each image transposed; read upright
    label_column: int | None = None  # QMNIST: labels are rows of 8 ints, the class first


DATASETS = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        "FashionMNIST",
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle Boot",
        ),
        {
            "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        "/usr/share/datasets/fashion-mnist",
    ),
    "mnist": DatasetInfo(
        "mnist",
        "MNIST",
        tuple(str(d) for d in range(10)),
        {
            "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        layout="digits",
    ),
    # KMNIST: no published digest of the decompressed files; fetched .gz files are checked
    # against torchvision's MD5s instead, and local raw files are checked for structure only.
    "kmnist": DatasetInfo(
        "kmnist",
        "KMNIST",
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        dict.fromkeys(FILES),
        layout="digits",
    ),
}


def _emnist(split: str, classes) -> DatasetInfo:
    """An EMNIST split as torchvision names it (classes as torchvision.datasets.EMNIST's)."""
    stems = {key: f"emnist-{split}-{stem.replace('t10k', 'test')}" for key, stem in FILES.items()}
    return DatasetInfo(
        f"emnist-{split}",
        "EMNIST",
        tuple(classes),
        dict.fromkeys(FILES),
        layout="digits",
        files=stems,
        fetch=False,
        transpose=True,
    )


_MERGED = set("cijklmopsuvwxyz")  # lower-case letters EMNIST merges with their capitals
_ALL = sorted(string.digits + string.ascii_letters)
DATASETS.update(
    {
        info.name: info
        for info in (
            _emnist("byclass", _ALL),
            _emnist("bymerge", [c for c in _ALL if c not in _MERGED]),
            _emnist("balanced", [c for c in _ALL if c not in _MERGED]),
            _emnist("letters", ["N/A", *string.ascii_lowercase]),  # labels 1..26; 0 is unused
            _emnist("digits", string.digits),
            _emnist("mnist", string.digits),
            # QMNIST: MNIST's 60000 training images with their labels, and the full 60000-image test
            # set that MNIST's 10000 were drawn from (torchvision's QMNIST(what="test")).
            DatasetInfo(
                "qmnist",
                "QMNIST",
                tuple(
                    f"{d} - {w}"
                    for d, w in enumerate(
                        (
                            "zero",
                            "one",
                            "two",
                            "three",
                            "four",
                            "five",
                            "six",
                            "seven",
                            "eight",
                            "nine",
                        )
                    )
                ),
                dict.fromkeys(FILES),
                layout="digits",
                fetch=False,
                label_column=0,
                files={
                    "train_images": "qmnist-train-images-idx3-ubyte",
                    "train_labels": "qmnist-train-labels-idx2-int",
                    "test_images": "qmnist-test-images-idx3-ubyte",
                    "test_labels": "qmnist-test-labels-idx2-int",
                },
            ),
        )
    }
)


def identify(sha256: str) -> str | None:
    """The dataset whose official file has this digest, if any (catches MNIST served as Fashion)."""
    for info in DATASETS.values():
        if sha256 in info.sha256.values():
            return info.name
    return None
