"""Test helpers for GLB files: an independent reader of the JSON and accessors (sparse included),
and the Khronos glTF validator (npm gltf-validator, installed into web/node_modules by setup.sh)."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

VALIDATOR = Path(__file__).resolve().parents[1] / "web" / "node_modules" / "gltf-validator"
DTYPES = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}
WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class Glb:
    def __init__(self, data: bytes):
        magic, version, total = struct.unpack_from("<4sII", data)
        assert magic == b"glTF" and version == 2 and total == len(data)
        length, kind = struct.unpack_from("<I4s", data, 12)
        assert kind == b"JSON"
        self.json = json.loads(data[20:20 + length])
        bin_length, bin_kind = struct.unpack_from("<I4s", data, 20 + length)
        assert bin_kind == b"BIN\0"
        self.bin = data[28 + length:28 + length + bin_length]

    def _view(self, index: int, dtype, count: int, offset: int = 0) -> np.ndarray:
        view = self.json["bufferViews"][index]
        assert "byteStride" not in view
        return np.frombuffer(self.bin, dtype, count, view.get("byteOffset", 0) + offset)

    def accessor(self, index: int) -> np.ndarray:
        """The accessor's values (count, width), sparse substitution applied."""
        a = self.json["accessors"][index]
        width, dtype = WIDTH[a["type"]], DTYPES[a["componentType"]]
        if "bufferView" in a:
            out = self._view(a["bufferView"], dtype, a["count"] * width, a.get("byteOffset", 0)).copy()
        else:
            out = np.zeros(a["count"] * width, dtype)
        out = out.reshape(a["count"], width)
        if "sparse" in a:
            s = a["sparse"]
            rows = self._view(s["indices"]["bufferView"], DTYPES[s["indices"]["componentType"]], s["count"])
            out[rows] = self._view(s["values"]["bufferView"], dtype, s["count"] * width).reshape(-1, width)
        return out

    def node(self, name: str) -> dict:
        (node,) = [n for n in self.json["nodes"] if n.get("name") == name]
        return node

    def mesh_of(self, name: str) -> dict:
        return self.json["meshes"][self.node(name)["mesh"]]


def node_matrix(node: dict) -> np.ndarray:
    """A node's local 4x4 transform from its translation and rotation (x, y, z, w)."""
    from scipy.spatial.transform import Rotation
    m = np.eye(4)
    if "rotation" in node:
        m[:3, :3] = Rotation.from_quat(node["rotation"]).as_matrix()
    m[:3, 3] = node.get("translation", [0.0, 0.0, 0.0])
    return m


def validate(path: Path) -> dict:
    """The Khronos validator's report on a GLB (its issues and info)."""
    node = shutil.which("node")
    if node is None or not VALIDATOR.is_dir():
        message = "node or web/node_modules/gltf-validator missing (scripts/setup.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    script = ("const v = require(process.argv[1]);"
              "v.validateBytes(new Uint8Array(require('fs').readFileSync(process.argv[2])))"
              ".then((r) => process.stdout.write(JSON.stringify(r)), (e) => { console.error(String(e)); process.exit(1); });")
    result = subprocess.run([node, "-e", script, str(VALIDATOR), str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_valid(path: Path) -> dict:
    report = validate(path)
    issues = report["issues"]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"][:5]
    return report["info"]
