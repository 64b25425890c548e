"""Token-axis analysis: which nodes of a branch are token-wise, and where their token axis is.

Every node of a region's branch gets ``Axes(batch, token, mixing)``:
- token-wise (``mixing=False``): output row ``i`` along ``token`` depends only on input row
  ``i`` of the fork, so the node can be evaluated on a gathered subset of rows;
- row-aligned mixing (``mixing=True`` with axes): output row ``i`` belongs to token ``i`` but
  depends on other tokens too (self-attention output, attention scores); it can be cached
  and its rows gathered, never recomputed on a subset;
- opaque (``None``): the token axis is lost or unknown.
Unknown operations are opaque: the analysis errs towards caching, never towards a wrong subset.

A token axis may also hold another stream's rows: ``cat([text, x], dim=1)`` puts the fork's
tokens after the text (CogVideoX runs one MLP over both streams), and ``y[:, T:]`` takes
them back. ``Axes.span`` says where the fork's tokens are on such an axis (:class:`Span`); a
slice that keeps exactly them gives the plain axis again. The other stream's rows never reach
this stream's rows through token-wise nodes, so a partial step drops them (:func:`row_source`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch.fx as fx

from ..ops import ELEMENTWISE, arg, op_name, sequence_arg, shape_of


@dataclass(frozen=True)
class Span:
    """The fork's tokens on a token axis that holds other rows too: positions
    ``[at, at + count)`` are the fork's tokens ``[first, first + count)`` of ``total``, in order;
    every other position is a row of another stream (a value computed without the fork)."""

    at: int
    first: int
    count: int
    total: int

    @property
    def whole(self) -> bool:
        """Every token of the fork is here, so the rows a partial step selects exist."""
        return self.first == 0 and self.count == self.total


@dataclass(frozen=True)
class Axes:
    batch: int
    token: int
    mixing: bool = False
    span: Span | None = None    # None: the token axis holds exactly the fork's tokens, in order

    def moved(self, batch: int, token: int, mixing: bool = False) -> "Axes":
        """The same tokens on other axes (the span goes with the token axis)."""
        return Axes(batch, token, mixing, self.span)


AxesMap = dict[fx.Node, Axes | None]


def analyze_branch(fork: fx.Node, branch: set[fx.Node], order: dict[fx.Node, int],
                   known: dict[fx.Node, Axes] | None = None, fork_axes: Axes = Axes(0, 1)) -> AxesMap:
    """Axes of the fork (``fork_axes``: [B, N, C] or sequence-first) and of every branch node,
    in topological order.

    ``known`` fixes the axes of some nodes: the cache points of regions nested in this one,
    which are residual-stream shaped and mix tokens (their own region caches them).
    """
    axes: AxesMap = {fork: fork_axes}
    for node in sorted(branch, key=order.__getitem__):
        if known and node in known:
            axes[node] = known[node]
            continue
        try:
            axes[node] = _rule(node, axes)
        except (TypeError, ValueError, IndexError, KeyError):
            axes[node] = None
    return axes


def _tracked(value: Any, axes: AxesMap) -> bool:
    return isinstance(value, fx.Node) and value in axes


def _rule(node: fx.Node, axes: AxesMap) -> Axes | None:
    name = op_name(node)
    handler = _RULES.get(name)
    if handler is not None:
        return handler(node, axes)
    if name in ELEMENTWISE:
        return _elementwise(node, axes)
    return None


def _only_tracked(node: fx.Node, axes: AxesMap) -> tuple[fx.Node, Axes] | None:
    tracked = [a for a in node.all_input_nodes if a in axes]
    if len(tracked) != 1 or axes[tracked[0]] is None:
        return None
    return tracked[0], axes[tracked[0]]  # type: ignore[return-value]


def _aligned(ax: Axes, in_ndim: int, out_ndim: int) -> Axes:
    shift = out_ndim - in_ndim
    return ax.moved(ax.batch + shift, ax.token + shift)


def side_extent_ok(side: fx.Node, out: Axes, out_ndim: int, batch: int, tokens: int) -> bool:
    """A broadcast operand from outside the branch is fine if it is 1 or full along both axes."""
    shape = shape_of(side)
    if shape is None:
        return False
    shift = out_ndim - len(shape)
    for axis, full in ((out.batch, batch), (out.token, tokens)):
        pos = axis - shift
        if pos >= 0 and shape[pos] not in (1, full):
            return False
    return True


def _elementwise(node: fx.Node, axes: AxesMap) -> Axes | None:
    out_shape = shape_of(node)
    if out_shape is None:
        return None
    result: Axes | None = None
    mixing = False
    for value in node.all_input_nodes:
        if value not in axes:
            continue
        ax, shape = axes[value], shape_of(value)
        if ax is None or shape is None:
            return None
        aligned = _aligned(ax, len(shape), len(out_shape))
        if result is not None and (result.batch, result.token, result.span) != (aligned.batch, aligned.token, aligned.span):
            return None
        result, mixing = aligned, mixing or ax.mixing
    if result is None:
        return None
    batch, tokens = out_shape[result.batch], out_shape[result.token]
    for value in node.all_input_nodes:
        if value not in axes and shape_of(value) is not None:
            if not side_extent_ok(value, result, len(out_shape), batch, tokens):
                return None
    return result.moved(result.batch, result.token)


def _cast(node: fx.Node, axes: AxesMap) -> Axes | None:
    """``x.to(...)``, ``x.type_as(other)``, dropout: only the first operand is data."""
    source = node.args[0] if node.args else arg(node, 0, "input")
    if not _tracked(source, axes) or axes[source] is None:
        return None
    ax = axes[source]
    return ax.moved(ax.batch, ax.token)  # type: ignore[union-attr]


def _linear(node: fx.Node, axes: AxesMap) -> Axes | None:
    x = arg(node, 0, "input")
    if not _tracked(x, axes) or any(_tracked(arg(node, i, n), axes) for i, n in ((1, "weight"), (2, "bias"))):
        return None
    ax, shape = axes[x], shape_of(x)
    if ax is None or shape is None or ax.token == len(shape) - 1 or ax.batch == len(shape) - 1:
        return None
    return ax.moved(ax.batch, ax.token)


def _matmul(node: fx.Node, axes: AxesMap) -> Axes | None:
    a, b = node.args[0], node.args[1]
    a_shape, b_shape, out_shape = shape_of(a), shape_of(b), shape_of(node)
    if a_shape is None or b_shape is None or out_shape is None or len(a_shape) < 2 or len(b_shape) < 2:
        return None
    if not _tracked(a, axes):
        return None  # a token-dependent right operand: rows of the output are not tokens
    ax = axes[a]
    if ax is None or ax.token == len(a_shape) - 1 or ax.batch >= len(a_shape) - 1:
        return None
    aligned = _aligned(ax, len(a_shape), len(out_shape))
    if _tracked(b, axes):
        return aligned.moved(aligned.batch, aligned.token, True)
    if ax.token != len(a_shape) - 2:
        return None  # token among the broadcast batch dims: possible but rare, stay safe
    return aligned


def _sdpa(node: fx.Node, axes: AxesMap) -> Axes | None:
    q, k, v, mask = arg(node, 0, "query"), arg(node, 1, "key"), arg(node, 2, "value"), arg(node, 3, "attn_mask")
    q_shape, out_shape = shape_of(q), shape_of(node)
    if not _tracked(q, axes) or axes[q] is None or q_shape is None or out_shape is None:
        return None
    ax = axes[q]
    if ax.token != len(q_shape) - 2 or ax.batch >= len(q_shape) - 2:  # type: ignore[union-attr]
        return None
    aligned = _aligned(ax, len(q_shape), len(out_shape))  # type: ignore[arg-type]
    if _tracked(k, axes) or _tracked(v, axes):  # self- or joint attention: row-aligned, cached
        return aligned.moved(aligned.batch, aligned.token, True)
    if ax.span is not None:
        return None  # queries over a joint axis: the mask's rows would need the offset
    if isinstance(mask, fx.Node):
        if _tracked(mask, axes) or not side_extent_ok(mask, aligned, len(out_shape), out_shape[aligned.batch], out_shape[aligned.token]):
            return None
    return Axes(aligned.batch, aligned.token)


def _dim_arg(node: fx.Node, ndim: int, index: int = 1, name: str = "dim") -> int | None:
    dim = arg(node, index, name)
    return dim % ndim if isinstance(dim, int) else None


def _softmax(node: fx.Node, axes: AxesMap) -> Axes | None:
    found = _only_tracked(node, axes)
    shape = shape_of(node)
    if found is None or shape is None:
        return None
    dim = _dim_arg(node, len(shape))
    ax = found[1]
    if dim is None or dim in (ax.batch, ax.token):
        return None
    return ax


def _norm(node: fx.Node, axes: AxesMap) -> Axes | None:
    x = arg(node, 0, "input")
    if not _tracked(x, axes) or any(a in axes for a in node.all_input_nodes if a is not x):
        return None
    ax, shape = axes[x], shape_of(x)
    normalized = arg(node, 1, "normalized_shape")
    if ax is None or shape is None or not isinstance(normalized, (list, tuple)):
        return None
    first = len(shape) - len(normalized)
    return ax if max(ax.batch, ax.token) < first else None


def _normalize(node: fx.Node, axes: AxesMap) -> Axes | None:
    found, shape = _only_tracked(node, axes), shape_of(node)
    if found is None or shape is None:
        return None
    dim = _dim_arg(node, len(shape), 2, "dim") if arg(node, 2, "dim", 1) is not None else None
    ax = found[1]
    return ax if dim is not None and dim not in (ax.batch, ax.token) else None


def _reduction(node: fx.Node, axes: AxesMap) -> Axes | None:
    found, in_shape = _only_tracked(node, axes), shape_of(node.args[0]) if node.args else None
    out_shape = shape_of(node)
    if found is None or in_shape is None or out_shape is None:
        return None
    dims = arg(node, 2 if op_name(node) == "norm" else 1, "dim")
    if dims is None or isinstance(dims, bool):
        return None
    dims = [d % len(in_shape) for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
    ax = found[1]
    if ax.batch in dims or ax.token in dims:
        return None
    keep = len(out_shape) == len(in_shape)
    shift = lambda a: a if keep else a - sum(d < a for d in dims)  # noqa: E731
    return ax.moved(shift(ax.batch), shift(ax.token))


def map_reshape(in_shape: tuple[int, ...], out_shape: tuple[int, ...], ax: Axes) -> Axes | None:
    """Where the batch and token axes land through a view/reshape/flatten (shape-based)."""
    def locate(axis: int) -> int | None:
        prefix, extent = math.prod(in_shape[:axis]), in_shape[axis]
        suffix = math.prod(in_shape[axis + 1:])
        for j, size in enumerate(out_shape):
            if size == extent and math.prod(out_shape[:j]) == prefix and math.prod(out_shape[j + 1:]) == suffix:
                return j
        return None

    batch, token = locate(ax.batch), locate(ax.token)
    if batch is None or token is None or batch == token:
        return None
    return ax.moved(batch, token)


def _reshape(node: fx.Node, axes: AxesMap) -> Axes | None:
    found, out_shape = _only_tracked(node, axes), shape_of(node)
    if found is None or out_shape is None:
        return None
    source, ax = found
    in_shape = shape_of(source)
    if in_shape is None or node.args[0] is not source:
        return None
    return map_reshape(in_shape, out_shape, ax)


def _permute(node: fx.Node, axes: AxesMap) -> Axes | None:
    found, shape = _only_tracked(node, axes), shape_of(node)
    if found is None or shape is None:
        return None
    ax, ndim, name = found[1], len(shape), op_name(node)
    if name == "permute":
        dims = [d % ndim for d in sequence_arg(node, 1, "dims")]
        perm = {old: new for new, old in enumerate(dims)}
    elif name == "transpose":
        d0, d1 = arg(node, 1, "dim0") % ndim, arg(node, 2, "dim1") % ndim
        perm = {d0: d1, d1: d0}
    elif name in ("t", "mT"):
        perm = {ndim - 1: ndim - 2, ndim - 2: ndim - 1}
    elif name == "movedim":
        src, dst = arg(node, 1, "source"), arg(node, 2, "destination")
        if not isinstance(src, int) or not isinstance(dst, int):
            return None
        order = list(range(ndim))
        order.insert(dst % ndim, order.pop(src % ndim))
        perm = {old: new for new, old in enumerate(order)}
    else:
        return None
    return ax.moved(perm.get(ax.batch, ax.batch), perm.get(ax.token, ax.token))


def _split(node: fx.Node, axes: AxesMap) -> Axes | None:
    found = _only_tracked(node, axes)
    if found is None:
        return None
    source, ax = found
    shape = shape_of(source)
    if shape is None:
        return None
    index = 2 if op_name(node) in ("split", "chunk", "tensor_split") else 1
    dim = arg(node, index, "dim", 0)
    if not isinstance(dim, int):
        return None
    dim %= len(shape)
    if dim == ax.token and op_name(node) in ("split", "chunk"):
        return ax  # pieces of the token axis: each piece's span is worked out where it is taken
    if dim in (ax.batch, ax.token):
        return None
    if op_name(node) == "unbind":
        return ax.moved(ax.batch - (dim < ax.batch), ax.token - (dim < ax.token))
    return ax


def _index_items(node: fx.Node, ndim: int) -> list[tuple[int | None, Any]] | None:
    """``x[...]``'s index as (input dim, item) pairs (``None`` for an inserted axis), the
    ellipsis spelled out; None for a tensor index."""
    index = node.args[1]
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(i, fx.Node) or hasattr(i, "shape") for i in items):
        return None
    if Ellipsis in items:
        at = items.index(Ellipsis)
        used = sum(1 for i in items if i is not None and i is not Ellipsis)
        items[at:at + 1] = [slice(None)] * (ndim - used)
    pairs, in_dim = [], 0
    for item in items:
        pairs.append((None if item is None else in_dim, item))
        in_dim += item is not None
    return pairs + [(rest, slice(None)) for rest in range(in_dim, ndim)]


def _getitem(node: fx.Node, axes: AxesMap) -> Axes | None:
    source = node.args[0]
    if not _tracked(source, axes) or axes[source] is None:  # type: ignore[index]
        return None
    ax: Axes = axes[source]  # type: ignore[assignment]
    in_shape = shape_of(source)
    if in_shape is None:  # a tuple from split/chunk: elements keep the axes
        if not isinstance(node.args[1], int):
            return None
        piece = _token_piece(node, axes)
        if piece is None:
            return ax
        span = _sliced(ax.span, *piece) if piece else False
        return None if span is False else Axes(ax.batch, ax.token, False, span)  # type: ignore[arg-type]
    pairs = _index_items(node, len(in_shape))
    if pairs is None:
        return None
    out_dim, mapping, span = 0, {}, ax.span
    for in_dim, item in pairs:
        if in_dim is None:
            out_dim += 1
            continue
        if isinstance(item, int):
            mapping[in_dim] = None
            continue
        if not isinstance(item, slice):
            return None
        start, stop, step = item.indices(in_shape[in_dim])
        full = (start, stop, step) == (0, in_shape[in_dim], 1)
        if in_dim == ax.token and not full:
            if step != 1:
                return None
            span = _sliced(ax.span, in_shape[in_dim], start, stop)
            if span is False:
                return None
            full = True
        mapping[in_dim] = out_dim if full else -1
        out_dim += 1
    batch, token = mapping.get(ax.batch), mapping.get(ax.token)
    if batch is None or token is None or batch < 0 or token < 0:
        return None
    return Axes(batch, token, False, span)  # type: ignore[arg-type]


def _token_piece(node: fx.Node, axes: AxesMap) -> tuple[int, int, int] | None | bool:
    """(length of the token axis, start, stop) of ``pieces[i]`` when ``pieces`` is a split or chunk
    of the token axis; None when it splits another axis; False when it cannot be told."""
    pieces, i = node.args[0], node.args[1]
    source = _split_source(pieces, axes)
    shape, ax = shape_of(source), axes.get(source) if source is not None else None
    if shape is None or ax is None or op_name(pieces) not in ("split", "chunk"):
        return None
    dim = arg(pieces, 2, "dim", 0)
    if not isinstance(dim, int) or dim % len(shape) != ax.token:
        return None
    length = shape[ax.token]
    size = arg(pieces, 1, "chunks") if op_name(pieces) == "chunk" else (
        arg(pieces, 1, "split_size_or_sections") if "split_size" not in pieces.kwargs else pieces.kwargs["split_size"])
    if op_name(pieces) == "split" and isinstance(size, (list, tuple)) and all(isinstance(n, int) for n in size):
        sizes = list(size)
    elif op_name(pieces) == "split" and isinstance(size, int) and size > 0:
        sizes = [size] * (length // size) + ([length % size] if length % size else [])
    elif op_name(pieces) == "chunk" and isinstance(size, int) and size > 0:
        step = -(-length // size)
        sizes = [min(step, length - start) for start in range(0, length, step)]
    else:
        return False
    if sum(sizes) != length or not 0 <= i < len(sizes):
        return False
    return length, sum(sizes[:i]), sum(sizes[:i + 1])


def _split_source(pieces: Any, axes: AxesMap) -> fx.Node | None:
    """The tracked tensor a split / chunk node splits (given by position or keyword)."""
    if not isinstance(pieces, fx.Node):
        return None
    found = _only_tracked(pieces, axes)
    return found[0] if found is not None else None


def _sliced(span: Span | None, length: int, start: int, stop: int) -> Span | None | bool:
    """The span after ``[start:stop]`` of a token axis of ``length`` rows: None when exactly the
    fork's tokens are left, False when none of them is."""
    span = span or Span(0, 0, length, length)
    low, high = max(start, span.at), min(stop, span.at + span.count)
    if high <= low:
        return False
    return _normal(Span(low - start, span.first + low - span.at, high - low, span.total), stop - start)


def _normal(span: Span, length: int) -> Span | None:
    """None for an axis of ``length`` rows that holds exactly the fork's tokens, in order."""
    return None if (span.at, span.first, span.count, span.total) == (0, 0, length, length) else span


def _cat(node: fx.Node, axes: AxesMap) -> Axes | None:
    tensors = arg(node, 0, "tensors")
    out_shape = shape_of(node)
    if not isinstance(tensors, (list, tuple)) or out_shape is None:
        return None
    stack = op_name(node) == "stack"
    dim = arg(node, 1, "dim", 0) % (len(out_shape))
    found = [axes[t] for t in tensors if _tracked(t, axes)]
    if not found or any(ax is None or (ax.batch, ax.token) != (found[0].batch, found[0].token) for ax in found):
        return None
    result: Axes = found[0]  # type: ignore[assignment]
    if not stack and dim == result.token:
        return _cat_tokens(tensors, dim, axes, out_shape)
    if any(ax.span != result.span for ax in found):  # type: ignore[union-attr]
        return None
    if stack:
        result = result.moved(result.batch + (dim <= result.batch), result.token + (dim <= result.token))
    elif dim == result.batch:
        return None
    for t in tensors:
        if isinstance(t, fx.Node) and not _tracked(t, axes):
            shape = shape_of(t)
            if shape is None or shape[result.token - stack * (dim <= result.token)] != out_shape[result.token]:
                return None
    return result.moved(result.batch, result.token)


def _cat_tokens(tensors: list | tuple, dim: int, axes: AxesMap, out_shape: tuple[int, ...]) -> Axes | None:
    """``cat`` along the token axis. Values computed without the fork are another stream's rows:
    the tracked tokens sit at an offset among them (``cat([text, x])``). Tracked values are
    pieces of the stream (``cat([x[:, :N], x[:, N:]])``, each maybe through its own token-wise
    ops): they join into one span when they follow each other in position and in token order."""
    tracked = [t for t in tensors if _tracked(t, axes)]
    if len(set(tracked)) != len(tracked):
        return None  # the same rows twice
    first: Axes = axes[tracked[0]]  # type: ignore[assignment]
    pieces, offset = [], 0
    for t in tensors:
        shape = shape_of(t)
        if shape is None or len(shape) != len(out_shape):
            return None
        if t in tracked:
            ax: Axes = axes[t]  # type: ignore[assignment]
            span = ax.span or Span(0, 0, shape[dim], shape[dim])
            pieces.append(replace(span, at=offset + span.at))
        offset += shape[dim]
    joined = pieces[0]
    for piece in pieces[1:]:
        if (piece.total, piece.at, piece.first) != (joined.total, joined.at + joined.count, joined.first + joined.count):
            return None
        joined = replace(joined, count=joined.count + piece.count)
    return Axes(first.batch, first.token, False, _normal(joined, out_shape[dim]))


def row_source(node: fx.Node, axes: AxesMap) -> fx.Node | None:
    """The value whose selected rows *are* ``node``'s selected rows, for a ``cat`` along the token
    axis: its one tracked operand (the other stream's rows are not among the selected ones: a
    partial step drops them, and that stream's own region, with its own decision, recomputes or
    reuses them), or the value that slices of it put back together (``cat([y[:, :N], y[:, N:]])``
    is ``y``). None for any other node, and for pieces computed apart, which no single copy on the
    selected rows computes (:func:`joins_pieces`). A piece of a split of the token axis that holds
    every selected token is the value split, on the selected rows."""
    if op_name(node) == "getitem" and shape_of(node.args[0]) is None and _token_piece(node, axes):
        return _split_source(node.args[0], axes)
    if not _cats_tokens(node, axes):
        return None
    tensors = arg(node, 0, "tensors")
    tracked = [t for t in tensors if _tracked(t, axes)]
    if len(tracked) == 1:
        return tracked[0]
    source = tensors[0].args[0] if op_name(tensors[0]) == "getitem" else None
    if not isinstance(source, fx.Node) or any(op_name(t) != "getitem" or t.args[0] is not source for t in tensors):
        return None
    shape, ax = shape_of(source), axes.get(source)
    if shape is None or ax is None:
        return None
    position = 0
    for piece in tensors:
        pairs = _index_items(piece, len(shape))
        if pairs is None:
            return None
        for dim, item in pairs:
            trivial = isinstance(item, slice) and item.indices(shape[dim]) == (0, shape[dim], 1) if dim is not None else False
            if dim == ax.token and isinstance(item, slice):
                start, stop, step = item.indices(shape[dim])
                if (start, step) != (position, 1):
                    return None
                position = stop
            elif not trivial:
                return None
    return source if position == shape[ax.token] else None


def joins_pieces(node: fx.Node, axes: AxesMap) -> bool:
    """A ``cat`` along the token axis of several tracked values."""
    return _cats_tokens(node, axes) and sum(_tracked(t, axes) for t in arg(node, 0, "tensors")) > 1


def _cats_tokens(node: fx.Node, axes: AxesMap) -> bool:
    ax, shape = axes.get(node), shape_of(node)
    return (ax is not None and shape is not None and op_name(node) == "cat"
            and arg(node, 1, "dim", 0) % len(shape) == ax.token)


def rows_index(node: fx.Node, axes: AxesMap) -> Any:
    """``x[...]``'s index for the selected rows of ``x``: a slice of the token axis (which only
    drops other rows, or none) becomes ``:``, every other item stays."""
    source = node.args[0]
    shape, ax = shape_of(source), axes.get(source)
    pairs = _index_items(node, len(shape)) if shape is not None and ax is not None else None
    if pairs is None:
        return node.args[1]
    return tuple(slice(None) if dim == ax.token else item for dim, item in pairs)  # type: ignore[union-attr]


def _expand(node: fx.Node, axes: AxesMap) -> Axes | None:
    found, shape = _only_tracked(node, axes), shape_of(node)
    if found is None or shape is None or found[0] is not node.args[0]:
        return None
    in_shape = shape_of(found[0])
    if in_shape is None:
        return None
    return _aligned(found[1], len(in_shape), len(shape))


def _unsqueeze(node: fx.Node, axes: AxesMap) -> Axes | None:
    found = _only_tracked(node, axes)
    in_shape, out_shape = (shape_of(found[0]) if found else None), shape_of(node)
    if found is None or in_shape is None or out_shape is None:
        return None
    return map_reshape(in_shape, out_shape, found[1])


_RULES: dict[str, Callable[[fx.Node, AxesMap], Axes | None]] = {
    "to": _cast, "identity": _cast, "dropout": _cast,
    "linear": _linear, "matmul": _matmul, "scaled_dot_product_attention": _sdpa,
    "softmax": _softmax, "log_softmax": _softmax, "layer_norm": _norm, "rms_norm": _norm,
    "normalize": _normalize, "sum": _reduction, "mean": _reduction, "amax": _reduction,
    "amin": _reduction, "var": _reduction, "std": _reduction, "norm": _reduction,
    "logsumexp": _reduction, "view": _reshape, "reshape": _reshape, "flatten": _reshape,
    "unflatten": _reshape, "permute": _permute, "transpose": _permute, "t": _permute,
    "mT": _permute, "movedim": _permute, "chunk": _split, "split": _split,
    "tensor_split": _split, "unbind": _split, "getitem": _getitem, "cat": _cat, "stack": _cat,
    "expand": _expand, "broadcast_to": _expand, "unsqueeze": _unsqueeze, "squeeze": _unsqueeze,
}
