"""Figures of the field in a plane: slice.png (IL-2 and the cell types of the mid plane),
pstat5_slice.png (each type's cells by pSTAT5 over the IL-2 they sit in) and slice.gif."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import animation
from matplotlib.colors import BoundaryNorm, ListedColormap

from .style import (DPI, LIGHT_GREYS, FigureSkipped, cell_voxels, extent_um, legend_below, log_norm, mid_plane,
                    plane_image, plane_label, plt, responder_types, time_label, type_styles)


def _field_image(ax, run, image, norm, cmap):
    return ax.imshow(np.clip(image, norm.vmin, None), origin="lower", extent=extent_um(run), norm=norm, cmap=cmap,
                     interpolation="nearest")


def _source_mask(run) -> np.ndarray:
    q = np.asarray(run.cell_types["secretion_molecules_per_s"], np.float64)
    return q[run.cells["type"]] > 0


def figure_slice(run, index: int):
    """Left: IL-2 (pM, log scale) in the mid plane, its secreting cells ringed. Right: the cell
    type of every voxel of that plane (white: no cell), so that each type's place is seen whole."""
    field = np.asarray(run.field[index], np.float64)  # (z, y, x)
    k = mid_plane(run)
    norm = log_norm(field[k])
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.2), constrained_layout=True)
    im = _field_image(axes[0], run, field[k], norm, "magma")
    fig.colorbar(im, ax=axes[0], label="IL-2 (pM)", shrink=0.9)
    xyz = run.positions_um(index)
    in_plane = cell_voxels(run, index)[:, 2] == k
    sources = in_plane & _source_mask(run)
    if sources.any():
        axes[0].scatter(xyz[sources, 0], xyz[sources, 1], s=22, facecolors="none",
                        edgecolors="#56B4E9", linewidths=0.9, label=f"secreting cells ({int(sources.sum())})")
        legend_below(axes[0])
    axes[0].set(xlabel="x (um)", ylabel="y (um)", title=f"IL-2, {plane_label(run, k)}")

    styles = type_styles(run.type_names)
    colours = ListedColormap([styles[n][0] for n in run.type_names])
    types = plane_image(run, k, run.cells["type"], index=index)
    axes[1].imshow(np.ma.masked_invalid(types), origin="lower", extent=extent_um(run), cmap=colours,
                   norm=BoundaryNorm(np.arange(len(run.type_names) + 1) - 0.5, len(run.type_names)),
                   interpolation="nearest")
    counts = np.bincount(run.cells["type"][in_plane], minlength=len(run.type_names))
    handles = [plt.Rectangle((0, 0), 1, 1, color=styles[n][0]) for n in run.type_names]
    legend_below(axes[1], handles, [f"{n} ({c})" for n, c in zip(run.type_names, counts)], ncol=3,
                 title="cells in this plane")
    axes[1].set(xlabel="x (um)", ylabel="y (um)", title="cell type of each voxel (white: no cell)")
    fig.suptitle(f"IL-2 and cells, {time_label(run, index)}")
    return fig


def figure_pstat5_slice(run, index: int):
    """One panel per responder type (with receptors) in the mid plane: its cells coloured by pSTAT5 (0..1, all
    drawn the same size, so that silent cells show as well as responding ones) over the IL-2
    of the plane (light = little, colour bar in pM)."""
    field = np.asarray(run.field[index], np.float64)
    k = mid_plane(run)
    norm = log_norm(field[k])
    xyz = run.positions_um(index)
    in_plane = cell_voxels(run, index)[:, 2] == k
    types = [i for i in responder_types(run) if np.any(in_plane & (run.cells["type"] == i))]
    if not types:
        raise FigureSkipped(f"no cell with IL-2 receptors in {plane_label(run, k)}")
    ncols = min(len(types), 3) or 1
    nrows = max(1, -(-len(types) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols + 1.6, 4.2 * nrows + 0.6), constrained_layout=True,
                             squeeze=False)
    pstat5 = np.asarray(run.cells["pstat5"][index], np.float64)
    nx = run.shape[0]
    voxel_points = 4.6 * 72 * 0.8 / nx  # about one voxel's width in points on a panel
    background = points = None
    for ax, i in zip(axes.flat, types):
        background = _field_image(ax, run, field[k], norm, LIGHT_GREYS)
        sel = in_plane & (run.cells["type"] == i)
        points = ax.scatter(xyz[sel, 0], xyz[sel, 1], c=pstat5[sel], cmap="viridis", vmin=0, vmax=1,
                            s=max(1.5, (0.9 * voxel_points) ** 2), marker="s", linewidths=0)
        positive = float(np.mean(pstat5[sel] >= _threshold(run)))
        ax.set(title=f"{run.type_names[i]}: {int(sel.sum())} cells, {positive:.0%} pSTAT5+", xlabel="x (um)",
               ylabel="y (um)")
    for ax in list(axes.flat)[len(types):]:
        ax.axis("off")
    if points is not None:
        shrink = 0.8 if nrows == 1 else 0.45
        fig.colorbar(points, ax=axes, label="pSTAT5 of each cell (fraction of maximal)", shrink=shrink)
        fig.colorbar(background, ax=axes, label="IL-2 in the plane (pM, light = low)", shrink=shrink)
    fig.suptitle(f"pSTAT5 per cell over the IL-2 it sits in, {plane_label(run, k)}, {time_label(run, index)}")
    return fig


def _threshold(run) -> float:
    return float(run.config.get("signalling", {}).get("pstat5_threshold", 0.5))


def animate_slice(run, path: Path, fps: int = 4) -> Path:
    """The mid-plane IL-2 over time; in a tissue run with the cells in that plane at each snapshot,
    coloured by type, so that they are seen walking."""
    k = mid_plane(run)
    shown = np.flatnonzero(run.field_stored)  # the snapshots whose field is stored (output.field_every)
    frames = [np.asarray(run.field[i, k], np.float64) for i in shown]
    norm = log_norm(np.stack(frames))
    fig, ax = plt.subplots(figsize=(6, 5.6 if run.moves else 5), constrained_layout=True)
    im = _field_image(ax, run, frames[0], norm, "magma")
    fig.colorbar(im, ax=ax, label="IL-2 (pM)")
    ax.set(xlabel="x (um)", ylabel="y (um)")
    styles = type_styles(run.type_names)
    colours = np.array([styles[n][0] for n in run.type_names], dtype=object)[run.cells["type"]]
    cells = ax.scatter([], [], s=5, linewidths=0) if run.moves else None
    if cells is not None:
        legend_below(ax, [plt.Line2D([], [], ls="", marker="o", color=styles[n][0]) for n in run.type_names],
                     list(run.type_names), ncol=4, title="cells in the plane")

    def update(frame):
        i = shown[frame]
        im.set_data(np.clip(frames[frame], norm.vmin, None))
        ax.set_title(f"IL-2, {plane_label(run, k)}, {time_label(run, i)}")
        if cells is None:
            return (im,)
        here = cell_voxels(run, i)[:, 2] == k
        cells.set_offsets(run.positions_um(i)[here, :2])
        cells.set_color(list(colours[here]))
        return im, cells

    anim = animation.FuncAnimation(fig, update, frames=len(frames), blit=False)
    anim.save(path, writer=animation.PillowWriter(fps=fps), dpi=DPI)
    plt.close(fig)
    return path
