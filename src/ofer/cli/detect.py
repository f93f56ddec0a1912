"""``ofer detect IMAGE...``: the faces SCRFD finds in each image (box, score, 5 points), main face marked.

An image that cannot be read or has no face gets one line ``ofer: error: PATH: ...`` on stderr; the
other images are still processed, and the command exits with 1 when any image failed.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import InputError
from ..frontend import FaceDetector, load_image, main_face
from ..io.atomic import write_text
from .outputs import output_file

CHUNK = 8  # images read and detected together


def register(subparsers) -> None:
    parser = subparsers.add_parser("detect", help="find faces (box, score, 5 keypoints) in images")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG/PNG files")
    parser.add_argument("--json", metavar="OUT", help="also write the detections as JSON")
    parser.add_argument("--threshold", type=float, default=0.5, help="detection score threshold (default 0.5)")
    parser.set_defaults(func=run_detect)


def _fmt_point(point) -> str:
    return f"({point[0]:.1f}, {point[1]:.1f})"


def run_detect(args: argparse.Namespace) -> int:
    if args.json:
        output_file(args.json, "--json")
    detector = FaceDetector(score_threshold=args.threshold)
    records, failed = [], 0
    for start in range(0, len(args.images), CHUNK):
        chunk = args.images[start : start + CHUNK]
        images, errors = {}, {}
        for index, path in enumerate(chunk):
            try:
                images[index] = load_image(path)
            except InputError as exc:
                errors[index] = str(exc)
        found = dict(zip(images, detector.detect_batch(list(images.values()))))
        for index, path in enumerate(chunk):
            if index in errors:
                print(f"ofer: error: {errors[index]}", file=sys.stderr)
                records.append({"path": str(path), "error": errors[index], "faces": [], "main": None})
                failed += 1
                continue
            image, detections = images[index], found[index]
            height, width = image.shape[:2]
            main = main_face(detections, image.shape)
            record = {
                "path": str(path),
                "width": width,
                "height": height,
                "faces": [d.to_dict() for d in detections],
                "main": main,
            }
            if main is None:
                record["error"] = f"{path}: no face found"
                print(f"ofer: error: {record['error']}", file=sys.stderr)
                failed += 1
            else:
                plural = "s" if len(detections) > 1 else ""
                print(f"{path}: {len(detections)} face{plural} ({width}x{height}), main face {main}")
                for k, det in enumerate(detections):
                    mark = "*" if k == main else " "
                    box = ", ".join(f"{v:.1f}" for v in det.box)
                    points = " ".join(_fmt_point(p) for p in det.keypoints)
                    print(f"  {mark}{k:>3d}  score {det.score:.3f}  box [{box}]  points {points}")
            records.append(record)
    if args.json:
        write_text(args.json, detections_json({"detector": detector.name, "threshold": args.threshold}, records))
        print(f"wrote {args.json}")
    return 1 if failed else 0


def detections_json(head: dict, records: list[dict]) -> str:
    """``{**head, "images": records}`` as JSON text with one line per image."""
    lines = ",\n".join(json.dumps(record) for record in records)
    return json.dumps(head)[:-1] + ', "images": [\n' + lines + "\n]}\n"
