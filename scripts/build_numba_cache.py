"""Compile the numba kernels into the source tree's ``__pycache__`` folders, for the wheel to ship.

Run before ``python -m build`` (``scripts/check_wheel.sh`` does): the wheel then carries the
kernels compiled for ``x86-64-v3`` (``facerecon/_numba_target.py``), and the first
``facerecon reconstruct`` after installing it loads them instead of compiling for about 20 s.
numba keys the cache by the source's content, so a kernel file edited afterwards simply
recompiles. Old cache files in the package are removed first, so only this target's ship.

    .venv/bin/python scripts/build_numba_cache.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facerecon._numba_target import TARGET, host_has_v3  # noqa: E402

PACKAGE = ROOT / "facerecon"
EXAMPLE = PACKAGE / "examples" / "astronaut.jpg"


def cache_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("__pycache__/*") if p.suffix in (".nbi", ".nbc"))


def main() -> None:
    if not host_has_v3():
        sys.exit(f"this CPU cannot run {TARGET} code, so it cannot build the shipped kernels")
    for path in cache_files():
        path.unlink()
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    # FACERECON_CACHE_DIR empty: the per-model data is built, not loaded, so its kernels compile too
    # (a new install has no disk cache yet).
    env.update(NUMBA_CPU_NAME=TARGET, NUMBA_CPU_FEATURES="", PYTHONPATH=str(ROOT), FACERECON_CACHE_DIR="")
    with tempfile.TemporaryDirectory() as out:
        # the main job with every output, the turntable included: each kernel it calls compiles once
        subprocess.run([sys.executable, "-m", "facerecon", "reconstruct", str(EXAMPLE), "-o", out, "--turntable"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
    files = cache_files()
    if not files:
        sys.exit("no numba cache files were written (is facerecon's __pycache__ writable?)")
    print(f"{len(files)} numba cache files, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB, for {TARGET}, in "
          + ", ".join(sorted({str(p.parent.relative_to(ROOT)) for p in files})))


if __name__ == "__main__":
    main()
