"""Nearest-neighbour ICP (rigid, or rigid + scale) for meshes without a known correspondence."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..geometry import Similarity, umeyama


@dataclass(frozen=True)
class IcpResult:
    transform: Similarity      # source -> target
    rmse: float                # over the kept source -> target pairs of the last pairing, target units
    iterations: int


def _trimmed(dist: np.ndarray, keep: float) -> np.ndarray:
    return dist <= np.quantile(dist, keep)


def icp(source: np.ndarray, target: np.ndarray, initial: Similarity | None = None,
        with_scale: bool = True, iterations: int = 50, keep: float = 0.9,
        tolerance: float = 1e-6) -> IcpResult:
    """Align (n, 3) ``source`` points onto the (m, 3) ``target`` cloud.

    Each iteration pairs every moved source point with its nearest target point, drops the worst
    ``1 - keep`` fraction of pairs (parts of one surface the other does not cover) and solves the
    similarity from the original source points in closed form (Umeyama), so errors do not add up.
    With a free scale, one-way pairs let the source shrink onto a patch of the target (every point
    still finds a near neighbour), so the target -> source pairs are added too: a shrunk source
    leaves target points far away. Rigid ICP uses one-way pairs, for a source that lies within the
    target (a scan crop onto a reconstructed face). Starts from ``initial``, else from matched
    centroids. Stops when the trimmed RMSE improves by less
    than ``tolerance`` (relative).
    """
    tree = cKDTree(target)
    src = np.asarray(source, np.float64)
    dst = np.asarray(target, np.float64)
    # Without a starting guess, start from matched centroids.
    transform = initial or Similarity(1.0, np.eye(3), dst.mean(0) - src.mean(0))
    previous, error, it = np.inf, np.inf, 0
    for it in range(1, iterations + 1):
        moved = transform.apply(src)
        dist, idx = tree.query(moved)
        kept = _trimmed(dist, keep)
        pairs_src, pairs_dst = src[kept], dst[idx[kept]]
        if with_scale:
            back_dist, back_idx = cKDTree(moved).query(dst)
            back = _trimmed(back_dist, keep)
            pairs_src = np.concatenate([pairs_src, src[back_idx[back]]])
            pairs_dst = np.concatenate([pairs_dst, dst[back]])
        transform = umeyama(pairs_src, pairs_dst, with_scale)
        error = float(np.sqrt(np.mean(dist[kept] ** 2)))
        if previous - error <= tolerance * max(error, 1e-12):
            break
        previous = error
    return IcpResult(transform, error, it)
