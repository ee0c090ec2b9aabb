"""The ``kira`` protocol: is the identity a single photo gives the same for one person in every view?

Ten photos of one person (``<shared>/eval/multiview/keentools-kira``, frontal to both profiles, one
known camera) are fitted one at a time. Each fit's neutral identity head (its identity coefficients,
no expression) is compared on the face area after similarity alignment to the heads' mean: the
*spread* is the RMS per-vertex distance from that mean, in mm. It is set against the same statistic
over different people:

- ``between people``: single-photo fits of the 16 AFLW2000-3D-16 faces (16 people, frontal to beyond
  45 degrees of yaw, as kira's views are), by the same method, so that pose-driven fit noise enters
  both figures alike;
- ``prior``: identities drawn from the model's prior (``model.sample_identity``), the spread of real
  heads as the model knows it, the same for every method.

A method that reads identity from the photo has a within-person spread well below its between-people
spread (ratio << 1); a method that returns near the mean head has both near zero and a ratio near 1.
"""
from __future__ import annotations

import numpy as np

from ..camera import Camera
from ..geometry import umeyama
from ..load import load_image
from ..model import FACE_AREA, sample_identity
from .datasets import aflw2000_3d, kira_photos
from .metrics import finite_mean
from .protocols import Context, ProtocolResult, default_camera, reconstruct

PRIOR_IDENTITIES = 16
PRIOR_SEED = 1401
ALIGN_ITERATIONS = 3


def identity_heads_mm(model, identities: list[np.ndarray]) -> np.ndarray:
    """(N, F, 3) the neutral face-area heads of (n_identity,) coefficient vectors, mm."""
    return np.stack([model.shape(np.asarray(i, np.float32))[FACE_AREA].astype(np.float64) * 10.0
                     for i in identities])


def identity_spread(heads: np.ndarray) -> tuple[float, np.ndarray]:
    """Spread of (N >= 2, F, 3) heads in corresponding vertices: each is aligned by a similarity
    (Umeyama) to their mean, the mean recomputed from the aligned heads, ``ALIGN_ITERATIONS`` times.
    Returns the RMS per-vertex distance from the mean over all heads, with N / (N - 1) Bessel's
    correction so that sets of different sizes compare, and each head's own RMS distance (N,)."""
    heads = np.asarray(heads, np.float64)
    if len(heads) < 2:
        raise ValueError(f"a spread needs at least 2 heads, got {len(heads)}")
    aligned = heads.copy()
    for _ in range(ALIGN_ITERATIONS):
        mean = aligned.mean(0)
        aligned = np.stack([umeyama(h, mean).apply(h) for h in heads])
    sq = np.sum((aligned - aligned.mean(0)) ** 2, axis=2)                  # (N, F)
    n = len(heads)
    return float(np.sqrt(sq.mean() * n / (n - 1))), np.sqrt(sq.mean(1))


def _fit_identities(ctx: Context, method: str, photos: list, camera_of) -> tuple[list[np.ndarray], list[dict]]:
    """The identity of the best-detected face in each photo (None where nothing was reconstructed)."""
    identities, rows = [], []
    for path in photos:
        image = load_image(path)
        faces = ctx.run.detect(image).faces
        face = reconstruct(ctx.run, method, image, faces[0], camera_of(image)) if faces else None
        rows.append({"image": path.name, "method": method, "reconstructed": face is not None,
                     "yaw": float(face.fit.angles[0]) if face is not None else np.nan})
        if face is not None:
            identities.append(face.fit.identity)
    return identities, rows


def kira_protocol(ctx: Context) -> ProtocolResult:
    kira = kira_photos()
    photos, others = kira.photos, [s.image_path for s in aflw2000_3d()]
    if ctx.smoke:   # frontal, a half turn and a profile
        photos, others = photos[::4][:3], others[:3]
    model = ctx.run.model

    def kira_camera(image: np.ndarray) -> Camera:
        return Camera.for_image(image.shape[1], image.shape[0], kira.fov_deg, source="given")

    rng = np.random.default_rng(PRIOR_SEED)
    prior_mm, _ = identity_spread(identity_heads_mm(
        model, [sample_identity(rng, model) for _ in range(3 if ctx.smoke else PRIOR_IDENTITIES)]))
    summary, rows = {}, []
    for method in ctx.methods:
        own, own_rows = _fit_identities(ctx, method, photos, kira_camera)
        between, _ = _fit_identities(ctx, method, others, default_camera)
        spread, per_photo = identity_spread(identity_heads_mm(model, own)) if len(own) > 1 else (np.nan, [])
        between_mm = identity_spread(identity_heads_mm(model, between))[0] if len(between) > 1 else np.nan
        for row, dist in zip((r for r in own_rows if r["reconstructed"]), per_photo):
            row["distance_from_mean_mm"] = float(dist)
        rows += own_rows
        summary[method] = {"spread_mm": spread, "between_people_mm": between_mm, "prior_mm": prior_mm,
                           "spread / between people": spread / between_mm,
                           "spread / prior": spread / prior_mm,
                           "max distance from mean mm": float(np.max(per_photo)) if len(per_photo) else np.nan,
                           "reconstructed": sum(r["reconstructed"] for r in own_rows),
                           "between people reconstructed": len(between),
                           "mean abs yaw deg": finite_mean(np.abs([r["yaw"] for r in own_rows]))}
    notes = [f"{len(photos)} photos of one person (keentools-kira, field of view {kira.fov_deg} deg, each fitted "
             f"alone from our detector's best face) against {len(others)} AFLW2000-3D-16 people (one photo each, "
             "default camera) and against identities from the model prior (seed "
             f"{PRIOR_SEED}). Spread: RMS per-vertex distance (mm) of each neutral identity head's face area "
             "(9,409 vertices) from the heads' mean after similarity (Umeyama) alignment, with Bessel's "
             "correction; 'spread / between people' under 1 means the method tells this person from others."]
    return ProtocolResult("kira", summary, rows, notes, headline="spread / between people")
