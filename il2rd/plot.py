"""`il2rd-plot`: the standard figure set of a run (the figures live in il2rd/figures/)."""

from __future__ import annotations

import sys

from .figures import FIGURES, main, make_figures
from .figures.profiles import (effective_removal_per_s, figure_distance, figure_radial_profile,
                               nearest_source_distance_um, point_source_profile_pM, radial_profile)
from .figures.responses import figure_histograms, figure_pstat5_vs_il2, figure_timeseries
from .figures.slices import animate_slice, figure_pstat5_slice, figure_slice
from .figures.sources import figure_attribution, figure_main_source, main_source
from .figures.style import DPI, FigureSkipped, plt

__all__ = ["DPI", "FIGURES", "FigureSkipped", "animate_slice", "effective_removal_per_s", "figure_attribution",
           "figure_distance", "figure_histograms", "figure_main_source", "figure_pstat5_slice", "figure_pstat5_vs_il2",
           "figure_radial_profile", "figure_slice", "figure_timeseries", "main", "main_source", "make_figures",
           "nearest_source_distance_um", "plt", "point_source_profile_pM", "radial_profile"]

if __name__ == "__main__":
    sys.exit(main())
