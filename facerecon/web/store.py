"""Jobs and their files in a temporary folder that expires.

Each job owns one sub-folder named by its id. Ids are ``secrets.token_urlsafe`` (unguessable, so a
link is the only way to a result) and are only ever looked up in the store's dict, never joined to a
path from user input. Finished jobs are deleted ``ttl_s`` seconds after they finish; queued and
running jobs are never expired.
"""
from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


class Status(str, Enum):
    queued = "queued"
    running = "running"
    done = "done"
    error = "error"


@dataclass
class JobError:
    status: int     # the HTTP status the same failure gets at upload time (400, 422, 500)
    message: str    # one line, no traceback


@dataclass
class Job:
    id: str
    folder: Path
    photos: list[str]                   # uploaded file names (display only; never used as paths)
    status: Status = Status.queued
    stage: str = "queued"
    created: float = field(default_factory=time.time)
    finished: float | None = None
    notes: list[str] = field(default_factory=list)
    error: JobError | None = None
    faces: list[dict] = field(default_factory=list)     # per face: summary and its file names by kind
    files: dict[str, Path] = field(default_factory=dict)  # the download whitelist: name -> path


class JobStore:
    """Thread-safe: the event loop creates and reads jobs while worker threads update them."""

    def __init__(self, ttl_s: float, root: Path | None = None):
        self.ttl_s = ttl_s
        self.root = Path(tempfile.mkdtemp(prefix="facerecon-web-", dir=root))
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def create(self, photos: list[str]) -> Job:
        job_id = secrets.token_urlsafe(16)
        folder = self.root / job_id
        folder.mkdir()
        job = Job(job_id, folder, photos)
        with self._lock:
            self._jobs[job_id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def update(self, job: Job, **changes: object) -> None:
        """Change a job's fields under the lock, so a reader never sees a half-finished result."""
        with self._lock:
            # The status goes last: readers do not take the lock, and "done" must never be seen
            # before the faces and files it promises.
            status = changes.pop("status", job.status)
            for name, value in changes.items():
                setattr(job, name, value)
            job.status = status
            if job.status in (Status.done, Status.error) and job.finished is None:
                job.finished = time.time()

    def discard(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def pending(self) -> int:
        with self._lock:
            return sum(j.status in (Status.queued, Status.running) for j in self._jobs.values())

    def queue_position(self, job: Job) -> int:
        """How many queued jobs were created before this one (0 = next to run)."""
        with self._lock:
            return sum(j.status is Status.queued and j.created < job.created for j in self._jobs.values())

    def expire(self, now: float | None = None) -> int:
        """Delete the jobs that finished more than ``ttl_s`` ago; returns how many."""
        now = time.time() if now is None else now
        with self._lock:
            old = [j for j in self._jobs.values() if j.finished is not None and now - j.finished > self.ttl_s]
            for job in old:
                del self._jobs[job.id]
        for job in old:
            shutil.rmtree(job.folder, ignore_errors=True)
        return len(old)

    def close(self) -> None:
        with self._lock:
            self._jobs.clear()
        shutil.rmtree(self.root, ignore_errors=True)
