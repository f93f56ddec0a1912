"""Networks, schedulers and the sampling loop keep every tensor on their input's device.

No GPU here: the inputs live on the "meta" device, so any tensor made on the CPU inside a call
(a table indexed on the CPU, a constant built without ``device=``) shows up in the log of every
operator's outputs, and any read of a value (``int(t)``) fails.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ofer.diffusion import DDIMScheduler, DDPMScheduler, DDPMSchedulerConfig, sample
from ofer.networks import Denoiser, DenoiserConfig, IdRank, IdRankConfig
from ofer.render.shading import SHShader

META = torch.device("meta")


class DeviceLog(TorchDispatchMode):
    """Records every operator run inside the block: its name, input devices, output devices and shapes."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, set[str], list[tuple[str, tuple]]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.device.type for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        outputs = [(t.device.type, tuple(t.shape)) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        self.calls.append((str(func), inputs, outputs))
        return out

    def mixed(self) -> list[str]:
        """Operators that combined a meta tensor with one elsewhere (a CPU scalar tensor, say), moves apart."""
        return [op for op, inputs, _ in self.calls if "meta" in inputs and len(inputs) > 1 and "_to_copy" not in op]

    def off_device(self, allowed=()) -> list[str]:
        """Operators that made a tensor outside meta, except those whose name contains one of ``allowed``."""
        return [op for op, _, outputs in self.calls
                if any(device != "meta" for device, _ in outputs) and not any(a in op for a in allowed)]

    def off_device_shaped(self, shape: tuple, allowed=()) -> list[str]:
        """Operators that made a tensor of ``shape`` (a sample's) outside meta, except ``allowed`` ones."""
        return [op for op, _, outputs in self.calls
                if any(device != "meta" and s == shape for device, s in outputs) and not any(a in op for a in allowed)]


def small_denoiser():
    return Denoiser(DenoiserConfig(input_dim=6, cond_dim=10, widths=[12, 8], time_embed_dim=32, attn_dim=16,
                                   attn_heads=2, attn_tokens=2, attn_cond_tokens=3))


def test_denoiser_moves_completely_and_creates_nothing_elsewhere():
    net = small_denoiser().to(META)
    assert all(t.device == META for t in [*net.parameters(), *net.buffers()])
    x, cond = torch.empty(4, 6, device=META), torch.empty(4, 10, device=META)
    with DeviceLog() as log:
        out = net(x, torch.zeros(4, dtype=torch.long, device=META), cond)
        one = net(x, 7, cond)  # a Python timestep becomes a tensor on x's device
    assert out.device == META and one.device == META and out.shape == (4, 6)
    assert log.off_device() == [] and log.mixed() == []
    with pytest.raises(ValueError, match="x is on cpu but the network is on meta"):
        net(torch.zeros(4, 6), torch.zeros(4, dtype=torch.long), cond)


def test_idrank_moves_completely_and_creates_nothing_elsewhere():
    net = IdRank(IdRankConfig(num_vertices=5, cond_dim=4, widths=[16, 8])).to(META)
    assert all(t.device == META for t in [*net.parameters(), *net.buffers()])
    with DeviceLog() as log:
        scores = net(torch.empty(2, 3, 5, 3, device=META), torch.empty(2, 4, device=META))
    assert scores.device == META and scores.shape == (2, 3)
    assert log.off_device() == [] and log.mixed() == []
    with pytest.raises(ValueError, match="cond is on cpu but the network is on meta"):
        net(torch.empty(2, 3, 5, 3, device=META), torch.zeros(2, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scheduler_training_helpers_follow_the_sample(dtype):
    sched = DDPMScheduler(DDPMSchedulerConfig(prediction_type="v_prediction"))
    x0, noise = torch.empty(3, 4, device=META, dtype=dtype), torch.empty(3, 4, device=META, dtype=dtype)
    t = torch.zeros(3, dtype=torch.long, device=META)
    with DeviceLog() as log:
        outputs = [sched.add_noise(x0, noise, t), sched.training_target(x0, noise, t), sched.add_noise(x0, noise, 5)]
    assert all(o.device == META and o.dtype == dtype for o in outputs)
    # the only CPU work is the float64 -> dtype cast of the (T,) table before it moves
    assert all("_to_copy" in op for op in log.off_device()) and log.mixed() == []
    assert sched.alphas_cumprod.device.type == "cpu" and sched.alphas_cumprod.dtype == torch.float64


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_a_step_returns_tensors_on_the_samples_device(kind):
    sched = DDPMScheduler() if kind == "ddpm" else DDIMScheduler(eta=1.0)
    sched.set_timesteps(10, device=META)
    x, eps = torch.empty(2, 3, device=META), torch.empty(2, 3, device=META)
    generator = torch.Generator().manual_seed(0)
    with DeviceLog() as log:
        out = sched.step(eps, sched.timestep_list[0], x, generator=generator)
    assert out.prev_sample.device == META and out.pred_original_sample.device == META
    assert log.mixed() == []  # the step's coefficients are Python floats read from the CPU tables
    # noise comes from the CPU generator (same numbers on every device), then moves
    assert log.off_device_shaped((2, 3), allowed=("randn", "normal")) == []
    assert any("randn" in op or "normal" in op for op in log.off_device())


def test_sampling_loop_runs_on_the_conditions_device_with_cpu_generator_noise():
    net = small_denoiser().to(META).eval()
    sched = DDIMScheduler(eta=1.0)
    cond = torch.empty(2, 10, device=META)
    meta_gen, cpu_gen = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    with DeviceLog() as log:
        x = sample(net, sched, (4, 6), cond, meta_gen, 5)
    assert x.device == META and x.shape == (4, 6) and sched.timesteps.device == META
    assert log.mixed() == [] and log.off_device_shaped((4, 6), allowed=("randn", "normal")) == []
    # the same draws as sampling on the CPU: the generator ends in the same state
    sample(lambda v, t, c: torch.zeros_like(v), sched, (4, 6), torch.zeros(2, 10), cpu_gen, 5)
    assert torch.equal(meta_gen.get_state(), cpu_gen.get_state())


def test_shader_background_moves_with_the_module():
    shader = SHShader(background=(0.1, 0.2, 0.3)).to(torch.float64)
    assert shader.background.dtype == torch.float64
    assert "background" in dict(shader.named_buffers()) and "background" not in shader.state_dict()
    assert SHShader().to(META).background.device == META
