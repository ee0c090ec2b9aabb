"""A scan's turntable: the orbit follows the views (their arc, their up), the frames show the subject,
and ScanResult.save writes the GIF and MP4 inside its atomic folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from facerecon.scan.bake import TexturedMesh
from facerecon.scan.cameras import CameraSet, ViewCamera
from facerecon.scan.fusion import Subject
from facerecon.scan.pipeline import ScanResult, ScanSettings
from facerecon.scan.scale import ARBITRARY
from facerecon.scan.turntable import orbit_rotations, turntable_frames
from facerecon.scan.views import Views

K = np.array([[200.0, 0, 63.5], [0, 200.0, 63.5], [0, 0, 1]])


def ring(yaws_deg, up=np.array([0.0, 0.0, 1.0]), centre=np.array([1.0, 2.0, 3.0])) -> list[ViewCamera]:
    """Cameras 5 units from ``centre`` at these azimuths about ``up`` (here the world's z), looking at it."""
    a = np.cross(up, [1.0, 0, 0]) if abs(up[0]) < 0.9 else np.cross(up, [0, 1.0, 0])
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    cameras = []
    for yaw in np.radians(yaws_deg):
        position = centre + 5 * (np.cos(yaw) * a + np.sin(yaw) * b)
        forward = (centre - position) / 5
        R = np.stack([np.cross(-up, forward), -up, forward])
        cameras.append(ViewCamera(K, R, -R @ position, 128, 128))
    return cameras


def test_the_orbit_sweeps_the_views_arc_with_their_up():
    cameras = ring([-40, -10, 20, 50])
    rotations = orbit_rotations(cameras, np.array([1.0, 2.0, 3.0]), 7)
    for rotation in rotations:
        assert np.allclose(-rotation[1], [0, 0, 1], atol=1e-9)    # image up is the views' up
    first_and_last = [r[2] for r in (rotations[0], rotations[-1])]
    assert np.allclose(first_and_last[0], cameras[0].axis, atol=1e-6)
    assert np.allclose(first_and_last[1], cameras[-1].axis, atol=1e-6)
    full = orbit_rotations(ring(range(0, 360, 30)), np.array([1.0, 2.0, 3.0]), 12)
    turned = np.degrees(np.arccos(np.clip(np.einsum("i,i", full[0][2], full[6][2]), -1, 1)))
    assert turned == pytest.approx(180, abs=1e-6)


def _ball() -> TexturedMesh:
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    vertices = np.asarray(sphere.vertices, np.float32) + np.float32([1, 2, 3])
    uv = np.column_stack([0.5 + 0.5 * sphere.vertices[:, 0], 0.5 + 0.5 * sphere.vertices[:, 1]]).astype(np.float32)
    texture = np.zeros((64, 64, 3), np.uint8)
    texture[..., 0] = 200
    return TexturedMesh(vertices, uv, np.asarray(sphere.faces, np.int32), texture, 1.0)


def test_the_frames_show_the_subject_in_the_middle():
    frames = turntable_frames(_ball(), ring([-40, 0, 40]), size=64, n_frames=3)
    assert len(frames) == 3 and frames[0].shape == (64, 64, 3)
    for frame in frames:
        red = (frame[..., 0] > 120) & (frame[..., 2] < 60)
        assert red[28:36, 28:36].all() and not red[:6, :6].any() and 0.4 < red.mean() < 0.9


def test_save_writes_the_turntable_in_the_atomic_folder(tmp_path):
    cameras = ring([-40, 0, 40])
    images = [np.zeros((128, 128, 3), np.uint8)] * 3
    result = ScanResult(_ball(), ARBITRARY, CameraSet(cameras, np.zeros((0, 3)), "known", [0, 1, 2]),
                        Views(images, ["a", "b", "c"], [1.0] * 3, "photos"),
                        Subject(np.zeros(3), np.ones(3), np.zeros(3), None, 0.0, 0.0), [])
    paths = result.save(tmp_path / "out", ScanSettings(), ("obj", "glb"), overlays=False, turntable=True)
    assert paths["turntable_gif"].stat().st_size > 1000 and paths["turntable_mp4"].stat().st_size > 1000
    files = json.loads(paths["json"].read_text())["files"]
    assert files["turntable_gif"] == "scan_turntable.gif" and files["turntable_mp4"] == "scan_turntable.mp4"
