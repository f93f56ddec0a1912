"""One synthetic sample: render a random face, occlude it, degrade it like a camera, embed it.

:class:`SampleMaker` holds what one worker needs (face model, renderer, albedo sampler, front
end); :meth:`SampleMaker.make` draws sample ``index`` from its own generator seeded with
``(seed, index)``, and the encoders embed one crop at a time, so a sample never depends on the
other samples of its shard, on the shard size or on the number of workers.
"""

from __future__ import annotations

import io
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageFilter

from ..facemodels import load_face_model
from ..frontend import Detection, get_frontend, keypoints5_from_ibug68, main_face
from ..render.cameras import look_at_face
from ..render.renderer import MeshRenderer, make_rasterizer
from ..render.shading import SHShader, sh_from_lights
from .backgrounds import sample_background
from .occluders import CATEGORIES, kind_index, occlude_face
from .recipe import SynthConfig, close_eyes, redraw_weak_expressions
from .shards import pack_bits, stack_samples
from .skin import AlbedoSampler

# The detector's face is used when its keypoints lie this close to the truth (fraction of the face width).
DETECTION_TOLERANCE = 0.1


def degrade(image: np.ndarray, rng: np.random.Generator, config: SynthConfig) -> np.ndarray:
    """Camera-like degradation of an (H, W, 3) uint8 picture: Gaussian blur, sensor noise, JPEG."""
    picture = Image.fromarray(image)
    sigma = rng.uniform(*config.blur_sigma)
    if sigma > 0.05:
        picture = picture.filter(ImageFilter.GaussianBlur(sigma))
    noisy = np.asarray(picture).astype(np.float32) + rng.normal(0, rng.uniform(*config.noise_sigma), image.shape)
    picture = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1)))
    return np.asarray(Image.open(buffer).convert("RGB"))


class SampleMaker:
    """Everything one worker needs, created once: face model, renderer, albedo sampler, front end.

    Args:
        spec: face-model spec (``default``, ``flame:PATH``, ...).
        config: the recipe.
        backend: rasteriser (``auto``: OpenGL when EGL works, else PyTorch).
        encoders: encoder record ``{"identity": {"name", "dim"}, "appearance": {"name", "dim"}}``
            (``None`` or a missing role: the front end's default).
    """

    def __init__(self, spec: str, config: SynthConfig, backend: str = "auto", encoders: Optional[dict] = None):
        self.config = config
        self.model = load_face_model(spec).eval()
        self.renderer = MeshRenderer(make_rasterizer(backend), SHShader(background=(0.0, 0.0, 0.0)))
        self.albedo = AlbedoSampler(self.model)
        self.frontend = get_frontend(encoders)
        with torch.no_grad():
            neutral = self.model().vertices[0]
        self.centre = 0.5 * (neutral.amin(0) + neutral.amax(0))
        self.front_triangles = self.model.front_mask[self.model.faces].all(1)
        self.categories, self.category_p = category_weights(config.occluder_mix)
        self.identity_bank: Optional[torch.Tensor] = None

    @property
    def encoders(self) -> dict:
        """The record of the encoders that embed the samples (as stored in the manifest)."""
        return self.frontend.encoders

    # -- coefficients ------------------------------------------------------------------------
    def identity_shapes(self, count: int, seed: int) -> torch.Tensor:
        """(count, S) fixed subjects of a protocol set (depend on ``seed`` only)."""
        return self.model.sample_prior(count, torch.Generator().manual_seed(seed * 7919 + 17)).shape

    def coefficients(self, rng: np.random.Generator, generator: torch.Generator, index: int, seed: int):
        cfg = self.config
        sample = self.model.sample_prior(1, generator, expression=True)
        if cfg.identities > 0:
            if self.identity_bank is None:
                self.identity_bank = self.identity_shapes(cfg.identities, seed)
            sample.shape = self.identity_bank[index % cfg.identities][None]
        sample.expression = redraw_weak_expressions(self.model, sample.expression, generator, cfg.min_expression)
        if cfg.closed_eyes_fraction > 0 and rng.random() < cfg.closed_eyes_fraction:
            sample.expression = close_eyes(self.model, sample.expression, rng)
        if cfg.identities == 0 and rng.random() < cfg.neutral_fraction:
            sample.expression = torch.zeros_like(sample.expression)
            sample.pose = torch.zeros_like(sample.pose)
        return sample

    # -- one sample --------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, sample, rng: np.random.Generator, albedo_rng: np.random.Generator):
        """Render coefficients under a random camera and light: (output, landmarks (68, 2) px,
        camera (4,), head pose (3,) degrees, sh (9, 3))."""
        cfg, size = self.config, self.config.image_size
        pose = rng.uniform(-1, 1, 3) * [cfg.yaw_deg, cfg.pitch_deg, cfg.roll_deg]
        distance = rng.uniform(*cfg.distance_m)
        focal = size * distance / rng.uniform(*cfg.field_m)
        cameras = look_at_face(distance=distance, yaw=float(pose[0]), pitch=float(pose[1]), roll=float(pose[2]),
                               focal=focal, image_size=size)
        shift = rng.uniform(-cfg.centre_jitter, cfg.centre_jitter, 2) * size
        cameras.principal_point = cameras.principal_point + torch.as_tensor(shift, dtype=torch.float32)
        direction = torch.tensor([[rng.uniform(-0.8, 0.8), rng.uniform(-0.2, 0.8), 1.0]])
        tint = torch.as_tensor(rng.uniform(0.9, 1.1, 3), dtype=torch.float32)
        sh = sh_from_lights(ambient=float(rng.uniform(0.3, 0.55)), direction=direction,
                            intensity=float(rng.uniform(0.3, 0.8))) * tint
        vertices = self.model(sample.shape, sample.expression, sample.pose)
        albedo = torch.as_tensor(self.albedo(albedo_rng), dtype=torch.float32)
        out = self.renderer(vertices.vertices - self.centre, self.model.faces, cameras, albedo, sh)
        landmarks2d = cameras.transform_points_screen(vertices.landmarks68 - self.centre)[0, :, :2].numpy()
        camera = np.array([focal, distance, *cameras.principal_point.reshape(-1).tolist()], np.float32)
        return out, landmarks2d, camera, pose, sh[0].numpy()

    def _category(self, index: int, rng: np.random.Generator) -> str:
        cycle = self.config.categories_cycle
        if cycle:
            return cycle[index % len(cycle)]
        return self.categories[rng.choice(len(self.categories), p=self.category_p)]

    def make(self, index: int, seed: int) -> dict[str, np.ndarray]:
        """The raw sample ``index`` (everything but the embeddings), deterministic in (seed, index)."""
        cfg, size = self.config, self.config.image_size
        rng = np.random.default_rng([seed, index])
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        sample = self.coefficients(rng, generator, index, seed)
        # A fixed subject (protocol) keeps its skin, eyes and brows in every picture.
        albedo_rng = np.random.default_rng([seed, 1_000_003, index % cfg.identities]) if cfg.identities else rng
        out, landmarks2d, camera, pose, sh = self.render(sample, rng, albedo_rng)
        alpha = out.alpha[0, ..., None].numpy()
        background = sample_background(size, size, rng).astype(np.float32) / 255.0
        picture = out.image[0].clamp(0, 1).numpy() * alpha + background * (1 - alpha)
        picture = (picture * 255 + 0.5).astype(np.uint8)
        tri = out.triangle_id[0]
        face_pixels = (tri >= 0) & self.front_triangles[tri.clamp(min=0)]
        category = self._category(index, rng)
        front = (out.visibility[0] & self.model.front_mask).numpy()
        record = occluded_pictures(picture, landmarks2d, face_pixels.numpy(), front, out.screen[0, :, :2].numpy(),
                                   category, rng, cfg)
        record.update({
            "shape": sample.shape[0].numpy().astype(np.float32),
            "expression": sample.expression[0].numpy().astype(np.float32),
            "head_pose": pose.astype(np.float32),
            "camera": camera,
            "sh": sh.astype(np.float32),
            "landmarks2d": landmarks2d.astype(np.float32),
        })
        if self.model.jaw_dim:
            code = self.model.join_code(sample.expression, sample.pose)
            record["jaw"] = code[0, self.model.expression_dim :].numpy().astype(np.float32)
        if cfg.identities > 0:
            record["identity"] = np.int32(index % cfg.identities)
        return record

    # -- embeddings ---------------------------------------------------------------------------
    def make_shard(self, start: int, count: int, seed: int) -> dict[str, np.ndarray]:
        """Samples ``start .. start+count-1`` with their embeddings, stacked per field."""
        records = [self.make(start + k, seed) for k in range(count)]
        embed_records(self.frontend, records, self.config.store_clean_image)
        return stack_samples(records)


def category_weights(mix: dict) -> tuple[list[str], np.ndarray]:
    """(categories, probabilities) of an occluder mix, in the canonical :data:`CATEGORIES` order.

    A manifest saves the mix with sorted keys, and the category draw must not depend on the order
    it was written in (a reloaded recipe remakes the same data).
    """
    kept = {k: mix[k] for k in CATEGORIES if mix.get(k, 0) > 0}
    return list(kept), np.array([kept[k] for k in kept]) / sum(kept.values())


def occluded_pictures(picture: np.ndarray, landmarks2d: np.ndarray, face_pixels: np.ndarray, front: np.ndarray,
                      screen: np.ndarray, category: str, rng: np.random.Generator, config) -> dict[str, np.ndarray]:
    """Draw an occluder of ``category`` over a clean picture and degrade both pictures alike.

    Args:
        picture: (H, W, 3) uint8 clean picture; landmarks2d: (68, 2) pixels; face_pixels: (H, W)
            bool face region; front: (V,) bool visible face-region vertices; screen: (V, 2) pixel
            positions of the vertices.
        config: the recipe (``occluder_coverage``, ``partial_occlusion``, the degradation ranges).
    Returns:
        ``image``, ``image_clean`` (H, W, 3) uint8, ``occluder_mask`` (H, W/8), ``front`` and
        ``unoccluded`` (V/8,) packed bits, ``category`` int8, ``occluder_kind`` int16 (the index of the
        occluder's kind in :data:`~ofer.data.occluders.OCCLUDER_KINDS`).
    """
    height, width = picture.shape[:2]
    col = np.clip(np.floor(screen[:, 0]).astype(int), 0, width - 1)
    row = np.clip(np.floor(screen[:, 1]).astype(int), 0, height - 1)
    for _ in range(20):
        occlusion = occlude_face(picture, landmarks2d, face_pixels, category, rng, config.occluder_coverage)
        unoccluded = front & ~occlusion.mask[row, col]
        if not config.partial_occlusion or 0 < unoccluded.sum() < front.sum():
            break
    degrade_seed = int(rng.integers(2**62))
    return {
        "image": degrade(occlusion.image, np.random.default_rng(degrade_seed), config),
        "image_clean": degrade(picture, np.random.default_rng(degrade_seed), config),
        "occluder_mask": pack_bits(occlusion.mask),
        "front": pack_bits(front),
        "unoccluded": pack_bits(unoccluded),
        "category": np.int8(CATEGORIES.index(category)),
        "occluder_kind": np.int16(kind_index(occlusion.kind)),
    }


def locate(frontend, images: list[np.ndarray], landmarks: list[np.ndarray]) -> list[tuple[Detection, bool]]:
    """(face, detected) per image: the detector's main face when it matches the (68, 2) landmarks,
    else a detection made of the landmarks' 5 points and box."""
    located = []
    for image, detections, lmk in zip(images, frontend.detect(images), landmarks):
        truth = keypoints5_from_ibug68(lmk)
        index = main_face(detections, image.shape)
        if index is not None:
            error = np.linalg.norm(detections[index].keypoints - truth, axis=1).mean()
            if error < DETECTION_TOLERANCE * np.ptp(lmk[:, 0]):
                located.append((detections[index], True))
                continue
        lo, hi = lmk.min(0), lmk.max(0)
        located.append((Detection(np.array([lo[0], lo[1], hi[0], hi[1]]), 0.0, truth), False))
    return located


def embed(frontend, images: list[np.ndarray], located) -> tuple[np.ndarray, np.ndarray]:
    """Identity (N, Di) and appearance (N, Da) embeddings of images cropped where ``located`` says."""
    faces = [frontend.face(image, detection) for image, (detection, _) in zip(images, located)]
    embeddings = frontend.embed(faces)
    return embeddings.identity, embeddings.appearance


def embed_records(frontend, records: list[dict], store_clean_image: bool) -> None:
    """Add the embeddings of each record's ``image`` and ``image_clean`` (in place).

    The detector runs on the occluded picture (as at test time); the clean one is cropped alike.
    Adds ``arcface``, ``appearance``, ``arcface_clean``, ``appearance_clean``, ``keypoints_detected``;
    drops ``image_clean`` unless ``store_clean_image``.
    """
    located = locate(frontend, [r["image"] for r in records], [r["landmarks2d"] for r in records])
    arc, app = embed(frontend, [r["image"] for r in records], located)
    arc_clean, app_clean = embed(frontend, [r["image_clean"] for r in records], located)
    for k, r in enumerate(records):
        r.update(arcface=arc[k], appearance=app[k], arcface_clean=arc_clean[k], appearance_clean=app_clean[k],
                 keypoints_detected=np.bool_(located[k][1]))
        if not store_clean_image:
            del r["image_clean"]
