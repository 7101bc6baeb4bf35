"""Figures of cells that move (tissue runs, /cells/track_*): tracks.png, each moving type's cells
near the mid plane with the paths they took, over the IL-2 of the snapshot drawn."""

from __future__ import annotations

import numpy as np

from .style import (LIGHT_GREYS, FigureSkipped, extent_um, legend_below, log_norm, mid_plane, plt, time_label,
                    type_styles)

MAX_TRACKS_PER_TYPE = 60  # drawn per type (a random choice, seeded), so that paths stay readable


def figure_tracks(run, index: int):
    """The x-y paths, from the start to snapshot `index`, of cells within half a voxel of the mid
    plane at the start (at most MAX_TRACKS_PER_TYPE of each moving type), a dot where each is
    now, over that snapshot's mid-plane IL-2 (light = low, log scale)."""
    if not run.moves:
        raise FigureSkipped("the cells do not move in this run (solver.kind=tissue walks them)")
    if index == 0:
        raise FigureSkipped("the first snapshot: no path yet (choose a later --time)")
    tracks = np.stack([np.asarray(run.cells[f"track_{a}"][: index + 1], np.float64) for a in "xyz"], axis=-1)  # (t, cell, 3)
    moved = np.any(np.abs(tracks[-1] - tracks[0]) > 1e-6, axis=-1)
    if run.has_fate:  # a slot's path only while one cell holds it, alive throughout
        ids = np.asarray(run.cells["cell_id"][: index + 1])
        moved &= np.all(ids == ids[0], axis=0) & np.all(np.asarray(run.cells["alive"][: index + 1]) > 0, axis=0)
    k = mid_plane(run)
    z0 = run.z[k]
    near = np.abs(tracks[0, :, 2] - z0) <= 0.5 * run.spacing_um if run.shape[2] > 1 else np.ones(len(moved), bool)
    field = np.asarray(run.field[index], np.float64)[k]
    fig, ax = plt.subplots(figsize=(8, 8.4), constrained_layout=True)
    norm = log_norm(field)
    im = ax.imshow(np.clip(field, norm.vmin, None), origin="lower", extent=extent_um(run), norm=norm, cmap=LIGHT_GREYS,
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, label="IL-2 (pM)", shrink=0.8)
    styles = type_styles(run.type_names)
    rng = np.random.default_rng(0)
    handles, labels = [], []
    for i, name in enumerate(run.type_names):
        mine = np.flatnonzero((run.cells["type"] == i) & near & moved)
        if len(mine) == 0:
            continue
        drawn = np.sort(rng.choice(mine, min(len(mine), MAX_TRACKS_PER_TYPE), replace=False))
        colour, marker = styles[name]
        for c in drawn:
            ax.plot(*_unwrapped(tracks[:, c, :2], run), color=colour, lw=0.8, alpha=0.8)
        ax.scatter(tracks[-1, drawn, 0], tracks[-1, drawn, 1], s=14, color=colour, marker=marker, zorder=3)
        handles.append(plt.Line2D([], [], color=colour, marker=marker, lw=0.8))
        labels.append(f"{name} ({len(drawn)} of {len(mine)} near the plane)")
    ax.set(xlabel="x (um)", ylabel="y (um)", xlim=extent_um(run)[:2], ylim=extent_um(run)[2:],
           title=f"where cells walked, t = 0 .. {time_label(run, index).removeprefix('t = ')} (dot: now)")
    legend_below(ax, handles, labels, ncol=2, title="moving cells starting within half a voxel of the mid plane")
    return fig


def _unwrapped(xy: np.ndarray, run):
    """A path's x and y with a break (NaN) where it wraps through a periodic face, so no line crosses the plot."""
    jump = np.any(np.abs(np.diff(xy, axis=0)) > 0.5 * np.array([run.shape[0], run.shape[1]]) * run.spacing_um, axis=1)
    out = xy.astype(np.float64).copy()
    if jump.any():
        out = np.insert(out, np.flatnonzero(jump) + 1, np.nan, axis=0)
    return out[:, 0], out[:, 1]
