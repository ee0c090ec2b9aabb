"""A batch worker's start-up: CPU seconds of its imports, its models and its first photo's warm-up.

    python benchmarks/bench_worker_start.py [--photos 3]

Runs what one local batch worker runs (``batch.runner.PhotoWorker``, one thread) on the first
photos of <shared>/eval/photos/deep3d, full outputs. Start-up = imports + models + (first photo -
second photo): what each worker pays once, and what keeps ``batch --workers 2`` under twice one
worker over a whole run. CPU time (user + system), so a loaded machine skews it less than wall
time; start it in a fresh process each time (it measures the imports).
"""
from __future__ import annotations

import argparse
import os

os.environ.update({name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                          "NUMBA_NUM_THREADS")})   # as a worker of two on two cores

import resource  # noqa: E402
import tempfile  # noqa: E402


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=3)
    args = parser.parse_args()
    marks = [cpu_s()]
    from facerecon.assets import shared_dir
    from facerecon.batch.runner import Job, PhotoWorker
    from facerecon.options import ReconstructOptions
    marks.append(cpu_s())
    worker = PhotoWorker(ReconstructOptions(), threads=1)
    marks.append(cpu_s())
    photos = sorted((shared_dir() / "eval" / "photos" / "deep3d").glob("*.jpg"))[:max(2, args.photos)]
    with tempfile.TemporaryDirectory() as tmp:
        for photo in photos:
            worker.process(Job(photo, photo.name, photo.stem), tmp)
            marks.append(cpu_s())
    step = [b - a for a, b in zip(marks, marks[1:])]
    print(f"CPU s: imports {step[0]:.2f}, models {step[1]:.2f}, photos " + ", ".join(f"{s:.2f}" for s in step[2:])
          + f"; start-up {step[0] + step[1] + step[2] - step[3]:.2f} (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
