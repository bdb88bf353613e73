"""Decode one image file into pixels as the model sees them before preprocessing.

Pillow only, with the formats the suffixes promise (no sniffing of EPS and the like),
decompression bombs refused, EXIF orientation applied, transparency laid on white, high bit
depths scaled, and the resize of ``reportgen.resize``. Every failure becomes one short reason
(``reason``) that the scan and the batches list with the skipped files.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError, features

from reportgen.errors import UserError
from reportgen.resize import RESIZE_METHODS, resize_pixels

# Formats Pillow always reads, and those that need the optional extra reportgen[photos].
BASE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
PHOTO_SUFFIXES = {".heic": "HEIF", ".heif": "HEIF", ".avif": "AVIF"}
IMAGE_SUFFIXES = BASE_SUFFIXES | frozenset(PHOTO_SUFFIXES)
# Below Pillow's own bomb limit (~89 million pixels) so that our check, which
# knows the size, answers first; 40 million RGB pixels already decode to 120 MB.
MAX_IMAGE_PIXELS = 40_000_000

# Only the decoders the suffixes promise: Pillow would otherwise also sniff
# formats such as EPS, whose decoder runs Ghostscript. HEIF and AVIF join when
# their decoders are present (``pillow_formats``).
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
PHOTOS_EXTRA = "pip install 'reportgen[photos]'"
# JPEG decodes at 1/2, 1/4 or 1/8 scale for free (draft mode); we ask for at least this
# many times the model's input size so the final bilinear resize still has the detail.
DRAFT_FACTOR = 2
# Full-scale value of each high-bit-depth mode; Pillow's own convert("L")
# clips these at 255, which would turn a 16-bit mid-grey white.
HIGH_DEPTH_FULL_SCALE = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535,
                         "I": 65535, "F": 1.0}
GREYSCALE_MODES = frozenset({"1", "L", "LA", "La"})
ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as Pillow's "L"


@dataclass(frozen=True)
class InputSpec:
    """What the model takes: one image is (height, width, channels), reached by ``resize``."""

    height: int
    width: int
    channels: int  # 1 (grayscale) or 3 (RGB)
    resize: str = "stretch"

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1 or self.channels not in (1, 3):
            raise ValueError(f"Unusable {self}: needs a positive size and 1 or 3 channels.")
        if self.resize not in RESIZE_METHODS:
            raise ValueError(f"Unknown resize method {self.resize!r}: one of {RESIZE_METHODS}.")

    @property
    def color_mode(self) -> str:
        return "grayscale" if self.channels == 1 else "rgb"


class _Unusable(Exception):
    """An image we refuse on purpose; the message is the reason."""


def check_image(path: Path, *, decode: bool = True) -> str | None:
    """None if path looks readable, else why not (one short sentence).

    decode=False reads the header and lets the format verify its structure (PNG
    checks every chunk's CRC) without decoding pixels; damage only a decode finds
    (a cut-off JPEG) then surfaces when the image's batch is read. decode=True
    decodes every pixel too: None means load_image will read path.
    """
    try:
        with _open_image(path) as image:
            image.verify()  # catches damage a lenient decoder lets through (missing PNG end)
        if decode:
            _decode(path)
    # Pillow's decoders raise many exception types on hostile bytes
    # (ValueError, struct.error, IndexError, ...); every one means "unusable".
    except Exception as error:
        return reason(error)
    return None


def load_image(path: Path, spec: InputSpec) -> np.ndarray:
    """The image as the model sees it before preprocessing: (h, w, c) float32 pixels in [0, 255].

    Pixels stay 0-255 (what Keras' image_dataset_from_directory yields); scaling them
    to the model's input range is the input contract's job (``reportgen.inputs``).
    A JPEG at least 2 x DRAFT_FACTOR times the model's size is decoded at 1/2, 1/4 or
    1/8 scale (never below DRAFT_FACTOR times the model's size) before the resize:
    The guide (docs/your-data.md, *Big photos*) states how close that stays to a full decode.
    """
    try:
        return read_image(path, spec)
    except Exception as error:  # as in check_image
        raise UserError(f"Cannot read image {path}: {reason(error)}.") from error


def read_image(path: Path, spec: InputSpec, out: np.ndarray | None = None) -> np.ndarray:
    """load_image, raising whatever the decoder raises (callers that skip bad files catch it).

    With ``out``, a float32 (height, width, channels) array such as a row of a batch, the
    pixels are written there and ``out`` is returned, so they need no copy into the batch.
    """
    side = DRAFT_FACTOR * max(spec.height, spec.width)
    image = _decode(path, draft_size=(side, side))
    if spec.channels == 1 and image.mode == "RGB":
        # Pillow's own 8-bit grey, as keras.utils.load_img(color_mode="grayscale") gives.
        image = image.convert("L")
    values = np.asarray(image)
    if values.ndim == 2:
        values = values[..., np.newaxis]
    colours = values.shape[-1] - (image.mode in ALPHA_MODES)  # _to_pixels drops the alpha
    pixels = _match_channels(
        resize_pixels(values, spec.height, spec.width, spec.resize,
                      to_float=lambda v: _to_pixels(v, image.mode),
                      out=out if colours == spec.channels else None),
        spec.channels)
    if out is None or pixels is out:
        return pixels
    out[...] = pixels
    return out


@functools.cache
def pillow_formats() -> tuple[str, ...]:
    """PILLOW_FORMATS plus HEIF (the pillow-heif plugin) and AVIF where they can be read."""
    formats = list(PILLOW_FORMATS)
    try:
        import pillow_heif
    except ImportError:
        pass
    else:
        pillow_heif.register_heif_opener()
        formats.append("HEIF")
    # Pillow >= 11.2 built with libavif; older Pillow does not know the name (and warns).
    if "avif" in features.modules and features.check_module("avif"):
        formats.append("AVIF")
    return tuple(formats)


def missing_decoder(suffix: str) -> str | None:
    """Why a file with this suffix cannot be read here, or None if it can."""
    needed = PHOTO_SUFFIXES.get(suffix.lower())
    if needed is None or needed in pillow_formats():
        return None
    return f"{needed} image needs the optional extra reportgen[photos] ({PHOTOS_EXTRA})"


@contextmanager
def _open_image(path: Path) -> Iterator[ImageFile.ImageFile]:
    """Open path with decompression bombs refused and Pillow's other warnings muted."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise _Unusable("empty file")
    if (missing := missing_decoder(path.suffix)) is not None:
        raise _Unusable(missing)
    with warnings.catch_warnings():
        # Pillow warns about cosmetic damage (corrupt EXIF and the like) that
        # does not stop decoding; whether an image is usable is decided here.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path, formats=pillow_formats()) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise _Unusable(f"image too large ({width}x{height} pixels)")
            yield image


def _decode(path: Path, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Every pixel decoded and upright, as L, LA, RGB, RGBA or (high bit depth) F in [0, 1].

    draft_size: a JPEG is decoded at the smallest of 1/1, 1/2, 1/4, 1/8 scale that is
    still at least this big (libjpeg scales inside its inverse DCT, so the skipped
    work is never done). The mode is left alone: a grey model still gets Pillow's
    convert("L") of the RGB pixels, as for any other image.
    """
    with _open_image(path) as image:
        if draft_size is not None and image.format == "JPEG":
            image.draft(None, draft_size)
        upright = ImageOps.exif_transpose(image)  # decodes too (the first frame of an animation)
        if upright.mode in HIGH_DEPTH_FULL_SCALE:
            return _high_depth_to_unit(upright)
        greyscale = upright.mode in GREYSCALE_MODES
        if upright.mode in ALPHA_MODES or "transparency" in upright.info:
            mode = "LA" if greyscale else "RGBA"
        else:
            mode = "L" if greyscale else "RGB"
        # exif_transpose already made a copy: converting to the same mode would copy again
        # (benchmarks/results.md, *Measured by hand*).
        return upright if upright.mode == mode else upright.convert(mode)


def _high_depth_to_unit(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.float32)
    unit = np.clip(np.nan_to_num(values / HIGH_DEPTH_FULL_SCALE[image.mode]), 0.0, 1.0)
    transparent_value = image.info.get("transparency")
    if isinstance(transparent_value, int):
        unit[values == transparent_value] = 1.0  # white, as for 8-bit images
    return Image.fromarray(unit)


def _to_pixels(values: np.ndarray, mode: str) -> np.ndarray:
    """Decoded values (.., 1-4) -> float32 pixels in [0, 255], transparency laid on white."""
    if mode == "F":  # high bit depth, already scaled to [0, 1] by _high_depth_to_unit
        return values.astype(np.float32) * np.float32(255)
    pixels = values.astype(np.float32)
    if mode in ("L", "RGB"):
        return pixels
    colour, alpha = pixels[..., :-1], pixels[..., -1:] / np.float32(255)
    # On white, so that dark strokes on a transparent background stay visible.
    return colour * alpha + np.float32(255) * (1.0 - alpha)


def _match_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    if pixels.shape[-1] == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=-1)
    return (pixels @ LUMINANCE_WEIGHTS)[..., np.newaxis]


def reason(error: Exception) -> str:
    """One short sentence for a user, from whatever Pillow or the OS raised."""
    message = str(error).strip()
    if isinstance(error, _Unusable):
        return message
    if isinstance(error, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return "image too large (Pillow refuses it as a possible decompression bomb)"
    if isinstance(error, UnidentifiedImageError):
        return f"not a {', '.join(pillow_formats())} image Pillow can read"
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, EOFError) or "truncated" in message.lower():
        return "truncated image data"
    detail = message.splitlines()[0][:80] if message else type(error).__name__
    return f"damaged image data ({printable(detail)})"


def printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
