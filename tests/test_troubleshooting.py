"""The README's Troubleshooting section names every warning and fallback reason the code can
show. An AST walk over toca_compile/ collects the message templates (no model is built, nothing
is compiled: this runs in well under a second) and each one's longest literal piece, with the
placeholders cut out, must appear in the section (whitespace and line breaks ignored).

Collected: the text passed to ``warn(...)`` / ``warnings.warn(...)``; the reasons a graph or a
call runs uncached (strings assigned to ``reason`` or ``NO_STEP``, ``blocked=``, returned by
``_unsupported`` / ``_place``, passed to ``count_uncached``); and the notes of regions reused
whole (``whole(...)`` in plan_caches.py).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "toca_compile"
#: the packages beside the core whose messages are reports of their own, not fallbacks
SKIP_DIRS = {"demo", "flops"}
#: functions whose returned strings are reasons a graph or call runs uncached
REASON_FUNCTIONS = {"_unsupported", "_place"}
#: calls whose string arguments are user-visible reasons or notes
MESSAGE_CALLS = {"warn", "count_uncached", "whole"}
#: names whose assigned strings are reasons
REASON_NAMES = {"reason", "NO_STEP", "blocked"}
MIN_FRAGMENT = 8


def _strings(expr: ast.expr | None) -> list[ast.expr]:
    """The string-valued expressions an expression can evaluate to (not inside calls)."""
    if expr is None:
        return []
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return [expr] if expr.value else []
    if isinstance(expr, ast.JoinedStr):
        return [expr]
    if isinstance(expr, ast.IfExp):
        return _strings(expr.body) + _strings(expr.orelse)
    if isinstance(expr, ast.BoolOp):
        return [s for value in expr.values for s in _strings(value)]
    if isinstance(expr, ast.Tuple):
        return [s for elt in expr.elts for s in _strings(elt)]
    return []


def _pieces(expr: ast.expr) -> list[str]:
    """The literal pieces of a template, split at its placeholders."""
    if isinstance(expr, ast.Constant):
        return [expr.value]
    pieces, current = [], ""
    for value in expr.values:  # type: ignore[attr-defined]
        if isinstance(value, ast.Constant):
            current += value.value
        else:
            pieces.append(current)
            current = ""
    return [*pieces, current]


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


class _Collector(ast.NodeVisitor):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.found: list[tuple[str, str]] = []  # (where, template with … for placeholders)
        self.function: list[str] = []

    def add(self, node: ast.AST, exprs: list[ast.expr]) -> None:
        for expr in exprs:
            template = "…".join(_pieces(expr))
            self.found.append((f"{self.path.relative_to(ROOT)}:{node.lineno}", template))  # type: ignore[attr-defined]

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.function.append(node.name)
        self.generic_visit(node)
        self.function.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Return(self, node: ast.Return) -> None:
        if self.function and self.function[-1] in REASON_FUNCTIONS:
            self.add(node, _strings(node.value))
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        names = {t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else ""
                 for t in node.targets}
        if names & REASON_NAMES:
            self.add(node, _strings(node.value))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in MESSAGE_CALLS:
            for arg in node.args:
                self.add(node, _strings(arg))
        for keyword in node.keywords:
            if keyword.arg in REASON_NAMES:
                self.add(node, _strings(keyword.value))
        self.generic_visit(node)


def collect_templates() -> list[tuple[str, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if SKIP_DIRS & set(path.relative_to(PACKAGE).parts):
            continue
        collector = _Collector(path)
        collector.visit(ast.parse(path.read_text(), str(path)))
        found += collector.found
    return found


def fragment(template: str) -> str:
    """The longest literal piece of a template (placeholders are ``…``)."""
    return max((_normal(p) for p in template.split("…")), key=len)


def troubleshooting_section() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Troubleshooting\n(.*?)(?=^## )", text, re.DOTALL | re.MULTILINE)
    assert match, "README.md has no '## Troubleshooting' section followed by another '## ' section"
    return _normal(match.group(1).replace("`", ""))


def test_the_walk_finds_the_messages_it_is_meant_to_find():
    """A guard against a walk that silently finds nothing (a renamed helper, a moved module)."""
    templates = [t for _, t in collect_templates()]
    for known in ("nothing cached, running it with plain", "gradients are enabled", "no step information",
                  "calls at one timestep", "calls of one graph with the same weights in one step",
                  "Dynamo has now compiled the same code", "is tuned for", "caching disabled after an internal error",
                  "hides the token axis", "no residual attention or MLP branch"):
        assert any(known in t for t in templates), f"no collected template contains {known!r}"
    assert len({fragment(t) for t in templates}) >= 20


def test_every_warning_and_fallback_reason_is_in_the_readme():
    section = troubleshooting_section()
    missing = [f"{where}: {template!r} (looked for {fragment(template)!r})"
               for where, template in collect_templates()
               if len(fragment(template)) >= MIN_FRAGMENT and fragment(template) not in section]
    assert not missing, "add these messages to README.md's Troubleshooting section:\n" + "\n".join(missing)
