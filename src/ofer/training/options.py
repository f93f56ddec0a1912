"""Options of ``ofer train NAME``: one validated :class:`~ofer.config.Config` per trainer.

Every field that the command line sets is declared with :func:`option`, which stores its flags
and argparse settings in the field's metadata; ``ofer train`` builds each trainer's sub-command
from them (:func:`cli_fields`), so a new trainer needs no CLI edit. Values are validated when the
options are constructed, so ``--batch 0`` is refused in one line before any data is read.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

from ..config import Config, require, require_choice, require_int
from ..devices import DEVICES

# Options that --resume applies to the restored run (printed, logged); every other recorded option
# describes the network or its data, and changing it on --resume is refused.
RESUME_APPLIED = ("epochs", "batch_size", "lr", "weight_decay", "tau")
# Options that are not part of the run's record (where it runs, how it reports).
# The data folders and their weights are recorded in ``RunConfig.data`` instead (see common.py).
NOT_RECORDED = ("data", "data_weights", "run", "resume", "progress", "device")


def option(*flags: str, default: Any = dataclasses.MISSING, factory=None, **argparse_kw) -> Any:
    """A dataclass field set on the command line by ``flags`` (argparse keywords in ``argparse_kw``)."""
    metadata = {"flags": flags, "argparse": argparse_kw}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of an options class that have command-line flags, in declaration order."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("flags")]


def flag_of(cls: type, name: str) -> str:
    """The long flag of field ``name`` (``batch_size`` -> ``--batch``), for messages."""
    for f in dataclasses.fields(cls):
        if f.name == name and f.metadata.get("flags"):
            return max(f.metadata["flags"], key=len)
    return name


def require_positive(value: Any, name: str) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    require(ok, f"{name} must be a positive number, got {value!r}")


def require_widths(widths: Any, name: str = "--widths") -> None:
    ok = isinstance(widths, (list, tuple)) and len(widths) > 0
    ok = ok and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths)
    require(ok, f"{name} must be one or more positive integers, got {widths!r}")


@dataclass
class TrainOptions(Config):
    """Options every trainer has (defaults sized for a 2-core CPU).

    Attributes:
        data: one or more data folders (``ofer synth train``, ``ofer synth photo``, ...), read as one
            data set; a single path is accepted too. They must share the face model and encoders.
        data_weights: None (plain concatenation: every sample once per epoch) or one positive
            weight per folder: the folders' sampling shares of an epoch (normalised to sum 1; an
            epoch keeps the concatenation's length, a folder is repeated or subsampled to its share).
        run: the run folder (``RUN/<network>/``).
        device: where the model and batches live; random numbers are always drawn on the CPU,
            so the batch order and the noise do not depend on it.
    """

    network: ClassVar[str] = ""
    help: ClassVar[str] = ""

    data: list[Path] = option("--data", type=Path, nargs="+", required=True, metavar="DIR",
                              help="data folder(s) (ofer synth train / ofer synth photo), read as one data set")
    run: Path = option("-o", "--output", type=Path, required=True,
                       help="run folder (networks go to RUN/<network>/)")
    data_weights: Optional[list[float]] = option(
        "--data-weights", default=None, type=float, nargs="+", metavar="W",
        help="each --data folder's sampling share of an epoch (normalised; e.g. 0.7 0.3 makes the second "
             "folder 30%% of every epoch, repeated or subsampled to fit; default: plain concatenation)")
    epochs: int = option("--epochs", default=50, type=int, help="epochs in all (a resumed run continues up to this)")
    batch_size: int = option("--batch", default=256, type=int, metavar="N", help="batch size (default %(default)s)")
    lr: float = option("--lr", default=1e-3, type=float, help="AdamW learning rate (default %(default)s)")
    weight_decay: float = option("--weight-decay", default=0.0, type=float,
                                 help="AdamW weight decay (default %(default)s)")
    seed: int = option("--seed", default=0, type=int, help="seed of the weights, batch order and noise")
    resume: bool = option("--resume", default=False, action="store_true",
                          help="continue the run in -o where it stopped; a new --epochs, --batch, --lr, --weight-decay "
                               "or --tau is applied and logged, other changes are refused")
    progress: bool = option("--quiet", default=True, action="store_false", help="no progress output")
    device: str = option("--device", default="cpu", help="cpu, cuda[:N] or mps (default cpu)")
    domain_directions: int = option("--domain-directions", default=2, type=int,
                                    help="render-domain directions projected out of the ArcFace embedding (0 = off)")

    def validate(self) -> None:
        folders = [self.data] if isinstance(self.data, (str, Path)) else self.data
        ok = isinstance(folders, (list, tuple)) and len(folders) > 0
        require(ok and all(isinstance(f, (str, Path)) and str(f) != "" for f in folders),
                "--data must name one or more data folders")
        require(self.run is not None and str(self.run) != "", "-o must name a run folder")
        self.data, self.run = [Path(f) for f in folders], Path(self.run)
        if self.data_weights is not None:
            weights = self.data_weights
            require(isinstance(weights, (list, tuple)) and len(weights) == len(self.data),
                    f"--data-weights needs one weight per --data folder ({len(self.data)} folder(s), got "
                    f"{len(weights) if isinstance(weights, (list, tuple)) else weights!r})")
            for w in weights:
                require_positive(w, "--data-weights")
            self.data_weights = [float(w) for w in weights]
        require_int(self.epochs, "--epochs", 1)
        require_int(self.batch_size, "--batch", 1)
        require_positive(self.lr, "--lr")
        ok = isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay) and self.weight_decay >= 0
        require(ok, f"--weight-decay must be a number >= 0, got {self.weight_decay!r}")
        require_int(self.seed, "--seed", 0, 2**63 - 1)
        require_choice(str(self.device).split(":", 1)[0].strip().lower(), "--device", DEVICES)
        require_int(self.domain_directions, "--domain-directions", 0, 64)

    def record(self) -> dict:
        """The options that define the run (saved as ``RunConfig.training``)."""
        return {k: v for k, v in self.to_dict().items() if k not in NOT_RECORDED}

    @property
    def folder(self) -> Path:
        return self.run / self.network


__all__ = ["NOT_RECORDED", "RESUME_APPLIED", "TrainOptions", "cli_fields", "flag_of", "option",
           "require_positive", "require_widths"]
