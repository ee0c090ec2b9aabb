"""The ``scan`` protocol: heads from the two photos of the menpo3d 'james' scan against the scan's
surface, and the placement of a head on a scan that the multiview protocol measures with too."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..geometry import Similarity, surface_points, umeyama
from ..model import face_area_triangles
from ..pipeline import load_landmarks68
from .datasets import Scan, james_scan
from .icp import icp
from .metrics import finite_mean, interocular, nme
from .protocols import Context, ProtocolResult, default_camera, reconstruct

# Scan crop: scan points within this distance of the nose tip (NoW-style face region), mm.
SCAN_CROP_MM = 95.0
# The 51 inner iBUG points (brows, nose, eyes, mouth): defined on the surface, unlike the jaw
# contour, whose 3D position depends on the view.
INNER68 = np.arange(17, 68)


def scan_crop(scan: Scan) -> np.ndarray:
    """(C, 3) the scan's vertices within SCAN_CROP_MM of its nose tip (iBUG point 30), mm."""
    return scan.vertices[np.linalg.norm(scan.vertices - scan.landmarks[30], axis=1) < SCAN_CROP_MM]


def _barycentric_grid(order: int) -> np.ndarray:
    """(K, 3) barycentric points of a regular grid on a triangle, corners included."""
    ij = [(i, j) for i in range(order + 1) for j in range(order + 1 - i)]
    return np.array([(i, j, order - i - j) for i, j in ij], np.float64) / order


def surface_samples(vertices: np.ndarray, triangles: np.ndarray, order: int = 4) -> np.ndarray:
    """A dense sampling of a triangle mesh's surface, (T * K, 3): each triangle on a barycentric grid
    with ``order`` steps per edge. Nearest-sample distances then overestimate the true
    point-to-surface distance by < 0.4 mm on the ICT face (edges of ~2-3 mm)."""
    return np.einsum("kc,tcd->tkd", _barycentric_grid(order), vertices[triangles]).reshape(-1, 3)


@dataclass(frozen=True)
class ScanPlacement:
    placement: Similarity   # our head (mm) -> the scan frame, from the inner landmarks
    landmarks: np.ndarray   # (68, 3) our 68 landmarks in the scan frame, mm
    head: np.ndarray        # (V, 3) our head in the scan frame, mm
    surface: np.ndarray     # (N, 3) samples of its face surface
    crop: np.ndarray        # (C, 3) the scan crop after rigid ICP onto that surface
    icp_iterations: int


def place_on_scan(vertices: np.ndarray, scan: Scan, crop: np.ndarray, face_tris: np.ndarray,
                  with_scale: bool = True) -> ScanPlacement:
    """Our head (cm) into the scan frame from the 51 inner landmarks (Umeyama, with scale or
    rigid), then rigid trimmed ICP of the scan crop onto our face surface (the crop lies within our
    face area, not the reverse). Scale comes from the landmarks only: ICP with a free scale can
    shrink one surface onto a patch of the other."""
    corners, bary = load_landmarks68()
    ours = vertices.astype(np.float64) * 10.0
    lm = surface_points(ours, corners, bary)
    placement = umeyama(lm[INNER68], scan.landmarks[INNER68], with_scale=with_scale)
    head = placement.apply(ours)
    surface = surface_samples(head, face_tris)
    fit = icp(crop, surface, Similarity(1.0, np.eye(3), np.zeros(3)), with_scale=False)
    return ScanPlacement(placement, placement.apply(lm), head, surface, fit.transform.apply(crop), fit.iterations)


def scan_protocol(ctx: Context) -> ProtocolResult:
    scan = james_scan()
    crop = scan_crop(scan)
    io = interocular(scan.landmarks)
    tris = ctx.run.model.triangles
    face_tris = face_area_triangles(tris)
    rows, summary = [], {}
    for name in ctx.methods:
        for k, photo in enumerate(scan.photos):
            dets = ctx.run.detect(photo).faces
            face = reconstruct(ctx.run, name, photo, dets[0], default_camera(photo)) if dets else None
            if face is None:
                rows.append({"photo": k, "method": name, "reconstructed": False})
                continue
            row = {"photo": k, "method": name, "reconstructed": True, "yaw": face.fit.angles[0]}
            for label, with_scale in (("similarity", True), ("metric", False)):
                placed = place_on_scan(face.vertices, scan, crop, face_tris, with_scale)
                dist = cKDTree(placed.surface).query(placed.crop)[0]
                row[label] = {"rmse_mm": float(np.sqrt(np.mean(dist ** 2))), "mean_mm": float(dist.mean()),
                              "nme_io": float(dist.mean() / io),
                              "landmark_nme_io": nme(placed.landmarks, scan.landmarks, io),
                              "scale": placed.placement.scale, "icp_iterations": placed.icp_iterations}
            rows.append(row)
        ok = [r for r in rows if r["method"] == name and r["reconstructed"]]
        summary[name] = {f"{k} {label}": finite_mean([r[label][k] for r in ok])
                         for label in ("similarity", "metric") for k in ("rmse_mm", "nme_io", "landmark_nme_io", "scale")}
        summary[name]["reconstructed"] = len(ok)
    notes = [f"menpo3d 'james' scan (mm; {len(crop)} scan vertices within {SCAN_CROP_MM:.0f} mm of the nose tip). "
             "Each of the two photos in its texture image (left and right halves) is reconstructed; our head "
             "is put in the scan frame from the 51 inner landmarks (Umeyama), then the crop is aligned to our "
             "face-area surface by trimmed (90 %) nearest-neighbour rigid ICP. Error: distance from each crop "
             "point to our surface (RMSE, mm). 'similarity' takes the scale from the landmarks (shape error); "
             "'metric' keeps our size (shape + size error); 'scale' is the landmark similarity's factor "
             "(1 = our head has the true size). landmark_nme_io: 68 3D landmarks after the landmark alignment. "
             f"NMEs by the scan's outer interocular distance ({io:.1f} mm). The peer gives 68 landmarks, "
             "not a dense surface, so it has no row."]
    return ProtocolResult("scan", summary, rows, notes, "rmse_mm similarity")
