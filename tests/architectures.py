"""Small random transformer architectures for tests: ``ArchSpec`` / ``arch_specs()`` / ``TinyDiT``.

A family of tiny diffusion transformers that covers the block shapes the detector must handle
(DiT adaLN blocks, PixArt cross-attention, SD3/FLUX double-stream joint attention, FLUX
single-stream parallel blocks), written in the several ways real model code writes the same
thing (SDPA positional or keyword, manual softmax attention, explicit or ``-1`` reshapes, no-op
dropout and dtype casts, graph breaks inside or between blocks). The eager oracle that runs
these models branch by branch lives in ``oracle.py``.

Block variants. ``cross_attn``, ``joint`` and ``parallel`` are mutually exclusive (at most one
is set); with none set a block is attention + MLP. Every block of a model has the same variant.

- plain / cross: ``x += g·attn(x)``, [``x += cross(x, text)``], ``x += g·mlp(x)``.
- joint: image and text streams with their own norms, projections, gates and MLPs; attention
  runs over ``cat(text, image)`` and its output is split back. As in SD3 the *last* joint
  block drops its text output (its text stream only supplies keys and values), so it has one
  ``joint_attn`` region and one ``mlp`` region; the others have two of each.
- parallel: ``x += g·proj_out(cat(attn(h), act(mlp_in(h))))`` with ``h`` one modulated norm.

With ``adaln`` the modulation is ``Linear(SiLU(c))`` chunked into 6 (shift, scale, gate for
attention and for the MLP; 3 for a parallel block). Without it the blocks are plain pre-norm
with no gates, and ``c`` is added to the embedded tokens so the timestep still reaches the graph.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import Tensor, nn


__all__ = [
    "ArchSpec",
    "arch_specs",
    "TinyDiT",
    "expected_regions",
    "region_tokens",
    "make_inputs",
    "timesteps",
]

Mlp = Literal["gelu", "gelu_tanh", "silu", "swiglu"]
Norm = Literal["layer", "rms"]
Attention = Literal["sdpa", "manual"]

MIXING = ("attn", "joint_attn")
GRAPH_BREAKS = ("none", "inside", "between")
_FREQ_DIM = 16


# --------------------------------------------------------------------------------------------
# Specs


@dataclass(frozen=True)
class ArchSpec:
    """Shape of one tiny DiT and of its inputs. See the module docstring for the variants."""

    depth: int = 2
    width: int = 16
    heads: int = 2
    mlp: Mlp = "gelu"
    norm: Norm = "layer"
    adaln: bool = True
    cross_attn: bool = False
    joint: bool = False
    parallel: bool = False
    attention: Attention = "sdpa"
    sdpa_kwargs: bool = False      # call SDPA with keyword arguments (as diffusers does)
    batch: int = 2
    tokens: int = 8
    text_tokens: int = 4
    explicit_shapes: bool = False  # reshape with sizes read from x.shape instead of -1
    graph_break: str = "none"      # "inside" every block (Dynamo reuses one graph for all blocks),
                                   # "between" blocks, or "none"

    def __post_init__(self) -> None:
        checks = {
            "depth in 1..3": 1 <= self.depth <= 3,
            "heads in 1..4": 1 <= self.heads <= 4,
            "width in 8..32": 8 <= self.width <= 32,
            "width a multiple of heads": self.width % self.heads == 0,
            "batch in 1..3": 1 <= self.batch <= 3,
            "tokens in 4..24": 4 <= self.tokens <= 24,
            "text_tokens in 2..6": 2 <= self.text_tokens <= 6,
            "at most one of cross_attn/joint/parallel": self.cross_attn + self.joint + self.parallel <= 1,
            "known mlp": self.mlp in ("gelu", "gelu_tanh", "silu", "swiglu"),
            "known norm": self.norm in ("layer", "rms"),
            "known attention": self.attention in ("sdpa", "manual"),
            "known graph_break": self.graph_break in GRAPH_BREAKS,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid ArchSpec {self}: {failed}")

    @property
    def uses_text(self) -> bool:
        return self.cross_attn or self.joint

    @property
    def variant(self) -> str:
        return "cross" if self.cross_attn else "joint" if self.joint else "parallel" if self.parallel else "plain"


@st.composite
def arch_specs(draw, **fixed) -> ArchSpec:
    """Hypothesis strategy over ``ArchSpec``; keyword arguments pin fields to given values."""

    def pick(name, strategy):
        return fixed[name] if name in fixed else draw(strategy)

    flags = ("cross_attn", "joint", "parallel")
    pinned = [f for f in flags if fixed.get(f) is True]
    if len(pinned) > 1:
        raise ValueError(f"at most one of {flags} can be pinned to True, got {pinned}")
    allowed = pinned or ["plain"] + [f for f in flags if fixed.get(f) is not False]
    variant = draw(st.sampled_from(allowed))
    heads = pick("heads", st.integers(1, 4))
    width = pick("width", st.sampled_from([w for w in range(8, 33) if w % heads == 0]))
    return ArchSpec(
        depth=pick("depth", st.integers(1, 3)),
        width=width,
        heads=heads,
        mlp=pick("mlp", st.sampled_from(("gelu", "gelu_tanh", "silu", "swiglu"))),
        norm=pick("norm", st.sampled_from(("layer", "rms"))),
        adaln=pick("adaln", st.booleans()),
        cross_attn=variant == "cross_attn",
        joint=variant == "joint",
        parallel=variant == "parallel",
        attention=pick("attention", st.sampled_from(("sdpa", "manual"))),
        sdpa_kwargs=pick("sdpa_kwargs", st.booleans()),
        batch=pick("batch", st.integers(1, 3)),
        tokens=pick("tokens", st.integers(4, 24)),
        text_tokens=pick("text_tokens", st.integers(2, 6)),
        explicit_shapes=pick("explicit_shapes", st.booleans()),
        graph_break=pick("graph_break", st.just("none")),
    )


def _region_table(spec: ArchSpec) -> list[tuple[int, str, int]]:
    """(block, kind, token count) of every region, in graph order."""
    N, T = spec.tokens, spec.text_tokens
    table: list[tuple[int, str, int]] = []
    for b in range(spec.depth):
        if spec.parallel:
            table.append((b, "parallel", N))
        elif spec.joint and b < spec.depth - 1:
            table += [(b, "joint_attn", N), (b, "joint_attn", T), (b, "mlp", N), (b, "mlp", T)]
        elif spec.joint:  # last block: the text output is dropped (SD3 context_pre_only)
            table += [(b, "joint_attn", N), (b, "mlp", N)]
        else:
            table.append((b, "attn", N))
            if spec.cross_attn:
                table.append((b, "cross_attn", N))
            table.append((b, "mlp", N))
    return table


def expected_regions(spec: ArchSpec) -> list[tuple[int, str]]:
    """(block, kind) of every region in graph order: the order the branch outputs are computed."""
    return [(b, kind) for b, kind, _ in _region_table(spec)]


def region_tokens(spec: ArchSpec) -> list[int]:
    """Token count N of each region, in ``expected_regions`` order (text-stream regions: T)."""
    return [n for _, _, n in _region_table(spec)]


# --------------------------------------------------------------------------------------------
# Building blocks


class RMSNorm(nn.Module):
    """Hand-written RMS norm, as diffusers writes it (so the graph shows its elementwise ops)."""

    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return y if self.weight is None else y * self.weight


def make_norm(spec: ArchSpec, affine: bool) -> nn.Module:
    if spec.norm == "rms":
        return RMSNorm(spec.width, affine=affine)
    return nn.LayerNorm(spec.width, eps=1e-6, elementwise_affine=affine)


def maybe_break(spec: ArchSpec, where: str) -> None:
    """A Dynamo graph break at ``where`` when the spec asks for one (a no-op when run eagerly)."""
    if spec.graph_break == where:
        torch._dynamo.graph_break()


def modulate(h: Tensor, shift: Optional[Tensor], scale: Optional[Tensor]) -> Tensor:
    """adaLN modulation; shift/scale are [B, 1, C] so any number of token rows works."""
    return h if shift is None else h * (1 + scale) + shift


def residual(x: Tensor, gate: Optional[Tensor], branch: Tensor) -> Tensor:
    return x + branch if gate is None else x + gate * branch


def activation(kind: str, h: Tensor) -> Tensor:
    if kind == "gelu":
        return F.gelu(h)
    if kind == "gelu_tanh":
        return F.gelu(h, approximate="tanh")
    if kind == "silu":
        return F.silu(h)
    a, b = h.chunk(2, dim=-1)  # swiglu
    return F.silu(a) * b


class Attention(nn.Module):
    """Multi-head attention core (no projections): split heads, attend, merge heads."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.head_dim = spec.width // spec.heads

    def split(self, x: Tensor) -> Tensor:
        spec = self.spec
        if spec.explicit_shapes:
            b, n, _ = x.shape
            return x.reshape(b, n, spec.heads, self.head_dim).transpose(1, 2)
        return x.reshape(x.shape[0], -1, spec.heads, self.head_dim).transpose(1, 2)

    def merge(self, o: Tensor) -> Tensor:
        spec = self.spec
        if spec.explicit_shapes:
            b, h, n, d = o.shape
            return o.transpose(1, 2).reshape(b, n, h * d)
        return o.transpose(1, 2).reshape(o.shape[0], -1, spec.width)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k, v = self.split(q), self.split(k), self.split(v)
        if self.spec.attention == "manual":
            scale = self.head_dim**-0.5
            o = torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v
        elif self.spec.sdpa_kwargs:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False)
        else:
            o = F.scaled_dot_product_attention(q, k, v)
        return self.merge(o).to(q.dtype)  # no-op cast, as model code often has


class FeedForward(nn.Module):
    """fc1 -> activation -> (eval) dropout -> fc2; token-wise, so any number of rows works."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        hidden = 2 * spec.width
        self.kind = spec.mlp
        self.fc1 = nn.Linear(spec.width, 2 * hidden if spec.mlp == "swiglu" else hidden)
        self.drop = nn.Dropout(0.1)
        self.fc2 = nn.Linear(hidden, spec.width)

    def forward(self, h: Tensor) -> Tensor:
        return self.fc2(self.drop(activation(self.kind, self.fc1(h))))


def _adaln(spec: ArchSpec, chunks: int) -> Optional[nn.Linear]:
    return nn.Linear(spec.width, chunks * spec.width) if spec.adaln else None


def _chunks(linear: Optional[nn.Linear], c: Tensor, n: int) -> tuple[Optional[Tensor], ...]:
    """``n`` modulation tensors [B, 1, C] from c, or ``n`` Nones without adaLN."""
    if linear is None:
        return (None,) * n
    return linear(F.silu(c))[:, None].chunk(n, dim=-1)


# --------------------------------------------------------------------------------------------
# Blocks. Each exposes its branches so the oracle can run them on a subset of token rows.
# ``mod`` is the tuple returned by ``modulation(c)``; its entries are None without adaLN.


class DiTBlock(nn.Module):
    """Self-attention (+ optional PixArt cross-attention) + MLP, DiT-style adaLN or pre-norm."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        C = spec.width
        self.adaLN = _adaln(spec, 6)
        self.norm1 = make_norm(spec, affine=not spec.adaln)
        self.to_qkv = nn.Linear(C, 3 * C)
        self.attn = Attention(spec)
        self.to_out = nn.Sequential(nn.Linear(C, C), nn.Dropout(0.1))
        if spec.cross_attn:
            self.norm_cross = make_norm(spec, affine=True)
            self.cross_q = nn.Linear(C, C)
            self.cross_kv = nn.Linear(C, 2 * C)
            self.cross_out = nn.Linear(C, C)
        self.norm2 = make_norm(spec, affine=not spec.adaln)
        self.ff = FeedForward(spec)

    def modulation(self, c: Tensor) -> tuple[Optional[Tensor], ...]:
        return _chunks(self.adaLN, c, 6)

    def attn_branch(self, x: Tensor, mod) -> Tensor:
        h = modulate(self.norm1(x), mod[0], mod[1])
        q, k, v = self.to_qkv(h).chunk(3, dim=-1)
        return self.to_out(self.attn(q, k, v))

    def attn_heads(self, x: Tensor, mod) -> tuple[Tensor, Tensor, Tensor]:
        """The self-attention's q, k, v split into heads [B, H, N, D] (what token scores read)."""
        h = modulate(self.norm1(x), mod[0], mod[1])
        return tuple(self.attn.split(part) for part in self.to_qkv(h).chunk(3, dim=-1))  # type: ignore[return-value]

    def cross_heads(self, x: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        """The cross-attention's q [B, H, N, D] and k [B, H, T, D]."""
        q = self.cross_q(self.norm_cross(x))
        k, _ = self.cross_kv(text).chunk(2, dim=-1)
        return self.attn.split(q), self.attn.split(k)

    def gate_attn(self, mod) -> Optional[Tensor]:
        return mod[2]

    def cross_branch(self, x: Tensor, text: Tensor) -> Tensor:
        """Queries from the given rows, keys/values from all text tokens: token-wise in x."""
        q = self.cross_q(self.norm_cross(x))
        k, v = self.cross_kv(text).chunk(2, dim=-1)
        return self.cross_out(self.attn(q, k, v))

    def mlp_branch(self, x: Tensor, mod) -> Tensor:
        return self.ff(modulate(self.norm2(x), mod[3], mod[4]))

    def gate_mlp(self, mod) -> Optional[Tensor]:
        return mod[5]

    def forward(self, x: Tensor, c: Tensor, text: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
        mod = self.modulation(c)
        x = residual(x, self.gate_attn(mod), self.attn_branch(x, mod))
        maybe_break(self.spec, "inside")
        if self.spec.cross_attn:
            x = x + self.cross_branch(x, text)
        x = residual(x, self.gate_mlp(mod), self.mlp_branch(x, mod))
        return x, text


class JointBlock(nn.Module):
    """SD3/FLUX double-stream block. ``text_continues=False`` is SD3's context_pre_only."""

    def __init__(self, spec: ArchSpec, text_continues: bool) -> None:
        super().__init__()
        self.spec = spec
        self.text_continues = text_continues
        C = spec.width
        self.adaLN = _adaln(spec, 6)
        self.adaLN_text = _adaln(spec, 6)
        self.norm1 = make_norm(spec, affine=not spec.adaln)
        self.norm1_text = make_norm(spec, affine=not spec.adaln)
        self.to_qkv = nn.Linear(C, 3 * C)
        self.text_qkv = nn.Linear(C, 3 * C)
        self.attn = Attention(spec)
        self.to_out = nn.Sequential(nn.Linear(C, C), nn.Dropout(0.1))
        self.norm2 = make_norm(spec, affine=not spec.adaln)
        self.ff = FeedForward(spec)
        if text_continues:
            self.text_out = nn.Linear(C, C)
            self.norm2_text = make_norm(spec, affine=not spec.adaln)
            self.ff_text = FeedForward(spec)

    def modulation(self, c: Tensor) -> tuple[tuple[Optional[Tensor], ...], tuple[Optional[Tensor], ...]]:
        """(image modulation, text modulation), 6 entries each."""
        return _chunks(self.adaLN, c, 6), _chunks(self.adaLN_text, c, 6)

    def joint_attn_branch(self, x: Tensor, text: Tensor, mod) -> tuple[Tensor, Optional[Tensor]]:
        """(P_img, P_txt) of attention over cat(text, image); P_txt is None in the last block."""
        m_img, m_txt = mod
        h = modulate(self.norm1(x), m_img[0], m_img[1])
        ht = modulate(self.norm1_text(text), m_txt[0], m_txt[1])
        qkv = torch.cat([self.text_qkv(ht), self.to_qkv(h)], dim=1)
        q, k, v = qkv.chunk(3, dim=-1)
        o = self.attn(q, k, v)
        if self.spec.explicit_shapes:
            o_txt, o_img = o.split([text.shape[1], x.shape[1]], dim=1)
        else:
            o_txt, o_img = o[:, : text.shape[1]], o[:, text.shape[1] :]
        p_img = self.to_out(o_img)
        p_txt = self.text_out(o_txt) if self.text_continues else None
        return p_img, p_txt

    def gate_attn(self, mod) -> Optional[Tensor]:
        return mod[0][2]

    def gate_attn_text(self, mod) -> Optional[Tensor]:
        return mod[1][2]

    def mlp_branch(self, x: Tensor, mod) -> Tensor:
        return self.ff(modulate(self.norm2(x), mod[0][3], mod[0][4]))

    def gate_mlp(self, mod) -> Optional[Tensor]:
        return mod[0][5]

    def text_mlp_branch(self, text: Tensor, mod) -> Tensor:
        return self.ff_text(modulate(self.norm2_text(text), mod[1][3], mod[1][4]))

    def gate_mlp_text(self, mod) -> Optional[Tensor]:
        return mod[1][5]

    def forward(self, x: Tensor, c: Tensor, text: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        # Written so that branch outputs and residual joins come in the same order:
        # attn(img), attn(txt), mlp(img), mlp(txt).
        maybe_break(self.spec, "inside")  # at the start: a break later would split the text residual
        mod = self.modulation(c)
        p_img, p_txt = self.joint_attn_branch(x, text, mod)
        x = residual(x, self.gate_attn(mod), p_img)
        if not self.text_continues:
            return residual(x, self.gate_mlp(mod), self.mlp_branch(x, mod)), None
        text = residual(text, self.gate_attn_text(mod), p_txt)
        x = residual(x, self.gate_mlp(mod), self.mlp_branch(x, mod))
        text = residual(text, self.gate_mlp_text(mod), self.text_mlp_branch(text, mod))
        return x, text


class ParallelBlock(nn.Module):
    """FLUX single-stream block: one norm, attention and MLP side by side, one gate."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        C = spec.width
        hidden = 2 * C
        self.adaLN = _adaln(spec, 3)
        self.norm = make_norm(spec, affine=not spec.adaln)
        self.to_qkv = nn.Linear(C, 3 * C)
        self.attn = Attention(spec)
        self.mlp_in = nn.Linear(C, 2 * hidden if spec.mlp == "swiglu" else hidden)
        self.drop = nn.Dropout(0.1)
        self.proj_out = nn.Linear(C + hidden, C)

    def modulation(self, c: Tensor) -> tuple[Optional[Tensor], ...]:
        return _chunks(self.adaLN, c, 3)

    def parallel_input(self, x: Tensor, mod) -> Tensor:
        return modulate(self.norm(x), mod[0], mod[1])

    def parallel_attn(self, h: Tensor) -> Tensor:
        """The attention half: merged-heads attention output [B, N, C]; token-mixing."""
        q, k, v = self.to_qkv(h).chunk(3, dim=-1)
        return self.attn(q, k, v)

    def attn_heads(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The attention half's q, k, v split into heads [B, H, N, D]."""
        return tuple(self.attn.split(part) for part in self.to_qkv(h).chunk(3, dim=-1))  # type: ignore[return-value]

    def parallel_mlp(self, h: Tensor) -> Tensor:
        """The MLP half's hidden activations; token-wise."""
        return self.drop(activation(self.spec.mlp, self.mlp_in(h)))

    def parallel_out(self, attn_out: Tensor, mlp_hidden: Tensor) -> Tensor:
        return self.proj_out(torch.cat([attn_out, mlp_hidden], dim=-1))

    def parallel_branch(self, x: Tensor, mod) -> Tensor:
        h = self.parallel_input(x, mod)
        return self.parallel_out(self.parallel_attn(h), self.parallel_mlp(h))

    def gate_parallel(self, mod) -> Optional[Tensor]:
        return mod[2]

    def forward(self, x: Tensor, c: Tensor, text: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
        maybe_break(self.spec, "inside")
        mod = self.modulation(c)
        return residual(x, self.gate_parallel(mod), self.parallel_branch(x, mod)), text


# --------------------------------------------------------------------------------------------
# Model


class TinyDiT(nn.Module):
    """A tiny DiT built from an ``ArchSpec``; seeded and in eval mode on construction.

    ``forward(x [B, N, C], t [B], text [B, T, C] or None) -> [B, N, C]``. The weights are not
    zero-initialised (unlike DiT's gates) so that caching visibly changes the output.
    """

    def __init__(self, spec: ArchSpec, seed: int = 0) -> None:
        super().__init__()
        self.spec = spec
        C = spec.width
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.x_embed = nn.Linear(C, C)
            self.t_mlp = nn.Sequential(nn.Linear(_FREQ_DIM, C), nn.SiLU(), nn.Linear(C, C))
            self.text_embed = nn.Linear(C, C) if spec.uses_text else None
            if spec.joint:
                blocks = [JointBlock(spec, text_continues=i < spec.depth - 1) for i in range(spec.depth)]
            elif spec.parallel:
                blocks = [ParallelBlock(spec) for _ in range(spec.depth)]
            else:
                blocks = [DiTBlock(spec) for _ in range(spec.depth)]
            self.blocks = nn.ModuleList(blocks)
            self.final_mod = _adaln(spec, 2)
            self.norm_out = make_norm(spec, affine=not spec.adaln)
            self.proj_out = nn.Linear(C, C)
        self.eval()

    def timestep_embedding(self, t: Tensor, dtype: torch.dtype) -> Tensor:
        half = _FREQ_DIM // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(dtype)

    def embed(self, x: Tensor, t: Tensor, text: Optional[Tensor]) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """(tokens, conditioning c [B, C], projected text): everything before the blocks."""
        c = self.t_mlp(self.timestep_embedding(t, x.dtype))
        x = self.x_embed(x)
        if not self.spec.adaln:
            x = x + c[:, None]
        if self.text_embed is not None:
            if text is None:
                raise ValueError(f"spec {self.spec.variant!r} needs text")
            text = self.text_embed(text)
        else:
            text = None
        return x, c, text

    def final(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = _chunks(self.final_mod, c, 2)
        return self.proj_out(modulate(self.norm_out(x), shift, scale))

    def forward(self, x: Tensor, t: Tensor, text: Optional[Tensor] = None) -> Tensor:
        x, c, text = self.embed(x, t, text)
        for i, block in enumerate(self.blocks):
            if i:
                maybe_break(self.spec, "between")
            x, text = block(x, c, text)
        return self.final(x, c)


def make_inputs(spec: ArchSpec, seed: int = 0) -> tuple[Tensor, Optional[Tensor]]:
    """(x, text) for one call; text is None when the spec takes none."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(spec.batch, spec.tokens, spec.width, generator=g)
    text = torch.randn(spec.batch, spec.text_tokens, spec.width, generator=g) if spec.uses_text else None
    return x, text


def timesteps(spec: ArchSpec, steps: int, start: float = 999.0) -> list[Tensor]:
    """Strictly decreasing timesteps [B] of one generation, as a sampler would pass them."""
    values = torch.linspace(start, 0.0, steps) if steps > 1 else torch.tensor([start])
    return [torch.full((spec.batch,), float(v)) for v in values]
