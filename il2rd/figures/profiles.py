"""Figures against distance: radial_profile.png (the field around the secreting cells with the
exact point-source solution) and distance.png (each responder type's uptake and pSTAT5 against
its distance to the nearest secreting cell)."""

from __future__ import annotations

import textwrap

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import k0

from ..physics import units
from .style import FigureSkipped, legend_below, legend_outside, plt, responder_types, time_label, type_styles

MAX_SOURCES_FOR_PROFILE = 200


def source_cells(run, index: int = -1) -> np.ndarray:
    """Indices of the cells that secrete IL-2 (living at snapshot `index`, in runs with fate)."""
    q = np.asarray(run.cell_types["secretion_molecules_per_s"], np.float64)
    return np.flatnonzero((q[run.cells["type"]] > 0) & run.living(index))


def _no_sources_reason(run) -> str:
    inflow = "attribution" in run.file and "circulation" in _strings(run.file["attribution/source"][:])
    return "the run has no secreting cells" + ("; its IL-2 comes from the circulation (vessels and afferent lymph)"
                                               if inflow else "")


def _strings(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def radial_profile(run, index: int, max_radius_voxels: int = 20):
    """Mean field (pM) in distance bins around the secreting cells: (r_um bin centres, mean, n sources, mean q)."""
    q = np.asarray(run.cell_types["secretion_molecules_per_s"])
    h = run.spacing_um
    sources = source_cells(run, index)[:MAX_SOURCES_FOR_PROFILE]
    where = run.positions_um(index)
    field = np.transpose(np.asarray(run.field[index], np.float64), (2, 1, 0))  # (x, y, z)
    shape = np.asarray(field.shape)
    reach = np.minimum(max_radius_voxels, shape - 1)
    offsets = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1).reshape(-1, 3)
    r_um = np.sqrt(np.sum(offsets.astype(float) ** 2, axis=1)) * h
    edges = np.arange(0.5, max_radius_voxels + 1.0, 1.0) * h
    sums, counts = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1)
    bins = np.digitize(r_um, edges) - 1
    keep = (bins >= 0) & (bins < len(edges) - 1)
    for s in sources:
        centre = np.floor(where[s] / h + 1e-9).astype(int)
        idx = centre + offsets
        inside = keep & np.all((idx >= 0) & (idx < shape), axis=1)
        values = field[tuple(idx[inside].T)]
        np.add.at(sums, bins[inside], values)
        np.add.at(counts, bins[inside], 1)
    with np.errstate(invalid="ignore"):
        mean = sums / counts
    q_mean = float(q[run.cells["type"][sources]].mean()) if len(sources) else 0.0
    return 0.5 * (edges[1:] + edges[:-1]), mean, len(sources), q_mean


def effective_removal_per_s(run, index: int) -> float:
    """The run's own mean-field removal rate (1/s): (uptake + decay) / IL-2 present,
    k_eff = (sum_i U_i + k_d sum c V) / (6.022e-4 sum c V)."""
    field = np.asarray(run.field[index], np.float64)
    present_pM_um3 = field.sum() * run.spacing_um**3 * _volume_fraction(run)
    uptake_pM_um3_per_s = float(np.nansum(run.cells["uptake"][index])) / units.MOLECULES_PER_UM3_PER_PM
    decay = float(run.config["physics"]["decay"])
    return decay + uptake_pM_um3_per_s / present_pM_um3 if present_pM_um3 > 0 else decay


def _volume_fraction(run) -> float:
    return float(run.config["physics"].get("volume_fraction", 1.0))


def point_source_profile_pM(r_um, q_molecules_per_s: float, diffusion_um2_per_s: float, removal_per_s: float,
                            volume_fraction: float = 1.0, sheet_um: float | None = None):
    """The exact steady field of one source q in a uniform medium with removal k (pM):
    3-D   c(r) = q exp(-r/lambda) / (4 pi alpha D r),
    a sheet of thickness H with zero-flux faces (a 2-D lattice, H = h)
          c(r) = q K0(r/lambda) / (2 pi alpha D H),      lambda = sqrt(D/k), c in molecules/um^3 / 6.022e-4."""
    r = np.asarray(r_um, np.float64)
    lam = np.sqrt(diffusion_um2_per_s / removal_per_s)
    per_pM = units.MOLECULES_PER_UM3_PER_PM * volume_fraction * diffusion_um2_per_s
    if sheet_um is None:
        return q_molecules_per_s * np.exp(-r / lam) / (4 * np.pi * per_pM * r)
    return q_molecules_per_s * k0(r / lam) / (2 * np.pi * per_pM * sheet_um)


def figure_radial_profile(run, index: int):
    """Mean IL-2 around the secreting cells, with the exact single-source profile for decay
    alone and on the mean field (the run's mean removal rate, plus the mean field). A 2-D
    lattice compares with the sheet's K0 solution, not the 3-D one."""
    r, mean, n_sources, q = radial_profile(run, index)
    if n_sources == 0:
        raise FigureSkipped(_no_sources_reason(run))
    physics = run.config["physics"]
    alpha = _volume_fraction(run)
    d = float(physics["diffusion"]) / float(physics.get("tortuosity", 1.0)) ** 2  # D_eff
    sheet = run.spacing_um if run.shape[2] == 1 else None
    geometry = f"in a {sheet:g} um sheet (2-D lattice), K0(r/lambda)" if sheet else "3-D, exp(-r/lambda)/r"
    background = float(np.mean(run.field[index]))
    ok = np.isfinite(mean) & (mean > 0)
    if not ok.any():
        raise FigureSkipped(f"no IL-2 around the sources at this snapshot ({time_label(run, index)})")
    fig, ax = plt.subplots(figsize=(8.5, 6.5), constrained_layout=True)
    ax.semilogy(r[ok], mean[ok], "o-", color="k", label=f"il2rd, mean over {n_sources} source{'s' if n_sources != 1 else ''}")
    bottom, top = np.min(mean[ok]) / 5, np.max(mean[ok]) * 3
    rr = np.linspace(r[0], r[-1], 200)
    spacing = _mean_source_spacing_um(run)
    notes = []
    for k, offset, style, name in (
        (float(physics["decay"]), 0.0, "--", "isolated, decay only"),
        (effective_removal_per_s(run, index), background, ":", "on the mean field, k_eff = removal / IL-2 present"),
    ):
        if k <= 0 or q <= 0:
            continue
        lam = np.sqrt(d / k)
        if lam > spacing:  # the sources' fields overlap within a decay length: the profile is their sum
            notes.append(f"no curve {name}: its decay length {lam:.3g} um exceeds the sources' mean spacing "
                         f"{spacing:.3g} um, so one source's solution does not apply")
            continue
        curve = offset + point_source_profile_pM(rr, q, d, k, alpha, sheet)
        if curve.max() < bottom or curve.min() > top:  # say so rather than draw a curve off the axes
            notes.append(f"no curve {name}: {curve[0]:.2g} pM at {rr[0]:g} um, off this scale")
            continue
        ax.semilogy(rr, curve, style, label=f"exact one source {geometry}, {name} (lambda = {lam:.3g} um)")
    ax.axhline(background, color="grey", lw=0.8, label=f"mean field {background:.3g} pM")
    ax.set_ylim(bottom, top)
    ax.set(xlabel="distance from the secreting cell (um)", ylabel="IL-2 (pM)",
           title=f"IL-2 around the sources (mean q = {q:g} molecules/s), {time_label(run, index)}")
    legend_below(ax, ncol=1, title="\n".join(textwrap.fill(n, 100) for n in notes) if notes else None, title_fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def _mean_source_spacing_um(run) -> float:
    """(lattice volume / number of sources)^(1/3) (per area in 2-D): the sources' mean distance apart."""
    n = len(source_cells(run))
    nx, ny, nz = run.shape
    h = run.spacing_um
    if n == 0:
        return np.inf
    return float((nx * ny * h * h / n) ** 0.5 if nz == 1 else (nx * ny * nz * h**3 / n) ** (1 / 3))


def nearest_source_distance_um(run, index: int = -1) -> np.ndarray:
    """(cell,) distance (um) from each cell's centre to the nearest secreting cell's at snapshot
    `index` (cells move in tissue runs); for a secreting cell the nearest other one (inf where there
    is none, NaN for a slot without a living cell)."""
    sources = source_cells(run, index)
    xyz = run.positions_um(index)
    living = np.all(np.isfinite(xyz), axis=1)
    xyz = np.where(living[:, None], xyz, 0.0)
    if len(sources) == 0:
        return np.full(len(xyz), np.inf)
    k = min(2, len(sources))
    distance, which = cKDTree(xyz[sources]).query(xyz, k=k)
    distance, which = distance.reshape(len(xyz), k), which.reshape(len(xyz), k)
    nearest = distance[:, 0].copy()
    own = np.zeros(len(xyz), bool)
    own[sources] = True
    own &= sources[which[:, 0]] == np.arange(len(xyz))  # its own nearest is itself: take the next
    nearest[own] = distance[own, 1] if k == 2 else np.inf
    return np.where(living, nearest, np.nan)


def binned_means(distance_um, values, edges_um):
    """Per bin [edges[b], edges[b + 1]): (mean, 25th, 75th percentile, count) of the values."""
    which = np.digitize(distance_um, edges_um) - 1
    n_bins = len(edges_um) - 1
    out = np.full((3, n_bins), np.nan)
    counts = np.zeros(n_bins, int)
    for b in range(n_bins):
        v = values[which == b]
        counts[b] = len(v)
        if len(v):
            out[:, b] = v.mean(), *np.percentile(v, [25, 75])
    return out[0], out[1], out[2], counts


def figure_distance(run, index: int):
    """Per responder type, mean uptake per cell (molecules/s, log) and mean pSTAT5 against the
    distance to the nearest secreting cell, with the interquartile range shaded."""
    if len(source_cells(run, index)) == 0:
        raise FigureSkipped(_no_sources_reason(run))
    distance = nearest_source_distance_um(run, index)
    h = run.spacing_um
    finite = np.isfinite(distance)
    reach = float(np.percentile(distance[finite], 99)) if finite.any() else h
    edges = np.arange(0.5, max(reach / h, 2.0) + 1.0, 1.0) * h if reach / h <= 30 else np.linspace(0.5 * h, reach, 31)
    centres = 0.5 * (edges[1:] + edges[:-1])
    uptake = np.asarray(run.cells["uptake"][index], np.float64)
    pstat5 = np.asarray(run.cells["pstat5"][index], np.float64)
    styles = type_styles(run.type_names)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), constrained_layout=True)
    for i in responder_types(run):
        name = run.type_names[i]
        colour, marker = styles[name]
        sel = (run.cells["type"] == i) & finite
        for ax, values in ((axes[0], uptake), (axes[1], pstat5)):
            mean, low, high, counts = binned_means(distance[sel], values[sel], edges)
            ok = counts > 0
            ax.plot(centres[ok], mean[ok], marker=marker, color=colour, ms=4, label=f"{name} ({int(sel.sum())})")
            ax.fill_between(centres[ok], low[ok], high[ok], color=colour, alpha=0.15, lw=0)
    axes[0].set(yscale="log" if np.any(uptake > 0) else "linear",  # a zero field (t = 0) has nothing to log
                xlabel="distance to the nearest secreting cell (um)", ylabel="uptake per cell (molecules/s)",
                title="uptake (mean, interquartile range shaded)")
    axes[1].set(xlabel="distance to the nearest secreting cell (um)", ylabel="pSTAT5 (fraction of maximal)",
                ylim=(-0.02, 1.02), title="pSTAT5 (mean, interquartile range shaded)")
    threshold = float(run.config.get("signalling", {}).get("pstat5_threshold", 0.5))
    axes[1].axhline(threshold, color="grey", ls="--", lw=0.8, label=f"pSTAT5+ threshold {threshold:g}")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    legend_outside(axes[1], title="responder type (cells)")
    fig.suptitle(f"Uptake and pSTAT5 against distance to the nearest source (a source cell: to the nearest other one), "
                 f"{time_label(run, index)}", fontsize=10)
    return fig
