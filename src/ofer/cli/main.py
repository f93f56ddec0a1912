"""Entry point of the ``ofer`` command: subcommands are registered by the modules in ``COMMANDS``."""

from __future__ import annotations

import argparse
import sys
import warnings
from importlib import import_module

from ..errors import OferError, first_line, is_out_of_memory

# Each module exposes ``register(subparsers)`` and sets ``func`` on its parsers.
COMMANDS = ("info", "facemodel", "detect", "embed", "render", "synth", "train", "reconstruct", "eval", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ofer", description="Occlusion-robust 3D face reconstruction (OFER).")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        import_module(f"{__package__}.{name}").register(subparsers)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"ofer: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning  # one line per warning, no source location
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OferError as exc:
        print(f"ofer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ofer: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the output side: a full disk, a vanished folder, permissions
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"ofer: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not is_out_of_memory(exc):
            raise
        print(f"ofer: error: out of memory ({first_line(exc)}); ask for fewer samples or smaller images",
              file=sys.stderr)
        return 1



if __name__ == "__main__":
    sys.exit(main())
