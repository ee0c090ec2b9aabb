"""The scan's input: photos, a folder of them, or a video whose keyframes are chosen by sharpness.

Every view is resized so that its longer side is at most ``max_side`` pixels (the dense stage's
cost grows with the pixel count); a known camera file next to the photos is read by
``facerecon.scan.cameras`` and rescaled with them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputImageError, ScanInputError
from ..load import load_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
MIN_VIEWS = 3
# A video gives at most this many keyframes, one per equal stretch of the clip: the sharpest frame
# there (variance of the Laplacian). Below this sharpness (of a 640 px frame) the clip is too blurry.
VIDEO_KEYFRAMES = 40
MIN_SHARPNESS = 15.0


@dataclass
class Views:
    """The images of one scan, in input order."""

    images: list[np.ndarray]         # each (H, W, 3) uint8 RGB, longer side <= max_side
    names: list[str]                 # file names (or "frame_000123" for video keyframes)
    scales: list[float]              # resized size / original size, per image
    source: str                      # "photos" or "video"
    folder: Path | None = None       # the input folder, where one was given (known cameras live there)

    def __len__(self) -> int:
        return len(self.images)


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image, measured at 640 px on the longer side."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    grey = _resized(grey, 640)[0]
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def _resized(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return image, 1.0
    size = (round(w * scale), round(h * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), size[0] / w


def image_files(folder: Path) -> list[Path]:
    """The images directly inside ``folder``, or inside its ``images/`` sub-folder, sorted by name."""
    for place in (folder, folder / "images"):
        files = sorted(p for p in place.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if files:
            return files
    return []


def load_views(inputs: list[Path], max_side: int, files: list[Path] | None = None) -> Views:
    """Read the inputs: one video, one folder, or photos. ``files`` (from a known-camera file) picks
    the folder's images by name instead of listing them."""
    inputs = [Path(p) for p in inputs]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise ScanInputError(f"{missing[0]}: no such file or folder")
    if len(inputs) == 1 and inputs[0].suffix.lower() in VIDEO_SUFFIXES:
        return video_keyframes(inputs[0], max_side)
    folder = inputs[0] if len(inputs) == 1 and inputs[0].is_dir() else None
    if folder is not None:
        paths = files if files is not None else image_files(folder)
    elif any(p.is_dir() for p in inputs):
        raise ScanInputError("give one folder, one video, or photos, not a mixture")
    else:
        paths = inputs
    if len(paths) < MIN_VIEWS:
        raise ScanInputError(f"{len(paths)} image(s) given: a scan needs at least {MIN_VIEWS} views of the "
                             "subject from different sides (one photo cannot give its 3D shape)")
    images, scales = [], []
    for path in paths:
        try:
            image = load_image(path)
        except InputImageError as exc:
            raise ScanInputError(str(exc)) from None
        image, scale = _resized(image, max_side)
        images.append(image)
        scales.append(scale)
    return Views(images, [p.name for p in paths], scales, "photos", folder)


def video_keyframes(path: Path, max_side: int, count: int = VIDEO_KEYFRAMES) -> Views:
    """The sharpest frame of each of ``count`` equal stretches of the clip."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ScanInputError(f"{path}: not a readable video")
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    frames: list[tuple[int, float, np.ndarray]] = []
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            small = _resized(frame, max_side)[0]
            frames.append((index, sharpness(small[..., ::-1]), small))
            index += 1
    finally:
        capture.release()
    if len(frames) < MIN_VIEWS:
        raise ScanInputError(f"{path}: {len(frames)} frame(s) could be read; a scan needs at least {MIN_VIEWS}")
    stretches = np.array_split(np.arange(len(frames)), min(count, len(frames)))
    chosen = [frames[max(s, key=lambda i: frames[i][1])] for s in stretches if len(s)]
    sharp = [c for c in chosen if c[1] >= MIN_SHARPNESS]
    if len(sharp) < MIN_VIEWS:
        raise ScanInputError(f"{path}: the video is too blurry ({len(sharp)} sharp keyframes of {len(chosen)}; "
                             f"sharpness median {np.median([c[1] for c in chosen]):.1f}, needs {MIN_SHARPNESS})")
    scale = frames[0][2].shape[1] / width if width else 1.0
    return Views([cv2.cvtColor(c[2], cv2.COLOR_BGR2RGB) for c in sharp], [f"frame_{c[0]:06d}" for c in sharp],
                 [scale] * len(sharp), "video", None)
