"""Where the pipeline's Face Mesh landmarks lie on the ICT head in side views (|yaw| 30-60 degrees).

``facerecon/data/mediapipe_ict.npz`` (scripts/derive_correspondence.py) comes from near-frontal
renders (|yaw| <= 20). Turned further, Face Mesh puts many points elsewhere on the face: on
synthetic renders at yaw 60 its inner points are off their frontal surface points by 0.04 of the
face size against 0.015 frontally, and the error is mostly a consistent shift, which biases a
side view's contribution to a multi-view fit. This script measures, per yaw bin, which surface
point each inner landmark lands on, the same way: render ICT heads (prior identities with seeds
unlike the evaluation's, skin textures and lighting as in the synthetic set), run the pipeline's
detector and landmarks, read the triangle under each landmark, evaluate it on the mean head, take
the per-landmark median and snap it to the face surface. The contour (face-oval) landmarks keep
their sliding definition and are not re-derived.

Re-run with ``python scripts/derive_side_correspondence.py`` (a few minutes on 2 cores); it writes
``facerecon/data/mediapipe_ict_side.npz``: ``yaws`` (K,) degrees; ``vertices`` (K, 468, 3) int32 and
``bary`` (K, 468, 3) float32 per bin; ``hits`` (K, 468) renders that gave each point.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facerecon.camera import Camera, rotation_from_angles  # noqa: E402
from facerecon.evaluation.protocols import base_texture  # noqa: E402
from facerecon.evaluation.synthetic import random_background, skin_texture  # noqa: E402
from facerecon.fit import N_FACE_POINTS, load_correspondence  # noqa: E402
from facerecon.model import PARTS  # noqa: E402
from facerecon.pipeline import Reconstructor  # noqa: E402
from facerecon.render.lighting import random_lighting  # noqa: E402
from facerecon.render.raster import rasterize  # noqa: E402
from facerecon.render.renderer import render_head  # noqa: E402

from derive_correspondence import closest_on_surface  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "facerecon" / "data" / "mediapipe_ict_side.npz"
YAWS = (-60.0, -45.0, -30.0, 30.0, 45.0, 60.0)
PITCHES = (-10.0, 0.0, 10.0)
SEEDS = range(100, 110)          # the synthetic evaluation uses seeds 20240 and up
SIZE = 512
DISTANCE_CM = 50.0
MIN_HITS = 5
FACE_LAST = PARTS["face"][1]


def main() -> None:
    run = Reconstructor(texture_size=256)
    model = run.model
    base = base_texture(run, 512)
    camera = Camera.for_image(SIZE, SIZE)
    corr = load_correspondence()
    oval = np.zeros(N_FACE_POINTS, bool)
    oval[corr.contour_landmarks] = True
    samples = {yaw: [[] for _ in range(N_FACE_POINTS)] for yaw in YAWS}
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        identity = np.clip(rng.normal(0.0, 1.0, model.n_identity), -2.5, 2.5).astype(np.float32)
        head = model.shape(identity)
        texture = skin_texture(base, rng)
        for yaw in YAWS:
            for pitch in PITCHES:
                rot = rotation_from_angles(yaw, pitch, 0.0)
                t = np.array([0.0, 0.0, DISTANCE_CM]) - rot @ head[:FACE_LAST + 1].mean(0)
                image = render_head(model, head, rot, t, camera, texture, random_lighting(rng),
                                    background=random_background(SIZE, rng), supersample=2).image
                image = (image * 255 + 0.5).astype(np.uint8)
                found = run.detect(image).faces
                marks = run.estimator.estimate(image, found[0]) if found else None
                if marks is None:
                    continue
                cam = head @ rot.T.astype(np.float32) + t.astype(np.float32)
                frags = rasterize(camera.project(cam).astype(np.float32), cam[:, 2].copy(), model.triangles,
                                  SIZE, SIZE)
                col, row = np.clip(np.rint(marks.points[:N_FACE_POINTS, :2]).astype(int), 0, SIZE - 1).T
                tri_id = frags.triangle[row, col]
                for lm in np.flatnonzero((tri_id >= 0) & ~oval):
                    corners = model.triangles[tri_id[lm]]
                    if corners.max() <= FACE_LAST:   # a face landmark must land on the face
                        samples[yaw][lm].append(frags.bary[row[lm], col[lm]] @ model.neutral[corners])
        print(f"seed {seed} done", flush=True)
    face_tris = model.triangles[(model.triangles <= FACE_LAST).all(1)]
    tree = cKDTree(model.neutral[face_tris].mean(1))
    vertices = np.zeros((len(YAWS), N_FACE_POINTS, 3), np.int32)
    bary = np.zeros((len(YAWS), N_FACE_POINTS, 3), np.float32)
    hits = np.zeros((len(YAWS), N_FACE_POINTS), np.int32)
    for k, yaw in enumerate(YAWS):
        hits[k] = [len(s) for s in samples[yaw]]
        keep = hits[k] >= MIN_HITS
        # too few hits (and the contour points): the frontal definition stands
        vertices[k], bary[k] = corr.vertices[:N_FACE_POINTS], corr.bary[:N_FACE_POINTS]
        median = np.array([np.median(samples[yaw][lm], axis=0) for lm in np.flatnonzero(keep)])
        vertices[k][keep], bary[k][keep] = closest_on_surface(median, model.neutral, face_tris, tree)
        frontal = np.einsum("lk,lkc->lc", corr.bary[:N_FACE_POINTS], model.neutral[corr.vertices[:N_FACE_POINTS]])
        moved = np.linalg.norm(np.einsum("lk,lkc->lc", bary[k], model.neutral[vertices[k]]) - frontal, axis=1)
        print(f"yaw {yaw:+.0f}: {keep.sum()} points re-derived; shift from the frontal point median "
              f"{np.median(moved[keep]) * 10:.1f} mm, 90th percentile {np.percentile(moved[keep], 90) * 10:.1f} mm")
    np.savez_compressed(OUT, yaws=np.asarray(YAWS, np.float32), vertices=vertices, bary=bary, hits=hits)
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
