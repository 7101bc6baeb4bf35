"""Quickstart: il2rd from Python, top to bottom.

A small block of lymph-node T-cell zone (the default scenario: 1 % IL-2-secreting activated CD4
T cells, 10 % Tregs, 59 % naive T cells), solved for its steady IL-2 field; who took up whose
IL-2; the file read back; two figures; and a three-point sweep of the Tregs' IL-2Ra (CD25).

    python examples/quickstart.py                      # into outputs/examples/quickstart/
    python examples/quickstart.py my_folder --small    # elsewhere, on an even smaller lattice

About 20-40 s on a laptop CPU, most of it JAX compiling the solver (less the second time: compiled
kernels are cached on disk). Running it again into the same folder reuses the finished runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import il2rd


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", nargs="?", type=Path, default=Path("outputs/examples/quickstart"),
                        help="where the runs and figures go (default: outputs/examples/quickstart)")
    parser.add_argument("--small", action="store_true", help="a 16 x 12 x 8 lattice instead of 24 x 24 x 12")
    args = parser.parse_args(argv)
    out: Path = args.output_dir
    started = time.perf_counter()

    # 1. The config, exactly as the `il2rd` command composes it. Any key of README "Configuration"
    #    can be set, as the command's override strings or as Python keywords (`__` for the dots).
    #    10 um voxels, so 24 x 24 x 12 voxels is a 240 x 240 x 120 um block of tissue.
    shape = [16, 12, 8] if args.small else [24, 24, 12]
    cfg = il2rd.compose(grid__shape=shape, seed=0)
    print(f"lattice {cfg.grid.shape[0]} x {cfg.grid.shape[1]} x {cfg.grid.shape[2]} voxels of "
          f"{cfg.grid.spacing:g} um; D = {cfg.physics.diffusion:g} um^2/s")

    # 2. One run: the steady IL-2 field, the per-type readouts and the source attribution, all
    #    written to one il2rd.h5 (a folder that already holds this finished run gives it back).
    result = il2rd.run(cfg, output_dir=out / "run")
    print(result.summary.format())
    print(result.accuracy())
    print(result.attribution.format())  # who took up whose IL-2
    print(f"wrote {result.path}")

    # 3. The file read back (lazily: the field is read when indexed). Concentrations in pM,
    #    positions in um, uptake in molecules/s.
    with il2rd.load(result.path) as run:
        field_pM = run.field_xyz(-1)  # (nx, ny, nz), the last (here the only) snapshot
        print(f"field: shape {field_pM.shape}, mean {field_pM.mean():.4g} pM, max {field_pM.max():.4g} pM")
        il2_seen_pM = np.asarray(run.cells["il2"][-1])  # (cell,) IL-2 at each cell's surface
        pstat5 = np.asarray(run.cells["pstat5"][-1])  # (cell,) 0..1
        print(f"cells: {len(il2_seen_pM)} (columns: {', '.join(sorted(run.cells))})")
        for i, name in enumerate(run.type_names):
            mine = run.cells["type"] == i
            print(f"  {name:<13} {mine.sum():>6} cells, IL-2 seen {il2_seen_pM[mine].mean():8.4g} pM, "
                  f"mean pSTAT5 {pstat5[mine].mean():.3f}")
        a = run.attribution  # the uptake matrix: (source, responder type), molecules/s
        print(f"attribution matrix (molecules/s), sources {list(a.sources)} x responders {list(a.responders)}:")
        print(np.array2string(a.uptake_molecules_per_s, precision=4))
        treg_share = a.shares()["il2_producer"]["treg"]
        print(f"Tregs took up {treg_share:.1%} of the producers' IL-2 "
              f"({a.uptake()['il2_producer']['treg']:.4g} of {a.output()['il2_producer']:.4g} molecules/s)")

    # 4. Figures from the file alone (as il2rd-plot): the mid-plane slice and the attribution.
    for path in il2rd.make_figures(result.path, out / "figures", only=("slice", "attribution")):
        print(f"wrote {path}")

    # 5. A sweep: three Treg IL-2Ra numbers (receptors per cell), solved together as one vmapped
    #    batch in this process, each point its own il2rd.h5 in <folder>/<i>/.
    receptors = [3e3, 1e4, 3e4]
    sweep = il2rd.run_sweep({"grid.shape": shape, "seed": 0}, {"cell_types.treg.receptors": receptors},
                            out / "treg_receptors")
    assert not sweep.failures(), sweep.failures()
    rows = {row["run"]: row for row in sweep.table() if row["cell_type"] == "treg"}  # il2rd-collect's table
    for i, (point, path) in enumerate(zip(sweep.parameters, sweep.files)):
        row = rows[str(i)]
        print(f"sweep: treg receptors {point['cell_types.treg.receptors']:g}: "
              f"treg pSTAT5+ fraction {row['pstat5_positive_fraction']:.4f}, "
              f"treg mean IL-2 seen {row['mean_il2_pM']:.4g} pM, file {path}")

    print(f"quickstart: done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
