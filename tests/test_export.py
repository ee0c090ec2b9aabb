"""Mesh and JSON export: files reload with trimesh with the right UVs, texture, colours and units
(metres by default; OBJ and PLY in cm or mm on request), and a failed write leaves nothing behind."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from conftest import read_rgb
from facerecon.export import atomic_folder, atomic_path, encode_png, export_mesh, fixed_point_lines, json_text, write_image, write_json
from facerecon.model import EXPORTED_PARTS, HeadModel, load_model
from facerecon.texture import sample_image

SIZE = 256
NOSE_TIP = 4841   # the face vertex furthest forward (largest model z); lies inside one UV island


@pytest.fixture(scope="module")
def model() -> HeadModel:
    return load_model()


@pytest.fixture(scope="module")
def head(model) -> np.ndarray:
    """A non-neutral head (V, 3) cm, so that the export must use the given vertices."""
    return model.shape(identity=np.random.default_rng(0).normal(size=model.n_identity).astype(np.float32))


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    """Red grows to the right, green downwards: a colour names its texel, so a V flip shows."""
    ramp = np.linspace(0, 255, SIZE, dtype=np.float32)
    red, green = np.meshgrid(ramp, ramp)
    return np.stack([red, green, np.full_like(red, 128)], axis=-1).round().astype(np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, model, head, texture) -> dict[str, Path]:
    return export_mesh(tmp_path_factory.mktemp("mesh"), "face_0", head, texture, model)


def texture_colour_at(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear colour of ``image`` at atlas/OBJ-convention uv (v up, row 0 = top)."""
    h, w = image.shape[:2]
    xy = np.array([[uv[0] * w - 0.5, (1.0 - uv[1]) * h - 0.5]], np.float32)
    return sample_image(np.ascontiguousarray(image[..., :3]), xy)[0].astype(np.float32)


def assigned_colour(model, texture) -> np.ndarray:
    vertex, uv, _ = model.export_topology
    (k,) = np.flatnonzero(vertex == NOSE_TIP)
    return texture_colour_at(texture, uv[k])


def check_reloaded(mesh: trimesh.Trimesh, image: np.ndarray, model, head, texture, scale: float = 0.01,
                   rows: np.ndarray | None = None):
    """``mesh`` holds the split vertices ``rows`` (default: all) of ``head`` (cm) times ``scale``."""
    vertex = model.export_topology[0]
    vertex = vertex if rows is None else vertex[rows]
    head = head * scale
    assert len(mesh.vertices) == len(vertex)
    assert np.allclose(mesh.bounds, [head[vertex].min(0), head[vertex].max(0)], atol=1e-3 * scale)
    k = cKDTree(mesh.vertices).query(head[NOSE_TIP])[1]
    assert np.linalg.norm(mesh.vertices[k] - head[NOSE_TIP]) < 1e-3 * scale
    expected = assigned_colour(model, texture)
    got = texture_colour_at(np.asarray(image), mesh.visual.uv[k])
    # A V flip would move the green channel by ~ 255 * |1 - 2v| (v ~ 0.73 at the nose: ~ 120).
    assert np.abs(got - expected).max() <= 2


def test_written_paths(exported):
    assert set(exported) == {"obj", "mtl", "png", "glb", "ply"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in exported.values())
    folder = exported["obj"].parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in exported.values())
    obj = exported["obj"].read_text()
    assert f"mtllib {exported['mtl'].name}" in obj
    assert f"map_Kd {exported['png'].name}" in exported["mtl"].read_text()


def test_obj_reloads_with_uvs_and_texture(exported, model, head, texture):
    mesh = trimesh.load(exported["obj"], process=False)
    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals)
    assert np.array_equal(np.asarray(mesh.visual.material.image.convert("RGB")), texture)
    check_reloaded(mesh, mesh.visual.material.image.convert("RGB"), model, head, texture)


def test_glb_reloads_with_uvs_texture_and_normals(exported, model, head, texture):
    scene = trimesh.load(exported["glb"], process=False)
    assert set(scene.geometry) == {"head", "eye_left", "eye_right"}   # eyeballs are their own nodes
    mesh = scene.geometry["head"]
    image = mesh.visual.material.baseColorTexture.convert("RGB")
    assert np.array_equal(np.asarray(image), texture)
    eyes = np.isin(model.triangle_part, [EXPORTED_PARTS.index("eyeball_left"), EXPORTED_PARTS.index("eyeball_right")])
    check_reloaded(mesh, image, model, head, texture, rows=np.unique(model.export_topology[2][~eyes]))
    data = exported["glb"].read_bytes()
    gltf = json.loads(data[20:20 + int.from_bytes(data[12:16], "little")])   # the GLB's JSON chunk
    assert "NORMAL" in gltf["meshes"][0]["primitives"][0]["attributes"]


def test_ply_has_vertex_colours_from_the_texture(exported, model, head, texture):
    mesh = trimesh.load(exported["ply"], process=False)
    vertex, _, _ = model.export_topology
    assert len(mesh.vertices) == len(vertex)
    assert np.allclose(mesh.bounds, [head[vertex].min(0) / 100, head[vertex].max(0) / 100], atol=1e-5)
    k = cKDTree(mesh.vertices).query(head[NOSE_TIP] / 100)[1]
    colour = mesh.visual.vertex_colors[k, :3].astype(np.float32)
    assert np.abs(colour - assigned_colour(model, texture)).max() <= 1
    assert len(np.unique(mesh.visual.vertex_colors[:, :3], axis=0)) > 1000


def test_selected_formats_only(tmp_path, model, head, texture):
    paths = export_mesh(tmp_path, "only", head, texture, model, formats=("ply",))
    assert set(paths) == {"ply"} and [p.name for p in tmp_path.iterdir()] == ["only.ply"]
    with pytest.raises(ValueError):
        export_mesh(tmp_path, "bad", head, texture, model, formats=("fbx",))


def test_obj_and_ply_units(tmp_path, model, head, texture):
    """One unit per call, said in the OBJ's header; the same vertices at 1, 10 and 1000 per cm... m."""
    extents = {}
    for units, per_cm in (("m", 0.01), ("cm", 1.0), ("mm", 10.0)):
        paths = export_mesh(tmp_path / units, "face", head, texture, model, ("obj", "ply"), units)
        obj, ply = (trimesh.load(paths[k], process=False) for k in ("obj", "ply"))
        assert np.allclose(obj.vertices, ply.vertices, atol=1e-4 * per_cm)
        extents[units] = obj.extents / per_cm
    assert np.allclose(extents["m"], extents["cm"], rtol=1e-5) and np.allclose(extents["mm"], extents["cm"], rtol=1e-5)
    assert (tmp_path / "mm" / "face.obj").read_text().startswith("# facerecon head, millimetres")
    with pytest.raises(ValueError):
        export_mesh(tmp_path, "bad", head, texture, model, ("obj",), "inch")


@pytest.mark.parametrize("digits", [4, 5, 6, 7])
def test_fixed_point_lines_match_printf(digits):
    """The OBJ's number formatter writes what "%.Nf" writes: rounding half to even on the exact
    value (odd / 2**(digits + 1) are exact ties), "-0.000" for small negatives, large values."""
    rng = np.random.default_rng(digits)
    values = np.concatenate([
        rng.normal(0, 1, 30000), rng.normal(0, 300, 3000), rng.normal(0, 1e-4, 3000),
        (2 * rng.integers(-4000, 4000, 3000) + 1) / 2.0 ** (digits + 1),
        [0.0, -0.0, -1e-9, 1e-9, 0.5, -0.5, 123456789.0, -99999.99, 1.0, -1.0]])
    values = values[: len(values) // 3 * 3].astype(np.float32).reshape(-1, 3)
    expected = (f"v %.{digits}f %.{digits}f %.{digits}f\n" * len(values)) % tuple(values.ravel().tolist())
    assert fixed_point_lines(b"v ", values, digits).decode() == expected
    with pytest.raises(ValueError, match="finite"):
        fixed_point_lines(b"v ", np.array([[np.nan, 0.0, 1.0]], np.float32), digits)


def test_failed_export_leaves_nothing(tmp_path, monkeypatch, model, head, texture):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("facerecon.export._ply", broken)
    monkeypatch.setattr("facerecon.export.head_glb", broken)
    for formats in (("glb",), ("ply",)):
        with pytest.raises(OSError):
            export_mesh(tmp_path, "face", head, texture, model, formats=formats)
        assert list(tmp_path.iterdir()) == []


def test_atomic_path(tmp_path):
    final = tmp_path / "result.bin"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(final) as temporary:
            assert temporary.parent == tmp_path and temporary.suffix == ".bin" and temporary != final
            temporary.write_bytes(b"half")
            raise RuntimeError("writer crashed")
    assert final.read_bytes() == b"old" and list(tmp_path.iterdir()) == [final]

    with atomic_path(final) as temporary:
        temporary.write_bytes(b"new")
        assert final.read_bytes() == b"old"    # not visible before the write completes
    assert final.read_bytes() == b"new" and list(tmp_path.iterdir()) == [final]


def test_atomic_folder_writes_again_into_the_same_output(tmp_path):
    """A second run into an existing output folder replaces its files and merges its sub-folders
    (a scan's overlays/), keeping what the run did not write; nothing of the run is left beside it."""
    final = tmp_path / "out"
    for run, views in ((1, ("a", "b")), (2, ("b", "c"))):
        with atomic_folder(final) as folder:
            (folder / "scan.json").write_text(str(run))
            (folder / "overlays").mkdir()
            for view in views:
                (folder / "overlays" / f"{view}.jpg").write_text(str(run))
    assert (final / "scan.json").read_text() == "2"
    assert {p.name: p.read_text() for p in (final / "overlays").iterdir()} == {"a.jpg": "1", "b.jpg": "2", "c.jpg": "2"}
    assert list(tmp_path.iterdir()) == [final]


def test_write_image(tmp_path):
    image = np.zeros((4, 6, 3), np.uint8)
    image[..., 0] = 200                                       # red, in RGB
    write_image(tmp_path / "red.png", image)
    assert np.array_equal(read_rgb(tmp_path / "red.png"), image)
    with pytest.raises(ValueError):
        write_image(tmp_path / "red.nope", image)
    assert [p.name for p in tmp_path.iterdir()] == ["red.png"]


@pytest.mark.parametrize("shape", [(1, 1), (37, 53), (37, 53, 3), (2, 300, 3), (19, 7, 4)])
def test_png_decodes_to_the_same_pixels_in_pillow_and_opencv(shape):
    """Our PNG writer (up filter, ISA-L deflate) against two independent decoders, grey, RGB, RGBA."""
    import io

    import cv2
    from PIL import Image
    image = np.random.default_rng(len(shape)).integers(0, 256, shape, dtype=np.uint8)
    image[: shape[0] // 2] //= 16                             # a smooth part as well as noise
    data = encode_png(image)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), image)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image.ndim == 3:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB if shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    assert np.array_equal(decoded, image)


@pytest.mark.parametrize("image", [np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4), np.float32),
                                   np.zeros((0, 4, 3), np.uint8), np.zeros(4, np.uint8)])
def test_png_refuses_what_it_cannot_encode(image):
    with pytest.raises(ValueError, match="PNG needs"):
        encode_png(image)


def plain(value):
    return value.tolist() if isinstance(value, np.ndarray) else value.item()


def test_json_text_is_json_dumps_content_with_compact_arrays():
    """The same content as json.dumps (indent=2) writes, the objects laid out as it lays them out,
    and the arrays compact: a list of values on one line, a matrix one row a line."""
    rng = np.random.default_rng(0)
    data = {"source": "a \"photo\"\n], [x].jpg", "n": np.int64(3), "score": np.float32(0.1), "ok": True,
            "none": None, "empty": {}, "nothing": [], "no_rows": np.zeros((0, 3)),
            "points": rng.normal(size=(468, 2)).astype(np.float32).round(2), "ints": np.arange(6).reshape(3, 2),
            "flags": np.array([True, False]), "cube": rng.normal(size=(2, 2, 2)),
            "rows": [[1, "], [", 2.5], (3, None)], "mixed": [1, [2, 3], {"a": [4.0]}],
            "faces": [{"box": np.array([1, 2, 3, 4]), "m": np.eye(3, dtype=np.float32)}],
            "nested": {"deep": {"x": -0.0, "y": 1e-300, "z": 12345678901234567890}}, 7: "int key", 1.5: "float key"}
    text = json_text(data)
    assert json.loads(text) == json.loads(json.dumps(data, indent=2, default=plain))
    scalars = {"a": 1, "b": {"c": "d", "e": 2.5, "f": {}}, "g": None}
    assert json_text(scalars) == json.dumps(scalars, indent=2)
    lines = text.splitlines()
    assert '  "ints": [' in lines and "    [0, 1]," in lines and "    [4, 5]" in lines
    assert '  "flags": [true, false],' in lines
    assert len(lines) < 700   # one line a row, not one a number
    for bad, error in (({"x": [float("nan")]}, ValueError), ({"x": np.array([[np.inf]])}, ValueError),
                       ({"x": [object()]}, TypeError), ({(1, 2): 1}, TypeError)):
        with pytest.raises(error):
            json_text(bad)


def test_write_json(tmp_path):
    path = tmp_path / "faces.json"
    data = {"pose": np.eye(3, dtype=np.float32), "score": np.float32(0.5), "n": np.int64(3),
            "faces": [{"box": np.array([1, 2, 3, 4])}]}
    write_json(path, data)
    text = path.read_text()
    assert text.startswith("{\n  ") and text.endswith("}\n")
    assert json.loads(text) == {"pose": np.eye(3).tolist(), "score": 0.5, "n": 3,
                                "faces": [{"box": [1, 2, 3, 4]}]}
    with pytest.raises(ValueError):
        write_json(tmp_path / "bad.json", {"x": float("nan")})
    with pytest.raises(TypeError):
        write_json(tmp_path / "bad.json", {"x": object()})
    assert [p.name for p in tmp_path.iterdir()] == ["faces.json"]
