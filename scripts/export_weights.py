"""Copy a training run's networks into a shippable folder: weights in float16, no optimiser state.

Usage: python scripts/export_weights.py RUN OUT [--restamp]
       python scripts/export_weights.py FOCUS_RUN OUT --focus

OUT gets idgen/, idrank/, expgen/ with last.pt + config.json; with ``--focus`` instead focus/ (R, S) and,
if the run has one, focus-misfit/ (E_MP only, without R_syn). ``--restamp`` replaces each config's
face-model record by the current one of the same face model (same spec and dimensions) — used once
to add the fingerprint to weights trained before checkpoints carried one; the weights are unchanged.
"""

import argparse
import shutil
from pathlib import Path

from ofer.facemodels import load_face_model_from_record
from ofer.runs import CONFIG_FILE, FACE_MODEL_KEYS, load_checkpoint, save_checkpoint

NETWORKS = ("idgen", "idrank", "expgen")  # the regressor baseline is not shipped


def export(run: Path, out: Path, restamp: bool = False) -> None:
    for network in NETWORKS:
        checkpoint = load_checkpoint(run / network, network)
        config, payload = checkpoint.config, checkpoint.payload
        if restamp:
            info = load_face_model_from_record(config.face_model).info().to_dict()
            if any(info.get(k) != config.face_model.get(k) for k in FACE_MODEL_KEYS):
                raise SystemExit(f"{checkpoint.path}: face model dimensions differ from {info['spec']!r}; not restamped")
            config = config.replace(face_model=info)
        weights = {k: v.half() if v.is_floating_point() else v for k, v in payload["model"].items()}
        target = out / network
        if target.resolve() == checkpoint.folder.resolve():
            raise SystemExit("OUT must differ from RUN")
        target.mkdir(parents=True, exist_ok=True)
        save_checkpoint(target, config, {"model": weights, "epoch": payload["epoch"]})
        if (run / network / "log.jsonl").is_file():
            shutil.copy(run / network / "log.jsonl", target / "log.jsonl")
        size = (target / "last.pt").stat().st_size / 2**20
        print(f"{network}: epoch {payload['epoch']}, {size:.1f} MiB -> {target / 'last.pt'} ({CONFIG_FILE} beside)")


def export_focus(run: Path, out: Path) -> None:
    """FOCUS's R and S (float16) and its misfit prior E_MP (float32, no R_syn) into OUT."""
    checkpoint = load_checkpoint(run / "focus", "focus")
    weights = {k: v.half() if v.is_floating_point() and not k.startswith("misfit") else v
               for k, v in checkpoint.payload["model"].items()}
    parts = [("focus", checkpoint.config, {"model": weights, "stage": checkpoint.payload["stage"],
                                           "step": checkpoint.payload["step"]})]
    if (run / "focus-misfit" / "last.pt").is_file():
        misfit = load_checkpoint(run / "focus-misfit", "focus-misfit")
        parts.append(("focus-misfit", misfit.config, {"model": {}, "step": misfit.payload["step"],
                                                      "misfit_neutral": misfit.payload["misfit_neutral"],
                                                      "misfit_expression": misfit.payload["misfit_expression"]}))
    for network, config, state in parts:
        target = out / network
        target.mkdir(parents=True, exist_ok=True)
        save_checkpoint(target, config, state)
        for name in ("log.jsonl", "misfit.png"):
            if (run / network / name).is_file():
                shutil.copy(run / network / name, target / name)
        print(f"{network}: {(target / 'last.pt').stat().st_size / 2**20:.1f} MiB -> {target / 'last.pt'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--restamp", action="store_true")
    parser.add_argument("--focus", action="store_true", help="export a FOCUS run (focus/, focus-misfit/)")
    args = parser.parse_args()
    if args.focus:
        export_focus(args.run, args.out)
    else:
        export(args.run, args.out, args.restamp)
