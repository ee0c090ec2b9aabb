"""Writing results: textured head meshes (OBJ + MTL + PNG, GLB, PLY) and JSON, each file atomically.

Meshes use the model's export topology (vertices split at UV seams, ``HeadModel.export_topology``).
Units: the GLB is in metres, as glTF requires (``facerecon.gltf`` writes it); OBJ and PLY in
``units`` (metres by default, or cm or mm). Texture coordinates are the atlas UVs with v up, as OBJ
and trimesh expect (OBJ's ``vt`` origin is the image's bottom-left; the texture's row 0 is its top,
v = 1); the GLB flips v, as glTF's origin is the top-left.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import struct
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import cv2
import numba
import numpy as np
from isal import isal_zlib

from .diskcache import cached_arrays
from .geometry import vertex_normals
from .gltf import Rig, head_glb, surface_glb
from .model import HeadModel, uv_to_texel
from .texture import sample_image

FORMATS = ("obj", "glb", "ply")
UNITS = {"m": 0.01, "cm": 1.0, "mm": 10.0}   # the OBJ/PLY unit -> its size per model centimetre
UNIT_NAMES = {"m": "metres", "cm": "centimetres", "mm": "millimetres"}


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final`` to write to; on success it is renamed onto ``final``
    (atomic on one file system), on any error it is deleted. Nothing half-written ever carries the
    final name. The temporary keeps the final suffix, for writers that pick a format from it."""
    final = Path(final)
    temporary = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp{final.suffix}")
    try:
        yield temporary
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a new hidden folder beside ``final`` to write a set of files into (one photo's outputs);
    on success it is renamed to ``final``, or, where ``final`` exists already, its files are moved
    into it. On any error (a full disk) it is deleted: nothing of a half-written set remains."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
    temporary.mkdir()   # not tempfile.mkdtemp: its folders are private (0700), this one becomes final
    try:
        yield temporary
        if not final.exists():
            os.replace(temporary, final)
            return
        _move_into(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _move_into(source: Path, folder: Path) -> None:
    """Move ``source``'s files into the existing ``folder``, replacing files of the same name and
    merging sub-folders that both hold (a second run into the same output), then remove ``source``."""
    for item in source.iterdir():
        target = folder / item.name
        if item.is_dir() and target.is_dir():
            _move_into(item, target)
        else:
            os.replace(item, target)
    source.rmdir()


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def encode_image(image: np.ndarray, suffix: str = ".png") -> bytes:
    """An RGB (H, W, 3) uint8 image encoded in the format of ``suffix`` (.png, .jpg, ...)."""
    if suffix.lower() == ".png":
        return encode_png(image)
    if not cv2.haveImageWriter(f"x{suffix}"):
        raise ValueError(f"no image format for the suffix {suffix!r}")
    ok, data = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode the image as {suffix!r}")
    return data.tobytes()


PNG_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}   # channels -> PNG colour type: grey, RGB, RGBA


def encode_png(image: np.ndarray) -> bytes:
    """A (H, W), (H, W, 3) RGB or (H, W, 4) RGBA uint8 image as PNG bytes: every row "up"-filtered
    (against the row above) and deflated by ISA-L at its fastest level, which on the textures and
    overlays takes about a third of the CPU of OpenCV's zlib at level 1 and is a few % smaller
    (docs/performance.md). ISA-L and the CRC release the GIL, as the export's threads need."""
    image = np.asarray(image)
    channels = 1 if image.ndim == 2 else image.shape[-1]
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or channels not in PNG_COLOUR_TYPES or 0 in image.shape:
        raise ValueError(f"a PNG needs a non-empty (H, W[, 3 or 4]) uint8 image, not {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    flat = image.reshape(height, width * channels)
    rows = np.empty((height, 1 + flat.shape[1]), np.uint8)
    rows[:, 0] = 2                                  # the "up" filter
    rows[0, 1:] = flat[0]                           # the row above the first is zeros
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, PNG_COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join([b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header),
                     _png_chunk(b"IDAT", isal_zlib.compress(rows, 1)), _png_chunk(b"IEND", b"")])


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def write_image(path: Path, image: np.ndarray) -> Path:
    """Write an RGB (H, W, 3) uint8 image; the format follows the suffix (.png, .jpg, ...)."""
    path = Path(path)
    return write_bytes(path, encode_image(image, path.suffix))


def write_json(path: Path, data: dict) -> Path:
    """Write ``data`` as pretty-printed, strict JSON (NaN is refused); numpy arrays become lists and
    numpy scalars plain numbers. Objects are indented as ``json.dumps(indent=2)`` would; a list of
    plain values (numbers, strings, ...) is written on one line and a list of such lists one row a
    line, so that the large arrays (landmarks) stay readable and go through json's C encoder."""
    return write_bytes(path, (json_text(data) + "\n").encode())


def json_text(value, level: int = 0) -> str:
    """``value`` as pretty-printed JSON text (see :func:`write_json`); parses to what
    ``json.dumps(value, default=...)`` does."""
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(value, np.ndarray):
        if value.ndim == 2 and len(value) and value.dtype.kind in "biuf":
            # Numbers only, so "], [" is a row boundary: one C-encoder call for the whole matrix.
            return "[\n" + inner + _compact(value.tolist())[1:-1].replace("], [", f"],\n{inner}[") + f"\n{pad}]"
        value = value.tolist()
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = (f"{inner}{_json_key(k)}: {json_text(v, level + 1)}" for k, v in value.items())
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        if all(_is_leaf(v) for v in value):
            return _compact(value)
        if all(isinstance(v, (list, tuple, np.ndarray)) and all(_is_leaf(x) for x in v) for v in value):
            return "[\n" + ",\n".join(inner + _compact(v) for v in value) + f"\n{pad}]"
        return "[\n" + ",\n".join(inner + json_text(v, level + 1) for v in value) + f"\n{pad}]"
    return _compact(value)


def _is_leaf(value) -> bool:
    return value is None or isinstance(value, (str, int, float, np.generic))


def _compact(value) -> str:
    return json.dumps(value, default=_plain, allow_nan=False)


def _json_key(key) -> str:
    # As json.dumps converts keys: str as is; int, float, bool and None by their JSON text.
    if isinstance(key, str) or key is None or isinstance(key, (int, float)):
        return json.dumps(key if isinstance(key, str) else json.dumps(key, allow_nan=False))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def export_mesh(out_dir: Path, stem: str, vertices_model: np.ndarray, texture: np.ndarray,
                model: HeadModel, formats: Sequence[str] = FORMATS, units: str = "m",
                rig: Rig | None = None) -> dict[str, Path]:
    """Write the head ``vertices_model`` (V, 3) cm with ``texture`` (S, S, 3) uint8 RGB as
    ``out_dir/stem.*``; OBJ and PLY in ``units`` (m, cm or mm), the GLB in metres, animatable with
    ``rig`` (``facerecon.gltf``). Returns the written paths by kind: "obj", "mtl", "png", "glb", "ply"."""
    _check_formats(formats, units)
    vertex, uv, faces = model.export_topology
    positions = np.asarray(vertices_model, np.float32)[vertex] * np.float32(UNITS[units])
    normals = vertex_normals(np.asarray(vertices_model, np.float32), model.triangles)[vertex]
    return _write_mesh(out_dir, stem, positions, uv, normals, faces, texture, formats, units,
                       lambda png: head_glb(model, vertices_model, png, rig),
                       f"facerecon head, {UNIT_NAMES[units]}", _obj_topology(model))


def export_surface(out_dir: Path, stem: str, positions_m: np.ndarray, uv: np.ndarray, faces: np.ndarray,
                   texture: np.ndarray, formats: Sequence[str] = FORMATS, units: str = "m",
                   metric: bool = True) -> dict[str, Path]:
    """Write a textured mesh that is not the head model (a scanned surface): ``positions_m`` (N, 3) in
    metres, ``uv`` (N, 2) with v up, ``faces`` (F, 3) counter-clockwise from outside. OBJ and PLY in
    ``units``, the GLB in metres. Without ``metric`` the scale is unknown: the numbers are written
    as given and the OBJ and PLY say so. Returns the written paths by kind, as ``export_mesh``."""
    _check_formats(formats, units)
    positions_m = np.asarray(positions_m, np.float32)
    faces = np.asarray(faces)
    normals = vertex_normals(positions_m, faces)
    positions = positions_m * np.float32(UNITS[units] / UNITS["m"])
    uv = np.asarray(uv, np.float32)
    return _write_mesh(out_dir, stem, positions, uv, normals, faces, texture, formats, units,
                       lambda png: surface_glb(positions_m, normals, uv, faces, png()),
                       f"facerecon scan, {UNIT_NAMES[units] if metric else 'arbitrary units (the scale is unknown)'}",
                       _obj_topology_lines(uv, faces))


def _check_formats(formats: Sequence[str], units: str) -> None:
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown mesh formats {sorted(unknown)}; choose from {FORMATS}")
    if units not in UNITS:
        raise ValueError(f"unknown units {units!r}; choose from {', '.join(UNITS)}")


def _write_mesh(out_dir: Path, stem: str, positions: np.ndarray, uv: np.ndarray, normals: np.ndarray,
                faces: np.ndarray, texture: np.ndarray, formats: Sequence[str], units: str, glb,
                header: str, topology: tuple[bytes, bytes]) -> dict[str, Path]:
    """The mesh files of ``positions`` (N, 3) float32 in ``units``. ``glb(png)`` makes the GLB's
    bytes, ``png()`` giving the encoded texture; ``header`` is the OBJ's and PLY's comment;
    ``topology`` the OBJ's ``vt`` and ``f`` lines."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    with ThreadPoolExecutor(2) as pool:
        # The PNG encodes (OpenCV releases the GIL) while the meshes are built, the GLB (mostly a
        # numba kernel, also without the GIL) beside the OBJ and PLY; it takes the PNG last.
        png = pool.submit(encode_image, texture, ".png") if {"obj", "glb"} & set(formats) else None
        glb_bytes = pool.submit(glb, png.result) if "glb" in formats else None
        ply = _ply(positions, normals, uv, faces, texture, header) if "ply" in formats else b""
        obj = _obj(stem, f"{stem}.mtl", positions, normals, units, header, topology) if "obj" in formats else b""
    if "obj" in formats:
        # Dependencies first, so that the OBJ never appears before its material and texture.
        paths["png"] = write_bytes(out_dir / f"{stem}.png", png.result())
        paths["mtl"] = write_bytes(out_dir / f"{stem}.mtl", _mtl(stem, paths["png"].name).encode())
        paths["obj"] = write_bytes(out_dir / f"{stem}.obj", obj)
    if "glb" in formats:
        paths["glb"] = write_bytes(out_dir / f"{stem}.glb", glb_bytes.result())
    if "ply" in formats:
        paths["ply"] = write_bytes(out_dir / f"{stem}.ply", ply)
    return paths


def _ply(positions: np.ndarray, normals: np.ndarray, uv: np.ndarray, faces: np.ndarray, texture: np.ndarray,
         header: str) -> bytes:
    """Binary PLY with the texture's colour at each (split) vertex."""
    texel = uv_to_texel(uv, texture.shape[1], texture.shape[0])
    vertices = np.empty(len(uv), [("position", "<f4", 3), ("normal", "<f4", 3), ("colour", "u1", 4)])
    vertices["position"], vertices["normal"] = positions, normals
    vertices["colour"][:, :3], vertices["colour"][:, 3] = sample_image(texture, texel), 255
    triangles = np.empty(len(faces), [("count", "u1"), ("corners", "<i4", 3)])
    triangles["count"], triangles["corners"] = 3, faces
    head = (f"ply\nformat binary_little_endian 1.0\ncomment {header}\n"
            f"element vertex {len(vertices)}\n"
            + "".join(f"property float {c}\n" for c in ("x", "y", "z", "nx", "ny", "nz"))
            + "".join(f"property uchar {c}\n" for c in ("red", "green", "blue", "alpha"))
            + f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    return head.encode() + vertices.tobytes() + triangles.tobytes()


def mesh_info(formats: Sequence[str], units: str, rig: Rig | None, model: HeadModel) -> dict:
    """What the JSON says about the mesh files: their units and what the GLB holds."""
    info: dict = {"units": {f: ("m" if f == "glb" else units) for f in formats}}
    if "glb" in formats:
        info["glb"] = {"morph_targets": 0 if rig is None else model.n_expression,
                       "eyes": "nodes eye_left and eye_right, pivoting at the eyeball centres; gaze is "
                               "not estimated, so they stay at rest"}
        if rig is not None:
            info["glb"].update(
                target_names="mesh.extras.targetNames: the ARKit names (browInnerUp and cheekPuff come in "
                             "Left/Right halves, as in ICT); the default weights are the fitted expression_ict",
                pose="the head node's transform is the fitted pose, seen from the camera node at the "
                     "origin (glTF axes: x right, y up, looking down -z; metres)")
    return info


def _mtl(name: str, texture_file: str) -> str:
    # Unlit-looking diffuse material: white Kd so the texture shows unmodulated, no specular.
    return (f"newmtl {name}\nKa 1.000 1.000 1.000\nKd 1.000 1.000 1.000\nKs 0.000 0.000 0.000\n"
            f"d 1.0\nillum 1\nmap_Kd {texture_file}\n")


def _obj(name: str, mtl_file: str, positions: np.ndarray, normals: np.ndarray, units: str, header: str,
         topology: tuple[bytes, bytes]) -> bytes:
    """OBJ text; position, uv and normal share one index per split vertex (1-based)."""
    digits = {"m": 7, "cm": 5, "mm": 4}[units]   # 0.1 micrometre in every unit
    uv_lines, face_lines = topology
    return b"".join([
        f"# {header}\nmtllib {mtl_file}\no {name}\n".encode(),
        fixed_point_lines(b"v ", positions, digits),
        uv_lines,
        fixed_point_lines(b"vn ", np.asarray(normals, np.float32), 4),
        f"usemtl {name}\ns 1\n".encode(),
        face_lines,
    ])


def _obj_topology(model: HeadModel) -> tuple[bytes, bytes]:
    """The head's OBJ ``vt`` and ``f`` lines: the same for every head, so formatted once per model."""
    key = ("obj_topology",)
    if key not in model.extra:
        def build() -> dict[str, np.ndarray]:
            _, uv, faces = model.export_topology
            vt, f = _obj_topology_lines(uv, faces)
            return {"vt": np.frombuffer(vt, np.uint8), "f": np.frombuffer(f, np.uint8)}
        lines = cached_arrays("obj_topology", build, model)
        model.extra[key] = lines["vt"].tobytes(), lines["f"].tobytes()
    return model.extra[key]


def _obj_topology_lines(uv: np.ndarray, faces: np.ndarray) -> tuple[bytes, bytes]:
    corners = np.repeat(np.asarray(faces) + 1, 3, axis=1).ravel()
    return (fixed_point_lines(b"vt ", np.asarray(uv, np.float32), 6),
            (("f %d/%d/%d %d/%d/%d %d/%d/%d\n" * len(faces)) % tuple(corners.tolist())).encode())


def fixed_point_lines(prefix: bytes, values: np.ndarray, digits: int) -> bytes:
    """One text line per row of ``values`` (N, C) float32: ``prefix``, then the numbers as
    ``"%.{digits}f"`` writes them, space-separated (the same text, formatted without Python's per-
    number cost). Values must be finite and under 1e9 in size."""
    values = np.ascontiguousarray(values)
    if values.dtype != np.float32 or values.ndim != 2 or not 1 <= digits <= 7:
        raise ValueError(f"expected (N, C) float32 values and 1-7 digits, got {values.dtype} {values.shape}, {digits}")
    if not (np.isfinite(values).all() and (np.abs(values) < 1e9).all()):
        raise ValueError("mesh values must be finite and under 1e9 in size")
    width = len(prefix) + values.shape[1] * (12 + digits)   # per row: sign, 9 integer digits, point, space
    out = np.empty(len(values) * width, np.uint8)
    size = _fixed_point_lines(np.frombuffer(prefix, np.uint8), values, digits, out)
    return out[:size].tobytes()


@numba.njit(cache=True, nogil=True)
def _fixed_point_lines(prefix, values, digits, out):
    # A float32 times 10**digits (digits <= 7) is exact in float64, so rounding that product half
    # to even gives the correctly rounded decimal, as printf does; the sign is the value's own
    # (-0.0000 for a small negative, as printf writes it).
    scale = 10.0 ** digits
    reversed_digits = np.empty(24, np.uint8)
    pos = 0
    for i in range(values.shape[0]):
        for c in prefix:
            out[pos] = c
            pos += 1
        for j in range(values.shape[1]):
            x = np.float64(values[i, j])
            if j:
                out[pos] = 32   # " "
                pos += 1
            if math.copysign(1.0, x) < 0:
                out[pos] = 45   # "-"
                pos += 1
            r = np.int64(np.rint(abs(x) * scale))
            n = 0
            for _ in range(digits):
                reversed_digits[n] = 48 + r % 10
                r //= 10
                n += 1
            reversed_digits[n] = 46   # "."
            n += 1
            while True:
                reversed_digits[n] = 48 + r % 10
                r //= 10
                n += 1
                if r == 0:
                    break
            for q in range(n - 1, -1, -1):
                out[pos] = reversed_digits[q]
                pos += 1
        out[pos] = 10   # newline
        pos += 1
    return pos
