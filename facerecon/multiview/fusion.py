"""The fused texture of a multi-view head: every used view sampled with its own pose and expression,
then blended by ``texture.fuse_textures``."""
from __future__ import annotations

from ..texture import atlas_texels, fuse_textures, view_samples
from .result import MultiViewReconstruction


def add_fused_texture(result: MultiViewReconstruction, size: int) -> None:
    """Sample every used view and fuse them into ``result``'s texture, visibility, coverage and gains."""
    used = result.used
    samples = [view_samples(v.image, result.view_vertices_camera(v), v.camera, result.model, size) for v in used]
    reference = used.index(result.views[result.reference])
    baked, gains = fuse_textures(samples, result.model, size, reference=reference)
    result.texture, result.visibility = baked.image, baked.visibility
    covered = baked.visibility > 0.5
    result.texture_coverage = float(covered.sum() / max(len(atlas_texels(result.model, size)), 1))
    result.gains = {v.source: [round(float(g), 4) for g in gain] for v, gain in zip(used, gains)}
