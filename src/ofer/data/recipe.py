"""The recipe of the synthetic data: how samples are drawn (:class:`SynthConfig`) and the fixed protocol set.

A recipe is stored in each data folder's manifest; changing any value changes the data, so a
folder is only resumed with the recipe that started it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import Config, ConfigError, require, require_int
from ..facemodels import FaceModel
from .occluders import CATEGORIES

GENERATOR_VERSION = "ofer-synth/1"
EXPRESSION_REDRAWS = 50  # a weak expression is redrawn at most this often
DEFAULT_MIX = {"hand": 0.3, "object": 0.35, "random": 0.25, "none": 0.1}
PROTOCOL_SEED = 545
PROTOCOL_SIZE = 545
PROTOCOL_IDENTITIES = 11

# (lo, hi) fields: JSON gives lists, the recipe keeps tuples (so saved and fresh configs compare equal).
RANGES = ("distance_m", "field_m", "occluder_coverage", "jpeg_quality", "blur_sigma", "noise_sigma")


@dataclass
class SynthConfig(Config):
    """How samples are drawn (saved in the manifest; changing it changes the data)."""

    image_size: int = 256
    yaw_deg: float = 30.0
    pitch_deg: float = 15.0
    roll_deg: float = 8.0
    distance_m: tuple[float, float] = (0.6, 1.4)
    field_m: tuple[float, float] = (0.30, 0.40)  # metres at the head filling the image height
    centre_jitter: float = 0.04  # fraction of the image
    occluder_mix: dict = field(default_factory=lambda: dict(DEFAULT_MIX))
    occluder_coverage: tuple[float, float] = (0.1, 0.6)
    neutral_fraction: float = 0.1  # samples with a neutral expression (train)
    min_expression: float = 0.0  # reject expressions with a smaller max weight (protocol: expressive only)
    # samples whose eyes are closed (both eyeBlink weights ~ U(0.6, 1)): the blendshape prior closes
    # an eye in about 3 % of the samples, too few for ExpGen to learn that hidden eyes may be shut
    closed_eyes_fraction: float = 0.0
    jpeg_quality: tuple[int, int] = (60, 95)
    blur_sigma: tuple[float, float] = (0.0, 1.0)
    noise_sigma: tuple[float, float] = (0.0, 4.0)
    store_clean_image: bool = False
    partial_occlusion: bool = False  # require 0 < unoccluded < front (redraw the occluder otherwise)
    identities: int = 0  # > 0: samples cycle through this many fixed identities (protocol)
    categories_cycle: tuple[str, ...] = ()  # non-empty: category of sample i is cycle[i % len]

    def __post_init__(self) -> None:
        for name in (*RANGES, "categories_cycle"):
            value = getattr(self, name)
            require(isinstance(value, (list, tuple)), f"synth config: {name} must be a list, got {value!r}")
            setattr(self, name, tuple(value))
        require(isinstance(self.occluder_mix, dict),
                f"synth config: occluder_mix must be a mapping, got {self.occluder_mix!r}")
        self.occluder_mix = dict(self.occluder_mix)
        super().__post_init__()

    def validate(self) -> None:
        require_int(self.image_size, "synth config: image_size", 32, 4096)
        for name in ("yaw_deg", "pitch_deg", "roll_deg"):
            _require_number(getattr(self, name), name, 0.0, 90.0)
        _require_range(self.distance_m, "distance_m", 1e-3, math.inf)
        _require_range(self.field_m, "field_m", 1e-3, math.inf)
        _require_number(self.centre_jitter, "centre_jitter", 0.0, 0.5)
        _require_number(self.neutral_fraction, "neutral_fraction", 0.0, 1.0)
        _require_number(self.min_expression, "min_expression", 0.0, math.inf)
        _require_number(self.closed_eyes_fraction, "closed_eyes_fraction", 0.0, 1.0)
        require_int(self.identities, "synth config: identities", 0)
        validate_occlusion_recipe(self, self.categories_cycle)


def validate_occlusion_recipe(config, categories_cycle: tuple = ()) -> None:
    """Check the fields every engine's recipe shares: ``occluder_mix``, ``occluder_coverage``, the
    degradation ranges (``jpeg_quality``, ``blur_sigma``, ``noise_sigma``), ``store_clean_image`` and
    ``partial_occlusion`` (one-line :class:`ConfigError`)."""
    _require_range(config.occluder_coverage, "occluder_coverage", 0.0, 1.0)
    _require_range(config.jpeg_quality, "jpeg_quality", 1, 100)
    require(all(isinstance(q, int) and not isinstance(q, bool) for q in config.jpeg_quality),
            f"synth config: jpeg_quality must be two integers, got {config.jpeg_quality!r}")
    _require_range(config.blur_sigma, "blur_sigma", 0.0, math.inf)
    _require_range(config.noise_sigma, "noise_sigma", 0.0, math.inf)
    for name in ("store_clean_image", "partial_occlusion"):
        require(isinstance(getattr(config, name), bool), f"synth config: {name} must be true or false")
    named = (*config.occluder_mix, *categories_cycle)
    unknown = sorted({name for name in named if name not in CATEGORIES})
    require(not unknown, f"unknown occluder categories {unknown}: use {', '.join(CATEGORIES)}")
    for name, weight in config.occluder_mix.items():
        _require_number(weight, f"occluder_mix[{name}]", 0.0, math.inf)
    require(sum(config.occluder_mix.values()) > 0, "the occluder mix must have a positive weight")


def _require_number(value, name: str, lo: float, hi: float) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi
    if not ok:
        raise ConfigError(f"synth config: {name} must be a number in [{lo}, {hi}], got {value!r}")


def _require_range(value: tuple, name: str, lo: float, hi: float) -> None:
    """A (low, high) pair with lo <= low <= high <= hi."""
    ok = (len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
          and lo <= value[0] <= value[1] <= hi)
    if not ok:
        raise ConfigError(f"synth config: {name} must be (low, high) with {lo} <= low <= high <= {hi}, got {value!r}")


def protocol_config(**changes) -> SynthConfig:
    """The CO-545-style evaluation set: 545 expressive, near-frontal, occluded faces of 11 people.

    ``changes`` override fields (e.g. ``image_size`` for a small test set).
    """
    config = SynthConfig(
        yaw_deg=8.0,
        pitch_deg=6.0,
        roll_deg=4.0,
        occluder_mix={"hand": 1.0, "object": 1.0, "random": 1.0},
        categories_cycle=("hand", "object", "random"),
        occluder_coverage=(0.1, 0.5),
        partial_occlusion=True,
        neutral_fraction=0.0,
        min_expression=0.3,
        identities=PROTOCOL_IDENTITIES,
        store_clean_image=True,
    )
    return config.replace(**changes) if changes else config


def parse_mix(text: str) -> dict:
    """'hand=0.3,object=0.4,random=0.2,none=0.1' -> dict (weights are normalised later)."""
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        try:
            mix[name.strip()] = float(weight)
        except ValueError:
            raise ConfigError(f"bad occluder mix entry {part!r}: "
                              "use e.g. hand=0.3,object=0.4,random=0.2,none=0.1") from None
    return mix


def redraw_weak_expressions(model: FaceModel, expression: torch.Tensor, generator: torch.Generator,
                            min_expression: float) -> torch.Tensor:
    """Redraw the rows of ``expression`` (R, E) whose largest |coefficient| is below ``min_expression``
    from the prior (at most :data:`EXPRESSION_REDRAWS` times): the recipe's expressive-only rule.

    Draws happen only for weak rows, in order, so one row at a time (the data engine) and many rows
    at once (the evaluation's reference) follow the same recipe.
    """
    expression = expression.clone()
    for _ in range(EXPRESSION_REDRAWS):
        weak = expression.abs().amax(1) < min_expression
        if not weak.any():
            break
        expression[weak] = model.sample_prior(int(weak.sum()), generator, expression=True).expression.to(expression)
    return expression


CLOSED_EYES = ("eyeBlinkLeft", "eyeBlinkRight")


def close_eyes(model: FaceModel, expression: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """``expression`` (R, E) with both eyes shut: the ``eyeBlink`` weights set to ~ U(0.6, 1), one
    draw per eye (mild asymmetry). Unchanged for a model without those blendshapes (FLAME's PCA)."""
    names = list(getattr(model, "expression_names", None) or ())
    if getattr(model, "expression_prior", None) != "blendshape" or not all(n in names for n in CLOSED_EYES):
        return expression
    expression = expression.clone()
    for name in CLOSED_EYES:
        expression[:, names.index(name)] = torch.as_tensor(rng.uniform(0.6, 1.0, len(expression)), dtype=expression.dtype)
    return expression
