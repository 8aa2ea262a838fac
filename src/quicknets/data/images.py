"""A user's image file, brought to the network the way the dataset's own images reach it.

    from quicknets.data.images import load_image
    x = load_image("shoe.jpg")              # uint8 (1, 28, 28) in Fashion-MNIST's layout
    x = load_image("seven.png", layout=dataset_layout("mnist"))  # in MNIST's layout
    x = load_image("cat.jpg", (3, 32, 32), layout="resize")     # your own data's: (3, 32, 32)

The steps, each a small function (on uint8 (H, W) grey arrays after to_gray), testable alone:
    read_image          the file's first frame, upright by its EXIF orientation; too large: error
    to_gray             any PIL mode -> 8-bit grey: transparency on white, 16/32-bit, float scaled
    looks_like_dataset  already the target size on a dark background: then used pixel for pixel
    dark_background     inverted when its border is light (the datasets' backgrounds are black)
    fashion_layout      the object cropped, its longer side scaled to fit, centred
    digits_layout       the object fitted into 20x20, centred by its centre of mass in 28x28
The "resize" layout, for your own data (sources.py reads an image folder with the same steps,
so a file classified later gets exactly the pixels its folder's images got in training):
    decode_image        the file in 1 or 3 channels (to_gray or to_rgb), resized to a size
    to_rgb              any PIL mode -> 8-bit RGB (H, W, 3), transparency on white as to_gray
    resize              scaled to exactly (H, W) (Lanczos), aspect ratio not kept; same size: as is
Arrays and tensors (classify, predict, imshow, view_classify) have one judge of their layout:
    to_chw              one image: (H, W), (H, W, C), (C, H, W), (1, C, H, W) or flat -> (C, H, W)
    to_nchw             a batch: (N, H, W), (N, H, W, C), (N, C, H, W), (N, C*H*W) -> (N, C, H, W)

Sources for the two layouts:
    "fashion": Xiao, Rasul & Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking
        Machine Learning Algorithms", arXiv:1708.07747 (2017), section 2: trim the edges, resize
        the longest edge to 28, extend the shortest edge to 28 with the image in the centre,
        negate, convert to 8-bit grey.
    "digits": LeCun, Cortes & Burges, "The MNIST database of handwritten digits",
        http://yann.lecun.com/exdb/mnist/: the digits were "size normalized to fit in a 20x20
        pixel box while preserving their aspect ratio" and "centered in a 28x28 image by computing
        the center of mass of the pixels, and translating the image so as to position this point
        at the center of the 28x28 field". KMNIST (Clanuwat et al., arXiv:1812.01718, 2018) is a
        drop-in replacement for MNIST, so its characters take the same layout.

Transparency: a file is judged as an image viewer or a browser shows it, on one fixed background,
white (BACKGROUND); then the layout decides, as for any photo, whether to invert (a light border:
a photo on white). So a cut-out garment gives what the same garment photographed on white gives,
however bright it is. A white object on transparency shows nothing, as on a white page: an error
(in the fashion and digits layouts), not a blank image to classify.

torch is imported only by load_image, to_chw and to_nchw: the folder reader's worker processes
decode without it.
"""

import warnings

import numpy as np

from quicknets.base.errors import QuicknetsError
from quicknets.data.preprocessing import LAYOUTS, dataset_layout  # noqa: F401  (a dataset's layout)

OBJECT_LEVEL = 30  # grey level above which a pixel is part of the object (on a dark background)
DIGIT_BOX = 20 / 28  # MNIST: the digit fits a 20x20 box in the 28x28 field
DRAFT_FACTOR = 16  # JPEGs are decoded at no less than 16x the target size (the object may be small)
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
GREY_MODES = ("1", "L", "LA", "La", "I", "F")  # and I;16*: one channel, read as 1 channel
BACKGROUND = 255  # what transparency shows: white, as image viewers and browsers show it


def load_image(path, shape=(1, 28, 28), layout="fashion"):
    """An image file as a uint8 tensor (C, H, W) laid out like the dataset's images. `layout` is
    "fashion" or "digits" (preprocessing.dataset_layout gives a dataset's): a light object on
    black, 1 channel; an image that already looks like the dataset (H x W, dark background) is
    returned pixel for pixel. "resize" (your own data, 1 or 3 channels): the image in C
    channels scaled to H x W, as sources.py reads an image folder."""
    import torch

    if layout not in LAYOUTS:
        raise QuicknetsError(f"unknown image layout {layout!r}: choose from {', '.join(LAYOUTS)}")
    channels, height, width = _check_shape(shape, layout)
    size = (height, width)
    if layout == "resize":
        return torch.from_numpy(decode_image(path, size, channels))
    img = read_image(path, size)
    gray = to_gray(img)  # (H0, W0) uint8, any size
    if gray.min() == gray.max() and _transparent_somewhere(img):  # a white object on clear
        raise QuicknetsError(
            f"{path} shows nothing: its transparency is seen on white, as a "
            "browser shows it, and what is not transparent is white too (save "
            "it on a black background)"
        )
    if not looks_like_dataset(gray, size):
        gray = dark_background(gray)
        gray = fashion_layout(gray, size) if layout == "fashion" else digits_layout(gray, size)
    return torch.from_numpy(gray)[None]  # (1, H, W)


def _transparent_somewhere(img) -> bool:
    if img.mode not in ALPHA_MODES and "transparency" not in img.info:
        return False
    return img.convert("RGBA").getchannel("A").getextrema()[0] < 255


def _check_shape(shape, layout="fashion") -> tuple:
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 3
        or not all(isinstance(n, int) and n > 0 for n in shape)
    ):
        raise QuicknetsError(f"an image shape is (channels, height, width), not {shape!r}")
    if shape[0] not in (1, 3):
        raise QuicknetsError(f"images have 1 (grey) or 3 (RGB) channels, not {shape[0]}")
    if shape[0] != 1 and layout != "resize":  # the MNIST layouts find a light object on black
        raise QuicknetsError(
            f"only 1-channel (grey) images can be loaded in the {layout} "
            f"layout, not {shape[0]} channels (3-channel data takes the "
            "resize layout)"
        )
    return tuple(shape)


def to_chw(image, shape=None):
    """One image as a contiguous tensor (C, H, W), its dtype and values kept: the one judge of
    image layouts, for classify, predict, imshow and view_classify alike.

    `image`: a numpy array or tensor of uint8 pixels or floats, laid out (H, W) (one channel),
    (H, W, C) (NumPy's, PIL's and Keras's channels last), (C, H, W) (PyTorch's) or flat (C*H*W
    values in PyTorch's order), each also with a leading batch of one. `shape`: the (C, H, W)
    it must have (a network's input); where two layouts fit (C = H = W) it is (C, H, W).
    shape=None: any H x W (at least 2x2) with 1 or 3 channels, not flat (whose shape is unknown).
    Raises QuicknetsError for another shape, something that is not an array, or a dtype other
    than uint8 and float."""
    x = as_tensor(image)
    dims = tuple(x.shape)
    if shape is None:
        while x.dim() > 3 and x.shape[0] == 1:
            x = x[0]  # a batch of one
        if x.dim() == 2 and min(x.shape) > 1:
            return x[None].contiguous()  # (H, W) -> (1, H, W)
        if x.dim() == 3 and x.shape[0] in (1, 3) and min(x.shape[1:]) > 1:
            return x.contiguous()
        if x.dim() == 3 and x.shape[2] in (1, 3) and min(x.shape[:2]) > 1:
            return x.movedim(2, 0).contiguous()  # (H, W, C) -> (C, H, W)
        raise QuicknetsError(
            f"an image is laid out (H, W), (H, W, C) or (C, H, W) with 1 or 3 channels, not {dims}"
        )
    layouts = _layouts(*shape)
    for one in (dims, dims[1:] if dims[:1] == (1,) else None):  # as it is, or a batch of one
        if one in layouts:
            return layouts[one](x.reshape(one)).contiguous()  # as PyTorch's own: same bits
    c, h, w = shape
    raise QuicknetsError(
        f"an image for this network is laid out ({c}, {h}, {w}), ({h}, {w}, {c})"
        f"{f', ({h}, {w})' if c == 1 else ''} or flat ({c * h * w},), not {dims}"
    )


def to_nchw(images, shape):
    """A batch as a contiguous tensor (N, C, H, W) of `shape` (C, H, W), dtype and values kept:
    its images laid out as to_chw takes them, (N, C, H, W), (N, H, W, C), (N, H, W) (one
    channel) or flat (N, C*H*W). Raises QuicknetsError as to_chw does."""
    x = as_tensor(images)
    layouts = _layouts(*shape)
    if x.dim() >= 2 and tuple(x.shape[1:]) in layouts:
        return layouts[tuple(x.shape[1:])](x).contiguous()
    c, h, w = shape
    raise QuicknetsError(
        f"a batch of images is laid out (N, {c}, {h}, {w}), (N, {h}, {w}, {c})"
        f"{f', (N, {h}, {w})' if c == 1 else ''} or (N, {c * h * w}), not "
        f"{tuple(x.shape)} (one image: images[None])"
    )


def _layouts(c: int, h: int, w: int) -> dict:
    """The trailing dims of each accepted layout of a (C, H, W) image -> how they become
    (..., C, H, W), whatever dims lead (a batch). The first wins where two are alike."""
    layouts = {(c, h, w): lambda x: x}
    layouts.setdefault((h, w, c), lambda x: x.movedim(-1, -3))  # channels last -> first
    if c == 1:
        layouts.setdefault((h, w), lambda x: x.unsqueeze(-3))
    layouts.setdefault((c * h * w,), lambda x: x.unflatten(-1, (c, h, w)))
    return layouts


def as_tensor(image):
    """A numpy array or tensor of pixels or floats, as a tensor of uint8 or floats (sharing a
    numpy array's memory where torch can: not for a read-only or non-native byte order array).
    Integer images of any type are pixels, checked to be 0..255 and made uint8; bool and
    complex images are an error."""
    import torch

    if isinstance(image, np.ndarray):
        if not image.flags.writeable or image.dtype.byteorder not in "=|":
            image = image.astype(image.dtype.newbyteorder("="))  # torch takes neither
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise QuicknetsError(f"an image is a numpy array or a tensor, not a {type(image).__name__}")
    if image.is_floating_point() or image.dtype == torch.uint8:
        return image
    if image.dtype == torch.bool or image.is_complex():
        raise QuicknetsError(f"images are pixels (0..255) or floats, not {image.dtype}")
    wide = image.to(torch.int64)  # min/max are not implemented for every integer type (uint16)
    if wide.numel() and (wide.min() < 0 or wide.max() > 255):
        raise QuicknetsError(
            f"{image.dtype} images hold values from {int(wide.min())} to "
            f"{int(wide.max())}; pixels are 0..255"
        )
    return wide.to(torch.uint8)


def read_image(path, size=(28, 28)):
    """The file's first frame as a PIL image, turned upright by its EXIF orientation. Images over
    PIL's limit (Image.MAX_IMAGE_PIXELS) are an error before anything is decoded; JPEGs are
    decoded at a reduced scale when they are far larger than `size` (None: at full scale)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # PIL only warns above its limit; make that an error
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # frame 0 of an animation
                if img.format == "JPEG" and size is not None:  # draft keeps at least the size
                    img.draft(img.mode, (DRAFT_FACTOR * size[1], DRAFT_FACTOR * size[0]))
                img.load()
                return ImageOps.exif_transpose(img)
    except FileNotFoundError:
        raise QuicknetsError(f"no image file {path}") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise QuicknetsError(f"{path} is too large to load: {_one_line(e)}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise QuicknetsError(f"cannot read {path} as an image ({_one_line(e)})") from None


def natural_channels(img) -> int:
    """1 for a grey image (grey modes, and a palette of greys), else 3."""
    if img.mode in GREY_MODES or img.mode.startswith("I;16"):
        return 1
    if img.mode in ("P", "PA"):
        palette = np.array(img.getpalette() or [], dtype=np.int64)
        rgb = palette[: len(palette) // 3 * 3].reshape(-1, 3)
        return 1 if len(rgb) and (rgb == rgb[:, :1]).all() else 3
    return 3


def decode_image(path, size=None, channels=None) -> np.ndarray:
    """An image file as uint8 (C, H, W): in `channels` (1: to_gray, 3: to_rgb; None: its own,
    see natural_channels), scaled to `size` (H, W) unless it has that size (None: its own).
    Raises QuicknetsError naming the file when it cannot be read."""
    img = read_image(path, size)
    channels = channels or natural_channels(img)
    if channels == 1:
        pixels = to_gray(img)[..., None]  # (H, W, 1)
    else:
        pixels = to_rgb(img)  # (H, W, 3)
    if size is not None:
        pixels = resize(pixels, size)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))  # (H, W, C) -> (C, H, W)


def resize(pixels: np.ndarray, size) -> np.ndarray:
    """uint8 (H0, W0, C) scaled (Lanczos) to exactly (H, W, C); unchanged when it is that size."""
    from PIL import Image

    if pixels.shape[:2] == tuple(size):
        return pixels
    if pixels.shape[2] == 1:
        img = Image.fromarray(pixels[..., 0], "L")
    else:
        img = Image.fromarray(pixels, "RGB")
    out = np.array(img.resize((size[1], size[0]), Image.LANCZOS), dtype=np.uint8)  # PIL: (W, H)
    return out.reshape(size[0], size[1], pixels.shape[2])


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def to_gray(img) -> np.ndarray:
    """A PIL image in any mode -> uint8 (H, W) grey. Transparency (an alpha band, a palette's
    transparent entries, a colour key) is shown on white (see composite); 16-bit, 32-bit and
    float grey are scaled to 8 bits (see scale_to_8bit) instead of being clipped at 255."""
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        return scale_to_8bit(np.asarray(img), img.mode)
    if img.mode == "LAB":  # PIL cannot convert LAB to L; its L band is the lightness
        img = img.getchannel("L")
    if img.mode in ALPHA_MODES or "transparency" in img.info:
        if img.mode not in ("LA", "RGBA"):  # RGBA applies a palette's or a colour key's alpha
            img = img.convert("RGBA")
        gray_alpha = np.asarray(img.convert("LA"))  # (H, W, 2)
        return composite(gray_alpha[..., 0], gray_alpha[..., 1])
    return np.array(img.convert("L"), dtype=np.uint8)


def to_rgb(img) -> np.ndarray:
    """A PIL image in any mode -> uint8 (H, W, 3). Grey modes (16/32-bit and float scaled as
    in to_gray) give three equal channels; transparency is shown on white, as in to_gray."""
    if img.mode.startswith("I;16") or img.mode in ("I", "F", "LAB"):
        return np.repeat(to_gray(img)[..., None], 3, axis=2)
    if img.mode in ALPHA_MODES or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"))  # a palette's or a colour key's alpha applied
        return composite(rgba[..., :3], rgba[..., 3:])
    return np.array(img.convert("RGB"), dtype=np.uint8)


def composite(pixels: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 pixels (H, W) or (H, W, C) with straight (not premultiplied) alpha, (H, W) or
    (H, W, 1), flattened onto BACKGROUND (white) as a viewer shows them: pixel * a + 255 * (1 - a)
    with a = alpha / 255, rounded to the nearest level. -> uint8, the shape of `pixels`."""
    pixels, alpha = pixels.astype(np.uint16), alpha.astype(np.uint16)
    mixed = pixels * alpha + BACKGROUND * (255 - alpha)  # at most 255 * 255: fits 16 bits
    return ((mixed + 127) // 255).astype(np.uint8)  # rounded: x / 255 is never exactly k + 1/2


def scale_to_8bit(values: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit integer or float grey (H, W) -> uint8, 0 to the full scale mapped to 0..255. The
    full scale is 65535 for I;16 modes; for I and F it is the smallest of 1 (F only), 255, 65535
    and 2**31 - 1 that holds the brightest pixel, so a 16-bit PNG read as I, or floats in 0..1,
    scale like the 8-bit file they came from. Negative values and NaN are black."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0)
    if mode.startswith("I;16"):
        full = 65535.0
    else:
        scales = ((1.0,) if mode == "F" else ()) + (255.0, 65535.0, 2.0**31 - 1)
        brightest = float(values.max(initial=0.0))
        full = next((s for s in scales if brightest <= s), brightest)
    return np.clip(np.rint(values * (255.0 / full)), 0, 255).astype(np.uint8)


def border_mean(gray: np.ndarray) -> float:
    """Mean grey of the outermost rows and columns."""
    return float(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]).mean())


def looks_like_dataset(gray: np.ndarray, size=(28, 28)) -> bool:
    """Already the target size with a dark background (border mean at most 127; the lightest
    border among Fashion-MNIST's 70000 images averages 104): then it is used as it is."""
    return gray.shape == tuple(size) and border_mean(gray) <= 127


def dark_background(gray: np.ndarray) -> np.ndarray:
    """Inverted when its border is light: a photo on white becomes a light object on black."""
    return 255 - gray if border_mean(gray) > 127 else gray


def crop_to_object(gray: np.ndarray) -> np.ndarray:
    """The bounding box of the pixels brighter than OBJECT_LEVEL; all of it when none are."""
    rows = np.flatnonzero((gray > OBJECT_LEVEL).any(axis=1))
    cols = np.flatnonzero((gray > OBJECT_LEVEL).any(axis=0))
    if rows.size == 0:
        return gray
    return gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def fit(gray: np.ndarray, box) -> np.ndarray:
    """Scaled (Lanczos) to fit `box` (height, width) keeping its aspect ratio; at least 1x1."""
    from PIL import Image

    height, width = gray.shape
    scale = min(box[0] / height, box[1] / width)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))  # PIL wants (W, H)
    return np.array(Image.fromarray(gray).resize(new, Image.LANCZOS), dtype=np.uint8)


def fashion_layout(gray: np.ndarray, size=(28, 28)) -> np.ndarray:
    """Fashion-MNIST's layout: the object cropped, its longer side scaled to fill `size`, the
    result centred on black. uint8 (H, W) -> uint8 size."""
    obj = fit(crop_to_object(gray), size)
    return _paste(obj, size, (size[0] - obj.shape[0]) // 2, (size[1] - obj.shape[1]) // 2)


def digits_layout(gray: np.ndarray, size=(28, 28)) -> np.ndarray:
    """MNIST's layout: the object cropped and fitted into a 20x20 box (for 28x28) keeping its
    aspect ratio, then moved by whole pixels so its centre of mass (grey levels as weights) is
    within half a pixel of the field's centre: pixel i covers [i, i+1), the centre of 28 is 14.
    A digit whose centre of mass is far off-centre is moved only as far as it stays whole."""
    box = (max(1, round(size[0] * DIGIT_BOX)), max(1, round(size[1] * DIGIT_BOX)))
    digit = fit(crop_to_object(gray), box)  # (h, w), h <= box[0], w <= box[1]
    height, width = digit.shape
    weights = digit.astype(np.float64)
    total = weights.sum()
    if total == 0:
        row, col = (height - 1) / 2, (width - 1) / 2  # nothing to weigh: the box's centre
    else:
        row = (weights.sum(axis=1) * np.arange(height)).sum() / total  # pixel centres at i
        col = (weights.sum(axis=0) * np.arange(width)).sum() / total
    top = round((size[0] - 1) / 2 - row)  # pixel centre (n - 1) / 2 is the field centre n / 2
    left = round((size[1] - 1) / 2 - col)
    top = min(max(top, 0), size[0] - height)  # keep the whole digit in the field
    left = min(max(left, 0), size[1] - width)
    return _paste(digit, size, top, left)


def _paste(obj: np.ndarray, size, top: int, left: int) -> np.ndarray:
    canvas = np.zeros(size, dtype=np.uint8)  # the datasets' black background
    canvas[top : top + obj.shape[0], left : left + obj.shape[1]] = obj
    return canvas
