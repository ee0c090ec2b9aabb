"""Derive where Face Mesh's 468 landmarks lie on the ICT-FaceKit head.

Re-run with ``python scripts/derive_correspondence.py`` (about a minute); it rewrites
``facerecon/data/mediapipe_ict.npz``, then run ``scripts/refine_correspondence.py``, which moves
the inner points to where Face Mesh puts them on real photos. Method:

1. Render ICT heads (the mean and a few identities drawn from the prior, fixed seeds) with a skin
   tone and Lambertian shading, at yaws -20..20 and pitches -10..10 degrees.
2. Run Face Mesh (``facerecon.landmarks``) on each render and read, under each of the 468 points, which triangle of the
   head is visible there and the barycentric weights (the rasteriser's buffers).
3. Evaluate each hit on the mean neutral head, take the per-landmark median over renders, and snap
   it to the closest point of the face surface: a triangle and barycentric weights per landmark.
   Face-oval (contour) points use only near-frontal renders, where they are on the silhouette.
4. For the jaw and cheek contour points, list the candidate vertices along a horizontal strip of
   the face: the fit slides each such point along its strip to the current silhouette.

Outputs (all 0-based): ``vertices`` (468, 3) int32 and ``bary`` (468, 3) float32; ``oval`` (36,)
landmark indices of the face oval; ``contour_landmarks`` (C,) and ``contour_candidates`` (C, K)
vertex indices (padded with -1); ``hits`` (468,) renders that saw each landmark; ``spread_cm``
(468,) median distance of the per-render points to the final point (how well-defined it is);
``mirror`` (468,) each landmark's left-right partner, for mirrored test-time augmentation.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facerecon.camera import Camera, rotation_from_angles  # noqa: E402
from facerecon.detect import FaceDetector  # noqa: E402
from facerecon.geometry import vertex_normals  # noqa: E402
from facerecon.landmarks import N_POINTS, LandmarkEstimator  # noqa: E402
from facerecon.model import FACE_AREA, PARTS, face_area_triangles, in_face_area, load_model  # noqa: E402
from facerecon.render.raster import interpolate, rasterize  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "facerecon" / "data" / "mediapipe_ict.npz"
SIZE = 512
YAWS = (-20, -10, 0, 10, 20)
PITCHES = (-10, 0, 10)
IDENTITY_SEEDS = (None, 1, 2, 3, 4, 5)
SKIN = (0.85, 0.66, 0.55)
# Face Mesh's face-oval points (MediaPipe's FACEMESH_FACE_OVAL connections).
OVAL = np.array([10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251,
                 284, 288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454])


def render(points_cam, tris, colors, camera):
    frags = rasterize(camera.project(points_cam), points_cam[:, 2], tris, SIZE, SIZE, cull_back=True)
    normal = interpolate(frags, vertex_normals(points_cam, tris), tris)
    albedo = interpolate(frags, colors, tris)
    shade = 0.35 + 0.65 * np.clip(-normal[..., 2] * 0.8 - normal[..., 1] * 0.3, 0, 1)
    image = np.where(frags.mask[..., None], albedo * shade[..., None], 0.5)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), frags


def closest_on_surface(points, surface, tris, tree):
    """Snap points to the closest of nearby triangles: (vertex indices (n,3), bary (n,3))."""
    out_v = np.zeros((len(points), 3), np.int32)
    out_b = np.zeros((len(points), 3), np.float32)
    for i, p in enumerate(points):
        _, cand = tree.query(p, k=24)
        a, b, c = (surface[tris[cand, k]] for k in range(3))
        n = np.cross(b - a, c - a)
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        q = p - np.sum((p - a) * n, axis=1, keepdims=True) * n
        # barycentrics of the projection, clipped into the triangle
        v0, v1, v2 = b - a, c - a, q - a
        d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
        d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
        den = d00 * d11 - d01 * d01
        wb, wc = (d11 * d20 - d01 * d21) / den, (d00 * d21 - d01 * d20) / den
        bary = np.clip(np.stack([1 - wb - wc, wb, wc], 1), 0, None)
        bary /= bary.sum(1, keepdims=True)
        snapped = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
        best = np.argmin(np.linalg.norm(snapped - p, axis=1))
        out_v[i], out_b[i] = tris[cand[best]], bary[best]
    return out_v, out_b


def contour_strips(model, surface, vertices, bary, oval):
    """Candidate vertices for each jaw/cheek contour landmark: a horizontal strip of the face."""
    face = FACE_AREA
    points = np.einsum("lk,lkc->lc", bary, surface[vertices])
    eye_level = points[[33, 263], 1].mean()
    chin_x_limit = 1.0  # cm: points this close to the midline are the chin, not a side contour
    landmarks, strips = [], []
    for lm in oval:
        p = points[lm]
        if p[1] > eye_level or abs(p[0]) < chin_x_limit:
            continue
        side = np.sign(p[0])
        f = surface[face]
        sel = ((np.abs(f[:, 1] - p[1]) < 0.35) & (np.sign(f[:, 0]) == side)
               & (np.abs(f[:, 0]) > 0.35 * abs(p[0])) & (np.abs(f[:, 0]) < abs(p[0]) + 2.0)
               & (f[:, 2] > p[2] - 4.0))
        # one vertex per 3 mm of width: the one nearest the landmark's height
        cand = face[sel]
        bins = np.floor(np.abs(surface[cand, 0]) / 0.3).astype(int)
        order = np.lexsort((np.abs(surface[cand, 1] - p[1]), bins))
        _, first = np.unique(bins[order], return_index=True)
        landmarks.append(lm)
        strips.append(cand[order[first]])
    width = max(len(s) for s in strips)
    padded = np.full((len(strips), width), -1, np.int32)
    for i, s in enumerate(strips):
        padded[i, :len(s)] = s
    return np.asarray(landmarks, np.int32), padded


def mirror_permutation(points: np.ndarray) -> np.ndarray:
    """(468,) index of each landmark's mirror partner: a one-to-one matching of the points with
    their mirror images (x -> -x)."""
    rows, cols = linear_sum_assignment(cdist(points * [-1.0, 1.0, 1.0], points))
    perm = np.arange(len(points))
    perm[rows] = cols
    return perm.astype(np.int32)


def main() -> None:
    model = load_model()
    tris = model.triangles
    colors = np.tile(np.asarray(SKIN, np.float32), (len(model.neutral), 1))
    colors[PARTS["eyeball_left"][0]:PARTS["eyeball_right"][1] + 1] = 0.95
    camera = Camera.for_image(SIZE, SIZE)
    oval = OVAL
    detector, estimator = FaceDetector(), LandmarkEstimator()
    neutral = model.neutral
    samples = [[] for _ in range(N_POINTS)]
    renders = 0
    for seed in IDENTITY_SEEDS:
        identity = None if seed is None else np.random.default_rng(seed).standard_normal(model.n_identity)
        head = model.shape(identity)
        for yaw in YAWS:
            for pitch in PITCHES:
                rot = rotation_from_angles(yaw, pitch, 0)
                cam_points = head @ rot.T + np.array([0.0, 0.0, 55.0])
                image, frags = render(cam_points, tris, colors, camera)
                found = detector.detect(image, max_faces=1)
                landmarks = estimator.estimate(image, found[0]) if found else None
                if landmarks is None:
                    continue
                renders += 1
                pix = landmarks.points[:, :2]
                col, row = np.clip(np.rint(pix).astype(int), 0, SIZE - 1).T
                tri_id = frags.triangle[row, col]
                for lm in np.flatnonzero(tri_id >= 0):
                    if lm in oval and abs(yaw) > 10:
                        continue
                    corners = tris[tri_id[lm]]
                    if not in_face_area(corners).all():
                        continue  # a face landmark must land on the face, not on an eye or the neck
                    samples[lm].append(frags.bary[row[lm], col[lm]] @ neutral[corners])
    hits = np.array([len(s) for s in samples])
    if hits.min() == 0:
        raise SystemExit(f"landmarks never seen: {np.flatnonzero(hits == 0)}")
    median = np.array([np.median(np.asarray(s), axis=0) for s in samples])
    spread = np.array([np.median(np.linalg.norm(np.asarray(s) - m, axis=1)) for s, m in zip(samples, median)])
    face_tris = face_area_triangles(tris)
    vertices, bary = closest_on_surface(median, neutral, face_tris,
                                        cKDTree(neutral[face_tris].mean(1)))
    contour_landmarks, contour_candidates = contour_strips(model, neutral, vertices, bary, oval)
    mirror = mirror_permutation(np.einsum("lk,lkc->lc", bary, neutral[vertices]))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, vertices=vertices, bary=bary, oval=oval.astype(np.int32),
                        contour_landmarks=contour_landmarks, contour_candidates=contour_candidates,
                        hits=hits.astype(np.int32), spread_cm=spread.astype(np.float32), mirror=mirror)
    snapped = np.einsum("lk,lkc->lc", bary, neutral[vertices])
    print(f"{renders} renders; hits per landmark min {hits.min()} median {np.median(hits):.0f}; "
          f"median spread {np.median(spread) * 10:.2f} mm; snap distance median "
          f"{np.median(np.linalg.norm(snapped - median, axis=1)) * 10:.2f} mm; "
          f"{len(contour_landmarks)} sliding contour points -> {OUT}")


if __name__ == "__main__":
    main()
