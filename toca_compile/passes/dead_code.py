"""Dead-code elimination that keeps every write: cache fills, counters, user in-place ops.

FX's own ``eliminate_dead_code`` does the sweep; this module only says which nodes have an
effect beyond their result. FX already knows mutable ATen overloads and its side-effectful
functions; it does not see the writes toca-compile inserts (marked with :data:`EFFECT`), the
in-place *methods* and in-place operators of a Dynamo graph (``x.add_(y)``, ``x += y``), or
the functorch nesting calls flex attention traces.
"""
from __future__ import annotations

import torch.fx as fx

from ..ops import writes_in_place

#: node meta key set on the cache writes a rewrite inserts
EFFECT = "toca_effect"

#: calls that change interpreter state (functorch's vmap nesting that flex_attention's block
#: mask traces, grad mode): their results are often unused, their effect is not
_STATEFUL_PREFIXES = ("_vmap_", "_enter_", "_exit_", "_set_grad_enabled", "_functorch")


def has_effect(node: fx.Node) -> bool:
    """True when removing ``node`` would change what the graph does, even if nothing uses it."""
    if node.op in ("placeholder", "output") or node.meta.get(EFFECT):
        return True
    if writes_in_place(node):
        return True
    if node.op == "call_function" and getattr(node.target, "__name__", "").startswith(_STATEFUL_PREFIXES):
        return True
    try:
        return node.is_impure()
    except Exception:  # noqa: BLE001  a purity check that fails: keep the node
        return True


def remove_dead_code(gm: fx.GraphModule) -> None:
    """Remove every node whose value is unused and that has no effect (in place)."""
    gm.graph.eliminate_dead_code(is_impure_node=has_effect)
    gm.graph.lint()
    gm.recompile()
