"""Each view's share of the subject, parted from what touches it in the fused volume.

The subject's region (``fusion.find_subject``) is a box: a table leg or a wall corner beside a pet
lies in it, and the TSDF joins it to the pet in one piece that no rule on pieces can part. In a
view, though, such things are parted from the subject by a jump in depth. So each depth map is cut
where neighbouring depths differ by more than ``FusionSettings.depth_jump`` of their depth, after
dropping what lies outside the box or on the dropped plane (the floor the subject stands on joins
everything), and the connected regions holding the view's points nearest the point the cameras
look at (``seed_share`` of them) are the view's vote for the subject. A subject parts from itself
in some views too (an ear or a nose in front of the cheek behind it), but not in the views that see
it run on smoothly; so the views vote on a grid over the box (``vote_cells`` along its longest
side), and a depth is kept where at least ``vote_share`` of the views that put a depth in its cell
put it in a subject region. Depth, not colour, decides: a grey cat on a grey bed parts where
GrabCut did not (docs/scan.md).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .depth import DepthMap, backproject
from .fusion import FusionSettings, Subject


# pixel (y, x) joins (y + dy, x + dx) for these offsets: its 8 neighbours and those 2 and 3 pixels
# away in a row or column, so that the consistency check's pinholes do not break a surface apart
JOIN_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1), (0, 2), (2, 0), (0, 3), (3, 0))


def subject_regions(depth_map: DepthMap, subject: Subject, settings: FusionSettings = FusionSettings()
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The map's depths inside the subject's box and above its plane: world points (P, 3), pixels
    (P, 2) x, y, and whether each lies in a region the view's seeds hold (P,) bool."""
    depth = depth_map.depth.copy()
    world, pixels = backproject(depth_map)
    inside = np.all((world >= subject.lower) & (world <= subject.upper), axis=1)
    if subject.plane is not None:
        inside &= world @ subject.plane[:3] + subject.plane[3] >= subject.plane_slab
    depth[pixels[~inside, 1], pixels[~inside, 0]] = 0
    world, pixels = world[inside], pixels[inside]
    if not len(world):
        return world, pixels, np.zeros(0, bool)
    h, w = depth.shape
    index = np.arange(h * w).reshape(h, w)
    pairs = []
    for dy, dx in JOIN_OFFSETS:
        a, b = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx))), (slice(dy, h), slice(max(0, dx), w - max(0, -dx)))
        da, db = depth[a], depth[b]
        joined = (da > 0) & (db > 0) & (np.abs(da - db) <= settings.depth_jump * np.minimum(da, db))
        pairs.append((index[a][joined], index[b][joined]))
    rows, cols = (np.concatenate(p) for p in zip(*pairs))
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(h * w, h * w))
    labels = connected_components(graph, directed=False)[1][pixels[:, 1] * w + pixels[:, 0]]
    distance = np.linalg.norm(world - subject.centre, axis=1)
    seeds = labels[distance <= np.quantile(distance, settings.seed_share)]
    return world, pixels, np.isin(labels, seeds)


def segment_views(maps: list[DepthMap], subject: Subject, settings: FusionSettings = FusionSettings()) -> list[DepthMap]:
    """Every map with the depths that are not the subject's set to 0 (unknown); ``maps`` itself
    where ``depth_jump`` is 0."""
    if not settings.depth_jump:
        return maps
    regions = [subject_regions(m, subject, settings) for m in maps]
    cell = float((subject.upper - subject.lower).max()) / settings.vote_cells
    dims = np.maximum(np.ceil((subject.upper - subject.lower) / cell).astype(int), 1)

    def cells(world):
        index = np.clip(np.floor((world - subject.lower) / cell).astype(int), 0, dims - 1)
        return np.ravel_multi_index(tuple(index.T), dims)

    seen, held = np.zeros(int(np.prod(dims))), np.zeros(int(np.prod(dims)))
    for world, _, in_subject in regions:
        views_cells = cells(world)
        seen[np.unique(views_cells)] += 1
        held[np.unique(views_cells[in_subject])] += 1
    subject_cells = held >= settings.vote_share * np.maximum(seen, 1)
    out = []
    for m, (world, pixels, _) in zip(maps, regions):
        depth = np.zeros_like(m.depth)
        keep = pixels[subject_cells[cells(world)]]
        depth[keep[:, 1], keep[:, 0]] = m.depth[keep[:, 1], keep[:, 0]]
        out.append(replace(m, depth=depth))
    return out
