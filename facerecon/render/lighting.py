"""Order-2 spherical-harmonic (SH) lighting for Lambertian surfaces.

Lighting is 9 coefficients per colour channel, ``sh`` (9, 3), in the **camera frame** (x right,
y down, z forward), so a light "from the camera" lies along -z. The coefficients are irradiance
coefficients with the Lambertian 1/pi already folded in: a surface with unit normal ``n`` and albedo
``rho`` in [0, 1] shows ``rho * max(0, sh_basis(n) @ sh)``. With this scaling, ambient light of
``level`` gives exactly ``rho * level`` and a surface facing a directional light of ``intensity``
gets about ``rho * intensity`` from it (order 2 rings by a few per cent).

Basis order: Y00, Y1-1 (y), Y10 (z), Y11 (x), Y2-2 (xy), Y2-1 (yz), Y20 (3z^2-1), Y21 (xz), Y22 (x^2-y^2).
"""
from __future__ import annotations

import math

import numba
import numpy as np

# Real orthonormal SH constants.
C0 = 0.5 / math.sqrt(math.pi)                  # 0.282095
C1 = math.sqrt(3.0 / (4.0 * math.pi))          # 0.488603
C2 = 0.5 * math.sqrt(15.0 / math.pi)           # 1.092548
C20 = 0.25 * math.sqrt(5.0 / math.pi)          # 0.315392
C22 = 0.25 * math.sqrt(15.0 / math.pi)         # 0.546274

# Lambertian convolution per band divided by pi (A_l / pi, Ramamoorthi & Hanrahan 2001).
BAND_SCALE = np.array([1.0] + [2.0 / 3.0] * 3 + [0.25] * 5)


def sh_basis(normals: np.ndarray) -> np.ndarray:
    """(..., 3) unit normals -> (..., 9) basis values."""
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    return np.stack([np.full_like(x, C0), C1 * y, C1 * z, C1 * x, C2 * x * y, C2 * y * z,
                     C20 * (3.0 * z * z - 1.0), C2 * x * z, C22 * (x * x - y * y)], axis=-1)


@numba.njit(cache=True, fastmath=True, nogil=True)
def shade_at(nx, ny, nz, sh, channel):
    """Clamped irradiance of one channel for one unit normal (the renderer's per-pixel form)."""
    e = (C0 * sh[0, channel] + C1 * (ny * sh[1, channel] + nz * sh[2, channel] + nx * sh[3, channel])
         + C2 * (nx * ny * sh[4, channel] + ny * nz * sh[5, channel] + nx * nz * sh[7, channel])
         + C20 * (3.0 * nz * nz - 1.0) * sh[6, channel] + C22 * (nx * nx - ny * ny) * sh[8, channel])
    return max(e, 0.0)


def irradiance(normals: np.ndarray, sh: np.ndarray) -> np.ndarray:
    """(..., 3) unit normals, (9, 3) coefficients -> (..., 3) clamped irradiance (albedo multiplier)."""
    return np.maximum(sh_basis(normals) @ sh, 0.0).astype(np.float32)


def ambient(level: float = 1.0, color=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Uniform light: every surface shows ``albedo * level * color``."""
    sh = np.zeros((9, 3), np.float32)
    sh[0] = level * np.asarray(color, np.float32) / C0
    return sh


def directional(direction, intensity: float = 1.0, color=(1.0, 1.0, 1.0)) -> np.ndarray:
    """A distant light; ``direction`` (3,) points from the surface toward the light, camera frame."""
    d = np.asarray(direction, np.float64)
    d = d / np.linalg.norm(d)
    # Radiance of a delta light is pi*I*Y(d) (so that facing surfaces get ~I), times A_l/pi per band.
    coeff = math.pi * intensity * BAND_SCALE * sh_basis(d)
    return (coeff[:, None] * np.asarray(color, np.float64)[None, :]).astype(np.float32)


def frontal(key: float = 0.55, ambient_level: float = 0.45) -> np.ndarray:
    """Soft portrait light: ambient plus a key light a little above and left of the camera."""
    return ambient(ambient_level) + directional((-0.35, -0.45, -1.0), key)


def random_lighting(rng: np.random.Generator) -> np.ndarray:
    """Plausible varied lighting for synthetic data: tinted ambient plus one key light in front.

    The key comes from within 70 degrees of the camera axis so the face is never lit only from
    behind; intensities keep a camera-facing surface between about 0.4 and 1.5 times its albedo.
    """
    polar = math.radians(70.0) * math.sqrt(rng.uniform())   # uniform over the cap's area
    azimuth = rng.uniform(0.0, 2.0 * math.pi)
    direction = (math.sin(polar) * math.cos(azimuth), math.sin(polar) * math.sin(azimuth),
                 -math.cos(polar))
    ambient_tint = np.clip(1.0 + rng.normal(0.0, 0.05, 3), 0.8, 1.2)
    key_tint = np.clip(1.0 + rng.normal(0.0, 0.08, 3), 0.7, 1.3)
    return (ambient(rng.uniform(0.3, 0.8), ambient_tint)
            + directional(direction, rng.uniform(0.1, 0.7), key_tint))
