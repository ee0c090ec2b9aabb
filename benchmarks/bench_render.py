"""Renders per second of the ICT head, textured and SH-lit, singly and batched; where the time goes.

Usage: python benchmarks/bench_render.py [--size 256] [--batch 32] [--repeats 7]
"""
from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from facerecon.camera import Camera, rotation_from_angles
from facerecon.model import load_model
from facerecon.render import lighting
from facerecon.render.raster import CULL_BACK, rasterize_into
from facerecon.geometry import vertex_normals_into
from facerecon.render.renderer import (geometry_maps_into, project_into, render_batch, render_mesh,
                                       shade_into)


def median_seconds(fn, repeats: int, inner: int) -> float:
    """Median over ``repeats`` of the mean time of ``inner`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - start) / inner)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    model = load_model()
    index, uv, triangles = model.export_topology
    camera = Camera.for_image(args.size, args.size)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    # A spread of poses and lights, as synthetic training data would have.
    poses = [rotation_from_angles(*rng.uniform([-45, -20, -15], [45, 20, 15])) for _ in range(args.batch)]
    verts = np.stack([model.neutral[index] @ r.T + [0, 0, 60] for r in poses]).astype(np.float32)
    sh = np.stack([lighting.random_lighting(rng) for _ in range(args.batch)])
    common = dict(uv=uv, texture=texture, weld=index, background=(0.5, 0.5, 0.5))

    print(f"ICT head: {len(index)} vertices, {len(triangles)} triangles; {args.size}x{args.size}, "
          f"1024^2 texture, SH-lit; {numba.get_num_threads()} numba threads")
    print(f"{'mode':<28}{'ms/render':>10}{'renders/s':>11}")
    for ss in (1, 2):
        render_mesh(verts[0], triangles, camera, sh=sh[0], supersample=ss, **common)  # compile / warm
        counter = iter(range(10**9))
        single = median_seconds(lambda: render_mesh(verts[next(counter) % args.batch], triangles, camera,
                                                    sh=sh[0], supersample=ss, **common),
                                args.repeats, 20)
        render_batch(verts, triangles, camera, sh=sh, supersample=ss, **common)
        batched = median_seconds(lambda: render_batch(verts, triangles, camera, sh=sh, supersample=ss,
                                                      **common), args.repeats, 1) / args.batch
        for mode, seconds in ((f"single, supersample={ss}", single),
                              (f"batch of {args.batch}, supersample={ss}", batched)):
            print(f"{mode:<28}{seconds * 1e3:>10.2f}{1 / seconds:>11.0f}")

    # Stage split of one single render at supersample=1 (the kernels render_mesh runs, in order).
    v, tris, n = verts[0], triangles, len(index)
    normals, xy, z = np.empty_like(v), np.empty((n, 2), np.float32), np.empty(n, np.float32)
    h = w = args.size
    vertex_normals_into(v, tris, index, normals)
    project_into(v, camera.focal, camera.cx, camera.cy, xy, z)

    def raster():
        tri_id, bary = np.full((h, w), -1, np.int32), np.zeros((h, w, 3), np.float32)
        rasterize_into(xy, z, tris, CULL_BACK, tri_id, bary, np.full((h, w), np.inf, np.float32))
        return tri_id, bary

    tri_id, bary = raster()
    color, alpha = np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32)
    stages = {
        "vertex normals + project": lambda: (vertex_normals_into(v, tris, index, normals),
                                             project_into(v, camera.focal, camera.cx, camera.cy, xy, z)),
        "rasterise": raster,
        "shade (texture + SH)": lambda: shade_into(tri_id, bary, tris, normals, uv, texture,
                                                   np.zeros((0, 3), np.float32), sh[0], True, 1, color, alpha),
        "normal / uv maps": lambda: geometry_maps_into(tri_id, bary, tris, normals, uv, np.zeros((h, w, 3), np.float32),
                                                       np.zeros((h, w, 2), np.float32)),
    }
    total = median_seconds(lambda: render_mesh(v, tris, camera, sh=sh[0], **common), args.repeats, 20)
    print(f"\nstage split of one single render (supersample=1), {total * 1e3:.2f} ms in all:")
    spent = 0.0
    for name, fn in stages.items():
        seconds = median_seconds(fn, args.repeats, 20)
        spent += seconds
        print(f"  {name:<26}{seconds * 1e3:>7.2f} ms {100 * seconds / total:>5.0f}%")
    rest = total - spent
    print(f"  {'clear, composite, python':<26}{rest * 1e3:>7.2f} ms {100 * rest / total:>5.0f}%")
    print(f"  pixels covered: {np.mean(tri_id >= 0):.0%}")


if __name__ == "__main__":
    main()
