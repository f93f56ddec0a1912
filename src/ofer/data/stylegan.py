"""A face-photo generator: MobileStyleGAN (FFHQ) as OpenVINO IR, from the ``random-face`` wheel.

The wheel is installed with ``pip install --no-deps random-face`` (its own engine imports a removed
OpenVINO API, and its dependencies pull jupyter and gdown); this module never imports the package,
it only reads its ``data`` folder: ``MappingNetwork`` (z (1, 512) -> style (1, 512)) and
``SynthesisNetwork`` (style -> (1, 3, 1024, 1024) RGB in [-1, 1]), static batch 1.

Truncation pulls a style towards the mean style: ``mean + psi (style - mean)``; the mean is the
average mapping of :data:`MEAN_STYLE_SAMPLES` fixed z (seed :data:`MEAN_STYLE_SEED`), computed once
and cached in the user cache (keyed by the weights' content). Licence: the weights derive from
StyleGAN2-FFHQ (NVIDIA's non-commercial licence, FFHQ CC BY-NC-SA): research use only; data made with
them are generated on the user's machine and never shipped.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import OferError
from ..io.atomic import atomic_path
from ..io.numpy_files import NPZ_ERRORS, numpy_error
from ..paths import cache_dir

Z_DIM = 512
MEAN_STYLE_SAMPLES = 2048
MEAN_STYLE_SEED = 20210721
PHOTO_EXTRA_HINT = ("the photo engine needs the photo extra: pip install 'ofer[photo]' && "
                    "pip install --no-deps random-face==2021.7.21.1")


def weights_folder() -> Path:
    """The ``random_face/data`` folder with the IR files; :class:`OferError` (one line) when missing."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise OferError(PHOTO_EXTRA_HINT) from None
    spec = importlib.util.find_spec("random_face")
    folders = [] if spec is None else list(spec.submodule_search_locations or [])
    for folder in folders:
        data = Path(folder) / "data"
        if all((data / f"{net}.{ext}").is_file() for net in ("MappingNetwork", "SynthesisNetwork")
               for ext in ("xml", "bin")):
            return data
    raise OferError(PHOTO_EXTRA_HINT)


def photo_engine_available() -> bool:
    """True when OpenVINO and the random-face weights are installed."""
    try:
        weights_folder()
    except OferError:
        return False
    return True


def weights_digest(folder: Path) -> str:
    """SHA-256 (hex) of the four IR files: what the mean style and the data depend on."""
    digest = hashlib.sha256()
    for name in ("MappingNetwork.xml", "MappingNetwork.bin", "SynthesisNetwork.xml", "SynthesisNetwork.bin"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


class FaceGenerator:
    """MobileStyleGAN on OpenVINO's CPU plugin (f32, a fixed number of threads).

    Args:
        threads: OpenVINO inference threads (results are compared across runs, so the number is fixed).
    """

    def __init__(self, threads: int = 1):
        import openvino

        self.folder = weights_folder()
        self.digest = weights_digest(self.folder)
        core = openvino.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": int(threads)}
        self.mapping = core.compile_model(core.read_model(str(self.folder / "MappingNetwork.xml")), "CPU", config)
        self.synthesis = core.compile_model(core.read_model(str(self.folder / "SynthesisNetwork.xml")), "CPU", config)
        self._mean: np.ndarray | None = None

    def style(self, z: np.ndarray) -> np.ndarray:
        """(1, 512) float32 z -> (1, 512) style."""
        return np.asarray(self.mapping(np.asarray(z, np.float32).reshape(1, Z_DIM))[0], np.float32)

    @property
    def mean_style(self) -> np.ndarray:
        """(1, 512) the average style of the fixed z set (cached on disk per weights)."""
        if self._mean is None:
            self._mean = _cached_mean_style(self)
        return self._mean

    def truncated_style(self, z: np.ndarray, psi: float) -> np.ndarray:
        """(1, 512) the style of latent ``z`` (512,) pulled towards the mean: ``mean + psi (style - mean)``."""
        mean = self.mean_style
        return (mean + np.float32(psi) * (self.style(z) - mean)).astype(np.float32)

    def image_of_style(self, style: np.ndarray) -> np.ndarray:
        """(1024, 1024, 3) uint8 RGB face photo of a (1, 512) style."""
        out = np.asarray(self.synthesis(np.asarray(style, np.float32).reshape(1, Z_DIM))[0])[0]  # (3, H, W) in [-1, 1]
        return np.clip((out.transpose(1, 2, 0) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)

    def image(self, z: np.ndarray, psi: float) -> np.ndarray:
        """(1024, 1024, 3) uint8 RGB face photo of latent ``z`` (512,) with truncation ``psi``."""
        return self.image_of_style(self.truncated_style(z, psi))


def _cached_mean_style(generator: FaceGenerator) -> np.ndarray:
    path = cache_dir() / "stylegan" / f"mean_style_{generator.digest[:16]}_{MEAN_STYLE_SEED}_{MEAN_STYLE_SAMPLES}.npy"
    if path.is_file():
        try:
            mean = np.load(path, allow_pickle=False)
            if mean.shape == (1, Z_DIM):
                return mean.astype(np.float32)
        except (OSError, ValueError):
            pass
    zs = np.random.default_rng(MEAN_STYLE_SEED).standard_normal((MEAN_STYLE_SAMPLES, Z_DIM)).astype(np.float32)
    mean = np.mean([generator.style(z)[0].astype(np.float64) for z in zs], axis=0)[None].astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, mean)
    return mean


@dataclass(frozen=True)
class StyleDirections:
    """Linear read-outs of MediaPipe blendshape scores from the generator's (truncated) style.

    ``score_k(style) ~ intercept_k + gain_k * <direction_k, style>``; moving a style by ``a direction_k``
    changes the predicted score by ``a gain_k`` (the other read-outs change too: the directions are not
    orthogonal). Fitted by ``scripts/style_directions.py`` from the blendshapes of a photo folder.

    Attributes:
        names: (D,) what each direction reads (``smile`` = mean of mouthSmileLeft/Right, ...);
        directions: (D, 512) unit vectors; gains, intercepts: (D,); spread: (D,) standard deviation of
        the styles' projection on each direction (the natural size of a move); r2: (D,) held-out R^2;
        digest: the generator weights' SHA-256 the directions belong to.
    """

    names: tuple
    directions: np.ndarray
    gains: np.ndarray
    intercepts: np.ndarray
    spread: np.ndarray
    r2: np.ndarray
    digest: str

    def picture_moves(self, key: list, count: int, step: float, closed_eyes_fraction: float = 0.0,
                      closing_step: float = 0.0) -> np.ndarray:
        """(count, D) float64 moves of one face's pictures, seeded by ``key``: row 0 (the drawn picture) stays;
        each other row moves along one random read-out direction (not :data:`CLOSING`) by
        U(-1, 1) x ``step`` spreads or, with probability ``closed_eyes_fraction``, along
        :data:`CLOSING` by ``closing_step`` spreads."""
        moving = [k for k, name in enumerate(self.names) if name != CLOSING]
        moves = np.zeros((count, len(self.names)))
        for picture in range(1, count):
            # its own stream, so that closed_eyes_fraction = 0 keeps the older data byte for byte
            if np.random.default_rng([*key, 2000 + picture]).random() < closed_eyes_fraction:
                k = self.names.index(CLOSING)
                moves[picture, k] = closing_step * self.spread[k]
            else:
                rng = np.random.default_rng([*key, 1000 + picture])
                k = moving[int(rng.integers(len(moving)))]
                moves[picture, k] = float(rng.uniform(-1.0, 1.0) * step * self.spread[k])
        return moves

    def save(self, path: Path) -> Path:
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, names=np.asarray(self.names), directions=self.directions, gains=self.gains,
                     intercepts=self.intercepts, spread=self.spread, r2=self.r2, digest=np.asarray(self.digest))
        return Path(path)


DIRECTIONS_FILE = Path(__file__).parent / "stylegan_directions.npz"
# What each direction reads: the mean of these MediaPipe blendshape scores. browInnerUp (R^2 0.2)
# changed the ethnicity of the faces looked at and is left out.
READOUTS = {"smile": ("mouthSmileLeft", "mouthSmileRight"), "jawOpen": ("jawOpen",),
            "blink": ("eyeBlinkLeft", "eyeBlinkRight")}
# The eye-closing direction: blink's, less its part that changes the person (the styles' subspace that
# best predicts the ArcFace embedding) and its part along smile. Blink's own direction puts glasses and
# age on a face beyond about 5 spreads; this one shuts the eyes at 10 spreads and keeps the person.
# It is not one of the random moves (the photo engine's closed_eyes_fraction uses it).
CLOSING = "eyesClosed"


def readout_score(blendshapes: np.ndarray, name: str) -> np.ndarray:
    """The read-out ``name`` of (..., 52) MediaPipe blendshape scores: the mean of its blendshapes."""
    from ..frontend.landmarker import BLENDSHAPE_NAMES

    return np.asarray(blendshapes)[..., [BLENDSHAPE_NAMES.index(p) for p in READOUTS[name]]].mean(-1)


def style_directions(digest: str, path: Optional[Path] = None) -> StyleDirections:
    """The shipped expression directions (``path``: default :data:`DIRECTIONS_FILE`); :class:`OferError`
    (one line) when missing or made for other weights."""
    path = Path(path or DIRECTIONS_FILE)
    try:
        with np.load(path, allow_pickle=False) as data:
            found = StyleDirections(tuple(str(n) for n in data["names"]), data["directions"].astype(np.float64),
                                    data["gains"].astype(np.float64), data["intercepts"].astype(np.float64),
                                    data["spread"].astype(np.float64), data["r2"].astype(np.float64),
                                    str(data["digest"]))
    except (*NPZ_ERRORS, KeyError) as exc:
        raise OferError(f"{path}: no readable style directions ({numpy_error(exc)}); make them with scripts/style_directions.py") from None
    if found.digest != digest:
        raise OferError(f"{path}: style directions made for other generator weights "
                        f"({found.digest[:16]}, installed {digest[:16]})")
    return found


@lru_cache(maxsize=2)
def face_generator(threads: int = 1) -> FaceGenerator:
    """The shared :class:`FaceGenerator` of this process."""
    return FaceGenerator(threads)
