"""``ofer train idgen|idrank|expgen``: train one of OFER's networks on a data folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train IdGen, IdRank, ExpGen (or the regressor baseline)")
    parser.add_argument("network", choices=("idgen", "idrank", "expgen", "regressor"))
    parser.add_argument("--data", required=True, type=Path, help="data folder (ofer synth train)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="run folder (networks go to RUN/<network>/)")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 256; idrank: 16 candidate sets)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3; idrank 3e-4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the run in -o exactly where it stopped")
    parser.add_argument("--widths", type=int, nargs="+", default=None, help="denoiser widths per level, top first (default: the paper's D 50 10; shipped weights: 256 128 32)")
    parser.add_argument("--domain-directions", type=int, default=2,
                        help="render-domain directions projected out of the ArcFace embedding (0 = off)")
    parser.add_argument("--loss", choices=("l1", "mse"), default="l1", help="diffusion loss on the noise (default l1)")
    group = parser.add_argument_group("idrank")
    group.add_argument("--candidates", type=int, default=100, help="IdGen samples per training image (N)")
    group.add_argument("--rank-images", type=int, default=2000, help="training images used for IdRank")
    group.add_argument("--rank-steps", type=int, default=25, help="DDIM steps when sampling candidates")
    group.add_argument("--rank-vertices", type=int, default=512, help="front vertices fed to IdRank (0 = all)")
    group.add_argument("--tau", type=float, default=1.0, help="ListNet temperature (mm)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.train import TrainOptions, train_diffusion, train_idrank, train_regressor

    is_rank = args.network == "idrank"
    options = TrainOptions(
        data=args.data,
        run=args.output,
        epochs=args.epochs,
        batch_size=args.batch or (16 if is_rank else 256),
        lr=args.lr or (3e-4 if is_rank else 1e-3),
        seed=args.seed,
        resume=args.resume,
        progress=not args.quiet,
        widths=list(args.widths) if args.widths else None,
        candidates=args.candidates,
        rank_images=args.rank_images,
        rank_steps=args.rank_steps,
        rank_vertices=args.rank_vertices,
        tau=args.tau,
        domain_directions=args.domain_directions,
        loss=args.loss,
    )
    if args.network == "regressor":
        log = train_regressor(options)
    else:
        log = train_idrank(options) if is_rank else train_diffusion(args.network, options)
    if log:
        first, last = log[0], log[-1]
        print(f"{args.network}: epochs {first['epoch']}..{last['epoch']}, loss {first['loss']:.4f} -> {last['loss']:.4f}; "
              f"checkpoint {args.output / args.network / 'last.pt'}")
    return 0
