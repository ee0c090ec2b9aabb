"""Commands whose optional dependencies are missing fail with one line naming the extra."""
from __future__ import annotations

import subprocess
import sys

import pytest

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
    from pathlib import Path
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes((Path(__file__).parents[1] / "facerecon" / "examples" / "astronaut.jpg").read_bytes())
    args = [a.format(tmp=tmp_path, photos=photos) for a in args]
    result = subprocess.run([sys.executable, "-c", HIDE_AND_RUN, hidden, *args], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines and f"needs the [{extra}] extra" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
