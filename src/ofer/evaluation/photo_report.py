"""The real-photo report (``ofer eval photos``): tables (markdown, also printed), ``metrics.json``, ``report.md``.

One table per metric, one row per method. A cell whose mean left photos out says how many entered
it: ``0.41 (n=5 of 7)``; ``n/a``: defined for no photo. ``metrics.json`` writes NaN as ``null``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..io.atomic import write_json, write_text
from . import photo_metrics as P
from .photos import MATCH_IOU, MOUTH_OCCLUDERS, REGION_RADIUS_MM, PhotoEvaluation
from .report import json_ready

__all__ = ["DEFINITIONS", "photo_tables", "write_photo_report"]

DEFINITIONS = f"""\
All measures are ours (no benchmark defines them); each photo is its main face (the detection closest to the
image centre); "hypotheses" are a method's M expression hypotheses on its ranked identity.

- **Identity change** (mm): the ranked identity's neutral mesh on the occluded copy, similarity-aligned
  (Umeyama, scale included) onto the one of the clean photo, RMS over the face-region vertices
  (`front_mask`). `seed` compares the clean photo's ranked identity with seed S and with seed S + 1. The clean
  photo and its copies are reconstructed with the same random numbers (the photo's name is the random key).
- **Same / different person** (mm, with `--manifest`): the mean of the same distance between the clean photos'
  ranked identities over the pairs of photos of one person and of two people (persons `multiple`, `unknown`,
  empty, or photos missing from the manifest are left out); ratio = different / same (higher separates better).
- **Expression agreement** (clean photos; face models with ARKit expression names): per group, the method's
  coefficient averaged over its hypotheses against MediaPipe's blendshape score: Pearson r over the photos
  (n/a for fewer than 3 photos or zero variance) and the mean bias method - MediaPipe. Groups: jawOpen;
  smile = mean of mouthSmileLeft/Right; blink = mean of eyeBlinkLeft/Right; browInnerUp; funnel/pucker =
  mean of mouthFunnel and mouthPucker.
- **Smile kept** (occluders {', '.join(MOUTH_OCCLUDERS)}): over the photos MediaPipe scores as smiling on the
  clean photo (smile group > {P.SMILING}), the fraction of the occluded copy's hypotheses whose smile group is
  > {P.SMILE_KEPT}, averaged over those photos; and on the same clean photos the method's mean smile (mean
  hypothesis) over MediaPipe's mean smile (the share of the smile it sees).
- **Hidden-region fidelity** (inter-ocular distances, IOD = outer eye corners 36-45): each hypothesis of the
  occluded copy is posed by a pose-only fit to the copy's visible landmarks (MediaPipe on the copy, the points
  on the occluder dropped; when MediaPipe finds no face on the copy, the clean photo's landmarks with those
  points dropped: the fallback count), projected, and its 68 iBUG points compared with MediaPipe's on the clean
  photo: the median error over the points under the occluder (hidden) and over the others (visible), for the
  best hypothesis (minimum over hypotheses) / on average over the hypotheses.
- **Spread** (mm): per vertex, the population standard deviation of its x, y, z across the hypotheses, RMS
  over the three coordinates, averaged over the region's vertices (n/a for one hypothesis). Regions: the
  face-region vertices within {REGION_RADIUS_MM:g} mm of the iBUG-68 mouth points (48-67) / eye points (36-47)
  on the face model's neutral mean mesh.

A method that finds no face on a copy, or another face (box IoU < {MATCH_IOU} with the clean photo's
detection), leaves that copy's metrics undefined for the photo ("n=K of N")."""


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _fmt(value: float, fmt: str = "{:.2f}") -> str:
    return fmt.format(value) if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _cell(summary: dict, key: str, total: int, fmt: str = "{:.2f}") -> str:
    stat = summary["means"].get(key)
    if stat is None or stat["n"] == 0:
        return "n/a"
    text = _fmt(stat["mean"], fmt)
    return text if stat["n"] == total else f"{text} (n={stat['n']} of {total})"


def _pair_cell(summary: dict, keys: tuple[str, str], total: int, fmt: str) -> str:
    """``best / average`` of two keys, the count of the first."""
    first, second = (summary["means"].get(k) for k in keys)
    if first is None or first["n"] == 0:
        return "n/a"
    text = f"{_fmt(first['mean'], fmt)} / {_fmt(second['mean'], fmt)}"
    return text if first["n"] == total else f"{text} (n={first['n']} of {total})"


def _markdown(title: str, headers: list[str], rows: dict[str, list[str]]) -> str:
    lines = [f"### {title}", "", "| method | " + " | ".join(headers) + " |", "|" + "---|" * (len(headers) + 1)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows.items()]
    return "\n".join(lines)


def _identity_table(summaries: dict, occluders) -> str:
    copies = [*occluders, "seed"]
    rows = {label: [_cell(s, f"identity_change/{c}", s["faces"]) for c in copies] for label, s in summaries.items()}
    return _markdown("Identity change (mm)", [f"clean → {c}" for c in occluders] + ["seed S → S+1"], rows)


def _pairs_table(summaries: dict) -> str:
    def cells(pairs: dict) -> list[str]:
        return [f"{_fmt(pairs['same'])} ({_count(pairs['same_pairs'], 'pair')})",
                f"{_fmt(pairs['different'])} ({_count(pairs['different_pairs'], 'pair')})", _fmt(pairs["ratio"])]

    rows = {label: cells(s["pairs"]) for label, s in summaries.items()}
    return _markdown("Identity distance between photos (mm)", ["same person", "different people", "ratio"], rows)


def _expression_table(summaries: dict) -> str:
    headers = [f"{g} {k}" for g in P.EXPRESSION_GROUPS for k in ("r", "bias")] + ["photos"]

    def cells(summary: dict) -> list[str]:
        groups = summary["expression"]
        if not groups:
            return ["n/a (no ARKit names)"] * (len(headers) - 1) + ["0"]
        out = [text for g in P.EXPRESSION_GROUPS
               for text in (_fmt(groups[g]["r"]), _fmt(groups[g]["bias"], "{:+.2f}"))]
        return out + [str(next(iter(groups.values()))["n"])]

    rows = {label: cells(s) for label, s in summaries.items()}
    return _markdown("Expression agreement with MediaPipe (clean photos)", headers, rows)


def _smile_table(summaries: dict, occluders) -> str:
    mouths = [o for o in MOUTH_OCCLUDERS if o in occluders]

    def cell(summary: dict, occ: str) -> str:
        if summary["smiling"] == 0:
            return "n/a (no smiling photo)"
        return _cell(summary, f"smile_kept/{occ}", summary["smiling"])

    rows = {label: [_fmt(s.get("smile_share", float("nan"))), *[cell(s, o) for o in mouths]]
            for label, s in summaries.items()}
    smiling = next(iter(summaries.values()))["smiling"]
    return _markdown(f"Smile kept under mouth occluders ({_count(smiling, 'smiling photo')})",
                     ["clean: mean smile / MediaPipe's", *mouths], rows)


def _fidelity_table(summaries: dict, occluders, fallbacks: dict[str, int]) -> str:
    headers = [f"{o} {part} (best / avg)" for o in occluders for part in ("hidden", "visible")]
    rows = {label: [_pair_cell(s, (f"fidelity/{o}/{part}_best", f"fidelity/{o}/{part}_average"), s["faces"], "{:.3f}")
                    for o in occluders for part in ("hidden", "visible")] for label, s in summaries.items()}
    note = ", ".join(f"{o} {fallbacks.get(o, 0)}" for o in occluders)
    return _markdown("Hidden-region fidelity (IOD)", headers, rows) + \
        f"\n\nMediaPipe found no face on the occluded copy (fallback to the clean landmarks): {note}."


def _spread_table(summaries: dict, occluders) -> str:
    copies = ["clean", *occluders]
    rows = {label: [_pair_cell(s, (f"spread/{c}/mouth", f"spread/{c}/eyes"), s["faces"], "{:.2f}") for c in copies]
            for label, s in summaries.items()}
    return _markdown("Spread of the hypotheses (mm, mouth / eyes)", [f"{c} (mouth / eyes)" for c in copies], rows)


def photo_tables(evaluation: PhotoEvaluation, occluders, manifest: bool) -> list[str]:
    """The report's markdown tables (one per metric; the pair table only with a manifest)."""
    summaries = evaluation.summaries
    fallbacks = {o: sum(bool(p["fallback"].get(o)) for p in evaluation.photos) for o in occluders}
    tables = [_identity_table(summaries, occluders), _expression_table(summaries)]
    if manifest:
        tables.insert(1, _pairs_table(summaries))
    if any(o in occluders for o in MOUTH_OCCLUDERS):
        tables.append(_smile_table(summaries, occluders))
    return tables + [_fidelity_table(summaries, occluders, fallbacks), _spread_table(summaries, occluders)]


def write_photo_report(out: Path, evaluation: PhotoEvaluation, tables: list[str], settings: dict,
                       figure: str | None = "photos.png") -> None:
    """``metrics.json`` (settings, photos, per-method summaries and per-photo rows) and ``report.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", json_ready({"settings": settings, "photos": evaluation.photos,
                                                  "methods": evaluation.summaries, "per_photo": evaluation.rows}))
    names = ", ".join(p["name"] for p in evaluation.photos)
    text = ["# Real-photo evaluation (ours)", "", f"{len(evaluation.photos)} photos: {names}.", "",
            f"Settings: `{json.dumps(settings)}`", "", "## Tables", ""]
    for table in tables:
        text += [table, ""]
    text += ["## Definitions", "", DEFINITIONS, ""]
    if figure:
        caption = ("Per photo: its copies; per method: the first hypothesis posed by the landmark fit of each copy "
                   "over it (green / red dots: MediaPipe's clean iBUG-68 points under the occluder / the "
                   "hypothesis's), and the ranked identity.")
        text += ["## Figure", "", caption, "", f"![photos]({figure})", ""]
    write_text(out / "report.md", "\n".join(text))
