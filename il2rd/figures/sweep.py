"""The sweep figures of `il2rd-collect`: a readout against the first swept parameter (the first
on the command line), mean and spread over seeds, a line per setting of the others, one panel
per cell type; and a heatmap over the first two parameters, per type, on one shared colour scale.
Labels carry the parameters' and readouts' meanings and units; an axis whose values span a
decade or more is logarithmic."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .style import DPI, legend_outside, palette, plt
from .style import MARKERS

READOUT_LABELS = {
    "cells": "cells",
    "mean_il2_pM": "mean IL-2 seen (pM)",
    "mean_uptake_molecules_per_s": "mean uptake per cell (molecules/s)",
    "total_uptake_molecules_per_s": "total uptake (molecules/s)",
    "mean_pstat5": "mean pSTAT5 (fraction of maximal)",
    "pstat5_positive_fraction": "pSTAT5+ fraction",
    "mean_receptors": "mean high-affinity receptors per cell",
    "mean_receptors_intermediate": "mean intermediate-affinity receptors per cell",
}
FRACTIONS = ("mean_pstat5", "pstat5_positive_fraction")  # 0..1 readouts: a fixed 0..1 scale
# config key -> (meaning, unit); cell_types.<name>.<field> by its field
KEY_LABELS = {
    "physics.diffusion": ("D", "um^2/s"), "physics.decay": ("decay k_d", "1/s"), "physics.cell_radius": ("cell radius", "um"),
    "physics.volume_fraction": ("volume fraction", ""), "physics.tortuosity": ("tortuosity", ""),
    "grid.spacing": ("voxel edge h", "um"), "vessels.blood_il2": ("plasma IL-2", "pM"),
    "vessels.afferent_lymph_il2": ("afferent lymph IL-2", "pM"), "vessels.hev_density": ("HEV density", "per mm^3"),
    "vessels.hev_exchange": ("HEV exchange", "1/s"), "vessels.capillary_exchange": ("capillary exchange", "1/s"),
    "vessels.lymph_drainage": ("lymph drainage", "1/s"), "vessels.afferent_exchange": ("afferent exchange", "1/s"),
    "signalling.pstat5_threshold": ("pSTAT5+ threshold", ""), "signalling.ec50_max": ("EC50 max", "pM"),
}
TYPE_FIELD_LABELS = {
    "receptors": ("IL-2Ra (CD25)", "per cell"), "il2rb": ("IL-2Rb", "per cell"), "gc": ("gc", "per cell"),
    "secretion": ("secretion", "molecules/s per cell"), "km": ("K_M", "pM"), "km_intermediate": ("K_M intermediate", "pM"),
    "k_int": ("k_int", "1/s"), "count": ("cells", ""), "density": ("density", "cells/mm^3"),
    "receptor_cv": ("receptor CV", ""), "cd25_gain": ("CD25 gain", ""),
}


def parameter_meaning(key: str) -> tuple[str, str]:
    """(meaning, unit) of a swept key, e.g. ('treg IL-2Ra (CD25)', 'per cell') for cell_types.treg.receptors."""
    key = key.removeprefix("param:")
    typed = re.fullmatch(r"cell_types\.([^.]+)\.(\w+)", key)
    if typed and typed[2] in TYPE_FIELD_LABELS:
        return f"{typed[1]} {TYPE_FIELD_LABELS[typed[2]][0]}", TYPE_FIELD_LABELS[typed[2]][1]
    return KEY_LABELS.get(key, (key, ""))


def parameter_label(key: str) -> str:
    """An axis label: 'treg IL-2Ra (CD25), per cell'; 'D (um^2/s)'."""
    name, unit = parameter_meaning(key)
    return name if not unit else f"{name}, {unit}" if unit.startswith("per ") else f"{name} ({unit})"


def setting_label(key: str, value) -> str:
    """'D = 5 um^2/s'."""
    name, unit = parameter_meaning(key)
    return f"{name} = {value:g}" + (f" {unit}" if unit else "")


def readout_label(readout: str) -> str:
    return READOUT_LABELS.get(readout, readout)


def spans_decades(values) -> bool:
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    return v.size > 1 and np.all(v > 0) and v.max() / v.min() >= 10


def _value_text(v) -> str:
    return f"{v:g}"


def plot(rows: list[dict], params: list[str], out_dir: Path, readout: str) -> list[Path]:
    """The sweep figures (module docstring) of the complete rows; params in command-line order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = [r for r in rows if r["status"] == "complete"]
    types = list(dict.fromkeys(r["cell_type"] for r in done))
    ylabel = readout_label(readout)
    written = []
    if params:
        p, others = params[0], params[1:]
        settings = sorted({tuple(r[o] for o in others) for r in done})
        colours = palette(len(settings))
        fig, axes = plt.subplots(1, len(types), figsize=(4.2 * len(types) + 2.5, 4.2), constrained_layout=True,
                                 squeeze=False, sharey=readout in FRACTIONS)
        for ax, t in zip(axes[0], types):
            mine = [r for r in done if r["cell_type"] == t]
            for n, setting in enumerate(settings):
                line_rows = [r for r in mine if tuple(r[o] for o in others) == setting]
                if not line_rows:
                    continue
                xs = sorted({r[p] for r in line_rows})
                values = [[r[readout] for r in line_rows if r[p] == x] for x in xs]  # replicates: seeds
                mean, spread = np.array([np.mean(v) for v in values]), np.array([np.std(v) for v in values])
                label = ", ".join(setting_label(o, v) for o, v in zip(others, setting)) or "all runs"
                ax.plot(xs, mean, marker=MARKERS[n % len(MARKERS)], color=colours[n],
                        label=f"{label} (n = {min(len(v) for v in values)} seed{'s' if min(len(v) for v in values) != 1 else ''})")
                ax.fill_between(xs, mean - spread, mean + spread, color=colours[n], alpha=0.2, lw=0)
            ax.set(xlabel=parameter_label(p), ylabel=ylabel, title=t)
            if spans_decades(r[p] for r in mine):
                ax.set_xscale("log")
                ticks = sorted({r[p] for r in mine})
                ax.set_xticks(ticks, [_value_text(x) for x in ticks])
                ax.xaxis.set_minor_formatter(plt.NullFormatter())
            if readout in FRACTIONS:
                ax.set_ylim(-0.02, 1.02)
            elif spans_decades(r[readout] for r in mine):
                ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
        legend_outside(axes[0][-1], title="line: mean, band: +- 1 s.d. over seeds")
        fig.suptitle(f"{ylabel} against {parameter_label(p)}")
        path = out_dir / f"{readout}_vs_{p.removeprefix('param:')}.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written.append(path)
    if len(params) >= 2:
        p, q = params[:2]
        xs, ys = sorted({r[p] for r in done}), sorted({r[q] for r in done})
        grids = {}
        for t in types:
            grid = np.full((len(ys), len(xs)), np.nan)
            for i, y in enumerate(ys):
                for j, x in enumerate(xs):
                    v = [r[readout] for r in done if r["cell_type"] == t and r[p] == x and r[q] == y]
                    grid[i, j] = np.mean(v) if v else np.nan
            grids[t] = grid
        every = np.concatenate([g.ravel() for g in grids.values()])
        vmin, vmax = (0.0, 1.0) if readout in FRACTIONS else (np.nanmin(every), np.nanmax(every))
        fig, axes = plt.subplots(1, len(types), figsize=(3.8 * len(types) + 1.5, 4), constrained_layout=True, squeeze=False)
        for ax, t in zip(axes[0], types):
            im = ax.imshow(grids[t], origin="lower", aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
            for (i, j), v in np.ndenumerate(grids[t]):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=7,
                            color="white" if (v - vmin) < 0.6 * (vmax - vmin) else "black")
            ax.set(xticks=range(len(xs)), xticklabels=[_value_text(x) for x in xs], yticks=range(len(ys)),
                   yticklabels=[_value_text(y) for y in ys], xlabel=parameter_label(p), ylabel=parameter_label(q), title=t)
        fig.colorbar(im, ax=axes[0].tolist(), label=f"{ylabel}, mean over seeds")
        fig.suptitle(f"{ylabel} over {parameter_label(p)} x {parameter_label(q)} (one colour scale for all panels)")
        path = out_dir / f"{readout}_heatmap.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written.append(path)
    return written
