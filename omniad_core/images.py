"""Images and masks in, overlays out: paths, PIL images and arrays all accepted.

Pillow is imported when a function needs it, so ``import omniad_core`` stays light.
Errors name the file and the fix; nothing here unpickles anything.

Two rules apply to every image and mask read here (see ``docs/images.md``):

* **Size limit.** At most :data:`MAX_IMAGE_PIXELS` pixels (64 million, e.g. 8000 x 8000),
  checked from the file's header before any pixel is decoded.  Raise it per call
  (``max_pixels=``), for a process (``OMNIAD_MAX_IMAGE_PIXELS=200000000``) or by setting
  ``omniad_core.images.MAX_IMAGE_PIXELS``.
* **More than 8 bits.** 16-bit, 32-bit integer and float images are scaled to 8 bits by
  their range (:func:`to_uint8`): values already in 0..255 (or floats in [0, 1]) keep
  their meaning, larger ones are divided by the image's maximum, so 0 stays black and
  the brightest pixel becomes white.  Masks are never scaled: any non-zero raw value
  is anomalous.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MAX_IMAGE_PIXELS",
    "ImageError",
    "NotAMaskError",
    "check_output_path",
    "load_image",
    "load_mask",
    "looks_like_photo",
    "mask_from_array",
    "max_image_pixels",
    "overlay",
    "save_image",
    "save_mask",
    "to_uint8",
]

#: Default bound on width x height of an image or mask that is read (64 megapixels).
#: ``OMNIAD_MAX_IMAGE_PIXELS`` in the environment overrides it; ``max_pixels=`` per call.
MAX_IMAGE_PIXELS = 64_000_000
_ENV_MAX_PIXELS = "OMNIAD_MAX_IMAGE_PIXELS"

_MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".gif", ".webp")
#: Formats a mask may be written to: lossless ones only (JPEG would blur its edges).
_LOSSLESS_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".gif", ".pbm", ".pgm", ".ppm")
#: PIL modes holding 8 bits per channel, converted to RGB by Pillow as they are.
_EIGHT_BIT_MODES = frozenset(
    {"1", "L", "P", "LA", "La", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
)


class ImageError(ValueError):
    """An image or mask could not be read or has the wrong form."""


class NotAMaskError(ImageError):
    """A file given as a mask looks like a photo (:func:`looks_like_photo`)."""


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pillow comes with the core extra, not with the codec
        from omniad_core.packages import MissingPackageError

        raise MissingPackageError(
            "reading images needs Pillow, which is not installed; install it with: "
            "pip install 'omniad[core]'"
        ) from exc
    return Image


def max_image_pixels(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels``, else ``$OMNIAD_MAX_IMAGE_PIXELS``, else
    :data:`MAX_IMAGE_PIXELS`.

    >>> max_image_pixels(1000)
    1000
    """
    source = "max_pixels"
    value: Any = max_pixels
    if value is None and os.environ.get(_ENV_MAX_PIXELS, "").strip():
        source, value = _ENV_MAX_PIXELS, os.environ[_ENV_MAX_PIXELS].strip()
        try:
            value = int(value.replace("_", ""))
        except ValueError:
            raise ImageError(
                f"{_ENV_MAX_PIXELS} must be a whole number of pixels, got {value!r}"
            ) from None
    if value is None:
        source, value = "omniad_core.images.MAX_IMAGE_PIXELS", MAX_IMAGE_PIXELS
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ImageError(f"{source} must be a positive integer, got {value!r}")
    return int(value)


def _check_size(width: int, height: int, what: str, max_pixels: int | None) -> None:
    limit = max_image_pixels(max_pixels)
    if width * height > limit:
        raise ImageError(
            f"{what} is {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{limit:,}; if the image is genuine, raise the limit with max_pixels= or "
            f"{_ENV_MAX_PIXELS}=N (it bounds the memory a file can claim)"
        )


def _open(
    path: str | os.PathLike[str], max_pixels: int | None = None, *, mask: bool = False
) -> Any:
    """Open ``path``, check its declared size (and, for a mask, its bit depth), decode it."""
    Image = _pil()
    p = Path(path)
    if p.is_dir():
        raise ImageError(
            f"{str(p)!r} is a folder; pass an image file (folder inspection: "
            "omniad inspect DIR --out DIR)"
        )
    if not p.is_file():
        raise ImageError(
            f"no image file at {str(p)!r}; check the path (relative to {os.getcwd()!r})"
        )
    try:
        with warnings.catch_warnings():  # our limit replaces Pillow's bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(p)
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"{str(p)!r} declares more pixels than Pillow accepts ({exc}); if the image is "
            f"genuine, raise PIL.Image.MAX_IMAGE_PIXELS as well as {_ENV_MAX_PIXELS}"
        ) from None
    except Exception as exc:  # PIL raises many types for corrupt files
        raise ImageError(f"cannot read {str(p)!r} as an image: {exc}") from None
    try:
        _check_size(img.size[0], img.size[1], repr(str(p)), max_pixels)  # header only
        if mask:
            _refuse_reduced_mask(img, repr(str(p)))  # needs the undecoded tiles
        img.load()
    except ImageError:
        img.close()
        raise
    except Exception as exc:
        img.close()
        raise ImageError(f"cannot read {str(p)!r} as an image: {exc}") from None
    return img


def _reduced_to_8_bits(img: Any) -> bool:
    """True when Pillow decodes a 16-bit multi-channel file by keeping the high bytes."""
    for tile in getattr(img, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and ";16" in rawmode and not img.mode.startswith("I"):
            return True
    return False


def _refuse_reduced_mask(img: Any, name: str) -> None:
    if _reduced_to_8_bits(img):
        raise ImageError(
            f"{name} is a 16-bit {img.mode} file, which Pillow reads by its high bytes "
            "only (values below 256 would be lost); save masks as 8-bit or 16-bit "
            "grayscale (mode L or I;16) PNGs"
        )


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Image values of any numeric type as uint8, scaled by their range.

    * uint8 and bool (``True`` = 255) are kept;
    * floats with every value in [0, 1] are multiplied by 255;
    * any values in 0..255 are kept (floats truncated);
    * larger non-negative values are scaled by ``255 / max`` (0 stays black, the image's
      maximum becomes white: a 16-bit ``0..65520`` image uses the whole 8-bit range, a
      12-bit sensor's ``0..4095`` too);
    * images with negative values are scaled from their minimum..maximum to 0..255; a
      constant one becomes 0.

    NaN or infinite values are an :class:`ImageError`.

    >>> to_uint8(np.array([[0, 4095], [65520, 32760]], np.uint16)).tolist()
    [[0, 16], [255, 128]]
    >>> to_uint8(np.array([[0.0, 0.5, 1.0]])).tolist()
    [[0, 127, 255]]
    >>> to_uint8(np.array([[-1.0, 0.0, 1.0]])).tolist()
    [[0, 128, 255]]
    """
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype.kind not in "iuf":
        raise ImageError(f"image values must be numeric, got dtype {arr.dtype}")
    if arr.size == 0:
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ImageError("the image holds NaN or infinite values")
    lo, hi = arr.min(), arr.max()
    if arr.dtype.kind == "f" and lo >= 0 and hi <= 1.0:
        out = arr.astype(np.float32)
        out *= 255.0
        return out.astype(np.uint8)
    if lo >= 0 and hi <= 255:
        return arr.astype(np.uint8)
    # float32 (4 bytes a value) is precise enough for 8 bits out; float64 input keeps
    # float64 so that a tiny range (1e-300 wide) does not vanish
    work = np.float64 if arr.dtype == np.float64 else np.float32
    base = work(0) if lo >= 0 else work(lo)
    span = work(hi) - base  # x - y == 0 only when x == y (gradual underflow)
    if span <= 0:  # a constant image with negative values
        return np.zeros(arr.shape, np.uint8)
    out = arr.astype(work)
    if base:
        out -= base
    out /= span  # now in [0, 1]: no overflow whatever the range
    out *= work(255)
    out += work(0.5)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def load_image(image: Any, *, max_pixels: int | None = None) -> Any:
    """An RGB ``PIL.Image`` from a path, a PIL image or an ``(H, W[, C])`` array.

    Arrays may have any numeric type; one or four channels are converted.  Values wider
    than 8 bits (16-bit and 32-bit integers, floats, Pillow's ``I;16``, ``I`` and ``F``
    modes) are scaled to 0..255 by :func:`to_uint8`; Pillow itself reads 16-bit RGB(A)
    files as 8-bit by their high byte (the full 16-bit range).  More than ``max_pixels``
    pixels (default :func:`max_image_pixels`) is an :class:`ImageError`, raised from a
    file's header before its pixels are decoded.

    >>> load_image(np.zeros((4, 6, 3), np.uint8)).size
    (6, 4)
    """
    Image = _pil()
    if isinstance(image, (str, os.PathLike)):
        image = _open(image, max_pixels)
    if isinstance(image, Image.Image):
        _check_size(image.size[0], image.size[1], "the image", max_pixels)
        if image.mode == "RGB":
            return image
        if image.mode in _EIGHT_BIT_MODES:
            try:
                return image.convert("RGB")
            except Exception as exc:
                raise ImageError(f"cannot convert a {image.mode} image to RGB: {exc}") from None
        try:
            image = np.asarray(image)
        except Exception as exc:
            raise ImageError(f"cannot read the pixels of the image: {exc}") from None
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise ImageError(
                f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}"
            )
        if arr.size == 0:
            raise ImageError(f"the image array is empty: shape {arr.shape}")
        _check_size(arr.shape[1], arr.shape[0], "the image array", max_pixels)
        arr = to_uint8(arr)
        return Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")
    raise ImageError(
        f"an image must be a path, a PIL image or a numpy array, got {type(image).__name__}"
    )


#: Colour spaces whose black is not all-zero: the channel that is zero on black.
_DARK_CHANNEL = {"YCbCr": 0, "LAB": 0, "HSV": 2}


def _nonzero(values: np.ndarray, name: str) -> np.ndarray:
    if values.dtype == bool:
        return values
    if values.dtype.kind in "iu":
        return values != 0
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values)
        if bad.any():
            raise ImageError(
                f"{name} holds NaN or infinite values ({int(bad.sum()):,} pixels); a float "
                "mask must hold 0 (normal) or a positive value (anomalous): fix the file"
            )
        return values > 0
    raise ImageError(f"{name} must hold numbers, got values of type {values.dtype}")


def mask_from_array(values: Any, name: str = "the mask", mode: str | None = None) -> np.ndarray:
    """A boolean ``(H, W)`` mask from a mask's raw values: the one rule of the toolkit.

    Integer values of any width (8, 16, 32 bit) count when non-zero, float values when
    positive (a score-like map with negative "normal" values stays normal); NaN and
    infinity are an :class:`ImageError` naming ``name``.  Colour masks count where any
    colour channel counts (an alpha channel is ignored); ``mode`` is the PIL mode the
    values came from (``YCbCr``, ``LAB``, ``HSV``: the channel that is zero on black).

    >>> mask_from_array(np.array([[0, 1], [65535, 0]], np.uint16)).tolist()
    [[False, True], [True, False]]
    >>> mask_from_array(np.array([[0.0, -0.5], [1e-6, 0.0]], np.float32)).tolist()
    [[False, False], [True, False]]
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise ImageError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 3:
        if mode in _DARK_CHANNEL:
            arr = arr[..., _DARK_CHANNEL[mode]]
        elif arr.shape[2] >= 3:
            arr = _nonzero(arr[..., :3], name).any(axis=2)
        else:  # grey + alpha
            arr = arr[..., 0]
    out = _nonzero(arr, name)
    if out.ndim != 2 or out.size == 0:
        raise ImageError(f"{name} must be a 2-D (H, W) image, got shape {out.shape}")
    return out


def load_mask(
    mask: Any,
    shape: tuple[int, int] | None = None,
    *,
    max_pixels: int | None = None,
    refuse_photo: bool = False,
) -> np.ndarray:
    """A boolean ``(H, W)`` mask from a path, a PIL image or an array (non-zero = anomalous).

    ``None`` and ``""`` mean "no anomaly" and need ``shape``.  With ``shape``, a mask of
    another size is an error (masks are never silently resized).  Pixels are tested on
    their raw values, whatever the bit depth (a 16-bit mask holding 1 is anomalous
    there); a 16-bit colour file, which Pillow can only read by its high bytes, is
    refused rather than read wrongly.  The pixel limit is that of :func:`load_image`.
    With ``refuse_photo``, a colour photo (:func:`looks_like_photo`), whose every pixel
    is non-zero, is a :class:`NotAMaskError` instead of an all-anomalous mask.

    >>> load_mask(np.array([[0, 255], [0, 0]], np.uint8)).tolist()
    [[False, True], [False, False]]
    >>> load_mask(None, (2, 3)).sum()
    np.int64(0)
    """
    Image = _pil()
    if mask is None or (isinstance(mask, str) and not mask):
        if shape is None:
            raise ImageError("an absent mask (None or '') means 'no anomaly' and needs a shape")
        return np.zeros(shape, bool)
    name = "the mask"
    if isinstance(mask, (str, os.PathLike)):
        name = repr(str(mask))
        mask = _open(mask, max_pixels, mask=True)
    mode = None
    if isinstance(mask, Image.Image):
        mode = mask.mode
        _check_size(mask.size[0], mask.size[1], name, max_pixels)
        _refuse_reduced_mask(mask, name)  # a lazily opened image still has its tiles
        try:
            mask = np.asarray(mask)
        except Exception as exc:
            raise ImageError(f"cannot read the pixels of {name}: {exc}") from None
    arr = np.asarray(mask)
    if arr.ndim >= 2:
        _check_size(arr.shape[1], arr.shape[0], name, max_pixels)
    why = looks_like_photo(arr) if refuse_photo and mode not in _DARK_CHANNEL else None
    if why is not None:
        raise NotAMaskError(
            f"{name} looks like a photo, not a mask ({why}): a mask is 0 where the part is "
            "normal and non-zero where it is anomalous, and read as it is, every pixel of "
            "this one would count as anomalous; pass the mask image"
        )
    out = mask_from_array(arr, name, mode)
    if shape is not None and out.shape != tuple(shape):
        raise ImageError(
            f"the mask is {out.shape[0]}x{out.shape[1]} (H x W) but the image is "
            f"{shape[0]}x{shape[1]}; masks must have the image's size"
        )
    return out


def looks_like_photo(values: Any) -> str | None:
    """Why ``values`` (an image's raw pixels) look like a colour photo, not a mask, or None.

    A mask holds one value for normal pixels and one or a few for anomalous ones, in grey
    or a single colour; a photo has colour (channels that differ) and many values.  The
    test: an ``(H, W, 3+)`` array whose colour channels differ somewhere and where some
    colour channel holds more than 2 distinct values.  A red-on-black mask
    (``{0, 255}`` per channel) and any grey image pass as masks.

    >>> rng = np.random.default_rng(0)
    >>> looks_like_photo(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))[:31]
    'a colour image (its channels di'
    >>> red = np.zeros((8, 8, 3), np.uint8); red[2:4, 2:4, 0] = 255
    >>> looks_like_photo(red) is None, looks_like_photo(np.arange(64).reshape(8, 8)) is None
    (True, True)
    """
    arr = np.asarray(values)
    if arr.ndim != 3 or arr.shape[2] < 3 or arr.size == 0:
        return None
    rgb = arr[..., :3]
    if not ((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any()):
        return None  # grey stored as RGB
    most = 0
    for c in range(3):
        chan = rgb[..., c]
        if chan.dtype == np.uint8:
            distinct = int(np.count_nonzero(np.bincount(chan.ravel(), minlength=256)))
        else:  # wider values: a sample is enough to tell 2 from many
            distinct = int(np.unique(chan.ravel()[:: max(1, chan.size // 100_000)]).size)
        most = max(most, distinct)
    if most <= 2:
        return None
    return f"a colour image (its channels differ) with {most} distinct values in a channel"


def looks_like_mask_path(value: str) -> bool:
    """True for a string that names an image file (by suffix or because it exists)."""
    return value.lower().endswith(_MASK_SUFFIXES) or os.path.isfile(value)


def check_output_path(path: str | os.PathLike[str], *, lossless: bool = False) -> Path:
    """``path`` as a ``Path`` if an image can be written there, else an :class:`ImageError`.

    The suffix must name a format Pillow writes (a lossless one with ``lossless``), and
    the nearest existing folder on the way must be a writable folder.  Nothing is created.
    """
    Image = _pil()
    p = Path(path)
    suffix = p.suffix.lower()
    if lossless:
        if suffix not in _LOSSLESS_SUFFIXES:
            raise ImageError(
                f"cannot write a mask to {str(p)!r}: the suffix {suffix or '(none)'!r} is not "
                f"a lossless image format; use one of {', '.join(_LOSSLESS_SUFFIXES)} "
                "(e.g. mask.png)"
            )
    else:
        Image.init()
        fmt = Image.registered_extensions().get(suffix)
        if fmt is None or fmt not in Image.SAVE:
            raise ImageError(
                f"cannot write an image to {str(p)!r}: {suffix or 'no suffix'} is not an image "
                "format Pillow writes; use .png (or .jpg, .bmp, .tif, .webp)"
            )
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ImageError(f"cannot write {str(p)!r}: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ImageError(f"cannot write {str(p)!r}: the folder {str(parent)!r} is not writable")
    if p.is_dir():
        raise ImageError(f"cannot write {str(p)!r}: it is a folder; give a file name")
    return p


def save_image(image: Any, path: str | os.PathLike[str], *, lossless: bool = False) -> Path:
    """Write a ``PIL.Image`` to ``path`` (folders created), or raise :class:`ImageError`."""
    p = check_output_path(path, lossless=lossless)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        image.save(p)
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot write {str(p)!r}: {exc}") from None
    return p


def save_mask(mask: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write a boolean mask as an 8-bit image (0 / 255) in a lossless format (e.g. PNG).

    A suffix that is not a lossless image format, or a folder that cannot be written,
    is an :class:`ImageError` raised before anything is written.
    """
    check_output_path(path, lossless=True)
    img = _pil().fromarray((np.asarray(mask) != 0).astype(np.uint8) * np.uint8(255))
    return save_image(img, path, lossless=True)


def _edge(m: np.ndarray) -> np.ndarray:
    """The pixels of ``m`` with a 4-neighbour outside it (1 byte a pixel of work space)."""
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    inner[0, :] = inner[-1, :] = False  # the image border counts as outside
    inner[:, 0] = inner[:, -1] = False
    np.logical_xor(m, inner, out=inner)  # inner is a subset of m: this is m & ~inner
    return inner


def overlay(
    image: Any,
    mask: np.ndarray,
    *,
    color: tuple[int, int, int] = (255, 40, 40),
    alpha: float = 0.45,
    outline: bool = True,
) -> Any:
    """The image with the mask painted over it (``PIL.Image``, RGB).

    Works in uint8 with one channel of 16-bit scratch space at a time, so its memory
    is a few bytes per pixel beyond the image itself.

    >>> img = overlay(np.zeros((8, 8, 3), np.uint8), np.eye(8, dtype=bool))
    >>> img.size, img.getpixel((0, 0))[0] > 0, img.getpixel((1, 0))
    ((8, 8), True, (0, 0, 0))
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    out = np.array(load_image(image), dtype=np.uint8)  # (H, W, 3), writable
    m = load_mask(mask, out.shape[:2])
    col = [int(c) for c in color]
    if any(not 0 <= c <= 255 for c in col) or len(col) != 3:
        raise ValueError(f"color must be three values in 0..255, got {color!r}")
    if m.any():
        a = round(float(alpha) * 256)
        scratch = np.empty(m.shape, np.uint16)
        for c in range(3):
            chan = out[:, :, c]
            np.multiply(chan, 256 - a, out=scratch, dtype=np.uint16)
            scratch += np.uint16(a * col[c] + 128)
            scratch >>= 8
            np.copyto(chan, scratch, where=m, casting="unsafe")
        del scratch
        if outline:
            edge = _edge(m)
            for c in range(3):
                np.copyto(out[:, :, c], np.uint8(col[c]), where=edge)
    return _pil().fromarray(out)
