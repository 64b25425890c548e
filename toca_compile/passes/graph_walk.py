"""Reachability inside a window of a topologically ordered FX graph.

Regions are short compared with a whole DiT graph (thousands of nodes), so every query is
bounded by topological positions instead of walking the full graph.
"""
from __future__ import annotations

import torch.fx as fx


class GraphIndex:
    """Topological positions of the nodes of one graph."""

    def __init__(self, graph: fx.Graph) -> None:
        self.position = {node: i for i, node in enumerate(graph.nodes)}
        self.first = next(iter(graph.nodes), None)

    def ancestors(self, node: fx.Node) -> set[fx.Node]:
        """``node`` and everything it is computed from."""
        return self.ancestors_after(node, self.first)  # type: ignore[arg-type]  (a graph with ``node`` is not empty)

    def ancestors_after(self, node: fx.Node, start: fx.Node) -> set[fx.Node]:
        """Ancestors of ``node`` (itself included) placed after ``start``, plus ``start`` if reached."""
        low = self.position[start]
        seen: set[fx.Node] = {node}
        stack = [node]
        while stack:
            for source in stack.pop().all_input_nodes:
                if source not in seen and self.position[source] >= low:
                    seen.add(source)
                    stack.append(source)
        return seen

    def reaches(self, source: fx.Node, target: fx.Node) -> bool:
        return source in self.ancestors_after(target, source)

    def between(self, source: fx.Node, target: fx.Node) -> set[fx.Node]:
        """Nodes on some path source -> target, excluding ``source``, including ``target``."""
        upstream = self.ancestors_after(target, source)
        if source not in upstream:
            return set()
        high = self.position[target]
        down: set[fx.Node] = set()
        stack = [source]
        while stack:
            for user in stack.pop().users:
                if user not in down and self.position[user] <= high and user in upstream:
                    down.add(user)
                    stack.append(user)
        return down
