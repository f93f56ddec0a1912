"""The synthetic occlusion data engine: random faces with exact 3D ground truth and occlusion masks.

One sample: identity and expression from the face model's prior, a head pose, a camera, SH
lighting, a random skin albedo, a background; rendered (OpenGL when EGL works, else PyTorch),
then an occluder (hand / object / random / none) is drawn over the face, and the picture goes
through a camera-like degradation (blur, noise, JPEG). Stored per sample:

==================  ================  =====================================================
field               shape             meaning
==================  ================  =====================================================
image               (H, W, 3) uint8   the occluded picture
image_clean         (H, W, 3) uint8   the same picture without the occluder (``--clean-images``)
occluder_mask       (H, W/8) uint8    packed bits: pixels covered by the occluder
front               (V/8,) uint8      packed bits: face-region vertices facing the camera, not self-hidden
unoccluded          (V/8,) uint8      packed bits: ``front`` and not under occluder pixels
shape, expression   (S,), (E,)        ground-truth coefficients (``jaw`` (3,) for FLAME)
head_pose           (3,)              yaw, pitch, roll in degrees
camera              (4,)              focal (px), distance (m), principal point x, y (px)
sh                  (9, 3)            lighting
landmarks2d         (68, 2)           iBUG-68 in pixels
category            ()  int8          index into ``CATEGORIES``
keypoints_detected  ()  bool          the detector found the face (else ground-truth 5 points were used)
arcface, appearance (512,), (D,)      embeddings of the occluded picture
arcface_clean, ...  (512,), (D,)      embeddings of the clean picture (for distillation baselines)
identity            ()  int32         subject index (protocol data)
==================  ================  =====================================================

Every sample draws from its own generator seeded with ``(seed, index)``, so the data do not
depend on the number of workers or on which shards already exist.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageFilter

from ..errors import InputError, OferError
from .backgrounds import sample_background
from .occluders import CATEGORIES, occlude_face
from .shards import Manifest, ShardRecord, arrays_checksum, read_npz, shard_name, stack_samples, write_npz
from .skin import AlbedoSampler

GENERATOR_VERSION = "ofer-synth/1"
DEFAULT_MIX = {"hand": 0.3, "object": 0.35, "random": 0.25, "none": 0.1}


@dataclass
class SynthConfig:
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
    jpeg_quality: tuple[int, int] = (60, 95)
    blur_sigma: tuple[float, float] = (0.0, 1.0)
    noise_sigma: tuple[float, float] = (0.0, 4.0)
    store_clean_image: bool = False
    partial_occlusion: bool = False  # require 0 < unoccluded < front (redraw the occluder otherwise)
    identities: int = 0  # > 0: samples cycle through this many fixed identities (protocol)
    categories_cycle: tuple[str, ...] = ()  # non-empty: category of sample i is cycle[i % len]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SynthConfig":
        data = dict(data)
        for key in ("distance_m", "field_m", "occluder_coverage", "jpeg_quality", "blur_sigma", "noise_sigma", "categories_cycle"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def validate(self) -> None:
        unknown = set(self.occluder_mix) - set(CATEGORIES)
        if unknown:
            raise OferError(f"unknown occluder categories {sorted(unknown)}: use {', '.join(CATEGORIES)}")
        if sum(self.occluder_mix.values()) <= 0:
            raise OferError("the occluder mix must have a positive weight")


PROTOCOL_SEED = 545
PROTOCOL_SIZE = 545
PROTOCOL_IDENTITIES = 11


def protocol_config() -> SynthConfig:
    """The CO-545-style evaluation set: 545 expressive, near-frontal, occluded faces of 11 people."""
    return SynthConfig(
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


def parse_mix(text: str) -> dict:
    """'hand=0.3,object=0.4,random=0.2,none=0.1' -> dict (weights are normalised later)."""
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        try:
            mix[name.strip()] = float(weight)
        except ValueError:
            raise OferError(f"bad occluder mix entry {part!r}: use e.g. hand=0.3,object=0.4,random=0.2,none=0.1") from None
    return mix


def pack_bits(mask: np.ndarray) -> np.ndarray:
    return np.packbits(mask.astype(bool), axis=-1)


def unpack_bits(packed: np.ndarray, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits` along the last axis (``count`` = original length)."""
    return np.unpackbits(packed, axis=-1, count=count).astype(bool)


def degrade(image: np.ndarray, rng: np.random.Generator, config: SynthConfig) -> np.ndarray:
    """Camera-like degradation: Gaussian blur, sensor noise, JPEG compression."""
    picture = Image.fromarray(image)
    sigma = rng.uniform(*config.blur_sigma)
    if sigma > 0.05:
        picture = picture.filter(ImageFilter.GaussianBlur(sigma))
    noisy = np.asarray(picture).astype(np.float32) + rng.normal(0, rng.uniform(*config.noise_sigma), image.shape)
    picture = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1)))
    return np.asarray(Image.open(buffer).convert("RGB"))


def keypoints_from_landmarks(landmarks2d: np.ndarray) -> np.ndarray:
    """The detector's 5 points (left eye, right eye, nose, mouth left, mouth right, image sides) from iBUG-68."""
    return np.stack(
        [landmarks2d[36:42].mean(0), landmarks2d[42:48].mean(0), landmarks2d[30], landmarks2d[48], landmarks2d[54]]
    )


class SampleMaker:
    """Everything one worker needs, created once: face model, renderer, albedo sampler, front end."""

    def __init__(self, spec: str, config: SynthConfig, backend: str = "auto", appearance: str = "mediapipe"):
        from ..facemodels import load_face_model
        from ..frontend import get_frontend
        from ..render.renderer import MeshRenderer, make_rasterizer
        from ..render.shading import SHShader

        self.config = config
        self.model = load_face_model(spec).eval()
        self.renderer = MeshRenderer(make_rasterizer(backend), SHShader(background=(0.0, 0.0, 0.0)))
        self.albedo = AlbedoSampler(self.model)
        self.frontend = get_frontend(appearance)
        with torch.no_grad():
            neutral = self.model().vertices[0]
        self.centre = 0.5 * (neutral.amin(0) + neutral.amax(0))
        faces = self.model.faces
        self.front_triangles = self.model.front_mask[faces].all(1)
        mix = {k: v for k, v in config.occluder_mix.items() if v > 0}
        self.categories = list(mix)
        self.category_p = np.array([mix[k] for k in self.categories]) / sum(mix.values())
        self.identity_bank = None

    def encoders(self) -> dict:
        from ..pipeline.ofer import encoder_record

        return encoder_record(self.frontend)

    # -- coefficients ------------------------------------------------------------------------
    def identity_shapes(self, count: int, seed: int) -> torch.Tensor:
        return self.model.sample_prior(count, torch.Generator().manual_seed(seed * 7919 + 17)).shape

    def coefficients(self, rng: np.random.Generator, generator: torch.Generator, index: int, seed: int):
        cfg = self.config
        sample = self.model.sample_prior(1, generator, expression=True)
        if cfg.identities > 0:
            if self.identity_bank is None:
                self.identity_bank = self.identity_shapes(cfg.identities, seed)
            sample.shape = self.identity_bank[index % cfg.identities][None]
        for _ in range(50):  # expressive-only data: redraw weak expressions
            if float(sample.expression.abs().max()) >= cfg.min_expression:
                break
            sample.expression = self.model.sample_prior(1, generator, expression=True).expression
        if cfg.identities == 0 and rng.random() < cfg.neutral_fraction:
            sample.expression = torch.zeros_like(sample.expression)
            sample.pose = torch.zeros_like(sample.pose)
        return sample

    # -- one sample --------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, sample, rng: np.random.Generator, albedo_rng: np.random.Generator):
        from ..render.cameras import look_at_face
        from ..render.shading import sh_from_lights

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
        if cfg.categories_cycle:
            category = cfg.categories_cycle[index % len(cfg.categories_cycle)]
        else:
            category = self.categories[rng.choice(len(self.categories), p=self.category_p)]
        front = (out.visibility[0] & self.model.front_mask).numpy()
        pixel = np.clip(np.floor(out.screen[0, :, :2].numpy()).astype(int), 0, size - 1)
        for _ in range(20):
            occlusion = occlude_face(picture, landmarks2d, face_pixels.numpy(), category, rng, cfg.occluder_coverage)
            unoccluded = front & ~occlusion.mask[pixel[:, 1], pixel[:, 0]]
            if not cfg.partial_occlusion or 0 < unoccluded.sum() < front.sum():
                break
        degrade_seed = int(rng.integers(2**62))
        image = degrade(occlusion.image, np.random.default_rng(degrade_seed), cfg)
        clean = degrade(picture, np.random.default_rng(degrade_seed), cfg)
        record = {
            "image": image,
            "image_clean": clean,
            "occluder_mask": pack_bits(occlusion.mask),
            "front": pack_bits(front),
            "unoccluded": pack_bits(unoccluded),
            "shape": sample.shape[0].numpy().astype(np.float32),
            "expression": sample.expression[0].numpy().astype(np.float32),
            "head_pose": pose.astype(np.float32),
            "camera": camera,
            "sh": sh.astype(np.float32),
            "landmarks2d": landmarks2d.astype(np.float32),
            "category": np.int8(CATEGORIES.index(category)),
        }
        if self.model.jaw_dim:
            from ..facemodels.flame import JAW_SLICE

            record["jaw"] = sample.pose[0, JAW_SLICE].numpy().astype(np.float32)
        if cfg.identities > 0:
            record["identity"] = np.int32(index % cfg.identities)
        return record

    def locate(self, images: list[np.ndarray], landmarks: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, bool]]:
        """(5 keypoints, box, detected) per image: the detector's main face when it matches the ground truth."""
        from ..frontend import main_face

        located = []
        for image, detections, lmk in zip(images, self.frontend.detect(images), landmarks):
            truth = keypoints_from_landmarks(lmk)
            index = main_face(detections, image.shape)
            ok = index is not None and np.linalg.norm(detections[index].keypoints - truth, axis=1).mean() < 0.1 * np.ptp(lmk[:, 0])
            if ok:
                located.append((detections[index].keypoints, detections[index].box, True))
            else:
                lo, hi = lmk.min(0), lmk.max(0)
                located.append((truth, np.array([lo[0], lo[1], hi[0], hi[1]]), False))
        return located

    def embed(self, images: list[np.ndarray], located) -> tuple[np.ndarray, np.ndarray]:
        """ArcFace (N, 512) and appearance (N, D) embeddings of images cropped where ``located`` says."""
        from ..frontend import align_arcface, crop_appearance

        arc = np.stack([align_arcface(image, kps) for image, (kps, _, _) in zip(images, located)])
        app = np.stack([crop_appearance(image, box) for image, (_, box, _) in zip(images, located)])
        return self.frontend.arcface.embed(arc), self.frontend.appearance.embed(app)

    def make_shard(self, start: int, count: int, seed: int) -> dict[str, np.ndarray]:
        records = [self.make(start + k, seed) for k in range(count)]
        # The detector runs on the occluded picture (as at test time); the clean one is cropped alike.
        located = self.locate([r["image"] for r in records], [r["landmarks2d"] for r in records])
        arc, app = self.embed([r["image"] for r in records], located)
        arc_clean, app_clean = self.embed([r["image_clean"] for r in records], located)
        for k, r in enumerate(records):
            r.update(arcface=arc[k], appearance=app[k], arcface_clean=arc_clean[k], appearance_clean=app_clean[k],
                     keypoints_detected=np.bool_(located[k][2]))
            if not self.config.store_clean_image:
                del r["image_clean"]
        return stack_samples(records)


# -- driving many shards ----------------------------------------------------------------------
_WORKER: Optional[SampleMaker] = None


def _init_worker(spec: str, config: dict, threads: int) -> None:
    global _WORKER
    torch.set_num_threads(threads)
    os.environ["OFER_NUM_THREADS"] = str(threads)
    _WORKER = SampleMaker(spec, SynthConfig.from_dict(config))


def _run_shard(job: tuple[Path, int, int, int, int]) -> ShardRecord:
    folder, index, start, count, seed = job
    arrays = _WORKER.make_shard(start, count, seed)
    write_npz(folder / shard_name(index), arrays)
    return ShardRecord(shard_name(index), start, count, arrays_checksum(arrays))


def existing_record(folder: Path, index: int, start: int, count: int) -> Optional[ShardRecord]:
    """The record of a finished shard on disk (``None`` if missing or damaged)."""
    path = folder / shard_name(index)
    if not path.is_file():
        return None
    try:
        arrays = read_npz(path)
    except InputError:
        return None
    if len(next(iter(arrays.values()))) != count:
        return None
    return ShardRecord(shard_name(index), start, count, arrays_checksum(arrays))


def generate(
    folder: str | Path,
    spec: str,
    num_samples: int,
    seed: int,
    config: SynthConfig,
    kind: str = "train",
    workers: int = 1,
    shard_size: int = 32,
    progress: bool = True,
) -> tuple[Manifest, int]:
    """Generate (or finish) a data folder; returns its manifest and how many shards were made now."""
    from tqdm import tqdm

    from ..facemodels import load_face_model

    config.validate()
    folder = Path(folder)
    if num_samples < 1:
        raise OferError("the number of samples must be at least 1")
    info = load_face_model(spec).info().to_dict()
    manifest = Manifest(kind, GENERATOR_VERSION, info, seed, num_samples, shard_size, config.to_dict())
    if (folder / "manifest.json").is_file():
        previous = Manifest.load(folder)
        if not previous.same_recipe(manifest):
            raise OferError(f"{folder} holds other data (different settings, seed or size); choose another folder")
        manifest.encoders = previous.encoders
    folder.mkdir(parents=True, exist_ok=True)
    records, jobs = {}, []
    for index in range(manifest.num_shards):
        start, count = manifest.shard_range(index)
        record = existing_record(folder, index, start, count)
        if record is None:
            jobs.append((folder, index, start, count, seed))
        else:
            records[index] = record
    if not manifest.encoders:
        manifest.encoders = _encoders_of(spec)
    bar = tqdm(total=num_samples, initial=num_samples - sum(j[3] for j in jobs), unit="sample",
               desc=f"synth {kind}", disable=not progress, file=sys.stderr)
    try:
        if jobs and workers <= 1:
            _init_worker(spec, config.to_dict(), threads=max(1, torch.get_num_threads()))
            for job in jobs:
                records[job[1]] = _run_shard(job)
                bar.update(job[3])
        elif jobs:
            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, initializer=_init_worker, initargs=(spec, config.to_dict(), 1)) as pool:
                for record in pool.imap_unordered(_run_shard, jobs):
                    records[int(record.name[6:11])] = record
                    bar.update(record.count)
    finally:
        bar.close()
        manifest.shards = [records[i] for i in sorted(records)]
        manifest.save(folder)
    return manifest, len(jobs)


def _encoders_of(spec: str) -> dict:
    from ..frontend import get_frontend
    from ..pipeline.ofer import encoder_record

    return encoder_record(get_frontend())
