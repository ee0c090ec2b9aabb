"""``facerecon batch --engine ray``: the same photos on Ray actors, one PhotoWorker each.

A local cluster by default (``ray.init(num_cpus=workers)``), or an existing one by address; there
the input and output folders must be at the same paths on every node (a shared file system).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import require
from ..options import ReconstructOptions
from .manifest import Record
from .runner import Job, PhotoWorker


def run_ray(jobs: Sequence[Job], out_dir: Path, options: ReconstructOptions, workers: int,
            address: str | None = None) -> Iterator[Record]:
    """Records in the order the photos finish; Ray is shut down when the iterator ends."""
    ray = require("ray", "ray", "--engine ray")
    from ray.util import ActorPool
    if not jobs:
        return
    # The workers' own log lines would otherwise stream through the driver over the progress bar.
    kwargs = dict(log_to_driver=False, logging_level=logging.WARNING)
    if address is None:
        ray.init(num_cpus=workers, include_dashboard=False, **kwargs)
    else:
        ray.init(address=address, **kwargs)
    try:
        actor = ray.remote(num_cpus=1)(PhotoWorker)
        pool = ActorPool([actor.remote(options, 1) for _ in range(workers)])
        yield from pool.map_unordered(lambda a, job: a.process.remote(job, str(out_dir)), jobs)
    finally:
        ray.shutdown()
