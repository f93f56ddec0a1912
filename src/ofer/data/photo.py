"""The photo-domain data engine: generated face photos, pseudo-labelled by the landmark fitter, occluded.

Per face index ``i``: a latent z from a generator seeded with ``(seed, i, attempt)``, a 1024 px photo
from MobileStyleGAN (:mod:`ofer.data.stylegan`), the front end's main face (SCRFD), a square crop
framed like the render engine's pictures (the detector box spans :data:`BOX_FRACTION` of the crop's
width), MediaPipe's landmarks (found on the 1024 px photo around the box, for detail, and mapped
exactly into the crop) and a full landmark fit (:func:`ofer.fitting.fit_landmarks`, one face at a
time: a batched fit is not bitwise independent of the batch) on the crop's geometry as pseudo-labels, the fitted mesh rendered with the fit's cameras for its silhouette and per-vertex
visibility. A face is rejected (:data:`REJECTIONS`) when no face is detected, MediaPipe finds none,
the fitted yaw is too large or the fit is poor; the next attempt is drawn then, so face ``i`` stays
deterministic. Each accepted face gives ``variants`` occluded copies, one record each, with the render
engine's occluders and degradation (:func:`ofer.data.sample.occluded_pictures`) and embeddings
(:func:`ofer.data.sample.embed_records`). Record ``r`` is copy ``r % variants`` of face ``r // variants``.

With ``expressions`` P > 1 a face has P pictures: the drawn style and P - 1 copies moved along one
of the expression directions of the style space (:class:`ofer.data.stylegan.StyleDirections`:
smile, jaw open, blink; a random one each, by a uniform move in +-``expression_step`` spreads of the
styles along it; a share ``closed_eyes_fraction`` of them shut the eyes instead, by ``closing_step``
spreads along ``eyesClosed``), fitted together with one shared shape (a multi-image fit), so the
pictures share one identity label. Record ``r`` is copy ``r % variants`` of picture
``(r // variants) % P`` of face ``r // (P variants)``; extra fields ``picture`` (int8) and
``style_move`` (D,) (the move along each direction).

Fields beyond the render engine's (see :mod:`ofer.data.synth`):

==================  ================  =====================================================
rotation            (3, 3)            model-to-camera rotation of the fit (OpenCV convention)
translation         (3,)              metres
intrinsics          (3, 3)            ``K`` in crop pixels (perspective)
silhouette          (H, W/8) uint8    packed bits: pixels of the fitted mesh's face region
mediapipe478        (478, 3)          MediaPipe's points in crop pixels (x, y, relative depth)
blendshapes         (52,)             MediaPipe's blendshape scores (``BLENDSHAPE_NAMES``)
fit_error           ()                reprojection error / outer inter-ocular distance
reprojection_px     ()                reprojection error in crop pixels
crop_window         (3,)              x0, y0, side of the crop in the 1024 px photo
identity            () int32          face index ``i``
variant, attempt    () int8           copy of the face, attempt that was accepted
rejections          (R,) int16        rejected attempts of this face, per :data:`REJECTIONS` reason
==================  ================  =====================================================

``head_pose`` holds yaw, pitch, roll (degrees) of the fitted rotation in the render engine's
convention (``R = FRONTAL_R @ head_rotation(yaw, pitch, roll)``); there is no ``camera`` or ``sh``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..config import Config, ConfigError, require, require_int
from ..errors import OferError
from ..facemodels import load_face_model
from ..fitting import FitOptions, LandmarkObservations, Placement, fit_landmarks, observe
from ..frontend import FaceLandmarks, get_frontend, ibug68_from_mediapipe, main_face
from ..frontend.align import BOX_CENTRE_Y, BOX_FRACTION, crop_photo, crop_window
from ..render.cameras import FRONTAL_R
from ..render.renderer import MeshRenderer, make_rasterizer
from ..render.shading import SHShader
from .recipe import DEFAULT_MIX, RANGES, _require_number, validate_occlusion_recipe
from .sample import category_weights, embed_records, occluded_pictures
from .shards import Manifest, pack_bits, stack_samples
from .stylegan import (CLOSING, PHOTO_EXTRA_HINT, Z_DIM, face_generator, style_directions, weights_digest,
                       weights_folder)

PHOTO_VERSION = "ofer-photo/1"
REJECTIONS = ("no_face", "no_landmarks", "pose", "fit_error")


@dataclass
class PhotoConfig(Config):
    """How photo samples are made (saved in the manifest; changing it changes the data)."""

    image_size: int = 256
    psi: float = 0.7
    variants: int = 3
    expressions: int = 1
    expression_step: float = 4.0  # beyond about 5 spreads, blink adds glasses and age (looked at)
    # share of the moved pictures whose eyes are shut instead, by a move of closing_step spreads along the
    # identity-kept eye-closing direction: FFHQ faces almost never close their eyes (MediaPipe's blink
    # > 0.5 in 0.4 % of them), so ExpGen never learns that hidden eyes may be shut
    closed_eyes_fraction: float = 0.0
    closing_step: float = 14.0  # eyes shut, the person kept (6 faces looked at: ArcFace cosine 0.64-0.73)
    box_fraction: float = BOX_FRACTION
    box_centre_y: float = BOX_CENTRE_Y
    max_yaw_deg: float = 45.0
    max_fit_error: float = 0.035  # 66 faces looked at: median 0.013, max 0.024 (psi 0.7), 0.034 (psi 1.0)
    max_attempts: int = 16
    occluder_mix: dict = field(default_factory=lambda: dict(DEFAULT_MIX))
    occluder_coverage: tuple[float, float] = (0.1, 0.6)
    jpeg_quality: tuple[int, int] = (60, 95)
    blur_sigma: tuple[float, float] = (0.0, 1.0)
    noise_sigma: tuple[float, float] = (0.0, 4.0)
    store_clean_image: bool = False
    partial_occlusion: bool = False
    fit: dict = field(default_factory=lambda: FitOptions().to_dict())

    def __post_init__(self) -> None:
        for name in RANGES:
            if hasattr(self, name):
                value = getattr(self, name)
                require(isinstance(value, (list, tuple)), f"photo config: {name} must be a list, got {value!r}")
                setattr(self, name, tuple(value))
        require(isinstance(self.occluder_mix, dict) and isinstance(self.fit, dict),
                "photo config: occluder_mix and fit must be mappings")
        self.occluder_mix, self.fit = dict(self.occluder_mix), dict(self.fit)
        super().__post_init__()

    def validate(self) -> None:
        require_int(self.image_size, "photo config: image_size", 32, 1024)
        _require_number(self.psi, "psi", 0.0, 2.0)
        require_int(self.variants, "photo config: variants", 1, 100)
        require_int(self.expressions, "photo config: expressions", 1, 16)
        _require_number(self.expression_step, "expression_step", 0.0, 10.0)
        _require_number(self.closed_eyes_fraction, "closed_eyes_fraction", 0.0, 1.0)
        _require_number(self.closing_step, "closing_step", 0.0, 20.0)
        _require_number(self.box_fraction, "box_fraction", 0.05, 1.0)
        _require_number(self.box_centre_y, "box_centre_y", 0.0, 1.0)
        _require_number(self.max_yaw_deg, "max_yaw_deg", 0.0, 180.0)
        _require_number(self.max_fit_error, "max_fit_error", 0.0, math.inf)
        require_int(self.max_attempts, "photo config: max_attempts", 1, 127)
        validate_occlusion_recipe(self)
        self.fit_options()

    @property
    def records_per_face(self) -> int:
        """Records of one face: ``expressions`` pictures times ``variants`` occluded copies."""
        return self.expressions * self.variants

    def fit_options(self) -> FitOptions:
        """The landmark fitter's options (a full fit)."""
        options = FitOptions.from_dict(self.fit, where="photo config: fit")
        require(options.mode == "full", "photo config: the fit must be a full fit (mode 'full')")
        return options


def head_angles(rotation: np.ndarray) -> np.ndarray:
    """(3,) yaw, pitch, roll (degrees) of a model-to-camera rotation (3, 3), the inverse of
    ``FRONTAL_R @ head_rotation(yaw, pitch, roll)`` (``Rz(roll) Ry(yaw) Rx(-pitch)``)."""
    head = FRONTAL_R.double().numpy() @ np.asarray(rotation, np.float64)
    yaw = math.asin(float(np.clip(-head[2, 0], -1.0, 1.0)))
    pitch = -math.atan2(head[2, 1], head[2, 2])
    roll = math.atan2(head[1, 0], head[0, 0])
    return np.degrees([yaw, pitch, roll])


def landmarks_in_crop(face: FaceLandmarks, window: tuple[int, int, int], size: int) -> FaceLandmarks:
    """MediaPipe's result with its points (478, 3) mapped from the photo into the crop's pixels."""
    x0, y0, side = window
    points = face.points.copy()
    points[:, :2] -= (x0, y0)
    points *= size / side
    return FaceLandmarks(points=points, blendshapes=face.blendshapes, matrix=face.matrix)


def interocular(points: np.ndarray) -> float:
    """Distance between the outer eye corners (iBUG 36, 45) of MediaPipe points (478, >=2), pixels."""
    ibug = ibug68_from_mediapipe(points[:, :2])
    return float(np.linalg.norm(ibug[45] - ibug[36]))


def photo_shard_stats(arrays: dict[str, np.ndarray]) -> dict:
    """Faces, attempts and rejections per reason of a shard's arrays (counted on each face's first copy)."""
    first = (arrays["variant"] == 0) & (arrays["picture"] == 0 if "picture" in arrays else True)
    rejected = arrays["rejections"][first].sum(0)
    return {"faces": int(first.sum()), "attempts": int(first.sum() + rejected.sum()),
            "rejected": {reason: int(n) for reason, n in zip(REJECTIONS, rejected)}}


@dataclass
class LabelledFace:
    """An accepted face: the clean crop and its pseudo-labels (see the module docstring for fields)."""

    crop: np.ndarray
    labels: dict
    landmarks2d: np.ndarray
    silhouette: np.ndarray
    front: np.ndarray
    screen: np.ndarray


class PhotoMaker:
    """Everything one worker of the photo engine needs, created once: generator, front end, fitter, renderer.

    Args:
        spec: face-model spec; config: the recipe; encoders: encoder record (``None``: defaults);
        backend: rasteriser (``auto``: OpenGL when EGL works, else PyTorch); threads: OpenVINO threads
        (``None``: torch's; the photos do not depend on it).
    """

    def __init__(self, spec: str, config: PhotoConfig, backend: str = "auto", encoders: Optional[dict] = None,
                 threads: Optional[int] = None):
        self.config = config
        self.model = load_face_model(spec).eval()
        self.generator = face_generator(threads or torch.get_num_threads())
        self.frontend = get_frontend(encoders)
        self.renderer = MeshRenderer(make_rasterizer(backend), SHShader(background=(0.0, 0.0, 0.0)))
        self.front_triangles = self.model.front_mask[self.model.faces].all(1)
        self.fit_options = config.fit_options()
        self.categories, self.category_p = category_weights(config.occluder_mix)
        self.directions = style_directions(self.generator.digest) if config.expressions > 1 else None

    # -- one face ------------------------------------------------------------------------------
    def styles(self, index: int, seed: int, attempt: int) -> tuple[list[np.ndarray], np.ndarray]:
        """The ``expressions`` (1, 512) styles of attempt ``attempt`` at face ``index`` and their moves
        (P, D) along the expression directions (row 0, the drawn face, does not move)."""
        z = np.random.default_rng([seed, index, attempt]).standard_normal(Z_DIM).astype(np.float32)
        base = self.generator.truncated_style(z, self.config.psi)
        count = self.config.expressions
        if count == 1:
            return [base], np.zeros((1, 0), np.float32)
        cfg = self.config
        moves = self.directions.picture_moves([seed, index, attempt], count, cfg.expression_step,
                                              cfg.closed_eyes_fraction, cfg.closing_step)
        styles = [base] + [(base + move @ self.directions.directions).astype(np.float32) for move in moves[1:]]
        return styles, moves.astype(np.float32)

    def photo(self, index: int, seed: int, attempt: int) -> np.ndarray:
        """The (1024, 1024, 3) uint8 photo of attempt ``attempt`` at face ``index`` (its first picture)."""
        return self.generator.image_of_style(self.styles(index, seed, attempt)[0][0])

    def label(self, photo: np.ndarray) -> tuple[Optional[LabelledFace], Optional[str]]:
        """(face, None) for an accepted photo, (None, reason) for a rejected one (:data:`REJECTIONS`)."""
        faces, reason = self.label_group([photo])
        return (None, reason) if faces is None else (faces[0], None)

    def _observe(self, photo: np.ndarray):
        """(window, landmarks in the crop) of a photo's main face, or (None, reason)."""
        cfg = self.config
        detections = self.frontend.detect([photo])[0]
        main = main_face(detections, photo.shape)
        if main is None:
            return None, "no_face"
        box = np.asarray(detections[main].box, np.float64)
        found = observe(photo, box)
        if found is None:
            return None, "no_landmarks"
        window = crop_window(box, cfg.box_fraction, cfg.box_centre_y)
        return (window, landmarks_in_crop(found, window, cfg.image_size)), None

    def label_group(self, photos: list[np.ndarray]) -> tuple[Optional[list[LabelledFace]], Optional[str]]:
        """(faces, None) for pictures of one identity that are all accepted, else (None, the first reason).

        Several pictures are fitted together with one shared shape (a multi-image fit); each keeps its
        own expression, pose and camera.
        """
        cfg, size = self.config, self.config.image_size
        seen = []
        for photo in photos:
            found, reason = self._observe(photo)
            if found is None:
                return None, reason
            seen.append(found)
        landmarks = [found[1] for found in seen]
        fit = fit_landmarks(self.model, LandmarkObservations.from_mediapipe(landmarks, (size, size)),
                            self.fit_options, shared_shape=len(photos) > 1)
        checked = []
        for b, (window, points) in enumerate(seen):
            angles = head_angles(fit.placement.rotation[b].numpy())
            error = float(fit.reprojection_error[b]) / max(interocular(points.points), 1e-6)
            if abs(angles[0]) > cfg.max_yaw_deg:
                return None, "pose"
            if not error <= cfg.max_fit_error:
                return None, "fit_error"
            checked.append((angles, error))
        return [self._labelled(crop_photo(photo, window, size), fit, b, points, angles, error, window)
                for b, (photo, (window, points), (angles, error)) in enumerate(zip(photos, seen, checked))], None

    @torch.no_grad()
    def _labelled(self, crop, fit, b: int, landmarks: FaceLandmarks, angles, error: float, window) -> LabelledFace:
        model = self.model
        albedo = torch.ones(model.num_vertices, 3)
        place = fit.placement
        placement = Placement(place.rotation[b : b + 1], place.translation[b : b + 1], place.intrinsics[b : b + 1],
                              place.projection, place.image_size)
        out = self.renderer(fit.vertices[b : b + 1], model.faces, placement.cameras(), albedo)
        tri = out.triangle_id[0]
        silhouette = ((tri >= 0) & self.front_triangles[tri.clamp(min=0)]).numpy()
        front = (out.visibility[0] & model.front_mask).numpy()
        expression, _ = model.split_code(fit.code[b : b + 1])
        labels = {
            "shape": fit.shape[b].numpy().astype(np.float32),
            "expression": expression[0].numpy().astype(np.float32),
            "head_pose": angles.astype(np.float32),
            "rotation": place.rotation[b].numpy().astype(np.float32),
            "translation": place.translation[b].numpy().astype(np.float32),
            "intrinsics": place.intrinsics[b].numpy().astype(np.float32),
            "landmarks2d": fit.landmarks68[b].numpy().astype(np.float32),
            "silhouette": pack_bits(silhouette),
            "mediapipe478": landmarks.points.astype(np.float32),
            "blendshapes": np.asarray(landmarks.blendshapes, np.float32),
            "fit_error": np.float32(error),
            "reprojection_px": np.float32(fit.reprojection_error[b]),
            "crop_window": np.asarray(window, np.float32),
        }
        if model.jaw_dim:
            labels["jaw"] = fit.code[b, model.expression_dim :].numpy().astype(np.float32)
        return LabelledFace(crop, labels, labels["landmarks2d"], silhouette, front, out.screen[0, :, :2].numpy())

    def make_face(self, index: int, seed: int) -> tuple[list[LabelledFace], int, np.ndarray, np.ndarray]:
        """(pictures of face ``index``, accepted attempt, rejections per reason (R,) int16, style moves (P, D))."""
        rejections = np.zeros(len(REJECTIONS), np.int16)
        for attempt in range(self.config.max_attempts):
            styles, moves = self.styles(index, seed, attempt)
            faces, reason = self.label_group([self.generator.image_of_style(style) for style in styles])
            if faces is not None:
                return faces, attempt, rejections, moves
            rejections[REJECTIONS.index(reason)] += 1
        counts = ", ".join(f"{r} {n}" for r, n in zip(REJECTIONS, rejections) if n)
        raise OferError(f"photo face {index}: no acceptable picture in {self.config.max_attempts} attempts ({counts})")

    def make(self, index: int, seed: int) -> list[dict[str, np.ndarray]]:
        """The ``expressions * variants`` raw records of face ``index`` (everything but the embeddings)."""
        cfg = self.config
        faces, attempt, rejections, moves = self.make_face(index, seed)
        records = []
        for picture, face in enumerate(faces):
            for variant in range(cfg.variants):
                # picture 0 draws its occluders as a one-picture face does, so expressions=1 keeps the old data
                key = [seed, index, attempt, 1 + variant] + ([] if picture == 0 else [picture])
                rng = np.random.default_rng(key)
                category = self.categories[rng.choice(len(self.categories), p=self.category_p)]
                record = occluded_pictures(face.crop, face.landmarks2d, face.silhouette, face.front, face.screen,
                                           category, rng, cfg)
                record.update(face.labels)
                record.update(identity=np.int32(index), variant=np.int8(variant), attempt=np.int8(attempt),
                              rejections=rejections.copy())
                if cfg.expressions > 1:
                    record.update(picture=np.int8(picture), style_move=moves[picture])
                records.append(record)
        return records

    def make_shard(self, start: int, count: int, seed: int) -> dict[str, np.ndarray]:
        """Records ``start .. start+count-1`` (whole faces: both multiples of ``records_per_face``), with embeddings."""
        k = self.config.records_per_face
        if start % k or count % k:
            raise ValueError(f"a photo shard holds whole faces: start {start} and count {count} must be "
                             f"multiples of {k}")
        records = [r for face in range(start // k, (start + count) // k) for r in self.make(face, seed)]
        embed_records(self.frontend, records, self.config.store_clean_image)
        return stack_samples(records)


def photo_manifest(spec: str, num_faces: int, seed: int, config: PhotoConfig, faces_per_shard: int,
                   encoders: dict) -> Manifest:
    """The manifest of a photo folder: ``num_faces * records_per_face`` records, ``faces_per_shard`` faces a shard;
    the generator version names the generator's weights (their SHA-256 prefix)."""
    info = load_face_model(spec).info().to_dict()
    version = f"{PHOTO_VERSION}+{weights_digest(weights_folder())[:16]}"
    k = config.records_per_face
    return Manifest("photo", version, info, seed, num_faces * k, faces_per_shard * k, config.to_dict(), encoders)


def check_photo_options(num_faces, seed, workers, faces_per_shard, variants, psi, expressions=1) -> None:
    """Refuse bad numbers before any work starts (one-line ConfigError naming the option)."""
    require_int(num_faces, "--n", 1)
    require_int(seed, "--seed", 0)
    require_int(workers, "--workers", 1)
    require_int(faces_per_shard, "--shard-size", 1)
    require_int(variants, "--variants", 1, 100)
    require_int(expressions, "--expressions", 1, 16)
    if not (isinstance(psi, (int, float)) and 0.0 <= psi <= 2.0):
        raise ConfigError(f"--psi must be a number in [0, 2], got {psi!r}")


def generate_photo(folder: str | Path, spec: str, num_faces: int, seed: int, config: PhotoConfig,
                   workers: int = 1, faces_per_shard: int = 8, progress: bool = True,
                   appearance: Optional[str] = None) -> tuple[Manifest, int]:
    """Generate (or finish) a photo data folder; returns its manifest and how many shards were made now.

    Raises :class:`OferError` with the install hint when OpenVINO or the random-face weights are missing.
    """
    from .synth import run_plan, synth_encoders

    check_photo_options(num_faces, seed, workers, faces_per_shard, config.variants, config.psi, config.expressions)
    config.validate()
    weights_folder()
    if config.expressions > 1:
        found = style_directions(weights_digest(weights_folder()))  # one line before any work when they are missing
        if config.closed_eyes_fraction > 0 and CLOSING not in found.names:
            raise OferError(f"closed eyes need the {CLOSING!r} style direction, which the installed style "
                            "directions lack; refit them with scripts/style_directions.py")
    elif config.closed_eyes_fraction > 0:
        raise ConfigError("--closed-eyes moves expression pictures: it needs --expressions 2 or more")
    encoders = synth_encoders(appearance)
    manifest = photo_manifest(spec, num_faces, seed, config, faces_per_shard, encoders)
    return run_plan(Path(folder), manifest, spec, encoders, workers, progress)


__all__ = [
    "BOX_FRACTION", "PHOTO_EXTRA_HINT", "PHOTO_VERSION", "REJECTIONS", "PhotoConfig", "PhotoMaker",
    "check_photo_options", "crop_photo", "crop_window", "generate_photo", "head_angles", "photo_manifest",
    "photo_shard_stats",
]
