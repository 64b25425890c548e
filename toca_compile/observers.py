"""Call observers: code that wraps every graph call a :class:`~toca_compile.backend.ToCa` runs.

Measurement (FLOP counting, timing, tracing) registers an observer with
:meth:`ToCa.observe <toca_compile.backend.ToCa.observe>` instead of the runtime knowing about
it, so the core never imports measurement code. With no observer registered a graph call
costs one empty-tuple check more.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol


class CallObserver(Protocol):
    """Wraps one graph call: runs ``fn(*args)`` (normally once) and returns its output.

    ``fn`` is the graph callable the runtime would call (the plain graph or a compiled
    variant, with the state tensors appended to ``args``), or, when several observers are
    registered, the next observer's wrapper around it (``fn.__wrapped__`` is then the graph
    callable). An observer that does not call ``fn`` (it reuses an output, or runs the graph
    its own way, as per-node FLOP counting does) hides that call from the observers inside it.
    """

    def __call__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any: ...


class ObserverHandle:
    """Registration of one observer: :meth:`remove` it, or use it as a context manager."""

    def __init__(self, remove: Callable[[], None]) -> None:
        self._remove: Callable[[], None] | None = remove

    def remove(self) -> None:
        """Unregister the observer (a second call does nothing)."""
        remove, self._remove = self._remove, None
        if remove is not None:
            remove()

    def __enter__(self) -> ObserverHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class _Next:
    """``fn`` seen through the observers after the current one (``__wrapped__``: the graph
    callable itself, as :func:`inspect.unwrap` expects)."""

    __slots__ = ("__wrapped__", "observers")

    def __init__(self, observers: tuple[CallObserver, ...], fn: Callable[..., Any]) -> None:
        self.observers = observers
        self.__wrapped__ = fn

    def __call__(self, *args: Any) -> Any:
        return call_observed(self.observers, self.__wrapped__, args)


def graph_callable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The graph callable behind ``fn``: ``fn`` itself, unless it is the wrapper an observer
    gets when observers are chained."""
    while isinstance(fn, _Next):
        fn = fn.__wrapped__
    return fn


def call_observed(observers: tuple[CallObserver, ...], fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """``fn(*args)`` through ``observers``, the first registered outermost."""
    first, rest = observers[0], observers[1:]
    return first(_Next(rest, fn) if rest else fn, args)


__all__ = ["CallObserver", "ObserverHandle", "call_observed", "graph_callable"]
