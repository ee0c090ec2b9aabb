"""The ICT-FaceKit morphable head model, as used by every stage.

Units are centimetres. The model frame is the ICT frame: x to the subject's left, y up, z out of
the face (the nose tip is at z ~ 11.8). Identity modes are scaled so that coefficients follow a
standard normal prior (ICT's sample identities have coefficients of about unit size). Expression
shapes are ARKit-named blendshapes with weights in [0, 1].

The exported head is the face, head and neck, mouth socket, eye sockets and eyeballs; teeth, gums,
eyelashes and the transparent eye meshes are left out. All UV tiles of the model are packed into
one square atlas (see ``ATLAS``) so that a single texture image covers the head.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from .assets import ICT_PACKED, ict_dir
from .diskcache import cached_arrays
from .errors import AssetError

# Vertex ranges [first, last] from ICT-FaceKit's README.
PARTS = {
    "face": (0, 9408),
    "head_neck": (9409, 11247),
    "mouth_socket": (11248, 13293),
    "eye_socket_left": (13294, 13677),
    "eye_socket_right": (13678, 14061),
    "gums_tongue": (14062, 17038),
    "teeth": (17039, 21450),
    "eyeball_left": (21451, 23020),
    "eyeball_right": (23021, 24590),
}
EXPORTED_PARTS = ("face", "head_neck", "mouth_socket", "eye_socket_left", "eye_socket_right",
                  "eyeball_left", "eyeball_right")
# The face area: the vertices of the "face" part (the front of the head, ears included), where
# shape errors are measured and identities compared.
FACE_AREA = np.arange(PARTS["face"][0], PARTS["face"][1] + 1)
NARROW_FACE_LAST_VERTEX = 6705
ICT_IDENTITY_MODES = 100   # in ICT-FaceKit Light; the packaged model keeps the leading ones

# Where each source UV tile lands in the square atlas: (u0, v0, scale), UV with v up.
# The face tile gets two thirds of the width; head/neck/mouth/sockets and the eyeballs a third each.
ATLAS = {
    "face_tile": (0.0, 1.0 / 3.0, 2.0 / 3.0),
    "head_tile": (2.0 / 3.0, 2.0 / 3.0, 1.0 / 3.0),
    "eyeball_tile": (2.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0),
}


def in_face_area(vertices: np.ndarray) -> np.ndarray:
    """Which of the vertex indices ``vertices`` (any shape) lie in FACE_AREA (the "face" part starts at 0)."""
    return np.asarray(vertices) <= FACE_AREA[-1]


def face_area_triangles(triangles: np.ndarray) -> np.ndarray:
    """The rows of (T, 3) ``triangles`` whose corners all lie in FACE_AREA."""
    return triangles[in_face_area(triangles).all(1)]


def uv_to_texel(uv: np.ndarray, width: int, height: int | None = None) -> np.ndarray:
    """(n, 2) UV (v up) -> (n, 2) float pixel coordinates (x, y) of a width x height (default
    square) texture whose row 0 is v = 1, texel centres at integers."""
    height = width if height is None else height
    uv = np.asarray(uv)
    return np.stack([uv[:, 0] * width - 0.5, (1.0 - uv[:, 1]) * height - 0.5], axis=1)


@dataclass(frozen=True)
class HeadModel:
    """ICT-FaceKit arrays (float32, cm). ``V`` = 26,719 vertices; the packaged model has the
    40 leading identity modes (``FACERECON_ICT_DIR``'s full one 100)."""

    neutral: np.ndarray            # (V, 3)
    identity_basis: np.ndarray     # (n_identity, V, 3), per unit coefficient
    expression_basis: np.ndarray   # (53, V, 3), per unit weight
    expression_names: tuple[str, ...]
    landmarks68: np.ndarray        # (68,) vertex indices, Multi-PIE order
    triangles: np.ndarray          # (T, 3) vertex indices of the exported parts
    triangles_uv: np.ndarray       # (T, 3) indices into ``uv``
    uv: np.ndarray                 # (Nuv, 2) atlas UV in [0, 1], v up
    triangle_part: np.ndarray      # (T,) index into EXPORTED_PARTS
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def n_identity(self) -> int:
        return self.identity_basis.shape[0]

    @property
    def n_expression(self) -> int:
        return self.expression_basis.shape[0]

    def shape(self, identity: np.ndarray | None = None, expression: np.ndarray | None = None,
              vertices: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Vertex positions (n, 3) in cm for the given coefficients, optionally for a subset."""
        out = self.neutral[vertices].astype(np.float32, copy=True)
        if identity is not None:
            out += np.tensordot(identity.astype(np.float32), self.identity_basis[:, vertices], 1)
        if expression is not None:
            out += np.tensordot(expression.astype(np.float32), self.expression_basis[:, vertices], 1)
        return out

    @cached_property
    def used_vertices(self) -> np.ndarray:
        """Sorted indices of the vertices that the exported triangles use."""
        return np.unique(self.triangles)

    @cached_property
    def mirror_vertex(self) -> np.ndarray:
        """(V,) index of the vertex nearest to each vertex's mirror image (x -> -x) in the neutral."""
        def build() -> dict[str, np.ndarray]:
            from scipy.spatial import cKDTree
            mirrored = self.neutral * np.array([-1.0, 1.0, 1.0], np.float32)
            return {"mirror": cKDTree(self.neutral).query(mirrored)[1].astype(np.int32)}
        return cached_arrays("mirror", build, self)["mirror"]

    @cached_property
    def export_topology(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vertices split at UV seams: (vertex index (K,), atlas uv (K, 2), triangles (T, 3) into K)."""
        # The (vertex, uv) pairs as one int64 each: sorted like the pairs, without np.unique's slow axis=0.
        n_uv = len(self.uv)
        unique, inverse = np.unique(self.triangles.ravel().astype(np.int64) * n_uv + self.triangles_uv.ravel(),
                                    return_inverse=True)
        return (unique // n_uv).astype(np.int32), self.uv[unique % n_uv], inverse.reshape(-1, 3).astype(np.int32)

    def part_vertices(self, *names: str) -> np.ndarray:
        return np.concatenate([np.arange(PARTS[n][0], PARTS[n][1] + 1) for n in names])


def sample_identity(rng: np.random.Generator, model: HeadModel) -> np.ndarray:
    """A random identity ~ N(0, 1) clipped to +-2.5 (synthetic renders, training data). Draws all
    of ICT's modes and keeps the model's, so a seed gives the same heads with either model."""
    return np.clip(rng.normal(0.0, 1.0, ICT_IDENTITY_MODES), -2.5, 2.5)[:model.n_identity].astype(np.float32)


def triangulate_quads(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split ICT quads (with -1 padding for triangles) into triangles; returns vertex and uv indices."""
    quad = faces[:, 3, 0] >= 0
    first = faces[:, [0, 1, 2]]
    second = faces[quad][:, [0, 2, 3]]
    tris = np.concatenate([first, second], axis=0)
    owner = np.concatenate([np.arange(len(faces)), np.flatnonzero(quad)])
    return tris[..., 0], tris[..., 1], owner


def _atlas_uv(uv: np.ndarray, tri_uv: np.ndarray, tri_part: np.ndarray) -> np.ndarray:
    """Pack ICT's UDIM tiles into one square atlas; eyeball UVs share tile 0 with the face."""
    eyeball_parts = {EXPORTED_PARTS.index("eyeball_left"), EXPORTED_PARTS.index("eyeball_right")}
    is_eyeball = np.zeros(len(uv), bool)
    is_eyeball[np.unique(tri_uv[np.isin(tri_part, list(eyeball_parts))])] = True
    tile = np.floor(uv[:, 0]).astype(int)
    if np.any(is_eyeball & (tile != 0)) or tile[np.unique(tri_uv)].max() > 1:
        raise AssetError("unexpected ICT UV layout: exported parts must lie in UV tiles 0 and 1")
    local = uv - np.stack([tile, np.zeros_like(tile)], 1)
    out = np.zeros_like(uv)   # UVs of the parts not exported stay 0, not uninitialised memory
    for name, mask in (("face_tile", (tile == 0) & ~is_eyeball), ("head_tile", tile == 1),
                       ("eyeball_tile", is_eyeball)):
        u0, v0, scale = ATLAS[name]
        out[mask] = local[mask] * scale + np.array([u0, v0])
    return out.astype(np.float32)


def _build(arrays, landmarks68, rigid, fitting) -> HeadModel:
    """A HeadModel from ICT's arrays (``ict_face_model.npz`` keys) and its vertex index lists."""
    faces = arrays["faces"]
    tri_v, tri_uv, owner = triangulate_quads(faces)
    first_vertex = faces[owner, 0, 0]
    tri_part = np.full(len(tri_v), -1, np.int32)
    for i, name in enumerate(EXPORTED_PARTS):
        lo, hi = PARTS[name]
        tri_part[(first_vertex >= lo) & (first_vertex <= hi)] = i
    keep = tri_part >= 0
    tri_v, tri_uv, tri_part = tri_v[keep], tri_uv[keep], tri_part[keep]
    uv = _atlas_uv(arrays["uv"].astype(np.float64), tri_uv, tri_part)
    landmarks68 = np.asarray(landmarks68, np.int32)
    if landmarks68.shape != (68,):
        raise AssetError("ICT-FaceKit: expected 68 landmark vertices")
    return HeadModel(
        neutral=arrays["neutral"].astype(np.float32),
        identity_basis=arrays["identity_basis"].astype(np.float32, copy=False),
        expression_basis=arrays["expression_basis"].astype(np.float32, copy=False),
        expression_names=tuple(str(n) for n in arrays["expression_names"]),
        landmarks68=landmarks68,
        triangles=tri_v.astype(np.int32),
        triangles_uv=tri_uv.astype(np.int32),
        uv=uv,
        triangle_part=tri_part,
        extra={"rigid_vertices": np.asarray(rigid, np.int32), "fitting_vertices": np.asarray(fitting, np.int32)},
    )


def load_packed(path: Path = ICT_PACKED) -> HeadModel:
    """The compact model that ships in ``facerecon/data`` (made by ``scripts/pack_ict.py``): int16
    bases at the vertices the exported parts use, expanded to float32 over all ICT vertices (the
    others keep zero offsets, so every ICT vertex index stays valid)."""
    if not path.is_file():
        raise AssetError(f"ICT-FaceKit model not found at {path}; reinstall facerecon or set FACERECON_ICT_DIR")

    def unpack() -> dict[str, np.ndarray]:
        data = np.load(path)
        arrays = {k: data[k] for k in ("neutral", "uv", "faces", "expression_names", "landmarks68",
                                       "rigid_vertices", "fitting_vertices")}
        vertices = data["basis_vertices"]
        for name in ("identity", "expression"):
            q = data[f"{name}_q"]
            full = np.zeros((len(q), len(arrays["neutral"]), 3), np.float32)
            full[:, vertices] = q * data[f"{name}_scale"]
            arrays[f"{name}_basis"] = full
        return arrays
    # Unpacked, the bases take 0.2 s a process (decompression and the int16 -> float32 expansion).
    arrays = cached_arrays("ict_unpacked", unpack, path.read_bytes())
    return _build(arrays, arrays["landmarks68"], arrays["rigid_vertices"], arrays["fitting_vertices"])


def load_folder(folder: Path) -> HeadModel:
    """The full model from a folder with ``ict_face_model.npz`` and ``vertex_indices.json``."""
    data = np.load(folder / "ict_face_model.npz")
    with open(folder / "vertex_indices.json") as fh:
        indices = json.load(fh)
    return _build({k: data[k] for k in data.files}, indices["idx_to_landmark_verts"],
                  indices["idx_to_rigid_verts"], indices["idx_to_fitting_verts"])


@lru_cache(maxsize=1)
def load_model() -> HeadModel:
    """The packaged model, or the full one from ``$FACERECON_ICT_DIR`` when set (cached for the process)."""
    folder = ict_dir()
    return load_folder(folder) if folder is not None else load_packed()
