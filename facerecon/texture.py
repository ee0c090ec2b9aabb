"""Bake the head's UV texture (the model's atlas, see ``facerecon.model.ATLAS``) from one photo.

Every texel of the atlas is a point on the posed head. Where the photo sees that point well (in
front in the z-buffer, facing the camera, away from the head's silhouette), the texel takes its
colour; where it does not, the mirror-image point of the face stands in (a yawed head shows one
cheek well and the other badly; on the eyeballs, which share one UV region, the better-seen eye
stands in for the other); what neither sees is filled on the mesh, not in UV space,
so the fill is continuous across UV seams: a screened Laplacian over the mesh's vertices spreads the
observed colours into small holes and fades to a skin tone (the median colour of the well-seen
cheeks and forehead) over large unseen parts such as the back of the head. Texels outside the UV
islands copy their nearest island texel (a gutter), so texture filtering never reads background.

Several photos of one head (``fuse_textures``): each is sampled the same way (``view_samples``),
the views' colours are matched per channel on what they both see, and each texel blends the views
by how head-on they see it; mirror and fill stand in only where no view sees the texel.

Cost per bake: what depends only on the model and the texture size (the UV rasterisation, mirror
and eye correspondences, the mesh Laplacian, the gutter map) is built once, kept for the process
and on disk (``facerecon.diskcache``).
"""
from __future__ import annotations

import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numba
import numpy as np

from .camera import Camera
from .diskcache import cached_arrays
from .geometry import vertex_normals
from .model import EXPORTED_PARTS, PARTS, HeadModel, uv_to_texel
from .render.raster import rasterize

# Weight of a view as a function of the cosine between the surface normal and the ray to the camera:
# none at grazing angles (where a pixel smears a wide strip of surface), full from 60 degrees on.
COS_NONE, COS_FULL = 0.1, 0.5
# A texel is visible if it lies at most this far behind the photo's z-buffer; more is allowed on
# slanted surfaces, where depth changes by up to a depth-map pixel's footprint times tan(angle).
DEPTH_TOL_CM = 0.2
MAX_TAN = 4.0
# The photo-space z-buffer only decides visibility: this many pixels across the head are plenty.
DEPTH_MAP_MAX_PX = 640
# Near the head's silhouette in the photo a slightly misfitted mesh reads the background: weights
# ramp up from zero over this fraction of the head's size in the photo, inwards from the silhouette.
SILHOUETTE_MARGIN = 0.03
# Weights fade to zero over this fraction of the texture size inside an occlusion boundary, so the
# switch from the photo to the mirror or the fill leaves no visible edge.
FEATHER = 1.0 / 64.0
# Screened Laplacian fill on the mesh: the data term pulls observed vertices to their colour; the
# screening pulls everything weakly to the prior, so large unseen parts end up at the skin tone
# while holes a few edges wide take their surroundings' colour.
DATA_WEIGHT = 10.0
SCREENING = 0.05
JACOBI_SWEEPS = 40
# Prior colours for what the photo never shows: a generic skin tone when no skin is seen, and the
# eyeballs' sclera. The mouth socket is shaded dark; surfaces facing down (under the chin) slightly.
SKIN_FALLBACK = np.array([190.0, 145.0, 120.0], np.float32)
SCLERA = np.array([225.0, 215.0, 205.0], np.float32)
MOUTH_SHADE = 0.45
MIN_SKIN_SAMPLES = 10
# Fusing several photos: blend weights are view weights to this power (the most head-on view wins
# where two overlap); exposure gains come from texels both views see with at least this weight,
# when there are this many of them, and stay within this range (beyond it the overlap is suspect).
FUSE_POWER = 4.0
FUSE_OVERLAP_WEIGHT = 0.5
FUSE_MIN_OVERLAP = 200
FUSE_GAIN_RANGE = (0.6, 1.6)


@dataclass
class BakedTexture:
    """The head's atlas texture baked from one photo."""

    image: np.ndarray        # (S, S, 3) uint8 RGB, row 0 = top of the atlas = v 1
    visibility: np.ndarray   # (S, S) float32 in [0, 1], weight of the direct observation; 0 unseen


@dataclass(frozen=True)
class _ModelData:
    """What the bake needs from the model that does not depend on the texture size."""

    used: np.ndarray           # (n,) model vertex indices of the exported mesh
    mirror: np.ndarray         # (n,) position in ``used`` of each vertex's mirror image
    n_vertices: int            # V, all model vertices
    indptr: np.ndarray         # (n + 1,) and indices (E,) int32: the mesh edges between ``used``
    indices: np.ndarray        # vertices, as a CSR adjacency (neighbours of a vertex ascending)
    degree: np.ndarray         # (n,) float32 edges per vertex
    skin: np.ndarray           # (n,) bool, cheek and forehead vertices (the skin tone's samples)
    shade: np.ndarray          # (n,) float32 multiplier of the skin tone in the prior
    eyeball: np.ndarray        # (n,) bool
    eyes: tuple[np.ndarray, np.ndarray]   # positions in ``used`` of the left and right eyeballs
    point_corners: np.ndarray  # (n, 3) int32 ``used`` repeated, with point_bary (n, 3) float32
    point_bary: np.ndarray     # (1, 0, 0): the vertices themselves as points for ``_observe``


@dataclass(frozen=True)
class _Layout:
    """The atlas at one size: which point of the head each covered texel shows."""

    size: int
    texels: np.ndarray        # (N,) int64 flat index (row * size + col) of each covered texel
    corners: np.ndarray       # (N, 3) int32 model vertices of the texel's triangle
    bary: np.ndarray          # (N, 3) float32 barycentric weights
    alt_corners: np.ndarray   # (N, 3) int32: the mirror image, or on an eyeball the other eye
    alt_bary: np.ndarray      # (N, 3) float32
    eye_texels: np.ndarray    # (E,) int64 positions (into the N texels) on the left eyeball whose
                              # alternative is the right eyeball's point
    gutter: np.ndarray        # (G,) int64 flat indices of the texels outside the UV islands
    nearest: np.ndarray       # (G,) int64 flat index of the nearest covered texel of each


def bake_texture(image: np.ndarray, vertices_cam: np.ndarray, camera: Camera, model: HeadModel,
                 size: int = 1024) -> BakedTexture:
    """Bake the atlas texture of the head posed as ``vertices_cam`` (V, 3) cm from ``image`` (H, W, 3)
    uint8 RGB taken by ``camera``; ``size`` is the texture's width and height in texels."""
    photo = _PhotoView(image, vertices_cam, camera, model)
    vertex_colour, vertex_weight = photo.vertex_samples()
    with ThreadPoolExecutor(1) as pool:   # the mesh fill beside the texel passes (GIL-free kernels)
        fill = pool.submit(_fill_vertices, vertex_colour, vertex_weight, photo.data)
        direct, w_direct, mirror, w_mirror = photo.texel_samples(_layout(model, size), vertex_weight)
        return _composed(model, size, fill.result(), direct, w_direct, mirror, w_mirror)


@dataclass
class ViewSamples:
    """What one photo shows of the head: colours and weights per covered atlas texel (the layout's
    texels, in order) and per exported-mesh vertex. Weights in [0, 1], 0 where the photo does not
    see the point; colours (N or n, 3) uint8."""

    direct: np.ndarray          # (N, 3) colour of the texel's own point
    w_direct: np.ndarray        # (N,) float32, feathered
    mirror: np.ndarray          # (N, 3) colour of its mirror image (or, on an eyeball, the other eye)
    w_mirror: np.ndarray        # (N,) float32, feathered
    vertex_colour: np.ndarray   # (n, 3) colour at each vertex of the exported mesh
    vertex_weight: np.ndarray   # (n,) float32


def view_samples(image: np.ndarray, vertices_cam: np.ndarray, camera: Camera, model: HeadModel,
                 size: int = 1024) -> ViewSamples:
    """Sample one photo for every atlas texel and mesh vertex (the first half of a bake)."""
    photo = _PhotoView(image, vertices_cam, camera, model)
    vertex_colour, vertex_weight = photo.vertex_samples()
    return ViewSamples(*photo.texel_samples(_layout(model, size), vertex_weight), vertex_colour, vertex_weight)


class _PhotoView:
    """One photo of the posed head: its z-buffer and the observer of points on the head."""

    def __init__(self, image: np.ndarray, vertices_cam: np.ndarray, camera: Camera, model: HeadModel):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        self.image, self.data = image, _model_data(model)
        verts = np.ascontiguousarray(vertices_cam, np.float32)
        normals = vertex_normals(verts, model.triangles)
        self.observe = _Observer(verts, normals, camera, *_depth_map(verts, camera, model))

    def vertex_samples(self) -> tuple[np.ndarray, np.ndarray]:
        """Colours (n, 3) uint8 and weights (n,) at the exported mesh's vertices: the mesh fill's
        input (the fill adds their mirror images)."""
        xy, weight = self.observe(self.data.point_corners, self.data.point_bary)
        return sample_image(self.image, xy), weight

    def texel_samples(self, layout: _Layout, vertex_weight: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per texel the colour and feathered weight of its direct view and of its alternative (the
        mirror image, or on an eyeball the other eye): direct (N, 3), w_direct (N,), mirror, w_mirror.
        Both eyeballs share one UV region: the better-seen eye (by ``vertex_weight``) is direct."""
        left_eye, right_eye = (vertex_weight[eye].sum() for eye in self.data.eyes)
        swap = layout.eye_texels if right_eye > left_eye else None

        def texel_pass(corners, bary, other_corners, other_bary):
            xy, weight = self.observe(corners, bary)
            if swap is not None:
                xy[swap], weight[swap] = self.observe(other_corners[swap], other_bary[swap])
            return sample_image(self.image, xy), _feather(weight, layout)

        with ThreadPoolExecutor(1) as pool:   # the two passes at once: their kernels release the GIL
            alternative = pool.submit(texel_pass, layout.alt_corners, layout.alt_bary, layout.corners, layout.bary)
            direct = texel_pass(layout.corners, layout.bary, layout.alt_corners, layout.alt_bary)
            return (*direct, *alternative.result())


def _composed(model: HeadModel, size: int, fill, direct, w_direct, mirror, w_mirror) -> BakedTexture:
    """The atlas from the mesh fill (V, 3) and the texels' direct and mirror colours and weights."""
    layout = _layout(model, size)
    out = np.empty((size * size, 3), np.uint8)
    visibility = np.zeros(size * size, np.float32)
    _compose(fill, layout.corners, layout.bary, direct, w_direct, mirror, w_mirror, layout.texels,
             layout.gutter, layout.nearest, out, visibility)
    return BakedTexture(out.reshape(size, size, 3), visibility.reshape(size, size))


def fuse_textures(views: list[ViewSamples], model: HeadModel, size: int = 1024,
                  reference: int | None = None) -> tuple[BakedTexture, np.ndarray]:
    """One atlas from several photos of the same head (each sampled by :func:`view_samples` at
    ``size``, with its own pose, camera and expression).

    Each texel blends the views that see it, weighted by how head-on they see it (weight to the
    power FUSE_POWER, so the best view dominates and a slightly misregistered second view does not
    ghost it); its visibility is the chance that at least one view sees it, 1 - prod(1 - w). The
    mirror image and the mesh fill stand in only for what no view covers (as in a single bake).
    Before blending, every view's colours are scaled per channel to match the ``reference`` view
    (default: the one that covers most) on the texels both see well, so exposure and white balance
    differences leave no seams. Returns the texture and the per-view gains (n, 3).
    """
    if reference is None:
        reference = int(np.argmax([v.w_direct.sum() for v in views]))
    ref = views[reference]
    gains = np.ones((len(views), 3), np.float32)
    for k, view in enumerate(views):
        both = np.minimum(ref.w_direct, view.w_direct)
        if k != reference and (both > FUSE_OVERLAP_WEIGHT).sum() >= FUSE_MIN_OVERLAP:
            w = both[:, None] * (both[:, None] > FUSE_OVERLAP_WEIGHT)
            gain = (w * ref.direct).sum(0) / np.maximum((w * view.direct).sum(0), 1e-6)
            gains[k] = np.clip(gain, *FUSE_GAIN_RANGE)

    def blend(colours, weights):
        power = [w.astype(np.float32) ** FUSE_POWER for w in weights]
        total = np.maximum(sum(power), 1e-12)[:, None]
        colour = sum(p[:, None] * c.astype(np.float32) * g for p, c, g in zip(power, colours, gains)) / total
        seen = 1.0 - np.prod([1.0 - w for w in weights], axis=0)
        return np.clip(colour, 0, 255).astype(np.float32), seen.astype(np.float32)

    direct, w_direct = blend([v.direct for v in views], [v.w_direct for v in views])
    mirror, w_mirror = blend([v.mirror for v in views], [v.w_mirror for v in views])
    v_colour, v_weight = blend([v.vertex_colour for v in views], [v.vertex_weight for v in views])
    fill = _fill_vertices(v_colour, v_weight, _model_data(model))
    return _composed(model, size, fill, direct, w_direct, mirror, w_mirror), gains


# --- per-photo steps ---------------------------------------------------------------------------

def _depth_map(verts: np.ndarray, camera: Camera, model: HeadModel) -> tuple[np.ndarray, ...]:
    """The photo's z-buffer over the head's bounding box, at most DEPTH_MAP_MAX_PX across.

    Returns depth (h, w) cm (inf off the head); the silhouette ramp (h, w) in [0, 1]; the box's
    top-left pixel (2,) and the scale from photo to depth-map pixels.
    """
    z = verts[:, 2]
    # Vertices behind the camera are placed anywhere: the rasteriser drops their triangles.
    xy = camera.project(np.where(z[:, None] > 0, verts, 1.0)).astype(np.float32)
    used = model.used_vertices[z[model.used_vertices] > 0]
    lo, hi = np.floor(xy[used].min(0)), np.ceil(xy[used].max(0))
    margin = SILHOUETTE_MARGIN * float((hi - lo).max())
    lo = np.clip(lo, 0, [camera.width - 1, camera.height - 1])
    hi = np.clip(hi, 0, [camera.width - 1, camera.height - 1])
    scale = min(1.0, DEPTH_MAP_MAX_PX / max(float((hi - lo).max()), 1.0))
    w, h = (np.floor((hi - lo) * scale) + 1).astype(int)
    depth = rasterize((xy - lo) * scale, z, model.triangles, h, w).depth
    # Distance to the nearest pixel off the head (the crop's border counts as off the head: the
    # photo ends there). Within 1.5 pixels the bilinear footprint reaches past the silhouette.
    on_head = np.pad(np.isfinite(depth), 1).astype(np.uint8)
    inside = cv2.distanceTransform(on_head, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    ramp = np.clip((inside - 1.5) / max(margin * scale, 1.0), 0.0, 1.0)
    return depth, ramp, lo.astype(np.float32), scale


class _Observer:
    """Projects points of the posed head into the photo and weighs how well the photo sees them."""

    def __init__(self, verts, normals, camera: Camera, depth, ramp, origin, scale):
        self.args = (verts, normals, np.float32(camera.focal), np.float32(camera.cx),
                     np.float32(camera.cy), depth, ramp, origin, np.float32(scale))

    def __call__(self, corners: np.ndarray, bary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points ``bary`` x ``corners`` (N, 3) -> pixel xy (N, 2) (-1 behind the camera), weight (N,)."""
        xy = np.full((len(corners), 2), -1.0, np.float32)
        weight = np.zeros(len(corners), np.float32)
        _observe(*self.args, corners, bary, xy, weight)
        return xy, weight


@numba.njit(cache=True, fastmath=True, nogil=True)
def _observe(verts, normals, focal, cx, cy, depth, ramp, origin, scale, corners, bary, out_xy, out_w):
    h, w = depth.shape
    for i in range(corners.shape[0]):
        a, b, c = corners[i, 0], corners[i, 1], corners[i, 2]
        wa, wb, wc = bary[i, 0], bary[i, 1], bary[i, 2]
        px = wa * verts[a, 0] + wb * verts[b, 0] + wc * verts[c, 0]
        py = wa * verts[a, 1] + wb * verts[b, 1] + wc * verts[c, 1]
        pz = wa * verts[a, 2] + wb * verts[b, 2] + wc * verts[c, 2]
        if pz <= 0:
            continue
        nx = wa * normals[a, 0] + wb * normals[b, 0] + wc * normals[c, 0]
        ny = wa * normals[a, 1] + wb * normals[b, 1] + wc * normals[c, 1]
        nz = wa * normals[a, 2] + wb * normals[b, 2] + wc * normals[c, 2]
        x = px / pz * focal + cx
        y = py / pz * focal + cy
        out_xy[i, 0] = x
        out_xy[i, 1] = y
        # Cosine between the normal and the ray back to the camera (at the origin).
        cos = -(nx * px + ny * py + nz * pz) / (
            np.sqrt((nx * nx + ny * ny + nz * nz) * (px * px + py * py + pz * pz)) + 1e-12)
        if cos <= COS_NONE:
            continue
        col = int(np.floor((x - origin[0]) * scale + 0.5))
        row = int(np.floor((y - origin[1]) * scale + 0.5))
        if col < 0 or row < 0 or col >= w or row >= h or ramp[row, col] == 0:
            continue
        tan = min(np.sqrt(1.0 - cos * cos) / cos, MAX_TAN)
        if pz > depth[row, col] + DEPTH_TOL_CM + tan * pz / (focal * scale):
            continue
        t = min((cos - COS_NONE) / (COS_FULL - COS_NONE), 1.0)
        out_w[i] = t * t * (3.0 - 2.0 * t) * ramp[row, col]


def sample_image(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear colours (N, 3) uint8 at pixel coordinates ``xy`` (N, 2); black off the photo."""
    # cv2.remap takes maps of at most 32767 per side: lay the points out in rows of 1024.
    count = len(xy)
    maps = np.full((-(-count // 1024) * 1024, 2), -1.0, np.float32)
    maps[:count] = xy
    out = cv2.remap(image, maps.reshape(-1, 1024, 2), None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return out.reshape(-1, 3)[:count]


def _feather(weight: np.ndarray, layout: _Layout) -> np.ndarray:
    """Fade texel weights (N,) to zero towards texels the view does not see, over FEATHER * S texels.

    Texels outside the UV islands count as seen, so island borders keep their weight; only the
    boundaries of occlusion and of the visible side get the ramp.
    """
    size = layout.size
    k = max(3, int(size * FEATHER)) | 1
    unseen = np.zeros(size * size, np.float32)
    _mark_unseen(weight, layout.texels, unseen)
    out = np.empty_like(weight)
    _ramp_weights(weight, cv2.blur(unseen.reshape(size, size), (k, k)).ravel(), layout.texels, out)
    return out


@numba.njit(cache=True, nogil=True)
def _mark_unseen(weight, texels, unseen):
    for i in range(texels.shape[0]):
        if weight[i] == 0:
            unseen[texels[i]] = 1.0


@numba.njit(cache=True, nogil=True)
def _ramp_weights(weight, blurred, texels, out):
    # 1 - 2 * (unseen fraction), clipped to [0, 1]: zero on the boundary itself, full weight half a
    # kernel inside. In float32, as the weights are.
    for i in range(texels.shape[0]):
        ramp = np.float32(1.0) - np.float32(2.0) * blurred[texels[i]]
        ramp = min(max(ramp, np.float32(0.0)), np.float32(1.0))
        out[i] = weight[i] * ramp


def _fill_vertices(colour: np.ndarray, weight: np.ndarray, data: _ModelData) -> np.ndarray:
    """(V, 3) float32 colours: observed where seen (directly or at the mirror image), elsewhere
    smoothed into a prior of the shaded skin tone."""
    colour = colour.astype(np.float32)
    mirror_w = weight[data.mirror]
    confidence = weight + (1.0 - weight) * mirror_w
    observed = weight[:, None] * colour + ((1.0 - weight) * mirror_w)[:, None] * colour[data.mirror]
    observed /= np.maximum(confidence, 1e-6)[:, None]

    well_seen = data.skin & (weight > 0.5)
    skin = np.median(colour[well_seen], axis=0) if well_seen.sum() >= MIN_SKIN_SAMPLES else SKIN_FALLBACK
    prior = skin[None, :] * data.shade[:, None]
    prior[data.eyeball] = SCLERA

    # Jacobi sweeps of the screened Laplacian system (L + D c + s) x = D c obs + s prior. A fixed
    # number of sweeps carries colours a few rings into unseen parts, enough for a smooth transition;
    # far away the start value (the prior) stays.
    data_weight = DATA_WEIGHT * confidence
    rhs = data_weight[:, None] * observed + SCREENING * prior
    inverse = (1.0 / (data.degree + data_weight + SCREENING))[:, None]
    x = confidence[:, None] * observed + (1.0 - confidence)[:, None] * prior
    x = _jacobi(data.indptr, data.indices, x.astype(np.float32), rhs.astype(np.float32),
                inverse.astype(np.float32), JACOBI_SWEEPS)
    out = np.zeros((data.n_vertices, 3), np.float32)
    out[data.used] = x
    return out


@numba.njit(cache=True, nogil=True)
def _jacobi(indptr, indices, x, rhs, inverse, sweeps):
    """``sweeps`` times x <- (A x + rhs) * inverse, A the 0/1 adjacency in CSR (indptr, indices)."""
    y = np.empty_like(x)
    for _ in range(sweeps):
        for i in range(x.shape[0]):
            s0, s1, s2 = np.float32(0.0), np.float32(0.0), np.float32(0.0)
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                s0 += x[j, 0]
                s1 += x[j, 1]
                s2 += x[j, 2]
            y[i, 0] = (s0 + rhs[i, 0]) * inverse[i, 0]
            y[i, 1] = (s1 + rhs[i, 1]) * inverse[i, 0]
            y[i, 2] = (s2 + rhs[i, 2]) * inverse[i, 0]
        x, y = y, x
    return x


@numba.njit(cache=True, fastmath=True, nogil=True)
def _compose(fill, corners, bary, direct, w_direct, mirror, w_mirror, texels, gutter, nearest, out, visibility):
    """Texel colours into ``out`` (S * S, 3): the photo wins where it sees the texel well, the mirror
    image next, the fill last; then texels outside the islands copy their nearest island texel.
    ``visibility`` (S * S,) gets the direct weights at the covered texels."""
    for i in range(corners.shape[0]):
        k = texels[i]
        visibility[k] = w_direct[i]
        for ch in range(3):
            value = (bary[i, 0] * fill[corners[i, 0], ch] + bary[i, 1] * fill[corners[i, 1], ch]
                     + bary[i, 2] * fill[corners[i, 2], ch])
            value += w_mirror[i] * (mirror[i, ch] - value)
            value += w_direct[i] * (direct[i, ch] - value)
            out[k, ch] = min(max(value + 0.5, 0.0), 255.0)
    for i in range(gutter.shape[0]):
        for ch in range(3):
            out[gutter[i], ch] = out[nearest[i], ch]


# --- what depends only on the model and the size (cached) -------------------------------------

_CACHE: dict[tuple, tuple[weakref.ref, object]] = {}


def _cached(model: HeadModel, key: tuple, build):
    """Per-model memo: HeadModel holds arrays (unhashable), so key on its id and check it is alive."""
    full_key = (id(model),) + key
    hit = _CACHE.get(full_key)
    if hit is not None and hit[0]() is model:
        return hit[1]
    value = build()
    _CACHE[full_key] = (weakref.ref(model), value)
    return value


def _model_data(model: HeadModel) -> _ModelData:
    def load() -> _ModelData:
        arrays = cached_arrays("bake_data", lambda: _build_model_data(model), model)
        eyes = (arrays.pop("left_eye"), arrays.pop("right_eye"))
        return _ModelData(n_vertices=len(model.neutral), eyes=eyes, **arrays)
    return _cached(model, ("data",), load)


def _layout(model: HeadModel, size: int) -> _Layout:
    def load() -> _Layout:
        arrays = cached_arrays("atlas_layout", lambda: _build_layout(model, size), model, size)
        return _expand_layout(model, size, **arrays)
    return _cached(model, ("layout", size), load)


def atlas_texels(model: HeadModel, size: int) -> np.ndarray:
    """(N,) flat indices into a (size, size) atlas of the texels inside the UV islands."""
    return _layout(model, size).texels


def _build_model_data(model: HeadModel) -> dict[str, np.ndarray]:
    """The arrays of a ``_ModelData`` (its eyes as left_eye and right_eye)."""
    import scipy.sparse as sp   # imported here: the arrays are usually on disk
    tri, used = model.triangles, model.used_vertices
    n_verts = len(model.neutral)
    position = np.full(n_verts, -1, np.int64)
    position[used] = np.arange(len(used))

    edges = position[np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])]
    adjacency = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(used),) * 2)
    adjacency = ((adjacency + adjacency.T).tocsr() > 0).astype(np.float32)

    p = model.neutral[used]
    lm = model.neutral[model.landmarks68]
    in_face = used <= PARTS["face"][1]
    ax = np.abs(p[:, 0])
    # Cheeks: between the nose wings and the outer eye corners, from the nose base to below the eyes.
    cheek = ((ax > abs(lm[31, 0]) + 1.0) & (ax < abs(lm[36, 0])) & (p[:, 1] > lm[33, 1])
             & (p[:, 1] < lm[[40, 41, 46, 47], 1].mean() - 0.8))
    # Forehead: a band above the brows, as wide as the inner two thirds of the brows.
    brow_top = lm[17:27, 1].max()
    forehead = (p[:, 1] > brow_top + 1.0) & (p[:, 1] < brow_top + 4.0) & (ax < 0.66 * abs(lm[17, 0]))

    up = vertex_normals(np.asarray(model.neutral, np.float32), tri)[used, 1]
    shade = (0.9 + 0.1 * up).astype(np.float32)
    lo, hi = PARTS["mouth_socket"]
    shade[(used >= lo) & (used <= hi)] *= MOUTH_SHADE
    eyes = tuple(np.flatnonzero((used >= PARTS[name][0]) & (used <= PARTS[name][1]))
                 for name in ("eyeball_left", "eyeball_right"))
    eyeball = np.zeros(len(used), bool)
    eyeball[np.concatenate(eyes)] = True
    point_bary = np.zeros((len(used), 3), np.float32)
    point_bary[:, 0] = 1.0
    return {"used": used, "mirror": position[model.mirror_vertex[used]], "indptr": adjacency.indptr,
            "indices": adjacency.indices, "degree": np.asarray(adjacency.sum(1), np.float32).ravel(),
            "skin": in_face & (cheek | forehead), "shade": shade, "eyeball": eyeball, "left_eye": eyes[0],
            "right_eye": eyes[1], "point_corners": np.repeat(used[:, None], 3, 1).astype(np.int32),
            "point_bary": point_bary}


def _uv_fragments(model: HeadModel, triangles: np.ndarray, size: int):
    """Rasterise export triangles (rows of ``export_topology``) into the atlas; texel centres at integers."""
    _, uv, tri = model.export_topology
    xy = uv_to_texel(uv, size)
    frags = rasterize(xy, np.ones(len(xy), np.float32), tri[triangles], size, size)
    frags.triangle[frags.mask] = triangles[frags.triangle[frags.mask]]
    return frags


def _outer_shell(model: HeadModel, part: str) -> np.ndarray:
    """Triangle indices of an eyeball's outer shell.

    ICT's eyeball is two nested shells with the same UVs; only the outer one can be seen, so the
    atlas texels belong to it.
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    tris = np.flatnonzero(model.triangle_part == EXPORTED_PARTS.index(part))
    corners = model.triangles[tris]
    incidence = sp.csr_matrix((np.ones(corners.size), (np.repeat(np.arange(len(tris)), 3), corners.ravel())),
                              shape=(len(tris), len(model.neutral)))
    _, shell = connected_components(incidence @ incidence.T, directed=False)
    centre = model.neutral[np.unique(corners)].mean(0)
    radius = np.linalg.norm(model.neutral[corners].mean(1) - centre, axis=1)
    outer = np.argmax(np.bincount(shell, weights=radius) / np.bincount(shell))
    return tris[shell == outer]


def _build_layout(model: HeadModel, size: int) -> dict[str, np.ndarray]:
    """What ``_expand_layout`` makes a ``_Layout`` of: the covered texels, their triangles and
    barycentrics, the eyeball texels' alternatives and the gutter's nearest texels (the rest follows
    from these in milliseconds, and would take three times the disk)."""
    from scipy import ndimage
    eyeball_parts = [EXPORTED_PARTS.index(name) for name in ("eyeball_left", "eyeball_right")]
    left_eye, right_eye = _outer_shell(model, "eyeball_left"), _outer_shell(model, "eyeball_right")
    owners = np.concatenate([np.flatnonzero(~np.isin(model.triangle_part, eyeball_parts)), left_eye])
    frags = _uv_fragments(model, owners, size)
    mask = frags.mask
    texels = np.flatnonzero(mask)
    tri_id = frags.triangle.ravel()[texels]
    bary = frags.bary.reshape(-1, 3)[texels]

    # Both eyeballs map to the same UV region: there the alternative is the right eye's point.
    right = _uv_fragments(model, right_eye, size)
    on_eye = np.flatnonzero(np.isin(tri_id, left_eye) & right.mask.ravel()[texels])
    _, nearest = ndimage.distance_transform_edt(~mask, return_indices=True)
    return {"texels": texels, "triangle": tri_id, "bary": bary.astype(np.float32), "eye_texels": on_eye,
            "eye_triangle": right.triangle.ravel()[texels[on_eye]],
            "eye_bary": right.bary.reshape(-1, 3)[texels[on_eye]].astype(np.float32),
            "nearest": (nearest[0] * size + nearest[1]).ravel()[~mask.ravel()]}


def _expand_layout(model: HeadModel, size: int, texels, triangle, bary, eye_texels, eye_triangle, eye_bary,
                   nearest) -> _Layout:
    corners = model.triangles[triangle].astype(np.int32)
    alt_corners = model.mirror_vertex[corners].astype(np.int32)
    alt_bary = bary.copy()
    alt_corners[eye_texels] = model.triangles[eye_triangle]
    alt_bary[eye_texels] = eye_bary
    covered = np.zeros(size * size, bool)
    covered[texels] = True
    return _Layout(size, texels, corners, bary, alt_corners, alt_bary, eye_texels, np.flatnonzero(~covered), nearest)
