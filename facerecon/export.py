"""Writing results: textured head meshes (OBJ + MTL + PNG, GLB, PLY) and JSON, each file atomically.

Meshes use the model's export topology (vertices split at UV seams, ``HeadModel.export_topology``).
Units: the GLB is in metres, as glTF requires (``facerecon.gltf`` writes it); OBJ and PLY in
``units`` (metres by default, or cm or mm). Texture coordinates are the atlas UVs with v up, as OBJ
and trimesh expect (OBJ's ``vt`` origin is the image's bottom-left; the texture's row 0 is its top,
v = 1); the GLB flips v, as glTF's origin is the top-left.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import trimesh

from .geometry import vertex_normals
from .gltf import Rig, head_glb
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
        for item in temporary.iterdir():
            os.replace(item, final / item.name)
        temporary.rmdir()
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def encode_image(image: np.ndarray, suffix: str = ".png") -> bytes:
    """An RGB (H, W, 3) uint8 image encoded in the format of ``suffix`` (.png, .jpg, ...)."""
    if not cv2.haveImageWriter(f"x{suffix}"):
        raise ValueError(f"no image format for the suffix {suffix!r}")
    ok, data = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode the image as {suffix!r}")
    return data.tobytes()


def write_image(path: Path, image: np.ndarray) -> Path:
    """Write an RGB (H, W, 3) uint8 image; the format follows the suffix (.png, .jpg, ...)."""
    path = Path(path)
    return write_bytes(path, encode_image(image, path.suffix))


def write_json(path: Path, data: dict) -> Path:
    """Write ``data`` as pretty-printed, strict JSON (NaN is refused); numpy arrays become lists and
    numpy scalars plain numbers."""
    text = json.dumps(data, indent=2, default=_plain, allow_nan=False) + "\n"
    return write_bytes(path, text.encode())


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
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown mesh formats {sorted(unknown)}; choose from {FORMATS}")
    if units not in UNITS:
        raise ValueError(f"unknown units {units!r}; choose from {', '.join(UNITS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vertex, uv, faces = model.export_topology
    positions = np.asarray(vertices_model, np.float32)[vertex] * np.float32(UNITS[units])
    normals = vertex_normals(np.asarray(vertices_model, np.float32), model.triangles)[vertex]
    paths: dict[str, Path] = {}
    png = encode_image(texture, ".png") if {"obj", "glb"} & set(formats) else b""

    if "obj" in formats:
        # Dependencies first, so that the OBJ never appears before its material and texture.
        paths["png"] = write_bytes(out_dir / f"{stem}.png", png)
        paths["mtl"] = write_bytes(out_dir / f"{stem}.mtl", _mtl(stem, paths["png"].name).encode())
        paths["obj"] = write_bytes(out_dir / f"{stem}.obj",
                                   _obj(stem, paths["mtl"].name, positions, uv, normals, faces, units).encode())
    if "glb" in formats:
        paths["glb"] = write_bytes(out_dir / f"{stem}.glb", head_glb(model, vertices_model, png, rig))
    if "ply" in formats:
        size = texture.shape[0]
        texel = uv_to_texel(uv, size)
        colours = np.concatenate([sample_image(texture, texel), np.full((len(uv), 1), 255, np.uint8)], axis=1)
        mesh = trimesh.Trimesh(positions, faces, vertex_normals=normals, vertex_colors=colours, process=False)
        paths["ply"] = write_bytes(out_dir / f"{stem}.ply", mesh.export(file_type="ply"))
    return paths


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


def _obj(name: str, mtl_file: str, positions: np.ndarray, uv: np.ndarray, normals: np.ndarray,
         faces: np.ndarray, units: str) -> str:
    """OBJ text; position, uv and normal share one index per split vertex (1-based)."""
    k, t = len(positions), len(faces)
    corners = np.repeat(faces + 1, 3, axis=1).ravel()
    digits = {"m": 7, "cm": 5, "mm": 4}[units]   # 0.1 micrometre in every unit
    return "".join([
        f"# facerecon head, {UNIT_NAMES[units]}\nmtllib {mtl_file}\no {name}\n",
        (f"v %.{digits}f %.{digits}f %.{digits}f\n" * k) % tuple(positions.ravel().tolist()),
        ("vt %.6f %.6f\n" * k) % tuple(uv.ravel().tolist()),
        ("vn %.4f %.4f %.4f\n" * k) % tuple(normals.ravel().tolist()),
        f"usemtl {name}\ns 1\n",
        ("f %d/%d/%d %d/%d/%d %d/%d/%d\n" * t) % tuple(corners.tolist()),
    ])
