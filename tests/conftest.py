"""Shared fixtures: real photos from the shared data folder (``$FACERECON_SHARED``, else ../shared).

Tests that need the folder skip, with the reason, where it is absent; CI sets
``FACERECON_REQUIRE_SHARED=1`` (in .ci/run), and there its absence fails them instead.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from facerecon.assets import shared_dir

REQUIRE_SHARED = "FACERECON_REQUIRE_SHARED"


def data_absent(message: str) -> None:
    """Skip the test for want of data, or fail it where the data must be there (CI)."""
    if os.environ.get(REQUIRE_SHARED) == "1":
        pytest.fail(f"{message}, and {REQUIRE_SHARED}=1 says it must be there", pytrace=False)
    pytest.skip(message)


def require_data(path: Path, what: str) -> Path:
    if not path.exists():
        data_absent(f"no {what} at {path} (set FACERECON_SHARED to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    return require_data(shared_dir(), "shared data folder")


@pytest.fixture(scope="session")
def eval_dir(shared: Path) -> Path:
    return require_data(shared / "eval", "shared evaluation photos")


@pytest.fixture(scope="module")
def run():
    """A Reconstructor with 256 px textures, one per test module (the fitter keeps per-call state)."""
    from facerecon.assets import ict_dir
    from facerecon.errors import AssetError
    from facerecon.pipeline import Reconstructor
    try:
        ict_dir()
    except AssetError as exc:
        data_absent(str(exc))
    with Reconstructor(texture_size=256) as reconstructor:
        yield reconstructor


@pytest.fixture(scope="module")
def detector():
    """The face detector, one per test module."""
    from facerecon.detect import FaceDetector
    with FaceDetector() as det:
        yield det


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
