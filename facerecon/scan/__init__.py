"""Scanning a still subject from many views: photos, a folder or a video -> its textured mesh.

    views -> cameras -> dense depth -> fusion -> texture -> scale -> files
    views.py   cameras.py  depth.py      fusion.py  bake.py   scale.py   pipeline.py

Everything runs on the CPU; pycolmap (structure from motion), scikit-image (marching cubes),
xatlas (the unwrap) and fast-simplification (decimation) come with the ``[scan]`` extra.
"""
from .pipeline import SUBJECTS, ScanResult, ScanSettings, prepare, reconstruct

__all__ = ["SUBJECTS", "ScanResult", "ScanSettings", "prepare", "reconstruct"]
