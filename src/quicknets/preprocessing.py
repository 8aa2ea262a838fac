"""How images reach a network: their shape, normalisation, class names, dataset, and how an
outside image file is brought to them. A trained model carries one (as timm's `pretrained_cfg`
does), so no caller has to remember mean, std or 28x28.

    pre = data.preprocessing                  # what a dataset's images need
    x = pre.normalize(data.test_images[:64])  # uint8 (64, 28, 28) -> float32 (64, 1, 28, 28)
    x = pre.normalize(rgb[:64])               # uint8 (64, 3, 32, 32) -> float32, per channel
    pre = preprocessing_of(model, data)       # the model's own, checked against the data

`train()` gives the model its data's preprocessing and the saved model keeps it: evaluated,
plotted or classified later on data loaded with other settings, the model's own normalisation
is applied (the data are uint8, so nothing has to be undone); data of another shape or with
other classes is refused.
"""
from dataclasses import asdict, dataclass

from quicknets.errors import QuicknetsError

DEFAULT_MEAN = 0.5  # x = (pixel / 255 - mean) / std: 0.5, 0.5 maps [0, 255] to [-1, 1] (the
DEFAULT_STD = 0.5   # notebook's Normalize((0.5,), (0.5,)))
LAYOUTS = ("fashion", "digits", "resize")  # how images.load_image brings a file to the shape


def dataset_layout(dataset: str) -> str:
    """The layout of a dataset's images (datasets.DatasetInfo.layout): "digits" for the
    MNIST-style sets of drawn characters, "fashion" for Fashion-MNIST, "resize" (the file
    scaled to the images' size, nothing else) for your own data."""
    from quicknets.datasets import DATASETS
    info = DATASETS.get(dataset)
    return info.layout if info is not None else "resize"


@dataclass(frozen=True)
class Preprocessing:
    """shape: (channels, height, width) of one image; mean, std: per channel, of pixel / 255;
    classes: the names of the network's outputs in order; dataset: where they come from;
    layout: how an image file is brought to the shape: "fashion" (object cropped and centred)
    or "digits" (MNIST's 20x20 box centred by mass in 28x28), grey on black; "resize" (scaled
    to the shape, in its channels) for your own data."""
    shape: tuple = (1, 28, 28)
    mean: tuple = (DEFAULT_MEAN,)
    std: tuple = (DEFAULT_STD,)
    classes: tuple = ()
    dataset: str = ""
    layout: str = "fashion"

    def __post_init__(self):
        for key in ("shape", "mean", "std", "classes"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        if len(self.shape) != 3 or any(int(n) < 1 for n in self.shape):
            raise QuicknetsError(f"an image shape is (channels, height, width), got {self.shape}")
        if len(self.mean) not in (1, self.shape[0]) or len(self.std) not in (1, self.shape[0]):
            raise QuicknetsError(f"mean {self.mean} and std {self.std} need one value each, or "
                                 f"one per channel ({self.shape[0]})")
        if any(s <= 0 for s in self.std):
            raise QuicknetsError(f"std must be positive, got {self.std}")
        if self.layout not in LAYOUTS:
            raise QuicknetsError(f"layout must be one of {', '.join(LAYOUTS)}, "
                                 f"got {self.layout!r}")

    @property
    def features(self) -> int:
        """Values per image (784 for 1x28x28): an MLP's input size."""
        c, h, w = self.shape
        return c * h * w

    def normalize(self, images):
        """uint8 (B, H, W) or (B, C, H, W) -> float32 (B, C, H, W), (x / 255 - mean) / std, on
        the device `images` is on."""
        return normalize(images, self.mean, self.std)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "Preprocessing":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def normalize(images, mean=DEFAULT_MEAN, std=DEFAULT_STD):
    """A whole batch at once: uint8 tensor (B, H, W) or (B, C, H, W) -> float32 (B, C, H, W),
    (x / 255 - mean) / std with one value or one per channel for mean and std."""
    import torch  # here: the configs import this module, and `quicknets --help` stays light
    x = images.to(torch.float32, copy=True)
    if x.dim() == 3:
        x = x.unsqueeze(1)  # (B, H, W) -> (B, 1, H, W)
    mean = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    return x.div_(255.0).sub_(mean).div_(std)  # in place: one float copy (188 MB), not three


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
            raise QuicknetsError(f"the network has {outputs} outputs, but the data has "
                                 f"{len(given.classes)} classes")
        return given
    if tuple(own.shape) != tuple(given.shape):
        raise QuicknetsError(f"the model takes images of shape {own.shape}, the data's are "
                             f"{given.shape}")
    if own.classes and tuple(own.classes) != tuple(given.classes):
        raise QuicknetsError(f"the model was trained on the classes of {own.dataset or 'other data'} "
                             f"({', '.join(own.classes[:3])}, ...), not on these "
                             f"({', '.join(given.classes[:3])}, ...)")
    return own
