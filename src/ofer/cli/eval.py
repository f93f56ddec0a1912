"""``ofer eval``: benchmarks. ``ofer eval now`` computes the NoW-style shape error of a prediction folder.

Each benchmark is a sub-command registered by a function in :data:`BENCHMARKS` (name -> function taking
the ``add_subparsers`` object of ``ofer eval``); add ``co545``, ``shape``, ``rank`` there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable


def register_now(sub) -> None:
    parser = sub.add_parser(
        "now",
        help="NoW-style shape error (scan-to-mesh, mm) of predicted meshes against ground-truth scans",
        description=(
            "Predictions: PRED/<subject>/<challenge>/<image>.ply|.obj with <image>.npy|.txt (7x3 NoW landmarks) "
            "beside each. Ground truth: GT/scans/<subject>.obj|.ply (or GT/<subject>.obj|.ply) with "
            "GT/scans_lmks/<subject>.npy|.txt|.pp or <subject>_lmks.npy|.txt beside the scan; the official "
            "layout (GT/scans/<subject>/*.obj, GT/scans_lmks_onlypp/<subject>/*.pp) works too. Meshes in metres "
            "or millimetres; results in mm, statistics pooled over all scan points."
        ),
    )
    parser.add_argument("--pred", required=True, help="folder of predictions (PRED/<subject>/<challenge>/<image>.*)")
    parser.add_argument("--gt", required=True, help="folder of ground-truth scans and their landmarks")
    parser.add_argument("--metrical", action="store_true", help="rigid alignment (scale fixed): metrical error")
    parser.add_argument("--units", choices=("auto", "m", "mm"), default="auto", help="units of the predicted meshes")
    parser.add_argument("--gt-units", choices=("auto", "m", "mm"), default="auto", help="units of the scans")
    parser.add_argument("--json", metavar="OUT", help="write the results (overall, per challenge, per image) as JSON")
    parser.add_argument("--heatmap", metavar="PNG", help="draw the per-vertex error of one prediction")
    parser.add_argument("--heatmap-of", choices=("worst", "first"), default="worst", help="which prediction to draw")
    parser.set_defaults(func=run_now)


# name -> function(subparsers) that adds the sub-command of ``ofer eval``
BENCHMARKS: dict[str, Callable] = {"now": register_now}


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluation benchmarks (now)")
    sub = parser.add_subparsers(dest="eval_command", metavar="BENCHMARK")
    sub.required = True
    for add in BENCHMARKS.values():
        add(sub)


def _row(name: str, count: int, stats: dict) -> str:
    return f"{name:<28} {count:>5} {stats['median']:>10.4f} {stats['mean']:>10.4f} {stats['std']:>10.4f}"


def run_now(args: argparse.Namespace) -> int:
    from ..evaluation.now import evaluate_now, save_now_heatmap

    report = evaluate_now(
        args.pred, args.gt, metrical=args.metrical, pred_units=args.units, gt_units=args.gt_units, progress=None
    )
    kind = "metrical (rigid alignment)" if args.metrical else "non-metrical (similarity alignment)"
    subjects = len({i.subject for i in report.items})
    print(f"NoW shape error, {kind}: {len(report.items)} predictions of {subjects} subject(s), distances in mm")
    print(f"{'challenge':<28} {'n':>5} {'median':>10} {'mean':>10} {'std':>10}")
    for name, stats in report.per_challenge().items():
        print(_row(name, stats["predictions"], stats))
    print(_row("all", len(report.items), report.overall()))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.to_dict(), indent=2))
        print(f"wrote {path}")
    if args.heatmap:
        path, item = save_now_heatmap(report, args.heatmap, which=args.heatmap_of)
        print(f"wrote {path} ({item.subject}/{item.challenge}/{item.image})")
    sys.stdout.flush()
    return 0
