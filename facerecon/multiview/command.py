"""``facerecon reconstruct --same-person``: photos or folders in, one head's files out."""
from __future__ import annotations

from pathlib import Path

from ..errors import FaceReconError
from ..load import PHOTO_SUFFIXES
from ..pipeline import Reconstructor
from .reconstruct import reconstruct_same_person


def expand_photos(paths: list[Path]) -> list[Path]:
    """Photos given as files or folders (a folder: its images, sorted by name)."""
    out = []
    for path in map(Path, paths):
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        else:
            out.append(path)
    return out


def same_person_command(photos: list[Path], out_dir: Path, formats: tuple[str, ...], texture_size: int,
                        overlays: bool, turntable: bool, warn, fov_deg: float | None = None,
                        units: str = "m", morph_targets: bool = True) -> int:
    """``facerecon reconstruct --same-person``: one head into ``out_dir``; each warning goes to
    ``warn`` as one line. Returns the exit code (0 written, 1 no usable face)."""
    photos = expand_photos(photos)
    if not photos:
        warn("error: --same-person found no photos (folders are searched for image files, not recursively)")
        return 1
    if len(photos) < 2:
        warn(f"warning: --same-person got {len(photos)} photo(s); a single-view head follows")
    with Reconstructor(texture_size=texture_size, fov_deg=fov_deg) as run:
        try:
            result = reconstruct_same_person(run, photos)
        except FaceReconError as exc:
            warn(f"error: {exc}")
            return 1
        for line in result.warnings:
            warn(f"warning: {line}")
        result.save(out_dir, formats=formats, overlays=overlays, turntable=turntable, units=units,
                    morph_targets=morph_targets)
    used = result.used
    poses = ", ".join(f"{Path(v.source).name} yaw {v.fit.angles[0]:+.0f}" for v in used)
    print(f"facerecon: one head from {len(used)}/{len(photos)} photos ({poses}) in {out_dir}; "
          f"texture covers {100 * result.texture_coverage:.0f}% of the atlas")
    return 0
