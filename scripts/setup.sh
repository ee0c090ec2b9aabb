#!/usr/bin/env bash
# One-command set-up on a fresh machine: a virtual environment in .venv with facerecon installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
# mediapipe depends on opencv-contrib-python; both provide cv2, so keep them at the same pinned version.
.venv/bin/python -m pip install --quiet "opencv-contrib-python==4.11.0.86"
.venv/bin/python -c "import facerecon, cv2, mediapipe; print('facerecon set up: cv2', cv2.__version__)"
