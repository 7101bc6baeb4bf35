"""The source experiment's figures (il2rd-compare-sources, analysis/compare.py): who receives and
responds in each scenario, and the fold change of each cell type over days."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm, TwoSlopeNorm

from .style import plt


def _grid(rows: list[dict], column: str):
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    responders = list(dict.fromkeys(r["responder"] for r in rows))
    values = np.full((len(scenarios), len(responders)), np.nan)
    for r in rows:
        values[scenarios.index(r["scenario"]), responders.index(r["responder"])] = r[column]
    return scenarios, responders, values


DECAY_OR_LEFT, AUTOCRINE = "decayed or left", "autocrine (in its type)"
SHARE_FLOOR = 1e-4  # the log colour scale of the shares starts here; smaller shares are drawn at it


def _percent(v: float) -> str:
    return "-" if not np.isfinite(v) else "0" if v == 0 else f"{v:.0%}" if v >= 0.095 else f"{v:.1%}" if v >= 0.001 else "<0.1%"


def plot_sources(rows: list[dict], path: Path, fates: dict | None = None) -> None:
    """Left: the pSTAT5+ fraction of each responder type per scenario (linear, 0..1). Right: the
    share of each scenario's IL-2 input each responder type took up, then what decayed or left
    and the autocrine part (already in its type's column), on a log colour scale (shares span
    decades: Tregs take most, others fractions of a percent). Types without receptors in any
    scenario take up nothing and get no column."""
    scenarios, responders, pstat5 = _grid(rows, "pstat5_positive_fraction")
    _, _, receptors = _grid(rows, "mean_receptors")
    _, _, intermediate = _grid(rows, "mean_receptors_intermediate")
    _, _, uptake = _grid(rows, "uptake_molecules_per_s")
    keep = np.nansum(receptors + intermediate, axis=0) > 0
    takers = [r for r, k in zip(responders, keep) if k]
    fates = fates or {}
    total = np.array([fates.get(s, {}).get("input_molecules_per_s", np.nan) for s in scenarios])
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(total[:, None] > 0, uptake[:, keep] / total[:, None], np.nan)
    extra = np.array([[fates.get(s, {}).get(k, np.nan) for k in ("decay_or_left", "autocrine")] for s in scenarios])
    shares = np.concatenate([shares, extra.reshape(len(scenarios), 2)], axis=1)
    columns = [*takers, DECAY_OR_LEFT, AUTOCRINE]
    fig, axes = plt.subplots(1, 2, figsize=(3 + 0.75 * (2 * len(takers) + 2), 2.2 + 0.45 * len(scenarios)),
                             constrained_layout=True, gridspec_kw=dict(width_ratios=(len(takers), len(columns))))
    panels = ((axes[0], pstat5[:, keep], takers, dict(vmin=0, vmax=1), "pSTAT5+ fraction of each responder type",
               "fraction pSTAT5+"),
              (axes[1], np.clip(shares, SHARE_FLOOR, None), columns, dict(norm=LogNorm(SHARE_FLOOR, 1)),
               "share of the scenario's IL-2 input: taken up by each type, decayed or left, autocrine",
               "share of the IL-2 input (log)"))
    for (ax, values, names, scale, title, label), raw in zip(panels, (pstat5[:, keep], shares)):
        image = ax.imshow(np.where(np.isfinite(raw), values, np.nan), cmap="viridis", aspect="auto", **scale)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(scenarios)), scenarios)
        ax.set_title(title, fontsize=9)
        for (i, j), v in np.ndenumerate(raw):
            shade = image.norm(max(v, SHARE_FLOOR)) if np.isfinite(v) else 1.0
            ax.text(j, i, _percent(v), ha="center", va="center", fontsize=7, color="white" if shade < 0.6 else "black")
        fig.colorbar(image, ax=ax, shrink=0.8, label=label)
    if len(columns) > 2:
        axes[1].axvline(len(takers) - 0.5, color="white", lw=2)
    fig.suptitle("IL-2 source experiment in silico: who receives and responds (blank: no IL-2 input)")
    fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_days(folds, n_seeds: int, path: Path, days: float) -> None:
    """The fold change N(end) / N(0) of each responder type (columns) by scenario (rows), the mean
    over seeds on a log2 colour scale centred at 1 (blue: expanded, red: shrank), with
    'mean ±sd' written in each cell. folds: compare.fold_changes' (scenarios, responders, mean, sd)."""
    scenarios, responders, mean, sd = folds
    keep = np.any(np.isfinite(mean), axis=0)
    responders = [t for t, k in zip(responders, keep) if k]
    mean, sd = mean[:, keep], sd[:, keep]
    log2 = np.log2(mean)
    reach = max(float(np.nanmax(np.abs(log2))) if np.isfinite(log2).any() else 1.0, 0.1)
    fig, ax = plt.subplots(figsize=(3.6 + 0.95 * len(responders), 2.2 + 0.45 * len(scenarios)), constrained_layout=True)
    image = ax.imshow(log2, cmap="RdBu", norm=TwoSlopeNorm(0.0, -reach, reach), aspect="auto")
    for (i, j), v in np.ndenumerate(mean):
        if np.isfinite(v):
            text = f"{v:.2f}" + (f"\n±{sd[i, j]:.2f}" if np.isfinite(sd[i, j]) else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if abs(log2[i, j]) > 0.6 * reach else "black")
    ax.set_xticks(range(len(responders)), responders, rotation=45, ha="right")
    ax.set_yticks(range(len(scenarios)), scenarios)
    ax.set_title(f"fold change N(end) / N(0) of each cell type over {days:g} days (mean ±sd over {n_seeds} seed"
                 f"{'s' if n_seeds > 1 else ''})", fontsize=9)
    bar = fig.colorbar(image, ax=ax, shrink=0.8, label="N(end) / N(0), log2")
    folds = np.array([1 / 16, 1 / 8, 1 / 4, 1 / 2, 1 / 1.5, 1, 1.5, 2, 4, 8, 16])
    ticks = np.log2(folds[np.abs(np.log2(folds)) <= reach + 1e-9])
    bar.set_ticks(ticks, labels=[f"{2.0**t:.3g}" for t in ticks])
    fig.savefig(path, dpi=150)
    plt.close(fig)
