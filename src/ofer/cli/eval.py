"""``ofer eval``: benchmarks. ``now`` scores a prediction folder; ``co545``, ``rank`` and ``shape`` evaluate
methods (``--method NAME``, repeatable, from :mod:`ofer.methods.registry`) on a protocol folder; ``photos``
evaluates them on real photos without 3D ground truth (:mod:`ofer.evaluation.photos`); ``photodata`` on a
photo-domain folder (``ofer synth photo``) against its pseudo-labels (:mod:`ofer.evaluation.photodata`).

Each benchmark is a sub-command registered by a function in :data:`BENCHMARKS` (name -> function taking
the ``add_subparsers`` object of ``ofer eval``). Every option is validated before any work starts.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..config import require_int
from ..devices import resolve_device
from ..errors import OferError
from ..io.atomic import write_json
from .outputs import output_file, output_folder
from .eval_pictures import register_pictures

# the methods evaluated when no --method is given
DEFAULT_METHODS = {"co545": ("ofer", "prior"), "rank": ("ofer",), "shape": ("ofer", "prior"), "photos": ("ofer", "fit"),
                   "photodata": ("ofer", "fit")}



def load_methods(classes, checkpoints, device) -> list:
    """Load each method class from ``checkpoints``; their table rows must have distinct labels."""
    methods = [cls.from_run(checkpoints, device=device) for cls in classes]
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels):
        raise OferError(f"methods with the same row label: {', '.join(labels)}")
    return methods

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


def _protocol_arguments(parser, samples_default: int, methods: tuple[str, ...],
                        data_help: str = "protocol folder (ofer synth protocol)") -> None:
    parser.add_argument("--data", required=True, type=Path, help=data_help)
    parser.add_argument("--method", action="append", metavar="NAME", default=None,
                        help=f"method to evaluate (repeatable: ofer, prior, regressor, ...; "
                             f"default: {' and '.join(methods)})")
    parser.add_argument("--checkpoints", type=Path, default=None, metavar="RUN",
                        help="run folder of every method (RUN/idgen, RUN/regressor, ...; default: the shipped weights)")
    parser.add_argument("--shapes", type=int, default=100, help="identity samples N per image")
    parser.add_argument("--samples", type=int, default=samples_default, help="expression hypotheses M per image")
    parser.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddim")
    parser.add_argument("--steps", type=int, default=None,
                        help="denoising steps, 1..1000 (default: each method's own; OFER: the steps IdRank was trained on)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first K images")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")


def _reference_argument(parser) -> None:
    parser.add_argument("--reference", type=Path, default=None, metavar="DIR",
                        help="training or held-out data (ofer synth train) whose first ground-truth meshes define "
                             "the distribution of ODE and STD-S (default: seeded draws from the face model's prior "
                             "with the protocol's expression recipe; never the test set itself)")
    parser.add_argument("--reference-samples", type=int, default=None, metavar="R",
                        help="reference meshes used (default 2000: the first 2000 of DIR, or 2000 prior draws)")


def register_co545(sub) -> None:
    parser = sub.add_parser("co545", help="CO-545-style metrics of methods (default: OFER and the random prior)")
    _protocol_arguments(parser, 15, DEFAULT_METHODS["co545"])
    _reference_argument(parser)
    parser.add_argument("-o", "--output", required=True, type=Path, help="report folder (resumable)")
    parser.set_defaults(func=run_co545)


def register_rank(sub) -> None:
    parser = sub.add_parser("rank", help="ranking table: ranked vs oracle vs average identity error, top-k precision")
    _protocol_arguments(parser, 1, DEFAULT_METHODS["rank"])
    _reference_argument(parser)
    parser.add_argument("-o", "--output", type=Path, default=None, help="folder for cached per-image results")
    parser.set_defaults(func=run_rank)


def register_shape(sub) -> None:
    parser = sub.add_parser("shape",
                            help="NoW-style error of the chosen identity against the protocol's neutral meshes")
    _protocol_arguments(parser, 1, DEFAULT_METHODS["shape"])
    parser.add_argument("--metrical", action="store_true")
    parser.set_defaults(func=run_shape)


def register_photos(sub) -> None:
    parser = sub.add_parser(
        "photos", help="real-photo report: identity stability under pasted occluders, expression agreement with "
                       "MediaPipe, hidden-region fidelity (no 3D ground truth)",
        description="Evaluate methods on the main face of each photo, clean and with pasted occluders; writes "
                    "REPORT/report.md, metrics.json and photos.png and prints the tables. An unreadable file or a "
                    "photo without a face is reported in one line and skipped. Exit status: 0 if at least one face "
                    "was evaluated, 1 if none, 2 for invalid options.")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="REPORT", help="report folder")
    parser.add_argument("--manifest", type=Path, default=None, metavar="CSV",
                        help="CSV with columns file, person: identity distances between photos of the same person "
                             "and of different people (rows naming files not given are ignored)")
    parser.add_argument("--occluders", default=None,
                        help="comma-separated occluders among eyes, mouth, hand (default: all three)")
    parser.add_argument("--method", action="append", metavar="NAME", default=None,
                        help=f"method to evaluate (repeatable; default: {' and '.join(DEFAULT_METHODS['photos'])})")
    parser.add_argument("--checkpoints", type=Path, default=None, metavar="RUN",
                        help="run folder of every method (default: the shipped weights)")
    parser.add_argument("--shapes", type=int, default=100, help="identity samples N per photo")
    parser.add_argument("--expressions", type=int, default=16, help="expression hypotheses M per photo")
    parser.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddim")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: each method's own)")
    parser.add_argument("--seed", type=int, default=0, help="seed S (the seed-stability row compares S and S + 1)")
    parser.add_argument("--no-photos", action="store_true",
                        help="figure without photo pixels (renders only), e.g. for the repository")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.set_defaults(func=run_photos)


def register_photodata(sub) -> None:
    parser = sub.add_parser(
        "photodata", help="photo-domain folder (ofer synth photo): identity and expression errors of the occluded "
                          "copies against the clean pictures' pseudo-labels",
        description="Evaluate methods on every occluded record of a photo folder, with the pseudo-labels fitted on "
                    "the clean picture as reference: identity error (face-region RMS after similarity alignment; "
                    "ranked, oracle and average of the identity samples), expression error with the identity "
                    "fixed (SE/CSE on visible, occluded and front vertices), the ranker's share of the "
                    "average-to-oracle gap, per occluder category. Methods that need images (fit) run on the "
                    "occluded picture; the others use its stored embeddings. Writes REPORT/report.md and "
                    "metrics.json (per-record results cached under REPORT/cache: resumable).")
    _protocol_arguments(parser, 15, DEFAULT_METHODS["photodata"], data_help="photo folder (ofer synth photo)")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="REPORT", help="report folder (resumable)")
    parser.set_defaults(func=run_photodata)


# name -> function(subparsers) that adds the sub-command of ``ofer eval``
BENCHMARKS: dict[str, Callable] = {"now": register_now, "co545": register_co545, "rank": register_rank,
                                   "shape": register_shape, "photos": register_photos,
                                   "photodata": register_photodata, "pictures": register_pictures}


def _settings(args: argparse.Namespace):
    """The validated sampling settings (one-line ConfigError naming the option otherwise)."""
    from ..methods.base import ReconstructionSettings

    require_int(args.samples, "--samples", 1, 10_000)
    if args.limit is not None:
        require_int(args.limit, "--limit", 1)
    return ReconstructionSettings(shapes=args.shapes, expressions=args.samples, sampler=args.sampler,
                                  steps=args.steps, seed=args.seed)


def _prepare(args: argparse.Namespace, command: str):
    """Validate everything, then load the protocol and the methods and check them against each other.

    Returns (protocol, methods, settings, model): ``model`` is the face model on the CPU for the metrics.
    """
    from ..evaluation.protocol import check_method, load_protocol
    from ..evaluation.reference import check_reference_folder
    from ..methods import registry

    settings = _settings(args)
    device = resolve_device(args.device)
    classes = [registry.get(name) for name in dict.fromkeys(args.method or DEFAULT_METHODS[command])]
    if getattr(args, "reference_samples", None) is not None:
        require_int(args.reference_samples, "--reference-samples", 2, 1_000_000)
    if getattr(args, "reference", None) is not None:
        check_reference_folder(args.reference)
    protocol = load_protocol(args.data, images=any(cls.needs_images for cls in classes))
    methods = load_methods(classes, args.checkpoints, device)
    for method in methods:
        check_method(protocol, method)
    model = methods[0].face_model
    if model.device.type != "cpu":
        model = copy.deepcopy(model).to("cpu")
    return protocol, methods, settings, model


def _signature(protocol, method, settings, reference) -> dict:
    """Everything that makes a method's per-image numbers (the cache is reused only when it matches)."""
    return {"data": str(protocol.folder.resolve()), "protocol_checksum": protocol.manifest.dataset_checksum(),
            "method": method.name, "label": method.label, "checkpoints": method.checkpoint_record(),
            "settings": settings.to_dict(), "reference": reference.record}


def _evaluate_all(args, protocol, methods, settings, model, cache: Path) -> tuple[dict[str, dict], object]:
    """Per-image rows of every method (label -> arrays) and the reference (of ``args.reference``) they used."""
    from ..evaluation.protocol import evaluate_method
    from ..evaluation.reference import load_reference

    reference = load_reference(model, protocol.manifest, args.reference, args.reference_samples)
    rows = {}
    for method in methods:
        signature = _signature(protocol, method, settings, reference)
        rows[method.label] = evaluate_method(method, protocol, settings, reference.gaussian,
                                             cache / method.label.replace(" ", "_"), args.limit, signature, model)
    return rows, reference


def run_co545(args: argparse.Namespace) -> int:
    from ..evaluation.protocol import ranks, summarise
    from ..evaluation.ranking import ranking_table
    from ..evaluation.report import markdown_table, write_report

    output_folder(args.output)
    protocol, methods, settings, model = _prepare(args, "co545")
    per_image, reference = _evaluate_all(args, protocol, methods, settings, model, args.output / "cache")
    results = {label: summarise(rows) for label, rows in per_image.items()}
    rankings = {label: ranking_table(rows["identity_errors"], rows["scores"])
                for label, rows in per_image.items() if ranks(rows)}
    report_settings = {"data": str(args.data), "checkpoints": str(args.checkpoints) if args.checkpoints else None,
                       "methods": [m.name for m in methods], "shapes": settings.shapes, "samples": settings.expressions,
                       "sampler": settings.sampler, "steps": settings.steps, "seed": settings.seed, "limit": args.limit,
                       "protocol_checksum": protocol.manifest.dataset_checksum()}
    write_report(args.output, results, per_image, rankings, model, report_settings, reference.record)
    print(markdown_table(results))
    print(f"wrote {args.output / 'metrics.json'}, {args.output / 'report.md'} and plots")
    return 0


def _print_ranking(label: str, rows: dict) -> None:
    from ..evaluation.ranking import ranking_table

    table = ranking_table(rows["identity_errors"], rows["scores"])
    n = table["num_candidates"]
    print(f"{label} ranking on {table['num_rows']} images x {n} identity samples "
          "(RMS face-region error of the neutral mesh, mm)")
    print(f"{'selection':<22}{'error':>8}")
    for key, name in (("ranked_error", f"{label}-rank"), ("oracle_error", f"oracle (best of {n})"),
                      ("average_error", "average sample")):
        print(f"{name:<22}{table[key]:8.3f}")
    print(f"{'medoid (no network)':<22}{float(rows['identity_medoid'].mean()):8.3f}")
    print(f"gap closed by ranking: {100 * table['gap_closed']:.1f} %")
    for k in (1, 5, 10):
        if f"precision@{k}" in table:
            print(f"top-{k}: precision {table[f'precision@{k}']:.3f}, IoU {table[f'iou@{k}']:.3f}, "
                  f"error of top-{k} by score {table[f'top{k}_error_by_score']:.3f} "
                  f"vs true top-{k} {table[f'top{k}_error_by_error']:.3f}")


def run_rank(args: argparse.Namespace) -> int:
    from ..evaluation.protocol import ranks

    if args.output:
        output_folder(args.output)
    protocol, methods, settings, model = _prepare(args, "rank")
    with tempfile.TemporaryDirectory(prefix="ofer-rank-") as scratch:
        cache = (args.output or Path(scratch)) / "cache"
        per_image, _ = _evaluate_all(args, protocol, methods, settings, model, cache)
    for method in methods:
        rows = per_image[method.label]
        if not ranks(rows):
            raise OferError(f"method {method.name!r} does not rank its identity samples (one sample or equal scores; "
                            "try --shapes > 1 or --method ofer)")
        _print_ranking(method.label, rows)
    return 0


def run_shape(args: argparse.Namespace) -> int:
    from ..evaluation.now import now_statistics
    from ..evaluation.protocol import ranks
    from ..evaluation.shape import shape_distances

    protocol, methods, settings, model = _prepare(args, "shape")
    rows = {}
    for method in methods:
        distances, scores = shape_distances(method, protocol, settings, model, args.limit, args.metrical)
        rows[f"{method.label}-rank" if ranks({"scores": scores}) else method.label] = now_statistics(distances)
    kind = "metrical" if args.metrical else "non-metrical"
    print(f"NoW-style {kind} error of the chosen identity on {protocol.count(args.limit)} protocol images "
          "(mm, pooled over scan points)")
    print(f"{'method':<16}{'median':>9}{'mean':>9}{'std':>9}")
    for name, stats in rows.items():
        print(f"{name:<16}{stats['median']:9.3f}{stats['mean']:9.3f}{stats['std']:9.3f}")
    return 0


def _photo_methods(args: argparse.Namespace, settings) -> list:
    """The methods of ``ofer eval photos``, loaded and checked (default: those of the defaults registered)."""
    from ..methods import registry

    names = args.method or [n for n in DEFAULT_METHODS["photos"] if n in registry.available()]
    classes = [registry.get(name) for name in dict.fromkeys(names)]
    for cls in classes:
        if not cls.produces_meshes:
            raise OferError(f"method {cls.name!r} does not produce meshes")
    device = resolve_device(args.device)
    methods = load_methods(classes, args.checkpoints, device)
    for method in methods:
        method.validate(settings)
    return methods


def run_photos(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..evaluation.photo_figure import PhotoFigure
    from ..evaluation.photo_occluders import OCCLUDERS, parse_occluders
    from ..evaluation.photo_report import photo_tables, write_photo_report
    from ..evaluation.photos import evaluate_photos, read_manifest
    from ..methods.base import ReconstructionSettings

    occluders = parse_occluders(args.occluders) if args.occluders is not None else OCCLUDERS
    require_int(args.seed, "--seed", 0, 2**63 - 2)
    settings = ReconstructionSettings(shapes=args.shapes, expressions=args.expressions, sampler=args.sampler,
                                      steps=args.steps, seed=args.seed)
    persons = read_manifest(args.manifest) if args.manifest is not None else None
    output_folder(args.output)
    methods = _photo_methods(args, settings)
    figure = PhotoFigure(photos=not args.no_photos)

    def report(message: str) -> None:  # tqdm.write keeps the line apart from the progress bar
        tqdm.write(f"ofer: error: {message}", file=sys.stderr)

    evaluation = evaluate_photos(args.images, methods, settings, occluders, persons, on_error=report, figure=figure)
    if not evaluation.photos:
        report("no face was evaluated (every input was unreadable or showed no face)")
        return 1
    tables = photo_tables(evaluation, occluders, persons is not None)
    record = {"images": [str(p) for p in args.images], "manifest": str(args.manifest) if args.manifest else None,
              "occluders": list(occluders), "methods": [m.name for m in methods],
              "checkpoints": str(args.checkpoints) if args.checkpoints else None, **settings.to_dict()}
    write_photo_report(args.output, evaluation, tables, record)
    figure.save(args.output / "photos.png")
    print("\n\n".join(tables))
    print(f"wrote {args.output / 'report.md'}, {args.output / 'metrics.json'} and {args.output / 'photos.png'}")
    return 0


def run_photodata(args: argparse.Namespace) -> int:
    from ..evaluation.photodata import evaluate_photodata, load_photo_set, summarise, write_photodata_report
    from ..evaluation.protocol import check_method
    from ..methods import registry

    settings = _settings(args)
    device = resolve_device(args.device)
    output_folder(args.output)
    classes = [registry.get(name) for name in dict.fromkeys(args.method or DEFAULT_METHODS["photodata"])]
    for cls in classes:
        if not cls.produces_meshes:
            raise OferError(f"method {cls.name!r} does not produce meshes")
    photos = load_photo_set(args.data, images=any(cls.needs_images for cls in classes))
    methods = load_methods(classes, args.checkpoints, device)
    for method in methods:
        check_method(photos, method)
        method.validate(settings)
    model = methods[0].face_model
    if model.device.type != "cpu":
        model = copy.deepcopy(model).to("cpu")
    checksum = photos.manifest.dataset_checksum()
    results = {}
    for method in methods:
        signature = {"data": str(photos.folder.resolve()), "data_checksum": checksum, "method": method.name,
                     "label": method.label, "checkpoints": method.checkpoint_record(),
                     "settings": settings.to_dict()}
        rows = evaluate_photodata(method, photos, settings, args.output / "cache" / method.label.replace(" ", "_"),
                                  args.limit, signature, model)
        results[method.label] = summarise(rows)
    record = {"data": str(args.data), "checkpoints": str(args.checkpoints) if args.checkpoints else None,
              "methods": [m.name for m in methods], "limit": args.limit, "data_checksum": checksum,
              "generator_version": photos.manifest.generator_version, **settings.to_dict()}
    main_table, categories = write_photodata_report(args.output, results, record)
    print(main_table)
    print()
    print(categories)
    for label, summary in results.items():
        if summary["failed"]:
            print(f"{label}: no face found on {summary['failed']} of {summary['records']} records (left out)")
    print(f"wrote {args.output / 'metrics.json'} and {args.output / 'report.md'}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluation: now, co545, shape, rank, photos, photodata, pictures")
    sub = parser.add_subparsers(dest="eval_command", metavar="BENCHMARK")
    sub.required = True
    for add in BENCHMARKS.values():
        add(sub)


def _row(name: str, count: int, stats: dict) -> str:
    return f"{name:<28} {count:>5} {stats['median']:>10.4f} {stats['mean']:>10.4f} {stats['std']:>10.4f}"


def run_now(args: argparse.Namespace) -> int:
    from ..evaluation.now import evaluate_now, save_now_heatmap

    for path, flag in ((args.json, "--json"), (args.heatmap, "--heatmap")):
        if path:
            output_file(path, flag)
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
        path = write_json(args.json, report.to_dict())
        print(f"wrote {path}")
    if args.heatmap:
        path, item = save_now_heatmap(report, args.heatmap, which=args.heatmap_of)
        print(f"wrote {path} ({item.subject}/{item.challenge}/{item.image})")
    sys.stdout.flush()
    return 0
