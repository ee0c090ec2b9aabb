"""Writing results: textured head meshes (OBJ + MTL + PNG, GLB, PLY) and JSON, each file atomically.

Meshes use the model's export topology (vertices split at UV seams, ``HeadModel.export_topology``)
and keep the model's units, centimetres. Texture coordinates are the atlas UVs with v up, as OBJ
and trimesh expect (OBJ's ``vt`` origin is the image's bottom-left; the texture's row 0 is its top,
v = 1); trimesh flips v itself for glTF, whose origin is the top-left.
"""
from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import trimesh

from .model import HeadModel
from .texture import sample_image

FORMATS = ("obj", "glb", "ply")


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


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def encode_image(image: np.ndarray, suffix: str) -> bytes:
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
                model: HeadModel, formats: Sequence[str] = FORMATS) -> dict[str, Path]:
    """Write the head ``vertices_model`` (V, 3) cm with ``texture`` (S, S, 3) uint8 RGB as
    ``out_dir/stem.*``. Returns the written paths by kind: "obj", "mtl", "png", "glb", "ply"."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown mesh formats {sorted(unknown)}; choose from {FORMATS}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vertex, uv, faces = model.export_topology
    positions = np.asarray(vertices_model, np.float32)[vertex]
    normals = _vertex_normals(np.asarray(vertices_model, np.float32), model.triangles)[vertex]
    paths: dict[str, Path] = {}
    # the texture is encoded once: the OBJ's PNG file and the GLB's embedded image are the same bytes
    png = encode_image(texture, ".png") if {"obj", "glb"} & set(formats) else b""

    if "obj" in formats:
        # Dependencies first, so that the OBJ never appears before its material and texture.
        paths["png"] = write_bytes(out_dir / f"{stem}.png", png)
        paths["mtl"] = write_bytes(out_dir / f"{stem}.mtl", _mtl(stem, paths["png"].name).encode())
        paths["obj"] = write_bytes(out_dir / f"{stem}.obj",
                                   _obj(stem, paths["mtl"].name, positions, uv, normals, faces).encode())
    if "glb" in formats:
        material = trimesh.visual.material.PBRMaterial(
            name=stem, baseColorTexture=_EncodedPNG(png), metallicFactor=0.0, roughnessFactor=0.8)
        mesh = trimesh.Trimesh(positions, faces, vertex_normals=normals, process=False,
                               visual=trimesh.visual.TextureVisuals(uv=uv, material=material))
        # Without the normals three.js shades the head faceted.
        glb = mesh.export(file_type="glb", include_normals=True)
        paths["glb"] = write_bytes(out_dir / f"{stem}.glb", glb)
    if "ply" in formats:
        size = texture.shape[0]
        texel = np.stack([uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5], axis=1)
        colours = np.concatenate([sample_image(texture, texel), np.full((len(uv), 1), 255, np.uint8)], axis=1)
        mesh = trimesh.Trimesh(positions, faces, vertex_normals=normals, vertex_colors=colours, process=False)
        paths["ply"] = write_bytes(out_dir / f"{stem}.ply", mesh.export(file_type="ply"))
    return paths


class _EncodedPNG:
    """An encoded PNG in place of a PIL image for trimesh's glTF writer, which embeds an image by
    calling its ``save``: a PIL image was encoded there a second time, by Pillow at its default
    level (323 ms for a 1024 texture against OpenCV's 48 ms, the largest part of the main job)."""

    format = "PNG"

    def __init__(self, data: bytes):
        self.data = data

    def save(self, fp, format=None) -> None:  # noqa: A002 (PIL's signature)
        fp.write(self.data)


def _vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(V, 3) unit area-weighted vertex normals; computed before the UV split so seams stay smooth."""
    a = vertices[triangles[:, 0]]
    face = np.cross(vertices[triangles[:, 1]] - a, vertices[triangles[:, 2]] - a)
    normals = np.stack([sum(np.bincount(triangles[:, k], face[:, c], len(vertices)) for k in range(3))
                        for c in range(3)], axis=1)
    return (normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _mtl(name: str, texture_file: str) -> str:
    # Unlit-looking diffuse material: white Kd so the texture shows unmodulated, no specular.
    return (f"newmtl {name}\nKa 1.000 1.000 1.000\nKd 1.000 1.000 1.000\nKs 0.000 0.000 0.000\n"
            f"d 1.0\nillum 1\nmap_Kd {texture_file}\n")


def _obj(name: str, mtl_file: str, positions: np.ndarray, uv: np.ndarray, normals: np.ndarray,
         faces: np.ndarray) -> str:
    """OBJ text; position, uv and normal share one index per split vertex (1-based)."""
    k, t = len(positions), len(faces)
    corners = np.repeat(faces + 1, 3, axis=1).ravel()
    return "".join([
        f"# facerecon head, centimetres\nmtllib {mtl_file}\no {name}\n",
        ("v %.5f %.5f %.5f\n" * k) % tuple(positions.ravel().tolist()),
        ("vt %.6f %.6f\n" * k) % tuple(uv.ravel().tolist()),
        ("vn %.4f %.4f %.4f\n" * k) % tuple(normals.ravel().tolist()),
        f"usemtl {name}\ns 1\n",
        ("f %d/%d/%d %d/%d/%d %d/%d/%d\n" * t) % tuple(corners.tolist()),
    ])
