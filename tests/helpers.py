"""What several test modules share that is not a fixture: the example photo, uploads to the web app
and waiting for their jobs, a headless Chromium page, the web server in a thread, tiny training configs.

The web, browser and training parts import their packages where they are used, so that importing
this module needs neither the web nor the train extra.
"""
from __future__ import annotations

import io
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

if TYPE_CHECKING:
    from fastapi.testclient import TestClient
    from httpx import Response
    from playwright.sync_api import Page

EXAMPLE = Path(__file__).resolve().parents[1] / "facerecon" / "examples" / "astronaut.jpg"

# -- the web app's REST API ----------------------------------------------------------------------

def png_bytes(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB -> the bytes of a PNG file."""
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def post_photos(client: TestClient, *files: tuple[str, bytes, str]) -> Response:
    """POST /api/reconstructions with each (file name, bytes, content type) as one ``photos`` part."""
    return client.post("/api/reconstructions", files=[("photos", f) for f in files])


def wait_for_job(client: TestClient, job: dict, timeout_s: float = 60.0) -> dict:
    """Poll the job's status until it is neither queued nor running (failing after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"job still {job['status']} ({job['stage']})"
        time.sleep(0.1)
        job = client.get(job["links"]["self"]).json()
    return job


@contextmanager
def serving(app, header_timeout_s: float) -> Iterator[int]:
    """The app on 127.0.0.1 as ``facerecon serve`` runs it (guards.server_config), on a free port,
    in a thread; yields the port."""
    import uvicorn

    from facerecon.web.guards import server_config
    runner = uvicorn.Server(server_config(app, "127.0.0.1", 0, header_timeout_s))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not runner.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        yield runner.servers[0].sockets[0].getsockname()[1]
    finally:
        runner.should_exit = True
        thread.join(30)


# -- headless Chromium ---------------------------------------------------------------------------

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]


def chromium_path() -> str:
    """The system's Chromium; the test skips without one (fails on CI, where setup installs it)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (scripts/setup.sh installs it with apt-get)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextmanager
def chromium_page(**page_options) -> Iterator[tuple[Page, list[str]]]:
    """A new page in headless Chromium (``page_options`` as Browser.new_page takes them), and the
    list that collects the page's JavaScript errors; the browser closes on leaving."""
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(**page_options)
            js_errors: list[str] = []
            page.on("pageerror", lambda exc: js_errors.append(str(exc)))
            yield page, js_errors
        finally:
            browser.close()


# -- training ------------------------------------------------------------------------------------

def write_training_config(folder: Path, **sections) -> Path:
    """A training config for a run of a few steps in ``folder`` (its run folder ``folder / "run"``):
    seed 1, two torch threads, no loader workers, then ``sections`` (model, data, train, export,
    threads, ...) as given; paths become strings. Returns the YAML file's path."""
    import yaml     # the train extra's

    config = {"seed": 1, "output": folder / "run", "threads": 2, "workers": 0, **sections}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(_plain(config), sort_keys=False))
    return path


def _plain(value):
    """Paths -> str, inside dicts and lists, for yaml.safe_dump."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value
