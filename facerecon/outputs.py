"""One photo -> its output set: the writer behind ``facerecon reconstruct``, ``batch`` and the web app.

Into one folder: per face ``face<k>.obj/.mtl/.png``, ``.glb``, ``.ply`` (as ``formats`` says) and
``face<k>.json``; ``face<k>_turntable.gif/.mp4`` with ``turntable``; ``overlay.png`` with
``overlay``. All of them or none (``export.atomic_folder``): a failure leaves nothing half-written.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .export import atomic_folder, write_image
from .options import ReconstructOptions
from .pipeline import FaceReconstruction, Reconstructor, draw_overlay


@dataclass
class PhotoOutput:
    faces: list[FaceReconstruction]
    face_files: list[dict[str, Path]]   # per face, its files by kind (obj, mtl, png, glb, ply, json, turntable_gif, ...)
    files: dict[str, Path]              # every file written, by name in the folder


def write_photo(run: Reconstructor, photo: str | Path | np.ndarray, folder: str | Path,
                options: ReconstructOptions, source: str | None = None) -> PhotoOutput:
    """Reconstruct every face of ``photo`` with ``run`` (made for ``options``:
    ``Reconstructor.for_options``) and write the output set into ``folder``. ``source``: the
    photo's name in the JSON, where it is not the path (an upload's name). Raises what the
    reconstruction raises (NoFaceError, FitError, ...) or an OSError, with nothing written."""
    faces = run(photo)
    if source is not None:
        for face in faces:
            face.source = source
    folder = Path(folder)
    with atomic_folder(folder) as target:
        face_files = []
        for face in faces:
            paths = face.save(target, formats=options.formats, units=options.units,
                              morph_targets=options.morph_targets)
            if options.turntable:
                paths.update(_turntable(face, target))
            face_files.append(paths)
        if options.overlay:
            write_image(target / "overlay.png", draw_overlay(faces))
    # the files are now in ``folder``, under the names they had in the temporary one
    face_files = [{kind: folder / path.name for kind, path in paths.items()} for paths in face_files]
    files = {path.name: path for paths in face_files for path in paths.values()}
    if options.overlay:
        files["overlay.png"] = folder / "overlay.png"
    return PhotoOutput(faces, face_files, files)


def _turntable(face: FaceReconstruction, folder: Path) -> dict[str, Path]:
    from .render.visualize import save_turntable, turntable_frames
    paths = {"turntable_gif": folder / f"face{face.index}_turntable.gif",
             "turntable_mp4": folder / f"face{face.index}_turntable.mp4"}
    save_turntable(turntable_frames(face.model, face.vertices, face.texture), paths["turntable_gif"],
                   paths["turntable_mp4"])
    return paths
