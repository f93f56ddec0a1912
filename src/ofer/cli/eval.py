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


def _protocol_arguments(parser, samples_default: int) -> None:
    parser.add_argument("--data", required=True, type=Path, help="protocol folder (ofer synth protocol)")
    parser.add_argument("--checkpoints", type=Path, default=None, help="run folder (default: the shipped weights)")
    parser.add_argument("--shapes", type=int, default=100, help="identity samples N per image")
    parser.add_argument("--samples", type=int, default=samples_default, help="expression hypotheses M per image")
    parser.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddim")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first K images")


def register_co545(sub) -> None:
    parser = sub.add_parser("co545", help="CO-545-style metrics of OFER and the random prior on a protocol folder")
    _protocol_arguments(parser, 15)
    parser.add_argument("-o", "--output", required=True, type=Path, help="report folder (resumable)")
    parser.add_argument("--regressor", type=Path, default=None, help="also evaluate a regressor run (ofer train regressor)")
    parser.set_defaults(func=run_co545)


def register_rank(sub) -> None:
    parser = sub.add_parser("rank", help="ranking table: ranked vs oracle vs average identity error, top-k precision")
    _protocol_arguments(parser, 1)
    parser.add_argument("-o", "--output", type=Path, default=None, help="folder for cached per-image results")
    parser.set_defaults(func=run_rank)


def register_shape(sub) -> None:
    parser = sub.add_parser("shape", help="NoW-style error of the ranked identity against the protocol's neutral meshes")
    _protocol_arguments(parser, 1)
    parser.add_argument("--metrical", action="store_true")
    parser.set_defaults(func=run_shape)


# name -> function(subparsers) that adds the sub-command of ``ofer eval``
BENCHMARKS: dict[str, Callable] = {"now": register_now, "co545": register_co545, "rank": register_rank,
                                   "shape": register_shape}


def _pipeline(args):
    from ..pipeline.ofer import OFER
    from ..weights import default_run

    return OFER.from_checkpoints(args.checkpoints or default_run())


def _check_protocol_encoders(pipe, manifest, folder) -> None:
    from ..training.checkpoint import check_encoders

    check_encoders(pipe.expgen.config, manifest.encoders, pipe.run)
    if manifest.face_model.get("spec") != pipe.face_model.spec:
        from ..errors import CheckpointError

        raise CheckpointError(f"{folder} was made with face model {manifest.face_model.get('spec')!r}, "
                              f"the checkpoints use {pipe.face_model.spec!r}")


def run_co545(args: argparse.Namespace) -> int:
    from ..evaluation import protocol as P

    manifest, data = P.load_protocol(args.data)
    pipe = _pipeline(args)
    _check_protocol_encoders(pipe, manifest, args.data)
    model = pipe.face_model
    gaussian = P.reference_gaussian(model, data)
    methods = {
        "OFER": P.ofer_method(pipe, args.shapes, args.samples, args.sampler, args.steps, args.seed),
        "random prior": P.prior_method(model, args.shapes, args.samples, args.seed),
    }
    if args.regressor:
        from ..baselines.regressor import regressor_method

        methods["regressor"] = regressor_method(args.regressor, model, args.shapes)
    settings = {"data": str(args.data), "checkpoints": str(pipe.run), "shapes": args.shapes, "samples": args.samples,
                "sampler": args.sampler, "steps": args.steps, "seed": args.seed, "limit": args.limit,
                "protocol_checksum": manifest.dataset_checksum()}
    per_image = {name: P.run_method(name, fn, model, data, gaussian, args.output / "cache", args.limit,
                                    signature=dict(settings, method=name))
                 for name, fn in methods.items()}
    results = {name: P.summarise(rows) for name, rows in per_image.items()}
    P.write_report(args.output, results, per_image, model, settings)
    print(P.markdown_table(results))
    print(f"wrote {args.output / 'metrics.json'}, {args.output / 'report.md'} and plots")
    return 0


def run_rank(args: argparse.Namespace) -> int:
    import tempfile

    from ..evaluation import protocol as P
    from ..evaluation.metrics import ranking_table

    manifest, data = P.load_protocol(args.data)
    pipe = _pipeline(args)
    _check_protocol_encoders(pipe, manifest, args.data)
    gaussian = P.reference_gaussian(pipe.face_model, data)
    cache = args.output or Path(tempfile.mkdtemp(prefix="ofer-rank-"))
    signature = {"data": str(args.data), "checkpoints": str(pipe.run), "shapes": args.shapes, "samples": args.samples,
                 "sampler": args.sampler, "steps": args.steps, "seed": args.seed, "limit": args.limit,
                 "protocol_checksum": manifest.dataset_checksum(), "method": "OFER"}
    rows = P.run_method("OFER", P.ofer_method(pipe, args.shapes, args.samples, args.sampler, args.steps, args.seed),
                        pipe.face_model, data, gaussian, cache / "cache", args.limit, signature=signature)
    table = ranking_table(rows["identity_errors"], rows["scores"])
    n = table["num_candidates"]
    print(f"IdRank on {table['num_rows']} images x {n} IdGen samples (RMS face-region error of the neutral mesh, mm)")
    print(f"{'selection':<22}{'error':>8}")
    for key, label in (("ranked_error", "OFER-rank"), ("oracle_error", f"oracle (best of {n})"),
                       ("average_error", "average sample")):
        print(f"{label:<22}{table[key]:8.3f}")
    print(f"{'medoid (no network)':<22}{float(rows['identity_medoid'].mean()):8.3f}")
    print(f"gap closed by ranking: {100 * table['gap_closed']:.1f} %")
    for k in (1, 5, 10):
        if f"precision@{k}" in table:
            print(f"top-{k}: precision {table[f'precision@{k}']:.3f}, IoU {table[f'iou@{k}']:.3f}, "
                  f"error of top-{k} by score {table[f'top{k}_error_by_score']:.3f} vs true top-{k} {table[f'top{k}_error_by_error']:.3f}")
    return 0


def run_shape(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from ..evaluation import protocol as P
    from ..evaluation.now import now_error, now_statistics
    from ..pipeline.ofer import ReconstructionSettings

    manifest, data = P.load_protocol(args.data)
    pipe = _pipeline(args)
    _check_protocol_encoders(pipe, manifest, args.data)
    model = pipe.face_model
    count = len(data["shape"]) if args.limit is None else min(args.limit, len(data["shape"]))
    faces = model.faces.numpy()
    settings = ReconstructionSettings(args.shapes, 1, args.sampler, args.steps, args.seed)
    distances, prior_distances = [], []
    generator = torch.Generator().manual_seed(args.seed)
    for start in tqdm(range(0, count, P.CHUNK), desc="eval shape", file=sys.stderr):
        index = np.arange(start, min(start + P.CHUNK, count))
        recs = pipe.reconstruct_embeddings(data["arcface"][index], data["appearance"][index], settings,
                                           [str(i) for i in index])
        with torch.no_grad():
            gt = model(torch.from_numpy(data["shape"][index]))
            prior = model(model.sample_prior(len(index), generator).shape)
        for k, rec in enumerate(recs):
            gt_v, gt_l = gt.vertices[k].numpy() * 1000, gt.landmarks7[k].numpy() * 1000
            result = now_error(rec.identity_vertices * 1000, faces, rec.kpt7 * 1000, gt_v, gt_l, faces, metrical=args.metrical)
            distances.append(result.distances)
            base = now_error(prior.vertices[k].numpy() * 1000, faces, prior.landmarks7[k].numpy() * 1000, gt_v, gt_l,
                             faces, metrical=args.metrical)
            prior_distances.append(base.distances)
    kind = "metrical" if args.metrical else "non-metrical"
    print(f"NoW-style {kind} error of the ranked identity on {count} protocol images (mm, pooled over scan points)")
    print(f"{'method':<16}{'median':>9}{'mean':>9}{'std':>9}")
    for name, d in (("OFER-rank", distances), ("random prior", prior_distances)):
        stats = now_statistics(d)
        print(f"{name:<16}{stats['median']:9.3f}{stats['mean']:9.3f}{stats['std']:9.3f}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluation: now, co545, shape, rank")
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
