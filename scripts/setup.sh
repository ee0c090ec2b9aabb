#!/usr/bin/env bash
# One-command set-up on a fresh machine: a virtual environment in .venv with facerecon installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, pinned to the CPU build (torch==2.13.0 resolves to the local 2.13.0+cpu wheel), so the
# train extra below finds it satisfied and pip never downloads a CUDA build.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -c "import torch, sys; sys.exit(f'expected the CPU build of torch, got {torch.__version__}' if torch.version.cuda else 0)"
# Development: every extra (web, ray, eval, train, scan) and the test tools. Users: `pip install .`
.venv/bin/python -m pip install --quiet -e ".[all,test]"
.venv/bin/python -c "import facerecon, cv2, numpy; print('facerecon set up: cv2', cv2.__version__, 'numpy', numpy.__version__)"

# The web viewer's three.js is vendored in facerecon/web/static/vendor/three (scripts/vendor_three.sh
# refreshes it); npm brings the browser tests' tools (web/package.json).
command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; }
# --ignore-scripts: swagger-ui-dist's dependency @scarf/scarf would report the install to its maker.
# npm ci also installs the devDependency gltf-validator (Khronos), which the GLB tests run.
(cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
# Swagger UI for /docs (FastAPI's default loads it from a CDN): the official npm build, served locally.
SWAGGER=facerecon/web/static/vendor/swagger-ui
rm -rf "$SWAGGER" && mkdir -p "$SWAGGER"
(cd web/node_modules/swagger-ui-dist && cp LICENSE NOTICE swagger-ui-bundle.js swagger-ui.css favicon-32x32.png \
    "../../../$SWAGGER/")
# Headless Chromium for the viewer's end-to-end test (tests/test_web_browser.py).
if ! command -v chromium >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
