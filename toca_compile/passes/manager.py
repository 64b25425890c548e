"""Runs an ordered list of named passes: each one timed, logged, and optionally dumped.

Every pass has one signature, ``(unit) -> unit``, where the unit is a frozen record
(:class:`~toca_compile.passes.pipeline.Analysis` or :class:`~toca_compile.passes.pipeline.
Variant`): a pass returns a new record with what it found or built, so no pass sees another
half-done. ``TOCA_COMPILE_DUMP=dir`` writes what each pass produced to ``dir`` (one file per
pass and graph), for reading a rewrite without a debugger.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger("toca_compile.passes")

Unit = TypeVar("Unit")

#: environment variable naming a directory that receives every pass's output
DUMP_ENV = "TOCA_COMPILE_DUMP"


@dataclass(frozen=True)
class Pass(Generic[Unit]):
    """A named step of a phase. ``describe`` renders what the pass produced, for dumps."""

    name: str
    run: Callable[[Unit], Unit]
    describe: Callable[[Unit], str]

    def __call__(self, unit: Unit) -> Unit:
        return self.run(unit)


class PassManager(Generic[Unit]):
    """One phase: its passes in order (``passes`` is a list users may print and extend)."""

    def __init__(self, phase: str, passes: Sequence[Pass[Unit]]) -> None:
        names = [p.name for p in passes]
        if len(set(names)) != len(names):
            raise ValueError(f"{phase}: pass names must be unique, got {names}")
        self.phase = phase
        self.passes: list[Pass[Unit]] = list(passes)
        self.seconds: dict[str, float] = {}   # cumulative wall time per pass name
        self.runs: dict[str, int] = {}        # how often each pass ran
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[Pass[Unit]]:
        return iter(self.passes)

    def __repr__(self) -> str:
        return f"PassManager({self.phase!r}: {' -> '.join(p.name for p in self.passes)})"

    def run(self, unit: Unit, label: str) -> Unit:
        """``unit`` through every pass; ``label`` names the graph in logs and dump files."""
        dump = _dump_dir()
        for i, step in enumerate(self.passes):
            start = time.perf_counter()
            unit = step(unit)
            elapsed = time.perf_counter() - start
            with self._lock:
                self.seconds[step.name] = self.seconds.get(step.name, 0.0) + elapsed
                self.runs[step.name] = self.runs.get(step.name, 0) + 1
            log.debug("%s: %s pass %s took %.1f ms", label, self.phase, step.name, elapsed * 1e3)
            if dump is not None:
                _write(dump / f"{_safe(label)}.{self.phase}.{i}.{step.name}.txt", step.describe(unit))
        return unit


def _dump_dir() -> Path | None:
    value = os.environ.get(DUMP_ENV)
    if not value:
        return None
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label)


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as error:  # a dump must never break compilation
        log.warning("could not write %s: %s", path, error)


__all__ = ["DUMP_ENV", "Pass", "PassManager"]
