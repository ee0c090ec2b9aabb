#!/usr/bin/env bash
# Refresh the vendored three.js (facerecon/web/static/vendor/three, committed, MIT licence beside it)
# from npm after changing its version in web/package.json. Only the modules the viewer imports.
set -euo pipefail
cd "$(dirname "$0")/.."
(cd web && npm ci --no-audit --no-fund --loglevel=error)
VENDOR=facerecon/web/static/vendor/three
rm -rf "$VENDOR" && mkdir -p "$VENDOR"
(cd web/node_modules/three && cp --parents LICENSE build/three.module.min.js \
    examples/jsm/loaders/GLTFLoader.js examples/jsm/utils/BufferGeometryUtils.js \
    examples/jsm/controls/OrbitControls.js "../../../$VENDOR/")
