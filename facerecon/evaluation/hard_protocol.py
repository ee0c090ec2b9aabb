"""The ``hard`` protocol: AFLW2000-3D photos made dark, noisy, blurred, over-compressed and small;
detection rate and landmark error on each."""
from __future__ import annotations

import cv2
import numpy as np

from ..detect import box_detection
from ..load import load_image
from .datasets import aflw2000_3d
from .metrics import box_size, finite_mean, nme
from .peer import peer_landmarks68
from .protocols import PEER, Context, ProtocolResult, default_camera, match_detection, reconstruct


def _srgb_ev(image: np.ndarray, ev: float) -> np.ndarray:
    """Exposure change of ``ev`` stops in linear light (gamma 2.2)."""
    linear = (image.astype(np.float32) / 255.0) ** 2.2 * 2.0 ** ev
    return (np.clip(linear, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def variants(image: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, float]]:
    """Degraded copies of a photo: name -> (image, scale of its pixel coordinates vs the original)."""
    noisy = np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)
    small = 50.0 / max(box[2] - box[0], box[3] - box[1])     # a face of about 50 px
    return {"dark -2 EV": (_srgb_ev(image, -2), 1.0), "dark -3 EV": (_srgb_ev(image, -3), 1.0),
            "noise sigma 20": (noisy, 1.0), "blur sigma 3": (cv2.GaussianBlur(image, (0, 0), 3), 1.0),
            "jpeg q 8": (_jpeg(image, 8), 1.0),
            "small 50 px": (cv2.resize(image, None, fx=small, fy=small, interpolation=cv2.INTER_AREA), small)}


def hard(ctx: Context) -> ProtocolResult:
    samples = aflw2000_3d()[: 2 if ctx.smoke else None]
    rng = np.random.default_rng(7)
    who = [*ctx.methods, *([PEER] if ctx.with_peer else [])]
    rows = []
    for s in samples:
        clean = load_image(s.image_path)
        for variant, (image, scale) in {"clean": (clean, 1.0), **variants(clean, s.box, rng)}.items():
            box, points = s.box * scale, s.points[:, :2] * scale
            size = box_size(points)
            row = {"image": s.image_path.name, "variant": variant,
                   "detected": match_detection(ctx.run.detect(image).faces, box) is not None}
            for name in ctx.methods:
                face = reconstruct(ctx.run, name, image, box_detection(box), default_camera(image))
                row[name] = nme(face.landmarks68()[0], points, size) if face else np.nan
            if ctx.with_peer:
                row[PEER] = nme(peer_landmarks68(image, box)[:, :2], points, size)
            rows.append(row)
    names = list(dict.fromkeys(r["variant"] for r in rows))
    summary = {w: {f"nme2d {v}": finite_mean([r[w] for r in rows if r["variant"] == v]) for v in names} for w in who}
    for name in ctx.methods:
        summary[name].update({f"detection {v}": finite_mean([r["detected"] for r in rows if r["variant"] == v]) for v in names})
        summary[name]["failed landmarks"] = int(sum(not np.isfinite(r[name]) for r in rows))
    notes = ["AFLW2000-3D photos degraded: exposure -2 / -3 EV in linear light, Gaussian noise (sigma 20), "
             "Gaussian blur (sigma 3 px), JPEG quality 8, and shrunk so the face box is ~50 px. Detection "
             "rate: our detector finds the face (matched to the ground-truth box). NME (2D, by box size) "
             "with the ground-truth box given to both methods, so it measures landmarks + fit alone; "
             "faces where Face Mesh gives up are counted in 'failed landmarks' and left out of the mean."]
    return ProtocolResult("hard", summary, rows, notes, "nme2d small 50 px")
