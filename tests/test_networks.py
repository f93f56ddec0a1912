"""OFER's networks: the MLP U-Net denoiser and IdRank (ofer.networks)."""

import json
from importlib.resources import files

import pytest
import torch

from ofer.config import ConfigError
from ofer.diffusion import DDIMScheduler, DDPMScheduler, DDPMSchedulerConfig, sample
from ofer.networks import (
    Denoiser,
    DenoiserConfig,
    IdRank,
    IdRankConfig,
    candidate_errors,
    listnet_loss,
    listnet_target,
    select_best,
)
from ofer.networks.denoiser import TokenAttention


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks run much faster on one thread (and do not fight other processes for cores)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def small_denoiser_config(**kw):
    base = dict(
        input_dim=6, cond_dim=10, widths=[12, 8, 4], time_embed_dim=32, attn_dim=16, attn_heads=2, attn_tokens=2,
        attn_cond_tokens=3,
    )
    base.update(kw)
    return DenoiserConfig(**base)


def assert_all_grads(module: torch.nn.Module):
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


# -- denoiser -------------------------------------------------------------------------------


def test_output_reaches_every_coefficient():
    """A norm before the output layer (the old head) makes the map x_t -> eps_hat lose one direction
    per group when w0 = D: GroupNorm of a single vector discards each group's scale."""
    torch.manual_seed(0)
    D, groups = 16, 4
    for out_norm, lost in ((False, 0), (True, groups)):
        net = Denoiser(small_denoiser_config(input_dim=D, widths=[D, 8], num_groups=groups, out_norm=out_norm))
        net = net.double().eval()
        t, c = torch.tensor([500]), torch.randn(1, 10, dtype=torch.float64)
        x = torch.randn(1, D, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(lambda v: net(v, t, c), x)[0, :, 0]  # (D, D)
        sv = torch.linalg.svdvals(jac)
        assert int((sv < 1e-9 * sv[0]).sum()) == lost


def test_configs_saved_before_out_norm_load_with_it():
    data = small_denoiser_config().to_dict()
    assert data["out_norm"] is False and DenoiserConfig.from_dict(data).out_norm is False
    del data["out_norm"]
    assert DenoiserConfig.from_dict(data).out_norm is True


def test_denoiser_shapes_and_helpers():
    idgen = DenoiserConfig.for_idgen(300)
    assert idgen.widths == [300, 50, 10] and idgen.input_dim == 300 and idgen.cond_dim == 512
    expgen = DenoiserConfig.for_expgen(50, 3, identity_dim=512, appearance_dim=512)
    assert expgen.widths == [53, 25, 10] and expgen.input_dim == 53 and expgen.cond_dim == 1024
    # nothing FLAME-specific: a linear model with 52 expressions and no jaw, 384-d appearance
    other = DenoiserConfig.for_expgen(52, 0, identity_dim=512, appearance_dim=384)
    assert other.input_dim == 52 and other.cond_dim == 896 and other.widths == [52, 25, 10]
    assert DenoiserConfig(input_dim=7, cond_dim=3).widths == [7, 50, 10]

    net = Denoiser(idgen)
    x, c = torch.randn(3, 300), torch.randn(3, 512)
    out = net(x, torch.tensor([0, 500, 999]), c)
    assert out.shape == (3, 300) and out.dtype == torch.float32 and out.requires_grad
    assert net(x, torch.tensor(10), c).shape == (3, 300)  # one timestep for the batch

    net = Denoiser(small_denoiser_config(norm="layer"))
    assert net(torch.randn(5, 6), torch.randint(0, 1000, (5,)), torch.randn(5, 10)).shape == (5, 6)
    for widths in ([6], [6, 3], [4, 16, 8, 2]):
        net = Denoiser(small_denoiser_config(widths=widths))
        assert net(torch.randn(2, 6), torch.randint(0, 1000, (2,)), torch.randn(2, 10)).shape == (2, 6)
    unconditional = Denoiser(small_denoiser_config(cond_dim=0))
    assert unconditional(torch.randn(2, 6), torch.tensor([1, 2]), None).shape == (2, 6)
    with pytest.raises(ValueError):
        Denoiser(small_denoiser_config())(torch.randn(2, 6), torch.tensor([1, 2]), torch.randn(2, 9))
    with pytest.raises(ValueError):
        Denoiser(small_denoiser_config())(torch.randn(2, 5), torch.tensor([1, 2]), torch.randn(2, 10))


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_denoiser_every_parameter_trains(norm, capsys):
    """Catches the public code's defects: unregistered attention projections, no_grad, prints."""
    torch.manual_seed(0)
    net = Denoiser(small_denoiser_config(norm=norm))
    x, t, c = torch.randn(16, 6), torch.randint(0, 1000, (16,)), torch.randn(16, 10)
    loss = (net(x, t, c) - torch.randn(16, 6)).abs().mean()
    loss.backward()
    assert capsys.readouterr().out == ""
    assert_all_grads(net)
    attn = [m for m in net.modules() if isinstance(m, TokenAttention)]
    assert len(attn) == 2 * 2 + 1  # per level down and up, plus the bottleneck
    names = {n for n, _ in net.named_parameters()}
    for m in attn:
        for proj in (m.to_q, m.to_k, m.to_v):
            assert isinstance(proj, torch.nn.Linear)
            assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
            assert proj.bias.grad is not None and proj.bias.grad.abs().sum() > 0
    assert sum(".to_q." in n for n in names) == len(attn) * 2  # weight and bias registered


def test_denoiser_config_round_trip():
    cfg = small_denoiser_config(dropout=0.1, norm="layer")
    data = json.loads(json.dumps(cfg.to_dict()))
    assert DenoiserConfig.from_dict(data) == cfg
    a = Denoiser(cfg)
    b = Denoiser(DenoiserConfig.from_dict(data))
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x, t, c = torch.randn(3, 6), torch.tensor([1, 2, 3]), torch.randn(3, 10)
    torch.testing.assert_close(a(x, t, c), b(x, t, c))
    with pytest.raises(ConfigError, match="unknown DenoiserConfig field.*bogus"):
        DenoiserConfig.from_dict({**data, "bogus": 1}, where="run/idgen")
    with pytest.raises(ConfigError, match="norm must be one of group, layer, got 'batch'"):
        small_denoiser_config(norm="batch")
    with pytest.raises(ConfigError, match=r"attn_heads \(3\) must divide attn_dim \(10\)"):
        small_denoiser_config(attn_dim=10, attn_heads=3)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"widths": [0]}, "widths must be a non-empty list of positive integers, got [0]"),
        ({"widths": []}, "widths must be a non-empty list of positive integers"),
        ({"widths": [8, 2.5]}, "widths must be a non-empty list of positive integers"),
        ({"input_dim": 0}, "input_dim must be an integer >= 1, got 0"),
        ({"cond_dim": -1}, "cond_dim must be an integer >= 0, got -1"),
        ({"input_dim": "6"}, "input_dim must be an integer >= 1, got '6'"),
        ({"time_embed_dim": 31}, "time_embed_dim must be even"),
        ({"dropout": 1.0}, "dropout must be a number in [0, 1), got 1.0"),
        ({"attn_heads": 0}, "attn_heads must be an integer >= 1, got 0"),
        ({"attn_tokens": 0}, "attn_tokens must be an integer >= 1, got 0"),
        ({"out_norm": "no"}, "out_norm must be true or false"),
    ],
)
def test_denoiser_config_is_validated_at_construction(changes, message):
    with pytest.raises(ConfigError) as info:
        small_denoiser_config(**changes)
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="run/expgen"):  # from_dict names where the bad value came from
        DenoiserConfig.from_dict({**small_denoiser_config().to_dict(), **changes}, where="run/expgen")


def test_denoiser_config_replace_validates_and_numpy_ints_are_accepted():
    import numpy as np

    cfg = small_denoiser_config(input_dim=np.int64(6), widths=[np.int64(12), 8])
    assert type(cfg.input_dim) is int and all(type(w) is int for w in cfg.widths)
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()
    with pytest.raises(ConfigError, match="widths"):
        cfg.replace(widths=[4, -1])


def _shipped(network: str) -> dict:
    return json.loads((files("ofer") / "weights" / "default" / network / "config.json").read_text())


@pytest.mark.parametrize("network", ["idgen", "expgen"])
def test_shipped_denoiser_configs_load_and_match_their_weights(network):
    data = _shipped(network)
    cfg = DenoiserConfig.from_dict(data["net"], where=network)
    assert cfg.to_dict() == data["net"]  # every saved key accepted and kept
    DDPMSchedulerConfig.from_dict(data["scheduler"], where=network)
    payload = torch.load(files("ofer") / "weights" / "default" / network / "last.pt", map_location="cpu")
    Denoiser(cfg).load_state_dict(payload["model"])  # strict: the config rebuilds the saved architecture


def test_shipped_idrank_config_loads_and_matches_its_weights():
    data = _shipped("idrank")
    cfg = IdRankConfig.from_dict(data["net"], where="idrank")
    assert cfg.to_dict() == data["net"]
    payload = torch.load(files("ofer") / "weights" / "default" / "idrank" / "last.pt", map_location="cpu")
    IdRank(cfg).load_state_dict(payload["model"])


def test_denoiser_overfits_two_conditions():
    """2 conditions -> 2 target vectors: after DDPM training (L1 on eps), DDIM-20 samples land on the right target."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    D, C = 4, 8
    net = Denoiser(small_denoiser_config(input_dim=D, cond_dim=C, widths=[16, 8], attn_cond_tokens=2))
    conds = torch.randn(2, C, generator=g)
    targets = torch.tensor([[1.0, -1.0, 0.5, 0.0], [-0.5, 0.8, -1.0, 1.0]])
    sched = DDPMScheduler(DDPMSchedulerConfig())
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(600):
        idx = torch.randint(0, 2, (128,), generator=g)
        x0, noise = targets[idx], torch.randn(128, D, generator=g)
        t = torch.randint(0, sched.num_train_timesteps, (128,), generator=g)
        loss = (net(sched.add_noise(x0, noise, t), t, conds[idx]) - noise).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    n = 50
    ddim = DDIMScheduler(DDPMSchedulerConfig(), eta=0.0)
    x = sample(net, ddim, (2 * n, D), conds, torch.Generator().manual_seed(1), 20)
    x = x.view(2, n, D)
    d = torch.cdist(x.reshape(-1, D), targets).view(2, n, 2)
    own, other = d[[0, 1], :, [0, 1]], d[[0, 1], :, [1, 0]]
    assert (own < other).float().mean() > 0.95
    assert ((own < 0.3).float().mean(dim=1) > 0.7).all(), own
    assert (x.median(dim=1).values - targets).abs().max() < 0.1


# -- IdRank -----------------------------------------------------------------------------------


def test_idrank_shapes_and_gradients(capsys):
    torch.manual_seed(0)
    cfg = IdRankConfig(num_vertices=20, cond_dim=12, widths=[64, 32, 16])
    net = IdRank(cfg)
    assert cfg.input_dim == 120
    x, c = torch.randn(3, 7, 20, 3) * 10, torch.randn(3, 12)
    net.fit_input_normalization(x)
    scores = net(x, c)
    assert scores.shape == (3, 7) and scores.requires_grad
    feats = net.features(x)
    assert feats.shape == (3, 7, 120)
    torch.testing.assert_close(feats[:, :, :60], feats[:, :1, :60].expand(3, 7, 60))  # the set mean is shared
    torch.testing.assert_close(feats[:, :, 60:].sum(dim=1), torch.zeros(3, 60), atol=1e-4, rtol=0)  # residuals centred
    loss = listnet_loss(scores, candidate_errors(x, torch.randn(3, 20, 3)))
    loss.backward()
    assert capsys.readouterr().out == ""
    assert_all_grads(net)
    # the default widths are the paper's
    assert IdRankConfig(num_vertices=1785).widths == [4096, 1024, 256, 64]
    assert IdRankConfig(num_vertices=1785).input_dim == 2 * 3 * 1785
    with pytest.raises(ValueError):
        net(torch.randn(3, 7, 21, 3), c)
    with pytest.raises(ValueError, match="front_vertices is on meta but the network is on cpu"):
        net(x.to("meta"), c)
    with pytest.raises(ValueError):
        net(x, torch.randn(3, 11))


def test_idrank_config_round_trip():
    cfg = IdRankConfig(num_vertices=9, cond_dim=5, widths=[32, 8], dropout=0.1)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert IdRankConfig.from_dict(data) == cfg
    a = IdRank(cfg)
    a.fit_input_normalization(torch.randn(4, 3, 9, 3))
    b = IdRank(IdRankConfig.from_dict(data))
    b.load_state_dict(a.state_dict())  # normalisation buffers travel with the weights
    assert torch.equal(a.mean_shape, b.mean_shape) and torch.equal(a.residual_scale, b.residual_scale)


def test_idrank_config_is_validated_and_strict():
    for changes, message in (
        ({"widths": [64, 0]}, "widths must be a non-empty list of positive integers"),
        ({"num_vertices": 0}, "num_vertices must be an integer >= 1, got 0"),
        ({"cond_dim": -3}, "cond_dim must be an integer >= 0"),
        ({"dropout": -0.1}, "dropout must be a number in [0, 1)"),
        ({"num_groups": 0}, "num_groups must be an integer >= 1"),
    ):
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            IdRankConfig(**{"num_vertices": 9, **changes})
    with pytest.raises(ConfigError, match="unknown IdRankConfig field.*hidden"):
        IdRankConfig.from_dict({"num_vertices": 9, "hidden": [4]})
    with pytest.raises(ConfigError, match="IdRankConfig lacks num_vertices"):
        IdRankConfig.from_dict({"cond_dim": 4})


def test_listnet_sign_and_loss():
    errors = torch.tensor([[3.0, 0.5, 2.0, 1.0]])
    target = listnet_target(errors)
    assert target.argmax().item() == 1  # lowest error -> highest probability
    assert torch.all(target[0, 1] > target[0, [3, 2, 0]]) and target[0, 3] > target[0, 2] > target[0, 0]
    torch.testing.assert_close(target.sum(), torch.tensor(1.0))
    good = torch.tensor([[-3.0, 0.5, -2.0, -1.0]])  # scores = -errors: ranks like the target
    assert listnet_loss(good, errors) < listnet_loss(-good, errors)
    # cross-entropy formula
    scores = torch.tensor([[0.1, 0.2, -0.3, 0.0]], requires_grad=True)
    expected = -(torch.softmax(-errors / 0.5, -1) * torch.log_softmax(scores, -1)).sum()
    loss = listnet_loss(scores, errors, tau=0.5)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert scores.grad[0, 1] < 0  # raising the best candidate's score lowers the loss
    assert scores.grad[0, 0] > 0
    # minimised exactly when softmax(scores) = target
    at_target = listnet_loss(-errors, errors)
    assert at_target <= listnet_loss(-errors + 0.3 * torch.randn(1, 4), errors)


def test_candidate_errors_and_select_best():
    gt = torch.zeros(1, 2, 3)
    cand = torch.zeros(1, 3, 2, 3)
    cand[0, 1] += 1.0  # 1 mm everywhere
    cand[0, 2, 0, 0] = 6.0  # one coordinate of one vertex
    torch.testing.assert_close(candidate_errors(cand, gt), torch.tensor([[0.0, 1.0, 1.0]]))
    assert select_best(torch.tensor([[0.5, 2.0, 2.0, 1.0], [3.0, 3.0, 3.0, 0.0]])).tolist() == [1, 0]


def test_idrank_learns_to_rank():
    """Candidates = ground truth + noise of different scales; the ranker must find the closest far above chance."""
    torch.manual_seed(0)
    V, N, C = 30, 8, 16
    g = torch.Generator().manual_seed(0)

    def make(B, gen):
        gt = torch.randn(B, V, 3, generator=gen) * 5 + torch.linspace(-50, 50, V * 3).view(1, V, 3)
        scales = torch.rand(B, N, 1, 1, generator=gen) * 2.5 + 0.5
        cand = gt[:, None] + scales * torch.randn(B, N, V, 3, generator=gen)
        return cand, gt, torch.randn(B, C, generator=gen)  # the condition carries no information here

    net = IdRank(IdRankConfig(num_vertices=V, cond_dim=C, widths=[64, 32, 16]))
    net.fit_input_normalization(make(256, g)[0])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(500):
        cand, gt, cond = make(32, g)
        loss = listnet_loss(net(cand, cond), candidate_errors(cand, gt))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    cand, gt, cond = make(400, torch.Generator().manual_seed(123))
    err = candidate_errors(cand, gt)
    _, best = net.rank(cand, cond)
    top1 = (best == err.argmin(dim=-1)).float().mean().item()
    assert top1 > 3.0 / N, top1  # chance is 1/N
    picked = err.gather(1, best[:, None]).mean()
    assert picked < 0.5 * (err.mean() + err.min(dim=-1).values.mean())  # closer to the oracle than to the average
