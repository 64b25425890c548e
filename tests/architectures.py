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
  ``joint_attn`` region and one ``mlp`` region; the others have two of each. With
  ``shared_mlp`` (CogVideoX) both streams go through ONE feed-forward over
  ``cat(text, image)`` whose output is sliced back into them (the last block keeps the image
  rows only).
- parallel: ``x += g·proj_out(cat(attn(h), act(mlp_in(h))))`` with ``h`` one modulated norm.

With ``adaln`` the modulation is ``Linear(SiLU(c))`` chunked into 6 (shift, scale, gate for
attention and for the MLP; 3 for a parallel block). Without it the blocks are plain pre-norm
with no gates, and ``c`` is added to the embedded tokens so the timestep still reaches the graph.

Research-code options (``ArchSpec`` fields; ``arch_specs(research=False)`` keeps those that
change the block layout off): post-norm residuals, RMS qk-norm, rotary embeddings (cos/sin
tables computed in ``forward`` and passed to every block, also on the cross-attention queries so
a partial step must gather them for its rows), key padding masks, grouped-query attention,
register tokens, two self-attention residuals per block, one block module called twice, blocks
returning a tensor / tuple / dict, and a conv patch embedding / unpatchify around the blocks.
Per-call tensors the blocks need (rope tables, masks) travel in a ``ctx`` dict from
``TinyDiT.context``; branch methods take it as an optional keyword.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import Tensor, nn

__all__ = [
    "ArchSpec",
    "TinyDiT",
    "arch_specs",
    "expected_regions",
    "make_inputs",
    "region_tokens",
    "timesteps",
]

Mlp = Literal["gelu", "gelu_tanh", "silu", "swiglu"]
Norm = Literal["layer", "rms"]
AttentionKind = Literal["sdpa", "manual", "mha"]
KeyMask = Literal["none", "bool", "additive"]
BlockOutput = Literal["tensor", "tuple", "dict"]

MIXING = ("attn", "joint_attn")
GRAPH_BREAKS = ("none", "inside", "between")
_FREQ_DIM = 16
PATCH = 2          # wrapper: patch size of the conv patch embedding
IN_CHANNELS = 3    # wrapper: channels of the image input


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
    attention: AttentionKind = "sdpa"
    sdpa_kwargs: bool = False      # call SDPA with keyword arguments (as diffusers does)
    batch: int = 2
    tokens: int = 8
    text_tokens: int = 4
    explicit_shapes: bool = False  # reshape with sizes read from x.shape instead of -1
    graph_break: str = "none"      # "inside" every block (Dynamo reuses one graph for all blocks),
                                   # "between" blocks, or "none"
    # research-code layouts (plain and cross-attention blocks):
    seq_first: bool = False        # the residual stream is [tokens, batch, dim] inside the blocks
    time_table: bool = False       # the timestep embedding is read from a precomputed sin/cos table
    gate_in_norm: bool = False     # x + norm(gate * branch): the adaLN gate applied inside a norm
    post_norm: bool = False        # x = norm(x + branch) (plain / cross blocks without adaLN)
    qk_norm: bool = False          # RMS norm over the head dim of q and k (SD3 / FLUX)
    rope: bool = False             # rotary embedding of q and k (cross-attention: q by image position)
    key_mask: str = "none"         # "bool" / "additive" key padding mask: trailing keys of batch row 0
    kv_heads: int = 0              # grouped-query attention: kv heads (0: as many as query heads)
    registers: int = 0             # learned register tokens in front of the image tokens
    two_attn: bool = False         # two self-attention residuals per block (plain blocks)
    shared_block: bool = False     # block 0 is called twice in a row (same weights, own caches)
    block_output: str = "tuple"    # a block returns x, (x, text) or {"x": x, "text": text}
    shared_mlp: bool = False       # joint blocks: one feed-forward over cat(text, image), sliced back
    wrapper: bool = False          # image [B, 3, H, W] in and out: conv patch embed, unpatchify + conv

    def __post_init__(self) -> None:
        checks = {
            "depth in 1..3": 1 <= self.depth <= 3,
            "heads in 1..4": 1 <= self.heads <= 4,
            "width in 8..32": 8 <= self.width <= 32,
            "width a multiple of heads": self.width % self.heads == 0,
            "batch in 1..3": 1 <= self.batch <= 3,
            "tokens in 4..96": 4 <= self.tokens <= 96,
            "text_tokens in 2..6": 2 <= self.text_tokens <= 6,
            "at most one of cross_attn/joint/parallel": self.cross_attn + self.joint + self.parallel <= 1,
            "known mlp": self.mlp in ("gelu", "gelu_tanh", "silu", "swiglu"),
            "known norm": self.norm in ("layer", "rms"),
            "known attention": self.attention in ("sdpa", "manual", "mha"),
            "known graph_break": self.graph_break in GRAPH_BREAKS,
            "seq_first with plain or cross blocks": not self.seq_first or self.variant in ("plain", "cross"),
            "gate_in_norm with adaLN plain or cross blocks": not self.gate_in_norm or (
                self.adaln and self.variant in ("plain", "cross")),
            "post_norm with plain or cross blocks without adaLN": not self.post_norm or (
                not self.adaln and self.variant in ("plain", "cross")),
            "qk_norm, rope, key_mask and kv_heads need sdpa or manual attention": self.attention != "mha" or not (
                self.qk_norm or self.rope or self.key_mask != "none" or self.kv_heads not in (0, self.heads)),
            "rope needs an even head dim": not self.rope or (self.width // self.heads) % 2 == 0,
            "known key_mask": self.key_mask in ("none", "bool", "additive"),
            "kv_heads divides heads": self.kv_heads == 0 or (
                1 <= self.kv_heads <= self.heads and self.heads % self.kv_heads == 0),
            "registers in 0..4": 0 <= self.registers <= 4,
            "two_attn with plain blocks": not self.two_attn or self.variant == "plain",
            "shared_block without joint blocks": not self.shared_block or not self.joint,
            "known block_output": self.block_output in ("tensor", "tuple", "dict"),
            "joint blocks return their text": not (self.joint and self.block_output == "tensor"),
            "shared_mlp with joint blocks": not self.shared_mlp or self.joint,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid ArchSpec {self}: {failed}")

    @property
    def uses_text(self) -> bool:
        return self.cross_attn or self.joint

    @property
    def kv(self) -> int:
        """Number of key / value heads."""
        return self.kv_heads or self.heads

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def stream_tokens(self) -> int:
        """Tokens of the image stream inside the blocks (registers included)."""
        return self.tokens + self.registers

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) token grid of the wrapper's patch embedding: the most nearly square one."""
        h = max(d for d in range(1, math.isqrt(self.tokens) + 1) if self.tokens % d == 0)
        return h, self.tokens // h

    @property
    def block_calls(self) -> list[int]:
        """Module index of each block call, in order (``shared_block``: block 0 twice)."""
        return ([0] if self.shared_block else []) + list(range(self.depth))

    @property
    def variant(self) -> str:
        return "cross" if self.cross_attn else "joint" if self.joint else "parallel" if self.parallel else "plain"


#: options that change the blocks' layout or the model's inputs; ``research=False`` keeps them off
RESEARCH_OFF = {"seq_first": False, "time_table": False, "gate_in_norm": False, "post_norm": False, "rope": False,
                    "key_mask": "none", "registers": 0, "two_attn": False, "shared_block": False, "wrapper": False}


@st.composite
def arch_specs(draw, research: bool = True, graph_breaks: bool = False, **fixed) -> ArchSpec:
    """Hypothesis strategy over ``ArchSpec``; keyword arguments pin fields to given values.
    ``research=False`` keeps to batch-first streams, SDPA or softmax attention, gates outside
    any norm, sinusoidal timesteps, pre-norm blocks with one call each and token inputs (the
    layouts diffusers uses, which tests that call branch methods directly rely on).
    ``graph_breaks`` also draws graph breaks inside and between blocks (else none).

    Most examples are small (4..24 tokens); about one in eight has 65..80 tokens, more than the
    default ``score_queries`` (64), so the sampled attention-score estimate runs too."""

    if not research:
        fixed = {**RESEARCH_OFF, **fixed}

    def pick(name, strategy):
        return fixed[name] if name in fixed else draw(strategy)

    def maybe(name, ok, strategy, off):
        """Draw ``name`` only where the rest of the spec allows it."""
        return pick(name, strategy) if ok else fixed.get(name, off)

    flags = ("cross_attn", "joint", "parallel")
    pinned = [f for f in flags if fixed.get(f) is True]
    if len(pinned) > 1:
        raise ValueError(f"at most one of {flags} can be pinned to True, got {pinned}")
    allowed = pinned or ["plain"] + [f for f in flags if fixed.get(f) is not False]
    variant = draw(st.sampled_from(allowed))
    plain_or_cross = variant in ("plain", "cross_attn")
    heads = pick("heads", st.integers(1, 4))
    adaln = pick("adaln", st.booleans())
    attention = pick("attention", st.sampled_from(("sdpa", "manual", "mha") if research else ("sdpa", "manual")))
    rope = maybe("rope", attention != "mha", st.booleans(), False)
    widths = [w for w in range(8, 33) if w % heads == 0 and (not rope or (w // heads) % 2 == 0)]
    width = pick("width", st.sampled_from(widths))
    key_mask = maybe("key_mask", attention != "mha", st.sampled_from(("none", "none", "bool", "additive")), "none")
    # A break inside a block leaves the MLP in a graph of its own; without adaLN nothing there
    # shows which leading axis holds the tokens, and the pass reuses that MLP whole (pinned in
    # test_research_layouts.py), which the oracle does not model: only drawn with adaLN.
    breaks = GRAPH_BREAKS if adaln else tuple(b for b in GRAPH_BREAKS if b != "inside")
    graph_break = pick("graph_break", st.sampled_from(breaks) if graph_breaks else st.just("none"))
    big = "tokens" not in fixed and draw(st.integers(0, 7)) == 7
    tokens = pick("tokens", st.integers(65, 80) if big else st.integers(4, 24))
    return ArchSpec(
        depth=pick("depth", st.integers(1, 2) if big else st.integers(1, 3)),
        width=width,
        heads=heads,
        mlp=pick("mlp", st.sampled_from(("gelu", "gelu_tanh", "silu", "swiglu"))),
        norm=pick("norm", st.sampled_from(("layer", "rms"))),
        adaln=adaln,
        cross_attn=variant == "cross_attn",
        joint=variant == "joint",
        parallel=variant == "parallel",
        attention=attention,
        sdpa_kwargs=pick("sdpa_kwargs", st.booleans()),
        batch=pick("batch", st.integers(1, 3)),
        tokens=tokens,
        text_tokens=pick("text_tokens", st.integers(2, 6)),
        explicit_shapes=pick("explicit_shapes", st.booleans()),
        graph_break=graph_break,
        # across a break inside a block, only the adaLN modulation shows a sequence-first MLP
        # stream's token axis; without it that region is reused whole (test_research_layouts.py),
        # which the oracle does not model
        seq_first=maybe("seq_first", plain_or_cross and (graph_break != "inside" or adaln), st.booleans(), False),
        time_table=pick("time_table", st.booleans()),
        gate_in_norm=maybe("gate_in_norm", plain_or_cross and adaln, st.booleans(), False),
        post_norm=maybe("post_norm", plain_or_cross and not adaln, st.booleans(), False),
        qk_norm=maybe("qk_norm", attention != "mha", st.booleans(), False),
        rope=rope,
        key_mask=key_mask,
        kv_heads=maybe("kv_heads", attention != "mha",
                       st.sampled_from([0] + [d for d in range(1, heads) if heads % d == 0]), 0),
        registers=pick("registers", st.sampled_from((0, 0, 1, 4))),
        two_attn=maybe("two_attn", variant == "plain", st.booleans(), False),
        shared_block=maybe("shared_block", variant != "joint", st.integers(0, 3).map(lambda i: i == 3), False),
        block_output=pick("block_output", st.sampled_from(("tuple", "dict") if variant == "joint"
                                                          else ("tuple", "tensor", "dict"))),
        wrapper=pick("wrapper", st.integers(0, 3).map(lambda i: i == 3)),
        shared_mlp=maybe("shared_mlp", variant == "joint", st.booleans(), False),
    )


def _region_table(spec: ArchSpec) -> list[tuple[int, str, int]]:
    """(block, kind, token count) of every region, in graph order."""
    N, T = spec.stream_tokens, spec.text_tokens
    table: list[tuple[int, str, int]] = []
    for b, module in enumerate(spec.block_calls):  # blocks are numbered per call
        if spec.parallel:
            table.append((b, "parallel", N))
        elif spec.joint and module < spec.depth - 1:
            table += [(b, "joint_attn", N), (b, "joint_attn", T), (b, "mlp", N), (b, "mlp", T)]
        elif spec.joint:  # last block: the text output is dropped (SD3 context_pre_only)
            table += [(b, "joint_attn", N), (b, "mlp", N)]
        else:
            table += [(b, "attn", N)] * (2 if spec.two_attn else 1)
            if spec.cross_attn:
                table.append((b, "cross_attn", N))
            table.append((b, "mlp", N))
    return table


def expected_regions(spec: ArchSpec) -> list[tuple[int, str]]:
    """(block, kind) of every region in graph order: the order the branch outputs are computed.
    Blocks are numbered per call: the two calls of a ``shared_block`` are blocks 0 and 1."""
    return [(b, kind) for b, kind, _ in _region_table(spec)]


def region_tokens(spec: ArchSpec) -> list[int]:
    """Token count of each region, in ``expected_regions`` order: image-stream regions N plus the
    registers, text-stream regions T."""
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


def modulate(h: Tensor, shift: Tensor | None, scale: Tensor | None) -> Tensor:
    """adaLN modulation; shift/scale are [B, 1, C] so any number of token rows works."""
    return h if shift is None else h * (1 + scale) + shift


def residual(x: Tensor, gate: Tensor | None, branch: Tensor) -> Tensor:
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


Ctx = dict  # per-call tensors the blocks read: rope tables, key masks (see ``TinyDiT.context``)


def _kw(ctx: Ctx | None) -> dict:
    """``ctx=`` only when there is one, so branch methods replaced by two-argument lambdas (as
    some tests do) keep working for specs without rope or masks."""
    return {"ctx": ctx} if ctx else {}


def rope_tables(positions: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """(cos, sin) [1, 1, N, dim] of rotary embeddings at the given token positions [N]."""
    inv = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim))
    angles = positions.float()[:, None] * inv[None]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos()[None, None], angles.sin()[None, None]


def apply_rope(x: Tensor, rope: tuple[Tensor, Tensor] | None) -> Tensor:
    """x [B, H, N, D] rotated by (cos, sin) [*, 1, N, D] (the rotate-half form)."""
    if rope is None:
        return x
    cos, sin = rope
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Attention(nn.Module):
    """Multi-head attention core: split heads, attend, merge heads; or ``nn.MultiheadAttention``
    (``attention="mha"``, its own projections, as research code uses it). Works on the stream's
    layout: [B, N, C], or [N, B, C] with ``seq_first``. Keys and values have ``spec.kv`` heads
    (grouped-query attention: expanded with ``repeat_interleave``); optional RMS qk-norm, rotary
    embedding and key mask."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.head_dim = spec.head_dim
        if spec.attention == "mha":
            self.mha = nn.MultiheadAttention(spec.width, spec.heads, batch_first=not spec.seq_first)
        if spec.qk_norm:
            self.norm_q = RMSNorm(self.head_dim)
            self.norm_k = RMSNorm(self.head_dim)

    def split(self, x: Tensor, heads: int | None = None) -> Tensor:
        """[B, H, N, D] from the stream layout."""
        spec = self.spec
        heads = heads or spec.heads
        if spec.seq_first:
            n, b, _ = x.shape
            return x.reshape(n, b, heads, self.head_dim).permute(1, 2, 0, 3)
        if spec.explicit_shapes:
            b, n, _ = x.shape
            return x.reshape(b, n, heads, self.head_dim).transpose(1, 2)
        return x.reshape(x.shape[0], -1, heads, self.head_dim).transpose(1, 2)

    def merge(self, o: Tensor) -> Tensor:
        spec = self.spec
        if spec.seq_first:
            b, h, n, d = o.shape
            return o.permute(2, 0, 1, 3).reshape(n, b, h * d)
        if spec.explicit_shapes:
            b, h, n, d = o.shape
            return o.transpose(1, 2).reshape(b, n, h * d)
        return o.transpose(1, 2).reshape(o.shape[0], -1, spec.width)

    def heads(self, q: Tensor, k: Tensor, v: Tensor, rope_q=None, rope_k=None) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v [B, H, N, D] exactly as the attention op receives them."""
        spec = self.spec
        q, k, v = self.split(q), self.split(k, spec.kv), self.split(v, spec.kv)
        if spec.qk_norm:
            q, k = self.norm_q(q), self.norm_k(k)
        q, k = apply_rope(q, rope_q), apply_rope(k, rope_k)
        if spec.kv != spec.heads:
            k = k.repeat_interleave(spec.heads // spec.kv, dim=1)
            v = v.repeat_interleave(spec.heads // spec.kv, dim=1)
        return q, k, v

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                rope_q=None, rope_k=None) -> Tensor:
        spec = self.spec
        if spec.attention == "mha":
            return self.mha(q, k, v, need_weights=False)[0]
        q, k, v = self.heads(q, k, v, rope_q, rope_k)
        if spec.attention == "manual":
            scores = q @ k.transpose(-1, -2) * self.head_dim**-0.5
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
            o = torch.softmax(scores, dim=-1) @ v
        elif spec.sdpa_kwargs:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)
        elif mask is not None:
            o = F.scaled_dot_product_attention(q, k, v, mask)
        else:
            o = F.scaled_dot_product_attention(q, k, v)
        return self.merge(o).to(q.dtype)  # no-op cast, as model code often has


def _qkv(spec: ArchSpec, qkv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v from a fused projection (k and v have ``spec.kv`` heads)."""
    kv = spec.kv * spec.head_dim
    return qkv.split([spec.width, kv, kv], dim=-1)  # type: ignore[return-value]


def _qkv_width(spec: ArchSpec) -> int:
    return spec.width + 2 * spec.kv * spec.head_dim


def _ctx(ctx: Ctx | None, key: str):
    return None if ctx is None else ctx.get(key)


def block_output(spec: ArchSpec, x: Tensor, text: Tensor | None):
    """What a block returns: x, (x, text) or {"x": x, "text": text} (``spec.block_output``)."""
    if spec.block_output == "tensor":
        return x
    if spec.block_output == "dict":
        return {"x": x, "text": text}
    return x, text


def unpack_block_output(out, text: Tensor | None) -> tuple[Tensor, Tensor | None]:
    if isinstance(out, Tensor):
        return out, text
    if isinstance(out, dict):
        return out["x"], out["text"]
    return out


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


def _adaln(spec: ArchSpec, chunks: int) -> nn.Linear | None:
    return nn.Linear(spec.width, chunks * spec.width) if spec.adaln else None


def _chunks(linear: nn.Linear | None, c: Tensor, n: int, seq_first: bool = False) -> tuple[Tensor | None, ...]:
    """``n`` modulation tensors [B, 1, C] (or [1, B, C] for a sequence-first stream) from c, or
    ``n`` Nones without adaLN."""
    if linear is None:
        return (None,) * n
    out = linear(F.silu(c))
    return (out[None] if seq_first else out[:, None]).chunk(n, dim=-1)


# --------------------------------------------------------------------------------------------
# Blocks. Each exposes its branches so the oracle can run them on a subset of token rows.
# ``mod`` is the tuple returned by ``modulation(c)``; its entries are None without adaLN.


class DiTBlock(nn.Module):
    """Self-attention (+ a second one with ``two_attn``) (+ optional PixArt cross-attention) +
    MLP, DiT-style adaLN or pre-norm (or post-norm: ``x = norm(x + branch)``)."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        C = spec.width
        self.adaLN = _adaln(spec, 9 if spec.two_attn else 6)
        self.norm1 = make_norm(spec, affine=not spec.adaln)
        self.to_qkv = nn.Linear(C, _qkv_width(spec))
        self.attn = Attention(spec)
        self.to_out = nn.Sequential(nn.Linear(C, C), nn.Dropout(0.1))
        if spec.two_attn:
            self.norm1b = make_norm(spec, affine=not spec.adaln)
            self.to_qkv2 = nn.Linear(C, _qkv_width(spec))
            self.attn2 = Attention(spec)
            self.to_out2 = nn.Linear(C, C)
        if spec.cross_attn:
            self.norm_cross = make_norm(spec, affine=True)
            self.cross_q = nn.Linear(C, C)
            self.cross_kv = nn.Linear(C, 2 * spec.kv * spec.head_dim)
            self.cross_out = nn.Linear(C, C)
        self.norm2 = make_norm(spec, affine=not spec.adaln)
        self.ff = FeedForward(spec)
        if spec.gate_in_norm or spec.post_norm:  # the norm applied at each residual join
            self.post_attn = make_norm(spec, affine=True)
            self.post_mlp = make_norm(spec, affine=True)
            if spec.two_attn:
                self.post_attn2 = make_norm(spec, affine=True)
            if spec.cross_attn and spec.post_norm:
                self.post_cross = make_norm(spec, affine=True)

    def modulation(self, c: Tensor) -> tuple[Tensor | None, ...]:
        return _chunks(self.adaLN, c, 9 if self.spec.two_attn else 6, self.spec.seq_first)

    def _pre(self, norm: nn.Module, x: Tensor) -> Tensor:
        return x if self.spec.post_norm else norm(x)

    def _join(self, x: Tensor, gate: Tensor | None, p: Tensor, norm: nn.Module | None) -> Tensor:
        if self.spec.gate_in_norm:
            return x + norm(gate * p)
        if self.spec.post_norm:
            return norm(x + p)
        return residual(x, gate, p)

    def join_attn(self, x: Tensor, mod, p: Tensor) -> Tensor:
        """The residual add after the attention branch output ``p`` (and the norm around it)."""
        return self._join(x, self.gate_attn(mod), p, getattr(self, "post_attn", None))

    def join_attn2(self, x: Tensor, mod, p: Tensor) -> Tensor:
        return self._join(x, mod[8], p, getattr(self, "post_attn2", None))

    def join_cross(self, x: Tensor, p: Tensor) -> Tensor:
        return self.post_cross(x + p) if self.spec.post_norm else x + p

    def join_mlp(self, x: Tensor, mod, p: Tensor) -> Tensor:
        return self._join(x, self.gate_mlp(mod), p, getattr(self, "post_mlp", None))

    def attn_branch(self, x: Tensor, mod, ctx: Ctx | None = None) -> Tensor:
        h = modulate(self._pre(self.norm1, x), mod[0], mod[1])
        q, k, v = _qkv(self.spec, self.to_qkv(h))
        rope = _ctx(ctx, "rope")
        return self.to_out(self.attn(q, k, v, _ctx(ctx, "mask"), rope, rope))

    def attn2_branch(self, x: Tensor, mod, ctx: Ctx | None = None) -> Tensor:
        h = modulate(self._pre(self.norm1b, x), mod[6], mod[7])
        q, k, v = _qkv(self.spec, self.to_qkv2(h))
        rope = _ctx(ctx, "rope")
        return self.to_out2(self.attn2(q, k, v, _ctx(ctx, "mask"), rope, rope))

    def attn_heads(self, x: Tensor, mod, ctx: Ctx | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The (first) self-attention's q, k, v [B, H, N, D] as the attention op receives them
        (what token scores read)."""
        h = modulate(self._pre(self.norm1, x), mod[0], mod[1])
        rope = _ctx(ctx, "rope")
        return self.attn.heads(*_qkv(self.spec, self.to_qkv(h)), rope, rope)

    def cross_heads(self, x: Tensor, text: Tensor, ctx: Ctx | None = None) -> tuple[Tensor, Tensor]:
        """The cross-attention's q [B, H, N, D] and k [B, H, T, D]."""
        q = self.cross_q(self._pre(self.norm_cross, x))
        k, v = self.cross_kv(text).chunk(2, dim=-1)
        q, k, _ = self.attn.heads(q, k, v, _ctx(ctx, "rope"), _ctx(ctx, "rope_text"))
        return q, k

    def gate_attn(self, mod) -> Tensor | None:
        return mod[2]

    def cross_branch(self, x: Tensor, text: Tensor, ctx: Ctx | None = None) -> Tensor:
        """Queries from the given rows, keys/values from all text tokens: token-wise in x. With
        rope the queries are rotated by their rows' positions (``ctx["rope"]`` holds the tables
        of exactly these rows)."""
        q = self.cross_q(self._pre(self.norm_cross, x))
        k, v = self.cross_kv(text).chunk(2, dim=-1)
        return self.cross_out(self.attn(q, k, v, _ctx(ctx, "mask_text"), _ctx(ctx, "rope"), _ctx(ctx, "rope_text")))

    def mlp_branch(self, x: Tensor, mod) -> Tensor:
        return self.ff(modulate(self._pre(self.norm2, x), mod[3], mod[4]))

    def gate_mlp(self, mod) -> Tensor | None:
        return mod[5]

    def forward(self, x: Tensor, c: Tensor, text: Tensor | None, ctx: Ctx | None = None):
        mod = self.modulation(c)
        x = self.join_attn(x, mod, self.attn_branch(x, mod, **_kw(ctx)))
        maybe_break(self.spec, "inside")
        if self.spec.two_attn:
            x = self.join_attn2(x, mod, self.attn2_branch(x, mod, **_kw(ctx)))
        if self.spec.cross_attn:
            x = self.join_cross(x, self.cross_branch(x, text, **_kw(ctx)))
        x = self.join_mlp(x, mod, self.mlp_branch(x, mod))
        return block_output(self.spec, x, text)


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
        self.to_qkv = nn.Linear(C, _qkv_width(spec))
        self.text_qkv = nn.Linear(C, _qkv_width(spec))
        self.attn = Attention(spec)
        self.to_out = nn.Sequential(nn.Linear(C, C), nn.Dropout(0.1))
        self.norm2 = make_norm(spec, affine=not spec.adaln)
        self.ff = FeedForward(spec)
        if text_continues:
            self.text_out = nn.Linear(C, C)
        if text_continues or spec.shared_mlp:
            self.norm2_text = make_norm(spec, affine=not spec.adaln)
        if text_continues and not spec.shared_mlp:
            self.ff_text = FeedForward(spec)

    def modulation(self, c: Tensor) -> tuple[tuple[Tensor | None, ...], tuple[Tensor | None, ...]]:
        """(image modulation, text modulation), 6 entries each."""
        return _chunks(self.adaLN, c, 6), _chunks(self.adaLN_text, c, 6)

    def joint_attn_branch(self, x: Tensor, text: Tensor, mod, ctx: Ctx | None = None) -> tuple[Tensor, Tensor | None]:
        """(P_img, P_txt) of attention over cat(text, image); P_txt is None in the last block."""
        m_img, m_txt = mod
        h = modulate(self.norm1(x), m_img[0], m_img[1])
        ht = modulate(self.norm1_text(text), m_txt[0], m_txt[1])
        qkv = torch.cat([self.text_qkv(ht), self.to_qkv(h)], dim=1)
        q, k, v = _qkv(self.spec, qkv)
        rope = _ctx(ctx, "rope_joint")
        o = self.attn(q, k, v, _ctx(ctx, "mask_joint"), rope, rope)
        if self.spec.explicit_shapes:
            o_txt, o_img = o.split([text.shape[1], x.shape[1]], dim=1)
        else:
            o_txt, o_img = o[:, : text.shape[1]], o[:, text.shape[1] :]
        p_img = self.to_out(o_img)
        p_txt = self.text_out(o_txt) if self.text_continues else None
        return p_img, p_txt

    def joint_heads(self, x: Tensor, text: Tensor, mod, ctx: Ctx | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The joint attention's q, k, v [B, H, T + N, D] (text rows first) as the attention op
        receives them (what token scores read)."""
        m_img, m_txt = mod
        h = modulate(self.norm1(x), m_img[0], m_img[1])
        ht = modulate(self.norm1_text(text), m_txt[0], m_txt[1])
        rope = _ctx(ctx, "rope_joint")
        return self.attn.heads(*_qkv(self.spec, torch.cat([self.text_qkv(ht), self.to_qkv(h)], dim=1)), rope, rope)

    def gate_attn(self, mod) -> Tensor | None:
        return mod[0][2]

    def gate_attn_text(self, mod) -> Tensor | None:
        return mod[1][2]

    def mlp_branch(self, x: Tensor, mod) -> Tensor:
        return self.ff(modulate(self.norm2(x), mod[0][3], mod[0][4]))

    def gate_mlp(self, mod) -> Tensor | None:
        return mod[0][5]

    def text_mlp_branch(self, text: Tensor, mod) -> Tensor:
        ff = self.ff if self.spec.shared_mlp else self.ff_text
        return ff(modulate(self.norm2_text(text), mod[1][3], mod[1][4]))

    def shared_mlp_branch(self, x: Tensor, text: Tensor, mod) -> Tensor:
        """CogVideoX: ONE feed-forward over cat(text, image) along the tokens, [B, T+N, C].
        Token-wise, so its rows of each stream are ``text_mlp_branch`` / ``mlp_branch`` of that
        stream (what the oracle computes)."""
        return self.ff(torch.cat([modulate(self.norm2_text(text), mod[1][3], mod[1][4]),
                                  modulate(self.norm2(x), mod[0][3], mod[0][4])], dim=1))

    def shared_mlp_joins(self, x: Tensor, text: Tensor, mod) -> tuple[Tensor, Tensor | None]:
        """The shared feed-forward's output sliced back into the two streams, the image rows
        first (the same region order as separate MLPs)."""
        t = text.shape[1]
        out = self.shared_mlp_branch(x, text, mod)
        x = residual(x, self.gate_mlp(mod), out[:, t:])
        return x, residual(text, self.gate_mlp_text(mod), out[:, :t]) if self.text_continues else None

    def gate_mlp_text(self, mod) -> Tensor | None:
        return mod[1][5]

    def forward(self, x: Tensor, c: Tensor, text: Tensor, ctx: Ctx | None = None):
        # Written so that branch outputs and residual joins come in the same order:
        # attn(img), attn(txt), mlp(img), mlp(txt).
        maybe_break(self.spec, "inside")  # at the start: a break later would split the text residual
        mod = self.modulation(c)
        p_img, p_txt = self.joint_attn_branch(x, text, mod, **_kw(ctx))
        x = residual(x, self.gate_attn(mod), p_img)
        if self.spec.shared_mlp:
            if self.text_continues:
                text = residual(text, self.gate_attn_text(mod), p_txt)
            return block_output(self.spec, *self.shared_mlp_joins(x, text, mod))
        if not self.text_continues:
            return block_output(self.spec, residual(x, self.gate_mlp(mod), self.mlp_branch(x, mod)), None)
        text = residual(text, self.gate_attn_text(mod), p_txt)
        x = residual(x, self.gate_mlp(mod), self.mlp_branch(x, mod))
        text = residual(text, self.gate_mlp_text(mod), self.text_mlp_branch(text, mod))
        return block_output(self.spec, x, text)


class ParallelBlock(nn.Module):
    """FLUX single-stream block: one norm, attention and MLP side by side, one gate."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        C = spec.width
        hidden = 2 * C
        self.adaLN = _adaln(spec, 3)
        self.norm = make_norm(spec, affine=not spec.adaln)
        self.to_qkv = nn.Linear(C, _qkv_width(spec))
        self.attn = Attention(spec)
        self.mlp_in = nn.Linear(C, 2 * hidden if spec.mlp == "swiglu" else hidden)
        self.drop = nn.Dropout(0.1)
        self.proj_out = nn.Linear(C + hidden, C)

    def modulation(self, c: Tensor) -> tuple[Tensor | None, ...]:
        return _chunks(self.adaLN, c, 3)

    def parallel_input(self, x: Tensor, mod) -> Tensor:
        return modulate(self.norm(x), mod[0], mod[1])

    def parallel_attn(self, h: Tensor, ctx: Ctx | None = None) -> Tensor:
        """The attention half: merged-heads attention output [B, N, C]; token-mixing."""
        q, k, v = _qkv(self.spec, self.to_qkv(h))
        rope = _ctx(ctx, "rope")
        return self.attn(q, k, v, _ctx(ctx, "mask"), rope, rope)

    def attn_heads(self, h: Tensor, ctx: Ctx | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The attention half's q, k, v [B, H, N, D] as the attention op receives them."""
        rope = _ctx(ctx, "rope")
        return self.attn.heads(*_qkv(self.spec, self.to_qkv(h)), rope, rope)

    def parallel_mlp(self, h: Tensor) -> Tensor:
        """The MLP half's hidden activations; token-wise."""
        return self.drop(activation(self.spec.mlp, self.mlp_in(h)))

    def parallel_out(self, attn_out: Tensor, mlp_hidden: Tensor) -> Tensor:
        return self.proj_out(torch.cat([attn_out, mlp_hidden], dim=-1))

    def parallel_branch(self, x: Tensor, mod, ctx: Ctx | None = None) -> Tensor:
        h = self.parallel_input(x, mod)
        return self.parallel_out(self.parallel_attn(h, **_kw(ctx)), self.parallel_mlp(h))

    def gate_parallel(self, mod) -> Tensor | None:
        return mod[2]

    def forward(self, x: Tensor, c: Tensor, text: Tensor | None, ctx: Ctx | None = None):
        maybe_break(self.spec, "inside")
        mod = self.modulation(c)
        return block_output(self.spec, residual(x, self.gate_parallel(mod), self.parallel_branch(x, mod, **_kw(ctx))), text)


# --------------------------------------------------------------------------------------------
# Model


class TinyDiT(nn.Module):
    """A tiny DiT built from an ``ArchSpec``; seeded and in eval mode on construction.

    ``forward(x [B, N, C], t [B], text [B, T, C] or None) -> [B, N, C]``; with ``wrapper`` x and
    the output are images [B, 3, h·2, w·2] (``spec.grid`` = (h, w)). The weights are not
    zero-initialised (unlike DiT's gates) so that caching visibly changes the output.
    """

    def __init__(self, spec: ArchSpec, seed: int = 0) -> None:
        super().__init__()
        self.spec = spec
        C = spec.width
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if spec.wrapper:
                self.patch_embed = nn.Conv2d(IN_CHANNELS, C, PATCH, stride=PATCH)
            else:
                self.x_embed = nn.Linear(C, C)
            self.t_mlp = nn.Sequential(nn.Linear(_FREQ_DIM, C), nn.SiLU(), nn.Linear(C, C))
            self.text_embed = nn.Linear(C, C) if spec.uses_text else None
            if spec.registers:
                self.register_tokens = nn.Parameter(torch.randn(1, spec.registers, C))
            if spec.joint:
                blocks = [JointBlock(spec, text_continues=i < spec.depth - 1) for i in range(spec.depth)]
            elif spec.parallel:
                blocks = [ParallelBlock(spec) for _ in range(spec.depth)]
            else:
                blocks = [DiTBlock(spec) for _ in range(spec.depth)]
            self.blocks = nn.ModuleList(blocks)
            self.final_mod = _adaln(spec, 2)
            self.norm_out = make_norm(spec, affine=not spec.adaln)
            if spec.wrapper:
                self.proj_out = nn.Linear(C, PATCH * PATCH * IN_CHANNELS)
                self.conv_out = nn.Conv2d(IN_CHANNELS, IN_CHANNELS, 3, padding=1)
            else:
                self.proj_out = nn.Linear(C, C)
        if spec.time_table:  # research code: the embedding of every integer timestep, precomputed
            self.register_buffer("time_table", self._sinusoid(torch.arange(1000.0)), persistent=False)
        self.eval()

    @staticmethod
    def _sinusoid(t: Tensor) -> Tensor:
        half = _FREQ_DIM // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def timestep_embedding(self, t: Tensor, dtype: torch.dtype) -> Tensor:
        if self.spec.time_table:
            return self.time_table[t.long().clamp(0, 999)].to(dtype)
        return self._sinusoid(t).to(dtype)

    def embed(self, x: Tensor, t: Tensor, text: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """(tokens, conditioning c [B, C], projected text): everything before the blocks."""
        spec = self.spec
        c = self.t_mlp(self.timestep_embedding(t, x.dtype))
        if spec.wrapper:  # [B, 3, H, W] -> [B, C, h, w] -> [B, h·w, C]
            x = self.patch_embed(x).flatten(2).transpose(1, 2)
        else:
            x = self.x_embed(x)
        if spec.registers:
            x = torch.cat([self.register_tokens.expand(x.shape[0], -1, -1), x], dim=1)
        if not spec.adaln:
            x = x + c[:, None]
        if self.text_embed is not None:
            if text is None:
                raise ValueError(f"spec {spec.variant!r} needs text")
            text = self.text_embed(text)
        else:
            text = None
        if spec.seq_first:  # the blocks see [tokens, batch, dim]
            x = x.transpose(0, 1)
            text = text.transpose(0, 1) if text is not None else None
        return x, c, text

    def context(self, x: Tensor, text: Tensor | None) -> Ctx:
        """Per-call tensors the blocks read, computed from the stream's shape: rotary tables
        [1, 1, N, D] at positions 0..N-1 (``rope``; text: ``rope_text``, joint: ``rope_joint``
        over cat(text, image)) and key padding masks [B, 1, 1, keys] (``mask``, ``mask_text``,
        ``mask_joint``) that drop the trailing quarter of batch row 0's image keys (a third of
        its text keys), as a bool or an additive mask."""
        spec = self.spec
        ctx: Ctx = {}
        seq = 0 if spec.seq_first else 1
        n, batch = x.shape[seq], x.shape[1 - seq]
        t = text.shape[seq] if text is not None else 0
        if spec.rope:
            ctx["rope"] = rope_tables(torch.arange(n, device=x.device), spec.head_dim)
            if spec.cross_attn:
                ctx["rope_text"] = rope_tables(torch.arange(t, device=x.device), spec.head_dim)
            if spec.joint:
                ctx["rope_joint"] = rope_tables(torch.arange(t + n, device=x.device), spec.head_dim)
        if spec.key_mask != "none":
            row0 = torch.arange(batch, device=x.device) == 0

            def mask(keys: int, masked: int) -> Tensor:
                drop = (torch.arange(keys, device=x.device) >= keys - masked)[None] & row0[:, None]
                if spec.key_mask == "bool":
                    return (~drop)[:, None, None]
                return torch.zeros(drop.shape, dtype=x.dtype, device=x.device).masked_fill(drop, -1e4)[:, None, None]

            image = mask(n, max(1, spec.tokens // 4))
            ctx["mask"] = image
            if spec.cross_attn:
                ctx["mask_text"] = mask(t, max(1, t // 3))
            if spec.joint:
                txt = mask(t, max(1, t // 3))
                ctx["mask_joint"] = torch.cat([txt, image], dim=-1)
        return ctx

    def final(self, x: Tensor, c: Tensor) -> Tensor:
        spec = self.spec
        if spec.seq_first:
            x = x.transpose(0, 1)
        if spec.registers:
            x = x[:, spec.registers:]
        shift, scale = _chunks(self.final_mod, c, 2)
        out = self.proj_out(modulate(self.norm_out(x), shift, scale))
        if not spec.wrapper:
            return out
        (h, w), p = spec.grid, PATCH  # unpatchify [B, h·w, p·p·3] -> [B, 3, h·p, w·p]
        out = out.reshape(out.shape[0], h, w, p, p, IN_CHANNELS).permute(0, 5, 1, 3, 2, 4)
        return self.conv_out(out.reshape(out.shape[0], IN_CHANNELS, h * p, w * p))

    def block_calls(self) -> list[nn.Module]:
        """The blocks in call order (``shared_block``: block 0 twice)."""
        return [self.blocks[i] for i in self.spec.block_calls]

    def forward(self, x: Tensor, t: Tensor, text: Tensor | None = None) -> Tensor:
        x, c, text = self.embed(x, t, text)
        ctx = self.context(x, text)
        for i, block in enumerate(self.block_calls()):
            if i:
                maybe_break(self.spec, "between")
            x, text = unpack_block_output(block(x, c, text, **_kw(ctx)), text)
        return self.final(x, c)


def make_inputs(spec: ArchSpec, seed: int = 0) -> tuple[Tensor, Tensor | None]:
    """(x, text) for one call; text is None when the spec takes none. x is [B, N, C], or with
    ``wrapper`` an image [B, 3, h·2, w·2]."""
    g = torch.Generator().manual_seed(seed)
    if spec.wrapper:
        h, w = spec.grid
        x = torch.randn(spec.batch, IN_CHANNELS, h * PATCH, w * PATCH, generator=g)
    else:
        x = torch.randn(spec.batch, spec.tokens, spec.width, generator=g)
    text = torch.randn(spec.batch, spec.text_tokens, spec.width, generator=g) if spec.uses_text else None
    return x, text


def timesteps(spec: ArchSpec, steps: int, start: float = 999.0) -> list[Tensor]:
    """Strictly decreasing timesteps [B] of one generation, as a sampler would pass them."""
    values = torch.linspace(start, 0.0, steps) if steps > 1 else torch.tensor([start])
    return [torch.full((spec.batch,), float(v)) for v in values]
