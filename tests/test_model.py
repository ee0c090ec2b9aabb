"""The packaged ICT-FaceKit model against the full one (shared folder), and its packing script."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from facerecon.assets import ICT_PACKED
from facerecon.fit import FitSettings
from facerecon.model import load_folder, load_packed

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ict(shared: Path) -> Path:
    folder = shared / "assets" / "ict-facekit"
    if not (folder / "ict_face_model.npz").is_file():
        pytest.skip("the full ICT-FaceKit model is not in the shared folder")
    return folder


@pytest.fixture(scope="module")
def pack_ict():
    spec = importlib.util.spec_from_file_location("pack_ict", ROOT / "scripts" / "pack_ict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_packaged_model_ships_with_its_licence():
    model = load_packed()
    assert model.n_identity == FitSettings().identity_modes and model.n_expression == 53
    assert model.neutral.shape == (26719, 3) and len(model.triangles) > 30000
    licence = (ICT_PACKED.parent / "ICT-FaceKit-LICENSE.txt").read_text()
    assert "MIT" in licence or "Permission is hereby granted" in licence
    assert ICT_PACKED.stat().st_size < 8e6


def test_packaged_model_reconstructs_heads_within_a_hundredth_of_a_millimetre(ict):
    packed, full = load_packed(), load_folder(ict)
    assert full.n_identity == 100
    np.testing.assert_array_equal(packed.triangles, full.triangles)
    np.testing.assert_array_equal(packed.uv, full.uv)
    np.testing.assert_array_equal(packed.landmarks68, full.landmarks68)
    np.testing.assert_array_equal(packed.mirror_vertex, full.mirror_vertex)
    used = packed.used_vertices
    rng = np.random.default_rng(7)
    for _ in range(20):
        identity = np.clip(rng.normal(size=packed.n_identity), -2.5, 2.5).astype(np.float32)
        expression = rng.uniform(0, 1, 53).astype(np.float32)
        full_identity = np.zeros(full.n_identity, np.float32)
        full_identity[:packed.n_identity] = identity
        a = packed.shape(identity, expression)
        b = full.shape(full_identity, expression)
        # exported vertices and their mirrors (read by the texture's mirror fill)
        for vertices in (used, packed.mirror_vertex[used]):
            assert np.linalg.norm(a[vertices] - b[vertices], axis=1).max() < 1e-3   # cm: 0.01 mm


def test_pack_script_rebuilds_the_shipped_file(ict, pack_ict):
    arrays, indices = pack_ict.from_npz(ict, FitSettings().identity_modes)
    packed = pack_ict.pack(arrays, indices)
    shipped = np.load(ICT_PACKED)
    assert set(packed) == set(shipped.files)
    for key, value in packed.items():
        np.testing.assert_array_equal(value, shipped[key], err_msg=key)


def test_obj_reader_matches_the_model_arrays(ict, pack_ict):
    """The upstream route reads ICT's OBJ files: its neutral mesh gives the npz's arrays."""
    neutral, uv, faces = pack_ict.read_obj(ict / "generic_neutral_mesh.obj")
    data = np.load(ict / "ict_face_model.npz")
    np.testing.assert_allclose(neutral, data["neutral"], atol=1e-5)
    np.testing.assert_allclose(uv, data["uv"], atol=1e-5)
    np.testing.assert_array_equal(faces, data["faces"])


def test_ict_dir_override_loads_the_full_model(ict, monkeypatch):
    from facerecon.model import load_model
    monkeypatch.setenv("FACERECON_ICT_DIR", str(ict))
    load_model.cache_clear()
    try:
        assert load_model().n_identity == 100
    finally:
        load_model.cache_clear()
