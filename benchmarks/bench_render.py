"""Renderer timings: the default head at 224 x 224, OpenGL vs PyTorch rasteriser, batch 1 and 16.

Times are per frame (batch time / batch size), the best of the repeats (the least disturbed by
other processes), after one warm-up call:
rasterisation alone, and the whole MeshRenderer (projection, rasterisation, SH shading,
visibility), without and with a backward pass through the image.

Usage: python benchmarks/bench_render.py [--repeats 7] [--size 224] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def stages(renderer, vertices, faces, cameras, albedo, sh) -> dict:
    """The timed callables of one backend and batch."""
    screen = cameras.transform_points_screen(vertices)

    def rasterise():
        renderer.rasterizer(screen, faces, cameras.image_size)

    def render():
        with torch.no_grad():
            renderer(vertices, faces, cameras, albedo, sh)

    def render_backward():
        leaf = vertices.clone().requires_grad_(True)
        renderer(leaf, faces, cameras, albedo, sh).image.sum().backward()

    return {"rasterise": rasterise, "render": render, "render+backward": render_backward}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import ofer
    from ofer.render import raster_gl
    from ofer.render.cameras import look_at_face
    from ofer.render.raster_torch import TorchRasterizer
    from ofer.render.renderer import MeshRenderer, default_sh, paint_face_model
    from ofer.render.shading import SHShader

    model = ofer.load_face_model("default")
    albedo = paint_face_model(model)
    backends = {"torch": TorchRasterizer()}
    if raster_gl.gl_available():
        backends["gl"] = raster_gl.GLRasterizer()
    else:
        print("gl: headless OpenGL unavailable, skipped")
    print(
        f"default head: {model.num_vertices} vertices, {model.faces.shape[0]} triangles, "
        f"{args.size}x{args.size}, {torch.get_num_threads()} torch threads"
    )
    results = {}
    for batch in (1, 16):
        sample = model.sample_prior(batch, torch.Generator().manual_seed(0), expression=True)
        with torch.no_grad():
            vertices = model(sample.shape, sample.expression).vertices
        cameras = look_at_face(yaw=torch.linspace(-40, 40, batch), image_size=args.size)
        for name, rasterizer in backends.items():
            renderer = MeshRenderer(rasterizer, SHShader())
            for stage, fn in stages(renderer, vertices, model.faces, cameras, albedo, default_sh(batch)).items():
                results[name, batch, stage] = timed(fn, args.repeats) / batch * 1000
                print(f"{name:5s} batch {batch:2d}  {stage:16s} {results[name, batch, stage]:8.2f} ms/frame")
    if "gl" in backends:
        print("ratio torch / gl (per frame):")
        for batch in (1, 16):
            for stage in ("rasterise", "render", "render+backward"):
                ratio = results["torch", batch, stage] / results["gl", batch, stage]
                print(f"  batch {batch:2d}  {stage:16s} {ratio:6.1f}x")


if __name__ == "__main__":
    main()
