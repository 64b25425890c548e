"""Pictures of what the caches did: the refresh heatmap, the schedule strip, the token overlay.

Read from a :class:`~toca_compile.stats.Summary` (``toca.summary()``, or one transformer's
``toca_compile.summary(pipe)["transformer"]``), so they show what ran, not what a schedule promised. Needs
matplotlib (``pip install "toca-compile[plots]"``); the data functions (``refresh_matrix``,
``refreshed_tokens``) do not.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .stats import Summary

if TYPE_CHECKING:
    from .backend import ToCa

_STRIP_COLOURS = {"F": "#1f5fa8", "P": "#9cc3e6", "m": "#6a9fd4", "u": "#d9534f", ".": "#ffffff"}


def _pyplot() -> Any:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError('toca_compile.plots needs matplotlib: pip install "toca-compile[plots]"') from error
    return plt


def _generation(summary: Summary, generation: int):
    if not summary.generations:
        raise ValueError("the summary holds no generation yet: run one first")
    try:
        return summary.generations[generation]
    except IndexError:
        raise ValueError(f"generation {generation} out of range: the summary holds "
                         f"{len(summary.generations)}") from None


def refresh_matrix(summary: Summary, generation: int = -1) -> tuple[list[str], list[int], torch.Tensor]:
    """(region labels in first-seen order, steps, fraction refreshed [regions, steps]) of one
    generation; NaN where a region did not run at a step (an uncached call)."""
    log = _generation(summary, generation)
    steps = sorted(log.refreshed)
    labels: list[str] = []
    for step in steps:
        labels.extend(label for label in log.refreshed[step] if label not in labels)
    matrix = torch.full((len(labels), len(steps)), math.nan)
    for j, step in enumerate(steps):
        for i, label in enumerate(labels):
            if label in log.refreshed[step]:
                matrix[i, j] = log.refreshed[step][label]
    return labels, steps, matrix


def plot_refresh_heatmap(summary: Summary, path: str | Path | None = None, generation: int = -1):
    """Heatmap of the fraction of tokens each region computed afresh at each step."""
    plt = _pyplot()
    labels, steps, matrix = refresh_matrix(summary, generation)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.16 * len(steps) + 2.5), max(2.5, 0.22 * len(labels) + 1.2)))
    image = ax.imshow(matrix.numpy(), aspect="auto", cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ticks = list(range(0, len(steps), max(1, len(steps) // 10)))
    ax.set_xticks(ticks, [str(steps[t]) for t in ticks])
    ax.set_xlabel("step")
    ax.set_title(f"fraction of tokens computed afresh{f' ({summary.name})' if summary.name else ''}")
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    return _finish(plt, fig, path)


def plot_schedule_strip(summary: Summary, path: str | Path | None = None, generation: int = -1):
    """One cell per step: full (F), partial (P), mixed (m), with uncached calls (u)."""
    plt = _pyplot()
    strip = _generation(summary, generation).strip
    if not strip:
        raise ValueError("that generation ran no step")
    fig, ax = plt.subplots(figsize=(max(4.0, 0.15 * len(strip) + 1.0), 1.1))
    for i, mark in enumerate(strip):
        ax.add_patch(plt.Rectangle((i, 0), 1, 1, color=_STRIP_COLOURS.get(mark, "#999999"), linewidth=0))
    ax.set_xlim(0, len(strip))
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel("step")
    full = strip.count("F")
    ax.set_title(f"{full} full of {len(strip)} steps (dark: full, light: partial, red: uncached)", fontsize=9)
    fig.tight_layout()
    return _finish(plt, fig, path)


def refreshed_tokens(toca: "ToCa", region: str, graph: int = 0, branch: int = 0) -> torch.Tensor:
    """Which tokens ``region`` (a label as in ``toca.region_states()``, with or without its
    ``index:`` prefix) computed afresh at the latest step of this thread: a bool [B, N] mask.

    Call it between steps, after the step you want to see. It reads the region's staleness
    counter back from the device (a sync), so it is for inspection, not for a serving loop.
    Regions that reuse their cache whole have no counter and raise ``ValueError``.
    """
    try:
        states = toca.region_states(graph, branch)
    except IndexError:
        raise ValueError(f"graph {graph} / branch {branch} has no live state in this thread "
                         f"({len(toca.graphs)} graphs; torch._dynamo.reset() frees them)") from None
    matches = [key for key in states if key == region or key.split(":", 1)[1] == region]
    if len(matches) != 1:
        raise ValueError(f"region {region!r} is not one of {sorted(states)}")
    stale = states[matches[0]].get("stale")
    if stale is None:
        raise ValueError(f"region {matches[0]} selects no tokens (reused whole, or a mode without selection)")
    return stale.detach().cpu() == 0


def plot_token_overlay(image: torch.Tensor, mask: torch.Tensor, grid: tuple[int, int],
                       path: str | Path | None = None, title: str = ""):
    """``image`` [H, W] (or [C, H, W]) with the tokens of ``mask`` [N] (N = h·w of ``grid``)
    outlined: the tokens a region computed afresh at one step."""
    plt = _pyplot()
    h, w = grid
    if mask.numel() != h * w:
        raise ValueError(f"mask has {mask.numel()} tokens, grid {grid} has {h * w}")
    picture = image.detach().float().cpu()
    if picture.dim() == 3:
        picture = picture.permute(1, 2, 0) if picture.shape[0] in (1, 3) else picture
        picture = picture.squeeze(-1)
    fig, ax = plt.subplots(figsize=(3.4, 3.8))
    ax.imshow(picture.numpy(), cmap="gray" if picture.dim() == 2 else None)
    cell_h, cell_w = picture.shape[0] / h, picture.shape[1] / w
    for index in mask.reshape(-1).nonzero().flatten().tolist():
        row, col = divmod(index, w)
        ax.add_patch(plt.Rectangle((col * cell_w - 0.5, row * cell_h - 0.5), cell_w, cell_h, fill=False,
                                   edgecolor="#ff7f0e", linewidth=1.5))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{int(mask.sum())} of {h * w} tokens computed afresh", fontsize=9)
    fig.tight_layout()
    return _finish(plt, fig, path)


def _finish(plt: Any, fig: Any, path: str | Path | None):
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


__all__ = ["plot_refresh_heatmap", "plot_schedule_strip", "plot_token_overlay", "refresh_matrix", "refreshed_tokens"]
