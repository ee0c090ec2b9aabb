"""ICT expression shapes under Apple ARKit's blendshape names.

ICT-FaceKit follows ARKit's naming with ``_L``/``_R`` suffixes and splits two ARKit shapes into
halves (``browInnerUp`` and ``cheekPuff``). ARKit's ``tongueOut`` has no ICT counterpart.
"""
from __future__ import annotations

import numpy as np

MERGED = ("browInnerUp", "cheekPuff")


def arkit_name(ict_name: str) -> str:
    if ict_name.endswith("_L"):
        return ict_name[:-2] + "Left"
    if ict_name.endswith("_R"):
        return ict_name[:-2] + "Right"
    return ict_name


def arkit_weights(ict_names: tuple[str, ...], weights: np.ndarray) -> dict[str, float]:
    """ARKit name -> weight in [0, 1]; ICT's split halves are averaged back into one shape."""
    out: dict[str, list[float]] = {}
    for name, w in zip(ict_names, np.asarray(weights, float)):
        key = arkit_name(name)
        for merged in MERGED:
            if key in (merged + "Left", merged + "Right"):
                key = merged
        out.setdefault(key, []).append(float(w))
    return {k: round(float(np.mean(v)), 5) for k, v in out.items()}
