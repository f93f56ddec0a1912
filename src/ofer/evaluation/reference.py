"""The reference distribution of ODE and STD-S: a per-vertex Gaussian of ground-truth meshes that are
*not* the evaluated set.

Fitting it on the protocol's own ground truth would make the test faces in distribution by
construction and would describe only the protocol's few subjects. Two sources instead:

* ``--reference DIR``: a data folder from ``ofer synth train`` (a training or held-out set made
  for the same face model); its first :data:`REFERENCE_SAMPLES` samples (shape, expression, jaw);
* the default, a seeded draw from the face model's prior with the protocol's recipe: the
  protocol's images are drawn from the prior as well (``data.synth``: identity and expression from
  ``sample_prior``, weak expressions redrawn until their largest coefficient reaches the
  manifest's ``min_expression``, a ``neutral_fraction`` of neutral faces unless it has fixed
  identities), so this is the population
  the protocol's subjects come from, with fresh identities and its own seed
  (:data:`REFERENCE_SEED`, not the protocol's). It needs no data and is the same for every method.

:class:`Reference` carries the Gaussian and a record of its source; the record goes into cache
signatures and reports, so changing the reference recomputes ODE and STD-S.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.recipe import protocol_config, redraw_weak_expressions
from ..data.shards import Manifest, code_fields, read_npz, shard_name
from ..errors import InputError
from ..facemodels import FaceModel
from .groundtruth import code_meshes, code_of
from .metrics import VertexGaussian

__all__ = [
    "REFERENCE_SAMPLES",
    "REFERENCE_SEED",
    "Reference",
    "check_reference_folder",
    "folder_reference",
    "load_reference",
    "prior_coefficients",
    "prior_reference",
]

REFERENCE_SAMPLES = 2000
REFERENCE_SEED = 20_545  # the protocol uses 545; any other fixed number keeps the draws apart


@dataclass
class Reference:
    """A fitted reference Gaussian and where it came from (``record``: JSON-ready)."""

    gaussian: VertexGaussian
    record: dict


def prior_coefficients(model: FaceModel, count: int, seed: int, min_expression: float = 0.0,
                       neutral_fraction: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` draws (shape (R, S), expression (R, E), pose (R, P)) from the prior, with the synth recipe.

    A row whose largest absolute expression coefficient is below ``min_expression`` gets a new
    expression (up to 50 times, pose kept); a ``neutral_fraction`` of rows is made neutral.
    """
    generator = torch.Generator().manual_seed(int(seed))
    sample = model.sample_prior(count, generator, expression=True)
    shape, expression, pose = sample.shape.cpu(), sample.expression.cpu().clone(), sample.pose.cpu().clone()
    expression = redraw_weak_expressions(model, expression, generator, min_expression)
    if neutral_fraction > 0:
        neutral = torch.rand(count, generator=generator) < neutral_fraction
        expression[neutral], pose[neutral] = 0.0, 0.0
    return shape, expression, pose


def prior_reference(model: FaceModel, manifest: Manifest | None = None, count: int = REFERENCE_SAMPLES,
                    seed: int = REFERENCE_SEED) -> Reference:
    """The default reference: ``count`` prior draws with the recipe of ``manifest.config`` (a protocol's)."""
    recipe = protocol_config().to_dict()
    recipe.update((manifest.config if manifest is not None else {}) or {})
    min_expression = float(recipe["min_expression"])
    neutral = float(recipe["neutral_fraction"]) if not recipe.get("identities") else 0.0  # as data.sample
    shape, expression, pose = prior_coefficients(model, count, seed, min_expression, neutral)
    meshes = code_meshes(model, shape, model.join_code(expression, pose))
    record = {"source": "prior", "seed": int(seed), "samples": int(count), "min_expression": min_expression,
              "neutral_fraction": neutral}
    return Reference(VertexGaussian.fit(meshes), record)


def _folder_fields(folder: Path, manifest: Manifest, model: FaceModel, count: int) -> dict[str, np.ndarray]:
    """The first ``count`` rows of shape / expression (/ jaw), read shard by shard."""
    names = ["shape", *code_fields(model.jaw_dim)]
    parts: dict[str, list] = {k: [] for k in names}
    have = 0
    for index in range(manifest.num_shards):
        if have >= count:
            break
        arrays = read_npz(folder / shard_name(index))
        missing = [k for k in names if k not in arrays]
        if missing:
            raise InputError(f"{folder}: --reference data lack the field(s) {', '.join(missing)}")
        for k in names:
            parts[k].append(arrays[k][: count - have])
        have += len(parts["shape"][-1])
    return {k: np.concatenate(v) for k, v in parts.items()}


def check_reference_folder(folder: str | Path) -> Manifest:
    """The manifest of a ``--reference`` folder: training or held-out data (``ofer synth train``) only."""
    manifest = Manifest.load(folder)
    if manifest.kind != "train":
        raise InputError(f"{folder}: --reference needs training or held-out data (ofer synth train), "
                         f"not a {manifest.kind!r} folder: the test set is never its own reference")
    return manifest


def folder_reference(folder: str | Path, model: FaceModel, count: int = REFERENCE_SAMPLES) -> Reference:
    """The reference of a training or held-out data folder (``ofer synth train``): its first ``count`` samples."""
    folder = Path(folder)
    manifest = check_reference_folder(folder)
    manifest.check_face_model(model.info().to_dict(), folder)
    data = _folder_fields(folder, manifest, model, count)
    if len(data["shape"]) < 2:
        raise InputError(f"{folder}: --reference needs at least 2 samples, found {len(data['shape'])}")
    rows = np.arange(len(data["shape"]))
    meshes = code_meshes(model, data["shape"], code_of(data, rows, model))
    record = {"source": "folder", "path": str(folder.resolve()), "checksum": manifest.dataset_checksum(),
              "samples": len(rows)}
    return Reference(VertexGaussian.fit(meshes), record)


def load_reference(model: FaceModel, protocol_manifest: Manifest, folder: str | Path | None = None,
                   count: int | None = None) -> Reference:
    """``folder``'s reference if given, else :func:`prior_reference` with the protocol's recipe.

    ``count``: reference meshes (``None``: :data:`REFERENCE_SAMPLES`).
    """
    count = REFERENCE_SAMPLES if count is None else int(count)
    if folder is not None:
        return folder_reference(folder, model, count)
    return prior_reference(model, protocol_manifest, count)
