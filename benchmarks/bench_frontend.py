"""Front-end timings on the shared photos: loading, detection, alignment, ArcFace, appearance, MediaPipe.

Usage: python benchmarks/bench_frontend.py [--repeats 3] [--encoders mediapipe,dinov2,efficientnet]
(needs ../shared/assets/faces or $OFER_SHARED). Per-face figures are over the main face of each photo.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs (after the first, warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encoders", default="mediapipe,dinov2,efficientnet")
    args = parser.parse_args()

    from ofer.frontend import (
        align_arcface,
        crop_appearance,
        default_detector,
        default_encoder,
        default_landmarker,
        get_encoder,
        get_frontend,
        load_image,
        main_face,
    )
    from ofer.frontend._onnx import num_threads
    from ofer.paths import shared_dir

    shared = shared_dir()
    if shared is None:
        sys.exit("bench_frontend: ../shared/assets/faces not found (set OFER_SHARED)")
    paths = sorted(p for p in (shared / "assets" / "faces").iterdir() if p.suffix.lower() in (".jpg", ".png"))
    print(f"{len(paths)} photos, ONNX Runtime threads: {num_threads()}")

    t = time.perf_counter()
    images = [load_image(p) for p in paths]
    load_s = (time.perf_counter() - t) / len(paths)
    megapixels = np.mean([im.shape[0] * im.shape[1] for im in images]) / 1e6

    detector = default_detector()
    t = time.perf_counter()
    detector.detect(images[0])
    cold_detect = time.perf_counter() - t
    single = timed(lambda: [detector.detect(im) for im in images], args.repeats) / len(images)
    batch = timed(lambda: detector.detect_batch(images), args.repeats) / len(images)
    found = detector.detect_batch(images)
    faces = [(im, dets[main_face(dets, im.shape)]) for im, dets in zip(images, found) if dets]
    n_faces = sum(len(d) for d in found)

    align = timed(lambda: [align_arcface(im, d.keypoints) for im, d in faces], args.repeats) / len(faces)
    crop = timed(lambda: [crop_appearance(im, d.box) for im, d in faces], args.repeats) / len(faces)
    arc_crops = np.stack([align_arcface(im, d.keypoints) for im, d in faces])
    app_crops = np.stack([crop_appearance(im, d.box) for im, d in faces])

    arcface = default_encoder("identity")
    t = time.perf_counter()
    arcface.embed(arc_crops[:1])
    cold_arc = time.perf_counter() - t
    arc_batch = timed(lambda: arcface.embed(arc_crops), args.repeats) / len(faces)
    arc_single = timed(lambda: [arcface.embed(c[None]) for c in arc_crops], args.repeats) / len(faces)

    landmarker = default_landmarker()
    t = time.perf_counter()
    landmarker.detect(app_crops[0])
    cold_mp = time.perf_counter() - t
    mp_image = timed(lambda: landmarker.detect_batch(images), args.repeats) / len(images)
    mp_crop = timed(lambda: landmarker.detect_batch(list(app_crops)), args.repeats) / len(faces)

    print(f"\nper image (mean {megapixels:.2f} Mpx; {n_faces} faces in {len(images)} photos)")
    print(f"  load_image                       {load_s * 1000:7.1f} ms")
    print(
        f"  SCRFD detect, one at a time      {single * 1000:7.1f} ms   (first call incl. session: {cold_detect * 1000:.0f} ms)"
    )
    print(f"  SCRFD detect_batch               {batch * 1000:7.1f} ms")
    print(
        f"  MediaPipe landmarker, full image {mp_image * 1000:7.1f} ms   (first call incl. graph: {cold_mp * 1000:.0f} ms)"
    )
    print(f"\nper face ({len(faces)} main faces)")
    print(f"  align_arcface (112)              {align * 1000:7.2f} ms")
    print(f"  crop_appearance (224)            {crop * 1000:7.2f} ms")
    print(
        f"  ArcFace, batch of {len(faces):<3d}            {arc_batch * 1000:7.1f} ms   (first call incl. session: {cold_arc * 1000:.0f} ms)"
    )
    print(f"  ArcFace, one at a time           {arc_single * 1000:7.1f} ms")
    print(f"  MediaPipe landmarker on the crop {mp_crop * 1000:7.1f} ms")
    for key in args.encoders.split(","):
        encoder = get_encoder(key)
        t = time.perf_counter()
        encoder.embed(app_crops[:1])
        cold = time.perf_counter() - t
        per_face = timed(lambda enc=encoder: enc.embed(app_crops), args.repeats) / len(faces)
        print(
            f"  appearance {encoder.name:32s} {per_face * 1000:7.1f} ms   (dim {encoder.dim}; first call incl. load: {cold * 1000:.0f} ms)"
        )
    frontend = get_frontend()
    main = [frontend.face(im, d) for im, d in faces]
    embed = timed(lambda: frontend.embed(main), args.repeats) / len(faces)
    print(f"  FrontEnd.embed, both encoders    {embed * 1000:7.1f} ms   (one crop at a time)")
    total = batch * len(images) / len(faces) + align + crop + embed
    print(f"\nfull pipeline per photo (detect_batch + crops + FrontEnd.embed, default encoders): {total * 1000:.0f} ms")


if __name__ == "__main__":
    main()
