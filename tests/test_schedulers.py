"""Noise schedulers and the sampling loop (ofer.diffusion)."""

import json
import math
from importlib.resources import files

import pytest
import torch

from ofer.config import ConfigError
from ofer.diffusion import (
    DDIMScheduler,
    DDPMScheduler,
    DDPMSchedulerConfig,
    make_scheduler,
    make_timesteps,
    sample,
)

MU = torch.tensor([0.5, -0.4, 0.2], dtype=torch.float64)
SIGMA = torch.tensor([0.3, 0.6, 1.0], dtype=torch.float64)


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one thread is faster and does not fight other processes for the cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def gaussian_eps(scheduler, mu=MU, sigma=SIGMA):
    """The exact epsilon-prediction E[eps | x_t] for data x0 ~ N(mu, diag(sigma^2))."""

    def fn(x, t, cond):
        ab = scheduler.alphas_cumprod[t.cpu()].to(x)[:, None]
        m, s2 = mu.to(x), sigma.to(x) ** 2
        return (1 - ab).sqrt() * (x - ab.sqrt() * m) / (ab * s2 + 1 - ab)

    return fn


def propagate_moments(scheduler, num_steps, mu=MU, sigma=SIGMA):
    """Exact mean and variance of what the sampler outputs for Gaussian data (every step is affine).

    x_prev = A x + B + S z per dimension; A, B, S are read off the scheduler's own step with
    explicit noise, starting from x_T ~ N(0, I). Used to check the sampling loop itself
    (initial noise, per-step noise, generator use) to within sampling error.
    """
    fn = gaussian_eps(scheduler, mu, sigma)
    scheduler.set_timesteps(num_steps)
    m = torch.zeros(1, len(mu), dtype=torch.float64)
    v = torch.ones(1, len(mu), dtype=torch.float64)
    zero, one = torch.zeros_like(m), torch.ones_like(m)
    for t in scheduler.timesteps:
        tb = t.reshape(1)

        def prev(x, z):
            return scheduler.step(fn(x, tb, None), t, x, noise=z).prev_sample

        b = prev(zero, zero)
        a = prev(one, zero) - b
        s = prev(zero, one) - b
        m, v = a * m + b, a * a * v + s * s
    return m[0], v[0]


def test_alpha_bar_matches_python_loop():
    sched = DDPMScheduler(DDPMSchedulerConfig())
    T, b0, b1 = 1000, 1e-4, 1e-2
    betas = [b0 + (b1 - b0) * i / (T - 1) for i in range(T)]
    for t in (0, 1, 499, 999):
        expected = 1.0
        for i in range(t + 1):
            expected *= 1.0 - betas[i]
        assert sched.alphas_cumprod[t].item() == pytest.approx(expected, rel=1e-12)
        assert sched.betas[t].item() == pytest.approx(betas[t], rel=1e-12)
    assert sched.alphas_cumprod.dtype == torch.float64
    assert sched.alphas_cumprod.shape == (T,)
    assert torch.all(sched.alphas_cumprod[1:] < sched.alphas_cumprod[:-1])
    assert sched.alphas_cumprod[999].item() == pytest.approx(0.00637, abs=2e-4)  # not zero: x_T keeps 8% signal


def test_add_noise_formula():
    sched = DDPMScheduler(DDPMSchedulerConfig())
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    x_t = sched.add_noise(x0, noise, t)
    for i, ti in enumerate(t.tolist()):
        ab = math.prod(1 - (1e-4 + (1e-2 - 1e-4) * k / 999) for k in range(ti + 1))
        torch.testing.assert_close(x_t[i], math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * noise[i], rtol=1e-5, atol=1e-6)
    # one timestep for the whole batch, and 3-D samples
    x3 = torch.randn(2, 3, 4, generator=g)
    n3 = torch.randn(2, 3, 4, generator=g)
    assert sched.add_noise(x3, n3, torch.tensor(7)).shape == (2, 3, 4)
    with pytest.raises(ValueError):
        sched.add_noise(x0, noise, torch.tensor([0, 1000, 1, 2]))
    # training targets
    assert torch.equal(sched.training_target(x0, noise, t), noise)


def test_timestep_schedules():
    for spacing in ("linspace", "leading", "trailing"):
        ts = make_timesteps(1000, None, spacing)
        assert torch.equal(ts, torch.arange(999, -1, -1))
    ts = make_timesteps(1000, 50, "linspace")
    assert ts[0] == 999 and ts[-1] == 0 and len(ts) == 50 and torch.all(ts[:-1] > ts[1:])
    assert torch.equal(make_timesteps(1000, 50, "leading"), torch.arange(49, -1, -1) * 20)
    assert torch.equal(make_timesteps(1000, 50, "trailing"), torch.arange(49, -1, -1) * 20 + 19)
    with pytest.raises(ConfigError):
        make_timesteps(1000, 0, "linspace")
    with pytest.raises(ConfigError):
        make_timesteps(1000, 1001, "linspace")


@pytest.mark.parametrize("steps", [2000, 1001, 0, -5, 2.5, "50"])
def test_set_timesteps_out_of_range_is_a_one_line_config_error(steps):
    sched = DDIMScheduler(DDPMSchedulerConfig())
    with pytest.raises(ConfigError) as info:
        sched.set_timesteps(steps)
    message = str(info.value)
    assert "\n" not in message and "from 1 to 1000" in message and repr(steps) in message
    assert sched.num_inference_steps == 1000  # the schedule is unchanged
    calls = []
    with pytest.raises(ConfigError):  # before any network call (``--steps 2000``)
        sample(lambda x, t, c: calls.append(t) or x, sched, (2, 3), None, None, steps)
    assert calls == []
    sched.set_timesteps(1000)
    assert sched.timestep_list == list(range(999, -1, -1))


def test_ddim_uses_previous_strided_timestep():
    """alpha_bar_prev is taken at t - stride (not t - 1), and is 1 after the last step."""
    cfg = DDPMSchedulerConfig(timestep_spacing="leading")
    sched = DDIMScheduler(cfg, eta=0.0)
    sched.set_timesteps(50)
    assert sched.previous_timestep(980) == 960
    assert sched.previous_timestep(20) == 0
    assert sched.previous_timestep(0) == -1
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    ab = sched.alphas_cumprod
    for t, s in ((980, 960), (20, 0)):
        x0 = (x - (1 - ab[t]).sqrt() * eps) / ab[t].sqrt()
        expected = ab[s].sqrt() * x0 + (1 - ab[s]).sqrt() * eps
        torch.testing.assert_close(sched.step(eps, t, x).prev_sample, expected)
    out = sched.step(eps, 0, x)  # final step: the clean estimate, no noise
    torch.testing.assert_close(out.prev_sample, (x - (1 - ab[0]).sqrt() * eps) / ab[0].sqrt())
    torch.testing.assert_close(out.prev_sample, out.pred_original_sample)


def test_ddpm_step_formula_and_final_step():
    sched = DDPMScheduler(DDPMSchedulerConfig())
    g = torch.Generator().manual_seed(2)
    x, eps, z = (torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    t = 500
    a, ab, abp = sched.alphas[t], sched.alphas_cumprod[t], sched.alphas_cumprod[t - 1]
    # Ho et al. Algorithm 2 with sigma^2 = beta_tilde
    mean = (x - (1 - a) / (1 - ab).sqrt() * eps) / a.sqrt()
    var = (1 - abp) / (1 - ab) * (1 - a)
    torch.testing.assert_close(sched.step(eps, t, x, noise=z).prev_sample, mean + var.sqrt() * z)
    # timestep 0 adds no noise and does not touch the generator
    g1 = torch.Generator().manual_seed(5)
    state = g1.get_state()
    out = sched.step(eps, 0, x, generator=g1)
    assert torch.equal(g1.get_state(), state)
    ab0 = sched.alphas_cumprod[0]
    torch.testing.assert_close(out.prev_sample, (x - (1 - ab0).sqrt() * eps) / ab0.sqrt())
    # the generator is respected
    a1 = sched.step(eps, t, x, generator=torch.Generator().manual_seed(9)).prev_sample
    a2 = sched.step(eps, t, x, generator=torch.Generator().manual_seed(9)).prev_sample
    a3 = sched.step(eps, t, x, generator=torch.Generator().manual_seed(10)).prev_sample
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)


def test_ddim_eta1_all_steps_equals_ddpm():
    cfg = DDPMSchedulerConfig()
    ddpm, ddim = DDPMScheduler(cfg), DDIMScheduler(cfg, eta=1.0)
    g = torch.Generator().manual_seed(3)
    x, eps, z = (torch.randn(8, 5, generator=g, dtype=torch.float64) for _ in range(3))
    for t in (999, 998, 700, 123, 1, 0):
        p = ddpm.step(eps, t, x, noise=z)
        q = ddim.step(eps, t, x, noise=z)
        torch.testing.assert_close(q.prev_sample, p.prev_sample, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(q.pred_original_sample, p.pred_original_sample, rtol=0, atol=0)
    # whole loop: same generator seed -> same samples (both draw noise at the same steps)
    fn = gaussian_eps(ddpm)
    a = sample(fn, ddpm, (64, 3), None, torch.Generator().manual_seed(4), None, dtype=torch.float64)
    b = sample(fn, ddim, (64, 3), None, torch.Generator().manual_seed(4), None, dtype=torch.float64)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    # strided DDPM is DDIM with eta = 1 as well
    a = sample(fn, ddpm, (64, 3), None, torch.Generator().manual_seed(4), 37, dtype=torch.float64)
    b = sample(fn, ddim, (64, 3), None, torch.Generator().manual_seed(4), 37, dtype=torch.float64)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_ddim_eta0_is_deterministic():
    sched = DDIMScheduler(DDPMSchedulerConfig(), eta=0.0)
    fn = gaussian_eps(sched)
    x_T = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    state = g.get_state()
    a = sample(fn, sched, (16, 3), None, g, 20, x_T=x_T)
    assert torch.equal(g.get_state(), state)  # no noise drawn
    b = sample(fn, sched, (16, 3), None, torch.Generator().manual_seed(99), 20, x_T=x_T)
    assert torch.equal(a, b)
    # the same seed gives the same samples; another seed other samples
    c = sample(fn, sched, (16, 3), None, torch.Generator().manual_seed(7), 20)
    d = sample(fn, sched, (16, 3), None, torch.Generator().manual_seed(7), 20)
    e = sample(fn, sched, (16, 3), None, torch.Generator().manual_seed(8), 20)
    assert torch.equal(c, d) and not torch.equal(c, e)


@pytest.mark.parametrize(
    "kind, eta, steps",
    [("ddpm", 0.0, None), ("ddim", 0.0, 50), ("ddim", 1.0, 50)],
)
def test_sampling_recovers_gaussian(kind, eta, steps):
    """Samples with the exact noise prediction of N(mu, diag(sigma^2)) data have the right moments.

    Two checks: (1) the empirical moments match the exact moments of this sampler's output
    (propagated through the affine steps) to within sampling error; (2) those are close to the
    data's: DDPM with 1000 steps within 3%, DDIM with 50 steps loosely (a first-order sampler
    shrinks Gaussian variance by prod cos^2 of the per-step angle -- about 5-25% here).
    The mean is off by about 0.08 * mu * sigma because x_T ~ N(0, I) ignores the sqrt(ab_T) = 0.08
    of signal left at T.
    """
    n = 6000
    sched = make_scheduler(kind, DDPMSchedulerConfig(), eta=eta)
    fn = gaussian_eps(sched)
    x = sample(fn, sched, (n, 3), None, torch.Generator().manual_seed(0), steps, dtype=torch.float64)
    assert x.shape == (n, 3) and x.dtype == torch.float64
    m_exact, v_exact = propagate_moments(sched, steps)
    se_m = (v_exact / n).sqrt()
    se_v = v_exact * math.sqrt(2.0 / (n - 1))
    assert torch.all((x.mean(0) - m_exact).abs() < 4.5 * se_m), (x.mean(0), m_exact)
    assert torch.all((x.var(0) - v_exact).abs() < 4.5 * se_v), (x.var(0), v_exact)
    bias = 0.1 * MU.abs() * SIGMA
    assert torch.all((m_exact - MU).abs() <= bias + 1e-3), (m_exact, MU)
    ratio = v_exact / SIGMA**2
    if kind == "ddpm":
        assert torch.all((ratio - 1).abs() < 0.03), ratio
    else:
        assert torch.all((ratio > 0.7) & (ratio < 1.02)), ratio


def test_sampling_many_samples_per_condition():
    """cond (Bc, C) with shape (Bc*N, D): rows i*N..(i+1)*N-1 see condition i."""
    sched = DDIMScheduler(DDPMSchedulerConfig(), eta=0.0)
    seen = []

    def fn(x, t, cond):
        seen.append(cond)
        return torch.zeros_like(x)

    cond = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    out = sample(fn, sched, (6, 4), cond, torch.Generator().manual_seed(0), 5)
    assert out.shape == (6, 4) and len(seen) == 5
    torch.testing.assert_close(seen[0], cond.repeat_interleave(3, dim=0))
    with pytest.raises(ValueError):
        sample(fn, sched, (5, 4), cond, None, 5)


def test_clip_sample_clamps_prediction():
    sched = DDIMScheduler(DDPMSchedulerConfig(clip_sample=1.0))
    x = torch.full((2, 3), 5.0)
    out = sched.step(torch.zeros(2, 3), 999, x)
    assert out.pred_original_sample.abs().max() <= 1.0


def test_prediction_types_consistent():
    """For the same (x0, eps), every prediction type leads to the same step."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    t = 400
    outs = []
    for kind in ("epsilon", "sample", "v_prediction"):
        sched = DDIMScheduler(DDPMSchedulerConfig(prediction_type=kind))
        sched.set_timesteps(10)
        t = int(sched.timesteps[3])
        tt = torch.full((4,), t)
        x_t = sched.add_noise(x0, eps, tt)
        target = sched.training_target(x0, eps, tt)
        outs.append(sched.step(target, t, x_t).prev_sample)
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(outs[0], outs[2])


def test_config_round_trip(tmp_path):
    cfg = DDPMSchedulerConfig(num_train_timesteps=500, beta_end=2e-2, clip_sample=3.0, timestep_spacing="trailing")
    assert DDPMSchedulerConfig.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "scheduler.json"
    cfg.save(path)
    assert DDPMSchedulerConfig.load(path) == cfg
    assert DDPMSchedulerConfig.load(path).clip_sample == 3.0
    assert DDPMSchedulerConfig.from_dict(DDPMSchedulerConfig().to_dict()) == DDPMSchedulerConfig()
    with pytest.raises(ConfigError, match="unknown DDPMSchedulerConfig field.*bogus"):
        DDPMSchedulerConfig.from_dict({"num_train_timesteps": 10, "bogus": 1})
    with pytest.raises(ConfigError, match="beta_schedule must be one of linear, scaled_linear, cosine"):
        DDPMSchedulerConfig(beta_schedule="quadratic")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable JSON config"):
        DDPMSchedulerConfig.load(bad)
    with pytest.raises(ConfigError, match="file not found"):
        DDPMSchedulerConfig.load(tmp_path / "missing.json")
    # files written by older versions carry the class name
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"_class_name": "DDPMSchedulerConfig", **cfg.to_dict()}))
    assert DDPMSchedulerConfig.load(old) == cfg
    old.write_text(json.dumps({"_class_name": "PNDMSchedulerConfig", **cfg.to_dict()}))
    with pytest.raises(ConfigError, match="'PNDMSchedulerConfig' config is not a DDPMSchedulerConfig"):
        DDPMSchedulerConfig.load(old)
    # a scheduler built from a loaded config has the same tables
    a, b = DDPMScheduler(cfg), DDPMScheduler(DDPMSchedulerConfig.load(path))
    assert torch.equal(a.alphas_cumprod, b.alphas_cumprod)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_train_timesteps": 0}, "num_train_timesteps must be an integer >= 1, got 0"),
        ({"num_train_timesteps": 10.5}, "num_train_timesteps must be an integer >= 1, got 10.5"),
        ({"beta_start": 0.02, "beta_end": 0.01}, "need 0 < beta_start < beta_end < 1, got 0.02, 0.01"),
        ({"beta_start": 0.01, "beta_end": 0.01}, "need 0 < beta_start < beta_end < 1"),
        ({"beta_start": 0.0}, "need 0 < beta_start < beta_end < 1"),
        ({"beta_end": 1.0}, "need 0 < beta_start < beta_end < 1"),
        ({"beta_end": "0.02"}, "need 0 < beta_start < beta_end < 1"),
        ({"clip_sample": 0.0}, "clip_sample must be positive or null, got 0.0"),
        ({"prediction_type": "noise"}, "prediction_type must be one of epsilon, sample, v_prediction"),
        ({"variance_type": "learned"}, "variance_type must be one of fixed_small, fixed_large"),
        ({"timestep_spacing": "karras"}, "timestep_spacing must be one of linspace, leading, trailing"),
    ],
)
def test_scheduler_config_is_validated_at_construction(changes, message):
    with pytest.raises(ConfigError) as info:
        DDPMSchedulerConfig(**changes)
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="run/idgen"):
        DDPMSchedulerConfig.from_dict({**DDPMSchedulerConfig().to_dict(), **changes}, where="run/idgen")


def test_bad_sampler_options_are_config_errors():
    with pytest.raises(ConfigError, match="sampler must be one of ddim, ddpm, got 'euler'"):
        make_scheduler("euler")
    with pytest.raises(ConfigError, match="eta must be a number >= 0, got -0.5"):
        DDIMScheduler(eta=-0.5)
    assert isinstance(make_scheduler("DDIM", eta=0.5), DDIMScheduler)


@pytest.mark.parametrize("network", ["idgen", "expgen"])
def test_shipped_scheduler_configs_load(network):
    data = json.loads((files("ofer") / "weights" / "default" / network / "config.json").read_text())
    cfg = DDPMSchedulerConfig.from_dict(data["scheduler"], where=network)
    assert cfg.to_dict() == data["scheduler"] and cfg == DDPMSchedulerConfig()


def test_public_names_importable_from_the_package_and_the_old_module():
    from ofer.diffusion import make_betas
    from ofer.diffusion import schedulers

    for name in ("DDPMSchedulerConfig", "make_timesteps", "make_betas", "DDIMScheduler", "DDPMScheduler", "randn"):
        assert hasattr(schedulers, name), name
    assert schedulers.make_betas is make_betas
