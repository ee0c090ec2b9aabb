"""The GLB: the head in metres (glTF's unit), optionally animatable.

Scene: a ``head`` node (the skin: face, head, neck, mouth and eye sockets) with ``eye_left`` and
``eye_right`` child nodes (the eyeballs, each pivoting about its sphere's centre), and, when the
photo's camera is known, a ``camera`` node at the origin with the fitted field of view.

With a ``Rig``, the skin is the person's neutral head (identity applied, expression 0) and carries
the 53 ICT expression shapes as morph targets named by their ARKit names (``mesh.extras.
targetNames``; ICT splits browInnerUp and cheekPuff into Left/Right halves), with the fitted
weights as the mesh's default weights; the head node's transform is the fitted pose, seen from
the camera node (glTF camera axes: x right, y up, looking down -z). Eyeballs do not move with any
expression shape; gaze is not estimated, so the eye nodes stay at rest. An ``Animation`` adds a
glTF animation of the morph weights and the head node's pose over time.

Targets that move few vertices are stored as sparse accessors. A vertex's displacement is dropped
from a target where it is under ``DROP_M``; with 53 targets at weight <= 1 that keeps the posed
mesh within 53 * DROP_M = 0.005 mm of the fitted one. The file is written here with the standard
library (pygltflib's JSON serialisation alone took 0.23 s a head; this whole writer takes 0.02 s
without targets).
"""
from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

from .blendshapes import arkit_name
from .camera import FLIP_YZ, Camera
from .diskcache import cached_arrays
from .geometry import vertex_normals, vertex_normals_into
from .model import EXPORTED_PARTS, HeadModel

CM_TO_M = 0.01
DROP_M = 1e-7          # position deltas under 0.1 micrometre are left out of a target
DROP_NORMAL = 3e-3     # normal deltas under this (0.2 degrees) too: invisible in shading
EYES = {"eye_left": "eyeball_left", "eye_right": "eyeball_right"}
# glTF enums
FLOAT, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
LINEAR, LINEAR_MIPMAP_LINEAR, CLAMP_TO_EDGE = 9729, 9987, 33071
COMPONENT = {np.float32: FLOAT, np.uint16: UNSIGNED_SHORT, np.uint32: UNSIGNED_INT}
KIND = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}


@dataclass(frozen=True)
class Rig:
    """What makes the head animatable: the neutral head's identity, the fitted expression (the
    default weights) and, when known, the pose (4x4 model-to-camera, OpenCV axes, cm) and camera."""

    identity: np.ndarray                   # (100,)
    expression: np.ndarray                 # (53,) in [0, 1]
    model_to_camera: np.ndarray | None = None
    camera: Camera | None = None


@dataclass(frozen=True)
class Animation:
    """Per-frame expression and pose, at ``times`` seconds (frames without a face left out)."""

    times: np.ndarray                      # (T,)
    expression: np.ndarray                 # (T, 53)
    model_to_camera: np.ndarray            # (T, 4, 4) OpenCV axes, cm
    name: str = "facerecon"


def target_names(model: HeadModel) -> list[str]:
    return [arkit_name(n) for n in model.expression_names]


def node_pose(model_to_camera: np.ndarray) -> tuple[list[float], list[float]]:
    """glTF translation (m) and rotation quaternion (x, y, z, w) of the head node for an OpenCV
    model-to-camera pose: the camera node looks down -z with y up, so both axes flip."""
    m = np.asarray(model_to_camera, np.float64)
    rotation = FLIP_YZ @ m[:3, :3]
    translation = FLIP_YZ @ m[:3, 3] * CM_TO_M
    return translation.tolist(), rotation_quaternion(rotation)


def rotation_quaternion(rotation: np.ndarray) -> list[float]:
    """The unit quaternion (x, y, z, w) of a 3x3 rotation matrix, as scipy's
    ``Rotation.from_matrix(rotation).as_quat()`` gives it (the same arithmetic, so the same bits),
    without scipy's 0.2 s import; a matrix that is not orthonormal to 1e-13, which scipy would
    orthonormalise first, goes to scipy."""
    m = np.asarray(rotation, np.float64)
    if np.abs(m @ m.T - np.eye(3)).max() > 1e-13 or np.linalg.det(m) <= 0:
        from scipy.spatial.transform import Rotation
        return Rotation.from_matrix(m).as_quat().tolist()
    m = m.tolist()
    trace = m[0][0] + m[1][1] + m[2][2]
    decision = [m[0][0], m[1][1], m[2][2], trace]
    choice = decision.index(max(decision))   # the first of equal largest, as numpy's argmax
    q = [0.0] * 4
    if choice == 3:
        q = [m[2][1] - m[1][2], m[0][2] - m[2][0], m[1][0] - m[0][1], 1 + trace]
    else:
        i = choice
        j, k = (i + 1) % 3, (i + 2) % 3
        q[i] = 1 - trace + 2 * m[i][i]
        q[j] = m[j][i] + m[i][j]
        q[k] = m[k][i] + m[i][k]
        q[3] = m[k][j] - m[j][k]
    norm = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    return [v / norm for v in q]


def eyeball_centre(points: np.ndarray) -> np.ndarray:
    """Least-squares sphere centre: |x|^2 = 2 c.x + (r^2 - |c|^2) is linear in c."""
    a = np.concatenate([2 * points, np.ones((len(points), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(a, (points ** 2).sum(1), rcond=None)
    return solution[:3]


class _Builder:
    """Accumulates the glTF JSON and the binary chunk its accessors point into."""

    def __init__(self) -> None:
        self.gltf: dict = {"asset": {"version": "2.0", "generator": "facerecon"}, "scene": 0,
                           "bufferViews": [], "accessors": [], "meshes": [], "nodes": []}
        self.chunks: list[bytes | memoryview] = []   # the binary chunk, joined once at the end
        self.size = 0

    def _append(self, data: bytes | memoryview) -> None:
        self.chunks.append(data)
        self.size += len(data)

    def view(self, data: bytes | memoryview, target: int | None = None) -> int:
        self._append(b"\0" * (-self.size % 4))   # accessors need aligned offsets
        view = {"buffer": 0, "byteOffset": self.size, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.gltf["bufferViews"].append(view)
        self._append(data)
        return len(self.gltf["bufferViews"]) - 1

    def _add(self, accessor: dict, values: np.ndarray, bounds: bool | tuple) -> int:
        """``bounds``: True to compute min and max (positions and animation inputs need them), or
        them precomputed."""
        if bounds is True:
            bounds = values.min(0), values.max(0)
        if bounds is not False:
            accessor.update(min=bounds[0].tolist(), max=bounds[1].tolist())
        self.gltf["accessors"].append(accessor)
        return len(self.gltf["accessors"]) - 1

    def accessor(self, array: np.ndarray, target: int | None = None, bounds: bool = False) -> int:
        """(N,) or (N, C) numeric data as one accessor."""
        array = np.ascontiguousarray(array)
        flat = array.reshape(len(array), -1)
        return self._add({"bufferView": self.view(array.tobytes(), target), "componentType": COMPONENT[array.dtype.type],
                          "count": len(array), "type": KIND[flat.shape[1]]}, flat, bounds)

    def delta(self, delta: "_Delta") -> int:
        """One encoded morph-target attribute (see ``_encode_deltas``)."""
        if delta.indices is None:
            return self._add({"bufferView": self.view(delta.values, ARRAY_BUFFER), "componentType": FLOAT,
                              "count": delta.count, "type": "VEC3"}, None, delta.bounds or False)
        accessor = {"componentType": FLOAT, "count": delta.count, "type": "VEC3"}
        if delta.kept:   # without any, the accessor is all zeros by definition
            accessor["sparse"] = {"count": delta.kept,
                                  "indices": {"bufferView": self.view(delta.indices),
                                              "componentType": COMPONENT[delta.index_type]},
                                  "values": {"bufferView": self.view(delta.values)}}
        return self._add(accessor, None, delta.bounds or False)

    def glb(self) -> bytes:
        """The GLB container: header, JSON chunk (space-padded), BIN chunk (zero-padded)."""
        self._append(b"\0" * (-self.size % 4))
        self.gltf["buffers"] = [{"byteLength": self.size}]
        text = json.dumps(self.gltf, separators=(",", ":"), allow_nan=False).encode()
        text += b" " * (-len(text) % 4)
        total = 12 + 8 + len(text) + 8 + self.size
        return b"".join([struct.pack("<4sII", b"glTF", 2, total), struct.pack("<I4s", len(text), b"JSON"), text,
                         struct.pack("<I4s", self.size, b"BIN\0"), *self.chunks])


@dataclass(frozen=True)
class _Delta:
    """One morph-target attribute (count, 3) float32, encoded: dense (``indices`` None, ``values``
    all rows) or sparse (``kept`` rows: their indices and values)."""

    count: int
    values: bytes | memoryview
    indices: bytes | memoryview | None
    kept: int
    index_type: type
    bounds: tuple[np.ndarray, np.ndarray] | None   # min and max (positions need them)


def _encode_deltas(n: int, counts: np.ndarray, rows: np.ndarray, values: np.ndarray,
                   bounds: list[tuple[np.ndarray, np.ndarray]] | None = None) -> list[_Delta]:
    """Morph-target attributes of (n, 3), zero but in their kept rows: ``counts`` (K,) of them,
    then the rows (M,) and their values (M, 3), target after target. Each is sparse where that is
    smaller (value + index against 12 bytes a row)."""
    index_type = np.uint16 if n < 65536 else np.uint32
    isize = np.dtype(index_type).itemsize
    index_bytes = memoryview(rows.astype(index_type).tobytes())
    value_bytes = memoryview(values.astype(np.float32).tobytes())
    out, start = [], 0
    for i, count in enumerate(counts.tolist()):
        end = start + count
        box = bounds[i] if bounds is not None else None
        if count * (12 + isize) < n * 12:
            out.append(_Delta(n, value_bytes[12 * start:12 * end], index_bytes[isize * start:isize * end],
                              count, index_type, box))
        else:
            dense = np.zeros((n, 3), np.float32)
            dense[rows[start:end]] = values[start:end]
            out.append(_Delta(n, dense.tobytes(), None, count, index_type, box))
        start = end
    return out


def _position_targets(model: HeadModel) -> list[_Delta]:
    """The skin's encoded position deltas in metres, rows moving under DROP_M left out: the same
    for every head, so encoded once per model."""
    key = ("gltf_position_targets",)
    if key not in model.extra:
        used = _head_parts(model)["head"].used

        def build() -> dict[str, np.ndarray]:
            moves = model.expression_basis[:, model.export_topology[0][used]] * CM_TO_M
            keep = np.einsum("knc,knc->kn", moves, moves) >= DROP_M * DROP_M
            trimmed = np.where(keep[..., None], moves, 0)
            return {"counts": keep.sum(1), "rows": np.nonzero(keep)[1], "values": moves[keep],
                    "low": trimmed.min(1), "high": trimmed.max(1)}
        a = cached_arrays("glb_position_targets", build, model)
        model.extra[key] = _encode_deltas(len(used), a["counts"], a["rows"], a["values"],
                                          list(zip(a["low"], a["high"])))
    return model.extra[key]


def normal_deltas(base: np.ndarray, shapes: np.ndarray, triangles: np.ndarray, rows: np.ndarray,
                  normals: np.ndarray, drop: float = DROP_NORMAL,
                  plan: "_NormalPlan | None" = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The NORMAL morph targets: for each shape k, the unit vertex normals of ``base + shapes[k]``
    (V, 3) cm, summed over ``triangles`` (T, 3), at the vertices ``rows`` (n,), minus ``normals``
    (n, 3) (the base's), where that moves by at least ``drop``. Returns the count of such rows per
    shape (K,), then the rows (M,) (positions in ``rows``) and their deltas (M, 3), shape by shape.
    ``plan``: ``normal_plan(shapes, triangles, rows)``, which depends only on the model (made here
    without one)."""
    if plan is None:
        plan = normal_plan(shapes, triangles, rows)
    base, normals = np.ascontiguousarray(base, np.float32), np.ascontiguousarray(normals, np.float32)

    def some(first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        counts = np.zeros(last - first, np.int64)
        kept = np.empty((last - first) * len(rows), np.int32)
        deltas = np.empty((len(kept), 3), np.float32)
        total = _normal_deltas(base, shapes, *plan, normals, np.float32(drop), first, last, counts, kept, deltas)
        return counts, kept[:total], deltas[:total]

    # Half the shapes in a second thread (the kernel releases the GIL): this is most of the GLB's
    # time, and the GLB the export's longest part.
    half = len(shapes) // 2
    with ThreadPoolExecutor(1) as pool:
        later = pool.submit(some, half, len(shapes))
        first = some(0, half)
        return tuple(np.concatenate(parts) for parts in zip(first, later.result()))


_NormalPlan = tuple[np.ndarray, ...]


def normal_plan(shapes: np.ndarray, triangles: np.ndarray, rows: np.ndarray) -> _NormalPlan:
    """What shape k changes, for ``normal_deltas``: a row's normal moves only where a corner of one
    of its triangles moves, so per shape only those rows, and the triangles around them, are
    recomputed (the others' normals are the base's exactly). Per shape k, in slices given by
    offsets (K + 1,): the vertices of those triangles (ascending), the triangles in their order
    among ``triangles`` (corners as positions in those vertices), and the rows (ascending) with
    their vertex's position there."""
    triangles = np.ascontiguousarray(triangles, np.int64)
    rows = np.ascontiguousarray(rows, np.int64)
    moved = _moved(shapes)
    starts = [np.zeros(len(shapes) + 1, np.int64) for _ in range(3)]
    _plan_shapes(moved, triangles, rows, *starts, None, None, None, None)   # the sizes
    # int32, as the model's triangles: the shapes' normals then run the whole-mesh normal kernel as is.
    out = (np.empty(starts[0][-1], np.int32), np.empty((starts[1][-1], 3), np.int32),
           np.empty(starts[2][-1], np.int32), np.empty(starts[2][-1], np.int32))
    _plan_shapes(moved, triangles, rows, *starts, *out)
    return starts[0], out[0], starts[1], out[1], starts[2], out[2], out[3]


@numba.njit(cache=True, nogil=True)
def _moved(shapes):
    """(K, V) bool: whether shape k moves vertex v at all ((shapes != 0).any(2), without the temporaries)."""
    out = np.zeros(shapes.shape[:2], np.bool_)
    for k in range(shapes.shape[0]):
        for v in range(shapes.shape[1]):
            out[k, v] = shapes[k, v, 0] != 0 or shapes[k, v, 1] != 0 or shapes[k, v, 2] != 0
    return out


@numba.njit(cache=True, nogil=True)
def _plan_shapes(moved, triangles, rows, vertex_start, triangle_start, row_start, vertices, local, row_ids, row_at):
    # Without output arrays (None) it fills the offsets; with them, the slices.
    fill = vertices is not None
    n_vertices = moved.shape[1]
    for k in range(moved.shape[0]):
        changed = np.zeros(n_vertices, np.bool_)
        for t in range(triangles.shape[0]):
            a, b, c = triangles[t, 0], triangles[t, 1], triangles[t, 2]
            if moved[k, a] or moved[k, b] or moved[k, c]:
                changed[a] = changed[b] = changed[c] = True
        at = np.full(n_vertices, -1, np.int64)
        for t in range(triangles.shape[0]):
            a, b, c = triangles[t, 0], triangles[t, 1], triangles[t, 2]
            if changed[a] or changed[b] or changed[c]:
                at[a] = at[b] = at[c] = 0
        count = 0
        for v in range(n_vertices):
            if at[v] == 0:
                if fill:
                    vertices[vertex_start[k] + count] = v
                at[v] = count
                count += 1
        m = 0
        for t in range(triangles.shape[0]):
            a, b, c = triangles[t, 0], triangles[t, 1], triangles[t, 2]
            if changed[a] or changed[b] or changed[c]:
                if fill:
                    j = triangle_start[k] + m
                    local[j, 0], local[j, 1], local[j, 2] = at[a], at[b], at[c]
                m += 1
        r = 0
        for i in range(rows.shape[0]):
            if changed[rows[i]]:
                if fill:
                    row_ids[row_start[k] + r] = i
                    row_at[row_start[k] + r] = at[rows[i]]
                r += 1
        if not fill:
            vertex_start[k + 1] = vertex_start[k] + count
            triangle_start[k + 1] = triangle_start[k] + m
            row_start[k + 1] = row_start[k] + r


@numba.njit(cache=True, nogil=True)
def _normal_deltas(base, shapes, vertex_start, vertices, triangle_start, triangles, row_start, row_ids, row_at,
                   normals, drop, first, last, counts, kept, deltas):
    """Shapes ``first`` to ``last`` - 1; ``counts`` has one entry for each of them."""
    m = 0
    for k in range(first, last):
        mine = vertices[vertex_start[k]:vertex_start[k + 1]]
        shaped = np.empty((len(mine), 3), np.float32)
        for j in range(len(mine)):
            for c in range(3):
                shaped[j, c] = base[mine[j], c] + shapes[k, mine[j], c]
        unit = np.empty_like(shaped)
        # Contiguous copies: the same kernel on the same array types as a whole-mesh call.
        vertex_normals_into(shaped, triangles[triangle_start[k]:triangle_start[k + 1]].copy(),
                            np.arange(len(mine)), unit)
        for r in range(row_start[k], row_start[k + 1]):
            i, v = row_ids[r], row_at[r]
            dx = unit[v, 0] - normals[i, 0]
            dy = unit[v, 1] - normals[i, 1]
            dz = unit[v, 2] - normals[i, 2]
            if dx * dx + dy * dy + dz * dz >= drop * drop:
                kept[m] = i
                deltas[m, 0], deltas[m, 1], deltas[m, 2] = dx, dy, dz
                m += 1
                counts[k - first] += 1
    return m


def head_glb(model: HeadModel, vertices_model: np.ndarray, texture_png: bytes | Callable[[], bytes],
             rig: Rig | None = None, animation: Animation | None = None) -> bytes:
    """The GLB bytes of the head ``vertices_model`` (V, 3) cm with its atlas texture: PNG bytes, or
    a function that returns them, called once the rest is built (the PNG may be encoding in
    another thread meanwhile). With ``rig`` the skin is the neutral head plus morph targets
    (``vertices_model`` is then the fitted head they reproduce); ``animation`` needs ``rig``."""
    if animation is not None and rig is None:
        raise ValueError("an animation needs a rig (the morph targets it drives)")
    base = model.shape(rig.identity) if rig is not None else np.asarray(vertices_model, np.float32)
    vertex, uv, faces = model.export_topology
    positions = base[vertex] * CM_TO_M
    normals = vertex_normals(base, model.triangles)[vertex]
    uv_gltf = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1).astype(np.float32)   # glTF's v runs down

    b = _Builder()
    g = b.gltf
    g["samplers"] = [{"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR, "wrapS": CLAMP_TO_EDGE,
                      "wrapT": CLAMP_TO_EDGE}]
    g["textures"] = [{"source": 0, "sampler": 0}]
    g["materials"] = [{"name": "head", "pbrMetallicRoughness": {
        "baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": 0.8}}]

    parts = _head_parts(model)
    skin = parts["head"]
    targets = None
    if rig is not None:
        turns = normal_deltas(base, model.expression_basis, model.triangles[skin.triangles], skin.source,
                              normals[skin.used], plan=_normal_plan(model))
        targets = zip(_position_targets(model), _encode_deltas(len(skin.used), *turns))
    mesh = {"name": "head", "primitives": [_primitive(b, skin.used, skin.local, positions, normals, uv_gltf,
                                                      targets)]}
    if rig is not None:
        mesh["weights"] = np.clip(rig.expression, 0, 1).astype(float).round(6).tolist()
        mesh["extras"] = {"targetNames": target_names(model)}
    g["meshes"].append(mesh)
    head = {"name": "head", "mesh": 0, "children": []}
    g["nodes"].append(head)
    for name in EYES:
        eye = parts[name]
        centre = eyeball_centre(positions[eye.used])
        g["meshes"].append({"name": name, "primitives": [
            _primitive(b, eye.used, eye.local, positions - centre, normals, uv_gltf)]})
        g["nodes"].append({"name": name, "mesh": len(g["meshes"]) - 1, "translation": centre.tolist(),
                           "extras": {"gaze": "not estimated: the eyeball stays at rest"}})
        head["children"].append(len(g["nodes"]) - 1)
    roots = [0]
    if rig is not None and rig.model_to_camera is not None:
        head["translation"], head["rotation"] = node_pose(rig.model_to_camera)
    if rig is not None and rig.camera is not None:
        cam = rig.camera
        g["cameras"] = [{"type": "perspective", "name": "photo", "perspective": {
            "yfov": 2 * math.atan(0.5 * cam.height / cam.focal), "aspectRatio": cam.width / cam.height,
            "znear": 0.01}}]
        g["nodes"].append({"name": "camera", "camera": 0})
        roots.append(len(g["nodes"]) - 1)
    g["scenes"] = [{"nodes": roots}]
    if animation is not None:
        _animate(b, animation)
    g["images"] = [{"bufferView": b.view(texture_png() if callable(texture_png) else texture_png),
                    "mimeType": "image/png"}]
    return b.glb()


def surface_glb(positions_m: np.ndarray, normals: np.ndarray, uv: np.ndarray, faces: np.ndarray,
                texture_png: bytes, name: str = "scan") -> bytes:
    """The GLB bytes of a textured mesh that is not the head model: positions (N, 3) in metres (glTF's
    axes are the caller's), normals (N, 3), uv (N, 2) with v up, faces (F, 3)."""
    b = _Builder()
    g = b.gltf
    g["images"] = [{"bufferView": b.view(texture_png), "mimeType": "image/png"}]
    g["samplers"] = [{"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR, "wrapS": CLAMP_TO_EDGE,
                      "wrapT": CLAMP_TO_EDGE}]
    g["textures"] = [{"source": 0, "sampler": 0}]
    g["materials"] = [{"name": name, "pbrMetallicRoughness": {
        "baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": 0.8}}]
    uv_gltf = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1).astype(np.float32)   # glTF's v runs down
    used, local = np.unique(np.asarray(faces), return_inverse=True)
    g["meshes"].append({"name": name, "primitives": [
        _primitive(b, used, local.reshape(-1, 3), np.asarray(positions_m, np.float32),
                   np.asarray(normals, np.float32), uv_gltf)]})
    g["nodes"].append({"name": name, "mesh": 0})
    g["scenes"] = [{"nodes": [0]}]
    return b.glb()


@dataclass(frozen=True)
class _Part:
    """One primitive of the head's GLB: its triangles among the model's, and its vertices."""

    triangles: np.ndarray   # (T,) bool mask over the model's triangles
    used: np.ndarray        # (n,) the export-topology vertices it uses, ascending
    local: np.ndarray       # (t, 3) its triangles' corners as positions in ``used``
    source: np.ndarray      # (n,) the model vertex of each of ``used``


def _head_parts(model: HeadModel) -> dict[str, _Part]:
    """The skin ("head") and the two eyeballs: the same for every head, so made once per model."""
    key = ("gltf_parts",)
    if key not in model.extra:
        vertex, _, faces = model.export_topology
        eye_parts = {name: EXPORTED_PARTS.index(part) for name, part in EYES.items()}
        masks = {"head": ~np.isin(model.triangle_part, list(eye_parts.values())),
                 **{name: model.triangle_part == index for name, index in eye_parts.items()}}
        parts = {}
        for name, mask in masks.items():
            used, local = np.unique(faces[mask], return_inverse=True)
            parts[name] = _Part(mask, used, local.reshape(-1, 3), vertex[used])
        model.extra[key] = parts
    return model.extra[key]


def _normal_plan(model: HeadModel) -> _NormalPlan:
    # Only the skin's triangles: its vertices have no others (the eyeballs are apart).
    key = ("gltf_normal_plan",)
    if key not in model.extra:
        skin = _head_parts(model)["head"]

        def build() -> dict[str, np.ndarray]:
            plan = normal_plan(model.expression_basis, model.triangles[skin.triangles], skin.source)
            return {f"plan{i}": array for i, array in enumerate(plan)}
        arrays = cached_arrays("glb_normal_plan", build, model)
        model.extra[key] = tuple(arrays[f"plan{i}"] for i in range(len(arrays)))
    return model.extra[key]


def _primitive(b: _Builder, used: np.ndarray, local: np.ndarray, positions: np.ndarray, normals: np.ndarray,
               uv: np.ndarray, targets: Iterable[tuple[_Delta, _Delta]] | None = None) -> dict:
    """One primitive over the vertices ``used`` (n,) of ``positions``, ``normals`` and ``uv``, its
    triangles ``local`` (t, 3) indexing ``used``; ``targets``: its morph targets' encoded
    (position, normal) deltas."""
    index_type = np.uint16 if len(used) < 65536 else np.uint32
    primitive = {"attributes": {"POSITION": b.accessor(positions[used].astype(np.float32), ARRAY_BUFFER, True),
                                "NORMAL": b.accessor(normals[used].astype(np.float32), ARRAY_BUFFER),
                                "TEXCOORD_0": b.accessor(uv[used], ARRAY_BUFFER)},
                 "indices": b.accessor(local.reshape(-1).astype(index_type), ELEMENT_ARRAY_BUFFER),
                 "material": 0}
    if targets is not None:
        primitive["targets"] = [{"POSITION": b.delta(move), "NORMAL": b.delta(turn)} for move, turn in targets]
    return primitive


def _animate(b: _Builder, animation: Animation) -> None:
    """Weights, translation and rotation of the head node, linear between the frames."""
    poses = [node_pose(m) for m in animation.model_to_camera]
    quats = np.array([q for _, q in poses])
    for i in range(1, len(quats)):   # q and -q are one rotation: keep neighbours on one side
        if quats[i] @ quats[i - 1] < 0:
            quats[i] = -quats[i]
    times = b.accessor(np.asarray(animation.times, np.float32), bounds=True)
    outputs = {"weights": np.clip(animation.expression, 0, 1).astype(np.float32).reshape(-1),
               "translation": np.array([t for t, _ in poses], np.float32),
               "rotation": quats.astype(np.float32)}
    samplers, channels = [], []
    for path, values in outputs.items():
        samplers.append({"input": times, "output": b.accessor(values), "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": 0, "path": path}})
    b.gltf["animations"] = [{"name": animation.name, "samplers": samplers, "channels": channels}]
