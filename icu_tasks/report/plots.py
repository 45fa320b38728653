"""PNG figures of a continual run (matplotlib, Agg canvas, no pyplot state).

* :func:`forget_heatmap` — Fig.-4-style: forget accuracy of task j (rows) after stage k (columns), the upper
  triangle j <= k plus the vanilla column k = 0, values annotated; with ``full=True`` every task (the
  collateral heatmap of the normalised forgetting, future tasks j > k included);
* :func:`retain_utility_curves` — retain (both views and each view) and utility accuracy per stage;
* :func:`first_task_curves` — Fig.-2-style: forget accuracy of the first task across stages, one line per run.

Every figure has a fixed pixel size (``*_SIZE`` × ``DPI``) and is written atomically (temp file + rename).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from icu_tasks.records.layout import atomic_write

DPI = 100
HEATMAP_SIZE = (7.0, 6.0)  # inches → 700 × 600 px
CURVE_SIZE = (8.0, 5.0)  # inches → 800 × 500 px
FIRST_TASK_SIZE = (10.0, 4.5)  # inches → 1000 × 450 px
#: Above this many stages the heatmap cells are too small to carry their numbers.
ANNOTATE_MAX_STAGES = 15
MARKERS = "osD^v<>P*X"


def new_figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))


def stage_axis(ax: Any, n: int) -> None:
    """Stages 0..n−1 on the x axis (at most ~20 ticks) and [0, 1] on the y axis of a per-stage curve."""
    ax.set_xlim(-0.3, max(n - 1, 1) + 0.3)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xticks(range(0, n, max(1, n // 20)))
    ax.set_xlabel("after stage k (0 = vanilla)")


def forget_heatmap(
    A: np.ndarray, path: str | Path, title: str, full: bool = False, label: str = "forget accuracy"
) -> Path:
    """Heatmap of ``A`` (rows = stages 0..T, column i = task i + 1): cell (task j, stage k) for j <= k or k = 0.

    Cells outside the triangle are blank; a cell inside it that was not scored is grey and marked "–". With
    ``full`` every cell of every task column is drawn, future tasks (j > k) included: the collateral heatmap
    (drawn for the normalised forgetting f, ``label`` names the colour bar).
    """
    A = np.asarray(A, dtype=float)
    T = A.shape[0] - 1
    n_tasks = A.shape[1] if full else min(A.shape[1], max(T, 1))
    fig = new_figure(HEATMAP_SIZE)
    ax = fig.add_subplot()
    if n_tasks == 0:
        ax.text(0.5, 0.5, "no forget scores", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        ax.set_title(title)
        return save(fig, Path(path))
    grid = np.full((n_tasks, T + 1), math.nan)  # grid[j - 1, k] = A[k][j]
    inside = np.zeros_like(grid, dtype=bool)
    for k in range(T + 1):
        for j in range(1, n_tasks + 1):
            if full or k == 0 or j <= k:
                inside[j - 1, k] = True
                grid[j - 1, k] = A[k, j - 1]
    unscored = inside & np.isnan(grid)
    ax.imshow(
        np.ma.masked_invalid(np.where(unscored, 1.0, math.nan)),
        cmap="Greys",
        vmin=0.0,
        vmax=5.0,
        aspect="auto",
    )
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(image, ax=ax, label=label)
    if T <= ANNOTATE_MAX_STAGES:
        for (row, k), value in np.ndenumerate(grid):
            if inside[row, k]:
                text = "–" if math.isnan(value) else f"{value:.2f}"
                colour = "black" if math.isnan(value) or value > 0.55 else "white"
                ax.text(k, row, text, ha="center", va="center", fontsize=9, color=colour)
    step_x = max(1, (T + 1) // 20)
    step_y = max(1, n_tasks // 20)
    ax.set_xticks(range(0, T + 1, step_x), [str(k) for k in range(0, T + 1, step_x)])
    ax.set_yticks(range(0, n_tasks, step_y), [str(j + 1) for j in range(0, n_tasks, step_y)])
    ax.set_xlabel("after stage k (0 = vanilla)")
    ax.set_ylabel("forget task j")
    ax.set_title(title)
    return save(fig, Path(path))


def retain_utility_curves(stages_to_values: dict[str, Sequence[float]], path: str | Path, title: str) -> Path:
    """One line per named per-stage series (e.g. retain, retain VQA, retain QA, utility) over stages 0..T."""
    fig = new_figure(CURVE_SIZE)
    ax = fig.add_subplot()
    styles = ("o-", "s--", "^--", "D-")
    for i, (label, values) in enumerate(stages_to_values.items()):
        y = np.asarray(values, dtype=float)
        ax.plot(np.arange(len(y)), y, styles[i % len(styles)], label=label)
    n = max((len(v) for v in stages_to_values.values()), default=1)
    stage_axis(ax, n)
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title(title)
    return save(fig, Path(path))


def first_task_curves(series: dict[str, dict[str, Sequence[float]]], path: str | Path, title: str) -> Path:
    """Fig.-2-style: per view (one panel each), every run's forget accuracy on task 1 after each stage.

    ``series[view][run label]`` = A[0..T][1] of that run.
    """
    fig = new_figure(FIRST_TASK_SIZE)
    axes = fig.subplots(1, max(1, len(series)), squeeze=False)[0]
    for ax, (view, runs) in zip(axes, series.items(), strict=False):
        n = 1
        for i, (label, values) in enumerate(runs.items()):
            y = np.asarray(values, dtype=float)
            n = max(n, len(y))
            ax.plot(np.arange(len(y)), y, MARKERS[i % len(MARKERS)] + "-", label=label, alpha=0.85)
        stage_axis(ax, n)
        ax.set_ylabel("forget accuracy on task 1")
        ax.set_title(f"forget {view.upper()}")
        ax.grid(alpha=0.3)
        if runs:
            ax.legend(loc="best", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no forget scores", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    return save(fig, Path(path))
