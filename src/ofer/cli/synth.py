"""``ofer synth train|photo|protocol|preview``: make synthetic occluded faces with 3D (pseudo-)labels, or look at them.

Every option is checked before any work starts (one-line ``ofer: error: ...``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..config import ConfigError, require_int
from ..errors import OferError
from ..io.atomic import save_picture
from .outputs import output_file, output_folder

APPEARANCE_HELP = ("appearance encoder, a registered name or alias such as dinov2 "
                   "(default: the front end's default, mediapipe-blendshapes-landmarks)")


def register(subparsers) -> None:
    parser = subparsers.add_parser("synth", help="synthetic occluded faces with 3D ground truth")
    sub = parser.add_subparsers(dest="synth_command", metavar="ACTION")
    sub.required = True
    train = sub.add_parser("train", help="generate (or finish) a training set")
    train.add_argument("--model", default="default", help="face model: default, flame:PATH or npz:PATH")
    train.add_argument("--n", type=int, required=True, help="number of samples")
    train.add_argument("-o", "--output", required=True, type=Path, help="data folder")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--workers", type=int, default=1, help="processes (one per core)")
    train.add_argument("--mix", default=None, help="occluder mix over hand, object, random, none, eyes (eyewear, bands), e.g. hand=0.3,object=0.35,random=0.25,none=0.1")
    train.add_argument("--shard-size", type=int, default=32)
    train.add_argument("--clean-images", action="store_true", help="also store the unoccluded pictures")
    train.add_argument("--closed-eyes", type=float, default=0.0, metavar="FRACTION",
                       help="share of samples with both eyes shut (0..1; the prior alone shuts about 3 %%)")
    train.add_argument("--appearance", default=None, metavar="NAME", help=APPEARANCE_HELP)
    train.set_defaults(func=run_train)
    photo = sub.add_parser("photo", help="generate (or finish) a photo-domain training set: generated face "
                           "photos, pseudo-labelled by the landmark fitter, occluded (needs the photo extra)")
    photo.add_argument("--model", default="default", help="face model: default, flame:PATH or npz:PATH")
    photo.add_argument("--n", type=int, required=True, help="number of faces")
    photo.add_argument("-o", "--output", required=True, type=Path, help="data folder")
    photo.add_argument("--variants", type=int, default=3, help="occluded copies of each face (one sample each)")
    photo.add_argument("--expressions", type=int, default=1,
                       help="pictures per identity: the drawn face and P-1 copies moved along expression "
                            "directions of the style space, fitted with one shared shape")
    photo.add_argument("--closed-eyes", type=float, default=0.0, metavar="FRACTION",
                       help="share of the moved expression pictures that shut the eyes instead (0..1)")
    photo.add_argument("--seed", type=int, default=0)
    photo.add_argument("--workers", type=int, default=1, help="processes (one per core)")
    photo.add_argument("--psi", type=float, default=0.7, help="truncation towards the mean face (0..1 typical)")
    photo.add_argument("--shard-size", type=int, default=8, help="faces per shard")
    photo.add_argument("--mix", default=None, help="occluder mix over hand, object, random, none, eyes (eyewear, bands), e.g. hand=0.3,object=0.35,random=0.25,none=0.1")
    photo.add_argument("--clean-images", action="store_true", help="also store the unoccluded pictures")
    photo.add_argument("--appearance", default=None, metavar="NAME", help=APPEARANCE_HELP)
    photo.set_defaults(func=run_photo)
    protocol = sub.add_parser("protocol", help="build the fixed CO-545-style evaluation set")
    protocol.add_argument("--model", default="default")
    protocol.add_argument("-o", "--output", required=True, type=Path)
    protocol.add_argument("--workers", type=int, default=1)
    protocol.add_argument("--appearance", default=None, metavar="NAME", help=APPEARANCE_HELP)
    protocol.set_defaults(func=run_protocol)
    preview = sub.add_parser("preview", help="contact sheet of a data folder")
    preview.add_argument("data", type=Path)
    preview.add_argument("-o", "--output", required=True, type=Path, help="picture (.png)")
    preview.add_argument("--count", type=int, default=24)
    preview.add_argument("--columns", type=int, default=6)
    preview.set_defaults(func=run_preview)


def _report(manifest, made: int, seconds: float, folder: Path) -> None:
    if made == 0:
        print(f"{folder}: data complete ({manifest.num_samples} samples in {manifest.num_shards} shards); "
              "nothing to do")
    else:
        print(f"{folder}: generated {made} shard(s) in {seconds:.1f} s; {manifest.num_samples} samples complete")


def run_train(args: argparse.Namespace) -> int:
    from ..data.synth import SynthConfig, generate, parse_mix, synth_encoders

    require_int(args.n, "--n", 1)
    require_int(args.seed, "--seed", 0)
    require_int(args.workers, "--workers", 1)
    require_int(args.shard_size, "--shard-size", 1)
    _check_closed_eyes(args.closed_eyes)
    synth_encoders(args.appearance)  # an unknown name is refused before the face model loads
    changes = {"occluder_mix": parse_mix(args.mix)} if args.mix else {}
    if args.closed_eyes:
        changes["closed_eyes_fraction"] = args.closed_eyes
    config = SynthConfig(store_clean_image=args.clean_images, **changes)
    output_folder(args.output)
    started = time.perf_counter()
    manifest, made = generate(args.output, args.model, args.n, args.seed, config, "train", args.workers,
                              args.shard_size, appearance=args.appearance)
    _report(manifest, made, time.perf_counter() - started, args.output)
    return 0


def _check_closed_eyes(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:  # also refuses NaN
        raise ConfigError(f"--closed-eyes must be a fraction in [0, 1], got {fraction!r}")


def run_photo(args: argparse.Namespace) -> int:
    from ..data.photo import PhotoConfig, check_photo_options, generate_photo
    from ..data.stylegan import weights_folder
    from ..data.synth import parse_mix, synth_encoders

    check_photo_options(args.n, args.seed, args.workers, args.shard_size, args.variants, args.psi, args.expressions)
    _check_closed_eyes(args.closed_eyes)
    synth_encoders(args.appearance)
    changes = {"occluder_mix": parse_mix(args.mix)} if args.mix else {}
    if args.closed_eyes:
        changes["closed_eyes_fraction"] = args.closed_eyes
    config = PhotoConfig(variants=args.variants, expressions=args.expressions, psi=args.psi,
                         store_clean_image=args.clean_images, **changes)
    weights_folder()  # the install hint comes before the face model loads
    output_folder(args.output)
    started = time.perf_counter()
    manifest, made = generate_photo(args.output, args.model, args.n, args.seed, config, args.workers,
                                    args.shard_size, appearance=args.appearance)
    _report(manifest, made, time.perf_counter() - started, args.output)
    stats = manifest.stats
    if stats.get("attempts"):
        reasons = ", ".join(f"{k} {v}" for k, v in stats["rejected"].items() if v) or "none"
        print(f"faces {stats['faces']}, attempts {stats['attempts']}, rejection rate "
              f"{stats['rejection_rate']:.1%} ({reasons})")
    return 0


def run_protocol(args: argparse.Namespace) -> int:
    from ..data.synth import PROTOCOL_SEED, PROTOCOL_SIZE, generate, protocol_config, synth_encoders

    require_int(args.workers, "--workers", 1)
    synth_encoders(args.appearance)
    output_folder(args.output)
    started = time.perf_counter()
    manifest, made = generate(args.output, args.model, PROTOCOL_SIZE, PROTOCOL_SEED, protocol_config(), "protocol",
                              args.workers, shard_size=32, appearance=args.appearance)
    _report(manifest, made, time.perf_counter() - started, args.output)
    print(f"checksum: {manifest.dataset_checksum()}")
    return 0


def run_preview(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..data.preview import contact_sheet

    require_int(args.count, "--count", 1)
    require_int(args.columns, "--columns", 1)
    if args.output.suffix.lower() not in Image.registered_extensions():
        raise OferError(f"cannot write {args.output}: unknown picture type (use e.g. .png or .jpg)")
    output_file(args.output)
    sheet = contact_sheet(args.data, args.count, args.columns)
    try:
        save_picture(args.output, sheet)
    except (OSError, ValueError) as exc:
        raise OferError(f"cannot write {args.output}: {exc}") from None
    print(f"wrote {args.output}")
    return 0
