"""Population curves of a run whose cells divide and die (fate.enabled, /cells/alive):
population.png, per cell type the living cells, their fold change since t = 0 and their mean
time-averaged pSTAT5 (what drives division and death, fate.py) against time."""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator, NullLocator, ScalarFormatter

from .style import FigureSkipped, plt, type_styles


def figure_population(run, index: int):
    """Three panels over t = 0 .. snapshot `index` (days): cells alive per type, N(t) / N(0)
    (log scale, types that had cells at t = 0) and the mean time-averaged pSTAT5 of the living."""
    if not run.has_fate:
        raise FigureSkipped("the cells neither divide nor die in this run (fate.enabled=true with solver.kind=tissue)")
    end = (index % len(run.time)) + 1
    alive = np.asarray(run.cells["alive"][:end]) > 0  # (time, cell)
    pbar = np.asarray(run.cells["pstat5_mean"][:end], np.float64)
    days = np.asarray(run.time[:end], np.float64) / 86400.0
    styles = type_styles(run.type_names)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), constrained_layout=True)
    handles, labels = [], []
    for i, name in enumerate(run.type_names):
        sel = run.cells["type"] == i
        n = (alive & sel).sum(axis=1)
        if not n.any():
            continue
        colour, marker = styles[name]
        axes[0].plot(days, n, color=colour, marker=marker, ms=4)
        if n[0] > 0:
            axes[1].plot(days, n / n[0], color=colour, marker=marker, ms=4)
        mean = np.where(n > 0, np.where(alive & sel, pbar, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)
        axes[2].plot(days, mean, color=colour, marker=marker, ms=4)
        handles.append(plt.Line2D([], [], color=colour, marker=marker))
        labels.append(f"{name} ({n[0]} -> {n[-1]})")
    axes[0].set(xlabel="time (days)", ylabel="cells alive", title="population per cell type")
    axes[1].set(xlabel="time (days)", ylabel="N(t) / N(0)", yscale="log", title="fold change")
    axes[1].axhline(1.0, color="0.6", lw=0.8, ls="--")
    axes[2].set(xlabel="time (days)", ylabel="mean time-averaged pSTAT5", ylim=(0, 1),
                title="the signal that drives division and death")
    for ax in axes:
        ax.grid(alpha=0.3)
    low, high = axes[1].get_ylim()
    if high / low < 20:  # less than about a decade: a log axis would label only its few decade ticks
        axes[1].yaxis.set_major_locator(MaxNLocator(nbins=6))
        axes[1].yaxis.set_minor_locator(NullLocator())
    axes[1].yaxis.set_major_formatter(ScalarFormatter())
    axes[1].yaxis.set_minor_formatter(ScalarFormatter())
    fig.legend(handles, labels, loc="outside lower center", ncol=min(5, len(labels)), fontsize=8,
               title="cell type (cells at t = 0 -> at the end)")
    return fig
