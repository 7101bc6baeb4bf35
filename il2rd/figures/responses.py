"""Per-cell responses: histograms.png (IL-2 seen and pSTAT5 per type), pstat5_vs_il2.png (each
type's cells against its own dose-response curve and EC50) and timeseries.png."""

from __future__ import annotations

import numpy as np

from ..physics.receptors import Signalling
from ..solvers import kinds
from .style import FigureSkipped, legend_outside, log_norm, plt, responder_types, time_label, type_styles

MAX_POINTS_PER_TYPE = 2500  # cells drawn per type in a scatter (an even subsample beyond)


def _threshold(run) -> float:
    return float(run.config.get("signalling", {}).get("pstat5_threshold", 0.5))


def signalling_of(config: dict) -> Signalling:
    """The run's pSTAT5 law from its stored config (`signalling.*`, defaults where a key is absent)."""
    s = config.get("signalling", {})
    d = Signalling()
    return Signalling(ec50_max_pM=float(s.get("ec50_max", d.ec50_max_pM)), ec50_k_receptors=float(s.get("ec50_k", d.ec50_k_receptors)),
                      ec50_exponent=float(s.get("ec50_exponent", d.ec50_exponent)), hill=float(s.get("hill", d.hill)),
                      positive_threshold=float(s.get("pstat5_threshold", d.positive_threshold)),
                      reference_km_pM=float(s.get("reference_km", d.reference_km_pM)))


def dose_response(signalling: Signalling, il2_pM, receptors: float, intermediate: float, km_pM: float,
                  km_intermediate_pM: float) -> np.ndarray:
    """pSTAT5 (0..1) of a cell with these receptors at each IL-2 level (receptors.Signalling.pstat5)."""
    return np.asarray(signalling.pstat5(np.asarray(il2_pM, np.float64), receptors, km_pM, intermediate, km_intermediate_pM))


def half_maximal_pM(il2_pM: np.ndarray, pstat5: np.ndarray) -> float:
    """The IL-2 level (pM) at which a rising dose-response curve crosses 0.5 (log-interpolated), nan if it does not."""
    if not (pstat5[0] < 0.5 <= pstat5[-1]):
        return np.nan
    j = int(np.argmax(pstat5 >= 0.5))
    a, b = np.log(il2_pM[j - 1]), np.log(il2_pM[j])
    return float(np.exp(a + (0.5 - pstat5[j - 1]) / (pstat5[j] - pstat5[j - 1]) * (b - a)))


def _subsample(sel: np.ndarray) -> np.ndarray:
    idx = np.flatnonzero(sel)
    return idx if len(idx) <= MAX_POINTS_PER_TYPE else idx[np.linspace(0, len(idx) - 1, MAX_POINTS_PER_TYPE).astype(int)]


def figure_histograms(run, index: int):
    styles = type_styles(run.type_names)
    il2 = np.asarray(run.cells["il2"][index])
    pstat5 = np.asarray(run.cells["pstat5"][index])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), constrained_layout=True)
    norm = log_norm(il2)
    il2_bins = np.geomspace(norm.vmin, norm.vmax, 50)
    for i, name in enumerate(run.type_names):
        sel = (run.cells["type"] == i) & run.living(index)
        if not sel.any():
            continue
        weights = np.full(int(sel.sum()), 1.0 / sel.sum())
        colour = styles[name][0]
        axes[0].hist(np.clip(il2[sel], norm.vmin, None), bins=il2_bins, weights=weights, histtype="step", lw=1.5,
                     color=colour, label=name)
        axes[1].hist(pstat5[sel], bins=np.linspace(0, 1, 41), weights=weights, histtype="step", lw=1.5, color=colour,
                     label=name)
    axes[0].set(xscale="log", xlabel="IL-2 seen (pM)", ylabel="fraction of the type's cells", title="IL-2 seen")
    axes[1].axvline(_threshold(run), color="grey", ls="--", lw=1, label=f"pSTAT5+ threshold {_threshold(run):g}")
    axes[1].set(xlabel="pSTAT5 (fraction of maximal)", ylabel="fraction of the type's cells", title="pSTAT5")
    legend_outside(axes[1], title="cell type")
    fig.suptitle(time_label(run, index))
    return fig


def figure_pstat5_vs_il2(run, index: int):
    """One panel per responder type: pSTAT5 of its cells (a subsample) against the IL-2 each sees,
    over the dose-response curve of a cell with the type's mean receptors and its EC50."""
    types = responder_types(run)
    if not types:
        raise FigureSkipped("no cell type has IL-2 receptors")
    signalling = signalling_of(run.config)
    il2 = np.asarray(run.cells["il2"][index], np.float64)
    pstat5 = np.asarray(run.cells["pstat5"][index], np.float64)
    high = np.asarray(run.cells["receptors"][index], np.float64)
    low = np.asarray(run.cells["receptors_intermediate"][index], np.float64)
    km, km_low = (np.asarray(run.cell_types[k], np.float64) for k in ("km_pM", "km_intermediate_pM"))
    grid_pM = np.geomspace(1e-3, 1e5, 400)
    lo_pM = max(1e-3, float(np.percentile(il2[il2 > 0], 0.5)) / 3 if np.any(il2 > 0) else 1e-3)
    styles = type_styles(run.type_names)
    ncols = min(len(types), 3)
    nrows = -(-len(types) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.6 * nrows + 0.5), constrained_layout=True, squeeze=False)
    for ax, i in zip(axes.flat, types):
        name = run.type_names[i]
        colour, marker = styles[name]
        sel = (run.cells["type"] == i) & run.living(index)
        pick = _subsample(sel)
        ax.scatter(np.clip(il2[pick], lo_pM, None), pstat5[pick], s=6, color=colour, marker=marker, alpha=0.5,
                   linewidths=0, label=f"cells ({int(sel.sum())})")
        r_high, r_low = float(high[sel].mean()), float(low[sel].mean())
        curve = dose_response(signalling, grid_pM, r_high, r_low, km[i], km_low[i])
        ec50 = half_maximal_pM(grid_pM, curve)
        ax.plot(grid_pM, curve, "k-", lw=1.2, label=f"mean cell: {r_high:.3g} high + {r_low:.3g} int. receptors")
        if np.isfinite(ec50):
            ax.axvline(ec50, color="k", ls=":", lw=1, label=f"EC50 {ec50:.3g} pM")
        ax.axhline(_threshold(run), color="grey", ls="--", lw=0.8)
        ax.set(xscale="log", xlim=(lo_pM, max(1e3, float(il2.max()) * 3)), ylim=(-0.03, 1.03), xlabel="IL-2 seen (pM)",
               ylabel="pSTAT5 (fraction of maximal)", title=f"{name}: {np.mean(pstat5[sel] >= _threshold(run)):.0%} pSTAT5+")
        ax.legend(loc="upper left", fontsize=7, frameon=True, framealpha=0.9)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(types):]:
        ax.axis("off")
    fig.suptitle(f"pSTAT5 against IL-2 seen, per type, with its dose-response curve (dashed: pSTAT5+ threshold), "
                 f"{time_label(run, index)}", fontsize=10)
    return fig


def figure_timeseries(run):
    if len(run.time) < 2:
        raise FigureSkipped(f"the run has one snapshot (t = {run.time[0]:g} s{'' if kinds.steps_in_time(run.attrs.get('solver')) else ', steady'}): "
                            "nothing to plot against time")
    rows = np.flatnonzero(run.cells_stored)  # the snapshots whose cell columns are stored (output.cells_every)
    if len(rows) < 2:
        raise FigureSkipped("the cell columns are stored at one snapshot only (output.cells_every): nothing to plot "
                            "against time")
    styles = type_styles(run.type_names)
    il2 = np.asarray(run.cells["il2"])[rows]
    pstat5 = np.asarray(run.cells["pstat5"])[rows]
    threshold = _threshold(run)
    end = float(run.time[-1])  # the time axis in the unit the run's length reads best in
    unit, per = ("days", 86400.0) if end >= 2 * 86400 else ("h", 3600.0) if end >= 3 * 3600 else ("min", 60.0)
    times = np.asarray(run.time, np.float64)[rows] / per
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), constrained_layout=True)
    for i, name in enumerate(run.type_names):
        sel = run.cells["type"] == i
        if not sel.any():
            continue
        colour, marker = styles[name]
        living = np.isfinite(pstat5[:, sel])  # runs with fate: NaN where a slot holds no living cell
        n = np.maximum(living.sum(axis=1), 1)
        axes[0].plot(times, np.where(living, il2[:, sel], 0.0).sum(axis=1) / n, marker=marker, color=colour, label=name,
                     ms=4)
        axes[1].plot(times, (living & (pstat5[:, sel] >= threshold)).sum(axis=1) / n, marker=marker, color=colour,
                     label=name, ms=4)
    axes[0].set(xlabel=f"time ({unit})", ylabel="mean IL-2 seen (pM)", title="IL-2 seen per cell type")
    axes[1].set(xlabel=f"time ({unit})", ylabel=f"fraction with pSTAT5 >= {threshold:g}", ylim=(-0.02, 1.02),
                title="pSTAT5+ fraction per cell type")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    legend_outside(axes[1], title="cell type")
    return fig
