"""The worker pool: reconstruction jobs run on threads, each with its own Reconstructor.

A Reconstructor keeps per-call state (the fitter's), so every worker thread builds one on first use
and keeps it; the pool's queue is the executor's. The heavy work (ONNX Runtime, numba, numpy) releases
the GIL, so threads keep the event loop responsive without a process pool's start-up and copies.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from ..errors import FitError, InputImageError, NoFaceError, ScanInputError
from ..export import atomic_path, write_image
from ..multiview import reconstruct_same_person
from ..options import ReconstructOptions
from ..outputs import write_photo
from ..pipeline import Reconstructor, draw_overlay
from .store import Job, JobError, JobStore, Status

log = logging.getLogger("facerecon.web")

_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None)

# What each face's downloads are called; the viewer reads the same keys.
FACE_FILES = {"glb": "face{k}.glb", "json": "face{k}.json", "texture": "face{k}.png", "obj": "face{k}_obj.zip"}
# The mesh files of a photo job; its overlay is a JPEG for the page (photo.jpg, overlay.jpg), not overlay.png.
WEB_FORMATS = ("obj", "glb")
# A video job's downloads (batch.video's outputs; no overlay video, to keep the job short).
VIDEO_FILES = ("head.glb", "frames.json", "frames.csv")
# A scan job's downloads by link name (facerecon.scan's outputs; the OBJ zipped with its MTL and PNG).
SCAN_FILES = {"scan_glb": "scan.glb", "scan_obj": "scan_obj.zip", "scan_json": "scan.json",
              "scan_turntable": "scan_turntable.gif"}


class ReconstructionPool:
    def __init__(self, store: JobStore, workers: int, texture_size: int, max_faces: int | None,
                 max_video_frames: int | None = None):
        self.store = store
        self.max_video_frames = max_video_frames
        self.options = ReconstructOptions(texture_size=texture_size, max_faces=max_faces, formats=WEB_FORMATS,
                                          overlay=False)
        self._local = threading.local()
        self._reconstructors: list[Reconstructor] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="facerecon-worker")

    def submit(self, job: Job, uploads: list[Path]) -> None:
        self._executor.submit(self._run, job, uploads)

    def submit_video(self, job: Job, upload: Path) -> None:
        self._executor.submit(self._run, job, [upload], video=True)

    def submit_scan(self, job: Job, uploads: list[Path]) -> None:
        self._executor.submit(self._run, job, uploads, scan=True)

    def close(self) -> None:
        """Drop queued jobs, wait for running ones, then free the models."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for run in self._reconstructors:
                run.close()
            self._reconstructors.clear()

    def _reconstructor(self, job: Job) -> Reconstructor:
        run = getattr(self._local, "run", None)
        if run is None:
            self.store.update(job, stage="loading models")
            run = self._local.run = Reconstructor.for_options(self.options)
            with self._lock:
                self._reconstructors.append(run)
        return run

    def _run(self, job: Job, uploads: list[Path], video: bool = False, scan: bool = False) -> None:
        store = self.store
        try:
            store.update(job, status=Status.running, stage="starting")
            if scan:    # no head models: the scan is geometry from the views alone
                summaries, files = self._scan(job, uploads)
                for upload in uploads:
                    upload.unlink(missing_ok=True)
                store.update(job, status=Status.done, stage="done", faces=summaries, files=files)
                return
            run = self._reconstructor(job)
            store.update(job, stage="reconstructing")
            # Every upload was decoded and checked on arrival (app._save_checked). The stages take
            # the files, not the pixels, so that each photo's EXIF focal length is read.
            if video:
                summaries, files = self._video(run, job, uploads[0])
            elif len(uploads) == 1:
                summaries, files = self._single_photo(run, job, uploads[0])
            else:
                summaries, files = self._same_person(run, job, uploads)
            for upload in uploads:
                upload.unlink(missing_ok=True)
            store.update(job, status=Status.done, stage="done", faces=summaries, files=files)
        except (NoFaceError, FitError, InputImageError, ScanInputError) as exc:
            # a readable photo but no head from it, or views that give no scan: 422
            status = 400 if isinstance(exc, InputImageError) else 422
            message = user_message(exc, uploads[0])
            if len(uploads) == 1:
                message = f"{job.photos[0]}: {message}"
            store.update(job, status=Status.error, stage="error", error=JobError(status, message))
        except Exception:  # a bug must fail this job only, and its traceback stays in the server log
            log.exception("job %s failed", job.id)
            store.update(job, status=Status.error, stage="error",
                         error=JobError(500, "internal error while reconstructing; see the server log"))
        finally:
            release_free_memory()

    def _single_photo(self, run: Reconstructor, job: Job, upload: Path) -> tuple[list[dict], dict[str, Path]]:
        """Every face in one photo."""
        # the user's file name in the JSON, not the server's temp path
        written = write_photo(run, upload, job.folder, self.options, source=job.photos[0])
        faces = written.faces
        image = faces[0].image
        self.store.update(job, stage="exporting")
        files: dict[str, Path] = {}
        summaries = []
        for face, paths in zip(faces, written.face_files):
            summaries.append(_face_files(job, face.index, paths, files))
            summaries[-1].update(_face_summary(face.detection, face.fit.angles))
        # JPEG: the browser must show them whatever the upload's format, and PNG is slow on big photos.
        files["photo.jpg"] = write_image(job.folder / "photo.jpg", image)
        files["overlay.jpg"] = write_image(job.folder / "overlay.jpg", draw_overlay(faces))
        return summaries, files

    def _video(self, run: Reconstructor, job: Job, upload: Path) -> tuple[list[dict], dict[str, Path]]:
        """The clip's main face tracked: its animated head and per-frame pose and weights (no faces
        list: the job's links name the files)."""
        from ..batch.video import track_video, write_outputs
        track = track_video(upload, run, max_frames=self.max_video_frames)
        self.store.update(job, stage="exporting")
        write_outputs(track, run, upload, job.folder, overlay=False, glb=True, label=job.photos[0])
        return [], {name: job.folder / name for name in VIDEO_FILES}

    def _scan(self, job: Job, uploads: list[Path]) -> tuple[list[dict], dict[str, Path]]:
        """The subject's textured mesh from a video or photos (no faces list: the job's links name the files)."""
        from ..scan import ScanSettings, prepare, reconstruct
        settings = ScanSettings(texture_size=self.options.texture_size)
        self.store.update(job, stage="structure from motion")
        views, cameras = prepare(uploads, settings, lambda line: job.notes.append(line)
                                 if line.startswith("the subject moves") else None)
        if views.source == "photos":
            views.names = list(job.photos)   # the user's file names in scan.json, not the server's
        result = reconstruct(views, cameras, settings, lambda stage, done, total: self.store.update(job, stage=stage))
        self.store.update(job, stage="exporting")
        folder = job.folder / "scan"
        paths = result.save(folder, settings, formats=WEB_FORMATS, overlays=False, turntable=True)
        _zip(job.folder / SCAN_FILES["scan_obj"], [paths["obj"], paths["mtl"], paths["png"]])
        located = {"scan.glb": paths["glb"], "scan.json": paths["json"], "scan_turntable.gif": paths["turntable_gif"],
                   "scan_obj.zip": job.folder / SCAN_FILES["scan_obj"]}
        return [], {name: located[name] for name in SCAN_FILES.values()}

    def _same_person(self, run: Reconstructor, job: Job, uploads: list[Path]) -> tuple[list[dict], dict[str, Path]]:
        """One head fitted to several photos of one person; the views left out are job notes."""
        result = reconstruct_same_person(run, uploads, names=job.photos)
        job.notes.extend(result.warnings)
        self.store.update(job, stage="exporting")
        files: dict[str, Path] = {}
        paths = result.save(job.folder, stem="face0", formats=("obj", "glb"), overlays=False)
        summary = _face_files(job, 0, paths, files)
        reference = result.views[result.reference]
        summary.update(_face_summary(reference.detection, reference.fit.angles))
        used = result.used
        files["photo.jpg"] = write_image(job.folder / "photo.jpg", _side_by_side([v.image for v in used]))
        files["overlay.jpg"] = write_image(job.folder / "overlay.jpg", _side_by_side([result.overlay(v) for v in used]))
        return [summary], files


def _face_files(job: Job, k: int, paths: dict[str, Path], files: dict[str, Path]) -> dict:
    """Zip face ``k``'s OBJ, MTL and PNG, register its downloads in ``files``; its summary's files."""
    _zip(job.folder / FACE_FILES["obj"].format(k=k), [paths["obj"], paths["mtl"], paths["png"]])
    names = {kind: pattern.format(k=k) for kind, pattern in FACE_FILES.items()}
    files.update({name: job.folder / name for name in names.values()})
    return {"index": k, "files": names}


def _face_summary(detection, angles: tuple[float, float, float]) -> dict:
    yaw, pitch, roll = angles
    return {"score": round(float(detection.score), 4), "box": [round(float(v), 1) for v in detection.box],
            "pose_deg": {"yaw": round(yaw, 1), "pitch": round(pitch, 1), "roll": round(roll, 1)}}


def _side_by_side(images: list[np.ndarray], height: int = 720) -> np.ndarray:
    """The photos in a row at one height (at most ``height`` px), for the page's photo and overlay."""
    height = min(height, min(im.shape[0] for im in images))
    rows = [cv2.resize(im, (max(1, round(im.shape[1] * height / im.shape[0])), height),
                       interpolation=cv2.INTER_AREA) for im in images]
    return np.concatenate(rows, axis=1)


def _zip(archive: Path, members: list[Path]) -> None:
    with atomic_path(archive) as temporary, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as z:
        for member in members:
            z.write(member, member.name)


def release_free_memory() -> None:
    """Hand the heap's free pages back to the system after a big photo. glibc keeps them in each
    thread's arena otherwise: after twelve 79 MP uploads and jobs the server stayed at 1.24 GB, not 0.39."""
    trim = getattr(_LIBC, "malloc_trim", None)     # glibc only; elsewhere nothing to do
    if trim is not None:
        trim(0)


def user_message(exc: Exception, upload: Path) -> str:
    """The error's message without the server's temp path (messages start with the file name)."""
    text = " ".join(str(exc).split())
    for prefix in (f"{upload}: ", "image: "):
        text = text.removeprefix(prefix)
    return text
