"""The web app's REST API: a real reconstruction, every kind of bad upload, ids, file names, expiry."""
from __future__ import annotations

import io
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import trimesh
from fastapi.testclient import TestClient
from PIL import Image

from helpers import EXAMPLE, png_bytes, post_photos, wait_for_job
from facerecon.web import WebSettings, create_app
from facerecon.web.store import JobStore, Status

# Small limits so the "too large" uploads stay small; two workers so that concurrent jobs really
# run on two threads, each with its own Reconstructor.
SETTINGS = WebSettings(workers=2, texture_size=256, max_upload_bytes=2 * 2**20, max_pixels=1_000_000)


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(SETTINGS)) as c:
        yield c


def assert_error(response, status: int, contains: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    assert contains in detail


def test_astronaut_reconstructs_and_downloads(client: TestClient):
    response = post_photos(client, ("astronaut.jpg", EXAMPLE.read_bytes(), "image/jpeg"))
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] in ("queued", "running") and len(job["id"]) >= 20
    assert set(job) == {"id", "status", "stage", "queue_position", "elapsed_s", "photos", "notes", "error",
                        "faces", "links"}
    job = wait_for_job(client, job)
    assert job["status"] == "done", job["error"]
    assert job["notes"] == [] and len(job["faces"]) == 1
    face = job["faces"][0]
    assert set(face["files"]) == {"obj", "glb", "json", "texture"}

    glb = client.get(face["files"]["glb"])
    assert glb.headers["content-type"] == "model/gltf-binary"
    mesh = trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh")
    assert len(mesh.vertices) > 10_000
    assert 0.15 < mesh.extents[1] < 0.6  # a head and neck, in metres (glTF)

    with zipfile.ZipFile(io.BytesIO(client.get(face["files"]["obj"]).content)) as z:
        assert sorted(z.namelist()) == ["face0.mtl", "face0.obj", "face0.png"]
        assert "map_Kd face0.png" in z.read("face0.mtl").decode()

    data = client.get(face["files"]["json"]).json()
    assert np.asarray(data["landmarks"]["ibug68"]["model_cm"]).shape == (68, 3)
    assert data["source"] == "astronaut.jpg"  # the user's name, not the server's temp path

    for link in ("photo", "overlay"):
        image = Image.open(io.BytesIO(client.get(job["links"][link]).content))
        assert image.size == (512, 512)


def test_several_photos_of_one_person_give_one_head(client: TestClient, eval_dir: Path):
    views = eval_dir / "multiview" / "mvfnet"
    response = post_photos(client, *[(f"{n}.jpg", (views / f"{n}.jpg").read_bytes(), "image/jpeg")
                                     for n in ("front", "left")])
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json(), timeout_s=120)
    assert job["status"] == "done", job["error"]
    assert job["photos"] == ["front.jpg", "left.jpg"] and len(job["faces"]) == 1
    data = client.get(job["faces"][0]["files"]["json"]).json()
    assert data["used"] == ["front.jpg", "left.jpg"] and len(data["views"]) == 2
    assert len(data["landmarks"]["ibug68"]["model_cm"]) == 68     # the viewer draws these
    mesh = trimesh.load(io.BytesIO(client.get(job["faces"][0]["files"]["glb"]).content), file_type="glb", force="mesh")
    assert 0.15 < mesh.extents[1] < 0.6
    photo = Image.open(io.BytesIO(client.get(job["links"]["photo"]).content))
    assert photo.width > photo.height     # the two views side by side


def test_the_same_photo_twice_falls_back_to_one_view_and_says_so(client: TestClient):
    data = EXAMPLE.read_bytes()
    job = wait_for_job(client, post_photos(client, ("a.jpg", data, "image/jpeg"), ("b.jpg", data, "image/jpeg")).json())
    assert job["status"] == "done" and len(job["faces"]) == 1
    assert any("b.jpg" in note for note in job["notes"]), job["notes"]
    assert any("single-view" in note for note in job["notes"]), job["notes"]


def test_too_many_photos_is_400(client: TestClient):
    data = EXAMPLE.read_bytes()
    response = post_photos(client, *[(f"{k}.jpg", data, "image/jpeg") for k in range(SETTINGS.max_photos + 1)])
    assert_error(response, 400, "at most")


def test_concurrent_uploads_get_their_own_jobs(client: TestClient):
    data = EXAMPLE.read_bytes()
    with ThreadPoolExecutor(3) as threads:
        responses = list(threads.map(lambda i: post_photos(client, (f"p{i}.jpg", data, "image/jpeg")), range(3)))
    assert [r.status_code for r in responses] == [202] * 3
    jobs = [wait_for_job(client, r.json()) for r in responses]
    assert len({j["id"] for j in jobs}) == 3
    assert [j["status"] for j in jobs] == ["done"] * 3
    assert [j["photos"] for j in jobs] == [["p0.jpg"], ["p1.jpg"], ["p2.jpg"]]


def test_no_face_is_a_422_job_error(client: TestClient):
    gradient = np.tile(np.linspace(0, 255, 256, dtype=np.uint8)[None, :, None], (256, 1, 3))
    response = post_photos(client, ("wall.png", png_bytes(gradient), "image/png"))
    assert response.status_code == 202
    job = wait_for_job(client, response.json())
    assert job["status"] == "error" and job["faces"] == []
    assert job["error"]["status"] == 422
    assert job["error"]["message"].startswith("wall.png: ") and "face" in job["error"]["message"]


BAD_UPLOADS = {
    "not an image": (("photo.jpg", b"<html>not a photo</html>" * 10, "image/jpeg"), 400, "not an image"),
    "empty": (("photo.jpg", b"", "image/jpeg"), 400, "empty"),
    "truncated": (("photo.jpg", EXAMPLE.read_bytes()[:20_000], "image/jpeg"), 400, "truncated"),
    "too many bytes": (("photo.jpg", b"\xff" * (3 * 2**20), "image/jpeg"), 413, "limit"),
    "too many pixels": (("big.png", png_bytes(np.zeros((1100, 1000, 3), np.uint8)), "image/png"), 413, "1000x1100 px"),
}


@pytest.mark.parametrize("upload, status, contains", BAD_UPLOADS.values(), ids=BAD_UPLOADS.keys())
def test_bad_upload_is_rejected_at_once(client: TestClient, upload, status: int, contains: str):
    assert_error(post_photos(client, upload), status, contains)


def test_missing_photo_field_is_400(client: TestClient):
    assert_error(client.post("/api/reconstructions", files={"file": ("a.jpg", b"x", "image/jpeg")}), 400, "photos")


def test_unknown_id_and_unlisted_files_are_404(client: TestClient):
    assert_error(client.get("/api/reconstructions/nope"), 404, "unknown reconstruction id")
    job = wait_for_job(client, post_photos(client, ("astronaut.jpg", EXAMPLE.read_bytes(), "image/jpeg")).json())
    base = job["links"]["self"]
    # Files the job has but does not list (the raw upload, the loose OBJ), and names that are not files.
    for name in ("upload", "face0.obj", "face0.glb%00", "%2e%2e", ".face0.glb", "FACE0.GLB"):
        assert_error(client.get(f"{base}/files/{name}"), 404, "no such file")
    # Encoded traversal: the decoded slash never matches the one-segment route.
    for name in ("..%2F..%2F..%2Fetc%2Fpasswd", "%2e%2e%2fupload"):
        assert client.get(f"{base}/files/{name}").status_code == 404, name
    assert client.get(f"{base}/files/../../../../etc/passwd").status_code == 404


def test_openapi_documents_the_routes_and_the_page_is_served(client: TestClient):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/reconstructions", "/api/reconstructions/{job_id}",
            "/api/reconstructions/{job_id}/files/{name}"} <= set(paths)
    assert "202" in paths["/api/reconstructions"]["post"]["responses"]
    page = client.get("/")
    assert page.status_code == 200 and 'type="importmap"' in page.text
    three = client.get("/static/vendor/three/build/three.module.min.js")
    assert three.status_code == 200 and len(three.content) > 100_000


def test_finished_jobs_expire_and_running_ones_do_not(tmp_path: Path):
    store = JobStore(ttl_s=10, root=tmp_path)
    done, running = store.create(["a.jpg"]), store.create(["b.jpg"])
    store.update(done, status=Status.done)
    store.update(running, status=Status.running)
    assert store.expire(now=time.time() + 5) == 0
    assert store.expire(now=time.time() + 11) == 1
    assert store.get(done.id) is None and not done.folder.exists()
    assert store.get(running.id) is running and running.folder.is_dir()
    store.close()
    assert not store.root.exists()


def test_shutdown_removes_the_store():
    app = create_app(SETTINGS)
    with TestClient(app):
        root = app.state.store.root
        assert root.is_dir()
    assert not root.exists()

