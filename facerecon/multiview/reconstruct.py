"""One head from several photos of one person: the views, their checks, the joint fit, the texture."""
from __future__ import annotations

import time

from ..errors import NoFaceError
from ..pipeline import Reconstructor
from .checks import identity_warning, reject_disagreeing
from .fusion import add_fused_texture
from .result import MultiViewReconstruction
from .views import joint_fit_views, prepare_views


def reconstruct_same_person(run: Reconstructor, photos: list, names: list[str] | None = None,
                            with_texture: bool = True) -> MultiViewReconstruction:
    """One head from several photos of one person (paths or RGB arrays); see :mod:`facerecon.multiview`.
    Raises NoFaceError when no photo gives a face."""
    t0 = time.perf_counter()
    views = prepare_views(run, photos, names)
    t1 = time.perf_counter()
    warnings = [f"{v.source}: {v.reason}; left out" for v in views if v.status in ("skipped", "rejected")]
    warnings += [f"{v.source}: {v.reason}" for v in views if v.usable and v.faces > 1]
    if not any(v.usable for v in views):
        raise NoFaceError("no usable face in any of the photos: " + "; ".join(warnings))
    before = {id(v) for v in views if v.usable}
    reject_disagreeing(run.fitter, views)
    warnings += [f"{v.source}: {v.reason}; left out" for v in views if id(v) in before and not v.usable]
    used = [v for v in views if v.usable]
    if len(used) >= 2:
        message = identity_warning(run.model, used)
        if message:
            warnings.append(message)
        joint = joint_fit_views(run.fitter, used)
        for v, fit in zip(used, joint.fits):
            v.fit = fit
        identity = joint.identity
    else:
        warnings.append(f"only one usable view ({used[0].source}): single-view reconstruction")
        used[0].fit, identity = used[0].solo, used[0].solo.identity
    for v in used:
        v.status = "used"
    t2 = time.perf_counter()
    reference = min(used, key=lambda v: abs(v.fit.angles[0]))
    result = MultiViewReconstruction(run.model, views, identity, views.index(reference),
                                     run.model.shape(identity, reference.fit.expression), warnings=warnings,
                                     timings_ms={"views": (t1 - t0) * 1000, "joint_fit": (t2 - t1) * 1000})
    if with_texture:
        add_fused_texture(result, run.texture_size)
        result.timings_ms["texture"] = (time.perf_counter() - t2) * 1000
    return result
