#!/usr/bin/env bash
# The wheel on its own (CI runs this after the tests): build it, install it into a fresh virtual
# environment (no system site-packages; the dependencies come from pip's configured index and
# cache), then run the main job from an empty folder with no repository and no shared data folder,
# twice: the first run compiles the numba kernels, the second loads them from numba's cache.
# About 3-4 minutes here, most of it pip installing the dependencies; too slow for the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_PYTHON=${BUILD_PYTHON:-.venv/bin/python}     # needs `build` (the test extra)
PYTHON=${PYTHON:-python3.11}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$BUILD_PYTHON" -m build --wheel --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
WHEEL=$(ls "$WORK"/dist/facerecon-*.whl)
"$BUILD_PYTHON" - "$WHEEL" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["facerecon/data/ict_facekit.npz", "facerecon/data/ICT-FaceKit-LICENSE.txt", "facerecon/data/regressor_uv128.onnx",
        "facerecon/examples/astronaut.jpg", "facerecon/web/static/index.html",
        "facerecon/web/static/vendor/three/LICENSE", "facerecon/web/static/vendor/three/build/three.module.min.js"]
missing = [n for n in need if n not in names]
sys.exit(f"the wheel lacks {missing}" if missing else 0)
EOF

"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet "$WHEEL"
EXAMPLE=$("$WORK/venv/bin/python" -c "import importlib.resources as r; print(r.files('facerecon') / 'examples' / 'astronaut.jpg')")
mkdir "$WORK/run" "$WORK/home"
cd "$WORK/run"
for run in cold warm; do
    start=$(date +%s%N)
    env -i PATH=/usr/bin:/bin HOME="$WORK/home" FACERECON_SHARED="$WORK/nowhere" \
        "$WORK/venv/bin/facerecon" reconstruct "$EXAMPLE" -o "out_$run" >"$WORK/$run.log" 2>&1 \
        || { cat "$WORK/$run.log"; exit 1; }
    echo "wheel: $run reconstruct $(( ($(date +%s%N) - start) / 1000000 )) ms (whole process)"
done
"$WORK/venv/bin/python" - out_warm/astronaut <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for name in ("face0.obj", "face0.mtl", "face0.png", "face0.glb", "face0.ply", "face0.json", "overlay.png"):
    assert (out / name).stat().st_size > 0, name
data = json.loads((out / "face0.json").read_text())
assert len(data["landmarks"]["ibug68"]["pixels"]) == 68, data.keys()
print("wheel: the main job ran from the installed wheel alone:", ", ".join(sorted(p.name for p in out.iterdir())))
EOF
