"""Is an image like the training data? A familiarity score for every prediction, and a threshold.

    fitted = fit_familiarity(model, data)        # statistics of the training images' features
    scores = familiarity_scores(model, images, fitted)   # (N,) float64, higher = more familiar
    familiar = scores >= fitted.threshold        # 95% of the run's held-out images pass
    outside = load_outside("digits/", preprocessing_of(model))   # uint8 (N, C, H, W)
    ood_metrics(scores_test, familiarity_scores(model, outside, fitted))   # {"auroc", "fpr95"}
    reference_sets((1, 28, 28))                  # {"digits", "photos", "noise"}: uint8 batches

Methods (METHODS; every score is "higher is more familiar"):
    "msp"          the top softmax probability (Hendrycks & Gimpel, ICLR 2017)
    "energy"       logsumexp of the logits, the negative free energy at T = 1 (Liu et al.,
                   NeurIPS 2020)
    "mahalanobis"  minus the smallest Mahalanobis distance (squared) of the features
                   to a class mean, with one covariance shared by the classes (Lee et al.,
                   NeurIPS 2018, without input preprocessing or the feature ensemble, both of
                   which are tuned on outside data)
    "knn"          minus the distance to the k-th nearest neighbour among L2-normalised
                   features of training images (Sun et al., ICML 2022)
Features are taken at the inputs of the network's nn.Linear layers (`layers`: their indices,
counted from 0 as Python counts; None, the default: every nn.Linear but the first, that is the
outputs of every dense hidden layer), each L2-normalised when there are several, concatenated.
For the default 784-256-128-64-10 network that is 256 + 128 + 64 values; for a CNN with one
dense hidden layer its 128 penultimate features; layers=(-1,) gives the penultimate features
the papers use. The logits are the input of the final LogSoftmax. Both are caught by forward
hooks, so every network of quicknets.networks.models works.

benchmarks/trust.py chose the default, knn with k = 1 on every dense hidden layer, the only
variant to reach every target for the default network at seeds 0 and 1 (digits 0.988 / 0.984,
photos 0.964 / 0.967, noise 0.9964 / 0.9971) and for the `balanced` CNN (0.997, 0.986, 0.994);
measured again later (benchmarks/README.md, seed 0): 0.980 / 0.981 / 0.997 for the default
network, while the presets' networks missed the noise target (fast 0.982, balanced 0.988).
On the penultimate features alone no method reached the noise target for the default network
(AUROC 0.92-0.97; Mahalanobis 0.50-0.57); on the first hidden layer alone knn fell to 0.92
against the photos; Mahalanobis on every hidden layer met all at seed 0 but not seed 1 (digits
0.948), nor for the CNN.

What a fit keeps (Familiarity.statistics, tensors small enough to save with the model):
"mahalanobis": the class means (C, D) and the shared precision matrix (D, D), float32: 205,184
numbers (0.8 MiB) for the default 784-256-128-64-10 network (D = 448, C = 10), 4,736 on its
penultimate features; "knn": a seeded subsample of BANK_SIZE training features (BANK_SIZE, D),
float16 (unit vectors; scores are computed in float32), 5,000 x 448 (2.24 million numbers,
4.3 MiB) for the default network; "msp" and "energy": nothing. The threshold is the largest
score that `pass_rate` (95%) of held-out images of the run's own reach: the validation split's
when the data has one, else a seeded tenth of the training images (at most HELD_OUT, 2,000)
kept out of the bank (Familiarity.threshold_split says "val" or "train"; the network has seen
those, so a little fewer than 95% of unseen images may pass). The test set is never used.

A run keeps its fit in familiarity.pt (save_familiarity, load_familiarity: weights-only,
written atomically; a sweep's trial only from its first use, records.runs.run_familiarity); a
model loaded with load_model carries it as `model.familiarity`. The bank in float32 instead
changed the default run's AUROCs (reference_sets) by at most 1.3e-6, its scores by 1.2e-4.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quicknets.base.errors import QuicknetsError
from quicknets.base.machine import use_strict_math
from quicknets.base.storage import load_refusal
from quicknets.data.preprocessing import Preprocessing, preprocessing_of

METHODS = ("msp", "energy", "mahalanobis", "knn")
DEFAULT_METHOD = "knn"  # benchmarks/trust.py: on every dense hidden layer, every target met
PASS_RATE = 0.95  # the share of held-out images of the run's own that pass the threshold
BANK_SIZE = 5000  # knn: training features kept (seeded subsample); 4.3 MiB at D = 448
K = 1  # knn: the neighbour whose distance is the score
# without a validation split: training images kept out of the bank to set the threshold on
# (2,000: the 95% point within about 0.5 points; 5,000 cost the default run's fit twice as much)
HELD_OUT = 2000
BATCH_SIZE = 2000  # images per forward pass
FILE = "familiarity.pt"  # in a run folder
FILE_FORMAT = 1
IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".pgm",
    ".ppm",
    ".pbm",
    ".pnm",
)
DATA_SUFFIXES = (".npz", "-ubyte", "-ubyte.gz", ".idx", ".idx.gz")


@dataclass
class Familiarity:
    """A fitted familiarity score: its method, the statistics it needs (float32 tensors, see
    the module docstring), the threshold (images scoring at least this pass), the share of
    held-out images that passed it, the split that set it, the features' layers (None: every
    dense hidden layer), and k for "knn"."""

    method: str
    statistics: dict = field(default_factory=dict)
    threshold: float = float("-inf")
    pass_rate: float = PASS_RATE
    threshold_split: str = ""
    layers: tuple | None = None
    k: int = K

    def size(self) -> int:
        """Numbers kept in the statistics."""
        return sum(t.numel() for t in self.statistics.values())

    def describe(self) -> dict:
        """Everything but the statistics, as JSON takes it (for records and exports)."""
        return {
            "method": self.method,
            "threshold": self.threshold,
            "pass_rate": self.pass_rate,
            "threshold_split": self.threshold_split,
            "layers": None if self.layers is None else list(self.layers),
            "k": self.k,
            "numbers": self.size(),
        }

    @classmethod
    def from_description(cls, info: dict, statistics: dict) -> "Familiarity":
        """The inverse of describe(), given the statistics back."""
        try:
            layers = info.get("layers")
            return cls(
                str(info["method"]),
                dict(statistics),
                float(info["threshold"]),
                float(info["pass_rate"]),
                str(info["threshold_split"]),
                None if layers is None else tuple(int(i) for i in layers),
                int(info["k"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise QuicknetsError(f"familiarity statistics without a valid {e}") from None


def _layers(model: nn.Module, kind: type, what: str) -> list:
    found = [m for m in model.modules() if isinstance(m, kind)]
    if not found:
        raise QuicknetsError(
            f"familiarity needs a network ending in {what} (as every "
            f"quicknets network does); this one has no {kind.__name__}"
        )
    return found


def _as_images(images, pre: Preprocessing) -> torch.Tensor:
    """uint8 or float (N, H, W) or (N, C, H, W) of the model's shape -> (N, C, H, W)."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor) or not (
        images.dtype == torch.uint8 or images.is_floating_point()
    ):
        raise QuicknetsError(
            "familiarity scores uint8 (or float) images (N, H, W) or (N, C, H, W), not "
            f"{getattr(images, 'dtype', type(images).__name__)}"
        )
    c, h, w = pre.shape
    if images.dim() == 3 and c == 1:
        images = images[:, None]
    if images.dim() != 4 or tuple(images.shape[1:]) != (c, h, w):
        raise QuicknetsError(
            f"the model takes images of shape ({c}, {h}, {w}), these are {tuple(images.shape[1:])}"
        )
    return images


def _chosen(linears: list, layers) -> list:
    """The nn.Linear layers whose inputs are the features (see the module docstring)."""
    if layers is None:
        return linears[1:] or linears
    layers = tuple(layers)
    if not layers or any(
        isinstance(i, bool) or not isinstance(i, int) or not -len(linears) <= i < len(linears)
        for i in layers
    ):
        raise QuicknetsError(
            f"layers are indices of the network's {len(linears)} Linear "
            f"layers (0..{len(linears) - 1}, or -1 for the last), not {layers}"
        )
    return [linears[i] for i in layers]


@torch.no_grad()
def logits_and_features(
    model: nn.Module, images, layers=None, batch_size: int = BATCH_SIZE, scale: str = "auto"
) -> tuple:
    """(logits (N, classes), features (N, D)), float32 on the CPU, of images (uint8 pixels, or
    floats whose `scale` Preprocessing.scale_of reads) with the model's own preprocessing, in
    eval mode (restored after). The features are the inputs of
    the network's nn.Linear layers `layers` (None: every one but the first), each
    L2-normalised when there are several, concatenated (see the module docstring). With flip
    test-time augmentation (a batch seen twice), each image's two rows are averaged."""
    use_strict_math()  # before anything multiplies: the CLI's math mode, as train()
    pre = preprocessing_of(model)
    x = _as_images(images, pre)
    scale = pre.scale_of(x, scale)
    caught = {}
    chosen = _chosen(_layers(model, nn.Linear, "a Linear layer"), layers)
    hooks = [
        linear.register_forward_hook(lambda m, args, out, i=i: caught.__setitem__(i, args[0]))
        for i, linear in enumerate(chosen)
    ]
    hooks.append(
        _layers(model, nn.LogSoftmax, "LogSoftmax")[-1].register_forward_hook(
            lambda m, args, out: caught.__setitem__("logits", args[0])
        )
    )
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    logits, features = [], []
    try:
        for i in range(0, len(x), batch_size):
            batch = pre.prepare(x[i : i + batch_size].to(device), scale)
            model(batch)
            values = []
            for name in ["logits", *range(len(chosen))]:
                value = caught[name].flatten(1).float()
                if len(value) == 2 * len(batch):  # flip TTA: the images, then their mirrors
                    value = value.reshape(2, len(batch), -1).mean(0)
                values.append(value.cpu())
            logits.append(values[0])
            parts = values[1:] if len(values) == 2 else [_normalised(v) for v in values[1:]]
            features.append(torch.cat(parts, 1))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    if not logits:
        raise QuicknetsError("no images to score")
    return torch.cat(logits), torch.cat(features)


def _normalised(features: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(features.float(), dim=1)


def fit_statistics(
    method: str,
    features: torch.Tensor,
    labels: torch.Tensor,
    classes: int,
    bank_size: int = BANK_SIZE,
    seed: int = 0,
) -> dict:
    """The statistics `method` keeps, from training features (N, D) and labels (N,)."""
    if method not in METHODS:
        raise QuicknetsError(
            f"unknown familiarity method {method!r}; choose from {', '.join(METHODS)}"
        )
    if method == "mahalanobis":
        f = features.double()
        counts = torch.bincount(labels, minlength=classes)
        if (counts == 0).any():
            raise QuicknetsError(
                f"class {int((counts == 0).nonzero()[0])} has no training "
                "images: its mean cannot be fitted"
            )
        means = torch.zeros(classes, f.shape[1], dtype=torch.float64).index_add_(0, labels, f)
        means /= counts[:, None]
        centred = f - means[labels]  # (N, D): each image less its class mean
        covariance = centred.T @ centred / len(f)  # shared by all classes (Lee et al.)
        precision = torch.linalg.pinv(covariance, hermitian=True)  # dead ReLU units: singular
        return {"means": means.float(), "precision": precision.float()}
    if method == "knn":
        if bank_size < 1:
            raise QuicknetsError(f"bank_size must be at least 1, not {bank_size}")
        order = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))
        return {"bank": _normalised(features[order[:bank_size]]).half().contiguous()}
    return {}


def score(fitted: Familiarity, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Familiarity scores (N,) float64, higher = more familiar, from logits (N, C) and
    features (N, D) (see logits_and_features)."""
    method, stats = fitted.method, fitted.statistics
    if method == "msp":
        return torch.softmax(logits.double(), 1).max(1).values
    if method == "energy":
        return torch.logsumexp(logits.double(), 1)
    if method == "mahalanobis":
        f, means, precision = (
            features.double(),
            stats["means"].double(),
            stats["precision"].double(),
        )
        if f.shape[1] != means.shape[1]:
            raise QuicknetsError(
                f"these statistics are of {means.shape[1]} features, the network gives {f.shape[1]}"
            )
        # (f - m)' P (f - m) = f'Pf - 2 f'Pm + m'Pm, for every image and class at once
        fp = f @ precision  # (N, D)
        distance = (
            (fp * f).sum(1, keepdim=True)
            - 2 * fp @ means.T
            + ((means @ precision) * means).sum(1)[None]
        )  # (N, C)
        return -distance.min(1).values
    if method == "knn":
        bank, k = stats["bank"].float(), fitted.k
        if not 1 <= k <= len(bank):
            raise QuicknetsError(
                f"k must be between 1 and the bank's {len(bank)} features, not {k}"
            )
        z = _normalised(features)
        squared = (bank * bank).sum(1)  # 1 up to float16 rounding
        out = []
        for i in range(0, len(z), BATCH_SIZE):  # (B, bank) distances at a time
            d2 = squared[None] - 2 * z[i : i + BATCH_SIZE] @ bank.T  # |z - b|^2 - |z|^2
            kth = d2.topk(k, dim=1, largest=False).values[:, -1].double()
            out.append(-(kth + 1).clamp(min=0).sqrt())  # |z| = 1
        return torch.cat(out)
    raise QuicknetsError(f"unknown familiarity method {method!r}; choose from {', '.join(METHODS)}")


def familiarity_scores(
    model: nn.Module,
    images,
    fitted: Familiarity,
    batch_size: int = BATCH_SIZE,
    scale: str = "auto",
) -> torch.Tensor:
    """Familiarity scores (N,) float64 of images (N, H, W) or (N, C, H, W) of the model's
    shape, uint8 pixels or floats of `scale` (classification's module docstring); higher =
    more like the training images. Raises QuicknetsError for images of another shape or
    dtype."""
    logits, features = logits_and_features(model, images, fitted.layers, batch_size, scale)
    return score(fitted, logits, features)


def threshold_at(scores: torch.Tensor, pass_rate: float = PASS_RATE) -> float:
    """The largest threshold t such that at least `pass_rate` of `scores` are >= t (a score
    that occurs)."""
    if not 0.0 < pass_rate <= 1.0:
        raise QuicknetsError(f"pass_rate must be in (0, 1], not {pass_rate}")
    ordered = torch.as_tensor(scores, dtype=torch.float64).flatten().sort().values
    if len(ordered) == 0:
        raise QuicknetsError("no scores to set a threshold on")
    passing = math.ceil(pass_rate * len(ordered) - 1e-9)  # images that must pass
    return ordered[len(ordered) - passing].item()


def fit_familiarity(
    model: nn.Module,
    data,
    method: str = DEFAULT_METHOD,
    pass_rate: float = PASS_RATE,
    layers=None,
    bank_size: int = BANK_SIZE,
    k: int = K,
    seed: int = 0,
) -> Familiarity:
    """Fit `method` (see METHODS) on the training images of `data` (features at the inputs of
    the nn.Linear `layers`; knn: a bank of `bank_size` of them drawn by `seed`, scored by the k-th
    neighbour) and set its threshold so that `pass_rate` of held-out images pass: the
    validation split's when there is one, else a seeded tenth of the training images (at most
    HELD_OUT) that the statistics leave out (see the module docstring). Raises QuicknetsError
    for an unknown method, or data whose shape or classes are not the model's."""
    if method not in METHODS:
        raise QuicknetsError(
            f"unknown familiarity method {method!r}; choose from {', '.join(METHODS)}"
        )
    preprocessing_of(model, data)  # the data are the model's: shape and classes
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise QuicknetsError(f"k must be a whole number of at least 1, not {k!r}")
    layers = None if layers is None else tuple(layers)
    fitted = Familiarity(method, pass_rate=pass_rate, layers=layers, k=k)
    n = len(data.train_images)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if data.val_images is not None and len(data.val_images):
        split, held_out, fit_rows = "val", data.val_images, order
    else:  # the last rows of the seeded order: never in the bank (its first rows)
        if n < 2:
            raise QuicknetsError("a familiarity threshold needs at least 2 training images")
        kept = min(HELD_OUT, max(1, n // 10))
        split, held_out, fit_rows = "train", data.train_images[order[n - kept :]], order[: n - kept]
    if method == "knn":  # only the bank's features are needed: the fit stays cheap
        rows = fit_rows[:bank_size]
        _, features = logits_and_features(model, data.train_images[rows], layers)
        fitted.statistics = fit_statistics(
            method, features, data.train_labels[rows], len(data.classes), bank_size, seed
        )
    elif method == "mahalanobis":
        _, features = logits_and_features(model, data.train_images[fit_rows], layers)
        fitted.statistics = fit_statistics(
            method, features, data.train_labels[fit_rows], len(data.classes), bank_size, seed
        )
    scores = familiarity_scores(model, held_out, fitted)
    fitted.threshold, fitted.threshold_split = threshold_at(scores, pass_rate), split
    return fitted


def save_familiarity(fitted: Familiarity, path, parents: bool = True) -> None:
    """Write a fit to `path` (a run's familiarity.pt), atomically; load_familiarity reads it
    weights-only."""
    from quicknets.base.storage import atomic_torch_save

    statistics = {k: v.detach().cpu().contiguous() for k, v in fitted.statistics.items()}
    saved = {"format": FILE_FORMAT, **fitted.describe(), "statistics": statistics}
    atomic_torch_save(saved, path, parents=parents)


def load_familiarity(path) -> Familiarity:
    """The fit save_familiarity wrote to `path`. A missing, truncated or foreign file is a
    QuicknetsError; nothing in it is executed (torch.load weights_only)."""
    import warnings

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise QuicknetsError(f"no familiarity statistics at {path}") from None
    except Exception as e:  # truncated, foreign, or holding objects other than tensors
        raise QuicknetsError(
            f"cannot read familiarity statistics {path}: {load_refusal(e)}"
        ) from None
    if not isinstance(saved, dict) or not isinstance(saved.get("statistics"), dict):
        raise QuicknetsError(f"{path} holds no familiarity statistics")
    return Familiarity.from_description(saved, saved["statistics"])


def ood_metrics(in_scores: torch.Tensor, out_scores: torch.Tensor) -> dict:
    """How well familiarity scores separate in-distribution images (positives) from outside
    ones: {"auroc": area under the ROC curve, "fpr95": the share of outside images that pass
    where 95% of the inside ones do, "n_in", "n_out"}. AUROC 1 separates perfectly, 0.5 not
    at all. scikit-learn's roc_auc_score and roc_curve."""
    from sklearn.metrics import roc_auc_score, roc_curve

    a, b = np.asarray(in_scores, dtype=np.float64), np.asarray(out_scores, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        raise QuicknetsError("AUROC needs scores of both inside and outside images")
    y = np.r_[np.ones(len(a)), np.zeros(len(b))]
    s = np.r_[a, b]
    fpr, tpr, _ = roc_curve(y, s)
    return {
        "auroc": float(roc_auc_score(y, s)),
        "fpr95": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
        "n_in": len(a),
        "n_out": len(b),
    }


# -- outside images ----------------------------------------------------------------------------


def load_outside(source, pre: Preprocessing, data_dir=None) -> torch.Tensor:
    """Outside images as uint8 (N, C, H, W) of `pre`'s shape, from
    - a built-in dataset name (its test set; a data_dir as load_dataset takes it),
    - a folder of image files (all of them, in subfolders too, hidden ones skipped), each of
      the shape already (its pixels as they are, images.decode_image: a folder of other sizes
      or channels is refused, naming its first such file, rather than resized or recoloured),
    - an image data file: .npz (x_test, else x_train, else its one array; (N, H, W) or
      (N, H, W, C)) or IDX (N, H, W) images, which must already have the shape.
    Raises QuicknetsError for a missing path, an unreadable file (the folder's first named: no
    image is skipped), or images of another size or number of channels."""
    from quicknets.data.datasets import DATASETS

    if (
        isinstance(source, str)
        and source.lower().replace("_", "-") in DATASETS
        and not Path(source).exists()
    ):
        from quicknets.data.loading import load_dataset

        return _shaped(load_dataset(source, data_dir).test_images, pre, source)
    path = Path(source).expanduser()
    if not path.exists():
        raise QuicknetsError(
            f"no file or folder {path} (outside images come from a built-in "
            f"dataset: {', '.join(DATASETS)}, a folder of images, or an .npz "
            "or IDX file)"
        )
    if path.is_dir():
        return _folder(path, pre)
    name = path.name.lower()
    if name.endswith(".npz"):
        return _shaped(_npz_images(path), pre, path)
    from quicknets.data.idx import read_idx

    if name.endswith(DATA_SUFFIXES):
        array, _ = read_idx(path)
        return _shaped(torch.from_numpy(_pixels(array, path)), pre, path)
    raise QuicknetsError(
        f"{path} is not a folder of images, an .npz file or an IDX file "
        "(...-ubyte, .idx, optionally .gz)"
    )


def _folder(path: Path, pre: Preprocessing) -> torch.Tensor:
    """Every image file under `path` (sorted, hidden ones skipped) as uint8 (N, C, H, W), its
    pixels as they are, as .npz and IDX files are read: a file of another size or number of
    channels than the model's is refused, naming the first, as is one that cannot be read."""
    from quicknets.data.images import decode_image

    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise QuicknetsError(f"{path} holds no image files")
    shape = tuple(pre.shape)
    images = []
    for f in files:  # decode_image names the file it cannot read
        image = decode_image(f)  # (C, H, W) in the file's own size and channels (1 or 3)
        if image.shape != shape:
            raise QuicknetsError(
                f"{f} is {_described(image.shape)}; the model takes {_described(shape)} "
                "images: bring the outside images to that size and channels first"
            )
        images.append(torch.from_numpy(image))
    return torch.stack(images)


def _described(shape) -> str:
    """(C, H, W) -> "28x28 grey" or "32x32 RGB" (width x height, as image sizes are given)."""
    c, h, w = shape
    return f"{w}x{h} {'grey' if c == 1 else 'RGB' if c == 3 else f'{c}-channel'}"


def _npz_images(path: Path) -> torch.Tensor:
    import zlib

    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            key = next(
                (k for k in ("x_test", "x_train") if k in keys), keys[0] if len(keys) == 1 else None
            )
            if key is None:
                raise QuicknetsError(
                    f"{path} holds {', '.join(keys) or 'nothing'}: give "
                    "x_test, x_train or a single array of images"
                )
            x = npz[key]
    except (ValueError, OSError, zlib.error, EOFError) as e:
        raise QuicknetsError(f"cannot read {path} as an .npz file ({e})") from None
    if x.ndim == 4 and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    return torch.from_numpy(np.ascontiguousarray(_pixels(x, path)))


def _pixels(x: np.ndarray, path) -> np.ndarray:
    if x.dtype != np.uint8:
        if (
            x.dtype.kind not in "iuf"
            or x.size
            and (x.min() < 0 or x.max() > 255 or not np.array_equal(x, np.round(x)))
        ):
            raise QuicknetsError(
                f"{path} holds {x.dtype} values that are not pixels (whole numbers 0..255)"
            )
        x = x.astype(np.uint8)
    return x


def _shaped(images: torch.Tensor, pre: Preprocessing, where) -> torch.Tensor:
    c, h, w = pre.shape
    if images.dim() == 3:
        images = images[:, None]
    if images.dim() != 4 or tuple(images.shape[1:]) != (c, h, w):
        raise QuicknetsError(
            f"{where} holds images of shape {tuple(images.shape[1:])}; the "
            f"model takes ({c}, {h}, {w})"
        )
    if len(images) == 0:
        raise QuicknetsError(f"{where} holds no images")
    return images


# -- reference outside sets --------------------------------------------------------------------


def reference_sets(shape=(1, 28, 28), crops: int = 100, noise: int = 1000, seed: int = 0) -> dict:
    """The reference outside sets, uint8 (N, C, H, W) of `shape`:
    "digits": scikit-learn's 1,797 8x8 handwritten digits in MNIST's layout (light on black,
        fitted into 20/28 of the field and centred by mass: images.digits_layout);
    "photos": `crops` seeded 100x100 crops of scikit-learn's two sample photos (half each),
        in the shape's channels (grey for 1) and scaled to its size;
    "noise": `noise` images of uniform noise 0..255.
    Digits and grey crops get 3 equal channels for a 3-channel shape."""
    from PIL import Image
    from sklearn.datasets import load_digits, load_sample_images

    from quicknets.data.images import digits_layout, resize

    c, h, w = shape
    digits = np.rint(load_digits().images * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255
    digits = np.stack([digits_layout(d, (h, w)) for d in digits])[:, None]  # (N, 1, H, W)
    rng = np.random.default_rng(seed)
    photos = []
    for i, photo in enumerate(load_sample_images().images):  # (427, 640, 3) each
        for _ in range(crops // 2 + (i < crops % 2)):
            top, left = rng.integers(0, photo.shape[0] - 99), rng.integers(0, photo.shape[1] - 99)
            crop = photo[top : top + 100, left : left + 100]
            if c == 1:
                crop = np.asarray(Image.fromarray(crop).convert("L"))[..., None]
            photos.append(resize(np.ascontiguousarray(crop), (h, w)).transpose(2, 0, 1))
    generator = torch.Generator().manual_seed(seed)
    sets = {
        "digits": torch.from_numpy(digits),
        "photos": torch.from_numpy(np.stack(photos)),
        "noise": torch.randint(0, 256, (noise, c, h, w), dtype=torch.uint8, generator=generator),
    }
    if c == 3:
        sets["digits"] = sets["digits"].repeat(1, 3, 1, 1)
    return sets
