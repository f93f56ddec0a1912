"""The synthetic occlusion data engine: random faces with exact 3D ground truth and occlusion masks.

One sample (:mod:`ofer.data.sample`): identity and expression from the face model's prior, a head
pose, a camera, SH lighting, a random skin albedo, a background; rendered (OpenGL when EGL works,
else PyTorch), then an occluder (hand / object / random / none) is drawn over the face, and the
picture goes through a camera-like degradation (blur, noise, JPEG). How samples are drawn is the
recipe (:mod:`ofer.data.recipe`); this module drives many shards with resumable workers. Stored
per sample:

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
occluder_kind       ()  int16         index into ``OCCLUDER_KINDS`` (what was drawn: glyph, mask, shapes...)
keypoints_detected  ()  bool          the detector found the face (else ground-truth 5 points were used)
arcface, appearance (512,), (D,)      embeddings of the occluded picture (identity and appearance encoders)
arcface_clean, ...  (512,), (D,)      embeddings of the clean picture (for distillation baselines)
identity            ()  int32         subject index (protocol data)
==================  ================  =====================================================

Every sample draws from its own generator seeded with ``(seed, index)``, so the data do not
depend on the number of workers, the shard size or on which shards already exist.

:func:`run_plan` is the one driver of every engine (plan the missing shards, run the workers, save
the manifest); the photo-domain engine (:mod:`ofer.data.photo`, kind ``photo``) uses it too.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from ..config import require_int
from ..errors import InputError
from ..facemodels import load_face_model
from ..frontend import available_encoders, get_encoder, get_frontend
from .recipe import (
    DEFAULT_MIX,
    GENERATOR_VERSION,
    PROTOCOL_IDENTITIES,
    PROTOCOL_SEED,
    PROTOCOL_SIZE,
    SynthConfig,
    parse_mix,
    protocol_config,
)
from .sample import SampleMaker, degrade
from .shards import (
    MANIFEST,
    Manifest,
    ShardRecord,
    arrays_checksum,
    pack_bits,
    read_shard,
    shard_name,
    sum_stats,
    unpack_bits,
    write_npz,
)

KINDS = ("train", "protocol")


def synth_encoders(appearance: Optional[str] = None) -> dict:
    """The encoder record of the data: the default identity encoder and the appearance encoder
    called ``appearance`` (a registered name or alias; ``None``: the front end's default).

    Cheap (no network is loaded); an unknown name raises a one-line :class:`InputError`.
    """
    if appearance is None:
        return get_frontend(None).encoders
    if appearance not in available_encoders("appearance", aliases=True):
        raise InputError(f"unknown appearance encoder {appearance!r} (choose from "
                         f"{', '.join(available_encoders('appearance'))})")
    return get_frontend({"appearance": get_encoder(appearance).record()}).encoders


def check_generate_options(num_samples, seed, workers, shard_size, kind: str = "train") -> None:
    """Refuse bad numbers before any work starts (one-line ConfigError naming the option)."""
    require_int(num_samples, "the number of samples", 1)
    require_int(seed, "the seed", 0)
    require_int(workers, "the number of workers", 1)
    require_int(shard_size, "the shard size", 1)
    if kind not in KINDS:
        raise InputError(f"unknown data kind {kind!r} (choose from {', '.join(KINDS)})")


# -- workers -----------------------------------------------------------------------------------
_WORKER = None  # this process's maker (SampleMaker or PhotoMaker)


def no_stats(arrays: dict[str, np.ndarray]) -> dict:
    """The render engine keeps no counters (every sample is accepted)."""
    return {}


_STATS: Callable[[dict], dict] = no_stats  # this process's shard counter


def engine(kind: str) -> tuple[type, type, Callable[[dict], dict]]:
    """(recipe class, maker class, shard counter) of a data kind: :class:`SynthConfig` and
    :class:`SampleMaker` (train, protocol) or the photo engine's. A maker is built as
    ``maker(spec, config, encoders=...)`` and has ``make_shard(start, count, seed)``; the counter
    maps a shard's arrays to its ``ShardRecord.stats``."""
    if kind == "photo":
        from .photo import PhotoConfig, PhotoMaker, photo_shard_stats

        return PhotoConfig, PhotoMaker, photo_shard_stats
    return SynthConfig, SampleMaker, no_stats


def _init_worker(spec: str, config: dict, encoders: dict, threads: int, kind: str = "train") -> None:
    """Build this process's maker for data of ``kind`` (once per worker)."""
    global _WORKER, _STATS
    torch.set_num_threads(threads)
    os.environ["OFER_NUM_THREADS"] = str(threads)
    recipe, maker, _STATS = engine(kind)
    _WORKER = maker(spec, recipe.from_dict(config, where=f"{kind} config"), encoders=encoders)


def _run_shard(job: tuple[Path, int, int, int, int]) -> ShardRecord:
    folder, index, start, count, seed = job
    arrays = _WORKER.make_shard(start, count, seed)
    write_npz(folder / shard_name(index), arrays)
    return ShardRecord(shard_name(index), start, count, arrays_checksum(arrays), _STATS(arrays))


def existing_record(folder: Path, index: int, start: int, count: int, kind: str = "train") -> Optional[ShardRecord]:
    """The record of a finished shard on disk (``None`` if missing or damaged)."""
    path = folder / shard_name(index)
    if not path.is_file():
        return None
    try:
        arrays = read_shard(path, count)
    except InputError:
        return None
    try:
        stats = engine(kind)[2](arrays)
    except KeyError:  # a field the engine counts on is missing: not one of its shards
        return None
    return ShardRecord(shard_name(index), start, count, arrays_checksum(arrays), stats)


def _plan(folder: Path, manifest: Manifest) -> tuple[dict[int, ShardRecord], list[tuple]]:
    """(finished shards by index, jobs for the missing ones); a folder with another recipe is refused."""
    recorded = {}
    if (folder / MANIFEST).is_file():
        saved = Manifest.load(folder)
        if not saved.same_recipe(manifest):
            raise InputError(f"{folder} holds other data (different settings, seed, size, face model or encoders); "
                             "choose another folder")
        recorded = {record.name: record.checksum for record in saved.shards}
    elif folder.is_dir() and any(folder.glob("shard_*.npz")):
        raise InputError(f"{folder} holds shards but no {MANIFEST} naming their recipe; choose another folder")
    records, jobs = {}, []
    for index in range(manifest.num_shards):
        start, count = manifest.shard_range(index)
        record = existing_record(folder, index, start, count, manifest.kind)
        if record is not None and recorded.get(record.name, record.checksum) != record.checksum:
            record = None  # readable, but not the shard the manifest recorded (changed since): made again
        if record is None:
            jobs.append((folder, index, start, count, manifest.seed))
        else:
            records[index] = record
    return records, jobs


def run_plan(folder: Path, manifest: Manifest, spec: str, encoders: dict, workers: int = 1,
             progress: bool = True) -> tuple[Manifest, int]:
    """Make the shards of ``manifest`` missing from ``folder`` (``workers`` processes), then save the
    manifest with every finished shard and their summed ``stats``; returns it and the shards made now.

    The maker is chosen by ``manifest.kind`` (:func:`engine`) and built from ``manifest.config``.
    """
    records, jobs = _plan(folder, manifest)
    folder.mkdir(parents=True, exist_ok=True)
    # Saved before any work, so that a killed run (no ``finally``) still names its recipe and a
    # resume with other settings is refused rather than mixing shards.
    _save_manifest(folder, manifest, records)
    init = (spec, manifest.config, encoders)
    bar = tqdm(total=manifest.num_samples, initial=manifest.num_samples - sum(j[3] for j in jobs), unit="sample",
               desc=f"synth {manifest.kind}", disable=not progress, file=sys.stderr)
    try:
        if jobs and workers == 1:
            _init_worker(*init, max(1, torch.get_num_threads()), manifest.kind)
            for job in jobs:
                records[job[1]] = _run_shard(job)
                bar.update(job[3])
        elif jobs:
            context = multiprocessing.get_context("spawn")
            with context.Pool(min(workers, len(jobs)), initializer=_init_worker,
                              initargs=(*init, 1, manifest.kind)) as pool:
                for record in pool.imap_unordered(_run_shard, jobs):
                    records[int(record.name[6:11])] = record
                    bar.update(record.count)
    finally:
        bar.close()
        _save_manifest(folder, manifest, records)
    return manifest, len(jobs)


def _save_manifest(folder: Path, manifest: Manifest, records: dict[int, ShardRecord]) -> None:
    manifest.shards = [records[i] for i in sorted(records)]
    manifest.stats = summarise(manifest.shards)
    manifest.save(folder)


def summarise(records: list[ShardRecord]) -> dict:
    """The shards' summed counters, with ``rejection_rate`` (rejected / attempts) where attempts are counted."""
    stats = sum_stats(records)
    if stats.get("attempts"):
        rejected = sum(stats.get("rejected", {}).values())
        stats["rejection_rate"] = round(rejected / stats["attempts"], 6)
    return stats


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
    appearance: Optional[str] = None,
) -> tuple[Manifest, int]:
    """Generate (or finish) a data folder of the render engine; returns its manifest and how many
    shards were made now.

    ``appearance`` names the appearance encoder (``None``: the front end's default); it is stored
    in the manifest's ``encoders`` and every worker embeds with it.
    """
    check_generate_options(num_samples, seed, workers, shard_size, kind)
    config.validate()
    encoders = synth_encoders(appearance)
    info = load_face_model(spec).info().to_dict()
    manifest = Manifest(kind, GENERATOR_VERSION, info, seed, num_samples, shard_size, config.to_dict(), encoders)
    return run_plan(Path(folder), manifest, spec, encoders, workers, progress)


__all__ = [
    "DEFAULT_MIX", "GENERATOR_VERSION", "KINDS", "PROTOCOL_IDENTITIES", "PROTOCOL_SEED", "PROTOCOL_SIZE",
    "SampleMaker", "SynthConfig", "check_generate_options", "degrade", "existing_record", "generate",
    "engine", "pack_bits", "parse_mix", "protocol_config", "run_plan", "synth_encoders", "unpack_bits",
]
