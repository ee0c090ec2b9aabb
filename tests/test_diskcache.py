"""The disk cache of per-model data: what a process loads from it is what it would have built, bit
for bit and dtype for dtype; a damaged entry is rebuilt, an unwritable folder only costs time."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from facerecon import diskcache, export, gltf, texture
from facerecon.gltf import rotation_quaternion
from facerecon.model import HeadModel, load_packed


def derived(model: HeadModel) -> dict[str, np.ndarray]:
    """Every cached array a process derives from ``model``, by name."""
    out = {f"model.{f.name}": getattr(model, f.name) for f in dataclasses.fields(model)
           if isinstance(getattr(model, f.name), np.ndarray)}
    out["mirror_vertex"] = model.mirror_vertex
    for name, value in vars(texture._model_data(model)).items():
        for i, array in enumerate(value if isinstance(value, tuple) else (value,)):
            out[f"data.{name}.{i}"] = np.asarray(array)
    for name, value in vars(texture._layout(model, 256)).items():
        out[f"layout.{name}"] = np.asarray(value)
    for i, delta in enumerate(gltf._position_targets(model)):
        out[f"target{i}"] = np.frombuffer(bytes(delta.values) + bytes(delta.indices or b""), np.uint8)
        out[f"target{i}.bounds"] = np.asarray(delta.bounds)
    for i, array in enumerate(gltf._normal_plan(model)):
        out[f"normal_plan{i}"] = array
    for name, lines in zip(("vt", "f"), export._obj_topology(model)):
        out[f"obj.{name}"] = np.frombuffer(lines, np.uint8)
    return out


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert np.array_equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, np.ndarray]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACERECON_CACHE_DIR", "")   # no disk cache: everything built here
        return derived(load_packed())


def test_loaded_entries_equal_built_ones(tmp_path, monkeypatch, built):
    monkeypatch.setenv("FACERECON_CACHE_DIR", str(tmp_path))
    assert_same(derived(load_packed()), built)          # builds and writes the entries
    names = sorted(path.name.split("-")[0] for path in tmp_path.glob("*.npz"))
    assert names == ["atlas_layout", "bake_data", "glb_normal_plan", "glb_position_targets", "ict_unpacked", "mirror",
                     "obj_topology"]
    assert_same(derived(load_packed()), built)          # a new model object: everything from disk


def test_damaged_entries_are_rebuilt(tmp_path, monkeypatch, built):
    monkeypatch.setenv("FACERECON_CACHE_DIR", str(tmp_path))
    derived(load_packed())
    for path in tmp_path.glob("*.npz"):
        path.write_bytes(path.read_bytes()[:1000])      # as a disk that filled up mid-write leaves it
    assert_same(derived(load_packed()), built)
    assert_same(derived(load_packed()), built)          # and the rewritten entries read back


def test_an_unwritable_folder_builds_in_memory(tmp_path, monkeypatch, built):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FACERECON_CACHE_DIR", str(blocker / "cache"))
    assert_same(derived(load_packed()), built)


def test_an_entry_follows_what_it_depends_on(tmp_path, monkeypatch):
    monkeypatch.setenv("FACERECON_CACHE_DIR", str(tmp_path))
    calls = []

    def build(value):
        calls.append(value)
        return {"x": np.full(3, value)}
    assert diskcache.cached_arrays("probe", lambda: build(1), 1)["x"].tolist() == [1, 1, 1]
    assert diskcache.cached_arrays("probe", lambda: build(1), 1)["x"].tolist() == [1, 1, 1]
    assert diskcache.cached_arrays("probe", lambda: build(2), 2)["x"].tolist() == [2, 2, 2]
    assert calls == [1, 2]
    assert len(list(tmp_path.glob("probe-*.npz"))) == 2   # both values kept
    monkeypatch.setattr(diskcache, "_code_key", lambda: b"other code")
    assert diskcache.cached_arrays("probe", lambda: build(3), 1)["x"].tolist() == [3, 3, 3]
    assert calls == [1, 2, 3]
    assert len(list(tmp_path.glob("probe-*.npz"))) == 1   # the old code's entries removed


def test_rotation_quaternion_is_scipys_bit_for_bit():
    matrices = Rotation.random(2000, random_state=0).as_matrix()
    flips = np.diag([1.0, -1.0, -1.0]) @ Rotation.random(500, random_state=1).as_matrix()
    near_identity = Rotation.from_rotvec(np.random.default_rng(2).normal(0, 1e-3, (200, 3))).as_matrix()
    for m in [*matrices, *flips, *near_identity, np.eye(3), np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0])]:
        assert rotation_quaternion(m) == Rotation.from_matrix(m).as_quat().tolist()
    rounded = matrices[0].astype(np.float32).astype(np.float64)   # not orthonormal: scipy's own path
    assert rotation_quaternion(rounded) == Rotation.from_matrix(rounded).as_quat().tolist()


@pytest.mark.parametrize("network", ["face_landmark.onnx", "yunet_s.onnx"])
def test_saved_onnx_graphs_give_the_same_outputs(tmp_path, monkeypatch, network):
    from facerecon.assets import PACKAGE_DATA
    from facerecon.sessions import onnx_session

    def outputs() -> list[np.ndarray]:
        session = onnx_session(PACKAGE_DATA / network)
        spec = session.get_inputs()[0]
        shape = [n if isinstance(n, int) else 1 if i == 0 else 160 for i, n in enumerate(spec.shape)]
        image = np.random.default_rng(0).uniform(0, 255 if "yunet" in network else 1, shape).astype(np.float32)
        return session.run(None, {spec.name: image})

    monkeypatch.setenv("FACERECON_CACHE_DIR", "")
    plain = outputs()
    monkeypatch.setenv("FACERECON_CACHE_DIR", str(tmp_path))
    for _ in range(2):   # the first saves the optimised graph, the second runs it
        assert all(np.array_equal(a, b) for a, b in zip(outputs(), plain))
    saved, = tmp_path.glob("onnx-*.onnx")
    saved.write_bytes(saved.read_bytes()[:500])   # damaged: made again
    assert all(np.array_equal(a, b) for a, b in zip(outputs(), plain))
    assert all(np.array_equal(a, b) for a, b in zip(outputs(), plain))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FACERECON_CACHE_DIR", str(blocker / "cache"))
    assert all(np.array_equal(a, b) for a, b in zip(outputs(), plain))
