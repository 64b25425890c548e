"""Dead-code elimination that keeps every write: cache fills, counters, user in-place ops."""
from __future__ import annotations

import torch.fx as fx


EFFECT = "toca_effect"


#: calls that change interpreter state (functorch's vmap nesting that flex_attention's block
#: mask traces, grad mode): their results are often unused, their effect is not
_STATEFUL_PREFIXES = ("_vmap_", "_enter_", "_exit_", "_set_grad_enabled", "_functorch")


def _has_effect(node: fx.Node) -> bool:
    if node.op in ("placeholder", "output") or node.meta.get(EFFECT):
        return True
    if node.op == "call_function" and getattr(node.target, "__name__", "").startswith(_STATEFUL_PREFIXES):
        return True
    raw = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    if node.op in ("call_function", "call_method") and str(raw).endswith("_") and not str(raw).endswith("__"):
        return True  # an in-place op of the user's model
    try:
        return node.is_impure()
    except Exception:  # noqa: BLE001  older torch: be conservative
        return True


def remove_dead_code(gm: fx.GraphModule) -> None:
    live: set[fx.Node] = set()
    stack = [n for n in gm.graph.nodes if _has_effect(n)]
    while stack:
        node = stack.pop()
        if node in live:
            continue
        live.add(node)
        stack.extend(node.all_input_nodes)
    for node in reversed(list(gm.graph.nodes)):
        if node not in live:
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
