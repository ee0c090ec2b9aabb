"""The main job's stages on the example face, wall and CPU time, against another version in the same process.

    python benchmarks/bench_stages.py [--reference OLD_CHECKOUT] [--repeats 10]

Stages: load, detect, landmarks + fit, 1024 texture, OBJ + GLB (53 morph targets), the JSON's
dict and its writing. With ``--reference`` (a checkout of another version, e.g. ``git worktree
add /tmp/old main``) its ``facerecon`` package is copied under another name and timed too, the
two alternating run by run, so that a loaded machine slows both alike: compare the ratios. CPU
time counts every thread (the export's and the bake's), wall time the critical path.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "facerecon" / "examples" / "astronaut.jpg"
STAGES = ("load", "detect", "landmarks + fit", "texture", "export obj + glb", "json dict", "json write", "whole job")


class Version:
    def __init__(self, package: str):
        self.name = package
        self.pipeline = importlib.import_module(f"{package}.pipeline")
        self.load = importlib.import_module(f"{package}.load")
        self.camera = importlib.import_module(f"{package}.camera")
        self.export = importlib.import_module(f"{package}.export")
        self.run = self.pipeline.Reconstructor(texture_size=1024)

    def job(self, folder: Path) -> list[tuple[float, float]]:
        """(wall, CPU) ms per stage, then for the whole job."""
        marks = [(time.perf_counter(), time.process_time())]

        def mark():
            marks.append((time.perf_counter(), time.process_time()))
        image = self.load.load_image(PHOTO)
        mark()
        detection = self.run.detect(image).faces[0]
        mark()
        camera = self.camera.Camera.for_image(image.shape[1], image.shape[0])
        face = self.run.reconstruct_face(image, detection, camera, with_texture=False)
        mark()
        self.run.add_texture(face)
        mark()
        rig = face.rig()
        self.export.export_mesh(folder, "face0", face.vertices, face.texture, face.model, ("obj", "glb"), "m", rig)
        mark()
        data = {**face.to_dict(), "mesh_files": self.export.mesh_info(("obj", "glb"), "m", rig, face.model)}
        mark()
        self.export.write_json(folder / "face0.json", data)
        mark()
        steps = [(1000 * (b[0] - a[0]), 1000 * (b[1] - a[1])) for a, b in zip(marks, marks[1:])]
        return steps + [(1000 * (marks[-1][0] - marks[0][0]), 1000 * (marks[-1][1] - marks[0][1]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, help="a checkout of the version to compare with")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    packages = ["facerecon"]
    with tempfile.TemporaryDirectory() as tmp:
        if args.reference is not None:
            copy = Path(tmp) / "reference"
            shutil.copytree(args.reference / "facerecon", copy / "facerecon_reference",
                            ignore=shutil.ignore_patterns("__pycache__"))
            sys.path.insert(0, str(copy))
            packages.insert(0, "facerecon_reference")
        versions = [Version(p) for p in packages]
        times: dict[str, list] = {v.name: [] for v in versions}
        for v in versions:
            (Path(tmp) / v.name).mkdir()
            for _ in range(2):   # first calls: caches, numba kernels (compiled once for a fresh copy)
                v.job(Path(tmp) / v.name)
        load = os.getloadavg()[0]
        for r in range(args.repeats):
            for v in versions if r % 2 == 0 else versions[::-1]:
                times[v.name].append(v.job(Path(tmp) / v.name))
    print(f"example face, medians of {args.repeats} runs each; load average {load:.1f} -> {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    for kind, index in (("wall ms", 0), ("CPU ms", 1)):
        print(f"\n{kind:18}" + "".join(f"{v.name:>22}" for v in versions) + ("   ratio" if len(versions) == 2 else ""))
        for s, stage in enumerate(STAGES):
            medians = [statistics.median(run[s][index] for run in times[v.name]) for v in versions]
            ratio = f"   {medians[1] / medians[0]:.2f}" if len(versions) == 2 and medians[0] > 0 else ""
            print(f"{stage:18}" + "".join(f"{m:22.1f}" for m in medians) + ratio)


if __name__ == "__main__":
    main()
