"""``ofer eval pictures RUN [RUN ...] --data DIR -o REPORT``: FOCUS runs on a photo folder with exact masks.

Each RUN (``ofer train focus``, any variant) gives a row labelled by its variant, and a segmenting run
also its "Pretrained" row (R and S before EM) with the M_pre study. Writes REPORT/report.md,
metrics.json and pictures.png (occluded inputs, renderings, predicted and true visible faces).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..config import require_int
from ..devices import resolve_device
from ..errors import InputError
from ..io.atomic import save_picture, write_json, write_text
from .outputs import output_folder

MAIN_COLUMNS = (("F1 occluded (± std)", None), ("F1 of 'all face'", "f1_all_face"), ("ACC", "acc"), ("PPV", "ppv"),
                ("TPR", "tpr"),
                ("F1 unoccluded", None), ("RMSE (0-255)", "rmse"), ("identity (mm)", "identity"),
                ("expression vis (mm)", "expression_vis"))


def register_pictures(sub) -> None:
    parser = sub.add_parser(
        "pictures", help="FOCUS runs on a photo folder: segmentation F1/ACC/PPV/TPR, image-fit RMSE, 3D error",
        description="Evaluate FOCUS runs (ofer train focus, any variant) on every record of a photo folder "
                    "(ofer synth photo), whose occluder masks are exact: the predicted visible-face mask against "
                    "the face silhouette minus the occluder, inside the predicted rendered region (per image, "
                    "then averaged); the RMSE of the rendering inside the true visible face (0-255); the neutral "
                    "and expressive meshes against the pseudo-labels; per occluder group.")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="FOCUS run folder(s)")
    parser.add_argument("--data", required=True, type=Path, help="photo folder (ofer synth photo)")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="REPORT", help="report folder")
    parser.add_argument("--limit", type=int, default=None, help="first K records only")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.set_defaults(func=run_pictures)


def _cell(stats: dict, key: str) -> str:
    value = stats.get(key, float("nan"))
    return "n/a" if not np.isfinite(value) else (f"{value:.2f}" if key in ("rmse", "identity", "expression_vis")
                                                 else f"{value:.3f}")


def tables(results: dict[str, dict]) -> str:
    """The main table, the F1-per-group table and the M_pre study, in markdown."""
    head = "| method | " + " | ".join(c for c, _ in MAIN_COLUMNS) + " |\n|---|" + "---|" * len(MAIN_COLUMNS) + "\n"
    lines = []
    for label, s in results.items():
        occ, unocc = s["occluded"], s["unoccluded"]
        f1 = "n/a" if not np.isfinite(occ["f1"]) else f"{occ['f1']:.3f} ± {occ['f1_std']:.3f}"
        cells = [f1, *(_cell(occ, k) for k in ("f1_all_face", "acc", "ppv", "tpr")), _cell(unocc, "f1"),
                 _cell(s["all"], "rmse"), _cell(s["all"], "identity"), _cell(s["all"], "expression_vis")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    groups = list(dict.fromkeys(g for s in results.values() for g in s["groups"]))
    group_head = "| method | " + " | ".join(groups) + " |\n|---|" + "---|" * len(groups) + "\n"
    group_lines = [f"| {label} | " + " | ".join(_cell(s["groups"].get(g, {}), "f1") for g in groups) + " |"
                   for label, s in results.items()]
    study = [(label, s) for label, s in results.items() if any(k.startswith("mpre_f1_") for k in s["all"])]
    text = head + "\n".join(lines) + "\n\nF1 per occluder group (records: " + ", ".join(
        f"{g} {next(iter(results.values()))['groups'].get(g, {}).get('count', 0)}" for g in groups) + ")\n\n"
    text += group_head + "\n".join(group_lines) + "\n"
    if study:
        keys = sorted((k for k in study[0][1]["all"] if k.startswith("mpre_f1_")), key=lambda k: float(k[8:]))
        text += "\nM_pre of the Pretrained R, F1 on occluded records by threshold xi\n\n| R | " + " | ".join(
            f"xi = {k[8:]}" for k in keys) + " |\n|---|" + "---|" * len(keys) + "\n"
        text += "\n".join(f"| {label} | " + " | ".join(_cell(s["occluded"], k) for k in keys) + " |"
                          for label, s in study) + "\n"
    return text


def paired_table(paired: dict[str, dict]) -> str:
    """The paired clean / occluded identity errors (A.11.6.4), or nothing without clean pictures."""
    if not paired:
        return ""
    lines = [f"| {label} | {t['clean']:.2f} | {t['occluded']:.2f} | {t['occluded'] - t['clean']:+.2f} | "
             f"{t['t']:.2f} | {t['p']:.2g} | {t['count']} |" for label, t in paired.items()]
    return ("\nIdentity error on the same scene, clean vs occluded picture (occluded records, paired t-test)\n\n"
            "| method | clean (mm) | occluded (mm) | gap | t | p | records |\n|---|---|---|---|---|---|---|\n"
            + "\n".join(lines) + "\n")


def figure(methods, data: dict, count: int = 6) -> np.ndarray:
    """Rows of occluded records: input, then per method its rendering and predicted mask, then the truth."""
    import torch

    from ..evaluation.pictures import _resize

    picks = np.flatnonzero(data["group"] != "unoccluded")[:count]
    size = 96
    rows = []
    for i in picks:
        tiles = [_resize(data["image"][i : i + 1], size)[0]]
        for _, method, _ in methods:
            crop = torch.from_numpy(_resize(data["image"][i : i + 1], method.model.config.image_size))
            _, rendering, mask = method.encode(crop.permute(0, 3, 1, 2).float().div(255).to(method.device))
            image = (rendering.image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
            shown = mask if method.model.config.segments else rendering.region
            tiles += [_resize(image[None], size)[0],
                      np.repeat(_resize((shown[0, 0].cpu().numpy() >= 0.5).astype(np.uint8)[None] * 255, size,
                                        nearest=True)[0][..., None], 3, -1)]
        truth = _resize(data["visible"][i : i + 1].astype(np.uint8) * 255, size, nearest=True)[0]
        tiles.append(np.repeat(truth[..., None], 3, -1))
        rows.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], 1))
    return np.concatenate(rows, 0) if rows else np.zeros((size, size, 3), np.uint8)


def run_pictures(args: argparse.Namespace) -> int:
    from ..evaluation.pictures import (clean_occluded_tests, evaluate_method, load_pictures_folder, misfit_tests,
                                       run_rows, summarise)

    if args.limit is not None:
        require_int(args.limit, "--limit", 1)
    device = resolve_device(args.device)
    output_folder(args.output)
    methods = [row for run in args.runs for row in run_rows(run, device)]
    labels = [label for label, _, _ in methods]
    if len(set(labels)) != len(labels):
        raise InputError(f"two runs give the same row ({', '.join(labels)}): evaluate runs of different variants")
    data = load_pictures_folder(args.data, args.limit)
    per_record = {label: evaluate_method(method, data, study) for label, method, study in methods}
    results = {label: summarise(rows, data["group"]) for label, rows in per_record.items()}
    tests, paired = misfit_tests(per_record), clean_occluded_tests(per_record, data["group"])
    text = tables(results) + paired_table(paired)
    for label, test in tests.items():
        text += f"\nMisfit prior ({label} vs {label}-MP, paired t-test over records): " + "; ".join(
            f"{key} {t['without']:.3f} -> {t['with']:.3f} mm (t = {t['t']:.2f}, p = {t['p']:.2g}, n = {t['count']})"
            for key, t in test.items()) + "\n"
    record = {"data": str(args.data), "runs": [str(r) for r in args.runs], "limit": args.limit,
              "records": int(len(data["group"]))}
    write_json(args.output / "metrics.json", {"settings": record, "results": results, "misfit_tests": tests,
                                              "clean_occluded": paired})
    write_text(args.output / "report.md", "# FOCUS on pictures with exact masks\n\n" + text + "\n"
               "Figure pictures.png: per row an occluded record, then each method's rendering and predicted "
               "visible face (" + ", ".join(labels) + "), then the true visible face.\n")
    save_picture(args.output / "pictures.png", figure(methods, data))
    print(text)
    print(f"wrote {args.output / 'report.md'}, metrics.json and pictures.png")
    return 0


__all__ = ["paired_table", "register_pictures", "run_pictures", "tables"]
