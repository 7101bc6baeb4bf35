"""`il2rd-compare-sources`: the source experiment in silico (Whyte et al. 2022, J Exp Med 219:e20212391).

Runs one steady simulation per scenario preset (configs/scenario/: IL-2 from each of six source
types with the same total output, a no-IL-2 control, IL-2 therapy at two doses and a mutein), all
on the same lymph-node population, and writes

    <out>/compare_sources.csv   one row per scenario and responder type: cells, mean IL-2 seen (pM),
                                pSTAT5+ fraction, mean receptors, uptake (molecules/s) and its share
                                of all uptake in that scenario
    <out>/compare_sources.png   heatmaps, scenarios x responder types: pSTAT5+ fraction, and the
                                share of the IL-2 taken up that each responder type received
    <out>/<scenario>/il2rd.h5   each run's file (with its /attribution table)

    il2rd-compare-sources [--scenarios NAME ...] [--out DIR] [HYDRA_OVERRIDE ...]

Every scenario's config is composed and checked before the first run starts. Runs that finished
before (same config, same folder) are read back, not recomputed.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

# the presets in the order of the comparison; the source presets first, as in Whyte et al. 2022
SCENARIOS = ("treg_source", "cd4_source", "cd8_source", "nk_source", "dc_source", "b_cell_source", "no_il2",
             "therapy_low", "therapy_high", "mutein")
COLUMNS = ("scenario", "responder", "cells", "mean_il2_pM", "pstat5_positive_fraction", "mean_receptors",
           "mean_receptors_intermediate", "uptake_molecules_per_s", "uptake_share")


def _compose(name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from .cli import config_dir
    from .config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=[f"scenario={name}", *overrides])


def rows_of(name: str, result) -> list[dict]:
    """The table rows of one scenario's Result."""
    total = sum(t.total_uptake_molecules_per_s for t in result.summary.types)
    return [dict(scenario=name, responder=t.name, cells=t.count, mean_il2_pM=t.mean_il2_pM,
                 pstat5_positive_fraction=t.pstat5_positive_fraction, mean_receptors=t.mean_receptors,
                 mean_receptors_intermediate=t.mean_receptors_intermediate, uptake_molecules_per_s=t.total_uptake_molecules_per_s,
                 uptake_share=t.total_uptake_molecules_per_s / total if total > 0 else 0.0)
            for t in result.summary.types]


def compare(scenarios: list[str], out: Path, overrides: list[str], progress: bool = True) -> list[dict]:
    """Run every scenario (all configs checked first) and write the table and the figure."""
    from . import config
    from .simulate import run

    cfgs = {}
    for name in scenarios:
        cfg = _compose(name, [*overrides, f"output.progress={str(progress).lower()}"])
        settings = config.parse(cfg)
        if settings.solver_kind != "steady":
            raise config.ConfigError("solver.kind", settings.solver_kind, f"scenario {name}: the comparison needs steady runs")
        cfgs[name] = cfg
    rows = []
    for i, (name, cfg) in enumerate(cfgs.items()):
        print(f"[{i + 1}/{len(cfgs)}] {name}", file=sys.stderr, flush=True)
        rows += rows_of(name, run(cfg, out / name))
    out.mkdir(parents=True, exist_ok=True)
    with (out / "compare_sources.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / "compare_sources.png")
    return rows


def _grid(rows: list[dict], column: str):
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    responders = list(dict.fromkeys(r["responder"] for r in rows))
    values = np.full((len(scenarios), len(responders)), np.nan)
    for r in rows:
        values[scenarios.index(r["scenario"]), responders.index(r["responder"])] = r[column]
    return scenarios, responders, values


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("pstat5_positive_fraction", "pSTAT5+ fraction of each responder type"),
              ("uptake_share", "share of all IL-2 uptake by responder type"))
    scenarios, responders, _ = _grid(rows, panels[0][0])
    fig, axes = plt.subplots(1, 2, figsize=(2 + 1.1 * len(responders) * 2, 1.5 + 0.45 * len(scenarios)), constrained_layout=True)
    for ax, (column, title) in zip(axes, panels):
        _, _, values = _grid(rows, column)
        image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(responders)), responders, rotation=45, ha="right")
        ax.set_yticks(range(len(scenarios)), scenarios)
        ax.set_title(title)
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle("IL-2 source experiment in silico: who receives and responds")
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="il2rd-compare-sources", description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), help="presets to compare (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("outputs/compare_sources"), help="output folder (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="Hydra overrides applied to every scenario, e.g. grid.shape=[64,64,64]")
    args = p.parse_args(argv)
    from hydra.errors import HydraException

    from .cells import PlacementError
    from .config import ConfigError
    from .io.hdf5 import OutputError
    from .simulate import SimulationError

    try:
        rows = compare(args.scenarios, args.out, args.overrides, progress=not args.no_progress)
    except (ConfigError, PlacementError, OutputError, SimulationError, HydraException) as err:  # OutputError: a
        # folder holding another run (runfolder.py): the message says output.overwrite=true replaces it
        print(f"il2rd-compare-sources: error: {err}", file=sys.stderr)
        return 2
    width = max(len(r["responder"]) for r in rows) + 2
    print(f"{'scenario':<16}{'responder':<{width}}{'IL-2 seen (pM)':>16}{'pSTAT5+':>9}{'uptake share':>14}")
    for r in rows:
        print(f"{r['scenario']:<16}{r['responder']:<{width}}{r['mean_il2_pM']:>16.4g}{r['pstat5_positive_fraction']:>9.1%}"
              f"{r['uptake_share']:>14.1%}")
    print(f"wrote {args.out / 'compare_sources.csv'} and {args.out / 'compare_sources.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
