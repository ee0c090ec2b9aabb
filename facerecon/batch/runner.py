"""``facerecon batch``: every photo in a folder tree, outputs mirrored by relative path.

The parent process finds the photos, hands them to an engine (a local process pool here, Ray in
:mod:`facerecon.batch.ray_engine`) and is the manifest's only writer; the workers each hold one
:class:`~facerecon.pipeline.Reconstructor` (models loaded once per worker) and write a photo's
files themselves (``outputs.write_photo``, as ``facerecon reconstruct`` does), so only a small
record travels back.
"""
from __future__ import annotations

import multiprocessing
import os
import resource
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import FaceReconError, NoFaceError
from ..load import PHOTO_SUFFIXES
from ..options import ReconstructOptions
from .manifest import MANIFEST_NAME, ManifestWriter, Record, done_inputs, drop_records

Engine = Literal["local", "ray"]


class BatchError(FaceReconError):
    """The batch as a whole cannot run (bad folders, a manifest in the way, no Ray)."""


@dataclass(frozen=True)
class Job:
    source: Path    # absolute path of the photo
    input: str      # relative to the input folder, "/"-separated: the manifest key
    output: str     # the photo's output folder, relative to the output folder


def find_jobs(input_dir: Path, out_dir: Path | None = None) -> list[Job]:
    """Every photo under ``input_dir`` (by suffix; hidden files and folders skipped), sorted.

    Output folders mirror the relative path: ``a/b/photo.jpg`` -> ``a/b/photo``. Where two photos
    in one folder share a stem, all of them get the suffix too (``photo_jpg``, ``photo_png``), so a
    photo's folder never depends on which others exist. ``out_dir`` inside ``input_dir`` is skipped,
    or a second run would take the last run's textures for photos.
    """
    input_dir = input_dir.resolve()
    skip = out_dir.resolve() if out_dir is not None else None
    photos = []
    for root, dirs, files in os.walk(input_dir):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and root_path / d != skip)
        photos += [root_path / f for f in sorted(files)
                   if not f.startswith(".") and Path(f).suffix.lower() in PHOTO_SUFFIXES]
    stems: dict[tuple[Path, str], int] = {}
    for photo in photos:
        stems[photo.parent, photo.stem] = stems.get((photo.parent, photo.stem), 0) + 1
    jobs = []
    for photo in photos:
        rel = photo.relative_to(input_dir)
        name = photo.stem if stems[photo.parent, photo.stem] == 1 else f"{photo.stem}_{photo.suffix[1:].lower()}"
        jobs.append(Job(photo, rel.as_posix(), (rel.parent / name).as_posix()))
    return jobs


class PhotoWorker:
    """One worker's models; :meth:`process` turns a job into its files and a manifest record."""

    def __init__(self, options: ReconstructOptions, threads: int = 1):
        # Workers x threads must not oversubscribe the cores: each worker gets its share.
        import cv2
        import numba
        cv2.setNumThreads(threads)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        from ..pipeline import Reconstructor
        self.options = options
        self.run = Reconstructor.for_options(options)

    def process(self, job: Job, out_dir: str) -> Record:
        """Never raises for a bad photo: the failure goes into the record."""
        from ..outputs import write_photo
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        faces, status, error = 0, "ok", None
        try:
            found = write_photo(self.run, job.source, Path(out_dir) / job.output, self.options).faces
            for face in found:
                for stage, ms in face.timings_ms.items():
                    timings[stage] = timings.get(stage, 0.0) + ms
            faces = len(found)
        except NoFaceError as exc:
            status, error = "no_face", str(exc)
        except FaceReconError as exc:
            status, error = "error", str(exc)
        except Exception as exc:  # one bad photo must not stop the run
            status, error = "error", f"{job.input}: {type(exc).__name__}: {exc}"
        timings["total"] = (time.perf_counter() - t0) * 1000
        return Record(input=job.input, status=status, faces=faces, output=job.output,
                      timings_ms={k: round(v, 2) for k, v in timings.items()}, error=error,
                      worker={"pid": os.getpid(),
                              "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024})


# -- the local engine: a process pool, one PhotoWorker per process --------------------------------
_worker: PhotoWorker | None = None


def _exit_with_parent(parent: int) -> None:
    """A pool worker whose parent was killed (kill -9 skips every clean-up) would otherwise go on
    with its queue; it leaves as soon as it is re-parented."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _init_worker(options: ReconstructOptions, threads: int, parent: int) -> None:
    global _worker
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    _worker = PhotoWorker(options, threads)


def _process(job: Job, out_dir: str) -> Record:
    assert _worker is not None, "the pool initializer did not run"
    return _worker.process(job, out_dir)


# Thread pools that read their size from the environment when they load (BLAS, OpenMP, numba):
# set for the spawned workers, so that N workers on N cores run one thread each instead of N.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


@contextmanager
def worker_threads(threads: int) -> Iterator[None]:
    """Processes started inside see ``threads`` in :data:`THREAD_VARIABLES` (restored after)."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_local(jobs: Iterable[Job], out_dir: Path, options: ReconstructOptions, workers: int) -> Iterator[Record]:
    """Records in the order the photos finish. At most two photos per worker are queued at a time,
    so a killed run has little queued work to lose and results stream back at once."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn, not fork: the parent runs threads (the progress bar), and forking those is unsafe.
    context = multiprocessing.get_context("spawn")
    pending = iter(jobs)
    with worker_threads(threads), ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                                      initargs=(options, threads, os.getpid())) as pool:
        inflight: set[Future[Record]] = set()
        while True:
            while len(inflight) < 2 * workers and (job := next(pending, None)) is not None:
                inflight.add(pool.submit(_process, job, str(out_dir)))
            if not inflight:
                return
            done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()


@dataclass
class BatchSummary:
    found: int = 0                  # photos in the folder tree
    skipped: int = 0                # already done (--resume)
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "no_face": 0, "error": 0})
    faces: int = 0
    seconds: float = 0.0
    failures: list[Record] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.counts["no_face"] + self.counts["error"]


def run_batch(input_dir: Path, out_dir: Path, options: ReconstructOptions = ReconstructOptions(), workers: int = 1,
              engine: Engine = "local", address: str | None = None, resume: bool = False,
              on_start: Callable[[int], None] | None = None,
              on_record: Callable[[Record], None] | None = None) -> BatchSummary:
    """Reconstruct every photo under ``input_dir`` into ``out_dir``; the manifest is
    ``out_dir/manifest.jsonl``. ``on_start(n)`` is told how many photos will run, ``on_record``
    gets each record once it is on disk."""
    if not input_dir.is_dir():
        raise BatchError(f"{input_dir} is not a folder")
    if workers < 1:
        raise BatchError("--workers must be at least 1")
    out_dir = out_dir.resolve()
    manifest = out_dir / MANIFEST_NAME
    if manifest.exists() and not resume:
        raise BatchError(f"{manifest} exists: pass --resume to go on with that run, or choose another folder")
    jobs = find_jobs(input_dir, out_dir)
    done = done_inputs(manifest) if resume else set()
    todo = [job for job in jobs if job.input not in done]
    if resume:  # the failed photos run again: their old records go, so each photo keeps one
        drop_records(manifest, {job.input for job in todo})
    summary = BatchSummary(found=len(jobs), skipped=len(jobs) - len(todo))
    if on_start is not None:
        on_start(len(todo))
    t0 = time.perf_counter()
    if engine == "ray":
        from .ray_engine import run_ray
        records = run_ray(todo, out_dir, options, workers, address)
    else:
        records = run_local(todo, out_dir, options, workers)
    with ManifestWriter(manifest) as writer:
        for record in records:
            writer.append(record)
            summary.counts[record["status"]] += 1
            summary.faces += record["faces"]
            if record["status"] != "ok":
                summary.failures.append(record)
            if on_record is not None:
                on_record(record)
    summary.seconds = time.perf_counter() - t0
    return summary
