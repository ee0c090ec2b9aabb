"""The web app's scan upload (POST /api/scans): a video or photos of a still subject become its mesh;
too few views, a file that is not a video, too many files and a moving subject get one-line errors."""
from __future__ import annotations

import io
import zipfile

import imageio.v2 as imageio
import numpy as np
import pytest
from fastapi.testclient import TestClient

from test_scan_motion import FRAMES, clip
from helpers import png_bytes as png, wait_for_job
from facerecon.web import WebSettings, create_app

pytest.importorskip("xatlas")


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(WebSettings(texture_size=128, max_scan_photos=30))) as c:
        yield c


def post(client: TestClient, *files: tuple[str, bytes, str]):
    return client.post("/api/scans", files=[("files", f) for f in files])


def wait(client: TestClient, job: dict) -> dict:
    return wait_for_job(client, job, timeout_s=1200.0)   # a scan takes minutes on a loaded machine


def _mp4(frames: list[np.ndarray], folder) -> bytes:
    path = folder / "clip.mp4"
    imageio.mimwrite(path, frames, format="FFMPEG", fps=10, macro_block_size=16, quality=9)
    return path.read_bytes()


def test_two_photos_are_a_422_job_error(client: TestClient):
    frames = clip([False] * 2)[0]
    response = post(client, *[(f"p{k}.png", png(f), "image/png") for k, f in enumerate(frames)])
    assert response.status_code == 202, response.text
    job = wait(client, response.json())
    assert job["status"] == "error" and job["error"]["status"] == 422
    assert "a scan needs at least 3 views" in job["error"]["message"] and "\n" not in job["error"]["message"]


def test_not_a_video_and_too_many_files_are_400(client: TestClient):
    response = post(client, ("walk.mp4", b"not a video at all", "video/mp4"))
    assert response.status_code == 400 and response.json()["detail"] == "walk.mp4: not a readable video"
    photo = png(np.zeros((8, 8, 3), np.uint8))
    response = post(client, *[(f"p{k}.png", photo, "image/png") for k in range(31)])
    assert response.status_code == 400 and "at most 30 photos" in response.json()["detail"]


def test_a_moving_subject_is_a_422_job_error(client: TestClient, tmp_path):
    pytest.importorskip("pycolmap")
    response = post(client, ("walk.mp4", _mp4(clip([True] * FRAMES, step=0.2)[0], tmp_path), "video/mp4"))
    assert response.status_code == 202, response.text
    job = wait(client, response.json())
    assert job["status"] == "error" and job["error"]["status"] == 422, job
    assert job["error"]["message"].startswith("walk.mp4: the subject moves: 23 of 23 keyframe pairs")


def test_a_still_clip_becomes_a_mesh_with_a_turntable(client: TestClient, tmp_path):
    pytest.importorskip("pycolmap")
    response = post(client, ("board.mp4", _mp4(clip([False] * FRAMES)[0], tmp_path), "video/mp4"))
    assert response.status_code == 202, response.text
    job = wait(client, response.json())
    assert job["status"] == "done", job["error"]
    assert {"scan_glb", "scan_obj", "scan_json", "scan_turntable"} <= set(job["links"]) and job["faces"] == []
    summary = client.get(job["links"]["scan_json"]).json()
    assert summary["views"]["source"] == "video" and summary["mesh"]["faces"] > 100
    with zipfile.ZipFile(io.BytesIO(client.get(job["links"]["scan_obj"]).content)) as z:
        assert sorted(z.namelist()) == ["scan.mtl", "scan.obj", "scan.png"]
    gif = client.get(job["links"]["scan_turntable"])
    assert gif.status_code == 200 and gif.content[:6] == b"GIF89a"
