"""The shared data folder: tests that need it skip with the reason where it is absent, and fail
where FACERECON_REQUIRE_SHARED=1 (CI) says it must be there."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REQUIRE_SHARED, require_data

ROOT = Path(__file__).resolve().parents[1]


def test_absent_data_skips_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.delenv(REQUIRE_SHARED, raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"no photos at .*{tmp_path.name}/nope"):
        require_data(tmp_path / "nope", "photos")
    assert require_data(tmp_path, "photos") == tmp_path


def test_absent_data_fails_where_it_is_required(tmp_path, monkeypatch):
    monkeypatch.setenv(REQUIRE_SHARED, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_SHARED}=1"):
        require_data(tmp_path / "nope", "photos")


def test_ci_requires_the_shared_folder():
    assert f"export {REQUIRE_SHARED}=1" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("required, outcome", [("0", "1 skipped"), ("1", "1 error")])
def test_a_test_that_needs_the_shared_folder_without_it(tmp_path, required, outcome):
    # A real pytest run of one shared-data test (test_load's photo fixture) with the folder moved away.
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_load.py::test_photo_loads_as_rgb8"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120,
                            env={**os.environ, "FACERECON_SHARED": str(tmp_path / "none"),
                                 REQUIRE_SHARED: required})
    assert outcome in result.stdout and (result.returncode != 0) == (required == "1"), result.stdout[-2000:]
    assert "no shared data folder at" in result.stdout
