"""End to end in headless Chromium: upload the photo on the page, wait for the 3D viewer, check that
WebGL drew the head (pixels, not just the DOM), toggle landmarks and wireframe, download the GLB."""
from __future__ import annotations

import io
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import trimesh
import uvicorn
from PIL import Image

from facerecon.web import WebSettings, create_app

EXAMPLE = Path(__file__).resolve().parents[1] / "facerecon" / "examples" / "astronaut.jpg"
BACKGROUND = np.array([0x20, 0x24, 0x2A])  # #viewer's clear colour (style.css, viewer.js)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (scripts/setup.sh installs it with apt-get)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """uvicorn in a thread on a socket bound here, so the port is free and known before it starts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(WebSettings(texture_size=256)), log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not uv.started:
            assert thread.is_alive(), "uvicorn did not start"
            thread.join(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        uv.should_exit = True
        thread.join(30)
        sock.close()


def canvas_pixels(page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#viewer canvas").screenshot())).convert("RGB"), np.int32)


def skin_fraction(rgb: np.ndarray) -> float:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return float(((r > 90) & (r > g) & (g > b) & (r - b > 30)).mean())


def red_count(rgb: np.ndarray) -> int:
    return int(((rgb[..., 0] > 200) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)).sum())


def test_upload_view_and_download_in_chromium(server: str):
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            js_errors: list[str] = []
            page.on("pageerror", lambda exc: js_errors.append(str(exc)))
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

            glb_url = page.locator("#dl-glb").get_attribute("href")
            assert js_errors == []
        finally:
            browser.close()

    glb = httpx.get(server + glb_url, timeout=30)
    assert glb.status_code == 200
    mesh = trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh")
    assert len(mesh.vertices) > 10_000 and 15 < mesh.extents[1] < 60
