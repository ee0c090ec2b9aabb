"""load_image / as_rgb8: every bad-input class gives a one-line InputImageError; every format gives RGB8.
exif_focal_35mm and the camera a photo gets from it."""
from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facerecon import load
from facerecon.errors import InputImageError
from facerecon.load import MAX_PIXELS, MIN_SIDE, as_rgb8, load_image


@pytest.fixture(scope="module")
def photo_path(eval_dir: Path) -> Path:
    return eval_dir / "photos" / "prnet" / "trump.jpg"  # 750x375: not square, so rotations show


@pytest.fixture(scope="module")
def photo(photo_path: Path) -> np.ndarray:
    return load_image(photo_path)


def _error(path: Path) -> str:
    with pytest.raises(InputImageError) as info:
        load_image(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def _png_1bit_zeros(path: Path, width: int, height: int) -> None:
    """A valid, fully decodable black 1-bit PNG, tiny on disk whatever its dimensions."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_photo_loads_as_rgb8(photo):
    assert photo.shape == (375, 750, 3) and photo.dtype == np.uint8


def test_missing_file(tmp_path):
    assert "no such file" in _error(tmp_path / "nope.jpg")


def test_directory(tmp_path):
    assert "directory" in _error(tmp_path)


def test_zero_bytes(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert "empty" in _error(path)


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not a photo\n" * 50)
    assert "not an image" in _error(path)


def test_truncated_jpeg(tmp_path, photo_path):
    data = photo_path.read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in _error(path)


def test_corrupt_png(tmp_path, photo):
    path = tmp_path / "corrupt.png"
    Image.fromarray(photo).save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # zeroed block inside IDAT: bad CRC/zlib stream
    path.write_bytes(bytes(data))
    assert "corrupt" in _error(path)


@pytest.mark.parametrize("side", [9_000, 12_000, 20_000])  # ours, Pillow's warning, Pillow's error range
def test_huge_dimensions_refused_before_decoding(tmp_path, monkeypatch, side):
    path = tmp_path / f"bomb{side}.png"
    _png_1bit_zeros(path, side, side)
    assert path.stat().st_size < 1_000_000 and side * side > MAX_PIXELS

    def no_decoding(*args, **kwargs):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(load, "_decode", no_decoding)
    start = time.perf_counter()
    message = _error(path)
    assert "large" in message or "limit" in message
    assert time.perf_counter() - start < 0.5


def test_image_under_the_limit_decodes(tmp_path):
    path = tmp_path / "wide.png"
    _png_1bit_zeros(path, 2000, 40)
    image = load_image(path)
    assert image.shape == (40, 2000, 3) and image.max() == 0


def test_too_small(tmp_path, photo):
    path = tmp_path / "tiny.png"
    Image.fromarray(photo[:MIN_SIDE - 1, :100]).save(path)
    assert "smaller than" in _error(path)


@pytest.mark.parametrize(
    ("name", "convert", "tolerance"),
    [
        ("rgb.png", None, 0.0),
        ("rgb.tif", None, 0.0),
        ("rgb.bmp", None, 0.0),
        ("rgb.webp", None, 3.0),
        ("rgba.png", "RGBA", 0.0),
        ("palette.png", "P", 25.0),   # 216-colour web palette, dithered
        ("cmyk.jpg", "CMYK", 3.0),
    ],
)
def test_formats_give_the_same_pixels(tmp_path, photo, name, convert, tolerance):
    path = tmp_path / name
    image = Image.fromarray(photo)
    options = {"quality": 95} if name.endswith(("webp", "jpg")) else {}
    (image.convert(convert) if convert else image).save(path, **options)
    loaded = load_image(path)
    assert loaded.shape == photo.shape and loaded.dtype == np.uint8
    assert np.abs(loaded.astype(int) - photo).mean() <= tolerance


@pytest.mark.parametrize("name", ["gray.png", "gray16.png", "gray16.tif", "la.png"])
def test_grayscale_variants(tmp_path, photo, name):
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    path = tmp_path / name
    if "16" in name:
        cv2.imwrite(str(path), gray.astype(np.uint16) * 257)
    else:
        Image.fromarray(gray).convert("LA" if name.startswith("la") else "L").save(path)
    loaded = load_image(path)
    assert loaded.shape == photo.shape and loaded.dtype == np.uint8
    assert np.array_equal(loaded[:, :, 0], loaded[:, :, 2])
    assert np.abs(loaded[:, :, 0].astype(int) - gray).max() <= 1


@pytest.mark.parametrize("name", ["rgb16.png", "rgb16.tif", "rgba16.png"])
def test_16_bit_colour(tmp_path, photo, name):
    bgr = cv2.cvtColor(photo, cv2.COLOR_RGB2BGRA if "rgba" in name else cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(tmp_path / name), bgr.astype(np.uint16) * 257)
    loaded = load_image(tmp_path / name)
    assert loaded.shape == photo.shape and np.abs(loaded.astype(int) - photo).max() <= 1


def test_float_tiffs(tmp_path, photo):
    # Pillow opens a float gray TIFF but not a float RGB one (OpenCV's fallback reads that).
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    Image.fromarray(gray.astype(np.float32) / 255.0).save(tmp_path / "gray_f32.tif")
    assert np.abs(load_image(tmp_path / "gray_f32.tif")[:, :, 1].astype(int) - gray).max() <= 1
    bgr = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(tmp_path / "rgb_f.tif"), bgr.astype(np.float32) / 255.0)
    loaded = load_image(tmp_path / "rgb_f.tif")
    assert loaded.shape == photo.shape and np.abs(loaded.astype(int) - photo).mean() < 5


def test_transparent_pixels_become_white(tmp_path, photo):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:, :100, 3] = 0
    rgba[:, 100:200, 3] = 128
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    loaded = load_image(tmp_path / "alpha.png").astype(int)
    assert (loaded[:, :100] == 255).all()
    expected = (photo[:, 100:200].astype(float) * 128 + 255 * 127) / 255
    assert np.abs(loaded[:, 100:200] - expected).max() <= 1
    assert np.array_equal(loaded[:, 200:], photo[:, 200:])


@pytest.mark.parametrize(("orientation", "rot90_k"), [(6, 1), (8, -1), (3, 2)])
def test_exif_orientation_is_applied(tmp_path, photo, orientation, rot90_k):
    stored = np.ascontiguousarray(np.rot90(photo, rot90_k))  # what a camera held sideways writes
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"rotated{orientation}.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    loaded = load_image(path)
    assert loaded.shape == photo.shape
    assert np.abs(loaded.astype(int) - photo).mean() < 3


def test_as_rgb8_arrays():
    gray = np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20
    out = as_rgb8(gray)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert out[-1, -1, 0] == round(int(gray[-1, -1]) / 257)
    unit = np.linspace(0, 1, 48 * 64 * 3, dtype=np.float32).reshape(48, 64, 3)
    assert as_rgb8(unit).max() == 255 and as_rgb8(unit).min() == 0
    rgba = np.zeros((48, 64, 4), np.uint8)  # fully transparent black
    assert (as_rgb8(rgba) == 255).all()
    assert (as_rgb8(np.ones((48, 64), bool)) == 255).all()
    stretched = as_rgb8(np.array([[-1.0, 3.0]] * 2))
    assert stretched[0, 0, 0] == 0 and stretched[0, 1, 0] == 255


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 5), np.uint8), np.zeros((2, 3, 4, 5)), np.zeros((0, 4, 3))])
def test_as_rgb8_rejects_bad_shapes(bad):
    with pytest.raises(InputImageError):
        as_rgb8(bad)


def _jpeg_with_focal(path: Path, focal_35mm) -> Path:
    exif = Image.Exif()
    if focal_35mm is not None:
        exif.get_ifd(0x8769)[0xA405] = focal_35mm     # ExifIFD.FocalLengthIn35mmFilm
    Image.new("RGB", (64, 48), (120, 90, 70)).save(path, exif=exif)
    return path


def test_exif_focal_length_is_read_from_the_header_and_implausible_values_are_ignored(tmp_path):
    assert load.exif_focal_35mm(_jpeg_with_focal(tmp_path / "phone.jpg", 26)) == 26.0
    assert load.exif_focal_35mm(_jpeg_with_focal(tmp_path / "none.jpg", None)) is None
    assert load.exif_focal_35mm(_jpeg_with_focal(tmp_path / "zero.jpg", 0)) is None
    assert load.exif_focal_35mm(tmp_path / "missing.jpg") is None


def test_a_photos_camera_comes_from_the_given_fov_else_exif_else_the_default(run, tmp_path):
    from facerecon.camera import DEFAULT_FOV_DEG, Camera
    photo = _jpeg_with_focal(tmp_path / "phone.jpg", 50)
    image = load_image(photo)
    # 50 mm on 35 mm film (36 x 24) sees 2 atan(18 / 50) = 39.6 degrees across the longer side.
    full_frame = Camera.from_35mm_equivalent(3600, 2400, 50)
    assert full_frame.fov_deg == pytest.approx(39.60, abs=0.01)
    exif = run.camera_for(image, photo)
    assert exif.source == "exif" and exif.fov_deg == pytest.approx(
        np.degrees(2 * np.arctan(0.5 * 64 / (50 * np.hypot(64, 48) / 43.2666))), abs=1e-6)
    assumed = run.camera_for(image)                    # an array alone has no EXIF
    assert assumed.source == "assumed" and assumed.fov_deg == pytest.approx(DEFAULT_FOV_DEG)
    run.fov_deg = 15.0
    try:
        given = run.camera_for(image, photo)           # --fov wins over EXIF
        assert given.source == "given" and given.fov_deg == pytest.approx(15.0)
    finally:
        run.fov_deg = None


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64])
def test_integer_arrays_with_8_bit_values_are_8_bit(photo, dtype):
    # int16/32/64 photos were taken as 16-bit and came out black (then "no face found").
    values = photo // 2 if dtype == np.int8 else photo     # int8 holds 0..127 only
    assert np.array_equal(as_rgb8(values.astype(dtype)), values)


def test_integer_arrays_beyond_8_bits_stay_16_bit_and_uint16_is_always_16_bit(photo):
    wide = photo.astype(np.int32) * 257
    assert np.array_equal(as_rgb8(wide), photo)
    assert as_rgb8(photo.astype(np.uint16)).max() <= 1      # a declared 16-bit image: dark stays dark


def test_a_dark_16_bit_file_stays_dark(tmp_path, photo):
    # Pillow opens 16-bit files in its I;16 or 32-bit I mode: values under 256 there are still 16-bit.
    path = tmp_path / "dark16.png"
    cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.uint16))
    assert load_image(path).max() <= 1
