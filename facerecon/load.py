"""Loading photos robustly into (H, W, 3) uint8 RGB arrays.

Formats: anything Pillow decodes (JPEG, PNG, WebP, BMP, TIFF, GIF, PPM, ...); the first frame of a
multi-frame file. The EXIF Orientation tag is applied, so the array is upright as a viewer shows it.

Pixel normalisation (the same rules for files and for in-memory arrays, see :func:`as_rgb8`):

* grayscale is repeated into three channels; palette images are expanded to RGB(A);
* alpha is composited over WHITE (what a viewer shows; dropping alpha would expose whatever
  colour the transparent pixels happen to hold, often black);
* uint16 samples are divided by 257 (full range 0..65535 -> 0..255);
* other integer samples (int8..int64, uint32, uint64) inside 0..255 are 8-bit as they are (an
  ``np.array(..., dtype=int)`` of an ordinary photo); inside 0..65535 they are taken as 16-bit;
  outside that range they are stretched min..max -> 0..255. A file in Pillow's 32-bit ``I`` mode
  usually holds a promoted 16-bit image, so there values inside 0..65535 are always 16-bit;
* floats inside [0, 1] are multiplied by 255; any other float range is stretched min..max -> 0..255;
  NaN becomes 0.

Limits:

* ``MAX_PIXELS`` (80 megapixels): checked from the file header BEFORE decoding, so a
  decompression bomb costs nothing.
* ``MIN_SIDE`` (32 px): a smaller image cannot hold a face worth reconstructing.

Every failure is an :class:`~facerecon.errors.InputImageError` with a one-line message naming the file.

:func:`exif_focal_35mm` reads the camera's 35 mm-equivalent focal length, where the photo states it.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, TiffImagePlugin, UnidentifiedImageError

from .errors import InputImageError

# The file names taken as photos where a folder is searched for them (batch, --same-person, evaluation).
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
MAX_PIXELS = 80_000_000
MIN_SIDE = 32

# A truncated file must fail loudly rather than load with a grey lower half (this is Pillow's default;
# it is set here so the guarantee does not depend on it).
ImageFile.LOAD_TRUNCATED_IMAGES = False


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as an upright (H, W, 3) uint8 RGB array; raise InputImageError if unusable."""
    path = Path(path)
    if not path.exists():
        raise InputImageError(f"{path}: no such file")
    if path.is_dir():
        raise InputImageError(f"{path}: is a directory, not an image file")
    if path.stat().st_size == 0:
        raise InputImageError(f"{path}: file is empty (0 bytes)")
    array = _read(path)
    if min(array.shape[:2]) < MIN_SIDE:
        h, w = array.shape[:2]
        raise InputImageError(f"{path}: image is {w}x{h} px, smaller than {MIN_SIDE} px on a side")
    return array


# 35 mm-equivalent focal lengths outside this range (mm) are taken as a broken EXIF block.
FOCAL_35MM_RANGE = (8.0, 1200.0)
_EXIF_IFD, _FOCAL_35MM_TAG = 0x8769, 0xA405


def exif_focal_35mm(path: str | Path) -> float | None:
    """The photo's EXIF FocalLengthIn35mmFilm (mm; phones and most cameras write it), or None when
    the file has none or an implausible one. Reads the header only. A photo cropped after it was
    taken keeps the tag but not the field of view it describes."""
    try:
        with Image.open(path) as img:
            value = img.getexif().get_ifd(_EXIF_IFD).get(_FOCAL_35MM_TAG)
        focal = float(value)
    except Exception:  # noqa: BLE001  (metadata only: any failure means "not stated")
        return None
    return focal if FOCAL_35MM_RANGE[0] <= focal <= FOCAL_35MM_RANGE[1] else None


def as_rgb8(array: np.ndarray) -> np.ndarray:
    """Normalise an in-memory image to (H, W, 3) uint8 RGB (rules in the module docstring).

    Accepts (H, W) gray, (H, W, 1), (H, W, 2) gray+alpha, (H, W, 3) RGB and (H, W, 4) RGBA arrays of
    bool, unsigned/signed integer or float dtype. Channels are taken as RGB order (not OpenCV's BGR).
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise InputImageError(f"image array has shape {a.shape}; expected (H, W), (H, W, 1|2|3|4)")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise InputImageError(f"image array has shape {a.shape}; it is empty")
    a = _to_uint8(a)
    colour, alpha = (a[:, :, :-1], a[:, :, -1:]) if a.shape[2] in (2, 4) else (a, None)
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    if alpha is not None:
        weight = alpha.astype(np.float32) / 255.0
        colour = colour.astype(np.float32) * weight + 255.0 * (1.0 - weight)
        colour = np.clip(colour + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(colour)


def _check_size(path: Path, size: tuple[int, int]) -> None:
    w, h = size
    if w * h > MAX_PIXELS:
        raise InputImageError(
            f"{path}: image is {w}x{h} px ({w * h / 1e6:.0f} MP), over the {MAX_PIXELS / 1e6:.0f} MP limit"
        )


def _read(path: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its own limit and twice that; treat the warning as the error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_size(path, img.size)
                return _decode(path, img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputImageError(f"{path}: image is over the {MAX_PIXELS / 1e6:.0f} MP limit") from exc
    except UnidentifiedImageError:
        return _read_tiff_with_opencv(path)
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports truncated/corrupt data as OSError ("image file is truncated"), some plugins
        # as SyntaxError ("broken PNG file") or ValueError.
        raise InputImageError(f"{path}: corrupt or truncated image ({_one_line(exc)})") from exc


def _decode(path: Path, img: Image.Image) -> np.ndarray:
    img.seek(0)
    img.load()  # full decode here, so truncation surfaces now and not half-way through a later step
    try:
        # In place: otherwise Pillow returns a full copy even when there is nothing to turn.
        ImageOps.exif_transpose(img, in_place=True)
    except Exception:  # noqa: BLE001
        pass  # orientation is metadata: a malformed EXIF block must not reject the photo
    if img.mode == "I":  # usually a promoted 16-bit image: its values are 16-bit, however small
        array = np.asarray(img)
        return as_rgb8(array.astype(np.uint16) if array.min() >= 0 and array.max() <= 65535 else array)
    if img.mode in ("1", "L", "RGB", "LA", "RGBA", "F"):
        return as_rgb8(np.asarray(img))
    if img.mode.startswith("I;16"):
        # np.asarray understands I;16 / I;16B / I;16L; astype makes the byte order native.
        return as_rgb8(np.asarray(img).astype(np.uint16))
    # Palette, CMYK, YCbCr, premultiplied alpha, ...: let Pillow convert, keeping alpha for compositing.
    has_alpha = "A" in img.mode or "a" in img.mode or "transparency" in img.info
    try:
        converted = img.convert("RGBA" if has_alpha else "RGB")
    except ValueError as exc:
        raise InputImageError(f"{path}: unsupported colour mode {img.mode!r}") from exc
    return as_rgb8(np.asarray(converted))


def _read_tiff_with_opencv(path: Path) -> np.ndarray:
    """Pillow cannot open some TIFFs (e.g. float RGB) that OpenCV can; anything else is not an image."""
    not_image = InputImageError(f"{path}: not an image file (or a format Pillow cannot read)")
    try:
        with open(path, "rb") as f:
            ifd = TiffImagePlugin.ImageFileDirectory_v2(f.read(8))
            f.seek(ifd.next)
            ifd.load(f)
        size = (int(ifd[256]), int(ifd[257]))  # ImageWidth, ImageLength: read before any decoding
    except (SyntaxError, OSError, KeyError, ValueError, TypeError) as exc:
        raise not_image from exc
    _check_size(path, size)
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise not_image
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[:, :, [2, 1, 0, 3][: array.shape[2]]]  # OpenCV's BGR(A) -> RGB(A)
    return as_rgb8(array)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi <= 255:
            return a.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            return _to_uint8(a.astype(np.uint16))
        return _stretch(a.astype(np.float64))
    if np.issubdtype(a.dtype, np.floating):
        f = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if f.min() >= 0.0 and f.max() <= 1.0:
            return np.round(f * 255.0).astype(np.uint8)
        return _stretch(f)
    raise InputImageError(f"image array has unsupported dtype {a.dtype}")


def _stretch(f: np.ndarray) -> np.ndarray:
    lo, hi = float(f.min()), float(f.max())
    if hi <= lo:
        return np.zeros(f.shape, np.uint8)
    return np.round((f - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
