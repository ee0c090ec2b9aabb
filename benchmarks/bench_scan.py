"""facerecon scan's figures on the shared multi-view objects: the dino's silhouette IoU on views held
out of the reconstruction, and a fox scan's cameras against the shipped ones; and the fused surface
alone (no head fit) on the headscan protocol's synthetic heads. Prints the system load beside the
times (the machine is shared: the times are upper bounds).

Usage:
  python benchmarks/bench_scan.py dino [--dense-side 320] [--held-out 3,7,11,15] [--planes 96] [--neighbours 4] [--slant 40]
  python benchmarks/bench_scan.py fox-cameras OUT/scan.json     # after `facerecon scan <fox photos> -o OUT`
  python benchmarks/bench_scan.py head-surface [--first 500] [--heads 4] [--views 12,24] [--angle-power 2] [--slant 40]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from facerecon.evaluation.objects_protocol import camera_agreement, objects_dir
from facerecon.evaluation.objects_protocol import dino as dino_scan
from facerecon.scan.depth import DepthSettings
from facerecon.scan.fusion import FusionSettings

OBJECTS = objects_dir()


def dino(dense_side: int, held_out: list[int], depth: DepthSettings = DepthSettings()) -> None:
    row = dino_scan(None, dense_side, depth, tuple(held_out))
    ious = row["held_out_iou"]
    print(f"dino: {row['views']} views at {dense_side} px, held out {list(ious)}")
    print(f"  silhouette IoU on the held-out views: {' '.join(f'{v:.3f}' for v in ious.values())}; "
          f"mean {row['iou_mean']:.3f}")
    print(f"  {row['faces']} triangles, texture seen {row['texture_seen']:.2f}; {row['seconds']:.0f} s "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in row['timings_s'].items())}); load {os.getloadavg()[0]:.1f}")


def fox_cameras(scan_json: Path) -> None:
    scan = json.loads(scan_json.read_text())
    found = camera_agreement(scan["cameras"]["views"], OBJECTS / "fox")
    print(f"fox: {found['registered']}/{found['of']} views registered ({scan['cameras']['source']}, "
          f"reprojection {scan['cameras']['reprojection_px']:.2f} px)")
    print(f"  camera centres after a similarity: median {found['centre_median_pct']:.2f} %, max "
          f"{found['centre_max_pct']:.2f} % of their spread; orientations median {found['orientation_median_deg']:.2f} deg")
    print(f"  focal {found['focal_px']:.1f} px against the shipped {found['shipped_focal_px']:.1f} px at "
          f"{found['width']} px wide")
    print(f"  times: {scan['timings_s']}")


def head_surface(first: int, n_heads: int, rings: list[int], angle_power: float, slant_deg: float,
                 slant_up_down: bool) -> None:
    """The fused surface of synthetic heads ``first ..`` (the headscan protocol's rendering, cameras and
    settings; 500.. are the calibration heads, 0.. the evaluation's): its vertices' distance to the
    true head (mm), split by whether a depth map confirms them (``fusion.vertex_support``), and its
    area against the true skin's; for the mesh ``fuse`` makes (small holes closed, smoothed,
    decimated) and for the raw marching-cubes surface (none of those)."""
    from dataclasses import replace

    import trimesh

    from facerecon.evaluation import synthetic
    from facerecon.evaluation.headscan_protocol import WORLD, default_scan_settings, render_ring
    from facerecon.evaluation.protocols import base_texture
    from facerecon.geometry import closest_on_surface, surface_points
    from facerecon.pipeline import Reconstructor
    from facerecon.scan.cameras import triangulate_matches
    from facerecon.scan.depth import dense_depth
    from facerecon.scan.fusion import find_subject, fuse, subject_points, vertex_support
    from facerecon.scan.human import SKIN_PARTS
    from facerecon.scan.views import Views
    with Reconstructor(texture_size=256) as run:
        model, texture = run.model, base_texture(run)
    skin = model.triangles[np.isin(model.triangles, model.part_vertices(*SKIN_PARTS)).all(1)]
    settings = default_scan_settings(192)
    settings = replace(settings, depth=replace(settings.depth, slant_deg=slant_deg, slant_up_down=slant_up_down))
    written = replace(settings.fusion, angle_power=angle_power)
    raw = replace(written, max_hole=0.0, smoothing_iterations=0, min_piece=0.0, piece_reach=float("inf"), max_faces=10 ** 9)
    medians: dict[str, list[float]] = {"mesh": [], "raw": []}
    for head in synthetic.make_heads(model, texture, n_heads, first=first):
        for n in rings:
            images, cameras, truth = render_ring(model, head, n, 192)
            views = Views(images, [f"v{k:02d}" for k in range(n)], [1.0] * n, "photos")
            t0 = time.perf_counter()
            maps = dense_depth(images, cameras, triangulate_matches(views, cameras), 192, settings.depth)
            subject = find_subject(subject_points(maps), cameras, written)
            dense_s = time.perf_counter() - t0
            truth_world = WORLD.apply(truth.astype(np.float64))
            true_area = trimesh.Trimesh(truth, skin, process=False).area
            for name, fusion in (("mesh", written), ("raw", raw)):
                mesh = fuse(maps, subject, fusion)
                corners, bary = closest_on_surface(mesh.vertices, truth_world, model.triangles)
                mm = np.linalg.norm(surface_points(truth_world, corners, bary) - mesh.vertices, axis=1) / WORLD.scale * 10
                confirmed = vertex_support(mesh.vertices, maps, subject, fusion) > 0
                rest = np.median(mm[~confirmed]) if (~confirmed).any() else 0.0
                medians[name].append(float(np.median(mm)))
                print(f"head {head.index}, {n} views, {name}: surface median {np.median(mm):.2f} mm; "
                      f"{100 * confirmed.mean():.0f} % of the vertices confirmed (median "
                      f"{np.median(mm[confirmed]):.2f} mm), the rest median {rest:.2f} mm; area "
                      f"{mesh.area / WORLD.scale ** 2:.0f} cm^2 (true skin {true_area:.0f})", flush=True)
            print(f"  dense depth {dense_s:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    for name, values in medians.items():
        print(f"{name}: mean of the surface medians {np.mean(values):.2f} mm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("dino")
    d.add_argument("--dense-side", type=int, default=320)
    d.add_argument("--held-out", default="3,7,11,15", help="0-based view indices left out of the reconstruction")
    d.add_argument("--planes", type=int, default=DepthSettings.planes, help="the dense step's depth planes")
    d.add_argument("--neighbours", type=int, default=DepthSettings.neighbours, help="views matched per view")
    d.add_argument("--slant", type=float, default=DepthSettings.slant_deg, help="slanted plane families, degrees")
    d.add_argument("--left-right-only", action="store_true", help="slanted families tilted left and right only")
    f = sub.add_parser("fox-cameras")
    f.add_argument("scan_json", type=Path)
    h = sub.add_parser("head-surface")
    h.add_argument("--first", type=int, default=500, help="the first head (500..: calibration, 0..: evaluation)")
    h.add_argument("--heads", type=int, default=4)
    h.add_argument("--views", default="12,24", help="ring sizes")
    h.add_argument("--angle-power", type=float, default=FusionSettings.angle_power)
    h.add_argument("--slant", type=float, default=DepthSettings.slant_deg, help="slanted plane families, degrees")
    h.add_argument("--left-right-only", action="store_true", help="slanted families tilted left and right only")
    args = parser.parse_args()
    if args.what == "dino":
        dino(args.dense_side, [int(i) for i in args.held_out.split(",")],
             DepthSettings(planes=args.planes, neighbours=args.neighbours, slant_deg=args.slant,
                           slant_up_down=not args.left_right_only))
    elif args.what == "head-surface":
        head_surface(args.first, args.heads, [int(n) for n in args.views.split(",")], args.angle_power, args.slant,
                     not args.left_right_only)
    else:
        fox_cameras(args.scan_json)


if __name__ == "__main__":
    main()
