"""How images reach a network: their shape, normalisation, class names, dataset, and how an
outside image file is brought to them. A trained model carries one (as timm's `pretrained_cfg`
does), so no caller has to remember mean, std or 28x28.

    pre = data.preprocessing                  # what a dataset's images need
    x = pre.normalize(data.test_images[:64])  # uint8 (64, 28, 28) -> float32 (64, 1, 28, 28)
    x = pre.normalize(rgb[:64])               # uint8 (64, 3, 32, 32) -> float32, per channel
    x = pre.prepare(floats, pre.scale_of(floats))  # floats: 0..255, 0..1 (ToTensor), normalised
    pre = preprocessing_of(model, data)       # the model's own, checked against the data

`train()` gives the model its data's preprocessing and the saved model keeps it: evaluated,
plotted or classified later on data loaded with other settings, the model's own normalisation
is applied (the data are uint8, so nothing has to be undone); data of another shape or with
other classes is refused.
"""

import math
import warnings
from dataclasses import asdict, dataclass

from quicknets.base.errors import QuicknetsError

DEFAULT_MEAN = 0.5  # x = (pixel / 255 - mean) / std: 0.5, 0.5 maps [0, 255] to [-1, 1] (the
DEFAULT_STD = 0.5  # notebook's Normalize((0.5,), (0.5,)))
LAYOUTS = ("fashion", "digits", "resize")  # how images.load_image brings a file to the shape
# What the values of a float image mean (Preprocessing.scale_of): "auto" reads them
SCALES = ("auto", "pixels", "unit", "normalized")
# How far beyond its range a reading may go, as a fraction of the range: resampling (bicubic,
# Lanczos) overshoots a little, and a user's own arithmetic rounds
OVERSHOOT = 0.05
_SCALE_WORDS = {
    "pixels": "0..255",
    "unit": "0..1, as ToTensor gives",
    "normalized": "(pixel / 255 - mean) / std",
}


def dataset_layout(dataset: str) -> str:
    """The layout of a dataset's images (datasets.DatasetInfo.layout): "digits" for the
    MNIST-style sets of drawn characters, "fashion" for Fashion-MNIST, "resize" (the file
    scaled to the images' size, nothing else) for your own data."""
    from quicknets.data.datasets import DATASETS

    info = DATASETS.get(dataset)
    return info.layout if info is not None else "resize"


@dataclass(frozen=True)
class Preprocessing:
    """shape: (channels, height, width) of one image; mean, std: per channel, of pixel / 255;
    classes: the names of the network's outputs in order; dataset: where they come from;
    layout: how an image file is brought to the shape: "fashion" (object cropped and centred)
    or "digits" (MNIST's 20x20 box centred by mass in 28x28), grey on black; "resize" (scaled
    to the shape, in its channels) for your own data. temperature: T > 0, the network's
    log-probabilities are divided by T before the softmax wherever probabilities are reported
    (evaluation.calibration.temperature_scale; Guo et al. 2017); training fits it on the
    validation split, and 1.0 (nothing changes) is a model without one."""

    shape: tuple = (1, 28, 28)
    mean: tuple = (DEFAULT_MEAN,)
    std: tuple = (DEFAULT_STD,)
    classes: tuple = ()
    dataset: str = ""
    layout: str = "fashion"
    temperature: float = 1.0

    def __post_init__(self):
        for key in ("shape", "mean", "std", "classes"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < math.inf:
            raise QuicknetsError(f"a temperature is a positive number, not {t!r}")
        object.__setattr__(self, "temperature", float(t))
        if len(self.shape) != 3 or any(int(n) < 1 for n in self.shape):
            raise QuicknetsError(f"an image shape is (channels, height, width), got {self.shape}")
        if len(self.mean) not in (1, self.shape[0]) or len(self.std) not in (1, self.shape[0]):
            raise QuicknetsError(
                f"mean {self.mean} and std {self.std} need one value each, or "
                f"one per channel ({self.shape[0]})"
            )
        if any(s <= 0 for s in self.std):
            raise QuicknetsError(f"std must be positive, got {self.std}")
        if self.layout not in LAYOUTS:
            raise QuicknetsError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")

    @property
    def features(self) -> int:
        """Values per image (784 for 1x28x28): an MLP's input size."""
        c, h, w = self.shape
        return c * h * w

    def normalize(self, images):
        """uint8 (B, H, W) or (B, C, H, W) -> float32 (B, C, H, W), (x / 255 - mean) / std, on
        the device `images` is on. Floats are refused: see prepare()."""
        return normalize(images, self.mean, self.std)

    def normalized_range(self) -> tuple:
        """(low, high): the values pixels 0..255 take once normalised, over all channels."""
        return (
            min(-m / s for m, s in zip(self._means(), self._stds())),
            max((1 - m) / s for m, s in zip(self._means(), self._stds())),
        )

    def _means(self) -> tuple:
        return self.mean * self.shape[0] if len(self.mean) == 1 else self.mean

    def _stds(self) -> tuple:
        return self.std * self.shape[0] if len(self.std) == 1 else self.std

    def scale_of(self, images, scale: str = "auto") -> str:
        """What the values of `images` (a tensor, one image or a batch) are, checked: "pixels"
        (0..255), "unit" (0..1, what torchvision's ToTensor gives) or "normalized" (already
        (pixel / 255 - mean) / std with this preprocessing's mean and std).

        uint8 and other integer images are pixels. For floats, scale="auto" reads the whole
        batch: a value below -0.05 means normalized (pixels and unit are never negative), a
        largest value of at most 1 unit, above 1.05 pixels. Between those, where resampling's
        overshoot makes unit images dip a little below 0 or above 1, auto cannot tell and it
        is an error. Normalised images whose pixels are all brighter than the mean have no
        negative value: where a unit or pixels batch has no 0 (no black pixel) and could be
        normalised, a warning says so (scale= silences it). A normalisation that leaves black
        at 0 or above (a mean of 0) makes auto unable to tell floats apart, so it is an error
        unless unit and normalized give the same numbers (mean 0, std 1). Values beyond the
        reading's range by more than OVERSHOOT of it, NaN and infinity are a QuicknetsError."""
        scale = {"normalised": "normalized"}.get(scale, scale)
        if scale not in SCALES:
            raise QuicknetsError(f"scale must be one of {', '.join(SCALES)}, not {scale!r}")
        if not images.is_floating_point():
            if scale not in ("auto", "pixels"):
                raise QuicknetsError(
                    f"{images.dtype} images are pixels 0..255; scale={scale!r} is for floats"
                )
            return "pixels"
        if images.numel() == 0:
            return "unit" if scale == "auto" else scale
        lo, hi = (float(v) for v in images.aminmax())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise QuicknetsError("the images hold NaN or infinite values")
        low, high = self.normalized_range()
        if scale == "auto":
            scale = self._auto_scale(lo, hi, low, high)
        a, b = {"pixels": (0.0, 255.0), "unit": (0.0, 1.0), "normalized": (low, high)}[scale]
        slack = OVERSHOOT * (b - a)
        if lo < a - slack or hi > b + slack:
            raise QuicknetsError(
                f"images read as {scale} ({_SCALE_WORDS[scale]}) hold values from {lo:.4g} to "
                f"{hi:.4g}, outside {a:.4g}..{b:.4g}"
                + (
                    f": normalised with other statistics than this model's (mean "
                    f"{_numbers(self.mean)}, std {_numbers(self.std)})? Give uint8 pixels, or "
                    "normalise with model.preprocessing's mean and std"
                    if scale == "normalized"
                    else "; say which with scale=..."
                )
            )
        return scale

    def _auto_scale(self, lo: float, hi: float, low: float, high: float) -> str:
        """The auto reading of float images whose values run from lo to hi (see scale_of)."""
        if -OVERSHOOT <= lo < 0 or 1 < hi <= 1 + OVERSHOOT:
            raise QuicknetsError(
                f"float images with values {lo:.4g} to {hi:.4g} could be unit (0..1) images "
                "that resampling took a little beyond, or pixels or normalised: say which with "
                "scale='unit', 'pixels' or 'normalized'"
            )
        if lo < 0:
            return "normalized"
        scale = "unit" if hi <= 1 else "pixels"
        if not low <= lo <= hi <= high:  # could not be normalised images
            return scale
        if scale == "unit" and set(self.mean) == {0} and set(self.std) == {1}:
            return scale  # the same numbers either way
        if any(m <= 0 for m in self.mean):  # black normalises to 0 or above: no sign to read
            raise QuicknetsError(
                f"these float images (values {lo:.4g} to {hi:.4g}) could be {scale} or "
                f"normalised for this model (mean {_numbers(self.mean)}, std "
                f"{_numbers(self.std)}): say which with scale={scale!r} or 'normalized'"
            )
        if lo > 0:
            warnings.warn(
                f"float images with values {lo:.4g} to {hi:.4g} are read as {scale} "
                f"({_SCALE_WORDS[scale]}); with no 0 (no black pixel) they could also be "
                "normalised images with no pixel darker than the mean: pass "
                f"scale='normalized' if they are, or scale={scale!r} to say so",
                stacklevel=4,
            )
        return scale

    def prepare(self, images, scale: str):
        """Images (B, C, H, W) whose values are `scale` ("pixels", "unit" or "normalized", as
        scale_of says) -> the network's input: float32 (B, C, H, W), normalised, on the device
        `images` is on."""
        if scale == "pixels":
            return _normalize(images, self.mean, self.std, 255.0)
        if scale == "unit":
            return _normalize(images, self.mean, self.std, 1.0)
        return images.float()

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "Preprocessing":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def normalize(images, mean=DEFAULT_MEAN, std=DEFAULT_STD):
    """A whole batch at once: uint8 tensor (B, H, W) or (B, C, H, W) -> float32 (B, C, H, W),
    (x / 255 - mean) / std with one value or one per channel for mean and std. Float images are
    a QuicknetsError: 0..1 or 0..255 cannot be told here (Preprocessing.scale_of and prepare
    read them)."""
    if images.is_floating_point():
        raise QuicknetsError(
            f"normalize takes uint8 pixels, not {images.dtype}: for floats, "
            "preprocessing.prepare(images, scale) with scale 'pixels' (0..255), "
            "'unit' (0..1) or 'normalized'"
        )
    return _normalize(images, mean, std, 255.0)


def _normalize(images, mean, std, top: float):
    """(x / top - mean) / std as float32 (B, C, H, W); top: 255 for pixels, 1 for unit."""
    import torch  # here: the configs import this module, and `quicknets --help` stays light

    x = images.to(torch.float32, copy=True)
    if x.dim() == 3:
        x = x.unsqueeze(1)  # (B, H, W) -> (B, 1, H, W)
    mean = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    if top != 1.0:
        x.div_(top)
    return x.sub_(mean).div_(std)  # in place: one float copy (188 MB), not three


def _numbers(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def preprocessing_of(model, data=None) -> Preprocessing:
    """The preprocessing that images for `model` get: the model's own (set by training or
    loading), else the data's, else the default. Data of another shape or with other classes
    than the model's is refused; another normalisation is simply replaced by the model's."""
    own = getattr(model, "preprocessing", None)
    if data is None:
        return own or Preprocessing()
    given = data.preprocessing
    if own is None:
        outputs = (getattr(model, "config", None) or {}).get("num_classes")
        if outputs is not None and outputs != len(given.classes):
            raise QuicknetsError(
                f"the network has {outputs} outputs, but the data has {len(given.classes)} classes"
            )
        return given
    if tuple(own.shape) != tuple(given.shape):
        raise QuicknetsError(
            f"the model takes images of shape {own.shape}, the data's are {given.shape}"
        )
    if own.classes and tuple(own.classes) != tuple(given.classes):
        raise QuicknetsError(
            f"the model was trained on the classes of {own.dataset or 'other data'} "
            f"({', '.join(own.classes[:3])}, ...), not on these "
            f"({', '.join(given.classes[:3])}, ...)"
        )
    return own
