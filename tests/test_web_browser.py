"""End to end in headless Chromium: upload the photo on the page, wait for the 3D viewer, check that
WebGL drew the head (pixels, not just the DOM), toggle landmarks and wireframe, move an expression
slider, download the GLB; and play the animation of a GLB opened on the page."""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import trimesh
from PIL import Image

from helpers import EXAMPLE, chromium_page, serving
from facerecon.web import WebSettings, create_app

BACKGROUND = np.array([0x20, 0x24, 0x2A])  # #viewer's clear colour (style.css, viewer.js)
VIEWPORT = {"width": 1200, "height": 900}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    settings = WebSettings(texture_size=256)
    with serving(create_app(settings), settings.header_timeout_s) as port:
        yield f"http://127.0.0.1:{port}"


def canvas_pixels(page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#viewer canvas").screenshot())).convert("RGB"), np.int32)


def skin_fraction(rgb: np.ndarray) -> float:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return float(((r > 90) & (r > g) & (g > b) & (r - b > 30)).mean())


def red_count(rgb: np.ndarray) -> int:
    return int(((rgb[..., 0] > 200) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)).sum())


def test_upload_view_and_download_in_chromium(server: str):
    with chromium_page(viewport=VIEWPORT) as (page, js_errors):
        page.goto(server)
        page.set_input_files("#file", str(EXAMPLE))
        page.wait_for_selector("#viewer[data-state=ready]", timeout=90_000)
        assert page.locator("#tabs button").count() == 1
        assert page.locator("#error").is_hidden()

        textured = canvas_pixels(page)
        drawn = np.abs(textured - BACKGROUND).sum(axis=2) > 24
        assert drawn.mean() > 0.05, "the canvas is (nearly) all background"
        assert skin_fraction(textured) > 0.02, "no skin-coloured texture on the head"

        page.check("#landmarks")
        page.wait_for_timeout(300)  # a few frames
        assert red_count(canvas_pixels(page)) > red_count(textured) + 100, "landmarks not drawn"

        page.check("input[name=mode][value=wireframe]")
        page.wait_for_timeout(300)
        assert skin_fraction(canvas_pixels(page)) < skin_fraction(textured) / 3, "wireframe still textured"
        page.check("input[name=mode][value=texture]")
        page.uncheck("#landmarks")

        # Expression sliders: the 53 ARKit-named targets in five groups; opening the jaw changes the face.
        sliders = page.locator("#expression-groups input[type=range]")
        assert sliders.count() == 53 and page.locator("#expression-groups fieldset").count() == 5
        assert page.locator("#playback").is_hidden()   # a photo's head has no animation
        page.wait_for_timeout(300)
        before = canvas_pixels(page)
        page.locator("input[data-target=jawOpen]").fill("1")
        page.wait_for_timeout(300)
        opened = canvas_pixels(page)
        assert changed(before, opened) > 0.003, "the jawOpen slider did not change the canvas"
        page.click("#fitted")
        page.wait_for_timeout(300)
        assert changed(before, canvas_pixels(page)) < 0.1 * changed(before, opened), "fitted did not restore"

        glb_url = page.locator("#dl-glb").get_attribute("href")
        assert js_errors == []

    glb = httpx.get(server + glb_url, timeout=30)
    assert glb.status_code == 200
    mesh = trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh")
    assert len(mesh.vertices) > 10_000 and 0.15 < mesh.extents[1] < 0.6   # metres


def changed(a: np.ndarray, b: np.ndarray) -> float:
    """Share of the canvas's pixels that differ visibly."""
    return float((np.abs(a - b).sum(axis=2) > 30).mean())


def animated_glb(path: Path) -> Path:
    """The mean head turning its yaw from -30 to 30 degrees and opening its jaw over two seconds."""
    from facerecon.camera import Camera, rotation_from_angles
    from facerecon.export import encode_image
    from facerecon.gltf import Animation, Rig, head_glb
    from facerecon.model import load_model
    model = load_model()
    times = np.linspace(0, 2, 21)
    poses = np.repeat(np.eye(4)[None], len(times), axis=0)
    poses[:, :3, 3] = [0, 0, 60]
    expression = np.zeros((len(times), model.n_expression))
    expression[:, model.expression_names.index("jawOpen")] = times / 2
    for pose, t in zip(poses, times):
        pose[:3, :3] = rotation_from_angles(-30 + 30 * t, 0, 0)
    texture = np.full((64, 64, 3), (200, 150, 120), np.uint8)
    rig = Rig(np.zeros(model.n_identity, np.float32), expression[0], poses[0], Camera.for_image(640, 480))
    path.write_bytes(head_glb(model, model.neutral, encode_image(texture), rig, Animation(times, expression, poses)))
    return path


def test_a_glb_opened_on_the_page_plays_its_animation(server: str, tmp_path):
    glb = animated_glb(tmp_path / "head.glb")
    with chromium_page(viewport=VIEWPORT) as (page, js_errors):
        page.goto(server)
        page.set_input_files("#file", str(glb))
        page.wait_for_selector("#viewer[data-state=ready][data-animated=yes]", timeout=60_000)
        assert page.locator("#playback").is_visible()
        first = canvas_pixels(page)
        # a loaded machine renders few frames a second (software WebGL): wait up to 6 s for motion
        moved = 0.0
        for _ in range(24):
            page.wait_for_timeout(250)
            moved = changed(first, canvas_pixels(page))
            if moved > 0.003:
                break
        assert moved > 0.003, "the animation does not move the head"
        page.click("#play")   # pause
        paused = canvas_pixels(page)
        page.wait_for_timeout(500)
        assert changed(paused, canvas_pixels(page)) < 0.001, "a paused animation still moves"
        assert page.locator("#play").text_content() == "play"
        assert js_errors == []


def test_an_uploaded_clip_plays_as_an_animated_head(server: str, tmp_path):
    from test_video import make_clip
    clip = tmp_path / "clip.mp4"
    make_clip(clip, roll_deg=10, shift_px=0, noise=2)
    with chromium_page(viewport=VIEWPORT) as (page, js_errors):
        page.goto(server)
        page.set_input_files("#file", str(clip))
        page.wait_for_selector("#viewer[data-state=ready][data-animated=yes]", timeout=180_000)
        assert page.locator("#images").is_hidden() and page.locator("#error").is_hidden()
        assert "/files/head.glb" in page.locator("#dl-glb").get_attribute("href")
        assert page.locator("#expression-groups input[type=range]").count() == 53
        first = canvas_pixels(page)
        assert skin_fraction(first) > 0.02, "no textured head on the canvas"
        page.wait_for_timeout(250)   # the clip lasts 0.64 s and loops: its head rolls by 10 degrees
        assert changed(first, canvas_pixels(page)) > 0.002, "the clip's animation does not move the head"
        assert js_errors == []


def test_the_scan_switch_uploads_to_the_scan_api_and_shows_its_mesh(server: str, tmp_path):
    """With "scan" ticked the photos go to POST /api/scans (field ``files``) and the finished job's
    mesh is shown with the scan's downloads. The scan itself is the API's (tests/test_web_scan.py):
    here the browser is answered with a finished job and a box for its mesh."""
    import json
    box = trimesh.creation.box((0.2, 0.25, 0.2))
    box.visual.face_colors = [200, 200, 200, 255]
    glb = box.export(file_type="glb")
    job = {"id": "scan1", "status": "done", "queue_position": 0, "stage": "done", "elapsed_s": 1.0,
           "photos": ["a.png", "b.png", "c.png"], "notes": ["scale: arbitrary"], "error": None, "faces": [],
           "links": {"self": "/api/reconstructions/scan1", "scan_glb": "/scan-fixture/scan.glb",
                     "scan_obj": "/scan-fixture/scan_obj.zip", "scan_json": "/scan-fixture/scan.json"}}
    posted = []

    def answer_scan(route):
        posted.append(route.request.post_data_buffer or b"")
        route.fulfill(status=202, content_type="application/json", body=json.dumps(job))

    photos = []
    for k in range(3):
        photos.append(tmp_path / f"p{k}.png")
        Image.fromarray(np.full((32, 32, 3), 60 * k, np.uint8)).save(photos[-1])
    with chromium_page(viewport=VIEWPORT) as (page, js_errors):
        page.route("**/api/scans", answer_scan)
        page.route("**/scan-fixture/scan.glb", lambda route: route.fulfill(body=glb, content_type="model/gltf-binary"))
        page.goto(server)
        page.check("#scan")
        page.set_input_files("#file", [str(p) for p in photos])
        page.wait_for_selector("#viewer[data-state=ready]", timeout=60_000)
        assert len(posted) == 1 and posted[0].count(b'name="files"') == 3
        assert page.locator("#images").is_hidden() and page.locator("#error").is_hidden()
        assert page.locator("#dl-glb").get_attribute("href") == "/scan-fixture/scan.glb"
        assert page.locator("#dl-obj").get_attribute("href") == "/scan-fixture/scan_obj.zip"
        assert page.locator("#notes li").all_text_contents() == ["scale: arbitrary"]
        drawn = np.abs(canvas_pixels(page) - BACKGROUND).sum(-1) > 60
        assert drawn.mean() > 0.02, "the scan's mesh is not on the canvas"
        assert js_errors == []
