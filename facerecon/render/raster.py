"""Z-buffer triangle rasterisation on the CPU (numba).

Every renderer output (shaded images, depth, UV and normal maps, texture baking in UV space) is
built from the three buffers this module returns: which triangle covers each pixel, the
perspective-correct barycentric weights there, and the depth.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

CULL_NONE, CULL_BACK = 0, 1


@dataclass
class Fragments:
    """Per-pixel rasterisation result for an image of H x W pixels."""

    triangle: np.ndarray   # (H, W) int32, -1 where no triangle covers the pixel
    bary: np.ndarray       # (H, W, 3) float32, perspective-correct barycentric weights
    depth: np.ndarray      # (H, W) float32 camera depth, +inf where empty

    @property
    def mask(self) -> np.ndarray:
        return self.triangle >= 0


@numba.njit(cache=True, fastmath=True, nogil=True)
def rasterize_into(xy, z, tris, cull, tri_id, bary, depth):
    """The z-buffer kernel behind :func:`rasterize`: fills ``tri_id`` (H, W), ``bary`` (H, W, 3)
    and ``depth`` (H, W, starting far) in place (the renderer's pipeline calls it directly)."""
    height, width = depth.shape
    for t in range(tris.shape[0]):
        a, b, c = tris[t, 0], tris[t, 1], tris[t, 2]
        za, zb, zc = z[a], z[b], z[c]
        if za <= 0 or zb <= 0 or zc <= 0:
            continue
        xa, ya, xb, yb, xc, yc = xy[a, 0], xy[a, 1], xy[b, 0], xy[b, 1], xy[c, 0], xy[c, 1]
        area = (xb - xa) * (yc - ya) - (xc - xa) * (yb - ya)
        if area == 0 or (cull == 1 and area > 0):
            continue
        x0 = max(int(np.ceil(min(xa, xb, xc))), 0)
        x1 = min(int(np.floor(max(xa, xb, xc))), width - 1)
        y0 = max(int(np.ceil(min(ya, yb, yc))), 0)
        y1 = min(int(np.floor(max(ya, yb, yc))), height - 1)
        if x0 > x1 or y0 > y1:
            continue
        inv_area = 1.0 / area
        ia, ib, ic = 1.0 / za, 1.0 / zb, 1.0 / zc
        for py in range(y0, y1 + 1):
            for px in range(x0, x1 + 1):
                wa = ((xb - px) * (yc - py) - (xc - px) * (yb - py)) * inv_area
                wb = ((xc - px) * (ya - py) - (xa - px) * (yc - py)) * inv_area
                wc = 1.0 - wa - wb
                if wa < 0 or wb < 0 or wc < 0:
                    continue
                pa, pb, pc = wa * ia, wb * ib, wc * ic
                s = pa + pb + pc
                d = 1.0 / s
                if d < depth[py, px]:
                    depth[py, px] = d
                    tri_id[py, px] = t
                    bary[py, px, 0] = pa * d
                    bary[py, px, 1] = pb * d
                    bary[py, px, 2] = pc * d


def rasterize(xy: np.ndarray, z: np.ndarray, triangles: np.ndarray, height: int, width: int,
              cull_back: bool = False) -> Fragments:
    """Rasterise triangles given in pixel space.

    xy: (N, 2) pixel coordinates (pixel centres at integers); z: (N,) positive camera depth (use
    ones for an orthographic/UV-space pass); triangles: (T, 3) vertex indices. With ``cull_back``,
    triangles whose corners run counter-clockwise in the image (y down) are skipped, which is
    back-facing for ICT's winding.
    """
    tri_id = np.full((height, width), -1, np.int32)
    bary = np.zeros((height, width, 3), np.float32)
    depth = np.full((height, width), np.inf, np.float32)
    rasterize_into(np.ascontiguousarray(xy, np.float32), np.ascontiguousarray(z, np.float32),
                   np.ascontiguousarray(triangles, np.int32), CULL_BACK if cull_back else CULL_NONE,
                   tri_id, bary, depth)
    return Fragments(tri_id, bary, depth)


def interpolate(fragments: Fragments, attributes: np.ndarray, triangles: np.ndarray,
                fill: float = 0.0) -> np.ndarray:
    """Interpolate per-vertex ``attributes`` (N, C) over covered pixels -> (H, W, C) float32."""
    mask = fragments.mask
    out = np.full(mask.shape + (attributes.shape[1],), fill, np.float32)
    corners = triangles[fragments.triangle[mask]]                    # (P, 3)
    weights = fragments.bary[mask]                                   # (P, 3)
    out[mask] = np.einsum("pk,pkc->pc", weights, attributes[corners])
    return out
