"""FOCUS's EM schedule and misfit prior (BASELINES.md A.12, "Initialisation and schedule", "Misfit prior")."""

import pytest
import torch

from ofer.methods.focus.misfit import corrected, misfit_prior
from ofer.methods.focus.schedule import EMSchedule


def test_cycles_start_with_s_and_keep_five_r_steps_per_s_step():
    for schedule in (EMSchedule(s_steps=2, cycles=2), EMSchedule(s_steps=100, cycles=2)):
        order = [schedule.network_at(t) for t in range(schedule.total)]
        assert schedule.total == schedule.cycles * 6 * schedule.s_steps
        for c in range(schedule.cycles):
            cycle = order[c * schedule.cycle:(c + 1) * schedule.cycle]
            assert cycle == ["S"] * schedule.s_steps + ["R"] * (5 * schedule.s_steps)
    with pytest.raises(IndexError):
        EMSchedule(s_steps=2, cycles=2).network_at(24)
    with pytest.raises(ValueError, match="s_steps"):
        EMSchedule(s_steps=0)


def test_rates_follow_the_paper_scaled_to_the_run():
    paper = EMSchedule()
    assert paper.total == 7 * 30_000 and paper.decay_every == 5_000
    assert paper.rates(0) == pytest.approx((0.1, 0.006))
    assert paper.rates(4_999) == pytest.approx((0.1, 0.006))
    assert paper.rates(5_000) == pytest.approx((0.099, 0.006 * 0.99))
    small = EMSchedule(s_steps=100, cycles=2)  # CPU-small: decay every 100 steps, a sixth of a cycle
    assert small.decay_every == 100 and small.rates(250) == pytest.approx((0.1 * 0.99 ** 2, 0.006 * 0.99 ** 2))
    assert EMSchedule(s_decay=0.95).rates(5_000)[1] == pytest.approx(0.006 * 0.95)


def test_misfit_prior_is_a_signed_mean_offset():
    generator = torch.Generator().manual_seed(0)
    truth = torch.randn(20, 50, 3, generator=generator)
    offset = torch.tensor([0.001, -0.002, 0.0005])
    prior = misfit_prior(truth + offset, truth)
    torch.testing.assert_close(prior, offset.expand(50, 3))
    assert corrected(truth + offset, prior).sub(truth).abs().max() < 1e-6  # float32 rounding at |x| ~ 3
    noise = torch.randn(4000, 50, 3, generator=generator) * 0.01
    noise = torch.cat([noise, -noise])  # zero-mean +- errors: a mean absolute error would not vanish
    assert misfit_prior(truth[:1].expand(8000, 50, 3) + noise, truth[:1].expand(8000, 50, 3)).abs().max() < 1e-6
    with pytest.raises(ValueError, match=r"\(N, V, 3\)"):
        misfit_prior(torch.zeros(2, 5, 3), torch.zeros(2, 4, 3))
