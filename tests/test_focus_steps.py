"""FOCUS's training steps on a smoke-sized batch: the frozen network stays bit-identical, S sees one input."""

import math

import pytest
import torch

from ofer.fitting.albedo import albedo_model
from ofer.methods.focus.decoder import FocusDecoder
from ofer.methods.focus.encoder import FocusEncoder
from ofer.methods.focus.losses import PRESETS
from ofer.methods.focus.steps import FocusBatch, FocusNetworks, r_step, s_pretrain_step, s_step
from ofer.networks.unet import UNet

SIZE = 32


class Recording(torch.nn.Module):
    """S that remembers its inputs."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.inner(x)


@pytest.fixture()
def nets(default_model):
    torch.manual_seed(0)
    decoder = FocusDecoder(default_model, albedo_model(default_model), image_size=SIZE)
    return FocusNetworks(FocusEncoder(decoder.code_dim, "tiny"), decoder, Recording(UNet(6, 4)))


@pytest.fixture()
def batch(nets):
    with torch.no_grad():
        rendering = nets.decoder(torch.zeros(2, nets.decoder.code_dim))
    images = (rendering.image + 0.3 * torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)))
    return FocusBatch(images.clamp(0, 1), rendering.landmarks + 0.5)


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same(before, module):
    return all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_r_steps_leave_s_bit_identical(nets, batch):
    optimiser = torch.optim.Adadelta(nets.encoder.parameters(), lr=0.1)
    for source in ("pre", "em", "none"):
        s_before, r_before = _state(nets.segmenter), _state(nets.encoder)
        terms = r_step(batch, nets, optimiser, PRESETS["paper"], mask_source=source)
        assert set(terms) == {"loss", "pixel", "per", "lm", "reg"} and all(math.isfinite(v) for v in terms.values())
        assert _same(s_before, nets.segmenter) and not _same(r_before, nets.encoder)
    with pytest.raises(ValueError, match="mask_source"):
        r_step(batch, nets, optimiser, PRESETS["paper"], mask_source="gt")


def test_s_steps_leave_r_bit_identical_and_see_the_same_input(nets, batch):
    optimiser = torch.optim.Adadelta(nets.segmenter.parameters(), lr=0.006)
    r_before = _state(nets.encoder)
    s_before = _state(nets.segmenter)
    s_pretrain_step(batch, nets, optimiser)
    terms = s_step(batch, nets, optimiser, PRESETS["paper"])
    assert set(terms) == {"loss", "nbr", "dist", "area", "presv", "bin"}
    assert _same(r_before, nets.encoder) and not _same(s_before, nets.segmenter)
    first, second = nets.segmenter.seen[:2]
    assert first.shape == (2, 6, SIZE, SIZE) and torch.equal(first, second)  # [I_R, I_T] in both stages
    assert torch.equal(first[:, 3:], batch.images)
