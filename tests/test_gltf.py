"""The GLB: metres, valid in the Khronos validator, 53 ARKit-named morph targets whose fitted
weights rebuild the exported head, the pose on the head node, eyeballs as nodes, an animation."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from gltf_check import Glb, assert_valid, node_matrix
from helpers import EXAMPLE
from facerecon.blendshapes import arkit_name
from facerecon.camera import FLIP_YZ, Camera, rotation_from_angles
from facerecon.export import encode_image, export_mesh
from facerecon.geometry import vertex_normals
from facerecon.gltf import DROP_NORMAL, Animation, Rig, head_glb, normal_deltas
from facerecon.model import EXPORTED_PARTS, load_model

CHIN = 8   # iBUG 68 index of the menton


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def face(model):
    """A fitted-looking head: an identity, a mixed expression, a turned pose, a camera."""
    rng = np.random.default_rng(3)
    identity = (0.8 * rng.normal(size=model.n_identity)).astype(np.float32)
    expression = np.where(rng.random(model.n_expression) < 0.4, rng.uniform(0, 0.8, model.n_expression), 0)
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation_from_angles(25, -10, 5), [3.0, -2.0, 60.0]
    rig = Rig(identity, expression.astype(np.float32), pose, Camera.for_image(640, 480))
    texture = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    return rig, model.shape(identity, rig.expression), texture


@pytest.fixture(scope="module")
def written(tmp_path_factory, model, face):
    rig, vertices, texture = face
    folder = tmp_path_factory.mktemp("glb")
    paths = export_mesh(folder, "rigged", vertices, texture, model, ("obj", "glb"), "m", rig)
    plain = export_mesh(folder, "plain", vertices, texture, model, ("glb",), "m", None)
    return paths, plain["glb"]


def skin_rows(model):
    """The split vertices of the skin primitive, in its order (eyeballs are their own meshes)."""
    eyes = [EXPORTED_PARTS.index("eyeball_left"), EXPORTED_PARTS.index("eyeball_right")]
    return np.unique(model.export_topology[2][~np.isin(model.triangle_part, eyes)])


def test_glbs_pass_the_khronos_validator(written):
    paths, plain = written
    info = assert_valid(paths["glb"])
    assert info["hasMorphTargets"] and info["hasTextures"] and info["drawCallCount"] == 3
    assert not assert_valid(plain)["hasMorphTargets"]


def test_53_arkit_named_targets_reload(written, model, face):
    paths, plain = written
    scene = trimesh.load(paths["glb"], process=False)
    assert set(scene.geometry) == {"head", "eye_left", "eye_right"}
    names = scene.geometry["head"].metadata["targetNames"]
    assert names == [arkit_name(n) for n in model.expression_names] and len(set(names)) == 53
    assert {"jawOpen", "eyeBlinkLeft", "mouthSmileRight", "browInnerUpLeft"} <= set(names)
    glb = Glb(paths["glb"].read_bytes())
    head = glb.mesh_of("head")
    assert len(head["primitives"][0]["targets"]) == 53
    assert np.allclose(head["weights"], face[0].expression, atol=1e-6)
    # Sparse accessors where a shape moves few vertices; a plain GLB has no targets at all.
    accessors = glb.json["accessors"]
    assert sum("sparse" in accessors[t["POSITION"]] for t in head["primitives"][0]["targets"]) >= 20
    assert "targets" not in Glb(plain.read_bytes()).mesh_of("head")["primitives"][0]


def test_fitted_weights_rebuild_the_exported_head(written, model, face):
    """Base + sum(weight * target) = the OBJ's head (model frame); the head node's transform then
    puts it where the camera saw it (camera node at the origin, glTF axes). Both within 0.01 mm."""
    paths, _ = written
    rig, vertices, _ = face
    glb = Glb(paths["glb"].read_bytes())
    prim = glb.mesh_of("head")["primitives"][0]
    base = glb.accessor(prim["attributes"]["POSITION"]).astype(np.float64)
    targets = np.stack([glb.accessor(t["POSITION"]) for t in prim["targets"]])
    posed = base + np.tensordot(np.asarray(glb.mesh_of("head")["weights"]), targets, 1)
    obj = trimesh.load(paths["obj"], process=False)
    rows = skin_rows(model)
    assert np.abs(posed - obj.vertices[rows]).max() < 1e-5
    assert np.abs(base - model.shape(rig.identity)[model.export_topology[0][rows]] / 100).max() < 1e-6

    world = posed @ node_matrix(glb.node("head"))[:3, :3].T + node_matrix(glb.node("head"))[:3, 3]
    camera = (vertices[model.export_topology[0][rows]] @ rig.model_to_camera[:3, :3].T
              + rig.model_to_camera[:3, 3]) / 100
    assert np.abs(world - camera @ FLIP_YZ.T).max() < 1e-5
    (cam,) = glb.json["cameras"]
    assert abs(cam["perspective"]["yfov"] - 2 * np.arctan(240 / rig.camera.focal)) < 1e-9

    # Each eyeball: its node sits at the sphere's centre; with it, the eyeball is where it was fitted.
    for name, part in (("eye_left", "eyeball_left"), ("eye_right", "eyeball_right")):
        node = glb.node(name)
        assert node["name"] in [glb.json["nodes"][c]["name"] for c in glb.node("head")["children"]]
        local = glb.accessor(glb.mesh_of(name)["primitives"][0]["attributes"]["POSITION"])
        assert np.linalg.norm(local, axis=1).std() < 0.1 * np.linalg.norm(local, axis=1).mean()  # centred
        rows = np.unique(model.export_topology[2][model.triangle_part == EXPORTED_PARTS.index(part)])
        fitted = vertices[model.export_topology[0][rows]] / 100
        assert np.abs(local + node["translation"] - fitted).max() < 1e-6


def test_normal_targets_give_each_shapes_normals(written, model, face):
    """Base normal + a target's normal delta = the normals of the neutral head plus that shape
    (within the dropped deltas)."""
    glb = Glb(written[0]["glb"].read_bytes())
    prim = glb.mesh_of("head")["primitives"][0]
    base = glb.accessor(prim["attributes"]["NORMAL"])
    rows = model.export_topology[0][skin_rows(model)]
    neutral = model.shape(face[0].identity)
    names = [arkit_name(n) for n in model.expression_names]
    for name in ("jawOpen", "eyeBlinkLeft", "mouthSmileRight", "browInnerUpLeft"):
        k = names.index(name)
        turned = base + glb.accessor(prim["targets"][k]["NORMAL"])
        expected = vertex_normals(neutral + model.expression_basis[k], model.triangles)[rows]
        error = np.linalg.norm(turned - expected, axis=1)
        assert error.max() < 1.01 * DROP_NORMAL and error.mean() < 0.1 * DROP_NORMAL, (name, error.max(), error.mean())
        assert np.linalg.norm(expected - base, axis=1).max() > 0.1   # the shape does turn normals


def test_normal_deltas_are_the_whole_mesh_recomputed(model, face):
    """Recomputing only what each shape moves gives exactly (bit for bit) the deltas of every
    shape's whole-mesh normals: the same rows, in the same order, with the same values."""
    skin = ~np.isin(model.triangle_part, [EXPORTED_PARTS.index("eyeball_left"), EXPORTED_PARTS.index("eyeball_right")])
    triangles = model.triangles[skin]
    rows = model.export_topology[0][skin_rows(model)]
    base = model.shape(face[0].identity)
    normals = vertex_normals(base, model.triangles)[rows]
    shapes = model.expression_basis[[0, 17, 24, 40]]   # eyes, brows, jaw, mouth
    counts, kept, deltas = normal_deltas(base, shapes, triangles, rows, normals)
    start = 0
    for k, shape in enumerate(shapes):
        delta = vertex_normals(base + shape, triangles)[rows] - normals
        expect = np.flatnonzero((delta * delta).sum(1) >= np.float32(DROP_NORMAL) ** 2)
        assert counts[k] == len(expect) > 0
        assert np.array_equal(kept[start:start + counts[k]], expect)
        assert np.array_equal(deltas[start:start + counts[k]], delta[expect])
        start += counts[k]


def test_head_is_metric_in_metres(written, model):
    """glTF is in metres: chin to crown of a head is 0.15-0.30 m."""
    glb = Glb(written[1].read_bytes())
    positions = glb.accessor(glb.mesh_of("head")["primitives"][0]["attributes"]["POSITION"])
    rows = skin_rows(model)
    chin_vertex = model.landmarks68[CHIN]
    chin = positions[np.flatnonzero(model.export_topology[0][rows] == chin_vertex)[0]]
    height = positions[:, 1].max() - chin[1]
    assert 0.15 <= height <= 0.30, height
    mesh = trimesh.load(written[1], force="mesh")
    assert 0.15 < mesh.extents[1] < 0.6   # head and neck, metres


def test_animation_validates_and_samples_every_frame(tmp_path, model, face):
    rig, vertices, texture = face
    t = 12
    times = np.arange(t) / 25
    expression = np.clip(rig.expression + 0.3 * np.sin(times)[:, None], 0, 1)
    poses = np.repeat(rig.model_to_camera[None], t, axis=0)
    for k in range(t):   # turn through 40 degrees of yaw: a quaternion sign flip must not spin the head
        poses[k, :3, :3] = rotation_from_angles(-20 + 40 * k / (t - 1), 0, 0)
    path = tmp_path / "anim.glb"
    path.write_bytes(head_glb(model, vertices, encode_image(texture), rig, Animation(times, expression, poses)))
    info = assert_valid(path)
    assert info["animationCount"] == 1
    glb = Glb(path.read_bytes())
    (animation,) = glb.json["animations"]
    paths = {c["target"]["path"]: animation["samplers"][c["sampler"]] for c in animation["channels"]}
    assert set(paths) == {"weights", "translation", "rotation"}
    assert np.allclose(glb.accessor(paths["weights"]["input"])[:, 0], times)
    weights = glb.accessor(paths["weights"]["output"]).reshape(t, 53)
    assert np.allclose(weights, expression, atol=1e-6)
    quats = glb.accessor(paths["rotation"]["output"])
    assert np.all(np.sum(quats[1:] * quats[:-1], axis=1) > 0.9)   # neighbours close: no flips


def test_cli_units_and_plain_glb(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "facerecon", "reconstruct", str(EXAMPLE), "-o", str(out),
                             "--units", "mm", "--no-morph-targets", "--texture-size", "64", "--no-overlay"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    folder = out / "astronaut"
    obj = trimesh.load(folder / "face0.obj", process=False)
    assert 150 < obj.extents[1] < 600 and (folder / "face0.obj").read_text().startswith("# facerecon head, millimetres")
    ply = trimesh.load(folder / "face0.ply", process=False)
    assert np.allclose(ply.extents, obj.extents, rtol=1e-4)
    glb = Glb((folder / "face0.glb").read_bytes())
    assert "targets" not in glb.mesh_of("head")["primitives"][0]
    assert 0.15 < trimesh.load(folder / "face0.glb", force="mesh").extents[1] < 0.6
    info = json.loads((folder / "face0.json").read_text())
    assert info["units"] == "cm" and info["mesh_files"]["units"] == {"obj": "mm", "glb": "m", "ply": "mm"}
    assert info["mesh_files"]["glb"]["morph_targets"] == 0
    bad = subprocess.run([sys.executable, "-m", "facerecon", "reconstruct", str(EXAMPLE), "-o", str(out),
                          "--units", "inch"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--units" in bad.stderr and "Traceback" not in bad.stderr


def test_blender_imports_shape_keys_and_animation(tmp_path, model, face):
    """Optional (Debian's ``blender`` package): 53 shape keys at the fitted weights, animated."""
    blender = shutil.which("blender")
    if blender is None:
        pytest.skip("blender is not installed (optional: apt-get install blender python3-numpy)")
    rig, vertices, texture = face
    times = np.arange(4) / 25
    poses = np.repeat(rig.model_to_camera[None], 4, axis=0)
    path = tmp_path / "head.glb"
    path.write_bytes(head_glb(model, vertices, encode_image(texture), rig,
                              Animation(times, np.repeat(rig.expression[None], 4, axis=0), poses)))
    script = Path(__file__).with_name("blender_import.py")
    result = subprocess.run([blender, "-b", "--factory-startup", "--python", str(script), "--", str(path)],
                            capture_output=True, text=True, timeout=300)
    line = next((out for out in result.stdout.splitlines() if out.startswith("RESULT ")), None)
    assert line is not None, result.stdout[-2000:] + result.stderr[-2000:]
    objects = json.loads(line[len("RESULT "):])
    head = objects["head"]
    assert list(head["shape_keys"]) == [arkit_name(n) for n in model.expression_names]
    assert np.allclose(list(head["shape_keys"].values()), rig.expression, atol=1e-5)
    assert head["animated"] and head["keys_animated"] and 0.15 < head["height_m"] < 0.6
    assert {"eye_left", "eye_right"} <= set(objects) and any(o["type"] == "CAMERA" for o in objects.values())
