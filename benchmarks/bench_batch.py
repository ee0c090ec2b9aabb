"""facerecon batch throughput: faces per second with 1 and 2 local workers and with Ray.

    python benchmarks/bench_batch.py [--ray-workers 2] [--texture-size 1024] [--passes 1] [--no-ray]

Input: every photo in <shared>/eval/photos (``--passes N``: each of them N times, linked into N
folders, for a longer steady state), full outputs (OBJ + GLB + PLY, overlay). For each
engine: faces/s over the whole run (worker start-up and model loading included) and in steady
state (from when every worker has finished its first photo, which pays for first-call
compilation, to the last), scaling efficiency = rate(N workers) / (N * rate(1 worker)),
and the peak RSS of each worker process.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from facerecon.assets import shared_dir
from facerecon.batch.manifest import Record
from facerecon.batch.runner import run_batch
from facerecon.options import ReconstructOptions


def photo_folder(tmp: Path, passes: int) -> Path:
    """<shared>/eval/photos itself, or a folder holding ``passes`` linked copies of it."""
    photos = shared_dir() / "eval" / "photos"
    if passes == 1:
        return photos
    for k in range(passes):
        for photo in photos.rglob("*"):
            if photo.is_file():
                link = tmp / f"pass{k}" / photo.relative_to(photos)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(photo)
    return tmp


def measure(engine: str, workers: int, options: ReconstructOptions, passes: int) -> dict:
    finished: list[tuple[float, Record]] = []
    with tempfile.TemporaryDirectory() as tmp_in, tempfile.TemporaryDirectory() as tmp:
        source = photo_folder(Path(tmp_in), passes)
        t0 = time.perf_counter()
        summary = run_batch(source, Path(tmp), options, workers, engine,  # type: ignore[arg-type]
                            on_record=lambda r: finished.append((time.perf_counter(), r)))
        total = time.perf_counter() - t0
    first_per_worker: dict[int, float] = {}
    for t, r in finished:
        first_per_worker.setdefault(r["worker"]["pid"], t)
    first, last = max(first_per_worker.values()), finished[-1][0]
    steady_faces = sum(r["faces"] for t, r in finished if t > first)
    rss = {}
    for _, r in finished:
        rss[r["worker"]["pid"]] = max(rss.get(r["worker"]["pid"], 0), r["worker"]["max_rss_mb"])
    return {"engine": f"{engine} x{workers}", "workers": workers, "photos": len(finished), "faces": summary.faces,
            "failed": summary.failed, "seconds": total, "rate": summary.faces / total,
            "steady": steady_faces / (last - first) if last > first else float("nan"),
            "rss_mb": sorted(rss.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-workers", type=int, default=2)
    parser.add_argument("--texture-size", type=int, default=1024)
    parser.add_argument("--passes", type=int, default=1, help="run the photo set this many times over")
    parser.add_argument("--no-ray", action="store_true", help="the local engine only")
    args = parser.parse_args()
    if args.passes < 1:
        parser.error("--passes must be at least 1")
    options = ReconstructOptions(texture_size=args.texture_size)
    rows = [measure("local", 1, options, args.passes), measure("local", 2, options, args.passes)]
    if not args.no_ray:
        rows.append(measure("ray", args.ray_workers, options, args.passes))
    base, base_steady = rows[0]["rate"], rows[0]["steady"]
    print(f"{'engine':10} {'photos':>6} {'faces':>5} {'failed':>6} {'time s':>7} {'faces/s':>8} "
          f"{'steady':>7} {'eff':>5} {'eff st':>6}  worker RSS MB")
    for r in rows:
        eff, eff_steady = r["rate"] / (r["workers"] * base), r["steady"] / (r["workers"] * base_steady)
        print(f"{r['engine']:10} {r['photos']:6d} {r['faces']:5d} {r['failed']:6d} {r['seconds']:7.1f} "
              f"{r['rate']:8.2f} {r['steady']:7.2f} {eff:5.0%} {eff_steady:6.0%}  {r['rss_mb']}")


if __name__ == "__main__":
    main()
