"""Pack the part of ICT-FaceKit that facerecon uses into ``facerecon/data/ict_facekit.npz``.

ICT-FaceKit Light (MIT, https://github.com/ICT-VGL/ICT-FaceKit) has 26,719 vertices, 100 identity
modes and 53 expression shapes (about 50 MB as float32). The package needs much less of it:

- triangles and UVs of the exported parts only (``model.EXPORTED_PARTS``; no teeth, gums,
  eyelashes or transparent eye meshes);
- shape bases only at the vertices those triangles use, plus each one's mirror vertex (the texture's
  mirror fill and the training flip read it); every other vertex keeps its neutral position so that
  all vertex indices (parts, landmarks, the Face Mesh correspondence) stay those of ICT;
- the leading identity modes the fit solves for (``FitSettings.identity_modes``, 40), and all 53
  expression shapes;
- the bases as int16 with one scale per mode and axis (the step is 1/65,534 of the mode's range);
  the script prints how far that moves reconstructed heads (it must stay under 0.01 mm).

Sources: an upstream ICT-FaceKit checkout (``--upstream DIR``: its ``FaceXModel`` folder of OBJ
files and ``vertex_indices.json``), or the folder holding ``ict_face_model.npz`` and
``vertex_indices.json`` (``--npz-dir``; default ``$FACERECON_ICT_DIR``, else
``<shared>/assets/ict-facekit``). The licence notice is copied beside the output.

    python scripts/pack_ict.py [--upstream ICT-FaceKit/ | --npz-dir DIR] [--out facerecon/data/ict_facekit.npz]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facerecon.assets import PACKAGE_DATA, shared_dir  # noqa: E402
from facerecon.export import atomic_path  # noqa: E402
from facerecon.fit import FitSettings  # noqa: E402
from facerecon.model import EXPORTED_PARTS, PARTS, triangulate_quads  # noqa: E402

OUT = PACKAGE_DATA / "ict_facekit.npz"
LICENSE_OUT = PACKAGE_DATA / "ICT-FaceKit-LICENSE.txt"
TOLERANCE_CM = 1e-3   # 0.01 mm: the most a packed head may move against the float32 model


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ICT OBJ -> vertices (V, 3) float32, uv (Nuv, 2) float32, faces (F, 4, 2) int32 (vertex, uv
    index pairs, 0-based; triangles padded with -1), the layout of ``ict_face_model.npz``."""
    verts, uvs, faces = [], [], []
    with open(path) as fh:
        for line in fh:
            tag, _, rest = line.partition(" ")
            if tag == "v":
                verts.append(rest.split()[:3])
            elif tag == "vt":
                uvs.append(rest.split()[:2])
            elif tag == "f":
                corners = [(int(c.split("/")[0]) - 1, int(c.split("/")[1]) - 1) for c in rest.split()]
                if len(corners) not in (3, 4):
                    raise ValueError(f"{path}: faces must be triangles or quads")
                faces.append(corners + [(-1, -1)] * (4 - len(corners)))
    return (np.asarray(verts, np.float32), np.asarray(uvs, np.float32),
            np.asarray(faces, np.int32).reshape(-1, 4, 2))


def read_obj_vertices(path: Path) -> np.ndarray:
    with open(path) as fh:
        return np.asarray([line.split()[1:4] for line in fh if line.startswith("v ")], np.float32)


def from_upstream(root: Path, n_identity: int) -> tuple[dict, dict]:
    """The model from an ICT-FaceKit checkout: shapes are stored as full meshes; modes are their
    offsets from the neutral (ICT's ``face_model_io`` does the same; identity coefficients are
    standard normal, as its ``sample_random.py`` draws them)."""
    folder = root / "FaceXModel"
    indices = json.loads((folder / "vertex_indices.json").read_text())
    neutral, uv, faces = read_obj(folder / "generic_neutral_mesh.obj")
    identity = np.stack([read_obj_vertices(folder / f"identity{i:03d}.obj") - neutral for i in range(n_identity)])
    names = indices["expressions"]
    expression = np.stack([read_obj_vertices(folder / f"{name}.obj") - neutral for name in names])
    return dict(neutral=neutral, uv=uv, faces=faces, identity_basis=identity, expression_basis=expression,
                expression_names=np.asarray(names)), indices


def from_npz(folder: Path, n_identity: int) -> tuple[dict, dict]:
    data = np.load(folder / "ict_face_model.npz")
    arrays = {k: data[k] for k in data.files}
    arrays["identity_basis"] = arrays["identity_basis"][:n_identity]
    return arrays, json.loads((folder / "vertex_indices.json").read_text())


def quantise(basis: np.ndarray, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, V, 3) float -> int16 (n, K, 3) at ``vertices`` and the (n, 1, 3) float32 scale."""
    part = basis[:, vertices].astype(np.float64)
    scale = np.abs(part).max(axis=1, keepdims=True) / 32767.0
    scale[scale == 0] = 1.0
    return np.round(part / scale).astype(np.int16), scale.astype(np.float32)


def pack(arrays: dict, indices: dict) -> dict:
    faces = arrays["faces"]
    first = faces[:, 0, 0]
    exported = np.zeros(len(faces), bool)
    for name in EXPORTED_PARTS:
        exported |= (first >= PARTS[name][0]) & (first <= PARTS[name][1])
    faces = faces[exported]
    neutral = arrays["neutral"].astype(np.float32)
    tri_v = triangulate_quads(faces)[0]
    used = np.unique(tri_v)
    # the vertex nearest each used vertex's mirror image, as HeadModel.mirror_vertex finds it
    from scipy.spatial import cKDTree
    mirror = cKDTree(neutral).query(neutral[used] * np.array([-1.0, 1.0, 1.0], np.float32))[1]
    vertices = np.union1d(used, mirror).astype(np.int32)
    identity_q, identity_scale = quantise(arrays["identity_basis"], vertices)
    expression_q, expression_scale = quantise(arrays["expression_basis"], vertices)
    return dict(
        neutral=neutral, uv=arrays["uv"].astype(np.float32), faces=faces.astype(np.int32),
        expression_names=np.asarray([str(n) for n in arrays["expression_names"]]),
        basis_vertices=vertices, identity_q=identity_q, identity_scale=identity_scale,
        expression_q=expression_q, expression_scale=expression_scale,
        landmarks68=np.asarray(indices["idx_to_landmark_verts"], np.int32),
        rigid_vertices=np.asarray(indices["idx_to_rigid_verts"], np.int32),
        fitting_vertices=np.asarray(indices["idx_to_fitting_verts"], np.int32),
    )


def measure(arrays: dict, packed_path: Path, n_heads: int = 200, seed: int = 0) -> float:
    """Max vertex distance (cm) between heads from the packed and the float32 model, over the
    exported vertices: identities ~ N(0, 1) clipped to +-2.5 (the synthetic protocol's), expression
    weights uniform in [0, 1] on all 53 shapes at once (harder than any fitted face)."""
    os.environ.pop("FACERECON_ICT_DIR", None)
    from facerecon.model import load_packed
    packed = load_packed(packed_path)
    rng = np.random.default_rng(seed)
    used = packed.used_vertices
    full_id = arrays["identity_basis"][:, used].astype(np.float64)
    full_ex = arrays["expression_basis"][:, used].astype(np.float64)
    worst = 0.0
    for _ in range(n_heads):
        identity = np.clip(rng.normal(size=packed.n_identity), -2.5, 2.5)
        expression = rng.uniform(0.0, 1.0, packed.n_expression)
        exact = arrays["neutral"][used] + np.tensordot(identity, full_id, 1) + np.tensordot(expression, full_ex, 1)
        got = packed.shape(identity, expression, used)
        worst = max(worst, float(np.linalg.norm(got - exact, axis=1).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--upstream", type=Path, help="an ICT-FaceKit checkout (with FaceXModel/)")
    source.add_argument("--npz-dir", type=Path, help="a folder with ict_face_model.npz and vertex_indices.json")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--identity-modes", type=int, default=FitSettings().identity_modes)
    args = parser.parse_args()
    if args.upstream:
        arrays, indices = from_upstream(args.upstream, args.identity_modes)
        license_file = args.upstream / "LICENSE"
    else:
        folder = args.npz_dir or Path(os.environ.get("FACERECON_ICT_DIR", shared_dir() / "assets" / "ict-facekit"))
        arrays, indices = from_npz(folder, args.identity_modes)
        license_file = folder / "LICENSE"
    packed = pack(arrays, indices)
    with atomic_path(args.out) as tmp:
        np.savez_compressed(tmp, **packed)
    with atomic_path(args.out.with_name(LICENSE_OUT.name)) as tmp:
        shutil.copyfile(license_file, tmp)
    worst = measure(arrays, args.out)
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.2f} MB, {len(packed['basis_vertices'])} vertices with a "
          f"basis, {args.identity_modes} identity modes, {len(packed['expression_names'])} expressions; "
          f"max vertex difference against float32 over 200 heads: {worst * 10:.5f} mm")
    if worst >= TOLERANCE_CM:
        sys.exit(f"the packed model moves heads by {worst * 10:.4f} mm (limit {TOLERANCE_CM * 10} mm)")


if __name__ == "__main__":
    main()
