"""The pass pipeline as a user of the compiler sees it: named passes in one printed order, each
timed and dumped by name; one decision vocabulary; dead-code removal that never drops a write;
and a rewrite that refuses a decision it cannot honour instead of running something else."""
from __future__ import annotations

import logging
import operator

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from toca_compile import ToCa, ToCaConfig
from toca_compile.decisions import FORECAST, FULL, REUSE, SKIP, Action, Decision
from toca_compile.passes import pipeline
from toca_compile.passes.dead_code import EFFECT, remove_dead_code
from toca_compile.passes.manager import Pass, PassManager
from toca_compile.passes.rewrite_partial import RewriteError


class Block(nn.Module):
    """Pre-norm attention + MLP residual block over [B, N, C] tokens."""

    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TinyDiT(nn.Module):
    def __init__(self, depth: int = 2) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(depth))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        del t
        for block in self.blocks:
            x = block(x)
        return x


def captured_analysis(config: ToCaConfig | None = None) -> pipeline.Analysis:
    """The analysis of TinyDiT's Dynamo graph (eager executor: no Inductor)."""
    from toca_compile.graph_inputs import describe_all

    found: list[pipeline.Analysis] = []

    def backend(gm: fx.GraphModule, example_inputs: list):
        found.append(pipeline.analyze(gm, describe_all(example_inputs), config or ToCaConfig(compiler="eager")))
        return gm.forward

    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(TinyDiT(), backend=backend, dynamic=False)(torch.randn(2, 8, 16), torch.zeros(2))
    torch._dynamo.reset()
    assert len(found) == 1
    return found[0]


# -- decisions ---------------------------------------------------------------------------
def test_a_decision_names_itself_and_zero_rows_is_a_reuse():
    assert [str(d) for d in (FULL, REUSE, FORECAST, SKIP, Decision.refresh(5))] == \
        ["full", "reuse", "forecast", "skip", "rows5"]
    assert Decision.refresh(0) == REUSE
    assert Decision.refresh(3).tokens_refreshed(49) == 3 and FULL.tokens_refreshed(49) == 49
    assert REUSE.tokens_refreshed(49) == FORECAST.tokens_refreshed(49) == 0
    assert Decision.forecast(0) == FORECAST and not FORECAST.selects
    assert str(Decision.forecast(4)) == "forecast+rows4" and Decision.forecast(4).tokens_refreshed(49) == 4
    assert Decision.forecast(4).selects and Decision.refresh(2).selects and not FULL.selects


@pytest.mark.parametrize("bad", [lambda: Decision(Action.ROWS, 0), lambda: Decision(Action.FULL, 2),
                                 lambda: Decision.refresh(-1), lambda: Decision(Action.REUSE, 1),
                                 lambda: Decision.forecast(-1), lambda: Decision(Action.SKIP, 3)])
def test_a_decision_with_inconsistent_rows_is_refused(bad):
    with pytest.raises(ValueError):
        bad()


# -- the pass manager --------------------------------------------------------------------
def test_the_pipeline_order_is_one_printed_list_per_phase():
    assert [p.name for p in pipeline.ANALYSIS] == ["detect", "plan", "scores", "constants", "state"]
    assert [p.name for p in pipeline.VARIANT] == ["rewrite", "select_together", "dead_code", "validate"]
    assert repr(pipeline.VARIANT) == "PassManager('variant': rewrite -> select_together -> dead_code -> validate)"


def test_pass_names_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        PassManager("x", [Pass("a", lambda u: u, str), Pass("a", lambda u: u, str)])


def test_each_pass_is_timed_logged_and_dumped_by_name(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TOCA_COMPILE_DUMP", str(tmp_path))
    seen: list[str] = []
    manager: PassManager[int] = PassManager("demo", [Pass("double", lambda u: u * 2, lambda u: f"value {u}"),
                                                     Pass("inc", lambda u: seen.append("inc") or u + 1, lambda u: f"value {u}")])
    with caplog.at_level(logging.DEBUG, logger="toca_compile.passes"):
        assert manager.run(5, "g0") == 11
    assert seen == ["inc"] and manager.runs == {"double": 1, "inc": 1} and set(manager.seconds) == {"double", "inc"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g0.demo.0.double.txt", "g0.demo.1.inc.txt"]
    assert (tmp_path / "g0.demo.1.inc.txt").read_text() == "value 11"
    assert [r.getMessage().split(" took")[0] for r in caplog.records] == ["g0: demo pass double", "g0: demo pass inc"]


def test_a_compiled_model_dumps_its_analysis_and_every_variant(tmp_path, monkeypatch):
    monkeypatch.setenv("TOCA_COMPILE_DUMP", str(tmp_path))
    toca = ToCa(ToCaConfig(compiler="eager", interval=2, ratio=0.25))
    torch._dynamo.reset()
    model = torch.compile(TinyDiT(), backend=toca.backend, dynamic=False)
    x = torch.randn(2, 8, 16)
    with torch.no_grad(), toca.generation(2):
        for i in range(2):
            toca.step(i)
            x = model(x, torch.full((2,), 999 - i))
    torch._dynamo.reset()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n for n in names if ".analysis." in n] == [
        "graph0.analysis.0.detect.txt", "graph0.analysis.1.plan.txt", "graph0.analysis.2.scores.txt",
        "graph0.analysis.3.constants.txt", "graph0.analysis.4.state.txt"]
    variants = [n for n in names if ".variant." in n]
    assert len(variants) == 2 * 4  # a full and a partial variant, four passes each
    partial = (tmp_path / "graph0.variant1.variant.3.validate.txt").read_text()
    assert "decisions: 0:reuse 1:rows2 2:reuse 3:rows2" in partial and "take_rows" in partial
    assert "select_tokens_together" in partial  # both rows regions: one top-k
    assert "region 0: block 0 attn" in (tmp_path / "graph0.analysis.0.detect.txt").read_text()


# -- the analysis records ----------------------------------------------------------------
def test_analysis_records_are_frozen_and_a_later_pass_does_not_change_an_earlier_record():
    analysis = captured_analysis()
    with pytest.raises(AttributeError):
        analysis.plans = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        analysis.plans[0].region.partial_ok = True  # type: ignore[misc]
    detected = pipeline.detect(pipeline.Analysis(analysis.gm, analysis.inputs, analysis.config))
    planned = pipeline.plan(detected)
    assert detected.plans == () and len(planned.plans) == 4
    # planning says the attention is reused whole; the detection record keeps what detection said
    assert [p.partial for p in planned.plans] == [False, True, False, True]
    assert all(r.partial_ok for r in detected.detection.regions)


# -- the rewrite refuses what it cannot honour ---------------------------------------------
def test_skip_without_the_stored_stream_is_refused():
    analysis = captured_analysis()
    with pytest.raises(RewriteError, match="duca"):
        pipeline.build_variant(analysis, {p.region.index: SKIP for p in analysis.plans})


def test_skip_for_some_regions_only_is_refused():
    analysis = captured_analysis(ToCaConfig(compiler="eager", mode="duca"))
    with pytest.raises(RewriteError, match="every region"):
        pipeline.build_variant(analysis, {0: SKIP, 1: FULL, 2: SKIP, 3: SKIP})


def test_rows_for_a_region_reused_whole_are_refused():
    analysis = captured_analysis()
    with pytest.raises(RewriteError, match="cannot recompute 2 rows"):
        pipeline.build_variant(analysis, {0: Decision.refresh(2)})


def test_forecast_without_taylor_state_is_refused():
    analysis = captured_analysis()
    with pytest.raises(RewriteError, match="taylorseer"):
        pipeline.build_variant(analysis, {1: FORECAST})


def test_forecast_rows_need_a_token_wise_region_and_selection_state():
    analysis = captured_analysis(ToCaConfig(compiler="eager", mode="taylorseer", forecast_refresh=0.2))
    with pytest.raises(RewriteError, match="cannot recompute 2 forecast rows"):
        pipeline.build_variant(analysis, {0: Decision.forecast(2)})  # region 0: attention, reused whole
    plain = captured_analysis(ToCaConfig(compiler="eager", mode="taylorseer"))
    with pytest.raises(RewriteError, match="forecast_refresh"):
        pipeline.build_variant(plain, {1: Decision.forecast(2)})


# -- dead code -----------------------------------------------------------------------------
def _graph(build) -> fx.GraphModule:
    graph = fx.Graph()
    x, y = graph.placeholder("x"), graph.placeholder("y")
    out = build(graph, x, y)
    graph.output(out)
    return fx.GraphModule(torch.nn.Module(), graph)


def _targets(gm: fx.GraphModule) -> list[str]:
    return [str(getattr(n.target, "__name__", n.target)) for n in gm.graph.nodes if n.op in ("call_function", "call_method")]


def test_dead_code_removes_unused_pure_ops_and_keeps_every_write():
    def build(graph: fx.Graph, x: fx.Node, y: fx.Node) -> fx.Node:
        graph.call_function(torch.relu, (y,))                        # unused, pure: removed
        graph.call_method("add_", (x, 1.0))                          # user's in-place method: kept
        graph.call_function(operator.iadd, (x, y))                   # x += y: kept
        graph.call_function(torch.Tensor.mul_, (y, 2.0))             # in-place method as a function: kept
        graph.call_method("clone", (x,))                             # unused, pure method: removed
        write = graph.call_function(torch.sin, (y,))                 # a cache write the rewrite marked
        write.meta[EFFECT] = True
        return graph.call_function(torch.cos, (x,))

    gm = _graph(build)
    remove_dead_code(gm)
    assert _targets(gm) == ["add_", "iadd", "mul_", "sin", "cos"]
    x, y = torch.ones(3), torch.ones(3)
    out = gm(x, y)  # x: 1 -> 2 (add_) -> 3 (+= y); y: 1 -> 2 (mul_)
    assert torch.equal(x, torch.full((3,), 3.0)) and torch.equal(y, torch.full((3,), 2.0))
    assert torch.equal(out, torch.cos(x))


def test_dead_code_of_a_variant_drops_the_reused_branch_and_keeps_the_cache_writes():
    analysis = captured_analysis()
    linears = sum(1 for n in analysis.gm.graph.nodes if "linear" in str(n.target))
    full = pipeline.build_variant(analysis, {})
    partial = pipeline.build_variant(analysis, {0: REUSE, 1: Decision.refresh(2), 2: REUSE, 3: Decision.refresh(2)})
    assert sum(1 for n in full.graph.nodes if "linear" in str(n.target)) == linears == 8
    # the reused attentions' qkv and proj are gone; each MLP keeps fc1/fc2 on the gathered rows
    assert sum(1 for n in partial.graph.nodes if "linear" in str(n.target)) == 4
    assert sum(1 for n in partial.graph.nodes if "scaled_dot_product_attention" in str(n.target)) == 0
    assert sum(1 for n in partial.graph.nodes if getattr(n.target, "__name__", "") == "put_rows") == 2


# -- in-place writes -------------------------------------------------------------------------
class ScaledMLP(nn.Module):
    """An MLP that scales its hidden activation in place; nothing reads the ``mul_`` result."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        del t
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, 2, c // 2).permute(2, 0, 3, 1, 4)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))
        h = F.gelu(self.fc1(self.norm(x)))
        h.mul_(2.0)
        return x + self.fc2(h)


def test_a_branch_whose_value_is_written_in_place_is_reused_whole_and_stays_exact():
    """A row copy of the branch would leave out ``h.mul_(2)``: such a branch is reused whole,
    and with every token refreshed (ratio 1) the cached run equals the plain one."""
    torch.manual_seed(0)
    model = ScaledMLP().eval()
    report = __import__("toca_compile").inspect(model, torch.randn(2, 8, 16), torch.zeros(2))
    mlp = [r for r in report.regions if r.kind == "mlp"]
    assert len(mlp) == 1 and not mlp[0].partial_ok and "in-place 'mul'" in mlp[0].note
    toca = ToCa(ToCaConfig(compiler="eager", interval=3, ratio=1.0, score="random"))
    torch._dynamo.reset()
    fast = torch.compile(model, backend=toca.backend, dynamic=False)
    x = torch.randn(2, 8, 16)
    with torch.no_grad(), toca.generation(2):
        toca.step(0)
        fast(x, torch.zeros(2))
        toca.step(1)
        cached = fast(x, torch.zeros(2))
    torch._dynamo.reset()
    with torch.no_grad():
        plain = model(x, torch.zeros(2))
    # step 1 reuses step 0's branch outputs for the same input: exact
    torch.testing.assert_close(cached, plain, rtol=1e-6, atol=1e-6)
