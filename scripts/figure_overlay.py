"""Draw docs/overlay_example.png: ``overlay.png`` of OFER and of the landmark fit on synthetic renders (no photo pixels).

The pictures are renders of the built-in head by the data engine (sample ``--index`` of the train
recipe with ``--seed``, unoccluded), upscaled to 512 px; each goes through ``ofer reconstruct`` as a
photo would, and the overlays are stacked (OFER on top, ``--method fit`` below).

Usage: python scripts/figure_overlay.py [--seed 5] [--index 3] [-o docs/overlay_example.png]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ofer.data.recipe import SynthConfig
from ofer.data.sample import SampleMaker
from ofer.methods import ReconstructionSettings, get
from ofer.methods.outputs import write_reconstruction


def render(seed: int, index: int) -> np.ndarray:
    maker = SampleMaker("default", SynthConfig(occluder_mix={"none": 1.0}, store_clean_image=True, yaw_deg=25.0))
    image = maker.make(index, seed)["image_clean"]
    return np.asarray(Image.fromarray(image).resize((512, 512), Image.BICUBIC))


def overlay(method: str, image: np.ndarray, folder: Path) -> Image.Image:
    model = get(method).from_run(None)
    rec = model.reconstruct([image], ReconstructionSettings(seed=0), ["render"])[0]
    target = write_reconstruction(folder / method, rec, model.face_model, {}, image=image)
    return Image.open(target / "overlay.png").convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--index", type=int, default=3)
    parser.add_argument("-o", "--output", default="docs/overlay_example.png")
    args = parser.parse_args()
    image = render(args.seed, args.index)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [overlay(name, image, Path(tmp)) for name in ("ofer", "fit")]
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows)), "white")
    for k, row in enumerate(rows):
        sheet.paste(row, (0, sum(r.height for r in rows[:k])))
    sheet.quantize(256).save(args.output, optimize=True)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
