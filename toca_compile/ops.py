"""Canonical names and argument access for FX nodes of a Dynamo graph.

Dynamo graphs call the same operation in several spellings (``torch.add``, ``operator.add``,
``Tensor.add``; SDPA with positional or keyword arguments). Every pass asks this module
instead of looking at ``node.target`` directly.
"""
from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx

_OPERATOR_NAMES = {
    operator.add: "add", operator.iadd: "add", operator.sub: "sub", operator.isub: "sub",
    operator.mul: "mul", operator.imul: "mul", operator.truediv: "div", operator.itruediv: "div",
    operator.neg: "neg", operator.matmul: "matmul", operator.getitem: "getitem",
    operator.pow: "pow", operator.floordiv: "floordiv",
}
_ALIASES = {
    "truediv": "div", "divide": "div", "multiply": "mul", "subtract": "sub", "concat": "cat",
    "concatenate": "cat", "swapaxes": "transpose", "swapdims": "transpose", "moveaxis": "movedim",
    "_scaled_dot_product_attention": "scaled_dot_product_attention", "mm": "matmul", "bmm": "matmul",
    "absolute": "abs", "clip": "clamp", "gelu_": "gelu", "silu_": "silu", "relu_": "relu",
    "add_": "add", "mul_": "mul", "float": "to", "half": "to", "bfloat16": "to", "double": "to",
    "type": "to", "type_as": "to", "contiguous": "identity", "clone": "identity", "detach": "identity",
    "alpha_dropout": "dropout", "feature_alpha_dropout": "dropout", "dropout1d": "dropout",
    "dropout2d": "dropout", "dropout3d": "dropout", "rms_norm": "rms_norm", "sigmoid_": "sigmoid",
}

#: activations that mark an MLP branch (gated forms are products of one of these).
ACTIVATIONS = frozenset({"gelu", "silu", "relu", "mish", "hardswish", "leaky_relu", "glu", "sigmoid", "tanh", "softplus", "elu", "selu"})

#: elementwise operations: the output row of a token depends only on that token's rows.
ELEMENTWISE = frozenset({
    "add", "sub", "mul", "div", "neg", "pow", "rsub", "maximum", "minimum", "where", "lerp",
    "addcmul", "addcdiv", "abs", "sqrt", "rsqrt", "exp", "log", "log1p", "expm1", "sin", "cos",
    "erf", "square", "reciprocal", "clamp", "clamp_min", "clamp_max", "masked_fill", "sign",
    "to", "identity", "dropout", "nan_to_num", "floor", "ceil", "round",
}) | ACTIVATIONS

NOOPS = frozenset({"to", "identity", "dropout"})


def op_name(node: fx.Node) -> str:
    """A canonical lower-case name of what the node computes ('' for non-calls)."""
    if node.op == "call_method":
        name = str(node.target)
    elif node.op == "call_function":
        target = node.target
        if target in _OPERATOR_NAMES:
            return _OPERATOR_NAMES[target]  # type: ignore[index]
        name = getattr(target, "__name__", str(target))
        if isinstance(target, torch._ops.OpOverload | torch._ops.OpOverloadPacket):
            name = target._opname if hasattr(target, "_opname") else name.split(".")[0]
    else:
        return ""
    name = name.lstrip("_") if name.startswith("__") and name.endswith("__") else name
    name = name.strip("_") if name.startswith("__") else name
    name = _ALIASES.get(name, name)
    if name.endswith("_") and not name.startswith("_") and name[:-1] in ELEMENTWISE:
        name = name[:-1]
    return name


def arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    """Argument ``name`` of a call, given positionally at ``index`` or by keyword."""
    if name in node.kwargs:
        return node.kwargs[name]
    if index < len(node.args):
        return node.args[index]
    return default


def tensor_meta(node: Any) -> torch.Tensor | None:
    """The example (fake) tensor Dynamo recorded for ``node``, if it is a tensor."""
    if not isinstance(node, fx.Node):
        return None
    value = node.meta.get("example_value", node.meta.get("val"))
    return value if isinstance(value, torch.Tensor) else None


def shape_of(node: Any) -> tuple[int, ...] | None:
    value = tensor_meta(node)
    if value is None:
        return None
    try:
        return tuple(int(s) for s in value.shape)
    except (TypeError, ValueError):  # symbolic sizes
        return None


def is_dropout_noop(node: fx.Node) -> bool:
    """Dropout in eval mode (training=False or p=0) returns its input."""
    if op_name(node) != "dropout":
        return False
    p = arg(node, 1, "p", 0.5)
    training = arg(node, 2, "training", node.op == "call_method")
    return training is False or p == 0


def sequence_arg(node: fx.Node, index: int, name: str) -> list[Any]:
    """A size/dims argument given either as one sequence or as varargs (``view(a, b, c)``)."""
    value = arg(node, index, name)
    if isinstance(value, (list, tuple)):
        return list(value)
    if name in node.kwargs:
        return [value]
    return list(node.args[index:])


#: ``x += y`` and friends: in place on tensors
_INPLACE_OPERATORS = frozenset({
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv, operator.imod,
    operator.ipow, operator.iand, operator.ior, operator.ixor, operator.ilshift, operator.irshift, operator.imatmul,
})


_INPLACE_DUNDERS = frozenset({"add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor",
                              "lshift", "rshift", "matmul"})


def _writes_self(name: str) -> bool:
    """A tensor method that writes the tensor it is called on, judged by its ATen schema
    (``add_``, ``copy_``, ``index_put_``...; ``out=`` overloads do not count, an ``out``
    keyword is checked by the caller); an unknown name ending in ``_`` counts as writing."""
    packet = getattr(torch.ops.aten, name, None)
    if packet is None:
        return name.endswith("_") and not name.endswith("__")
    try:
        for overload in packet.overloads():
            arguments = getattr(packet, overload)._schema.arguments
            alias = arguments[0].alias_info if arguments else None
            if alias is not None and alias.is_write:
                return True
        return False
    except (AttributeError, RuntimeError):
        return True


def writes_in_place(node: fx.Node) -> bool:
    """The node writes one of its inputs: an in-place method, function or operator
    (``x.add_(y)``, ``torch.relu_(x)``, ``x += y``, ``F.relu(x, inplace=True)``) or an ``out=`` call."""
    if node.op not in ("call_method", "call_function"):
        return False
    if "out" in node.kwargs or node.kwargs.get("inplace") is True or node.target in _INPLACE_OPERATORS:
        return True
    name = str(node.target) if node.op == "call_method" else getattr(node.target, "__name__", "")
    if name.startswith("__i") and name.endswith("__"):
        return name[3:-2] in _INPLACE_DUNDERS  # x.__iadd__(y)
    return name.endswith("_") and not name.endswith("__") and _writes_self(name)
