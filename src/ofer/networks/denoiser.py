"""The conditional MLP U-Net that predicts the noise of a coefficient vector (IdGen and ExpGen).

The authors' "1D U-Net" treats the coefficient vector as the channels of a length-1 sequence,
so it is an MLP U-Net. Ours, for widths ``[w0, w1, ..., wL]`` (default ``[D, 50, 10]``)::

    x_t (B,D) --input_proj--> h0 (B,w0)
    encoder, level i < L:  res(h) -> skip, res(h) -> skip, attn(h), down: Linear w_i -> w_{i+1}
    bottleneck (wL):       res, attn, res
    decoder, level i < L:  up: Linear w_{i+1} -> w_i, res([h || skip]), res([h || skip]), attn(h)
    final:                 res([h || h0]) -> SiLU -> Linear w0 -> D     (eps_hat, (B,D))

Every residual block is ``norm -> SiLU -> Linear -> norm -> FiLM -> SiLU -> dropout -> Linear``
plus a (projected) shortcut, where FiLM is ``h * (1 + scale) + shift`` with (scale, shift) a linear
function of ``[SiLU(time embedding) || condition]``. The time embedding is sinusoidal
(``time_embed_dim`` features) followed by a two-layer MLP.

Attention. Self-attention over a length-1 sequence is a plain linear map (the softmax over one
key is 1), which is what the authors' model reduces to. Here each attention block attends over a
small set of tokens built from the block's three inputs: ``attn_tokens`` tokens cut from a linear
projection of the hidden vector, one token for the time embedding and ``attn_cond_tokens`` tokens
projected from the condition, each with a learned position embedding. Queries come from the
hidden tokens, keys and values from all tokens (so the block mixes self-attention inside the
hidden state with cross-attention to time and condition); the attended hidden tokens are
projected back to the level width and added residually. The q/k/v projections are registered
``nn.Linear`` modules (the public code kept them in a Python list, so they never trained).

Defects of the public code deliberately not reproduced: unregistered attention projections,
``no_grad`` inside ``forward`` (ExpGen could not train) and a print in every block.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, require, require_choice, require_int

NORMS = ("group", "layer")


def num_groups_for(width: int, max_groups: int = 8, min_group_size: int = 4) -> int:
    """Largest group count <= ``max_groups`` dividing ``width`` into groups of >= ``min_group_size`` features."""
    best = 1
    for g in range(1, max(1, max_groups) + 1):
        if width % g == 0 and width // g >= min_group_size:
            best = g
    return best


def make_norm(kind: str, width: int, max_groups: int = 8) -> nn.Module:
    """GroupNorm (groups from :func:`num_groups_for`) or LayerNorm over a (B, width) feature vector."""
    if kind == "group":
        return nn.GroupNorm(num_groups_for(width, max_groups), width)
    if kind == "layer":
        return nn.LayerNorm(width)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def check_device(device: torch.device, **tensors: Optional[torch.Tensor]) -> None:
    """ValueError unless every given tensor is on the network's ``device`` (no silent copies)."""
    for name, tensor in tensors.items():
        if tensor is not None and tensor.device != device:
            raise ValueError(f"{name} is on {tensor.device} but the network is on {device}; move one of them")


def integral(value):
    """``value`` as a Python int when it is an integer of any kind (e.g. NumPy's), else unchanged."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def require_widths(widths, name: str = "widths") -> list[int]:
    """``widths`` as a non-empty list of positive ints, else a one-line ConfigError."""
    values = [integral(w) for w in widths] if isinstance(widths, (list, tuple)) else []
    ok = values and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in values)
    require(bool(ok), f"{name} must be a non-empty list of positive integers, got {widths!r}")
    return values


def require_dropout(value) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value < 1.0
    require(ok, f"dropout must be a number in [0, 1), got {value!r}")


@dataclass
class DenoiserConfig(Config):
    """Architecture of a :class:`Denoiser` (saved with a checkpoint); validated when built.

    Attributes:
        input_dim: D >= 1, length of the coefficient vector (IdGen: shape dim; ExpGen: expression + jaw dims).
        cond_dim: C >= 0, length of the condition (IdGen: 512 ArcFace; ExpGen: identity + appearance);
            0 = unconditional.
        widths: positive feature widths per level, top to bottleneck; ``None`` -> ``[input_dim, 50, 10]``.
        time_embed_dim: sinusoidal features of the timestep and width of the time MLP (512; even).
        dropout: dropout inside the residual blocks, in [0, 1).
        norm: ``"group"`` (GroupNorm, at most ``num_groups`` groups of >= 4 features) or ``"layer"``.
        num_groups: upper bound on GroupNorm groups (>= 1).
        attn_dim: token width inside the attention blocks.
        attn_heads: attention heads (must divide ``attn_dim``).
        attn_tokens: tokens the hidden vector is projected into (>= 1).
        attn_cond_tokens: tokens the condition is projected into (>= 0; ignored when cond_dim = 0).
        out_norm: normalise before the output layer (False; True only for runs saved before 0.2,
            which is what :meth:`from_dict` assumes when the key is missing).
    """

    input_dim: int
    cond_dim: int
    widths: Optional[list[int]] = None
    time_embed_dim: int = 512
    dropout: float = 0.0
    norm: str = "group"
    num_groups: int = 8
    attn_dim: int = 64
    attn_heads: int = 4
    attn_tokens: int = 4
    attn_cond_tokens: int = 4
    out_norm: bool = False

    def __post_init__(self):
        for name in ("input_dim", "cond_dim", "time_embed_dim", "num_groups", "attn_dim", "attn_heads",
                     "attn_tokens", "attn_cond_tokens"):
            setattr(self, name, integral(getattr(self, name)))
        if self.widths is None and isinstance(self.input_dim, int):
            self.widths = [self.input_dim, 50, 10]
        super().__post_init__()

    def validate(self) -> None:
        require_int(self.input_dim, "input_dim", minimum=1)
        require_int(self.cond_dim, "cond_dim", minimum=0)
        self.widths = require_widths(self.widths)
        require_int(self.time_embed_dim, "time_embed_dim", minimum=2)
        require(self.time_embed_dim % 2 == 0, f"time_embed_dim must be even, got {self.time_embed_dim}")
        require_dropout(self.dropout)
        require_choice(self.norm, "norm", NORMS)
        require_int(self.num_groups, "num_groups", minimum=1)
        require_int(self.attn_dim, "attn_dim", minimum=1)
        require_int(self.attn_heads, "attn_heads", minimum=1)
        require(self.attn_dim % self.attn_heads == 0,
                f"attn_heads ({self.attn_heads}) must divide attn_dim ({self.attn_dim})")
        require_int(self.attn_tokens, "attn_tokens", minimum=1)
        require_int(self.attn_cond_tokens, "attn_cond_tokens", minimum=0)
        require(isinstance(self.out_norm, bool), f"out_norm must be true or false, got {self.out_norm!r}")

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> "DenoiserConfig":
        """Strict :meth:`Config.from_dict`; a config without ``out_norm`` predates it and had the norm."""
        if isinstance(data, dict) and "out_norm" not in data:
            data = {**data, "out_norm": True}
        return super().from_dict(data, where)

    @classmethod
    def for_idgen(cls, shape_dim: int, cond_dim: int = 512, **overrides) -> "DenoiserConfig":
        """IdGen: denoise ``shape_dim`` identity coefficients given a ``cond_dim`` identity embedding.

        Widths ``[shape_dim, 50, 10]`` (the paper's [300, 50, 10] for FLAME) unless overridden.
        """
        overrides.setdefault("widths", [int(shape_dim), 50, 10])
        return cls(input_dim=shape_dim, cond_dim=cond_dim, **overrides)

    @classmethod
    def for_expgen(
        cls, expression_dim: int, jaw_dim: int = 0, identity_dim: int = 512, appearance_dim: int = 512, **overrides
    ) -> "DenoiserConfig":
        """ExpGen: denoise ``expression_dim + jaw_dim`` numbers given ``[identity || appearance]``.

        Widths ``[D, 25, 10]`` (the paper's [53, 25, 10] for FLAME's 50 + 3 jaw) unless overridden.
        """
        d = int(expression_dim) + int(jaw_dim)
        overrides.setdefault("widths", [d, 25, 10])
        return cls(input_dim=d, cond_dim=int(identity_dim) + int(appearance_dim), **overrides)


class SinusoidalTimeEmbedding(nn.Module):
    """(B,) timesteps -> (B, dim) features ``[cos(t f_k), sin(t f_k)]``, f_k = 10000^(-k / (dim/2))."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.to(self.freqs.dtype)[:, None] * self.freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResidualBlock(nn.Module):
    """Residual MLP block with FiLM conditioning; (B, in_dim), (B, emb_dim) -> (B, out_dim)."""

    def __init__(self, in_dim: int, out_dim: int, emb_dim: int, norm: str, num_groups: int, dropout: float):
        super().__init__()
        self.norm1 = make_norm(norm, in_dim, num_groups)
        self.lin1 = nn.Linear(in_dim, out_dim)
        self.film = nn.Linear(emb_dim, 2 * out_dim)
        self.norm2 = make_norm(norm, out_dim, num_groups)
        self.dropout = nn.Dropout(dropout)
        self.lin2 = nn.Linear(out_dim, out_dim)
        self.shortcut = nn.Linear(in_dim, out_dim) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.lin1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb).chunk(2, dim=-1)
        h = self.norm2(h) * (1.0 + scale) + shift
        h = self.lin2(self.dropout(F.silu(h)))
        return h + self.shortcut(x)


class TokenAttention(nn.Module):
    """Attention of hidden-vector tokens over [hidden tokens, time token, condition tokens].

    (B, width), temb (B, T), cond (B, C) or None -> (B, width), residual. See the module docstring.
    """

    def __init__(
        self,
        width: int,
        time_dim: int,
        cond_dim: int,
        dim: int,
        heads: int,
        tokens: int,
        cond_tokens: int,
        norm: str,
        num_groups: int,
    ):
        super().__init__()
        self.dim, self.heads, self.tokens = dim, heads, tokens
        self.cond_tokens = cond_tokens if cond_dim > 0 else 0
        self.norm = make_norm(norm, width, num_groups)
        self.to_tokens = nn.Linear(width, tokens * dim)
        self.time_token = nn.Linear(time_dim, dim)
        self.cond_token = nn.Linear(cond_dim, self.cond_tokens * dim) if self.cond_tokens else None
        n_total = tokens + 1 + self.cond_tokens
        self.pos = nn.Parameter(torch.randn(n_total, dim) * 0.02)
        self.token_norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.proj_out = nn.Linear(tokens * dim, width)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, cond: Optional[torch.Tensor]) -> torch.Tensor:
        B = x.shape[0]
        parts = [self.to_tokens(self.norm(x)).view(B, self.tokens, self.dim), self.time_token(temb)[:, None]]
        if self.cond_token is not None:
            parts.append(self.cond_token(cond).view(B, self.cond_tokens, self.dim))
        seq = self.token_norm(torch.cat(parts, dim=1) + self.pos)  # (B, n_total, dim)
        hd = self.dim // self.heads
        q = self.to_q(seq[:, : self.tokens]).view(B, self.tokens, self.heads, hd).transpose(1, 2)
        k = self.to_k(seq).view(B, -1, self.heads, hd).transpose(1, 2)
        v = self.to_v(seq).view(B, -1, self.heads, hd).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, tokens, hd)
        out = out.transpose(1, 2).reshape(B, self.tokens * self.dim)
        return x + self.proj_out(out)


class _Level(nn.Module):
    """Two residual blocks and an attention block at one width (a container; see Denoiser.forward)."""

    def __init__(self, in_dims: tuple[int, int], width: int, cfg: DenoiserConfig, emb_dim: int):
        super().__init__()
        args = (emb_dim, cfg.norm, cfg.num_groups, cfg.dropout)
        self.res1 = ResidualBlock(in_dims[0], width, *args)
        self.res2 = ResidualBlock(in_dims[1], width, *args)
        self.attn = TokenAttention(
            width,
            cfg.time_embed_dim,
            cfg.cond_dim,
            cfg.attn_dim,
            cfg.attn_heads,
            cfg.attn_tokens,
            cfg.attn_cond_tokens,
            cfg.norm,
            cfg.num_groups,
        )


class Denoiser(nn.Module):
    """Conditional MLP U-Net: ``forward(x_t (B,D), t (B,) long, cond (B,C)) -> (B,D)`` noise prediction.

    Build with :class:`DenoiserConfig` (or ``DenoiserConfig.for_idgen`` / ``for_expgen``).
    """

    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.config = config
        cfg, w = config, config.widths
        emb_dim = cfg.time_embed_dim + cfg.cond_dim
        self.time_proj = SinusoidalTimeEmbedding(cfg.time_embed_dim)
        self.time_mlp = nn.Sequential(
            nn.Linear(cfg.time_embed_dim, cfg.time_embed_dim),
            nn.SiLU(),
            nn.Linear(cfg.time_embed_dim, cfg.time_embed_dim),
        )
        self.input_proj = nn.Linear(cfg.input_dim, w[0])
        self.down_levels = nn.ModuleList(_Level((w[i], w[i]), w[i], cfg, emb_dim) for i in range(len(w) - 1))
        self.down_steps = nn.ModuleList(nn.Linear(w[i], w[i + 1]) for i in range(len(w) - 1))
        args = (emb_dim, cfg.norm, cfg.num_groups, cfg.dropout)
        self.mid = _Level((w[-1], w[-1]), w[-1], cfg, emb_dim)
        self.up_steps = nn.ModuleList(nn.Linear(w[i + 1], w[i]) for i in range(len(w) - 1))
        self.up_levels = nn.ModuleList(_Level((2 * w[i], 2 * w[i]), w[i], cfg, emb_dim) for i in range(len(w) - 1))
        self.final = ResidualBlock(2 * w[0], w[0], *args)
        # No norm before the output layer: on a single vector GroupNorm removes each group's mean
        # and scale, and with w0 = D that costs the output layer as many dimensions as there are
        # groups (those coefficients were never denoised). ``out_norm=True`` only loads old runs.
        self.out_norm = make_norm(cfg.norm, w[0], cfg.num_groups) if cfg.out_norm else nn.Identity()
        self.out = nn.Linear(w[0], cfg.input_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Predict the noise.

        Args:
            x: (B, D) noisy coefficients x_t.
            t: (B,) long timesteps (or one timestep for the whole batch).
            cond: (B, C) condition; ``None`` only when ``cond_dim == 0``.
        Returns:
            (B, D) the network output (the noise for an epsilon-prediction model).
        """
        cfg = self.config
        if x.ndim != 2 or x.shape[1] != cfg.input_dim:
            raise ValueError(f"x must be (B, {cfg.input_dim}), got {tuple(x.shape)}")
        check_device(self.out.weight.device, x=x, cond=cond if cfg.cond_dim > 0 else None)
        B = x.shape[0]
        t = torch.as_tensor(t, device=x.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(B)
        if t.shape[0] != B:
            raise ValueError(f"t must have {B} entries, got {t.shape[0]}")
        if cfg.cond_dim > 0:
            if cond is None or cond.shape != (B, cfg.cond_dim):
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(f"cond must be ({B}, {cfg.cond_dim}), got {got}")
            cond = cond.to(x.dtype)
        else:
            cond = None
        temb = self.time_mlp(self.time_proj(t).to(x.dtype))  # (B, T)
        emb = F.silu(temb) if cond is None else torch.cat([F.silu(temb), cond], dim=-1)  # (B, T + C)

        h0 = self.input_proj(x)
        h, skips = h0, []
        for level, down in zip(self.down_levels, self.down_steps):
            h = level.res1(h, emb)
            skips.append(h)
            h = level.res2(h, emb)
            skips.append(h)
            h = level.attn(h, temb, cond)
            h = down(h)
        h = self.mid.res1(h, emb)
        h = self.mid.attn(h, temb, cond)
        h = self.mid.res2(h, emb)
        for level, up in zip(reversed(self.up_levels), reversed(self.up_steps)):
            h = up(h)
            h = level.res1(torch.cat([h, skips.pop()], dim=-1), emb)
            h = level.res2(torch.cat([h, skips.pop()], dim=-1), emb)
            h = level.attn(h, temb, cond)
        h = self.final(torch.cat([h, h0], dim=-1), emb)
        return self.out(F.silu(self.out_norm(h)))
