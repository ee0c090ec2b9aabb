"""Several photos of one person -> one head: a joint fit and a fused texture.

1. Every photo (:mod:`.views`): detect, place the Face Mesh landmarks and fit it alone
   (``Fitter.fit``). Photos that are pixel-for-pixel duplicates, show no face or whose landmarks fit
   badly are left out; of several faces in one photo, the one whose identity is closest to the other
   photos' is taken.
2. Joint fit (``Fitter.fit_views``, the solver a single photo uses too): one identity shared by all
   views, a rotation, translation and expression per view. Every view's jaw and cheek contour slides
   to that view's silhouette, so a side view's contour constrains the depth (nose and chin profile)
   a frontal view cannot see. Views are weighted by landmark confidence: Face Mesh gives none, so it
   comes from its measured error at the view's yaw and from the view's own residual.
3. View checks (:mod:`.checks`): a view that disagrees with the others (another person, landmarks on
   the wrong features) fits worse with the others' identity than with its own (leave-one-out): the
   worst such view is left out and the rest tested again. Independently, a warning says when reliable
   views' single-view identities are far apart (probably not one person). Both only catch clear
   disagreement: 2D landmarks carry little identity.
4. One texture (:mod:`.fusion`, ``texture.fuse_textures``): every view sampled with its own pose and
   expression, exposure-matched and blended per texel by how head-on each view sees it.

The result and its files: :mod:`.result`; ``facerecon reconstruct --same-person``: :mod:`.command`.
"""
from __future__ import annotations

from .command import expand_photos, same_person_command
from .reconstruct import reconstruct_same_person
from .result import MultiViewReconstruction
from .views import View, joint_fit_views, prepare_views

__all__ = ["MultiViewReconstruction", "View", "expand_photos", "joint_fit_views", "prepare_views",
           "reconstruct_same_person", "same_person_command"]
