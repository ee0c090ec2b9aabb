"""facerecon scan's figures on the shared multi-view objects: the dino's silhouette IoU on views held
out of the reconstruction, and a fox scan's cameras against the shipped ones. Prints the system load
beside the times (the machine is shared: the times are upper bounds).

Usage:
  python benchmarks/bench_scan.py dino [--dense-side 320] [--held-out 3,7,11,15] [--planes 96] [--neighbours 4]
  python benchmarks/bench_scan.py fox-cameras OUT/scan.json     # after `facerecon scan <fox photos> -o OUT`
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from facerecon.assets import shared_dir
from facerecon.geometry import umeyama
from facerecon.scan import ScanSettings, prepare, reconstruct
from facerecon.scan.depth import DepthSettings
from facerecon.scan.bake import rasterize_view
from facerecon.scan.cameras import CameraSet, find_known_cameras

OBJECTS = shared_dir() / "eval" / "multiview-objects"


def dino_silhouette(image: np.ndarray) -> np.ndarray:
    """The dataset's own recipe: threshold at 0.19, dilate by 10 pixels, erode by 7."""
    mask = (image.max(axis=2) > 0.19 * 255).astype(np.uint8)
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (21, 21)))
    return cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))) > 0


def dino(dense_side: int, held_out: list[int], depth: DepthSettings = DepthSettings()) -> None:
    settings = ScanSettings(max_side=640, dense_side=dense_side, texture_size=1024, depth=depth)
    start = time.perf_counter()
    views, cameras = prepare([OBJECTS / "dino-sparse-ring"], settings)
    keep = [i for i in range(len(views)) if i not in held_out]
    subset = CameraSet([cameras.cameras[i] for i in keep], cameras.points, cameras.source, keep)
    result = reconstruct(views, subset, settings)
    elapsed = time.perf_counter() - start
    ious = []
    for i in held_out:
        drawn = rasterize_view(result.mesh.vertices, result.mesh.faces, cameras.cameras[i]).mask
        truth = dino_silhouette(views.images[i])
        ious.append(float((drawn & truth).sum() / (drawn | truth).sum()))
    print(f"dino: {len(keep)} views at {dense_side} px, held out {[views.names[i] for i in held_out]}")
    print(f"  silhouette IoU on the held-out views: {' '.join(f'{v:.3f}' for v in ious)}; mean {np.mean(ious):.3f}")
    print(f"  {len(result.mesh.faces)} triangles, texture seen {result.mesh.seen:.2f}; {elapsed:.0f} s "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in result.timings.items())}); load {os.getloadavg()[0]:.1f}")


def fox_cameras(scan_json: Path) -> None:
    scan = json.loads(scan_json.read_text())
    shipped = find_known_cameras(OBJECTS / "fox")
    by_name = {p.name: c for p, c in zip(shipped.files, shipped.cameras)}
    found = [v for v in scan["cameras"]["views"] if v["name"] in by_name]
    ours = np.array([-np.array(v["R"]).T @ np.array(v["t"]) for v in found])
    theirs = np.array([by_name[v["name"]].centre for v in found])
    fit = umeyama(ours, theirs)
    error = np.linalg.norm(fit.apply(ours) - theirs, axis=1)
    spread = np.sqrt(np.mean(np.sum((theirs - theirs.mean(0)) ** 2, axis=1)))
    # the scan's views were resized: compare the focal lengths at the scan's width
    focal = np.median([v["K"][0][0] for v in found])
    width = found[0]["width"]
    shipped_focal = by_name[found[0]["name"]].K[0, 0] * width / shipped.cameras[0].width
    rotation_deg = []
    for v in found:
        relative = fit.rotation @ np.array(v["R"]).T @ by_name[v["name"]].R
        rotation_deg.append(np.degrees(np.arccos(np.clip((np.trace(relative) - 1) / 2, -1, 1))))
    print(f"fox: {len(found)}/{len(shipped.files)} views registered ({scan['cameras']['source']}, "
          f"reprojection {scan['cameras']['reprojection_px']:.2f} px)")
    print(f"  camera centres after a similarity: median {100 * np.median(error) / spread:.2f} %, max "
          f"{100 * error.max() / spread:.2f} % of their spread; orientations median {np.median(rotation_deg):.2f} deg")
    print(f"  focal {focal:.1f} px against the shipped {shipped_focal:.1f} px at {width} px wide")
    print(f"  times: {scan['timings_s']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("dino")
    d.add_argument("--dense-side", type=int, default=320)
    d.add_argument("--held-out", default="3,7,11,15", help="0-based view indices left out of the reconstruction")
    d.add_argument("--planes", type=int, default=DepthSettings.planes, help="the dense step's depth planes")
    d.add_argument("--neighbours", type=int, default=DepthSettings.neighbours, help="views matched per view")
    f = sub.add_parser("fox-cameras")
    f.add_argument("scan_json", type=Path)
    args = parser.parse_args()
    if args.what == "dino":
        dino(args.dense_side, [int(i) for i in args.held_out.split(",")],
             DepthSettings(planes=args.planes, neighbours=args.neighbours))
    else:
        fox_cameras(args.scan_json)


if __name__ == "__main__":
    main()
