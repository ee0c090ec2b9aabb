"""The ``objects`` protocol: ``facerecon scan`` on the shared multi-view objects
(``eval/multiview-objects``), with the times on this machine.

- dino (Middlebury's sparse ring, 16 calibrated views, 640x480): 12 views reconstructed from their
  known cameras, the mesh drawn into the 4 held out and compared with their silhouettes (the
  dataset's own threshold / dilate / erode recipe): IoU per view.
- fox (50 phone frames, 1080x1920, with a shipped ``transforms.json``): the scan from the photos
  alone, structure from motion included, as ``facerecon scan <the jpgs>`` runs it; its cameras
  against the shipped ones (centres after a similarity, as a share of their spread; orientations;
  the focal length) and the time.

Each scan's turntable is written to ``OUT/objects/<set>_turntable.gif``.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from ..assets import shared_dir
from ..errors import require
from ..geometry import umeyama
from .protocols import Context, ProtocolResult

DINO_HELD_OUT = (3, 7, 11, 15)      # 0-based views of the 16 left out of the reconstruction
TURNTABLE_SIDE = 320
TURNTABLE_FRAMES = 48


def objects_dir() -> Path:
    return shared_dir() / "eval" / "multiview-objects"


def dino_silhouette(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: the dataset's own recipe, threshold at 0.19, dilate by 10 pixels, erode by 7."""
    mask = (image.max(axis=2) > 0.19 * 255).astype(np.uint8)
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (21, 21)))
    return cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))) > 0


def camera_agreement(views: list[dict], folder: Path) -> dict:
    """A scan's cameras (``scan.json``'s ``cameras.views``: name, K, R, t, width) against the camera
    file shipped in ``folder``: centres after a similarity (median and max, % of the shipped
    centres' spread), orientations after its rotation (median, degrees), the focal lengths at the
    scan's width."""
    from ..scan.cameras import find_known_cameras
    shipped = find_known_cameras(folder)
    by_name = {p.name: c for p, c in zip(shipped.files, shipped.cameras)}
    found = [v for v in views if v["name"] in by_name]
    if len(found) < 3:
        return {"registered": len(found), "of": len(shipped.files)}
    ours = np.array([-np.array(v["R"]).T @ np.array(v["t"]) for v in found])
    theirs = np.array([by_name[v["name"]].centre for v in found])
    fit = umeyama(ours, theirs)
    error = np.linalg.norm(fit.apply(ours) - theirs, axis=1)
    spread = np.sqrt(np.mean(np.sum((theirs - theirs.mean(0)) ** 2, axis=1)))
    degrees = []
    for v in found:
        relative = fit.rotation @ np.array(v["R"]).T @ by_name[v["name"]].R
        degrees.append(np.degrees(np.arccos(np.clip((np.trace(relative) - 1) / 2, -1, 1))))
    width = found[0]["width"]
    return {"registered": len(found), "of": len(shipped.files),
            "centre_median_pct": float(100 * np.median(error) / spread),
            "centre_max_pct": float(100 * error.max() / spread),
            "orientation_median_deg": float(np.median(degrees)),
            "focal_px": float(np.median([v["K"][0][0] for v in found])),
            "shipped_focal_px": float(by_name[found[0]["name"]].K[0, 0] * width / shipped.cameras[0].width),
            "width": width}


def _turntable(result, path: Path) -> None:
    from ..render.visualize import save_turntable
    from ..scan.turntable import turntable_frames
    save_turntable(turntable_frames(result.mesh, result.cameras.cameras, TURNTABLE_SIDE, TURNTABLE_FRAMES), path)


def dino(out_dir: Path | None, dense_side: int, depth=None, held_out: tuple[int, ...] = DINO_HELD_OUT) -> dict:
    """The dino's held-out silhouette IoU (see the module); its turntable in ``out_dir`` unless None.
    ``depth``: the dense step's ``DepthSettings`` (None: the defaults)."""
    from ..scan import ScanSettings, prepare, reconstruct
    from ..scan.bake import rasterize_view
    from ..scan.cameras import CameraSet
    from ..scan.depth import DepthSettings
    settings = ScanSettings(subject="object", max_side=640, dense_side=dense_side, texture_size=1024,
                            depth=depth or DepthSettings())
    start = time.perf_counter()
    views, cameras = prepare([objects_dir() / "dino-sparse-ring"], settings)
    keep = [i for i in range(len(views)) if i not in held_out]
    result = reconstruct(views, CameraSet([cameras.cameras[i] for i in keep], cameras.points, cameras.source, keep),
                         settings)
    seconds = time.perf_counter() - start
    ious = {}
    for i in held_out:
        drawn = rasterize_view(result.mesh.vertices, result.mesh.faces, cameras.cameras[i]).mask
        truth = dino_silhouette(views.images[i])
        ious[views.names[i]] = float((drawn & truth).sum() / (drawn | truth).sum())
    if out_dir is not None:
        _turntable(result, out_dir / "dino_turntable.gif")
    return {"set": "dino", "views": len(keep), "dense_side": dense_side, "held_out_iou": ious,
            "iou_mean": float(np.mean(list(ious.values()))), "faces": len(result.mesh.faces),
            "texture_seen": result.mesh.seen, "seconds": seconds,
            "timings_s": {k: round(v, 2) for k, v in result.timings.items()}}


def fox(out_dir: Path, frames: int | None, max_side: int, dense_side: int) -> dict:
    """The fox scanned from its photos alone (structure from motion), its cameras against the shipped."""
    from ..scan import ScanSettings, prepare, reconstruct
    folder = objects_dir() / "fox"
    photos = sorted((folder / "images").glob("*.jpg"))
    photos = photos[:frames] if frames else photos
    settings = ScanSettings(subject="object", max_side=max_side, dense_side=dense_side)
    start = time.perf_counter()
    views, cameras = prepare(photos, settings)
    cameras_s = time.perf_counter() - start
    result = reconstruct(views, cameras, settings)
    seconds = time.perf_counter() - start
    summary = result.summary(settings)
    _turntable(result, out_dir / "fox_turntable.gif")
    return {"set": "fox", "frames": len(photos), "max_side": max_side, "dense_side": dense_side,
            "reprojection_px": cameras.reprojection_px, **camera_agreement(summary["cameras"]["views"], folder),
            "faces": len(result.mesh.faces), "texture_seen": result.mesh.seen,
            "dropped_plane_share": result.subject.plane_share, "seconds": seconds, "cameras_s": cameras_s,
            "timings_s": {k: round(v, 2) for k, v in result.timings.items()}}


def objects_protocol(ctx: Context) -> ProtocolResult:
    require("pycolmap", "scan", "facerecon evaluate --protocol objects")
    out_dir = ctx.out_dir / "objects"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [dino(out_dir, 160 if ctx.smoke else 320),
            fox(out_dir, 12 if ctx.smoke else None, 480 if ctx.smoke else 960, 240 if ctx.smoke else 480)]
    dino_row, fox_row = rows
    summary = {"scan": {"dino held-out IoU": dino_row["iou_mean"], "dino seconds": dino_row["seconds"],
                        "fox registered": fox_row["registered"], "fox frames": fox_row["frames"],
                        "fox centre_median_pct": fox_row.get("centre_median_pct"),
                        "fox orientation_median_deg": fox_row.get("orientation_median_deg"),
                        "fox seconds": fox_row["seconds"]}}
    notes = [f"dino: {dino_row['views']} of Middlebury's 16 calibrated views reconstructed at "
             f"{dino_row['dense_side']} px (known cameras); IoU of the mesh drawn into the held-out views "
             f"{', '.join(str(i) for i in DINO_HELD_OUT)} against their silhouettes. fox: {fox_row['frames']} "
             f"phone frames at {fox_row['max_side']} px (dense {fox_row['dense_side']} px), cameras from "
             "structure from motion, compared with the shipped transforms.json after a similarity: "
             "centre error as a share of the shipped centres' spread, orientation error in degrees. "
             "Seconds: the whole scan, wall clock, on this machine. Turntables: objects/*_turntable.gif."]
    return ProtocolResult("objects", summary, rows, notes, headline="dino held-out IoU")
