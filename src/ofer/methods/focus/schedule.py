"""FOCUS's EM schedule (BASELINES.md A.5): cycles of S-steps then R-steps, Adadelta rates that decay.

The paper's EM runs 200k iterations in cycles of 30k: 5k for the segmentation network S first, then 25k
for the reconstruction network R; Adadelta at 0.1 for R and 0.06 x that for S, both x 0.99 every 5k
iterations. At any scale the cycle keeps the 1 : 5 S : R ratio, starts with S, and the decay period
keeps its share of a cycle (a sixth).
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_CYCLE = 30_000
PAPER_DECAY_EVERY = 5_000


@dataclass(frozen=True)
class EMSchedule:
    """``cycles`` cycles of ``s_steps`` S-steps followed by 5 x ``s_steps`` R-steps."""

    s_steps: int = 5_000
    cycles: int = 7
    lr_r: float = 0.1
    s_rate_ratio: float = 0.06
    decay: float = 0.99
    s_decay: float = 0.99  # the authors' code: 0.95

    def __post_init__(self) -> None:
        if not (isinstance(self.s_steps, int) and self.s_steps >= 1 and isinstance(self.cycles, int)
                and self.cycles >= 1):
            raise ValueError(f"EMSchedule: s_steps and cycles must be integers >= 1, got {self.s_steps}, {self.cycles}")

    @property
    def r_steps(self) -> int:
        return 5 * self.s_steps

    @property
    def cycle(self) -> int:
        return self.s_steps + self.r_steps

    @property
    def total(self) -> int:
        return self.cycles * self.cycle

    @property
    def decay_every(self) -> float:
        return self.cycle * PAPER_DECAY_EVERY / PAPER_CYCLE

    def network_at(self, step: int) -> str:
        """``"S"`` or ``"R"``: which network trains at EM step ``step`` (0-based)."""
        if not 0 <= step < self.total:
            raise IndexError(f"EM step {step} outside 0..{self.total - 1}")
        return "S" if step % self.cycle < self.s_steps else "R"

    def rates(self, step: int) -> tuple[float, float]:
        """(lr_R, lr_S) at EM step ``step``: both schedulers step at every iteration, whichever net trains."""
        periods = int(step // self.decay_every)
        return self.lr_r * self.decay ** periods, self.s_rate_ratio * self.lr_r * self.s_decay ** periods
