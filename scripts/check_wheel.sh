#!/usr/bin/env bash
# The wheel on its own (CI runs this after the tests): build it, install it into a fresh virtual
# environment (no system site-packages; the dependencies come from pip's configured index and
# cache), then run the main job from an empty folder with no repository and no shared data folder,
# twice. The wheel ships the numba kernels compiled (scripts/build_numba_cache.py), so the first run
# must load them all, compile none. About 4-6 minutes here (the kernels' build and pip installing
# the dependencies take most of it): too slow for the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_PYTHON=${BUILD_PYTHON:-.venv/bin/python}     # needs `build` (the test extra)
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# the numba kernels, compiled into the package's __pycache__ for the wheel to ship
"$BUILD_PYTHON" scripts/build_numba_cache.py
"$BUILD_PYTHON" -m build --wheel --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
WHEEL=$(ls "$WORK"/dist/facerecon-*.whl)
"$BUILD_PYTHON" - "$WHEEL" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["facerecon/data/ict_facekit.npz", "facerecon/data/ICT-FaceKit-LICENSE.txt", "facerecon/data/regressor_uv128.onnx",
        "facerecon/data/face_landmark_attention.onnx", "facerecon/data/face_landmark.onnx",
        "facerecon/data/face_landmark_ict.onnx", "facerecon/data/face_landmark_ict_points.npz", "facerecon/data/yunet_s.onnx",
        "facerecon/data/NOTICE.md", "facerecon/data/LICENSE-Apache-2.0.txt",
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
    # NUMBA_DEBUG_CACHE: numba prints each kernel it loads from or saves to its cache
    env -i PATH=/usr/bin:/bin HOME="$WORK/home" FACERECON_SHARED="$WORK/nowhere" COLUMNS=200 NUMBA_DEBUG_CACHE=1 \
        "$WORK/venv/bin/facerecon" reconstruct "$EXAMPLE" -o "out_$run" >"$WORK/$run.log" 2>&1 \
        || { cat "$WORK/$run.log"; exit 1; }
    seconds=$(grep -o "ok *│ *[0-9.]* s" "$WORK/$run.log" | grep -o "[0-9.]* s" || true)
    echo "wheel: $run reconstruct $seconds for the photo, $(( ($(date +%s%N) - start) / 1000000 )) ms the whole process;" \
         "kernels loaded $(grep -c 'data loaded' "$WORK/$run.log" || true), compiled $(grep -c 'data saved' "$WORK/$run.log" || true)"
done
# the first run must load every kernel the wheel ships, not compile it (on an x86-64-v3 CPU)
if "$WORK/venv/bin/python" -c "import sys; from facerecon._numba_target import host_has_v3; sys.exit(not host_has_v3())"; then
    if grep -q "data saved" "$WORK/cold.log"; then
        echo "wheel: the first run compiled kernels the wheel should have shipped:"; grep "data saved" "$WORK/cold.log"; exit 1
    fi
fi
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
