"""What every figure of a run shares: the colour-blind-safe palette, markers, log colour scales,
the mid plane and its cells, legends outside the data, and the exception a figure raises when
the run cannot support it (the figure is then skipped with that reason, never drawn empty)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap, LogNorm  # noqa: E402

from ..solvers import kinds  # noqa: E402

DPI = 100
DYNAMIC_RANGE = 1e4  # log colour scales span at most this many-fold below the maximum
# Okabe & Ito (2008), safe for the common colour-vision deficiencies; black last (reserved for sources)
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
LOST_COLOUR = "#C8C8C8"  # decayed or left the lattice; a cell taking up none
# light = little IL-2: a grey ramp that stops at mid grey, so that cells drawn over it stay visible
LIGHT_GREYS = LinearSegmentedColormap.from_list("light_greys", ["#FFFFFF", "#707070"])


class FigureSkipped(Exception):
    """The run cannot support this figure; the message says why (printed, nothing drawn)."""


def log_norm(values) -> LogNorm:
    """A log colour scale over the positive values, at most DYNAMIC_RANGE below the maximum."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    top = float(v.max()) if v.size else 1.0
    top = top if top > 0 else 1.0
    positive = v[v > 0]
    bottom = max(float(positive.min()) if positive.size else top / DYNAMIC_RANGE, top / DYNAMIC_RANGE)
    return LogNorm(vmin=min(bottom, top / 10), vmax=top)


def palette(n: int) -> list:
    """n distinct colours, none grey (grey means 'none' or 'lost'): Okabe-Ito's 7 colours, tab10's 9
    beyond that, tab20's 18 beyond those (repeating past 18)."""
    if n <= 7:
        return list(OKABE_ITO[:n])
    cmap = plt.get_cmap("tab10" if n <= 9 else "tab20")
    greys = {7} if cmap.N == 10 else {14, 15}
    colours = [cmap(i) for i in range(cmap.N) if i not in greys]
    return [colours[i % len(colours)] for i in range(n)]


def type_styles(names) -> dict[str, tuple]:
    """(colour, marker) per cell-type (or source) name, by position: the same in every figure of a run."""
    names = list(names)
    return {name: (colour, MARKERS[i % len(MARKERS)]) for i, (name, colour) in enumerate(zip(names, palette(len(names))))}


def extent_um(run) -> list[float]:
    nx, ny, _ = run.shape
    return [0.0, nx * run.spacing_um, 0.0, ny * run.spacing_um]


def mid_plane(run) -> int:
    return run.shape[2] // 2


def cell_voxels(run, index: int = -1) -> np.ndarray:
    """(cell, 3) voxel index (i, j, k) of each cell at snapshot `index` (cells move in tissue runs);
    -1 for a slot without a living cell (runs with fate), which no plane holds."""
    position = run.positions_um(index)
    living = np.all(np.isfinite(position), axis=1)
    return np.where(living[:, None], np.floor(np.where(living[:, None], position, 0.0) / run.spacing_um + 1e-9), -1).astype(int)


def plane_image(run, k: int, values: np.ndarray, fill=np.nan, index: int = -1) -> np.ndarray:
    """(ny, nx) image of the plane z-index k: each voxel holding a cell at snapshot `index` gets
    that cell's value (several cells in a voxel: one of them)."""
    nx, ny, _ = run.shape
    image = np.full((ny, nx), fill, np.float64)
    v = cell_voxels(run, index)
    here = v[:, 2] == k
    image[v[here, 1], v[here, 0]] = np.asarray(values, np.float64)[here]
    return image


def plane_label(run, k: int) -> str:
    return "the lattice (2-D)" if run.shape[2] == 1 else f"mid plane z = {run.z[k]:g} um"


def time_label(run, index: int) -> str:
    if not kinds.steps_in_time(run.attrs.get("solver")):
        return "steady state"
    t_s = float(run.time[index])
    if t_s < 600:
        return f"t = {t_s:g} s"
    if t_s < 6 * 3600:
        return f"t = {t_s / 60:.4g} min"
    return f"t = {t_s / 3600:.4g} h" if t_s < 2 * 86400 else f"t = {t_s / 86400:.4g} days"


def legend_outside(ax, **kwargs):
    """The legend to the right of the axes, off the data."""
    kwargs.setdefault("fontsize", 8)
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False, **kwargs)


def legend_below(ax, handles=None, labels=None, ncol: int = 2, **kwargs):
    """The legend under the axes (below the x label), off the data; for long entries."""
    kwargs.setdefault("fontsize", 8)
    args = () if handles is None else (handles, labels)
    return ax.legend(*args, loc="upper left", bbox_to_anchor=(0.0, -0.13), borderaxespad=0.0, frameon=False,
                     ncol=ncol, **kwargs)


def responder_types(run) -> list[int]:
    """Indices of the types that take up IL-2 (any high- or intermediate-affinity receptor)."""
    r = np.asarray(run.cells["receptors"][-1], np.float64)
    if "receptors_intermediate" in run.cells:  # absent from files of older il2rd
        r = r + np.asarray(run.cells["receptors_intermediate"][-1], np.float64)
    types = run.cells["type"]
    return [i for i in range(len(run.type_names)) if np.any(types == i) and np.any(r[types == i] > 0)]


__all__ = ["DPI", "OKABE_ITO", "MARKERS", "LOST_COLOUR", "LIGHT_GREYS", "FigureSkipped", "log_norm", "palette", "type_styles",
           "extent_um", "mid_plane", "cell_voxels", "plane_image", "plane_label", "time_label", "legend_outside", "legend_below",
           "responder_types", "plt"]
