"""Copy a training run's networks into a shippable folder: weights in float16, no optimiser state.

Usage: python scripts/export_weights.py RUN OUT   (OUT gets idgen/, idrank/, expgen/ with last.pt + config.json)
"""

import shutil
import sys
from pathlib import Path

import torch

from ofer.training.checkpoint import NETWORKS, CONFIG_FILE, RunConfig, load_checkpoint, save_checkpoint


def export(run: Path, out: Path) -> None:
    for network in NETWORKS:  # the regressor baseline is not shipped
        config, payload = load_checkpoint(run / network, network)
        weights = {k: v.half() if v.is_floating_point() else v for k, v in payload["model"].items()}
        target = out / network
        target.mkdir(parents=True, exist_ok=True)
        save_checkpoint(target, RunConfig.from_dict(config.to_dict()), {"model": weights, "epoch": payload["epoch"]})
        shutil.copy(run / network / "log.jsonl", target / "log.jsonl") if (run / network / "log.jsonl").is_file() else None
        size = (target / "last.pt").stat().st_size / 2**20
        print(f"{network}: epoch {payload['epoch']}, {size:.1f} MiB -> {target / 'last.pt'} ({CONFIG_FILE} beside)")


if __name__ == "__main__":
    export(Path(sys.argv[1]), Path(sys.argv[2]))
