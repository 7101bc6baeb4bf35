"""The standard figure set of a run, made from its HDF5 file alone (`il2rd-plot`).

    il2rd-plot outputs/<date>/<time>/il2rd.h5 [--out DIR] [--time T] [--pdf] [--no-gif]

slice.png           IL-2 in the mid z-plane (log scale, secreting cells ringed) and the cell type of each voxel
pstat5_slice.png    per cell type, its mid-plane cells coloured by pSTAT5 over the IL-2 (light = low, colour bar)
radial_profile.png  mean IL-2 against distance from the sources, with the exact single-source profile
                    (3-D exp(-r/lambda)/r, or the sheet's K0 on a 2-D lattice) for decay alone and on the mean field
distance.png        per responder type, uptake and pSTAT5 against distance to the nearest secreting cell
histograms.png      per cell type, the distribution of IL-2 seen and of pSTAT5
pstat5_vs_il2.png   per responder type, pSTAT5 against IL-2 seen with the type's dose-response curve and EC50
attribution.png     where each source's IL-2 goes: each responder type, autocrine, decayed or left
main_source.png     each mid-plane cell's main source of IL-2 and the fraction of its uptake it gives
timeseries.png      per cell type, mean IL-2 seen and the pSTAT5+ fraction against time
tracks.png          tissue runs: the paths cells near the mid plane walked, over the IL-2
population.png      runs with fate: per cell type the cells alive, their fold change and mean averaged pSTAT5
slice.gif           the mid-plane slice over time (runs with more than one snapshot; a tissue run's cells walking in it)

A figure the run cannot support (no secreting cells, no attribution, one snapshot) is skipped
with a line saying why, never drawn empty.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..io.reader import load
from .profiles import figure_distance, figure_radial_profile
from .responses import figure_histograms, figure_pstat5_vs_il2, figure_timeseries
from .slices import animate_slice, figure_pstat5_slice, figure_slice
from .sources import figure_attribution, figure_main_source
from .population import figure_population
from .tracks import figure_tracks
from .style import DPI, FigureSkipped, plt

FIGURES = {  # file stem: maker(run, snapshot index)
    "slice": figure_slice,
    "pstat5_slice": figure_pstat5_slice,
    "radial_profile": figure_radial_profile,
    "distance": figure_distance,
    "histograms": figure_histograms,
    "pstat5_vs_il2": figure_pstat5_vs_il2,
    "attribution": figure_attribution,
    "main_source": figure_main_source,
    "timeseries": lambda run, index: figure_timeseries(run),
    "tracks": figure_tracks,
    "population": figure_population,
}


def make_figures(h5_path, out_dir=None, time_s: float | None = None, pdf: bool = False, gif: bool = True,
                 report=print, only=None) -> list[Path]:
    """Write the figure set of one run; returns the files written. Each figure the run cannot
    support is reported (`report`, one line: its file and why) and not written. The folder is
    made only when the first figure is written, so a refused file leaves none. `only`: names
    of FIGURES to draw (default all; the GIF comes with 'slice')."""
    unknown = sorted(set(only or ()) - set(FIGURES))
    if unknown:
        raise ValueError(f"only = {', '.join(unknown)}: no such figure; the figures are {', '.join(FIGURES)}")
    wanted = FIGURES if only is None else {name: FIGURES[name] for name in FIGURES if name in only}
    gif = gif and "slice" in wanted
    h5_path = Path(h5_path)
    out = Path(out_dir) if out_dir is not None else h5_path.parent / "figures"
    written = []
    with load(h5_path) as run:
        # a time the file does not hold is refused before any drawing; the figures are of the nearest
        # snapshot that holds its field and cells (output.field_every, cells_every)
        index = run.snapshot_index(time_s, stored=True)
        for name, make in wanted.items():
            try:
                fig = make(run, index)
            except FigureSkipped as why:
                report(f"skipped {name}.png: {why}")
                continue
            out.mkdir(parents=True, exist_ok=True)
            for suffix in ("png", "pdf") if pdf else ("png",):
                path = out / f"{name}.{suffix}"
                fig.savefig(path, dpi=DPI)
                written.append(path)
            plt.close(fig)
        if gif and np.count_nonzero(run.field_stored) > 1:
            out.mkdir(parents=True, exist_ok=True)
            written.append(animate_slice(run, out / "slice.gif"))
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="il2rd-plot", description="The standard figure set of an il2rd run, from its HDF5 file.")
    parser.add_argument("file", type=Path, help="an il2rd.h5 run file")
    parser.add_argument("--out", type=Path, help="output folder (default: figures/ beside the file)")
    parser.add_argument("--time", type=float, help="snapshot time in s, within the run's (nearest is used; default: the last)")
    parser.add_argument("--pdf", action="store_true", help="also write PDF versions")
    parser.add_argument("--no-gif", action="store_true", help="skip the animation")
    parser.add_argument("--only", help=f"comma-separated figures to draw (default all): {', '.join(FIGURES)}")
    args = parser.parse_args(argv)
    only = None if args.only is None else [name.strip() for name in args.only.split(",") if name.strip()]
    if only is not None and sorted(set(only) - set(FIGURES)):
        print(f"il2rd-plot: error: --only = {args.only}: the figures are {', '.join(FIGURES)}", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"il2rd-plot: error: file = {str(args.file)!r}: no such file", file=sys.stderr)
        return 2
    try:
        written = make_figures(args.file, args.out, args.time, args.pdf, not args.no_gif,
                               report=lambda line: print(f"il2rd-plot: {line}", file=sys.stderr), only=only)
    except ValueError as err:
        if args.time is not None and "time =" in str(err):
            print(f"il2rd-plot: error: --time = {args.time:g}: {str(err).partition(': ')[2]}", file=sys.stderr)
        else:
            print(f"il2rd-plot: error: {args.file}: {err}", file=sys.stderr)
        return 2
    except (OSError, KeyError) as err:
        print(f"il2rd-plot: error: {args.file}: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0
