"""Shared fixtures: real photos from the shared data folder (``$FACERECON_SHARED``, else ../shared)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facerecon.assets import shared_dir


@pytest.fixture(scope="session")
def shared() -> Path:
    return shared_dir()


@pytest.fixture(scope="session")
def eval_dir(shared: Path) -> Path:
    return shared / "eval"


@pytest.fixture(scope="module")
def run():
    """A Reconstructor with 256 px textures, one per test module (the fitter keeps per-call state)."""
    from facerecon.pipeline import Reconstructor
    with Reconstructor(texture_size=256) as reconstructor:
        yield reconstructor


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
