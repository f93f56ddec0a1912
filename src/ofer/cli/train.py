"""``ofer train NAME``: train one registered network (idgen, expgen, idrank, regressor, ...).

The sub-commands and their options come from :mod:`ofer.training`'s registry: each trainer's
option class declares its flags, so a new trainer needs no edit here. The options are validated
when they are built, before any data is read (``--batch 0`` is a one-line error).
"""

from __future__ import annotations

import argparse
import dataclasses

from .. import training


def _add_options(parser: argparse.ArgumentParser, options_cls: type) -> None:
    for f in training.options.cli_fields(options_cls):
        kwargs = dict(f.metadata["argparse"])
        if not kwargs.get("required"):
            kwargs["default"] = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        parser.add_argument(*f.metadata["flags"], dest=f.name, **kwargs)


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help=f"train a network ({', '.join(training.available())})")
    networks = parser.add_subparsers(dest="network", metavar="NAME")
    networks.required = True
    for name in training.available():
        trainer = training.get(name)
        sub = networks.add_parser(name, help=trainer.help, description=trainer.help)
        _add_options(sub, trainer.options)
        sub.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    trainer = training.get(args.network)
    names = [f.name for f in training.options.cli_fields(trainer.options)]
    options = trainer.options(**{name: getattr(args, name) for name in names})
    log = trainer.train(options)
    if log and "epoch" in log[0]:
        first, last = log[0], log[-1]
        print(f"{args.network}: epochs {first['epoch']}..{last['epoch']}, loss {first['loss']:.4f} -> "
              f"{last['loss']:.4f}; checkpoint {options.folder / 'last.pt'}")
    elif log:  # trainers counted in iterations (FOCUS): rows of (stage,) step and loss
        stages = ", ".join(dict.fromkeys(str(r.get("stage", args.network)) for r in log))
        print(f"{args.network}: {stages}, {log[-1]['step']} iterations in the last, loss {log[0]['loss']:.4f} -> "
              f"{log[-1]['loss']:.4f}; checkpoint {options.folder / 'last.pt'}")
    return 0
