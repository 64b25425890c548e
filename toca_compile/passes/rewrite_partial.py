"""Variant graphs: per region, compute fully, reuse the cache, or recompute selected rows.

For a reuse-only region the cache point is replaced by its cache. For a token-wise region with
``k > 0`` the pass inserts, right before the cache point: token selection from the noise and
staleness inputs, a gather of the fork's rows, a copy of every token-wise node of the branch
evaluated on those rows (sizes that name the token count are rewritten to ``k``; operands
from outside the branch that run along the token axis are gathered too; token-mixing values
come from their own caches), and ``index_put_`` of the result into the cache. Everything that
used the cache point then reads the updated cache; the gate and residual add stay as they are,
so they use the current step's modulation. Dead code (the skipped attention) is removed.
A TaylorSeer region forecasts its output instead; with forecast rows (``forecast_refresh``) the
same row copy then writes its exact rows into the forecast rather than into the cache.
"""
from __future__ import annotations

import operator
from typing import Any

import torch.fx as fx

from ..config import ToCaConfig
from ..decisions import FULL, Action, Decision
from ..ops import ELEMENTWISE, arg, op_name, shape_of
from ..regions import RegionPlan
from ..kernels.rows import fill_cache, put_rows, refresh_staleness, take_rows, taylor_forecast
from ..kernels.scores import select_tokens
from .constant_inputs import COMPUTE, FILL, READ, ConstantValue
from .dead_code import EFFECT
from .rewrite_full import fill_region
from .state_inputs import GLOBAL, StateSpec, add_state_placeholders, copy_graph_module
from .token_axes import Axes, row_source, rows_index

_SIZED = {"view", "reshape", "expand", "broadcast_to"}
EXPECTED_SHAPE = "toca_expected_shape"


class RewriteError(RuntimeError):
    """The partial variant could not be built for a region."""


def rewrite_variant(gm: fx.GraphModule, plans: tuple[RegionPlan, ...], specs: tuple[StateSpec, ...],
                    decisions: dict[int, Decision], config: ToCaConfig, stream: fx.Node | None = None,
                    constants: tuple[ConstantValue, ...] = (), use: str = COMPUTE) -> fx.GraphModule:
    """One executable graph (a copy; ``gm`` is left alone): per region its :class:`Decision`;
    when every decision is ``SKIP``, only what follows the last block. The constant values
    (constant_inputs.py) are computed (``use="compute"``), computed and stored (``"fill"``)
    or read from their caches (``"read"``). Dead code is left for the dead-code pass."""
    new, mapping = copy_graph_module(gm)
    state = add_state_placeholders(new, specs)
    _constants(new.graph, constants, use, mapping, state)
    actions = {decisions.get(p.region.index, FULL).action for p in plans}
    if Action.SKIP in actions:
        if actions != {Action.SKIP}:
            raise RewriteError(f"SKIP must be every region's decision (a step that runs no block), got {sorted(a.value for a in actions)}")
        if stream is None or (GLOBAL, "stream") not in state:
            raise RewriteError("SKIP needs the stored residual stream, which only mode='duca' keeps")
        mapping[stream].replace_all_uses_with(state[(GLOBAL, "stream")])
        return new
    if stream is not None and (GLOBAL, "stream") in state:
        with new.graph.inserting_after(mapping[stream]):
            keep = new.graph.call_function(fill_cache, (state[(GLOBAL, "stream")], mapping[stream]))
        keep.meta[EFFECT] = True
    for plan in plans:
        decision = decisions.get(plan.region.index, FULL)
        action = decision.action
        if action is Action.FULL:
            owners = plan.score.owners if plan.score is not None else ()
            with_score = all(decisions.get(o, FULL) == FULL for o in owners)
            fill_region(new.graph, plan, mapping, state, config, with_score)
        elif action is Action.FORECAST:
            if (plan.region.index, "taylor1") not in state:
                raise RewriteError(f"region {plan.region.label}: FORECAST needs the Taylor state of mode='taylorseer'")
            if decision.rows and not plan.partial:
                raise RewriteError(f"region {plan.region.label} is reused whole ({plan.region.note or 'not token-wise'}); "
                                   f"it cannot recompute {decision.rows} forecast rows")
            if decision.rows and (plan.region.index, "stale") not in state:
                raise RewriteError(f"region {plan.region.label}: forecast rows need the selection state of forecast_refresh > 0")
            _forecast(new.graph, plan, mapping, state, decision.rows, config)
        elif action is Action.REUSE:
            _reuse(new.graph, plan, mapping, state)
        elif not plan.partial:
            raise RewriteError(f"region {plan.region.label} is reused whole ({plan.region.note or 'not token-wise'}); "
                               f"it cannot recompute {decision.rows} rows")
        else:
            _recompute_rows(new.graph, plan, mapping, state, decision.rows, config)
    return new


def _constants(graph: fx.Graph, constants: tuple[ConstantValue, ...], use: str, mapping: dict, state: dict) -> None:
    if use not in (COMPUTE, FILL, READ):
        raise RewriteError(f"constants: expected one of {COMPUTE!r}, {FILL!r}, {READ!r}, got {use!r}")
    if use == COMPUTE:
        return
    for i, value in enumerate(constants):
        cache, node = state[(GLOBAL, f"const{i}")], mapping[value.node]
        if use == FILL:
            with graph.inserting_after(node):
                write = graph.call_function(fill_cache, (cache, node))
            write.meta[EFFECT] = True
        else:  # every use reads the cache; what computed the value becomes dead code
            node.replace_all_uses_with(cache)
            for key, val in mapping.items():
                if val is node:
                    mapping[key] = cache


def _forecast(graph: fx.Graph, plan: RegionPlan, mapping: dict, state: dict, k: int, config: ToCaConfig) -> None:
    """The Taylor forecast of the branch output; with ``k > 0`` its selected rows are then
    overwritten by rows computed exactly. The forecast is a fresh tensor, so the stored
    differences (from full steps only) stay as they were."""
    index, point = plan.region.index, mapping[plan.region.cache_point]
    with graph.inserting_before(point):
        value = graph.call_function(taylor_forecast, (state[(index, "slot0")], state[(index, "taylor1")],
                                                      state.get((index, "taylor2")), state[(GLOBAL, "taylor_k")]))
    if k:
        value = _recompute_rows(graph, plan, mapping, state, k, config, target=value)
    point.replace_all_uses_with(value, delete_user_cb=lambda user: user is not value)


def _reuse(graph: fx.Graph, plan: RegionPlan, mapping: dict, state: dict) -> None:
    """The cached output; with ``plan.reproject``, the output projection re-run on every token
    from the cached value before it (everything from outside the branch read as this call's)."""
    index, point = plan.region.index, mapping[plan.region.cache_point]
    if not plan.reproject:
        point.replace_all_uses_with(state[(index, "slot0")])
        return
    env = {slot.node: state[(index, f"slot{i}")] for i, slot in enumerate(plan.slots) if i > 0}
    with graph.inserting_before(point):
        for old in plan.reproject:
            env[old] = graph.node_copy(old, lambda n: env[n] if n in env else mapping[n])
    point.replace_all_uses_with(env[plan.region.cache_point])


def _recompute_rows(graph: fx.Graph, plan: RegionPlan, mapping: dict, state: dict, k: int, config: ToCaConfig,
                    target: fx.Node | None = None) -> fx.Node:
    """Recompute ``k`` selected rows and write them into ``target`` (default: the region's
    cache, whose every user then reads it); returns the written tensor."""
    region = plan.region
    index = region.index
    point = mapping[region.cache_point]
    env: dict[fx.Node, Any] = {}
    slot_of = {slot.node: (i, slot) for i, slot in enumerate(plan.slots)}
    with graph.inserting_before(point):
        grid = plan.score.grid if plan.score is not None else ()
        cell, bonus = config.spatial
        idx = graph.call_function(select_tokens, (state[(index, "base")], state[(index, "stale")], config.staleness_weight,
                                                  region.tokens, k, grid, cell, bonus, config.cfg_shared))
        env[region.fork] = graph.call_function(take_rows, (mapping[region.fork], idx, region.batch_axis, region.token_axis))
        for old, (i, slot) in slot_of.items():
            if i > 0:  # token-mixing values inside the branch: gathered from their caches
                rows = graph.call_function(operator.add, (idx, slot.offset)) if slot.offset else idx
                env[old] = graph.call_function(take_rows, (state[(index, f"slot{i}")], rows, slot.batch_axis, slot.token_axis))
        for old in plan.recompute:
            source = row_source(old, plan.axes)  # a cat with another stream: only this one's rows
            env[old] = env[source] if source is not None else _copy_on_rows(graph, old, plan, mapping, env, idx, k)
        head = plan.slots[0]
        into = state[(index, "slot0")] if target is None else target
        write = graph.call_function(put_rows, (into, idx, head.batch_axis, head.token_axis, env[region.cache_point]))
        stale = graph.call_function(refresh_staleness, (state[(index, "stale")], idx))
    write.meta[EFFECT] = True
    stale.meta[EFFECT] = True
    if target is None:
        point.replace_all_uses_with(write, delete_user_cb=lambda user: user is not write)
    return write


def _copy_on_rows(graph: fx.Graph, old: fx.Node, plan: RegionPlan, mapping: dict, env: dict, idx: fx.Node, k: int) -> fx.Node:
    out_axes: Axes = plan.axes[old]
    out_shape = shape_of(old)

    name = op_name(old)
    broadcasting = name in ELEMENTWISE or name in ("cat", "stack")

    def substitute(value: Any) -> Any:
        if not isinstance(value, fx.Node):
            return value
        if value in env:
            return env[value]
        if not broadcasting:  # weights, keys/values of cross-attention: used whole
            return mapping[value]
        return _gather_side(graph, value, mapping[value], out_axes, out_shape, idx)

    new = graph.node_copy(old, substitute)
    if name == "getitem" and shape_of(old.args[0]) is not None:  # a slice of the token axis keeps every row
        new.args = (new.args[0], rows_index(old, plan.axes), *new.args[2:])
    if name == "scaled_dot_product_attention":
        mask = arg(old, 3, "attn_mask")
        if isinstance(mask, fx.Node):
            gathered = _gather_side(graph, mask, mapping[mask], out_axes, out_shape, idx)
            if "attn_mask" in new.kwargs:
                new.kwargs = {**new.kwargs, "attn_mask": gathered}
            else:
                new.args = (*new.args[:3], gathered, *new.args[4:])
    new.meta = {key: val for key, val in old.meta.items() if key in ("nn_module_stack", "stack_trace", "source_fn_stack")}
    if out_shape is not None:
        expected = list(out_shape)
        expected[out_axes.token] = k
        new.meta[EXPECTED_SHAPE] = tuple(expected)
    if name in _SIZED and out_shape is not None:
        sizes = list(out_shape)
        sizes[out_axes.token] = k
        sizes[out_axes.batch] = out_shape[out_axes.batch]
        if old.op == "call_method":
            new.args, new.kwargs = (new.args[0], *sizes), {}
        else:
            new.args, new.kwargs = (new.args[0], tuple(sizes)), {}
    return new


def _gather_side(graph: fx.Graph, old: fx.Node, side: fx.Node, out_axes: Axes, out_shape, idx: fx.Node) -> fx.Node:
    """An operand from outside the branch: gathered too when it runs along the token axis (on an
    axis shared with another stream, at the selected tokens' positions there)."""
    shape = shape_of(old)
    if shape is None or out_shape is None:
        return side
    tokens = out_shape[out_axes.token]
    shift = len(out_shape) - len(shape)
    token_pos = out_axes.token - shift
    if tokens == 1 or token_pos < 0 or shape[token_pos] != tokens:
        return side
    if shift > 0:
        side = graph.call_method("reshape", (side, *([1] * shift + list(shape))))
    span = out_axes.span
    rows = idx if span is None or span.at == span.first else graph.call_function(operator.add, (idx, span.at - span.first))
    return graph.call_function(take_rows, (side, rows, out_axes.batch, out_axes.token))
