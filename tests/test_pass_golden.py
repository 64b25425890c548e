"""Golden tests per pass: a tiny hand-written module in, the expected regions / rewritten ops out.

In the style of vLLM's compilation tests: each module is captured by Dynamo into one FX graph,
run through the passes, and the result is compared with what the module's *source* says it must
be (counted by hand: two blocks of qkv + proj + fc1 + fc2 linears, one SDPA per attention, ...),
never with a dump of what the implementation produced. Every test states its rule in its
docstring.

The modules (all B=2 samples, C=32 channels, 2 heads):

* ``TinyDiT``       — 8x8x4 latent -> conv patch embedding (2x2) -> N=16 tokens; sinusoidal
                      timestep embedding -> 2 linears -> ``c``; ``depth`` pre-norm blocks with an
                      adaLN linear (shift/scale/gate x 2), self-attention (qkv, SDPA, proj) and an
                      MLP (fc1, gelu, fc2); final layer norm + one linear. With ``cross=True`` each
                      block also has a PixArt-style cross-attention to a text context of M=8
                      tokens (no gate): ``x = x + proj(sdpa(q(ln x), k(ctx), v(ctx)))``.
* ``MLPOnly``       — ``depth`` residual MLP blocks ``x + fc2(gelu(fc1(ln x)))``, no timestep,
                      no attention, no modulation.
* ``SeqFirst``      — one sequence-first block [N, B, C] as research code around
                      ``nn.MultiheadAttention`` writes it: ``x + mha(ln x)``, ``x + mlp(ln x)``.
* ``NoResidual``    — fc1, gelu, fc2 on a token stream with no residual add.
* ``OuterResidual`` — ``x + proj(h)`` around an inner residual MLP block ``h = x + mlp(x)``.
* ``JointParallel`` — HunyuanVideo's single-stream block over the joint stream
                      ``h = cat([x, text])`` [B, N+M, C]: one modulated norm; the attention slices
                      it into the image and text pieces and concatenates them again, rotates only
                      the image queries (``cat([q[:, :N] * rot, q[:, N:]])``), and its output is
                      split into the pieces and concatenated back; an MLP beside it;
                      ``h + gate·proj_out(cat(attn, gelu(mlp_in)))``.
* ``JointBlock3``   — FLUX.3's joint parallel block for the image stream x [B, N, C]:
                      ``h = cat([norm_text(text), norm(x)·(1+scale)+shift])`` [B, M+N, C], one
                      attention over h and an MLP beside it, summed, split back with
                      ``.split([M, N], dim=1)``: ``x + gate·(attn(h) + mlp(h))[image piece]``.
* ``SharedMLP``     — CogVideoX's feed-forward: image x [B, N, C] and text [B, M, C], a
                      timestep embedding as TinyDiT's, ``depth`` blocks each running ONE MLP
                      (fc1, gelu, fc2) over ``cat([norm_text(text), norm(x)·(1+scale)+shift],
                      dim=1) + pos`` (``pos``: a learned [1, M+N, C] table over the joint axis) and
                      slicing its output back: ``x + gate·out[:, M:]``, ``text + gate_text·out[:, :M]``.

Only the section "the pass pipeline" below knows the pipeline's API (``Analysis``,
``ANALYSIS``, ``build_variant``, the decisions): when the pipeline changes shape, adapt it there.
"""
from __future__ import annotations

import functools
import math
import operator
from collections import Counter
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from toca_compile.config import ToCaConfig
from toca_compile.graph_inputs import describe_all

# -- the pass pipeline: the only place that knows its API --------------------------------------
from toca_compile.decisions import FORECAST, FULL, REUSE, SKIP, Decision
from toca_compile.passes import pipeline as _pipeline
from toca_compile.passes.dead_code import EFFECT as _EFFECT
from toca_compile.passes.dead_code import remove_dead_code as _remove_dead_code
from toca_compile.passes.rewrite_partial import RewriteError
from toca_compile.passes.state_inputs import GLOBAL


def analyse(captured: Captured, config: ToCaConfig, through: str = "state"):
    """Run the analysis passes in pipeline order up to and including ``through``
    (``detect``, ``plan``, ``scores`` or ``state``); returns the analysis record."""
    ctx = _pipeline.Analysis(captured.gm, tuple(describe_all(captured.inputs)), config)
    for analysis in _pipeline.ANALYSIS:
        ctx = analysis(ctx)
        if analysis.name == through:
            return ctx
    raise ValueError(f"no analysis pass named {through!r}")


def variant(ctx, decisions: dict[int, Decision | int], constants: str = "compute") -> fx.GraphModule:
    """The rewrite + dead-code + validate passes for one decision per region (an int k > 0:
    recompute k rows); ``constants``: the values constant within a generation (text K/V) are
    computed as in the model (``"compute"``), also stored (``"fill"``) or read from their
    caches (``"read"``)."""
    return _pipeline.build_variant(ctx, {i: d if isinstance(d, Decision) else Decision.refresh(d)
                                         for i, d in decisions.items()}, constants=constants)


def constant_values(ctx) -> list[tuple[fx.Node, tuple[int, ...], tuple[int, ...]]]:
    """The values the analysis found constant within a generation: (node, graph input
    positions it is computed from, regions that read it)."""
    return [(c.node, c.inputs, c.regions) for c in ctx.constants]


def token_span(plan, node: fx.Node) -> tuple[int, int, int] | None:
    """Where the region's tokens lie on ``node``'s token axis when it holds other rows too:
    (position of the first, first token, how many); None when it holds exactly the tokens."""
    span = plan.axes[node].span
    return None if span is None else (span.at, span.first, span.count)


def state_specs(ctx) -> dict[tuple[int, str], tuple[int, ...]]:
    """The state tensors the variants take: key (region or GLOBAL, name) -> shape."""
    return {spec.key: tuple(spec.shape) for spec in ctx.specs}


def state_tensors(ctx) -> list[torch.Tensor]:
    """Fresh state tensors, in the order the variants take them after the graph's own inputs."""
    return [spec.allocate() for spec in ctx.specs]


def state_dtypes(ctx) -> dict[tuple[int, str], torch.dtype]:
    return {spec.key: spec.dtype for spec in ctx.specs}


def state_placeholders(ctx, gm: fx.GraphModule) -> dict[tuple[int, str], fx.Node]:
    """The placeholders of a variant that take the state tensors (they follow the graph's own
    inputs, in the order of the state specs)."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    own = len(placeholders) - len(ctx.specs)
    return {spec.key: node for spec, node in zip(ctx.specs, placeholders[own:])}


def remove_dead_code(gm: fx.GraphModule) -> None:
    _remove_dead_code(gm)


def mark_effect(node: fx.Node) -> None:
    """Flag a node as a write that dead-code elimination must keep (what the rewrite does for
    its cache writes)."""
    node.meta[_EFFECT] = True


# -- capturing tiny modules ------------------------------------------------------------------

B, C, HEADS, N, M, TEXT = 2, 32, 2, 16, 8, 24   # batch, channels, heads, tokens, text tokens, text dim


@dataclass
class Captured:
    model: nn.Module
    args: tuple
    gm: fx.GraphModule
    inputs: list                                  # Dynamo's example inputs, one per placeholder

    def placeholder_of(self, value: torch.Tensor) -> fx.Node:
        """The placeholder Dynamo bound to ``value`` (a user input or a parameter)."""
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        found = [p for p, x in zip(placeholders, self.inputs) if x is value]
        assert len(found) == 1, f"{len(found)} placeholders hold this tensor"
        return found[0]


def capture(model: nn.Module, *args) -> Captured:
    """The single FX graph Dynamo hands a backend for ``model(*args)`` (no compiler runs)."""
    graphs: list[tuple[fx.GraphModule, list]] = []

    def record(gm: fx.GraphModule, example_inputs: list):
        graphs.append((gm, list(example_inputs)))
        return gm.forward

    model.eval()
    with torch.no_grad():
        torch.compile(model, backend=record, dynamic=False, fullgraph=True)(*args)
    assert len(graphs) == 1
    return Captured(model, args, *graphs[0])


class Attention(nn.Module):
    def __init__(self, context_dim: int | None = None) -> None:
        super().__init__()
        self.cross = context_dim is not None
        if self.cross:
            self.q = nn.Linear(C, C)
            self.kv = nn.Linear(context_dim, 2 * C)
        else:
            self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _ = x.shape
        if self.cross:
            q = self.q(x).view(b, n, HEADS, C // HEADS).transpose(1, 2)
            k, v = self.kv(context).view(b, -1, 2, HEADS, C // HEADS).permute(2, 0, 3, 1, 4)
        else:
            q, k, v = self.qkv(x).view(b, n, 3, HEADS, C // HEADS).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, C))


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(C, 4 * C)
        self.fc2 = nn.Linear(4 * C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class DiTBlock(nn.Module):
    def __init__(self, cross: bool) -> None:
        super().__init__()
        self.ada = nn.Linear(C, 6 * C)
        self.norm1 = nn.LayerNorm(C, elementwise_affine=False)
        self.attn = Attention()
        self.cross_attn = Attention(TEXT) if cross else None
        self.norm_cross = nn.LayerNorm(C) if cross else None
        self.norm2 = nn.LayerNorm(C, elementwise_affine=False)
        self.mlp = Mlp()

    def forward(self, x: torch.Tensor, c: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(F.silu(c)).unsqueeze(1).chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.norm_cross(x), context)
        x = x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)
        return x


class TinyDiT(nn.Module):
    def __init__(self, depth: int = 2, cross: bool = False) -> None:
        super().__init__()
        self.patch = nn.Conv2d(4, C, kernel_size=2, stride=2)
        self.t1 = nn.Linear(C, C)
        self.t2 = nn.Linear(C, C)
        self.blocks = nn.ModuleList([DiTBlock(cross) for _ in range(depth)])
        self.norm = nn.LayerNorm(C)
        self.out = nn.Linear(C, 16)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.patch(x).flatten(2).transpose(1, 2)
        freqs = torch.exp(-math.log(10000.0) * torch.arange(C // 2) / (C // 2))
        angles = t[:, None] * freqs[None]
        c = self.t2(F.silu(self.t1(torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1))))
        for block in self.blocks:
            h = block(h, c, context)
        return self.out(self.norm(h))


class MLPBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(C)
        self.mlp = Mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


class MLPOnly(nn.Module):
    def __init__(self, depth: int = 2) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([MLPBlock() for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class SeqFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(C)
        self.attn = nn.MultiheadAttention(C, HEADS)
        self.norm2 = nn.LayerNorm(C)
        self.mlp = Mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class CountingMLP(nn.Module):
    """MLPOnly(depth=1) that also counts its calls in a buffer, in place, outside any branch."""

    def __init__(self) -> None:
        super().__init__()
        self.block = MLPBlock()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.add_(1)
        return self.block(x)


class NoResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mlp = Mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class OuterResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = MLPBlock()
        self.proj = nn.Linear(C, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(self.inner(x))


class SharedMLPBlock(nn.Module):
    def __init__(self, split: bool = False) -> None:
        super().__init__()
        self.split = split  # take the streams back with out.split([M, N], dim=1) (FLUX.3) instead of slices
        self.ada = nn.Linear(C, 4 * C)
        self.norm = nn.LayerNorm(C, elementwise_affine=False)
        self.norm_text = nn.LayerNorm(C)
        self.pos = nn.Parameter(0.5 * torch.randn(1, M + N, C))
        self.mlp = Mlp()

    def modulation(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """shift, scale, gate (image), gate_text: each [B, 1, C]."""
        return self.ada(F.silu(c)).unsqueeze(1).chunk(4, dim=-1)

    def forward(self, x: torch.Tensor, text: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, scale, gate, gate_text = self.modulation(c)
        h = torch.cat([self.norm_text(text), self.norm(x) * (1 + scale) + shift], dim=1) + self.pos
        out = self.mlp(h)
        m = text.shape[1]
        pieces = out.split([m, x.shape[1]], dim=1) if self.split else None
        out_x = pieces[1] if pieces is not None else out[:, m:]  # the image's first: region 0
        out_text = pieces[0] if pieces is not None else out[:, :m]
        return x + gate * out_x, text + gate_text * out_text


class SharedMLP(nn.Module):
    def __init__(self, depth: int = 2, split: bool = False) -> None:
        super().__init__()
        self.t1 = nn.Linear(C, C)
        self.t2 = nn.Linear(C, C)
        self.blocks = nn.ModuleList([SharedMLPBlock(split) for _ in range(depth)])

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        freqs = torch.exp(-math.log(10000.0) * torch.arange(C // 2) / (C // 2))
        angles = t[:, None] * freqs[None]
        return self.t2(F.silu(self.t1(torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1))))

    def forward(self, x: torch.Tensor, text: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.embed(t)
        for block in self.blocks:
            x, text = block(x, text, c)
        return x, text


@functools.cache
def dit(depth: int = 2, cross: bool = False) -> Captured:
    torch.manual_seed(0)
    args: tuple = (torch.randn(B, 4, 8, 8), torch.tensor([500.0, 20.0]))
    if cross:
        args += (torch.randn(B, M, TEXT),)
    return capture(TinyDiT(depth, cross), *args)


class JointParallel(nn.Module):
    def __init__(self, apart: bool = False) -> None:
        super().__init__()
        self.apart = apart  # the MLP reads the pieces computed apart too: cat([x[:, :N] * rot, x[:, N:]])
        self.t = nn.Linear(C, C)
        self.ada = nn.Linear(C, 3 * C)
        self.norm = nn.LayerNorm(C, elementwise_affine=False)
        self.qkv = nn.Linear(C, 3 * C)
        self.rot = nn.Parameter(torch.randn(1, N, C))
        self.mlp_in = nn.Linear(C, 2 * C)
        self.proj_out = nn.Linear(3 * C, C)

    def modulation(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """shift, scale, gate: each [B, 1, C]."""
        return self.ada(F.silu(self.t(t[:, None].expand(-1, C) / 1000))).unsqueeze(1).chunk(3, dim=-1)

    def forward(self, x: torch.Tensor, text: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.cat([x, text], dim=1)
        n = x.shape[1]
        shift, scale, gate = self.modulation(t)
        y = self.norm(h) * (1 + scale) + shift
        joint = torch.cat([y[:, :n], y[:, n:]], dim=1)
        q, k, v = self.qkv(joint).chunk(3, dim=-1)
        q = torch.cat([q[:, :n] * self.rot, q[:, n:]], dim=1)
        q, k, v = (z.view(B, -1, HEADS, C // HEADS).transpose(1, 2) for z in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, -1, C)
        o = torch.cat([o[:, :n], o[:, n:]], dim=1)
        m = torch.cat([y[:, :n] * self.rot, y[:, n:]], dim=1) if self.apart else y
        h = h + gate * self.proj_out(torch.cat([o, F.gelu(self.mlp_in(m))], dim=-1))
        return h[:, :n], h[:, n:]


class JointBlock3(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.t = nn.Linear(C, C)
        self.ada = nn.Linear(C, 3 * C)
        self.norm = nn.LayerNorm(C, elementwise_affine=False)
        self.norm_text = nn.LayerNorm(C)
        self.attn = Attention()
        self.mlp = Mlp()

    def modulation(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """shift, scale, gate: each [B, 1, C]."""
        return self.ada(F.silu(self.t(t[:, None].expand(-1, C) / 1000))).unsqueeze(1).chunk(3, dim=-1)

    def forward(self, x: torch.Tensor, text: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(t)
        h = torch.cat([self.norm_text(text), self.norm(x) * (1 + scale) + shift], dim=1)
        _, out = (self.attn(h) + self.mlp(h)).split([text.shape[1], x.shape[1]], dim=1)
        return x + gate * out


@functools.cache
def joint_block3() -> Captured:
    torch.manual_seed(0)
    return capture(JointBlock3(), torch.randn(B, N, C), torch.randn(B, M, C), torch.tensor([500.0, 20.0]))


@functools.cache
def joint_parallel(apart: bool = False) -> Captured:
    torch.manual_seed(0)
    return capture(JointParallel(apart), torch.randn(B, N, C), torch.randn(B, M, C), torch.tensor([500.0, 20.0]))


@functools.cache
def shared_mlp(depth: int = 2, split: bool = False) -> Captured:
    torch.manual_seed(0)
    return capture(SharedMLP(depth, split), torch.randn(B, N, C), torch.randn(B, M, C), torch.tensor([500.0, 20.0]))


@functools.cache
def mlp_only(batch: int = B) -> Captured:
    torch.manual_seed(0)
    return capture(MLPOnly(), torch.randn(batch, N, C))


@functools.cache
def seq_first() -> Captured:
    torch.manual_seed(0)
    return capture(SeqFirst(), torch.randn(N, B, C))


@functools.cache
def counting_mlp() -> Captured:
    torch.manual_seed(0)
    return capture(CountingMLP(), torch.randn(1, N, C))


@functools.cache
def no_residual() -> Captured:
    torch.manual_seed(0)
    return capture(NoResidual(), torch.randn(B, N, C))


@functools.cache
def outer_residual() -> Captured:
    torch.manual_seed(0)
    return capture(OuterResidual(), torch.randn(B, N, C))


# -- counting ops ----------------------------------------------------------------------------

def op_kind(node: fx.Node) -> str:
    """A short name for what a node calls: ``linear``, ``scaled_dot_product_attention``,
    ``fill_cache``, ``mul_`` (method), ``mod:Linear`` (a ``call_module``); '' otherwise."""
    if node.op == "call_function":
        target = node.target
        return {operator.add: "add", operator.mul: "mul", operator.matmul: "matmul",
                operator.getitem: "getitem"}.get(target, getattr(target, "__name__", str(target)))
    if node.op == "call_method":
        return str(node.target)
    if node.op == "call_module":
        owner = node.graph.owning_module
        return "mod:" + type(owner.get_submodule(str(node.target))).__name__ if owner is not None else "mod:?"
    return ""


def count_ops(gm: fx.GraphModule) -> Counter:
    """How often each kind of call occurs in the graph (linear weights bound to ``call_module``
    Linear count as ``linear`` too)."""
    counts: Counter = Counter()
    for node in gm.graph.nodes:
        kind = op_kind(node)
        if kind:
            counts["linear" if kind == "mod:Linear" else kind] += 1
    return counts


def calls_with(gm: fx.GraphModule, placeholder_name: str) -> list[fx.Node]:
    """Call nodes of ``gm`` that read the placeholder named ``placeholder_name``."""
    return [n for n in gm.graph.nodes if n.op != "placeholder" and any(
        a.op == "placeholder" and a.name == placeholder_name for a in n.all_input_nodes)]


def linear_of(gm: fx.GraphModule, captured: Captured, layer: nn.Linear) -> list[fx.Node]:
    """The linear calls of ``gm`` (the captured graph or a variant of it) that use ``layer``'s weight."""
    return [n for n in calls_with(gm, captured.placeholder_of(layer.weight).name) if op_kind(n) == "linear"]


def run_shapes(gm: fx.GraphModule, captured: Captured, ctx) -> dict[str, tuple[int, ...]]:
    """Run a variant on real tensors (the captured example inputs plus fresh state) and return the
    shape of every tensor node by name."""
    with torch.no_grad():
        ShapeProp(gm).propagate(*captured.inputs, *state_tensors(ctx))
    return {n.name: tuple(n.meta["tensor_meta"].shape) for n in gm.graph.nodes
            if hasattr(n.meta.get("tensor_meta"), "shape")}


EAGER = ToCaConfig(compiler="eager")
RANDOM = ToCaConfig(compiler="eager", score="random")

# Linears of the captured TinyDiT(depth=2): timestep embedding (t1, t2), per block ada, qkv,
# proj, fc1, fc2, and the final output layer.
DIT_LINEARS = 2 + 2 * 5 + 1
DIT_BLOCK_LINEARS = 4                  # qkv, proj, fc1, fc2: the ones inside the regions


def depends_on(node: fx.Node, source: fx.Node) -> bool:
    """``source`` is ``node`` or one of its ancestors."""
    seen, stack = {node}, [node]
    while stack:
        current = stack.pop()
        if current is source:
            return True
        for parent in current.all_input_nodes:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return False


def sdpa_of(captured: Captured, layer: nn.Module) -> fx.Node:
    """The SDPA call of the attention whose q (or qkv) linear is ``layer``: the first SDPA after
    that linear in graph order that reads it (later blocks read it too, through the stream)."""
    (linear,) = linear_of(captured.gm, captured, layer)
    return next(n for n in captured.gm.graph.nodes
                if op_kind(n) == "scaled_dot_product_attention" and depends_on(n, linear))


# == detect ===================================================================================

def test_detect_dit_blocks_and_region_kinds():
    """Each pre-norm DiT block has two residual branches, self-attention then MLP: two blocks
    give four regions [attn, mlp, attn, mlp] numbered 0..3 in graph order, in blocks [0, 0, 1, 1]
    named after the block modules, each over the N=16 patch tokens of B=2 samples ([B, N, C])."""
    detection = analyse(dit(), EAGER, through="detect").detection
    regions = detection.regions
    assert [r.kind for r in regions] == ["attn", "mlp", "attn", "mlp"]
    assert [r.index for r in regions] == [0, 1, 2, 3]
    assert [r.block for r in regions] == [0, 0, 1, 1]
    assert detection.num_blocks == 2
    assert [r.block_name for r in regions] == ["blocks.0", "blocks.0", "blocks.1", "blocks.1"]
    assert [(r.batch, r.tokens) for r in regions] == [(B, N)] * 4
    assert [(r.batch_axis, r.token_axis) for r in regions] == [(0, 1)] * 4
    assert all(r.layout_known for r in regions)
    assert detection.reason == ""


def test_detect_timestep_is_the_input_feeding_the_sinusoid():
    """The timestep is the graph input that feeds the sinusoidal embedding: the placeholder
    Dynamo bound to ``t`` (not the latent, not a weight)."""
    captured = dit()
    detection = analyse(captured, EAGER, through="detect").detection
    assert detection.timestep is captured.placeholder_of(captured.args[1])


def test_detect_fork_join_cache_point_and_gate():
    """Regions chain along the residual stream: each region's fork is the previous region's join
    and its join adds the fork; the cache point is the branch output *before* the adaLN gate (the
    attention's proj linear, the MLP's fc2 linear), and the gate comes from the block's adaLN
    linear (so it is recomputed every step)."""
    captured = dit()
    regions = analyse(captured, EAGER, through="detect").detection.regions
    model = captured.model
    outputs = [model.blocks[0].attn.proj, model.blocks[0].mlp.fc2, model.blocks[1].attn.proj, model.blocks[1].mlp.fc2]
    adas = [model.blocks[0].ada, model.blocks[0].ada, model.blocks[1].ada, model.blocks[1].ada]
    for i, region in enumerate(regions):
        assert region.cache_point is linear_of(captured.gm, captured, outputs[i])[0]
        assert op_kind(region.join) == "add" and region.fork in region.join.args
        if i > 0:
            assert region.fork is regions[i - 1].join
        assert region.gate is not None
        assert depends_on(region.gate, linear_of(captured.gm, captured, adas[i])[0])
        assert not depends_on(region.gate, region.fork)
        assert region.cache_point in region.branch and region.fork not in region.branch
    # the first block reads the patch embedding
    assert op_kind(regions[0].fork) == "transpose"


def test_detect_cross_attention_block():
    """A block with cross-attention has three regions in order attn, cross_attn, mlp. The
    cross-attention has no gate (PixArt style); its anchor is its SDPA, whose queries come from
    the stream (the q linear is in the branch) and keys from the text (the kv linear is not)."""
    captured = dit(depth=1, cross=True)
    regions = analyse(captured, EAGER, through="detect").detection.regions
    block = captured.model.blocks[0]
    assert [r.kind for r in regions] == ["attn", "cross_attn", "mlp"]
    assert [r.block for r in regions] == [0, 0, 0]
    assert [r.tokens for r in regions] == [N, N, N]
    cross = regions[1]
    assert cross.gate is None
    assert cross.cache_point is linear_of(captured.gm, captured, block.cross_attn.proj)[0]
    assert cross.anchors == [sdpa_of(captured, block.cross_attn.q)]
    assert linear_of(captured.gm, captured, block.cross_attn.q)[0] in cross.branch
    assert linear_of(captured.gm, captured, block.cross_attn.kv)[0] not in cross.branch
    assert regions[0].anchors == [sdpa_of(captured, block.attn.qkv)]
    assert regions[0].gate is not None and regions[2].gate is not None


def test_detect_mlp_only_blocks():
    """Residual MLP blocks without attention are mlp regions, one block each (numbered from the
    module names); a graph with no sinusoid and no time-like input has no timestep."""
    detection = analyse(mlp_only(), EAGER, through="detect").detection
    assert [r.kind for r in detection.regions] == ["mlp", "mlp"]
    assert [r.block for r in detection.regions] == [0, 1]
    assert [r.tokens for r in detection.regions] == [N, N]
    assert all(r.gate is None for r in detection.regions)
    assert detection.timestep is None


def test_detect_sequence_first_stream():
    """A [N, B, C] stream whose nn.MultiheadAttention has N queries holds its tokens on axis 0:
    both regions (attn, then mlp, one block) have token axis 0 and batch axis 1."""
    regions = analyse(seq_first(), EAGER, through="detect").detection.regions
    assert [r.kind for r in regions] == ["attn", "mlp"]
    assert [r.block for r in regions] == [0, 0]
    assert [(r.batch_axis, r.token_axis, r.batch, r.tokens) for r in regions] == [(1, 0, B, N)] * 2


def test_detect_no_residual_block():
    """A graph with no residual add has no region, no blocks, and a reason saying why."""
    detection = analyse(no_residual(), EAGER, through="detect").detection
    assert detection.regions == ()
    assert detection.num_blocks == 0
    assert "no residual" in detection.reason


def test_detect_innermost_residual_wins():
    """A skip connection around a whole block (its branch holds the inner block's join and no
    anchor of its own) is no region: only the inner MLP is, cached at its fc2."""
    captured = outer_residual()
    regions = analyse(captured, EAGER, through="detect").detection.regions
    assert [r.kind for r in regions] == ["mlp"]
    assert regions[0].cache_point is linear_of(captured.gm, captured, captured.model.inner.mlp.fc2)[0]
    assert regions[0].fork is captured.placeholder_of(captured.args[0])


# == plan =====================================================================================

def test_plan_self_attention_reused_mlp_token_wise():
    """Self-attention mixes tokens, so its region is reused whole (not partial, nothing to
    recompute, one slot: its cache point). The MLP is token-wise: a partial step recomputes the
    nodes between stream and cache point — layer_norm, the modulation's mul and add, fc1, gelu,
    fc2, in that order — and caches only the cache point (no token-mixing value inside)."""
    captured = dit()
    plans = analyse(captured, EAGER, through="plan").plans
    assert [p.partial for p in plans] == [False, True, False, True]
    for plan in plans:
        assert [s.node for s in plan.slots] == [plan.region.cache_point]
        assert [(s.batch_axis, s.token_axis, s.shape) for s in plan.slots] == [(0, 1, (B, N, C))]
    for plan in plans[0::2]:
        assert plan.recompute == ()
        assert plan.region.note  # says why it is reused whole
    for plan, block in zip(plans[1::2], captured.model.blocks):
        assert [op_kind(n) for n in plan.recompute] == ["layer_norm", "mul", "add", "linear", "gelu", "linear"]
        assert plan.recompute[3] is linear_of(captured.gm, captured, block.mlp.fc1)[0]
        assert plan.recompute[-1] is plan.region.cache_point


def test_plan_cross_attention_recomputes_query_side_only():
    """Cross-attention is token-wise (a query row attends to the text only): a partial step
    recomputes the query side — norm, q linear, view, transpose, SDPA, transpose, reshape, proj —
    on the selected rows; the keys and values, computed from the text, are not recomputed."""
    captured = dit(depth=1, cross=True)
    plans = analyse(captured, EAGER, through="plan").plans
    block = captured.model.blocks[0]
    assert [p.partial for p in plans] == [False, True, True]
    cross = plans[1]
    assert [op_kind(n) for n in cross.recompute] == [
        "layer_norm", "linear", "view", "transpose", "scaled_dot_product_attention", "transpose", "reshape", "linear"]
    assert cross.recompute[1] is linear_of(captured.gm, captured, block.cross_attn.q)[0]
    assert linear_of(captured.gm, captured, block.cross_attn.kv)[0] not in cross.recompute
    assert [s.node for s in cross.slots] == [cross.region.cache_point]


def test_plan_mlp_only_batch_of_two_is_reused_whole():
    """With two samples and neither attention nor modulation in the graph, nothing shows which
    leading axis of [2, 16, 32] holds the tokens: the MLP regions are reused whole, and say so."""
    plans = analyse(mlp_only(), EAGER, through="plan").plans
    assert [p.partial for p in plans] == [False, False]
    assert all(not p.region.layout_known for p in plans)
    assert all("reused whole" in p.region.note for p in plans)
    assert all(p.recompute == () for p in plans)


def test_plan_mlp_only_single_sample_is_token_wise():
    """With one sample ([1, 16, 32]) the tokens are on the long axis: the same MLP blocks are
    token-wise, recomputing layer_norm, fc1, gelu, fc2 on rows of axis 1."""
    plans = analyse(mlp_only(batch=1), EAGER, through="plan").plans
    assert [p.partial for p in plans] == [True, True]
    layouts = [(p.region.batch_axis, p.region.token_axis, p.region.batch, p.region.tokens) for p in plans]
    assert layouts == [(0, 1, 1, N)] * 2
    for plan in plans:
        assert [op_kind(n) for n in plan.recompute] == ["layer_norm", "linear", "gelu", "linear"]


# == scores ===================================================================================

def test_scores_mlp_from_its_own_blocks_attention():
    """A token-wise MLP region is scored (ToCa s1) with the self-attention of its own block: its
    owner is that block's attn region and q, k, v are that SDPA's inputs; the token grid (4, 4)
    comes from the 2x2-stride patch convolution of the 8x8 latent. Reuse-only regions get no
    score."""
    captured = dit()
    plans = analyse(captured, EAGER, through="scores").plans
    assert plans[0].score is None and plans[2].score is None
    for plan, owner, block in ((plans[1], 0, captured.model.blocks[0]), (plans[3], 2, captured.model.blocks[1])):
        source = plan.score
        attention = sdpa_of(captured, block.attn.qkv)
        assert source.kind == "attention"
        assert source.owners == (owner,)
        assert source.attention is attention
        assert (source.query, source.key, source.value) == tuple(attention.args[:3])
        assert source.cross_query is None
        assert source.grid == (4, 4)


def test_scores_cross_attention_block_adds_entropy():
    """In a block with cross-attention both token-wise regions (cross_attn and mlp) add s2, the
    entropy of the cross-attention: their owners are the block's attn and cross_attn regions, and
    the cross query/key are the cross SDPA's."""
    captured = dit(depth=1, cross=True)
    plans = analyse(captured, EAGER, through="scores").plans
    block = captured.model.blocks[0]
    cross = sdpa_of(captured, block.cross_attn.q)
    assert plans[0].score is None
    for plan in plans[1:]:
        assert plan.score.kind == "attention"
        assert plan.score.owners == (0, 1)
        assert plan.score.attention is sdpa_of(captured, block.attn.qkv)
        assert (plan.score.cross_query, plan.score.cross_key) == tuple(cross.args[:2])


def test_scores_kvnorm_reads_the_attention_values():
    """score='kvnorm' (DuCa) scores a token-wise region from the values of its block's
    self-attention."""
    captured = dit()
    plans = analyse(captured, ToCaConfig(compiler="eager", score="kvnorm"), through="scores").plans
    attention = sdpa_of(captured, captured.model.blocks[0].attn.qkv)
    assert plans[1].score.kind == "kvnorm"
    assert plans[1].score.owners == (0,)
    assert plans[1].score.value is attention.args[2]


@pytest.mark.parametrize("config", [ToCaConfig(compiler="eager", interval=1), RANDOM,
                                    ToCaConfig(compiler="eager", ratio=0.0)], ids=["interval1", "random", "ratio0"])
def test_scores_random_when_nothing_is_selected_by_attention(config):
    """No attention score is planned when no partial step selects tokens by it (every step
    full, ratio 0) or the random score is asked for: token-wise regions get the random source,
    with no owners (it needs no attention to run); the grid is still known."""
    plans = analyse(dit(), config, through="scores").plans
    for plan in plans[1::2]:
        assert plan.score.kind == "random"
        assert plan.score.owners == ()
        assert plan.score.grid == (4, 4)


def test_scores_without_attention_fall_back_to_random():
    """A token-wise region in a graph without any attention is scored randomly, with no grid
    (there is no patch convolution)."""
    plans = analyse(mlp_only(batch=1), EAGER, through="scores").plans
    assert [(p.score.kind, p.score.owners, p.score.grid) for p in plans] == [("random", (), ())] * 2


# == state ====================================================================================

def test_state_toca():
    """ToCa: every region takes a cache of its branch output [B, N, C]; token-wise regions also
    take a staleness counter and a base score, [B, N] float32 each; nothing global."""
    ctx = analyse(dit(), EAGER)
    expected = {}
    for region in range(4):
        expected[(region, "slot0")] = (B, N, C)
        if region % 2 == 1:
            expected[(region, "stale")] = (B, N)
            expected[(region, "base")] = (B, N)
    assert state_specs(ctx) == expected
    assert set(state_dtypes(ctx).values()) == {torch.float32}


def test_state_cross_attention_block():
    """With cross-attention, the cross_attn and mlp regions are token-wise (staleness and score);
    the attn region only has its cache; the text keys/values (the kv linear's output, [B, M, 2C])
    have a cache of their own, global to the graph. With ``constant_kv=False`` they have none."""
    ctx = analyse(dit(depth=1, cross=True), EAGER)
    assert state_specs(ctx) == {
        (0, "slot0"): (B, N, C),
        (1, "slot0"): (B, N, C), (1, "stale"): (B, N), (1, "base"): (B, N),
        (2, "slot0"): (B, N, C), (2, "stale"): (B, N), (2, "base"): (B, N),
        (GLOBAL, "const0"): (B, M, 2 * C),
    }
    off = analyse(dit(depth=1, cross=True), EAGER.replace(constant_kv=False))
    assert (GLOBAL, "const0") not in state_specs(off)


def test_state_taylorseer_order_two():
    """TaylorSeer (order 2) forecasts every row, so no selection state: each region keeps its
    value and two finite differences, all [B, N, C]; the step distance and the two inverse step
    gaps are global scalars."""
    ctx = analyse(dit(), ToCaConfig(compiler="eager", mode="taylorseer", taylor_order=2))
    expected: dict = {}
    for region in range(4):
        for name in ("slot0", "taylor1", "taylor2"):
            expected[(region, name)] = (B, N, C)
    expected.update({(GLOBAL, "taylor_k"): (), (GLOBAL, "taylor_inv1"): (), (GLOBAL, "taylor_inv2"): ()})
    assert state_specs(ctx) == expected


def test_state_duca_keeps_the_stream():
    """DuCa takes ToCa's state plus the residual stream after the last block [B, N, C], which an
    aggressive step reuses instead of running any block."""
    ctx = analyse(dit(), ToCaConfig(compiler="eager", mode="duca"))
    specs = state_specs(ctx)
    assert specs.pop((GLOBAL, "stream")) == (B, N, C)
    assert specs == state_specs(analyse(dit(), EAGER))
    assert ctx.stream is ctx.detection.regions[-1].join


def test_state_nothing_for_a_graph_without_regions():
    """A graph with no region takes no state."""
    assert state_specs(analyse(no_residual(), EAGER)) == {}


# == rewrite ==================================================================================

ALL_FULL = {0: FULL, 1: FULL, 2: FULL, 3: FULL}


def test_rewrite_full_keeps_every_op_and_refills_caches():
    """A full step computes every region as captured (same linears, SDPAs, gelus and convs) and
    refills each cache once: one fill_cache per region, one staleness reset per token-wise
    region; with the random score no score op is added, and nothing is gathered or scattered."""
    captured = dit()
    ctx = analyse(captured, RANDOM)
    before, after = count_ops(captured.gm), count_ops(variant(ctx, ALL_FULL))
    assert before["linear"] == DIT_LINEARS
    for op in ("linear", "scaled_dot_product_attention", "gelu", "conv2d", "layer_norm"):
        assert after[op] == before[op], op
    assert after["fill_cache"] == 4
    assert after["clear_staleness"] == 2
    for op in ("select_tokens", "take_rows", "put_rows", "refresh_staleness",
               "attention_received", "received_from_map"):
        assert after[op] == 0, op


def test_rewrite_full_with_sampled_attention_score():
    """With s1 estimated from 4 of the 16 query rows, a full step also writes a base score per
    token-wise region, computed by attention_received from its block's q and k; the fused SDPAs
    stay as they are."""
    captured = dit()
    ctx = analyse(captured, ToCaConfig(compiler="eager", score_queries=4))
    gm = variant(ctx, ALL_FULL)
    after = count_ops(gm)
    assert after["scaled_dot_product_attention"] == 2
    assert after["linear"] == DIT_LINEARS
    assert after["attention_received"] == 2
    assert after["fill_cache"] == 4 + 2
    base = state_placeholders(ctx, gm)
    for region in (1, 3):
        (write,) = base[(region, "base")].users
        assert op_kind(write) == "fill_cache" and op_kind(write.args[1]) == "attention_received"


def test_rewrite_full_with_exact_attention_score_shares_the_map():
    """When every query row is scored (score_queries >= N) a full step computes each block's
    attention once as (exp(q·kᵀ·scale - rowmax)·v) / rowsum and reads s1 off that map: no SDPA
    is left, two matmuls, one exp, one row max and one row sum per attention replace it (no
    softmax: the map is normalised only inside the score), and each token-wise region writes a
    base score from received_from_map."""
    captured = dit()
    ctx = analyse(captured, EAGER)
    before, after = count_ops(captured.gm), count_ops(variant(ctx, ALL_FULL))
    assert after["scaled_dot_product_attention"] == 0
    assert after["softmax"] == before["softmax"]
    for op in ("exp", "amax", "sum"):
        assert after[op] == before[op] + 2, op
    assert after["matmul"] == before["matmul"] + 4
    assert after["received_from_map"] == 2
    assert after["fill_cache"] == 4 + 2
    assert after["linear"] == before["linear"]


def test_rewrite_full_region_without_its_attention_gets_no_new_score():
    """A token-wise region refilled while its block's attention is reused computes no base
    score (the score needs that attention to run): its cache and staleness are written, no
    score op appears, and the reused attention's linears and SDPA are gone."""
    captured = dit()
    ctx = analyse(captured, EAGER)
    after = count_ops(variant(ctx, {0: REUSE, 1: FULL, 2: REUSE, 3: FULL}))
    assert after["fill_cache"] == 2
    assert after["clear_staleness"] == 2
    assert after["received_from_map"] == after["attention_received"] == 0
    assert after["scaled_dot_product_attention"] == 0
    assert after["linear"] == DIT_LINEARS - 4   # qkv and proj of both blocks


def test_rewrite_missing_decision_means_full():
    """A region the decisions do not mention is computed fully (and its cache refilled)."""
    captured = dit()
    ctx = analyse(captured, RANDOM)
    assert count_ops(variant(ctx, {})) == count_ops(variant(ctx, ALL_FULL))


def test_rewrite_reuse_removes_region_compute():
    """Reusing every cache removes every region's compute: 4 linears per block (qkv, proj, fc1,
    fc2), the SDPAs and gelus. What stays is the timestep embedding, the adaLN linears (their
    gates scale the cached outputs, now read from the cache inputs) and the output layer; no
    cache is written."""
    captured = dit()
    ctx = analyse(captured, EAGER)
    gm = variant(ctx, {0: REUSE, 1: REUSE, 2: REUSE, 3: REUSE})
    after = count_ops(gm)
    assert after["linear"] == DIT_LINEARS - 2 * DIT_BLOCK_LINEARS
    for op in ("scaled_dot_product_attention", "gelu", "fill_cache", "put_rows", "refresh_staleness", "select_tokens"):
        assert after[op] == 0, op
    state = state_placeholders(ctx, gm)
    regions = ctx.detection.regions
    for region in range(4):
        (user,) = state[(region, "slot0")].users
        assert op_kind(user) == "mul" and regions[region].gate.name in [a.name for a in user.args]
    assert all(not state[(region, name)].users for region in (1, 3) for name in ("stale", "base"))


def test_rewrite_rows_recompute_selected_tokens():
    """A rows step with k=3: self-attention regions cannot run on rows and are reused (their qkv,
    proj and SDPA gone; asking them for rows is refused, see the next test); each MLP region picks 3 tokens, gathers the
    stream's rows (take_rows), runs norm, fc1, gelu, fc2 on [B, 3, .] rows, scatters them into
    its cache (put_rows, [B, N, C]) and ages the other tokens (refresh_staleness). The [B, 1, C]
    modulation is broadcast, not gathered. Both regions' selections are one top-k
    (select_tokens_together, [2, B, 3]) made before the first block."""
    captured = dit()
    ctx = analyse(captured, EAGER)
    gm = variant(ctx, {0: REUSE, 1: 3, 2: REUSE, 3: 3})
    after = count_ops(gm)
    assert after["linear"] == DIT_LINEARS - 2 * 2
    assert after["scaled_dot_product_attention"] == 0
    assert after["gelu"] == 2
    assert after["select_tokens"] == 0 and after["select_tokens_together"] == 1
    for op in ("take_rows", "put_rows", "refresh_staleness"):
        assert after[op] == 2, op
    (together,) = [n for n in gm.graph.nodes if op_kind(n) == "select_tokens_together"]
    first_linear = next(n for n in gm.graph.nodes if op_kind(n) == "linear")
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    assert order[together] < order[first_linear]
    assert after["fill_cache"] == 0
    shapes = run_shapes(gm, captured, ctx)
    for block in captured.model.blocks:
        (fc1,) = linear_of(gm, captured, block.mlp.fc1)
        (fc2,) = linear_of(gm, captured, block.mlp.fc2)
        assert shapes[fc1.name] == (B, 3, 4 * C)
        assert shapes[fc2.name] == (B, 3, C)
        assert not linear_of(gm, captured, block.attn.qkv) and not linear_of(gm, captured, block.attn.proj)
    assert shapes[together.name] == (2, B, 3)
    for node in gm.graph.nodes:
        if op_kind(node) == "take_rows":
            assert shapes[node.name] == (B, 3, C)
        if op_kind(node) == "put_rows":
            assert shapes[node.name] == (B, N, C)


def test_rewrite_refuses_rows_for_a_region_reused_whole():
    """Self-attention mixes tokens, so its output is reused whole: a rows decision for it is an
    error of the caller, not silently a reuse."""
    ctx = analyse(dit(), EAGER)
    with pytest.raises(RewriteError, match="cannot recompute 3 rows"):
        variant(ctx, {0: 3, 1: 3, 2: REUSE, 3: 3})


def test_rewrite_rows_cross_attention_query_side_on_rows():
    """On a rows step (k=5) of a cross-attention block the query side runs on the selected rows
    (q linear [B, 5, C], SDPA [B, H, 5, D]) while the text keys/values are computed whole
    (kv linear [B, M, 2C]); the self-attention is reused."""
    captured = dit(depth=1, cross=True)
    ctx = analyse(captured, EAGER)
    gm = variant(ctx, {0: REUSE, 1: 5, 2: 5})
    after = count_ops(gm)
    assert after["linear"] == 2 + 1 + 3 + 2 + 1   # t1 t2, ada, cross q kv proj, fc1 fc2, out
    assert after["scaled_dot_product_attention"] == 1
    assert after["take_rows"] == 2 and after["put_rows"] == 2
    block = captured.model.blocks[0]
    shapes = run_shapes(gm, captured, ctx)
    assert shapes[linear_of(gm, captured, block.cross_attn.q)[0].name] == (B, 5, C)
    assert shapes[linear_of(gm, captured, block.cross_attn.kv)[0].name] == (B, M, 2 * C)
    (sdpa,) = [n for n in gm.graph.nodes if op_kind(n) == "scaled_dot_product_attention"]
    assert shapes[sdpa.name] == (B, HEADS, 5, C // HEADS)


def test_rewrite_rows_sequence_first():
    """On a sequence-first stream the rows are gathered along axis 0: with k=3 the MLP runs on
    [3, B, .] rows and scatters into its [N, B, C] cache, while the staleness counter and score
    stay [B, N]; the reused nn.MultiheadAttention is gone."""
    captured = seq_first()
    ctx = analyse(captured, EAGER)
    assert state_specs(ctx) == {(0, "slot0"): (N, B, C), (1, "slot0"): (N, B, C),
                                (1, "stale"): (B, N), (1, "base"): (B, N)}
    gm = variant(ctx, {0: REUSE, 1: 3})
    after = count_ops(gm)
    assert after["multi_head_attention_forward"] == 0
    assert after["linear"] == 2 and after["take_rows"] == 1 and after["put_rows"] == 1
    shapes = run_shapes(gm, captured, ctx)
    mlp = captured.model.mlp
    assert shapes[linear_of(gm, captured, mlp.fc1)[0].name] == (3, B, 4 * C)
    assert shapes[linear_of(gm, captured, mlp.fc2)[0].name] == (3, B, C)
    (put,) = [n for n in gm.graph.nodes if op_kind(n) == "put_rows"]
    assert shapes[put.name] == (N, B, C)


TAYLOR = ToCaConfig(compiler="eager", mode="taylorseer")


def test_rewrite_taylorseer_full_updates_differences():
    """A TaylorSeer full step keeps every op and updates each region's value and differences
    with one taylor_update (no plain cache fill, no staleness)."""
    captured = dit()
    after = count_ops(variant(analyse(captured, TAYLOR), ALL_FULL))
    assert after["linear"] == DIT_LINEARS
    assert after["taylor_update"] == 4
    assert after["fill_cache"] == after["clear_staleness"] == 0


def test_rewrite_forecast_replaces_every_region():
    """A TaylorSeer forecast step runs no region (no block linear, SDPA or gelu): each region's
    output is one taylor_forecast from its stored differences, then gated as usual."""
    captured = dit()
    gm = variant(analyse(captured, TAYLOR), {0: FORECAST, 1: FORECAST, 2: FORECAST, 3: FORECAST})
    after = count_ops(gm)
    assert after["linear"] == DIT_LINEARS - 2 * DIT_BLOCK_LINEARS
    assert after["scaled_dot_product_attention"] == after["gelu"] == 0
    assert after["taylor_forecast"] == 4
    assert all(op_kind(next(iter(n.users))) == "mul" for n in gm.graph.nodes if op_kind(n) == "taylor_forecast")


DUCA = ToCaConfig(compiler="eager", mode="duca", score="random")


def test_rewrite_duca_full_saves_the_stream():
    """A DuCa full step refills every region's cache and also saves the stream after the last
    block (one more fill_cache)."""
    captured = dit()
    ctx = analyse(captured, DUCA)
    gm = variant(ctx, ALL_FULL)
    assert count_ops(gm)["fill_cache"] == 4 + 1
    (save,) = state_placeholders(ctx, gm)[(GLOBAL, "stream")].users
    assert op_kind(save) == "fill_cache"


def test_rewrite_skip_runs_nothing_but_the_output_layer():
    """A DuCa aggressive step (every region SKIP) runs no block: the final norm reads the stream
    saved at the last full step, and the patch embedding, the timestep embedding and every block
    are gone — one layer_norm and one linear remain."""
    captured = dit()
    ctx = analyse(captured, DUCA)
    gm = variant(ctx, {0: SKIP, 1: SKIP, 2: SKIP, 3: SKIP})
    after = count_ops(gm)
    assert after["linear"] == 1 and after["layer_norm"] == 1
    for op in ("conv2d", "sin", "cos", "scaled_dot_product_attention", "gelu", "fill_cache"):
        assert after[op] == 0, op
    (user,) = state_placeholders(ctx, gm)[(GLOBAL, "stream")].users
    assert op_kind(user) == "layer_norm"
    assert linear_of(gm, captured, captured.model.out)


# == dead code ================================================================================

def _store(cache: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return cache.copy_(value)


def test_dead_code_keeps_writes_and_inplace_ops_removes_pure_ops():
    """Dead-code elimination removes unused pure ops (relu, a sin -> cos chain) but keeps every
    write whose result nobody reads: a node flagged as a write (and what it reads), and the
    user's in-place ops (``buf.add_``, ``torch.relu_``); placeholders always stay."""
    graph = fx.Graph()
    x, buf = graph.placeholder("x"), graph.placeholder("buf")
    graph.placeholder("unused_input")
    graph.call_function(torch.relu, (x,))
    graph.call_function(torch.cos, (graph.call_function(torch.sin, (x,)),))
    graph.call_method("add_", (buf, 1.0))
    graph.call_function(torch.relu_, (buf,))
    write = graph.call_function(_store, (buf, graph.call_function(torch.exp, (x,))))
    mark_effect(write)
    graph.output(graph.call_function(operator.mul, (x, 2.0)))
    gm = fx.GraphModule(torch.nn.Module(), graph)
    remove_dead_code(gm)
    assert count_ops(gm) == Counter({"add_": 1, "relu_": 1, "exp": 1, "_store": 1, "mul": 1})
    assert [n.name for n in gm.graph.nodes if n.op == "placeholder"] == ["x", "buf", "unused_input"]


def test_dead_code_in_a_variant_keeps_cache_writes():
    """In a rewritten graph the state writes have no users (nothing reads their result) and
    still survive: refresh_staleness on a rows step, fill_cache and clear_staleness on a full
    step; the dropped self-attention's ops are removed (nothing left reads them)."""
    captured = dit()
    ctx = analyse(captured, RANDOM)
    rows = variant(ctx, {0: REUSE, 1: 3, 2: REUSE, 3: 3})
    stale = [n for n in rows.graph.nodes if op_kind(n) == "refresh_staleness"]
    assert len(stale) == 2 and all(not n.users for n in stale)
    assert count_ops(rows)["permute"] == 0   # the qkv split of both attentions
    full = variant(ctx, ALL_FULL)
    writes = [n for n in full.graph.nodes if op_kind(n) in ("fill_cache", "clear_staleness")]
    assert len(writes) == 6 and all(not n.users for n in writes)


def test_dead_code_keeps_the_models_own_inplace_op():
    """A reuse step removes the reused MLP's norm, linears and gelu but keeps the model's own
    in-place op (``calls.add_(1)`` on a buffer), whose result nobody reads."""
    captured = counting_mlp()
    ctx = analyse(captured, EAGER)
    assert [p.region.kind for p in ctx.plans] == ["mlp"]
    after = count_ops(variant(ctx, {0: REUSE}))
    assert after["add_"] == 1
    assert after["linear"] == after["gelu"] == after["layer_norm"] == 0


# == validate =================================================================================

def test_validate_rejects_more_rows_than_tokens():
    """Validation runs each variant on fake tensors: asking a region for more rows (17) than its
    stream has tokens (16) fails there, as a RewriteError, instead of producing a graph."""
    ctx = analyse(dit(), EAGER)
    with pytest.raises(RewriteError):
        variant(ctx, {1: N + 1})


# == constants (text keys/values constant within a generation) ================================

def _position(captured: Captured, value: torch.Tensor) -> int:
    placeholders = [n for n in captured.gm.graph.nodes if n.op == "placeholder"]
    return placeholders.index(captured.placeholder_of(value))


def test_constants_are_the_text_kv_linears():
    """In the cross-attention DiT the only values computed from the text alone (no path from
    the latent or the timestep) that a region reads are each block's ``kv(context)`` linear —
    its views (view, permute, the k/v unpacking) are walked back to it, so the cache holds the
    computed tensor [B, M, 2C]. Each is computed from the context and that linear's weight and
    bias, and read by its block's cross_attn region. Without cross-attention, nothing."""
    captured = dit(depth=2, cross=True)
    ctx = analyse(captured, EAGER, through="constants")
    context = captured.args[2]
    expected = []
    for b, block in enumerate(captured.model.blocks):
        (kv,) = linear_of(captured.gm, captured, block.cross_attn.kv)
        inputs = tuple(sorted(_position(captured, t) for t in (context, block.cross_attn.kv.weight,
                                                                 block.cross_attn.kv.bias)))
        cross = next(p.region.index for p in ctx.plans if p.region.kind == "cross_attn" and p.region.block == b)
        expected.append((kv, inputs, (cross,)))
    assert constant_values(ctx) == expected
    assert [tuple(c.shape) for c in ctx.constants] == [(B, M, 2 * C)] * 2
    assert constant_values(analyse(dit(depth=2), EAGER, through="constants")) == []
    assert constant_values(analyse(mlp_only(), EAGER, through="constants")) == []


def test_variant_constants_read_drops_the_text_kv():
    """``"read"``: the kv linears are gone (every use reads the const caches, which the SDPAs now
    depend on); ``"fill"``: they stay and are copied into the caches (one fill_cache more each);
    ``"compute"``: the graph as without constants. On a partial step (rows of the cross-attention
    and MLP regions) the same holds: the selected query rows attend to the cached keys/values."""
    captured = dit(depth=2, cross=True)
    ctx = analyse(captured, EAGER)
    kv_weights = [captured.placeholder_of(b.cross_attn.kv.weight).name for b in captured.model.blocks]
    partial = {p.region.index: (3 if p.partial else REUSE) for p in ctx.plans}
    for decisions in ({p.region.index: FULL for p in ctx.plans}, partial):
        compute, fill, read = (variant(ctx, decisions, use) for use in ("compute", "fill", "read"))
        for weight in kv_weights:
            assert [op_kind(n) for n in calls_with(compute, weight)] == ["linear"]
            assert [op_kind(n) for n in calls_with(fill, weight)] == ["linear"]
            assert calls_with(read, weight) == []
        assert count_ops(read)["linear"] == count_ops(compute)["linear"] - 2
        assert count_ops(fill)["fill_cache"] == count_ops(compute)["fill_cache"] + 2
        assert count_ops(read)["fill_cache"] == count_ops(compute)["fill_cache"]
        caches = state_placeholders(ctx, read)
        sdpas = [n for n in read.graph.nodes if op_kind(n) == "scaled_dot_product_attention"]
        for i in range(2):
            assert any(depends_on(s, caches[(GLOBAL, f"const{i}")]) for s in sdpas)


def test_variant_constants_read_equals_compute():
    """Run on real tensors: a full step that fills the caches, then a full step that reads them,
    gives exactly the output of the full step that computes everything."""
    captured = dit(depth=2, cross=True)
    ctx = analyse(captured, EAGER)
    full = {p.region.index: FULL for p in ctx.plans}
    state = state_tensors(ctx)
    with torch.no_grad():
        expected = variant(ctx, full, "compute")(*captured.inputs, *state_tensors(ctx))
        filled = variant(ctx, full, "fill")(*captured.inputs, *state)
        read = variant(ctx, full, "read")(*captured.inputs, *state)
    first = lambda out: out[0] if isinstance(out, (tuple, list)) else out  # noqa: E731
    assert torch.equal(first(filled), first(expected))
    assert torch.equal(first(read), first(expected))


class MutatedContext(nn.Module):
    """One cross-attention block whose forward scales the context in place first."""

    def __init__(self) -> None:
        super().__init__()
        self.block = DiTBlock(cross=True)
        self.t = nn.Linear(C, C)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        context.mul_(1.0)
        c = self.t(t[:, None].expand(-1, C))
        return self.block(x, c, context)


def test_constants_none_when_the_context_is_written_in_place():
    """A value something writes in place (here the context itself) is not constant, nor what is
    computed from it: no constants, so no cache can go stale under the write."""
    torch.manual_seed(0)
    captured = capture(MutatedContext(), torch.randn(B, N, C), torch.tensor([500.0, 20.0]), torch.randn(B, M, TEXT))
    ctx = analyse(captured, EAGER, through="constants")
    assert [p.region.kind for p in ctx.plans].count("cross_attn") == 1
    assert constant_values(ctx) == []


# == a stream concatenated with another one along the tokens, sliced back =====================

JOINT = ToCaConfig(compiler="eager", score="random", spatial_bonus=0.0)


def _shared_parts(captured: Captured, block: SharedMLPBlock) -> tuple[fx.Node, fx.Node, list[fx.Node]]:
    """The block's cat, its fc2 linear and the two getitem slices of the fc2 output (image, text)."""
    (fc2,) = linear_of(captured.gm, captured, block.mlp.fc2)
    slices = sorted((u for u in fc2.users if op_kind(u) == "getitem"), key=lambda n: n.args[1][1].start or 0, reverse=True)
    cat = [n for n in captured.gm.graph.nodes if op_kind(n) == "cat" and depends_on(fc2, n) and shape_of_node(n)[1] == M + N][-1]
    return cat, fc2, slices


def shape_of_node(node: fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["example_value"].shape)


def test_detect_shared_mlp_two_regions_per_block():
    """Each SharedMLP block has two residual joins, image then text, whose branches share the
    one MLP: two ``mlp`` regions per block, over the N=16 image and the M=8 text tokens, with
    the two getitem slices of fc2's output as cache points and the two gates as gates."""
    captured = shared_mlp()
    regions = analyse(captured, JOINT, through="detect").detection.regions
    assert [r.kind for r in regions] == ["mlp"] * 4
    assert [r.block for r in regions] == [0, 0, 1, 1]
    assert [r.tokens for r in regions] == [N, M, N, M]
    assert all((r.batch, r.batch_axis, r.token_axis) == (B, 0, 1) for r in regions)
    for block, pair in zip(captured.model.blocks, (regions[:2], regions[2:])):
        cat, fc2, (image, text) = _shared_parts(captured, block)
        assert [r.cache_point for r in pair] == [image, text]
        assert all(cat in r.branch and fc2 in r.branch for r in pair)
        assert all(r.gate is not None for r in pair)


def test_plan_shared_mlp_refreshed_per_token_through_cat_and_slice():
    """The cat puts the image tokens at rows M..M+N of the joint axis (the text at 0..M); the
    MLP and the position add are token-wise on it; the slice [:, M:] takes back exactly the
    image tokens. So each region is refreshed per token: the image region recomputes norm,
    modulation (mul, add), cat, + pos, fc1, gelu, fc2 and its slice; the text region its norm,
    cat, + pos, fc1, gelu, fc2 and its slice. One slot each: the cache point."""
    captured = shared_mlp()
    plans = analyse(captured, JOINT, through="plan").plans
    assert [p.partial for p in plans] == [True] * 4
    for block, (image, text) in zip(captured.model.blocks, (plans[:2], plans[2:])):
        cat, fc2, _ = _shared_parts(captured, block)
        assert [op_kind(n) for n in image.recompute] == [
            "layer_norm", "mul", "add", "cat", "add", "linear", "gelu", "linear", "getitem"]
        assert [op_kind(n) for n in text.recompute] == [
            "layer_norm", "cat", "add", "linear", "gelu", "linear", "getitem"]
        assert token_span(image, cat) == (M, 0, N) and token_span(image, fc2) == (M, 0, N)
        assert token_span(text, cat) == (0, 0, M) and token_span(text, fc2) == (0, 0, M)
        for plan in (image, text):
            assert token_span(plan, plan.region.cache_point) is None
            assert [s.node for s in plan.slots] == [plan.region.cache_point]


class SlicedInside(nn.Module):
    """The image MLP over cat(text, image) sliced back to all of the text and *part* of the image
    (``[:, :M + N // 2]``) and padded: the branch output is not the image's tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.block = SharedMLPBlock()

    def forward(self, x: torch.Tensor, text: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        shift, scale, gate, _ = self.block.modulation(t[:, None].expand(-1, C))
        h = torch.cat([text, self.block.norm(x) * (1 + scale) + shift], dim=1)
        out = self.block.mlp(h)[:, M - N // 2:M + N // 2]
        return x + gate * out


def test_plan_a_slice_that_is_not_the_streams_tokens_is_reused_whole():
    """A slice of the joint axis that keeps only half of the image tokens (and half as many text
    rows) is the stream's length but not its tokens: reused whole, with a note."""
    torch.manual_seed(0)
    captured = capture(SlicedInside(), torch.randn(B, N, C), torch.randn(B, M, C), torch.tensor([500.0, 20.0]))
    plans = analyse(captured, JOINT, through="plan").plans
    assert [(p.region.kind, p.partial) for p in plans] == [("mlp", False)]
    assert "another stream" in plans[0].region.note or "part of the stream" in plans[0].region.note


def test_rewrite_rows_shared_mlp_runs_the_mlp_on_the_selected_rows_only():
    """A rows step (image k=3, text k=2): each region gathers its stream's rows and the rows of
    the [1, M+N, C] position table at its tokens' positions (image: offset M), runs fc1, gelu,
    fc2 on [B, k, .] rows, and scatters into its cache; the joint MLP over all M+N rows and its
    cat are gone."""
    captured = shared_mlp(depth=1)
    ctx = analyse(captured, JOINT)
    gm = variant(ctx, {0: 3, 1: 2})
    after = count_ops(gm)
    assert after["cat"] == 1                     # the timestep embedding's; the joint cat is gone
    assert after["gelu"] == 2 and after["put_rows"] == 2
    assert after["select_tokens"] == 2 and after["select_tokens_together"] == 0  # k 3 and 2: two top-k
    assert after["take_rows"] == 4               # per region: the stream and the position table
    block = captured.model.blocks[0]
    shapes = run_shapes(gm, captured, ctx)
    assert sorted(shapes[n.name] for n in linear_of(gm, captured, block.mlp.fc1)) == [(B, 2, 4 * C), (B, 3, 4 * C)]
    assert sorted(shapes[n.name] for n in linear_of(gm, captured, block.mlp.fc2)) == [(B, 2, C), (B, 3, C)]


@pytest.mark.parametrize("split", [False, True])
def test_rewrite_rows_shared_mlp_equals_a_hand_written_partial_step(split):
    """On real tensors: a rows step (image k=5, text REUSE; then image REUSE, text k=3) equals
    the step written out by hand: the top-k tokens of the base score, those rows of x (and of
    the position table at M + token) through the block's own norm, modulation and MLP, written
    into a copy of the cache; the reused stream reads its cache; both gates are the current ones.
    The same when the streams are taken back with ``split([M, N], dim=1)``."""
    captured = shared_mlp(depth=1, split=split)
    model, block = captured.model, captured.model.blocks[0]
    x, text, t = captured.args
    ctx = analyse(captured, JOINT)
    regions = sorted((p.region.tokens != N, p.region.index) for p in ctx.plans)  # the image's first
    image, txt = (index for _, index in regions)
    with torch.no_grad():
        shift, scale, gate, gate_text = block.modulation(model.embed(t))
        for image_k, text_k in ((5, 0), (0, 3)):
            state = state_tensors(ctx)
            by_key = {spec.key: tensor for spec, tensor in zip(ctx.specs, state)}
            generator = torch.Generator().manual_seed(image_k + text_k)
            for (_, name), tensor in by_key.items():
                if name in ("slot0", "base"):
                    tensor.copy_(torch.randn(tensor.shape, generator=generator))
            caches = [by_key[(i, "slot0")].clone() for i in (image, txt)]
            bases = [by_key[(i, "base")].clone() for i in (image, txt)]
            got_x, got_text = variant(ctx, {image: image_k or REUSE, txt: text_k or REUSE})(*captured.inputs, *state)

            want = [cache.clone() for cache in caches]
            if image_k:
                idx = bases[0].topk(image_k, dim=1).indices
                for b in range(B):
                    h = block.norm(x[b, idx[b]]) * (1 + scale[b]) + shift[b] + block.pos[0, M + idx[b]]
                    want[0][b, idx[b]] = block.mlp(h)
            if text_k:
                idx = bases[1].topk(text_k, dim=1).indices
                for b in range(B):
                    want[1][b, idx[b]] = block.mlp(block.norm_text(text[b, idx[b]]) + block.pos[0, idx[b]])
            torch.testing.assert_close(got_x, x + gate * want[0], rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(got_text, text + gate_text * want[1], rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(by_key[(image, "slot0")], want[0], rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(by_key[(txt, "slot0")], want[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("interval, ratio", [(1, 0.3), (3, 1.0)])
def test_shared_mlp_equals_the_model_when_every_token_is_computed(interval, ratio):
    """Through ``ToCa``: with every step full (interval 1), or partial steps that recompute every
    token (ratio 1: each stream's rows through the shared MLP, the other stream's by its own
    region), each step gives the uncached model's output for new inputs, through the rewritten
    graphs (caching active; with ratio 1, partial steps ran)."""
    from checks import assert_caching_active
    from toca_compile import ToCa

    torch.manual_seed(0)
    model = SharedMLP().eval()
    torch._dynamo.reset()
    toca = ToCa(ToCaConfig(compiler="eager", interval=interval, ratio=ratio, score="random"))
    fast = torch.compile(model, backend=toca.backend, dynamic=False)
    steps = 3
    with torch.no_grad(), toca.generation(steps):
        for i in range(steps):
            toca.step(i)
            inputs = (torch.randn(B, N, C), torch.randn(B, M, C), torch.full((B,), 900.0 - 300.0 * i))
            for got, want in zip(fast(*inputs), model(*inputs)):
                torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert_caching_active(toca, partial=ratio == 1.0)


def test_plan_joint_parallel_puts_the_pieces_back_together():
    """HunyuanVideo's single-stream block: the fork is the joint stream [B, N+M, C]. Slices of it
    concatenated again in order are the value sliced, so the attention output put back from its
    pieces is the attention output: a partial step recomputes norm, modulation (mul, add),
    transpose, reshape, that cat (of the SDPA output's rows), mlp_in, gelu, the cat with the MLP
    and proj_out, and caches the SDPA output (slot 1, [B, H, N+M, D]). The rotated query pieces
    are computed apart, but only the attention reads them, and it is cached."""
    captured = joint_parallel()
    plans = analyse(captured, JOINT, through="plan").plans
    assert [(p.region.kind, p.region.tokens, p.partial) for p in plans] == [("parallel", N + M, True)]
    (plan,) = plans
    assert [op_kind(n) for n in plan.recompute] == [
        "layer_norm", "mul", "add", "transpose", "reshape", "cat", "linear", "gelu", "cat", "linear"]
    assert plan.recompute[-1] is linear_of(captured.gm, captured, captured.model.proj_out)[0]
    (sdpa,) = [n for n in captured.gm.graph.nodes if op_kind(n) == "scaled_dot_product_attention"]
    assert [s.node for s in plan.slots] == [plan.region.cache_point, sdpa]
    assert [(s.batch_axis, s.token_axis, s.shape) for s in plan.slots] == [
        (0, 1, (B, N + M, C)), (0, 2, (B, HEADS, N + M, C // HEADS))]


def test_plan_pieces_computed_apart_on_the_way_back_are_reused_whole():
    """When the MLP reads ``cat([y[:, :N] * rot, y[:, N:]])``, the pieces went through different
    ops: no copy of the branch on the selected rows computes that cat, so the region is reused
    whole and the note names the cat."""
    captured = joint_parallel(apart=True)
    (plan,) = analyse(captured, JOINT, through="plan").plans
    assert not plan.partial and plan.recompute == ()
    assert "joins pieces of the stream computed apart" in plan.region.note


def test_rewrite_rows_joint_parallel_equals_a_hand_written_partial_step():
    """On real tensors, a rows step (k=7 of N+M=24 joint tokens) equals the step written out by
    hand: the top-k tokens of the base score; those rows of the joint stream through the norm,
    modulation, mlp_in and gelu; the cached SDPA output's rows at those tokens, heads merged;
    proj_out of both, written into a copy of the cache; the current gate."""
    captured = joint_parallel()
    model = captured.model
    x, text, t = captured.args
    ctx = analyse(captured, JOINT)
    state = state_tensors(ctx)
    by_key = {spec.key: tensor for spec, tensor in zip(ctx.specs, state)}
    generator = torch.Generator().manual_seed(7)
    for (_, name), tensor in by_key.items():
        if name in ("slot0", "slot1", "base"):
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
    cache, attention, base = (by_key[(0, name)].clone() for name in ("slot0", "slot1", "base"))
    with torch.no_grad():
        got_x, got_text = variant(ctx, {0: 7})(*captured.inputs, *state)
        shift, scale, gate = model.modulation(t)
        h = torch.cat([x, text], dim=1)
        want = cache.clone()
        idx = base.topk(7, dim=1).indices
        for b in range(B):
            y = model.norm(h[b, idx[b]]) * (1 + scale[b]) + shift[b]
            o = attention[b, :, idx[b]].transpose(0, 1).reshape(7, C)
            want[b, idx[b]] = model.proj_out(torch.cat([o, F.gelu(model.mlp_in(y))], dim=-1))
        out = h + gate * want
    torch.testing.assert_close(got_x, out[:, :N], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_text, out[:, N:], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(by_key[(0, "slot0")], want, rtol=1e-6, atol=1e-6)


def test_plan_joint_attention_over_the_streams_is_cached_at_the_streams_offset():
    """FLUX.3's joint block: the attention over cat(text, image) mixes tokens, so it is cached
    (slot 1, [B, H, M+N, D]) with the image tokens from row M on; the rest is token-wise on the
    joint axis and recomputed on the image's rows: norm, modulation (mul, add), the cat, what
    follows the SDPA (transpose, reshape, proj), fc1, gelu, fc2, the sum and the image's piece
    of the split (the qkv linear feeds only the cached attention)."""
    captured = joint_block3()
    (plan,) = analyse(captured, JOINT, through="plan").plans
    assert (plan.region.kind, plan.region.tokens, plan.partial) == ("parallel", N, True)
    assert [op_kind(n) for n in plan.recompute] == [
        "layer_norm", "mul", "add", "cat", "transpose", "reshape", "linear", "linear", "gelu", "linear",
        "add", "getitem"]
    (sdpa,) = [n for n in captured.gm.graph.nodes if op_kind(n) == "scaled_dot_product_attention"]
    assert [s.node for s in plan.slots] == [plan.region.cache_point, sdpa]
    assert [(s.token_axis, s.shape, s.offset) for s in plan.slots] == [
        (1, (B, N, C), 0), (2, (B, HEADS, M + N, C // HEADS), M)]


def test_rewrite_rows_joint_attention_rows_are_read_at_the_streams_offset():
    """On real tensors, a rows step (k=6 of the N=16 image tokens) equals the step written out
    by hand: the cached attention's rows M + token, the MLP on the image rows, summed, written
    into a copy of the cache; the current gate."""
    captured = joint_block3()
    model = captured.model
    x, text, t = captured.args
    ctx = analyse(captured, JOINT)
    state = state_tensors(ctx)
    by_key = {spec.key: tensor for spec, tensor in zip(ctx.specs, state)}
    generator = torch.Generator().manual_seed(3)
    for (_, name), tensor in by_key.items():
        if name in ("slot0", "slot1", "base"):
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
    cache, attention, base = (by_key[(0, name)].clone() for name in ("slot0", "slot1", "base"))
    with torch.no_grad():
        (got,) = variant(ctx, {0: 6})(*captured.inputs, *state)
        shift, scale, gate = model.modulation(t)
        want = cache.clone()
        idx = base.topk(6, dim=1).indices
        for b in range(B):
            y = model.norm(x[b, idx[b]]) * (1 + scale[b]) + shift[b]
            o = attention[b, :, M + idx[b]].transpose(0, 1).reshape(6, C)
            want[b, idx[b]] = model.attn.proj(o) + model.mlp(y)
    torch.testing.assert_close(got, x + gate * want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(by_key[(0, "slot0")], want, rtol=1e-6, atol=1e-6)
