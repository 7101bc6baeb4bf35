"""`il2rd-compare-sources`: the source experiment in silico (Whyte et al. 2022, J Exp Med 219:e20212391).

Runs one steady simulation per scenario preset (configs/scenario/: IL-2 from each of six source
types with the same total output, a no-IL-2 control, IL-2 therapy at two doses and a mutein), all
on the same lymph-node population, and writes

    <out>/compare_sources.csv   one row per scenario and responder type: cells, mean IL-2 seen (pM),
                                pSTAT5+ fraction, mean receptors, uptake (molecules/s) and its share
                                of all uptake in that scenario
    <out>/compare_sources.png   heatmaps, scenarios x responder types (those with receptors): pSTAT5+
                                fraction, and the share of the scenario's IL-2 input each responder type
                                took up, with what decayed or left and the autocrine part (log scale)
    <out>/<scenario>/il2rd.h5   each run's file (with its /attribution table)

    il2rd-compare-sources [--scenarios NAME ...] [--out DIR] [HYDRA_OVERRIDE ...]
    il2rd-compare-sources --days 3 [--seeds 3] [--every 6] ...

With --days D the experiment runs over days instead (Whyte et al. measured expansion): each
scenario as solver.kind=tissue with fate.enabled=true (cells walk, divide and die by their
time-averaged pSTAT5: il2rd/cells/fate.py) to D days, once per seed 0 .. seeds-1 (placement, walks and
fates differ), and writes

    <out>/compare_sources_days.csv  one row per scenario, seed and responder type: cells at the start
                                    and the end, the type's slots (fate.capacity = 16 per placed cell of
                                    a type that divides; a type that fills them is marked * in the printed
                                    table), fold change, the pSTAT5+ fraction and mean time-averaged
                                    pSTAT5 at the end
    <out>/compare_sources_days.png  the fold change per responder type and scenario (mean over seeds,
                                    log2 colour scale; the spread over seeds written in each cell)
    <out>/<scenario>/seed<k>/il2rd.h5  each run's file (population.png: il2rd-plot)

<out> is by default a new folder outputs/compare_sources/<YYYY-MM-DD>/<HH-MM-SS>/ (as Hydra dates
its run folders), so that no comparison overwrites another; --out DIR writes into DIR. Every
scenario's config is composed and checked before the first run starts. Runs that finished
before in the same --out folder (same config) are read back, not recomputed.
"""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

from ..tables import value

# the presets in the order of the comparison; the source presets first, as in Whyte et al. 2022
SCENARIOS = ("treg_source", "cd4_source", "cd8_source", "nk_source", "dc_source", "b_cell_source", "no_il2",
             "therapy_low", "therapy_high", "mutein")
COLUMNS = ("scenario", "responder", "cells", "mean_il2_pM", "pstat5_positive_fraction", "mean_receptors",
           "mean_receptors_intermediate", "uptake_molecules_per_s", "uptake_share")


def _compose(name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from ..config.schema import config_dir, register_configs

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


DAY_COLUMNS = ("scenario", "seed", "responder", "cells_start", "cells_end", "slots", "fold_change",
               "pstat5_positive_fraction", "mean_pstat5_mean")
DAYS_CAPACITY = 16.0  # fate.capacity of the days-long runs: a type may grow 16-fold (one that fills its slots is flagged)
DAYS_STEP_S = 300.0  # solver.dt of the days-long runs; the walk takes sub-steps of <= 1 min inside it (motility.substeps)


def days_overrides(days: float, every_h: float) -> list[str]:
    """The overrides that turn a preset into its days-long run (before the user's, which win)."""
    return ["solver.kind=tissue", "fate.enabled=true", f"fate.capacity={DAYS_CAPACITY:g}", f"time.end={days * 86400.0:g}",
            f"time.snapshot_every={every_h * 3600.0:g}", f"solver.dt={DAYS_STEP_S:g}"]


def rows_over_days(name: str, seed: int, result) -> list[dict]:
    """The rows of one days-long run, read from its file: per responder type the living cells at
    the first and last snapshot, their ratio, the type's slots (a type whose cells fill them could
    have grown more: fate.capacity) and the last summary's pSTAT5+ fraction."""
    from ..io.reader import load

    by_type = {t.name: t for t in result.summary.types}
    rows = []
    with load(result.path) as r:
        types = r.cells["type"]
        start, end = r.living(0), r.living(-1)
        pbar = np.asarray(r.cells["pstat5_mean"][-1], np.float64)
        for i, responder in enumerate(r.type_names):
            n0, n1 = int(np.sum(start & (types == i))), int(np.sum(end & (types == i)))
            mine = end & (types == i)
            rows.append(dict(scenario=name, seed=seed, responder=responder, cells_start=n0, cells_end=n1,
                             slots=int(np.sum(types == i)), fold_change=n1 / n0 if n0 else np.nan,
                             pstat5_positive_fraction=by_type[responder].pstat5_positive_fraction,
                             mean_pstat5_mean=float(pbar[mine].mean()) if n1 else np.nan))
    return rows


def compare_days(scenarios: list[str], out: Path, overrides: list[str], days: float, seeds: int = 1,
                 every_h: float = 6.0, progress: bool = True) -> list[dict]:
    """The source experiment over `days` (module docstring), each scenario once per seed; all
    configs checked before the first run. Returns the per-seed rows."""
    from .. import config
    from ..config import host
    from ..simulate import run

    cfgs = {}
    for name in scenarios:
        for seed in range(seeds):
            cfgs[name, seed] = cfg = _compose(name, [*days_overrides(days, every_h), f"seed={seed}", *overrides,
                                                     f"output.progress={str(progress).lower()}"])
            host.check(config.parse(cfg))
    rows = []
    for i, ((name, seed), cfg) in enumerate(cfgs.items()):
        print(f"[{i + 1}/{len(cfgs)}] {name}, seed {seed}, {days:g} days", file=sys.stderr, flush=True)
        rows += rows_over_days(name, seed, run(cfg, out / name / f"seed{seed}"))
    _write_csv(out / "compare_sources_days.csv", DAY_COLUMNS, rows)
    from ..figures.experiment import plot_days  # matplotlib only where a figure is drawn

    plot_days(fold_changes(rows), len({r["seed"] for r in rows}), out / "compare_sources_days.png", days)
    return rows


def fold_changes(rows: list[dict]):
    """(scenarios, responders, mean, sd) of the fold change over seeds (sd nan with one seed)."""
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    responders = list(dict.fromkeys(r["responder"] for r in rows))
    mean = np.full((len(scenarios), len(responders)), np.nan)
    sd = np.full_like(mean, np.nan)
    for i, s in enumerate(scenarios):
        for j, t in enumerate(responders):
            v = np.array([r["fold_change"] for r in rows if r["scenario"] == s and r["responder"] == t], np.float64)
            v = v[np.isfinite(v)]
            if len(v):
                mean[i, j] = v.mean()
                sd[i, j] = v.std(ddof=1) if len(v) > 1 else np.nan
    return scenarios, responders, mean, sd


def compare(scenarios: list[str], out: Path, overrides: list[str], progress: bool = True) -> list[dict]:
    """Run every scenario (all configs checked first) and write the table and the figure."""
    from .. import config
    from ..config import host
    from ..simulate import run

    cfgs = {}
    for name in scenarios:
        cfg = _compose(name, [*overrides, f"output.progress={str(progress).lower()}"])
        settings = config.parse(cfg)
        host.check(settings)
        if settings.numerics.kind.transient:
            raise config.ConfigError("solver.kind", settings.numerics.solver_kind, f"scenario {name}: the comparison needs steady runs")
        cfgs[name] = cfg
    rows, fates = [], {}
    for i, (name, cfg) in enumerate(cfgs.items()):
        print(f"[{i + 1}/{len(cfgs)}] {name}", file=sys.stderr, flush=True)
        result = run(cfg, out / name)
        rows += rows_of(name, result)
        fates[name] = fates_of(result)
    _write_csv(out / "compare_sources.csv", COLUMNS, rows)
    from ..figures.experiment import plot_sources  # matplotlib only where a figure is drawn

    plot_sources(rows, out / "compare_sources.png", fates)
    return rows


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)


def fates_of(result) -> dict:
    """Where a scenario's IL-2 went, as shares of all it put in (secretion and net inflow, from the
    attribution): {"input_molecules_per_s", "decay_or_left", "autocrine"}; nan without attribution
    or input."""
    shares = result.attribution
    total = float(np.sum(shares.output_molecules_per_s)) if shares is not None else 0.0
    if total <= 0:
        return {"input_molecules_per_s": total, "decay_or_left": np.nan, "autocrine": np.nan}
    return {"input_molecules_per_s": total,
            "decay_or_left": 1.0 - float(np.sum(shares.matrix_molecules_per_s)) / total,
            "autocrine": float(np.sum(shares.autocrine_by_source())) / total}


DEFAULT_ROOT = Path("outputs/compare_sources")


def dated_folder(root: Path = DEFAULT_ROOT, now: datetime | None = None) -> Path:
    """A new, empty folder root/<YYYY-MM-DD>/<HH-MM-SS>, made here so that no other comparison
    can take it (one started in the same second gets <HH-MM-SS>_1, _2, ...)."""
    now = now or datetime.now()
    base = root / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")
    base.parent.mkdir(parents=True, exist_ok=True)
    folder, n = base, 0
    while True:
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            n += 1
            folder = base.with_name(f"{base.name}_{n}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="il2rd-compare-sources", description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), help="presets to compare (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"output folder (default: a new {DEFAULT_ROOT}/<YYYY-MM-DD>/<HH-MM-SS>)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--days", type=float, default=None,
                   help="run each scenario over this many days with cells that walk, divide and die (solver.kind=tissue, "
                        "fate.enabled=true) and compare fold changes")
    p.add_argument("--seeds", type=int, default=1, help="--days: replicate runs per scenario, seeds 0 .. N-1 (default 1)")
    p.add_argument("--every", type=float, default=6.0, help="--days: hours between snapshots (default 6)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides applied to every scenario, e.g. grid.shape=[64,64,64]")
    args = p.parse_args(argv)
    # `--scenarios a b grid.shape=[...]`: argparse gives the overrides after the names to --scenarios
    args.overrides = [s for s in args.scenarios if "=" in s] + args.overrides
    args.scenarios = [s for s in args.scenarios if "=" not in s]
    if not args.scenarios:
        p.error("--scenarios needs at least one preset name")
    from hydra.errors import HydraException

    from ..cells.placement import PlacementError
    from ..config import ConfigError
    from ..io.failures import OutputError
    from ..simulate import SimulationError

    if args.days is not None and not (0 < args.days <= 60):
        p.error(f"--days {args.days:g}: allowed 0 < days <= 60")
    if args.seeds < 1 or not (0 < args.every <= 24 * 60):
        p.error(f"--seeds {args.seeds} (allowed >= 1), --every {args.every:g} h (allowed 0 < every <= 1440)")
    out = args.out if args.out is not None else dated_folder()
    if not args.no_progress:
        print(f"il2rd-compare-sources: {len(args.scenarios)} scenarios into {out}/", file=sys.stderr, flush=True)
    try:
        if args.days is not None:
            rows = compare_days(args.scenarios, out, args.overrides, args.days, args.seeds, args.every,
                                progress=not args.no_progress)
            _print_days(rows, out)
            return 0
        rows = compare(args.scenarios, out, args.overrides, progress=not args.no_progress)
    except (ConfigError, PlacementError, OutputError, SimulationError, HydraException) as err:  # OutputError: a
        # folder holding another run (runfolder.py): the message says output.overwrite=true replaces it
        print(f"il2rd-compare-sources: error: {err}", file=sys.stderr)
        if args.out is None:  # refused before any run: no empty folder left behind
            for folder in (out, out.parent):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
        return 2
    width = max(len(r["responder"]) for r in rows) + 2
    print(f"{'scenario':<16}{'responder':<{width}}{'IL-2 seen (pM)':>16}{'pSTAT5+':>9}{'uptake share':>14}")
    for r in rows:  # '-': a responder type without cells in that scenario
        print(f"{r['scenario']:<16}{r['responder']:<{width}}{value(r['mean_il2_pM']):>16}"
              f"{value(r['pstat5_positive_fraction'], '.1%'):>9}{r['uptake_share']:>14.1%}")
    print(f"wrote {out}/: compare_sources.csv, compare_sources.png and each scenario's run in <scenario>/il2rd.h5")
    return 0


def _print_days(rows: list[dict], out: Path) -> None:
    scenarios, responders, mean, sd = fold_changes(rows)
    width = max(len(t) for t in responders) + 2
    print(f"{'scenario':<16}{'responder':<{width}}{'cells at 0':>11}{'fold change':>13}{'sd':>7}")
    full = False
    for i, s in enumerate(scenarios):
        for j, t in enumerate(responders):
            mine = [r for r in rows if r["scenario"] == s and r["responder"] == t]
            capped = any(r["slots"] > r["cells_start"] and r["cells_end"] >= r["slots"] for r in mine)
            full |= capped
            print(f"{s:<16}{t:<{width}}{mine[0]['cells_start']:>11}{value(mean[i, j], '.3g'):>13}"
                  f"{value(sd[i, j], '.2f'):>7}{' *' if capped else ''}")
    if full:
        print("* the type filled its slots in a run (fate.capacity): it would have grown more")
    print(f"wrote {out}/: compare_sources_days.csv, compare_sources_days.png and each run in <scenario>/seed<k>/il2rd.h5")


if __name__ == "__main__":
    sys.exit(main())
