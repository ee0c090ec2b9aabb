"""The web app's video upload: a clip made from the example photo becomes an animated GLB; a file
that is not a video, or a clip over the frame limit, gets a one-line error."""
from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gltf_check import Glb, assert_valid
from helpers import wait_for_job
from test_video import FPS, FRAMES, make_clip
from facerecon.web import WebSettings, create_app


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(WebSettings(texture_size=128, max_video_frames=FRAMES))) as c:
        yield c


def upload(client: TestClient, name: str, data: bytes) -> dict:
    response = client.post("/api/videos", files={"video": (name, data, "video/mp4")})
    assert response.status_code == 202, response.text
    return wait_for_job(client, response.json(), timeout_s=180)


def test_clip_becomes_an_animated_glb(client, tmp_path):
    clip = tmp_path / "clip.mp4"
    make_clip(clip, roll_deg=8, shift_px=0, noise=2)
    job = upload(client, "my clip.mp4", clip.read_bytes())
    assert job["status"] == "done", job["error"]
    assert job["faces"] == [] and {"animation", "frames", "frames_csv"} <= set(job["links"])
    assert "photo" not in job["links"]
    glb = client.get(job["links"]["animation"])
    assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
    path = tmp_path / "head.glb"
    path.write_bytes(glb.content)
    assert assert_valid(path)["animationCount"] == 1
    (animation,) = Glb(glb.content).json["animations"]
    times = Glb(glb.content).accessor(animation["samplers"][0]["input"])[:, 0]
    assert np.allclose(times, np.arange(FRAMES) / FPS, atol=1e-5)
    frames = client.get(job["links"]["frames"]).json()
    assert frames["source"] == "my clip.mp4" and len(frames["per_frame"]) == FRAMES   # no server path


def test_not_a_video_and_too_long_a_clip(client, tmp_path):
    response = client.post("/api/videos", files={"video": ("x.mp4", b"not a video at all", "video/mp4")})
    assert response.status_code == 400 and response.json()["detail"] == "x.mp4: not a readable video"
    clip = tmp_path / "clip.mp4"
    make_clip(clip, roll_deg=0, shift_px=0, noise=2)   # FRAMES frames: the limit itself
    with imageio.get_reader(clip, format="FFMPEG") as reader:
        frames = [f for f in reader]
    longer = tmp_path / "longer.mp4"
    imageio.mimwrite(longer, frames + frames[:2], format="FFMPEG", fps=FPS, macro_block_size=2)
    job = upload(client, "longer.mp4", longer.read_bytes())
    assert job["status"] == "error" and job["error"]["status"] == 400
    assert job["error"]["message"] == f"longer.mp4: the clip is over {FRAMES} frames"
