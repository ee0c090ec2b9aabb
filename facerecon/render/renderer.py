"""Shaded rendering of triangle meshes on the CPU: textured or vertex-coloured, SH-lit, anti-aliased.

One render is a fixed numba pipeline (see ``_render_into``): smooth vertex normals
(``geometry.vertex_normals_into``), projection (``project_into``), z-buffer
(``raster.rasterize_into``), then one fused pass (``shade_into``) that interpolates UV / colour /
normal per sample, samples the texture bilinearly, applies SH lighting and accumulates straight into
the output resolution (so 2x2 supersampling never stores a large colour buffer). Depth, normal, UV
and triangle maps come from a pass at the output resolution (``geometry_maps_into``), so they are
exact at pixel centres. The stages are public so that benchmarks/bench_render.py can time each.

``render_batch`` runs many such pipelines in parallel (numba ``prange``, one image per thread);
``render_mesh`` runs one serially, so it is safe to call from several Python threads at once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ..camera import Camera
from ..geometry import vertex_normals_into
from ..model import HeadModel
from .lighting import shade_at
from .raster import CULL_BACK, CULL_NONE, rasterize_into

# Finite "far" value for internal depth buffers: fastmath code may not rely on comparisons with inf.
_FAR = np.float32(3.0e38)


@dataclass
class RenderResult:
    """A rendered image of H x W pixels (``render_batch`` adds a leading batch axis B to each)."""

    image: np.ndarray      # (H, W, 3) float32 in [0, 1], composited over the background
    alpha: np.ndarray      # (H, W) float32 coverage in [0, 1] (fractional at edges when supersampled)
    depth: np.ndarray      # (H, W) float32 camera depth in cm, inf on background
    normals: np.ndarray    # (H, W, 3) float32 camera-frame unit normals, 0 on background
    uv: np.ndarray         # (H, W, 2) float32 texture coordinates (v up), 0 on background or no uv
    triangle: np.ndarray   # (H, W) int32 triangle index, -1 on background


@numba.njit(cache=True, fastmath=True, nogil=True)
def project_into(verts, focal, cx, cy, xy, z):
    """Pinhole projection of camera-frame vertices (N, 3) float32 cm into the pixel positions ``xy``
    (N, 2) and depths ``z`` (N,), both float32 and filled here; ``focal``, ``cx``, ``cy`` in pixels."""
    for k in range(verts.shape[0]):
        d = verts[k, 2]
        z[k] = d
        # Points at or behind the camera only occur in triangles the rasteriser skips (z <= 0).
        inv = focal / d if d > 0 else 0.0
        xy[k, 0] = verts[k, 0] * inv + cx
        xy[k, 1] = verts[k, 1] * inv + cy


@numba.njit(cache=True, fastmath=True, nogil=True)
def _sample_bilinear(texture, u, v, rgb):
    """Texture row 0 is the top (v = 1); texel centres sit at ((i + 0.5) / W, 1 - (j + 0.5) / H)
    (``model.uv_to_texel``, inside the kernel)."""
    th, tw = texture.shape[0], texture.shape[1]
    fx = min(max(u * tw - 0.5, 0.0), tw - 1.0)
    fy = min(max((1.0 - v) * th - 0.5, 0.0), th - 1.0)
    x0, y0 = int(fx), int(fy)
    x1, y1 = min(x0 + 1, tw - 1), min(y0 + 1, th - 1)
    ax, ay = fx - x0, fy - y0
    for c in range(3):
        top = texture[y0, x0, c] * (1.0 - ax) + texture[y0, x1, c] * ax
        bottom = texture[y1, x0, c] * (1.0 - ax) + texture[y1, x1, c] * ax
        rgb[c] = (top * (1.0 - ay) + bottom * ay) * (1.0 / 255.0)


@numba.njit(cache=True, fastmath=True, nogil=True)
def _unit_normal(normals, a, b, c, wa, wb, wc):
    """The vertex normals of triangle (a, b, c) interpolated at barycentric (wa, wb, wc), normalised."""
    nx = wa * normals[a, 0] + wb * normals[b, 0] + wc * normals[c, 0]
    ny = wa * normals[a, 1] + wb * normals[b, 1] + wc * normals[c, 1]
    nz = wa * normals[a, 2] + wb * normals[b, 2] + wc * normals[c, 2]
    inv = 1.0 / max(np.sqrt(nx * nx + ny * ny + nz * nz), 1e-12)
    return nx * inv, ny * inv, nz * inv


@numba.njit(cache=True, fastmath=True, nogil=True)
def shade_into(tri_id, bary, tris, normals, uv, texture, colors, sh, lit, ss, color_out, alpha_out):
    """Shade every covered sample of a rasterised (H, W) frame and add it, premultiplied, into the
    (H/ss, W/ss) outputs ``color_out`` (3 channels) and ``alpha_out``, float32, zeroed by the caller.

    tri_id (H, W) int32 and bary (H, W, 3) float32 as ``raster.rasterize_into`` leaves them; tris
    (T, 3) int32; normals (N, 3) float32 vertex normals; uv (N, 2) with texture (S, S, 3) uint8, or
    an empty texture for colours (N, 3) in [0, 1], or both empty for white; sh (9, 3), applied when
    ``lit``; ss the supersampling factor."""
    weight = 1.0 / (ss * ss)
    textured, coloured = texture.shape[0] > 0, colors.shape[0] > 0
    rgb = np.empty(3, np.float32)
    for py in range(tri_id.shape[0]):
        oy = py // ss
        for px in range(tri_id.shape[1]):
            t = tri_id[py, px]
            if t < 0:
                continue
            a, b, c = tris[t, 0], tris[t, 1], tris[t, 2]
            wa, wb, wc = bary[py, px, 0], bary[py, px, 1], bary[py, px, 2]
            if textured:
                u = wa * uv[a, 0] + wb * uv[b, 0] + wc * uv[c, 0]
                v = wa * uv[a, 1] + wb * uv[b, 1] + wc * uv[c, 1]
                _sample_bilinear(texture, u, v, rgb)
            elif coloured:
                for j in range(3):
                    rgb[j] = wa * colors[a, j] + wb * colors[b, j] + wc * colors[c, j]
            else:
                rgb[:] = 1.0
            if lit:
                nx, ny, nz = _unit_normal(normals, a, b, c, wa, wb, wc)
                for j in range(3):
                    rgb[j] *= shade_at(nx, ny, nz, sh, j)
            ox = px // ss
            for j in range(3):
                color_out[oy, ox, j] += weight * rgb[j]
            alpha_out[oy, ox] += weight


@numba.njit(cache=True, fastmath=True, nogil=True)
def geometry_maps_into(tri_id, bary, tris, normals, uv, normal_out, uv_out):
    """The unit normal (``normal_out``, (H, W, 3)) and, where ``uv`` is not empty, the texture
    coordinates (``uv_out``, (H, W, 2)) at every covered pixel of a rasterised frame (arguments as
    :func:`shade_into`); uncovered pixels are left as they are."""
    has_uv = uv.shape[0] > 0
    for py in range(tri_id.shape[0]):
        for px in range(tri_id.shape[1]):
            t = tri_id[py, px]
            if t < 0:
                continue
            a, b, c = tris[t, 0], tris[t, 1], tris[t, 2]
            wa, wb, wc = bary[py, px, 0], bary[py, px, 1], bary[py, px, 2]
            normal_out[py, px, 0], normal_out[py, px, 1], normal_out[py, px, 2] = _unit_normal(
                normals, a, b, c, wa, wb, wc)
            if has_uv:
                for j in range(2):
                    uv_out[py, px, j] = wa * uv[a, j] + wb * uv[b, j] + wc * uv[c, j]


@numba.njit(cache=True, fastmath=True, nogil=True)
def _composite(background, image, alpha, depth, tri_id):
    """Premultiplied colour over the background; background depth becomes inf."""
    bh, bw = background.shape[0] - 1, background.shape[1] - 1
    for py in range(image.shape[0]):
        for px in range(image.shape[1]):
            a = min(alpha[py, px], 1.0)
            alpha[py, px] = a
            for j in range(3):
                value = image[py, px, j] + (1.0 - a) * background[min(py, bh), min(px, bw), j]
                image[py, px, j] = min(max(value, 0.0), 1.0)
            if tri_id[py, px] < 0:
                depth[py, px] = np.inf


@numba.njit(cache=True, fastmath=True, nogil=True)
def _render_into(verts, tris, weld, focal, cx, cy, ss, cull, uv, texture, colors, sh, lit, background,
                 image_out, alpha_out, depth_out, tri_out, normal_out, uv_out):
    """One full render into uninitialised outputs; ``background`` is (H, W, 3) or (1, 1, 3)."""
    height, width = depth_out.shape
    image_out[:] = 0.0
    alpha_out[:] = 0.0
    depth_out[:] = _FAR
    tri_out[:] = -1
    normal_out[:] = 0.0
    uv_out[:] = 0.0
    normals = np.empty_like(verts)
    vertex_normals_into(verts, tris, weld, normals)
    xy = np.empty((verts.shape[0], 2), np.float32)
    z = np.empty(verts.shape[0], np.float32)
    project_into(verts, focal, cx, cy, xy, z)
    bary = np.zeros((height, width, 3), np.float32)
    rasterize_into(xy, z, tris, cull, tri_out, bary, depth_out)
    if ss == 1:
        shade_into(tri_out, bary, tris, normals, uv, texture, colors, sh, lit, 1, image_out, alpha_out)
    else:
        # Camera.scaled(ss): a pixel x at 1x lands at ss * (x + 0.5) - 0.5.
        xy_ss = (xy + np.float32(0.5)) * np.float32(ss) - np.float32(0.5)
        tri_ss = np.full((height * ss, width * ss), -1, np.int32)
        bary_ss = np.zeros((height * ss, width * ss, 3), np.float32)
        depth_ss = np.full((height * ss, width * ss), _FAR, np.float32)
        rasterize_into(xy_ss, z, tris, cull, tri_ss, bary_ss, depth_ss)
        shade_into(tri_ss, bary_ss, tris, normals, uv, texture, colors, sh, lit, ss, image_out, alpha_out)
    geometry_maps_into(tri_out, bary, tris, normals, uv, normal_out, uv_out)
    _composite(background, image_out, alpha_out, depth_out, tri_out)


@numba.njit(cache=True, fastmath=True, nogil=True, parallel=True)
def _render_many(verts, tris, weld, focal, cx, cy, ss, cull, uv, textures, colors, sh, lit, backgrounds,
                 image_out, alpha_out, depth_out, tri_out, normal_out, uv_out):
    """``_render_into`` for each image b; per-image inputs with a batch of 1 are shared by all."""
    for i in numba.prange(verts.shape[0]):
        b = np.int64(i)  # prange's index is unsigned; min() with a signed size would give a float
        _render_into(verts[b], tris, weld, focal, cx, cy, ss, cull, uv,
                     textures[min(b, textures.shape[0] - 1)], colors[min(b, colors.shape[0] - 1)],
                     sh[min(b, sh.shape[0] - 1)], lit, backgrounds[min(b, backgrounds.shape[0] - 1)],
                     image_out[b], alpha_out[b], depth_out[b], tri_out[b], normal_out[b], uv_out[b])


def _backgrounds(background, n_images: int, height: int, width: int) -> np.ndarray:
    """-> (1 or B, H or 1, W or 1, 3) float32. None is black; integer input is 0..255, float 0..1."""
    if background is None:
        return np.zeros((1, 1, 1, 3), np.float32)
    bg = np.asarray(background)
    bg = bg.astype(np.float32) / 255.0 if bg.dtype.kind in "ui" else bg.astype(np.float32)
    bg = bg.reshape((1,) * (4 - bg.ndim) + bg.shape)
    if bg.shape[0] not in (1, n_images) or bg.shape[1:] not in ((1, 1, 3), (height, width, 3)):
        raise ValueError(f"background {np.shape(background)} does not fit {n_images} images of "
                         f"{height}x{width}")
    return np.ascontiguousarray(bg)


def render_batch(vertices_cam: np.ndarray, triangles: np.ndarray, camera: Camera, *,
                 uv: np.ndarray | None = None, texture: np.ndarray | None = None,
                 vertex_colors: np.ndarray | None = None, sh: np.ndarray | None = None,
                 background=None, supersample: int = 1, cull_back: bool = True,
                 weld: np.ndarray | None = None) -> RenderResult:
    """Render B meshes of one topology in parallel; returns arrays with a leading batch axis.

    vertices_cam: (B, N, 3) cm, camera frame. triangles: (T, 3). uv: (N, 2), v up. texture:
    (S, S, 3) or (B, S, S, 3) uint8, row 0 = v 1. vertex_colors: (N, 3) or (B, N, 3) in [0, 1].
    sh: (9, 3) or (B, 9, 3), see ``lighting``; None renders unlit albedo. With neither texture nor
    colours the albedo is white. background: (H, W, 3), (B, H, W, 3) or an RGB triple (uint8 or
    float in [0, 1]); default black. weld: (N,) ids; vertices sharing an id get one smooth normal.
    Several Python threads must not run batches (B > 1) at once: numba's default threading layer
    does not allow concurrent parallel launches (single renders are fine from any thread).
    """
    verts = np.ascontiguousarray(vertices_cam, np.float32)
    if verts.ndim != 3 or verts.shape[2] != 3:
        raise ValueError(f"vertices_cam must be (B, N, 3), got {verts.shape}")
    if texture is not None and uv is None:
        raise ValueError("a texture needs per-vertex uv")
    if supersample < 1:
        raise ValueError("supersample must be >= 1")
    n_images, n_verts, height, width = verts.shape[0], verts.shape[1], camera.height, camera.width

    def batched(array, dtype, item_ndim, empty_item_shape):
        if array is None:
            return np.zeros((1,) + empty_item_shape, dtype)
        array = np.ascontiguousarray(array, dtype)
        return array[None] if array.ndim == item_ndim else array

    textures = batched(texture, np.uint8, 3, (0, 0, 3))
    colors = batched(vertex_colors, np.float32, 2, (0, 3))
    lights = batched(sh, np.float32, 2, (9, 3))
    tris = np.ascontiguousarray(triangles, np.int32)
    uv_arr = np.zeros((0, 2), np.float32) if uv is None else np.ascontiguousarray(uv, np.float32)
    weld_arr = np.arange(n_verts, dtype=np.int32) if weld is None else np.ascontiguousarray(weld, np.int32)
    # The kernels do not check bounds, so a wrong size here would read stray memory there.
    texture_shape = textures.shape[1:3] + (3,)
    for name, array, item_shape in (("texture", textures, texture_shape), ("sh", lights, (9, 3)),
                                    ("vertex_colors", colors, (n_verts, 3) if colors.shape[1] else (0, 3))):
        if array.shape[0] not in (1, n_images) or array.shape[1:] != item_shape:
            raise ValueError(f"{name} has shape {array.shape[1:]} and batch {array.shape[0]}, "
                             f"expected {item_shape} and 1 or {n_images}")
    if uv_arr.shape[0] not in (0, n_verts) or weld_arr.shape != (n_verts,) or tris.ndim != 2 or (
            tris.size and (tris.min() < 0 or tris.max() >= n_verts)):
        raise ValueError(f"uv, weld or triangles do not fit {n_verts} vertices")

    image = np.empty((n_images, height, width, 3), np.float32)
    alpha = np.empty((n_images, height, width), np.float32)
    depth = np.empty((n_images, height, width), np.float32)
    tri_id = np.empty((n_images, height, width), np.int32)
    normals = np.empty((n_images, height, width, 3), np.float32)
    uv_map = np.empty((n_images, height, width, 2), np.float32)
    backgrounds = _backgrounds(background, n_images, height, width)
    args = (tris, weld_arr, float(camera.focal), float(camera.cx), float(camera.cy), int(supersample),
            CULL_BACK if cull_back else CULL_NONE, uv_arr)
    outputs = (image, alpha, depth, tri_id, normals, uv_map)
    if n_images == 1:
        _render_into(verts[0], *args, textures[0], colors[0], lights[0], sh is not None, backgrounds[0],
                     *(o[0] for o in outputs))
    else:
        _render_many(verts, *args, textures, colors, lights, sh is not None, backgrounds, *outputs)
    return RenderResult(image, alpha, depth, normals, uv_map, tri_id)


def render_mesh(vertices_cam: np.ndarray, triangles: np.ndarray, camera: Camera, *,
                uv: np.ndarray | None = None, texture: np.ndarray | None = None,
                vertex_colors: np.ndarray | None = None, sh: np.ndarray | None = None,
                background=None, supersample: int = 1, cull_back: bool = True,
                weld: np.ndarray | None = None) -> RenderResult:
    """Render one mesh; vertices_cam (N, 3) cm in the camera frame. Arguments as ``render_batch``."""
    vertices = np.asarray(vertices_cam)
    if vertices.ndim != 2:
        raise ValueError(f"vertices_cam must be (N, 3), got {vertices.shape}")
    if texture is not None and np.ndim(texture) != 3:
        raise ValueError("render_mesh takes one (S, S, 3) texture")
    batch = render_batch(vertices[None], triangles, camera, uv=uv, texture=texture,
                         vertex_colors=vertex_colors, sh=sh, background=background,
                         supersample=supersample, cull_back=cull_back, weld=weld)
    return RenderResult(*(getattr(batch, f)[0] for f in RenderResult.__dataclass_fields__))


def head_vertices_cam(model: HeadModel, vertices_model: np.ndarray, rotation: np.ndarray,
                      translation: np.ndarray) -> np.ndarray:
    """Model-frame head vertices (V, 3) -> camera-frame vertices of the export topology (K, 3)."""
    index = model.export_topology[0]
    return (vertices_model[index] @ np.asarray(rotation, np.float32).T
            + np.asarray(translation, np.float32)).astype(np.float32)


def render_head(model: HeadModel, vertices_model: np.ndarray, rotation: np.ndarray,
                translation: np.ndarray, camera: Camera, texture: np.ndarray | None = None,
                sh: np.ndarray | None = None, *, background=None, supersample: int = 1) -> RenderResult:
    """Render a head (V, 3) cm posed by X_cam = R @ X + t, UV-textured with the model's atlas."""
    index, uv, triangles = model.export_topology
    return render_mesh(head_vertices_cam(model, vertices_model, rotation, translation), triangles,
                       camera, uv=uv, texture=texture, sh=sh, background=background,
                       supersample=supersample, weld=index)
