"""The standard figure set of a run, made from its HDF5 file alone (`il2rd-plot`).

    il2rd-plot outputs/<date>/<time>/il2rd.h5 [--out DIR] [--time T] [--pdf] [--no-gif]

slice.png           IL-2 in the mid z-plane and its maximum projection over z (log colour scale),
                    the plane's cells overlaid by type
pstat5_slice.png    each cell of the mid plane coloured by its pSTAT5 level, over the IL-2 slice
radial_profile.png  mean IL-2 against distance from the sources, with the exact point-source
                    profile q exp(-r/lambda)/(4 pi D r) for decay alone, and on the mean field
                    with the run's own mean removal rate
histograms.png      per cell type, the distribution of IL-2 seen and of pSTAT5
timeseries.png      per cell type, mean IL-2 seen and the pSTAT5+ fraction against time
slice.gif           the mid-plane slice over time (runs with more than one snapshot)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import animation  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from . import units  # noqa: E402
from .io.reader import RunFile, load  # noqa: E402

DPI = 100
DYNAMIC_RANGE = 1e4  # log colour scales span at most this many-fold below the maximum
MAX_SOURCES_FOR_PROFILE = 200


def _log_norm(values) -> LogNorm:
    v = np.asarray(values, np.float64)
    top = float(np.nanmax(v)) if v.size else 1.0
    top = top if top > 0 else 1.0
    positive = v[v > 0]
    bottom = max(float(positive.min()) if positive.size else top / DYNAMIC_RANGE, top / DYNAMIC_RANGE)
    return LogNorm(vmin=min(bottom, top / 10), vmax=top)


def _type_colours(run: RunFile) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(run.type_names)}


def _extent(run: RunFile) -> list[float]:
    nx, ny, _ = run.shape
    return [0.0, nx * run.spacing_um, 0.0, ny * run.spacing_um]


def _mid_plane(run: RunFile) -> int:
    return run.shape[2] // 2


def _cells_in_plane(run: RunFile, k: int) -> np.ndarray:
    return np.floor(run.cells["z"] / run.spacing_um + 1e-9).astype(int) == k


def _overlay_cells(ax, run: RunFile, mask: np.ndarray) -> None:
    colours = _type_colours(run)
    for i, name in enumerate(run.type_names):
        sel = mask & (run.cells["type"] == i)
        n = int(sel.sum())
        if n == 0:
            continue
        size = float(np.clip(3000.0 / n, 1.0, 25.0))  # rare types (sources) stand out
        ax.scatter(run.cells["x"][sel], run.cells["y"][sel], s=size, color=colours[name], label=f"{name} ({n})",
                   linewidths=0, alpha=0.8)
    ax.legend(loc="upper right", fontsize=7, markerscale=2, framealpha=0.8)


def _time_label(run: RunFile, index: int) -> str:
    if run.attrs.get("solver") == "steady":
        return "steady state"
    t_s = float(run.time[index])
    return f"t = {t_s:g} s" if t_s < 600 else f"t = {t_s / 60:.4g} min"


def figure_slice(run: RunFile, index: int):
    field = np.asarray(run.field[index], np.float64)  # (z, y, x)
    k = _mid_plane(run)
    norm = _log_norm(field)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.4), constrained_layout=True)
    for ax, image, title in (
        (axes[0], field[k], f"mid plane z = {run.z[k]:g} um"),
        (axes[1], field.max(axis=0), "maximum over z"),
    ):
        im = ax.imshow(np.clip(image, norm.vmin, None), origin="lower", extent=_extent(run), norm=norm, cmap="magma",
                       interpolation="nearest")
        ax.set(xlabel="x (um)", ylabel="y (um)", title=title)
    _overlay_cells(axes[0], run, _cells_in_plane(run, k))
    fig.colorbar(im, ax=axes, label="IL-2 (pM)", shrink=0.9)
    fig.suptitle(f"IL-2, {_time_label(run, index)}")
    return fig


def figure_pstat5_slice(run: RunFile, index: int):
    field = np.asarray(run.field[index], np.float64)
    k = _mid_plane(run)
    norm = _log_norm(field[k])
    fig, ax = plt.subplots(figsize=(7.5, 6), constrained_layout=True)
    ax.imshow(np.clip(field[k], norm.vmin, None), origin="lower", extent=_extent(run), norm=norm, cmap="Greys",
              interpolation="nearest")
    sel = _cells_in_plane(run, k)
    pstat5 = np.asarray(run.cells["pstat5"][index])[sel]
    # marker area grows with pSTAT5, so that the responding cells stand out from the silent ones
    points = ax.scatter(run.cells["x"][sel], run.cells["y"][sel], c=pstat5, s=1 + 24 * pstat5, cmap="viridis",
                        vmin=0, vmax=1, linewidths=0)
    fig.colorbar(points, ax=ax, label="pSTAT5 (fraction of maximal)")
    ax.set(xlabel="x (um)", ylabel="y (um)",
           title=f"pSTAT5 per cell, z = {run.z[k]:g} um (IL-2 in grey), {_time_label(run, index)}")
    return fig


def radial_profile(run: RunFile, index: int, max_radius_voxels: int = 20):
    """Mean field (pM) in distance bins around the secreting cells: (r_um bin centres, mean, n sources)."""
    q = np.asarray(run.cell_types["secretion_molecules_per_s"])
    is_source = q[run.cells["type"]] > 0
    h = run.spacing_um
    sources = np.flatnonzero(is_source)[:MAX_SOURCES_FOR_PROFILE]
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
        centre = np.floor(np.array([run.cells[a][s] for a in "xyz"]) / h + 1e-9).astype(int)
        idx = centre + offsets
        inside = keep & np.all((idx >= 0) & (idx < shape), axis=1)
        values = field[tuple(idx[inside].T)]
        np.add.at(sums, bins[inside], values)
        np.add.at(counts, bins[inside], 1)
    with np.errstate(invalid="ignore"):
        mean = sums / counts
    return 0.5 * (edges[1:] + edges[:-1]), mean, len(sources), float(q[run.cells["type"][sources]].mean()) if len(sources) else 0.0


def effective_removal_per_s(run: RunFile, index: int) -> float:
    """The run's own mean-field removal rate (1/s): (uptake + decay) / IL-2 present,
    k_eff = (sum_i U_i + k_d sum c V) / (6.022e-4 sum c V)."""
    field = np.asarray(run.field[index], np.float64)
    present_pM_um3 = field.sum() * run.spacing_um**3 * _volume_fraction(run)
    uptake_pM_um3_per_s = float(np.sum(run.cells["uptake"][index])) / units.MOLECULES_PER_UM3_PER_PM
    decay = float(run.config["physics"]["decay"])
    return decay + uptake_pM_um3_per_s / present_pM_um3 if present_pM_um3 > 0 else decay


def _volume_fraction(run: RunFile) -> float:
    return float(run.config["physics"].get("volume_fraction", 1.0))


def figure_radial_profile(run: RunFile, index: int):
    r, mean, n_sources, q = radial_profile(run, index)
    physics = run.config["physics"]
    alpha = _volume_fraction(run)
    d = float(physics["diffusion"]) / float(physics.get("tortuosity", 1.0)) ** 2  # D_eff
    background = float(np.mean(run.field[index]))
    fig, ax = plt.subplots(figsize=(7.5, 5.5), constrained_layout=True)
    ok = np.isfinite(mean) & (mean > 0)
    ax.semilogy(r[ok], mean[ok], "o-", color="k", label=f"il2rd, mean over {n_sources} sources")
    rr = np.linspace(r[0], r[-1], 200)
    amplitude = q / units.MOLECULES_PER_UM3_PER_PM / (4 * np.pi * d * alpha)  # pM um, per interstitial volume
    for k, offset, style, name in (
        (float(run.config["physics"]["decay"]), 0.0, "--", "isolated, decay only"),
        (effective_removal_per_s(run, index), background, ":", "on the mean field, k_eff = removal / IL-2 present"),
    ):
        if k > 0 and q > 0:
            lam = np.sqrt(d / k)
            ax.semilogy(rr, offset + amplitude * np.exp(-rr / lam) / rr, style,
                        label=f"exact point source, {name} (lambda = {lam:.3g} um)")
    ax.axhline(background, color="grey", lw=0.8, label=f"mean field {background:.3g} pM")
    if ok.any():  # the data's own range: the decay-only curve may run off the bottom
        ax.set_ylim(np.min(mean[ok]) / 5, np.max(mean[ok]) * 3)
    ax.set(xlabel="distance from source (um)", ylabel="IL-2 (pM)",
           title=f"IL-2 around sources (q = {q:g} molecules/s), {_time_label(run, index)}")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def figure_histograms(run: RunFile, index: int):
    colours = _type_colours(run)
    il2 = np.asarray(run.cells["il2"][index])
    pstat5 = np.asarray(run.cells["pstat5"][index])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    norm = _log_norm(il2)
    il2_bins = np.geomspace(norm.vmin, norm.vmax, 50)
    for i, name in enumerate(run.type_names):
        sel = run.cells["type"] == i
        if not sel.any():
            continue
        weights = np.full(int(sel.sum()), 1.0 / sel.sum())
        axes[0].hist(np.clip(il2[sel], norm.vmin, None), bins=il2_bins, weights=weights, histtype="step", lw=1.5,
                     color=colours[name], label=name)
        axes[1].hist(pstat5[sel], bins=np.linspace(0, 1, 41), weights=weights, histtype="step", lw=1.5,
                     color=colours[name], label=name)
    axes[0].set(xscale="log", xlabel="IL-2 seen (pM)", ylabel="fraction of the type's cells", title="IL-2 seen")
    threshold = float(run.config.get("signalling", {}).get("pstat5_threshold", 0.5))
    axes[1].axvline(threshold, color="grey", ls="--", lw=1, label=f"pSTAT5+ threshold {threshold:g}")
    axes[1].set(xlabel="pSTAT5 (fraction of maximal)", ylabel="fraction of the type's cells", title="pSTAT5")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(_time_label(run, index))
    return fig


def figure_timeseries(run: RunFile):
    colours = _type_colours(run)
    il2 = np.asarray(run.cells["il2"])
    pstat5 = np.asarray(run.cells["pstat5"])
    threshold = float(run.config.get("signalling", {}).get("pstat5_threshold", 0.5))
    minutes = run.time / 60.0
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    for i, name in enumerate(run.type_names):
        sel = run.cells["type"] == i
        if not sel.any():
            continue
        axes[0].plot(minutes, il2[:, sel].mean(axis=1), "o-", color=colours[name], label=name, ms=3)
        axes[1].plot(minutes, (pstat5[:, sel] >= threshold).mean(axis=1), "o-", color=colours[name], label=name, ms=3)
    axes[0].set(xlabel="time (min)", ylabel="mean IL-2 seen (pM)", title="IL-2 seen per cell type")
    axes[1].set(xlabel="time (min)", ylabel=f"fraction with pSTAT5 >= {threshold:g}", ylim=(-0.02, 1.02),
                title="pSTAT5+ fraction per cell type")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    return fig


def animate_slice(run: RunFile, path: Path, fps: int = 4) -> Path:
    k = _mid_plane(run)
    frames = [np.asarray(run.field[i, k], np.float64) for i in range(len(run.time))]
    norm = _log_norm(np.stack(frames))
    fig, ax = plt.subplots(figsize=(6, 5), constrained_layout=True)
    im = ax.imshow(np.clip(frames[0], norm.vmin, None), origin="lower", extent=_extent(run), norm=norm, cmap="magma",
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, label="IL-2 (pM)")
    ax.set(xlabel="x (um)", ylabel="y (um)")

    def update(i):
        im.set_data(np.clip(frames[i], norm.vmin, None))
        ax.set_title(f"IL-2 at z = {run.z[k]:g} um, {_time_label(run, i)}")
        return (im,)

    anim = animation.FuncAnimation(fig, update, frames=len(frames), blit=False)
    anim.save(path, writer=animation.PillowWriter(fps=fps), dpi=DPI)
    plt.close(fig)
    return path


def make_figures(h5_path, out_dir=None, time_s: float | None = None, pdf: bool = False, gif: bool = True) -> list[Path]:
    """Write the figure set of one run; returns the files written."""
    h5_path = Path(h5_path)
    out = Path(out_dir) if out_dir is not None else h5_path.parent / "figures"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with load(h5_path) as run:
        index = run.snapshot_index(time_s)
        figures = {
            "slice": lambda: figure_slice(run, index),
            "pstat5_slice": lambda: figure_pstat5_slice(run, index),
            "radial_profile": lambda: figure_radial_profile(run, index),
            "histograms": lambda: figure_histograms(run, index),
            "timeseries": lambda: figure_timeseries(run),
        }
        for name, make in figures.items():
            fig = make()
            for suffix in ("png", "pdf") if pdf else ("png",):
                path = out / f"{name}.{suffix}"
                fig.savefig(path, dpi=DPI)
                written.append(path)
            plt.close(fig)
        if gif and len(run.time) > 1:
            written.append(animate_slice(run, out / "slice.gif"))
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="il2rd-plot", description="The standard figure set of an il2rd run, from its HDF5 file.")
    parser.add_argument("file", type=Path, help="an il2rd.h5 run file")
    parser.add_argument("--out", type=Path, help="output folder (default: figures/ beside the file)")
    parser.add_argument("--time", type=float, help="snapshot time in s (nearest is used; default: the last)")
    parser.add_argument("--pdf", action="store_true", help="also write PDF versions")
    parser.add_argument("--no-gif", action="store_true", help="skip the animation")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        print(f"il2rd-plot: error: file = {str(args.file)!r}: no such file", file=sys.stderr)
        return 2
    try:
        written = make_figures(args.file, args.out, args.time, args.pdf, not args.no_gif)
    except (OSError, KeyError, ValueError) as err:
        print(f"il2rd-plot: error: {args.file}: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
