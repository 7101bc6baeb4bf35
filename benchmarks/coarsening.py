"""The same tissue at two voxel sizes: does coarsening change the per-type answers?

A tissue of the default T-zone composition (configs/scenario/t_zone.yaml) is placed once on a
lattice of fine voxels (edge h, default 10 um) and written as a CSV of cell positions (um). The
same CSV is then run on the fine lattice and on one of voxels r times larger (default 20 um, the
lattice shape divided by r), where several cells share a voxel (cells.cells_per_voxel), each its
own sink on its own sub-grid stencil (physics.cell_radius defaults to each type's radius).
Printed per type: mean uptake (molecules/s), pSTAT5+ fraction and mean IL-2 seen at both sizes
and their relative difference; the wall time of each run.

    python benchmarks/coarsening.py                      # 320 um cube: 32^3 at 10 um vs 16^3 at 20 um
    python benchmarks/coarsening.py --fine 64 --seed 1   # 640 um cube
    python benchmarks/coarsening.py --extra physics.uptake=linear

Uses Hydra (il2rd's config), unlike the suite of run.py. tests/test_coarsening.py asserts the
comparison on a small tissue.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

import il2rd.cli
from il2rd.config import parse
from il2rd.config.schema import register_configs
from il2rd.scenario import Scenario
from il2rd.simulate import run


def composed(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(il2rd.cli.config_dir()), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def write_tissue(path: Path, fine: int, spacing_um: float, seed: int, extra=()) -> Path:
    """The cells of the default scenario placed on fine^3 voxels of spacing_um, as a CSV (x,y,z,type in um)."""
    settings = parse(composed(f"grid.shape=[{fine},{fine},{fine}]", f"grid.spacing={spacing_um}", f"seed={seed}", *extra))
    pop = Scenario.build(settings).population
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["x", "y", "z", "type"])
        for xyz, t in zip(pop.position_um, pop.type_index):
            out.writerow([*(f"{v:.6g}" for v in xyz), pop.type_names[t]])
    return path


def run_tissue(tissue: Path, n: int, spacing_um: float, out: Path, extra=()):
    """Summary and wall time (s) of the tissue on n^3 voxels of spacing_um."""
    started = time.perf_counter()
    result = run(composed(f"grid.shape=[{n},{n},{n}]", f"grid.spacing={spacing_um}", f"cells.csv={tissue}",
                          "output.progress=false", "output.attribution=false", *extra), out)
    return result.summary, time.perf_counter() - started


def compare(fine: int = 32, spacing_um: float = 10.0, ratio: int = 2, seed: int = 0, extra=(), workdir: Path | None = None):
    """{type: {quantity: (fine value, coarse value)}} and the two wall times."""
    if fine % ratio:
        raise ValueError(f"--fine {fine} must be a multiple of --ratio {ratio}")
    work = Path(workdir or tempfile.mkdtemp(prefix="il2rd-coarsening-"))
    tissue = write_tissue(work / "tissue.csv", fine, spacing_um, seed, extra)
    a, time_a = run_tissue(tissue, fine, spacing_um, work / "fine", extra)
    b, time_b = run_tissue(tissue, fine // ratio, spacing_um * ratio, work / "coarse", extra)
    rows = {}
    for ta, tb in zip(a.types, b.types):
        assert ta.name == tb.name and ta.count == tb.count
        rows[ta.name] = dict(count=(ta.count, tb.count),
                             uptake=(ta.mean_uptake_molecules_per_s, tb.mean_uptake_molecules_per_s),
                             pstat5_positive=(ta.pstat5_positive_fraction, tb.pstat5_positive_fraction),
                             il2_seen=(ta.mean_il2_pM, tb.mean_il2_pM))
    return rows, (time_a, time_b)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fine", type=int, default=32, help="voxels per axis of the fine lattice")
    parser.add_argument("--spacing", type=float, default=10.0, help="fine voxel edge, um")
    parser.add_argument("--ratio", type=int, default=2, help="coarse voxel edge / fine voxel edge")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extra", nargs="*", default=[], help="further config overrides for both runs")
    args = parser.parse_args(argv)
    rows, (time_a, time_b) = compare(args.fine, args.spacing, args.ratio, args.seed, args.extra)
    h, H = args.spacing, args.spacing * args.ratio
    print(f"same tissue, {args.fine * h:g} um cube: {args.fine}^3 at {h:g} um ({time_a:.1f} s) vs "
          f"{args.fine // args.ratio}^3 at {H:g} um ({time_b:.1f} s); overrides {args.extra}")
    print(f"{'type':<14}{'cells':>8}  {'uptake ' + str(h) + ' / ' + str(H) + ' um (molec/s)':>34}{'diff':>8}"
          f"  {'pSTAT5+':>18}{'diff':>8}  {'IL-2 seen (pM)':>20}{'diff':>8}")
    for name, r in rows.items():
        rel = lambda q: (r[q][1] - r[q][0]) / r[q][0] if r[q][0] else float("nan")  # noqa: E731
        print(f"{name:<14}{r['count'][0]:>8}  {r['uptake'][0]:>16.4g} {r['uptake'][1]:>16.4g} {rel('uptake'):>+7.1%}"
              f"  {r['pstat5_positive'][0]:>8.1%} {r['pstat5_positive'][1]:>8.1%} {rel('pstat5_positive'):>+7.1%}"
              f"  {r['il2_seen'][0]:>9.4g} {r['il2_seen'][1]:>9.4g} {rel('il2_seen'):>+7.1%}")


if __name__ == "__main__":
    sys.exit(main())
