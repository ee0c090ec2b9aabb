"""From depth maps to the subject's mesh: find the subject, fuse a truncated signed distance
volume (TSDF), extract its zero surface, keep the subject's pieces, smooth and decimate.

The subject is what the cameras look at: the depth maps' points are binned on a coarse grid, the
dominant plane (a wall, a table) is dropped when it holds a large share of them (with everything
behind it and a slab in front of it: wallpaper a little off the fitted plane is wall too), and the connected
cluster of occupied cells nearest the point the optical axes meet is the subject's region. The TSDF
covers that region only, so the room around it never enters the mesh.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import trimesh
from scipy import ndimage

from ..errors import ScanInputError, require
from .cameras import ViewCamera, look_at_point
from .depth import DepthMap, backproject


@dataclass(frozen=True)
class FusionSettings:
    resolution: int = 192            # voxels along the region's longest side
    truncation_voxels: float = 4.0   # the TSDF's band, in voxels
    min_weight: int = 2              # views that must observe a voxel for it to carry the surface
    region_cells: int = 48           # the coarse grid that finds the subject's cluster
    plane_share: float = 0.2         # a plane holding at least this share of the points is dropped
    plane_tolerance: float = 0.004   # plane inlier distance, as a share of the median camera distance
    plane_slab: float = 0.012        # ... and the slab in front of a dropped plane that goes with it
    smoothing_iterations: int = 10   # Taubin smoothing of the extracted surface
    max_faces: int = 20_000          # the mesh is decimated to at most this many triangles
    min_piece: float = 0.05          # pieces with less than this share of the faces are dropped
    piece_reach: float = 1.0         # ... and those outside the subject piece's ball about the look-at point, times this
    # TSDF weight: (cosine of the viewing angle) ** this. The surface's median error on calibration
    # head 500 (12 / 24 views, 192 px): 0: 0.84 / 1.15 mm, 1: 0.59 / 0.91, 2: 0.53 / 0.87, 3: 0.48 / 0.91
    angle_power: float = 2.0
    rim_cos: float = 0.3             # ... the cosine taken where a depth has no neighbours to give a normal
    max_hole: float = 0.3            # holes whose rim is shorter than this share of the region's size are filled
    # each view cut to the subject (segment.py): neighbouring depths this share apart part regions
    # (0: no cut); the regions holding the view's seed_share of points nearest the look-at point
    # vote for the subject, on a grid of vote_cells over the box; a cell needs vote_share of its views
    depth_jump: float = 0.03
    seed_share: float = 0.05
    vote_cells: int = 96
    vote_share: float = 0.5


@dataclass
class Subject:
    """Where the subject is: an axis-aligned box in the world, and the plane dropped, if any."""

    lower: np.ndarray                # (3,) world
    upper: np.ndarray                # (3,)
    centre: np.ndarray               # (3,) the point the cameras look at
    plane: np.ndarray | None         # (4,) n . x + d = 0 with |n| = 1, n towards the cameras, or None
    plane_slab: float                # points with n . x + d below this are dropped (world units)
    plane_share: float               # the share of the points on the dropped plane (0 without one)


def dominant_plane(points: np.ndarray, tolerance: float, rng: np.random.Generator,
                   trials: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """RANSAC: the plane (4,) with the most points within ``tolerance``, and its inlier mask."""
    sample = points[rng.choice(len(points), min(len(points), 20_000), replace=False)]
    best, best_count = np.zeros(4), -1
    for _ in range(trials):
        a, b, c = sample[rng.choice(len(sample), 3, replace=False)]
        n = np.cross(b - a, c - a)
        norm = np.linalg.norm(n)
        if norm < 1e-12:
            continue
        n /= norm
        count = np.count_nonzero(np.abs(sample @ n - n @ a) < tolerance)
        if count > best_count:
            best, best_count = np.append(n, -n @ a), count
    return best, np.abs(points @ best[:3] + best[3]) < tolerance


def find_subject(points: np.ndarray, cameras: list[ViewCamera], settings: FusionSettings = FusionSettings(),
                 seed: int = 0) -> Subject:
    """The subject's region from the fused depth points (P, 3)."""
    if len(points) < 100:
        raise ScanInputError(f"the views gave {len(points)} consistent depth points: they do not overlap, "
                             "or the subject shows too little texture")
    centre = look_at_point(cameras)
    distance = float(np.median([np.linalg.norm(c.centre - centre) for c in cameras]))
    slab = settings.plane_slab * distance
    plane, on_plane = dominant_plane(points, settings.plane_tolerance * distance, np.random.default_rng(seed))
    share = float(on_plane.mean())
    if share >= settings.plane_share:
        # the cameras must all be on one side of a wall or table: a plane through the subject stays
        sides = np.sign([c.centre @ plane[:3] + plane[3] for c in cameras])
        if abs(sides.sum()) == len(cameras):
            plane = plane * sides[0]
            points = points[points @ plane[:3] + plane[3] >= slab]
        else:
            plane, share = None, 0.0
    else:
        plane, share = None, 0.0
    lower, upper = np.percentile(points, 0.5, axis=0), np.percentile(points, 99.5, axis=0)
    lower, upper = lower - 0.1 * (upper - lower), upper + 0.1 * (upper - lower)
    cell = (upper - lower).max() / settings.region_cells
    index = np.floor((points - lower) / cell).astype(int)
    inside = np.all((index >= 0) & (index < settings.region_cells), axis=1)
    grid = np.zeros((settings.region_cells,) * 3, np.int32)
    np.add.at(grid, tuple(index[inside].T), 1)
    occupied = ndimage.binary_closing(grid >= 2, iterations=1) | (grid >= 2)
    labels, count = ndimage.label(occupied, structure=np.ones((3, 3, 3)))
    if count == 0:
        raise ScanInputError("no cluster of depth points found where the cameras look: the views do not overlap")
    cells = np.argwhere(labels > 0)
    centres = lower + (cells + 0.5) * cell
    sizes = np.bincount(labels.ravel())
    # nearest the look-at point, ties to the bigger cluster: distance in cells minus a size bonus
    score = np.linalg.norm(centres - centre, axis=1) / cell - np.log1p(sizes[labels[tuple(cells.T)]])
    chosen = labels[tuple(cells[np.argmin(score)])]
    mine = cells[labels[tuple(cells.T)] == chosen]
    box_lower = lower + (mine.min(0) - 2) * cell
    box_upper = lower + (mine.max(0) + 3) * cell
    return Subject(box_lower, box_upper, centre, plane, slab, share)


def subject_points(maps: list[DepthMap]) -> np.ndarray:
    """All consistent depth points in the world (P, 3)."""
    return np.concatenate([backproject(m)[0] for m in maps]) if maps else np.zeros((0, 3))


@numba.njit(cache=True)
def _sample(depth, u, w, trunc):
    """The depth map at the continuous pixel (u, w): bilinear where the four pixels around it hold
    depths of one surface (within ``trunc``), else the nearest pixel's (0: unknown)."""
    height, width = depth.shape
    u0, w0 = int(np.floor(u)), int(np.floor(w))
    if u0 >= 0 and w0 >= 0 and u0 + 1 < width and w0 + 1 < height:
        a, b, c, d = depth[w0, u0], depth[w0, u0 + 1], depth[w0 + 1, u0], depth[w0 + 1, u0 + 1]
        if a > 0 and b > 0 and c > 0 and d > 0 and max(a, b, c, d) - min(a, b, c, d) < trunc:
            fu, fw = u - u0, w - w0
            return (a * (1 - fu) + b * fu) * (1 - fw) + (c * (1 - fu) + d * fu) * fw
    ui, wi = int(np.floor(u + 0.5)), int(np.floor(w + 0.5))
    if ui < 0 or ui >= width or wi < 0 or wi >= height:
        return 0.0
    return depth[wi, ui]


@numba.njit(cache=True, parallel=True, fastmath=True)
def _integrate(origin, voxel, dims, Ks, Rs, ts, depths, confidence, plane, use_plane, slab, trunc, tsdf, weight):
    nx, ny, nz = dims[0], dims[1], dims[2]
    height, width = depths.shape[1], depths.shape[2]
    for i in numba.prange(nx):
        for j in range(ny):
            for k in range(nz):
                px = origin[0] + (i + 0.5) * voxel
                py = origin[1] + (j + 0.5) * voxel
                pz = origin[2] + (k + 0.5) * voxel
                acc, total, count = 0.0, 0.0, 0
                for v in range(depths.shape[0]):
                    R, t, K = Rs[v], ts[v], Ks[v]
                    x = R[0, 0] * px + R[0, 1] * py + R[0, 2] * pz + t[0]
                    y = R[1, 0] * px + R[1, 1] * py + R[1, 2] * pz + t[1]
                    z = R[2, 0] * px + R[2, 1] * py + R[2, 2] * pz + t[2]
                    if z <= 0:
                        continue
                    u = (K[0, 0] * x + K[0, 1] * y) / z + K[0, 2]
                    w = K[1, 1] * y / z + K[1, 2]
                    if u < -0.5 or u >= width - 0.5 or w < -0.5 or w >= height - 0.5:
                        continue
                    d = _sample(depths[v], u, w, trunc)
                    if d <= 0:
                        continue
                    sdf = d - z
                    if sdf < -trunc:
                        continue
                    c = confidence[v, int(np.floor(w + 0.5)), int(np.floor(u + 0.5))]
                    acc += c * min(1.0, sdf / trunc)
                    total += c
                    count += 1
                if use_plane and plane[0] * px + plane[1] * py + plane[2] * pz + plane[3] < slab:
                    count = 0   # the dropped plane, its slab and what lies behind carry no surface
                if count > 0 and total > 0:
                    tsdf[i, j, k] = acc / total
                    weight[i, j, k] = count


def depth_confidence(depth_map: DepthMap, settings: FusionSettings = FusionSettings()) -> np.ndarray:
    """(H, W) float32 how much each depth counts in the TSDF: the cosine between the viewing ray and
    the depth map's own surface normal (a grazing view's depths are the noisiest), raised to
    ``angle_power`` (0: all alike)."""
    depth = depth_map.depth.astype(np.float64)
    height, width = depth.shape
    if not settings.angle_power:
        return np.ones((height, width), np.float32)
    ys, xs = np.mgrid[0:height, 0:width]
    rays = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.linalg.inv(depth_map.camera.K).T
    points = rays * depth[..., None]
    # the normal from central differences, where a depth has both neighbours along both axes
    known = depth > 0
    both = np.zeros_like(known)
    both[1:-1, 1:-1] = known[1:-1, 2:] & known[1:-1, :-2] & known[2:, 1:-1] & known[:-2, 1:-1]
    du, dv = np.zeros_like(points), np.zeros_like(points)
    du[:, 1:-1] = points[:, 2:] - points[:, :-2]
    dv[1:-1] = points[2:] - points[:-2]
    normal = np.cross(du, dv)
    norm = np.linalg.norm(normal, axis=-1) * np.linalg.norm(rays, axis=-1)
    cos = np.abs(np.einsum("hwc,hwc->hw", normal, rays)) / np.maximum(norm, 1e-12)
    # a depth without both neighbours (a gap's rim) counts as a steep one
    cos = np.where(both, np.maximum(cos, 0.05), settings.rim_cos)
    return (cos ** settings.angle_power).astype(np.float32)


def fuse(maps: list[DepthMap], subject: Subject, settings: FusionSettings = FusionSettings()) -> trimesh.Trimesh:
    """The subject's surface: TSDF over its box, marching cubes, its main pieces, smoothed, decimated."""
    measure = require("skimage.measure", "scan", "the scan's surface extraction")
    extent = subject.upper - subject.lower
    voxel = float(extent.max() / settings.resolution)
    dims = np.maximum(np.ceil(extent / voxel).astype(np.int64), 2)
    shape = max(m.depth.shape for m in maps)
    depths = np.zeros((len(maps),) + shape, np.float32)
    confidence = np.zeros((len(maps),) + shape, np.float32)
    for v, m in enumerate(maps):
        depths[v, :m.depth.shape[0], :m.depth.shape[1]] = m.depth
        confidence[v, :m.depth.shape[0], :m.depth.shape[1]] = depth_confidence(m, settings)
    Ks = np.array([m.camera.K for m in maps], np.float64)
    Rs = np.array([m.camera.R for m in maps], np.float64)
    ts = np.array([m.camera.t for m in maps], np.float64)
    tsdf = np.ones(tuple(dims), np.float32)
    weight = np.zeros(tuple(dims), np.int32)
    plane = subject.plane if subject.plane is not None else np.zeros(4)
    _integrate(subject.lower.astype(np.float64), voxel, dims, Ks, Rs, ts, depths, confidence, plane.astype(np.float64),
               subject.plane is not None, float(subject.plane_slab), settings.truncation_voxels * voxel, tsdf, weight)
    mask = weight >= settings.min_weight
    if not (tsdf[mask] < 0).any() or not (tsdf[mask] > 0).any():
        raise ScanInputError("the depth maps do not agree on a surface: the views do not overlap enough")
    # a cube must have all eight corners observed, else the unobserved voxels' value makes a surface
    # of its own; scikit-image reads a cube's mask at its last corner (the cube from i - 1 to i)
    cubes = np.zeros_like(mask)
    cubes[1:, 1:, 1:] = np.logical_and.reduce([mask[i:mask.shape[0] - 1 + i, j:mask.shape[1] - 1 + j,
                                                      k:mask.shape[2] - 1 + k]
                                                 for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    verts, faces, _, _ = measure.marching_cubes(tsdf, 0.0, spacing=(voxel,) * 3, mask=cubes)
    mesh = trimesh.Trimesh(verts + subject.lower + 0.5 * voxel, faces, process=True)
    return clean(mesh, subject.centre, settings)


def vertex_support(vertices: np.ndarray, maps: list[DepthMap], subject: Subject,
                   settings: FusionSettings = FusionSettings()) -> np.ndarray:
    """(N,) int: how many depth maps confirm each surface vertex (N, 3) world, a depth within one
    voxel of the vertex's at its pixel. Zero where the surface only bridges what no view measured
    (closed holes, the smoothing's reach over gaps): on synthetic heads those vertices are most of
    the ones far off the true surface."""
    tolerance = float((subject.upper - subject.lower).max() / settings.resolution)
    vertices = np.asarray(vertices, np.float64)
    count = np.zeros(len(vertices), np.int32)
    for m in maps:
        uv, z = m.camera.project(vertices)
        x, y = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
        inside = (z > 0) & (x >= 0) & (x < m.depth.shape[1]) & (y >= 0) & (y < m.depth.shape[0])
        depth = np.zeros(len(vertices))
        depth[inside] = m.depth[y[inside], x[inside]]
        count += (depth > 0) & (np.abs(depth - z) < tolerance)
    return count


def boundary_loops(faces: np.ndarray) -> list[list[int]]:
    """The closed loops of boundary edges (edges of one face), each as vertex indices in the order
    of its faces' winding."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(edges, axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    boundary = edges[counts[inverse.ravel()] == 1]
    following: dict[int, list[int]] = {}
    for a, b in boundary:
        following.setdefault(int(a), []).append(int(b))
    loops = []
    while following:
        start = next(iter(following))
        loop, vertex = [start], start
        while True:
            nexts = following.get(vertex)
            if not nexts:
                break
            step = nexts.pop()
            if not nexts:
                del following[vertex]
            if step == start:
                loops.append(loop)
                break
            loop.append(step)
            vertex = step
    return loops


def fill_holes(mesh: trimesh.Trimesh, max_rim: float) -> trimesh.Trimesh:
    """Close each hole whose rim is shorter than ``max_rim`` with a fan around the rim's centroid
    (the smoothing that follows relaxes it): gaps in the depth maps should not be holes in the skin."""
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    new_vertices, new_faces = [], []
    for loop in boundary_loops(faces):
        rim = vertices[loop]
        if len(loop) < 3 or np.linalg.norm(rim - np.roll(rim, 1, axis=0), axis=1).sum() > max_rim:
            continue
        centre = len(vertices) + len(new_vertices)
        new_vertices.append(rim.mean(0))
        # the rim runs with its faces' winding: the fan's triangles run against it
        new_faces += [(b, a, centre) for a, b in zip(loop, loop[1:] + loop[:1])]
    if not new_vertices:
        return mesh
    return trimesh.Trimesh(np.concatenate([vertices, new_vertices]), np.concatenate([faces, new_faces]), process=False)


def subject_pieces(mesh: trimesh.Trimesh, centre: np.ndarray, settings: FusionSettings = FusionSettings()) -> np.ndarray:
    """(F,) bool: the faces of the subject's pieces. Of the pieces that hold ``min_piece`` of the
    faces, the one nearest the point the cameras look at (``centre``) is the subject; another is part
    of it when it reaches into the ball about that point that the first one fills (a subject with
    holes falls apart into pieces round that point; things beside it on a shelf or a wall lie
    outside)."""
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    sizes = np.bincount(labels)
    distance = np.linalg.norm(np.asarray(mesh.vertices) - np.asarray(centre, np.float64), axis=1)[mesh.faces]
    nearest = np.full(len(sizes), np.inf)
    farthest = np.zeros(len(sizes))
    np.minimum.at(nearest, labels, distance.min(1))
    np.maximum.at(farthest, labels, distance.max(1))
    large = np.nonzero(sizes >= settings.min_piece * len(mesh.faces))[0]
    large = large if len(large) else np.arange(len(sizes))
    main = large[np.argmin(nearest[large])]
    keep = np.zeros(len(sizes), bool)
    keep[large] = nearest[large] <= settings.piece_reach * farthest[main]
    keep[main] = True
    return keep[labels]


def clean(mesh: trimesh.Trimesh, centre: np.ndarray, settings: FusionSettings = FusionSettings()) -> trimesh.Trimesh:
    """Keep the subject's pieces (``subject_pieces``), fill small holes, smooth (Taubin, which keeps
    the volume), decimate."""
    mesh.update_faces(subject_pieces(mesh, centre, settings))
    mesh.remove_unreferenced_vertices()
    mesh = fill_holes(mesh, settings.max_hole * float(np.ptp(mesh.vertices, axis=0).max()))
    if settings.smoothing_iterations:
        trimesh.smoothing.filter_taubin(mesh, iterations=settings.smoothing_iterations)
    if len(mesh.faces) > settings.max_faces:
        require("fast_simplification", "scan", "the scan's mesh decimation")
        mesh = mesh.simplify_quadric_decimation(face_count=settings.max_faces)
    mesh.remove_unreferenced_vertices()
    return mesh
