"""facerecon video: a clip made here from the example photo (still, and rolling), tracked end to end."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from gltf_check import Glb, assert_valid
from helpers import EXAMPLE
from facerecon.batch.smoothing import OneEuro
from facerecon.batch.video import track_video, write_outputs
from facerecon.model import load_model

FRAMES, FPS = 16, 25


def make_clip(path: Path, roll_deg: float, shift_px: float, noise: float, seed: int = 0) -> np.ndarray:
    """The example photo rolled (image rotation, degrees counter-clockwise) and shifted over one
    sine period, with sensor noise per frame; returns the applied rolls."""
    image = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    phase = np.linspace(0, 2 * np.pi, FRAMES)
    rolls, shifts = roll_deg * np.sin(phase), shift_px * np.cos(phase)
    with imageio.get_writer(path, format="FFMPEG", fps=FPS, codec="libx264", quality=9,
                            pixelformat="yuv420p", macro_block_size=2) as writer:
        for roll, shift in zip(rolls, shifts):
            warp = cv2.getRotationMatrix2D((w / 2, h / 2), roll, 1.0)
            warp[0, 2] += shift
            frame = cv2.warpAffine(image, warp, (w, h), borderMode=cv2.BORDER_REFLECT)
            writer.append_data(np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8))
    return rolls


@pytest.fixture(scope="module")
def run():
    from facerecon.pipeline import Reconstructor
    with Reconstructor(texture_size=64) as r:
        yield r


def test_one_euro_removes_jitter_and_follows_motion():
    t = np.arange(100) / 25
    noise = np.random.default_rng(0).normal(0, 0.01, (100, 2))   # small against beta's scale: a still signal
    still = OneEuro()(noise, t)
    assert np.abs(np.diff(still, axis=0)).mean() < 0.3 * np.abs(np.diff(noise, axis=0)).mean()
    ramp = 10.0 * t[:, None]                                  # 10 units/s: the cut-off rises, lag stays small
    assert np.abs(OneEuro(beta=1.0)(ramp, t) - ramp)[25:].max() < 0.5


def test_fixed_identity_solves_only_pose_and_expression(run):
    image = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    from facerecon.camera import Camera
    camera = Camera.for_image(image.shape[1], image.shape[0])
    marks = run.estimator.estimate(image, run.detect(image).faces[0]).points
    free = run.fitter.fit(marks, camera)
    other = np.zeros(100, np.float32)
    other[:3] = [1.0, -1.0, 0.5]
    held = run.fitter.fit(marks, camera, identity=other)
    assert np.array_equal(held.identity, other)
    assert held.residual_px > free.residual_px                # the wrong head cannot fit as well...
    again = run.fitter.fit(marks, camera, identity=free.identity)
    assert abs(again.residual_px - free.residual_px) < 0.1 * free.residual_px   # ...its own head can
    assert np.allclose(again.angles, free.angles, atol=1.0)


def test_rolling_clip_is_tracked_with_one_identity(tmp_path, run):
    clip = tmp_path / "roll.mp4"
    rolls = make_clip(clip, roll_deg=8, shift_px=12, noise=3)
    track = track_video(clip, run, smoothing="none")
    assert all(f is not None for f in track.fits)
    assert all(np.array_equal(f.identity, track.identity) for f in track.fits)
    roll = np.array([f.angles[2] for f in track.fits])
    # counter-clockwise image rotation is a counter-clockwise head tilt: roll < 0 (README convention)
    assert np.abs((roll - roll[0]) + (rolls - rolls[0])).mean() < 1.0
    assert abs(np.mean([f.angles[0] for f in track.fits])) < 15


def test_video_command_writes_csv_json_overlay_and_smooths_a_still_face(tmp_path):
    clip = tmp_path / "still.mp4"
    make_clip(clip, roll_deg=0, shift_px=0, noise=4)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "facerecon", "video", str(clip), "-o", str(out)],
                            capture_output=True, text=True, timeout=300, env=dict(os.environ, COLUMNS="200"))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((out / "frames.csv").open()))
    assert len(rows) == FRAMES and all(r["face"] == "1" for r in rows)
    assert {"yaw_deg", "pitch_deg", "roll_deg", "tx_cm", "tz_cm", "jawOpen", "eyeBlinkLeft"} <= set(rows[0])
    data = json.loads((out / "frames.json").read_text())
    assert len(data["identity"]) == load_model().n_identity and len(data["per_frame"]) == FRAMES
    assert 40 <= data["per_frame"][0]["translation_cm"][2] <= 200    # a head at a plausible distance
    jitter = data["jitter_mm"]
    assert jitter["smoothed"] < 0.5 * jitter["shared_identity"], jitter
    with imageio.get_reader(out / "overlay.mp4", format="FFMPEG") as reader:
        frames = [f for f in reader]
    assert len(frames) == FRAMES and frames[0].shape == (512, 512, 3)
    assert "smoothed" in result.stdout
    check_animated_glb(out / "head.glb", data)


def check_animated_glb(path, data):
    """head.glb: valid, 53 targets, one key per frame at the video's times, the head node's track
    is the per-frame pose (camera frame flipped to glTF axes, metres)."""
    info = assert_valid(path)
    assert info["animationCount"] == 1 and info["hasMorphTargets"] and info["hasTextures"]
    glb = Glb(path.read_bytes())
    assert len(glb.mesh_of("head")["primitives"][0]["targets"]) == 53
    (animation,) = glb.json["animations"]
    samplers = {c["target"]["path"]: animation["samplers"][c["sampler"]] for c in animation["channels"]}
    assert np.allclose(glb.accessor(samplers["weights"]["input"])[:, 0], np.arange(FRAMES) / FPS, atol=1e-5)
    weights = glb.accessor(samplers["weights"]["output"]).reshape(FRAMES, 53)
    assert np.allclose(weights[0], glb.mesh_of("head")["weights"], atol=1e-6)
    translation = glb.accessor(samplers["translation"]["output"])
    expected = np.array([f["translation_cm"] for f in data["per_frame"]]) * [0.01, -0.01, -0.01]
    assert np.abs(translation - expected).max() < 1e-5
    assert data["glb"]["units"] == "m" and data["glb"]["texture_frame"] in data["identity_frames"]


def test_video_without_a_face_fails_with_one_line(tmp_path):
    clip = tmp_path / "grey.mp4"
    imageio.mimwrite(clip, [np.full((64, 64, 3), 128, np.uint8)] * 3, format="FFMPEG", fps=FPS)
    result = subprocess.run([sys.executable, "-m", "facerecon", "video", str(clip), "-o", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "no face" in result.stderr and "Traceback" not in result.stderr


def test_video_tracks_with_the_reconstructors_landmark_method_and_field_of_view_and_turns_the_head(tmp_path, monkeypatch):
    from facerecon.camera import Camera
    from facerecon.methods.dense import DenseLandmarkFit
    from facerecon.pipeline import Reconstructor
    clip = tmp_path / "still.mp4"
    make_clip(clip, roll_deg=0, shift_px=0, noise=2)
    placed = []
    real_place = DenseLandmarkFit.place
    monkeypatch.setattr(DenseLandmarkFit, "place", lambda self, *a: placed.append(1) or real_place(self, *a))
    with Reconstructor(texture_size=64, method="dense", fov_deg=50.0) as run:
        track = track_video(clip, run, smoothing="none")
        paths = write_outputs(track, run, clip, tmp_path / "out", overlay=False, glb=False, turntable=True)
    assert sorted(p.name for p in paths.values()) == ["frames.csv", "frames.json", "head_turntable.gif",
                                                      "head_turntable.mp4"]
    assert all(p.stat().st_size > 0 for p in paths.values())
    assert len(placed) == FRAMES and sum(f is not None for f in track.fits) == FRAMES
    assert track.camera.focal == pytest.approx(Camera.for_image(track.camera.width, track.camera.height, 50.0).focal)
    with Reconstructor(texture_size=64, method="regress") as run, pytest.raises(ValueError, match="landmark method"):
        track_video(clip, run)
