"""Commands whose optional dependencies are missing fail with one line naming the extra."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import EXAMPLE
from facerecon.errors import FaceReconError, MissingExtraError, require

# Runs the CLI with some modules made unimportable (None in sys.modules makes `import` raise).
HIDE_AND_RUN = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
sys.argv = ["facerecon", *sys.argv[2:]]
from facerecon.cli import main
main()
"""


def test_require_names_the_extra():
    assert require("json", "web", "x").dumps([]) == "[]"
    with pytest.raises(MissingExtraError, match=r"facerecon serve needs the \[web\] extra: pip install 'facerecon\[web\]'") as info:
        require("no_such_module_for_facerecon", "web", "facerecon serve")
    assert isinstance(info.value, FaceReconError) and "\n" not in str(info.value)


@pytest.mark.parametrize("hidden, args, extra", [
    ("uvicorn", ["serve"], "web"),
    ("matplotlib", ["evaluate", "-o", "{tmp}/report", "--protocol", "aflw", "--smoke"], "eval"),
    ("ray", ["batch", "{photos}", "-o", "{tmp}/batch", "--engine", "ray"], "ray"),
])
def test_a_missing_extra_is_one_line(tmp_path, hidden, args, extra):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(EXAMPLE.read_bytes())
    args = [a.format(tmp=tmp_path, photos=photos) for a in args]
    result = subprocess.run([sys.executable, "-c", HIDE_AND_RUN, hidden, *args], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines and f"needs the [{extra}] extra" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_portable_numba_target_only_where_the_cpu_has_it(tmp_path, monkeypatch):
    from facerecon import _numba_target as target
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 " + " ".join(sorted(target.V3_FLAGS)) + "\n")
    assert target.host_has_v3(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 sse4_1 sse4_2 popcnt\n")          # no AVX2
    assert not target.host_has_v3(str(cpuinfo))
    assert not target.host_has_v3(str(tmp_path / "missing"))
    # once numba is loaded its target is fixed, so nothing may change
    import numba  # noqa: F401
    monkeypatch.delenv("NUMBA_CPU_NAME", raising=False)
    before = dict(os.environ)
    assert "numba" in sys.modules and target.use_portable_target() is False and dict(os.environ) == before


def test_the_kernels_compile_for_the_portable_target():
    import numba
    from facerecon import _numba_target as target
    if target.host_has_v3():      # facerecon set the target before numba loaded (see conftest's imports)
        assert numba.config.CPU_NAME == target.TARGET and numba.config.CPU_FEATURES == ""


def test_the_tracked_tree_stays_under_20_mb():
    """Issue 15: the repository plus a training run's data must fit the 64 MiB a GPU run carries."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout.split(b"\0")
    paths = [root / n.decode() for n in names if n]
    assert sum(p.stat().st_size for p in paths if p.is_file()) < 20e6
