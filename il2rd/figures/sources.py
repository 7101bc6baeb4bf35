"""Figures of the source attribution (the file's /attribution): attribution.png (where each
source's IL-2 goes: each responder type, autocrine, decayed or left) and main_source.png (each
cell's main source of IL-2 in the mid plane, and how much of its uptake that source gives)."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm

from ..io.reader import closure_note
from .style import (LOST_COLOUR, FigureSkipped, extent_um, legend_below, mid_plane, plane_image, plane_label, plt,
                    type_styles)

AUTOCRINE = "autocrine"
AUTOCRINE_COLOUR = "#000000"
EXTERNAL_COLOUR = "#882255"  # IL-2 from outside the lattice (boundary, circulation): Tol's wine, no type's colour
NO_UPTAKE = "no uptake"


def _attribution(run):
    a = run.attribution
    if a is None:
        raise FigureSkipped("the file holds no /attribution (a transient run, or output.attribution=false)")
    if not a.sources:
        raise FigureSkipped("the run has no source of IL-2")
    return a


def figure_attribution(run, index: int):
    """Left: each source's output split into the share each responder type took up (its own
    secreting cells' autocrine part hatched within its type), and what decayed or left.
    Right: the uptake (molecules/s, log colour scale) of each responder type from each source."""
    a = _attribution(run)
    shares, output, autocrine = a.shares(), a.output(), a.autocrine()
    takers = [j for j, r in enumerate(a.responders) if np.any(a.uptake_molecules_per_s[:, j] > 0)]
    styles = type_styles(run.type_names)
    fig, axes = plt.subplots(1, 2, figsize=(14, 1.8 + 0.7 * len(a.sources) + 0.25 * len(takers)), constrained_layout=True,
                             gridspec_kw=dict(width_ratios=(1.3, 1)))
    ax = axes[0]
    labels = [f"{s}\n{output[s]:.3g} molecules/s" for s in a.sources]
    for y, s in enumerate(a.sources):
        left = 0.0
        for j in takers:
            r = a.responders[j]
            width = shares[s][r]
            own = autocrine[s] / output[s] if r == s and output[s] > 0 else 0.0
            ax.barh(y, width - own, left=left, color=styles[r][0], edgecolor="white", lw=0.5,
                    label=r if y == 0 else None)
            if own > 0:
                ax.barh(y, own, left=left + width - own, color=styles[r][0], hatch="///", edgecolor="black", lw=0.3,
                        label=f"{AUTOCRINE} (own secretion taken up again)")
            if width >= 0.04:
                ax.text(left + width / 2, y, f"{width:.0%}", ha="center", va="center", fontsize=8,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
            left += width
        lost = shares[s]["decay/left"]
        ax.barh(y, max(lost, 0.0), left=left, color=LOST_COLOUR, edgecolor="white", lw=0.5,
                label="decayed or left the lattice" if y == 0 else None)
        if lost >= 0.04:
            ax.text(left + lost / 2, y, f"{lost:.0%}", ha="center", va="center", fontsize=8)
    ax.set_yticks(range(len(a.sources)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="share of the source's output", title="where each source's IL-2 goes")
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(0.0, -0.18), ncol=3, fontsize=8,
              frameon=False)

    ax = axes[1]
    matrix = a.uptake_molecules_per_s[:, takers]
    positive = matrix[matrix > 0]
    norm = LogNorm(vmin=max(float(positive.min()), float(positive.max()) * 1e-5), vmax=float(positive.max())) if positive.size else None
    image = ax.imshow(np.where(matrix > 0, matrix, np.nan), cmap="viridis", norm=norm, aspect="auto")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=8,
                color="white" if norm is not None and v > 0 and norm(v) < 0.6 else "black")
    ax.set_xticks(range(len(takers)), [a.responders[j] for j in takers], rotation=30, ha="right")
    ax.set_yticks(range(len(a.sources)), a.sources)
    ax.set(xlabel="responder type", ylabel="source", title="uptake from each source (molecules/s)")
    fig.colorbar(image, ax=ax, label="molecules/s")
    fig.suptitle(f"Which cells get IL-2 from which source ({closure_note(a.closure, a.remainder, len(a.sources))})")
    return fig


def main_source(run) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each cell's main source of IL-2: (category names, (cell,) index into them, (cell,) the
    fraction of the cell's uptake that source gave). Categories are the sources, its own
    secretion ('autocrine': counted apart from the rest of its own type's share), and 'no uptake'
    (cells that take up none); the fraction is nan for those."""
    a = run.attribution
    parts = np.asarray(a.by_cell_molecules_per_s, np.float64).copy()
    own = np.asarray(a.autocrine_molecules_per_s, np.float64)
    for k, s in enumerate(a.sources):  # a source cell's own secretion is in its type's share: take it out
        if s in a.responders:
            mine = a.cell_type == a.responders.index(s)
            parts[mine, k] -= own[mine]
    parts = np.concatenate([np.clip(parts, 0.0, None), own[:, None]], axis=1)
    total = parts.sum(axis=1)
    names = [*a.sources, AUTOCRINE, NO_UPTAKE]
    which = np.argmax(parts, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = parts[np.arange(len(parts)), which] / total
    none = ~(total > 0)
    which[none], fraction[none] = len(names) - 1, np.nan
    return names, which, fraction


def figure_main_source(run, index: int):
    """Left: each cell of the mid plane coloured by the source that gave most of its uptake.
    Right: the fraction of its uptake that source gave (1: one source only)."""
    _attribution(run)
    names, which, fraction = main_source(run)
    k = mid_plane(run)
    styles = type_styles(run.type_names)
    # a source is coloured as its cell type; the boundary and the circulation are not types
    colours = [styles[s][0] if s in styles else EXTERNAL_COLOUR for s in names[:-2]] + [AUTOCRINE_COLOUR, LOST_COLOUR]
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.2), constrained_layout=True)
    image = plane_image(run, k, which)
    axes[0].imshow(np.ma.masked_invalid(image), origin="lower", extent=extent_um(run), cmap=ListedColormap(colours),
                   norm=BoundaryNorm(np.arange(len(names) + 1) - 0.5, len(names)), interpolation="nearest")
    in_plane = ~np.isnan(plane_image(run, k, np.ones(len(which))))
    counts = np.bincount(image[in_plane].astype(int), minlength=len(names))
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours]
    legend_below(axes[0], handles, [f"{n} ({c})" for n, c in zip(names, counts)], ncol=3,
                 title="main source (cells in this plane)")
    axes[0].set(xlabel="x (um)", ylabel="y (um)", title=f"each cell's main source of IL-2, {plane_label(run, k)}")
    im = axes[1].imshow(np.ma.masked_invalid(plane_image(run, k, fraction)), origin="lower", extent=extent_um(run),
                        cmap="cividis", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=axes[1], label="fraction of the cell's uptake from its main source")
    axes[1].set(xlabel="x (um)", ylabel="y (um)", title="how much of its uptake the main source gives")
    fig.suptitle("Main source of each cell's IL-2 (white: no cell; grey: a cell taking up none)")
    return fig


