"""Days in the node: what three simulated days of the default 1 mm^3 node with cells that walk, divide
and die (solver.kind=tissue, fate.enabled=true) cost, stage by stage (issue 15's benchmark).

Builds the scenario as `il2rd-compare-sources --days` runs it (a source preset, 100^3 voxels of
10 um; `--quick`: the 32^3 node of tests/test_presets.py), then times, warm (compilation reported
apart):

  step      one whole step of the tissue stepper (fate, walk sub-steps, coupled field step), as
            `steppers.advance` takes it inside the run's lax.scan (per step, over --steps steps);
  motility  the walk sub-steps of one step alone (motility.step, walk_substeps times);
  fate      one fate step alone (fate.step at the state's pSTAT5);
  field     the coupled receptor + backward-Euler field step alone (dynamics.coupled_step);
  snapshot  the readouts and the HDF5 write of one snapshot, from a short real run's stopwatch
            (il2rd/stopwatch.py), and the file's size per snapshot;

and extrapolates to 3 days at the run's solver.dt with a snapshot every 6 h. The target: <= 20
minutes on 2 CPU cores.

    python benchmarks/tissue_days.py [--quick] [--scenario treg_source] [--dt 300] [--steps 10] [--out DIR]
    -> benchmarks/results/tissue_days[_quick].{json,md} (or DIR; benchmarks/gpu.sh runs it on a lent GPU)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import block, dump, log, machine  # noqa: E402

from il2rd import api, config
from il2rd.cells import dynamics, fate, motility
from il2rd.solvers import steppers  # noqa: E402
from il2rd.analysis.compare import days_overrides  # noqa: E402
from il2rd.scenario import Scenario  # noqa: E402

QUICK_NODE = ["grid.shape=[32,32,32]", "node.capsule_thickness=10", "node.t_zone_depth=30", "node.follicles.count=2",
              "node.follicles.radius=40", "node.follicles.spread=70", "cell_types.treg.count=100",
              "cell_types.cd4_activated.count=20", "cell_types.cd8_activated.count=10", "cell_types.dc.count=25",
              "cell_types.b_cell.count=320", "cell_types.nk.count=20"]
DAYS = 3.0
SNAPSHOT_EVERY_H = 6.0
TARGET_S = 20 * 60.0


def _best(fn, repeats: int = 3):
    """(best warm seconds, first call's seconds) of fn()."""
    t0 = time.perf_counter()
    block(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - t0)
    return min(times), first


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the 32^3 node instead of the default 100^3")
    p.add_argument("--scenario", default="treg_source")
    p.add_argument("--dt", type=float, default=None, help="solver.dt (s); default: il2rd-compare-sources --days's")
    p.add_argument("--steps", type=int, default=10, help="steps timed as one advance")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results", help="results folder")
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args(argv)
    overrides = [f"scenario={args.scenario}", *days_overrides(DAYS, SNAPSHOT_EVERY_H), "output.progress=false",
                 *(QUICK_NODE if args.quick else [])]
    if args.dt is not None:
        overrides.append(f"solver.dt={args.dt:g}")
    cfg = api.compose(*overrides)
    settings = config.parse(cfg)
    t0 = time.perf_counter()
    scenario = Scenario.build(settings)
    stepper = steppers.for_scenario(scenario)
    state, _ = block(steppers.initialize(stepper, 0.0))
    setup_s = time.perf_counter() - t0
    dt = settings.numerics.dt_s
    n_slots, n_placed = len(scenario.population), int(np.sum(scenario.alive))
    log(f"{args.scenario}: {scenario.grid.shape} voxels, {n_placed} cells in {n_slots} slots, dt {dt:g} s, "
        f"{stepper.walk_substeps} walk sub-steps; set-up {setup_s:.1f} s")

    step_s, step_first = _best(lambda: steppers.advance(stepper, state, 0.0, dt, args.steps), repeats=2)
    walk = stepper._walk_of(state.fate.alive)
    walk_step = jax.jit(lambda w, key: [w := motility.step(k, w, walk, dt / stepper.walk_substeps)[0]
                                        for k in jax.random.split(key, stepper.walk_substeps)][-1])
    motility_s, motility_first = _best(lambda: walk_step(state.walkers, state.key))
    cells = stepper.cells_at(state.walkers, state.fate.alive)
    pstat5 = jax.jit(dynamics.pstat5_of)(state.field, state.receptors, cells)
    fate_step = jax.jit(fate.step)
    fate_s, fate_first = _best(lambda: fate_step(state.key, state.fate, state.walkers, stepper.walk, stepper.rates, pstat5,
                                                 dt, state.receptors))
    field_step = jax.jit(lambda s: dynamics.coupled_step((s.field, s.receptors), 0.0, dt, stepper.grid, stepper.coef, cells,
                                                         stepper.options))
    field_s, field_first = _best(lambda: field_step(state))

    # readouts and write per snapshot, and the file size, from a real run of a few snapshots
    with tempfile.TemporaryDirectory() as tmp:
        short = api.compose(*overrides, f"time.end={4 * dt:g}", f"time.snapshot_every={dt:g}", "output.attribution=false")
        result = api.run(short, Path(tmp) / "run")
        with h5py.File(result.path) as f:
            n_snap = int(f.attrs["n_snapshots"])
            stages = {k.removeprefix("time_").removesuffix("_s"): float(v) for k, v in f.attrs.items()
                      if k.startswith("time_") and k.endswith("_s")}
        size_mb = result.path.stat().st_size / 1e6
    per_snapshot_s = (stages.get("readouts", 0.0) + stages.get("write", 0.0)) / n_snap
    per_step_s = step_s / args.steps
    n_steps = DAYS * 86400.0 / dt
    n_snapshots = DAYS * 24 / SNAPSHOT_EVERY_H + 1
    total_s = setup_s + n_steps * per_step_s + n_snapshots * per_snapshot_s
    out = dict(machine=machine(), scenario=args.scenario, shape=list(scenario.grid.shape), cells=n_placed, slots=n_slots,
               dt_s=dt, walk_substeps=stepper.walk_substeps, setup_s=setup_s, per_step_s=per_step_s,
               stages_per_step_s=dict(motility=motility_s, fate=fate_s, field=field_s),
               compile_s=dict(step=step_first - step_s, motility=motility_first - motility_s, fate=fate_first - fate_s,
                              field=field_first - field_s),
               per_snapshot_s=per_snapshot_s, run_stages_s=stages, file_mb_per_snapshot=size_mb / n_snap,
               three_days_s=total_s, target_s=TARGET_S)
    results = args.out
    results.mkdir(parents=True, exist_ok=True)
    stem = "tissue_days_quick" if args.quick else "tissue_days"
    dump(out, results / f"{stem}.json")
    if args.json:
        dump(out, args.json)
    m = out["machine"]
    lines = [f"# Three days in the node ({args.scenario}, {'32^3 quick node' if args.quick else 'default 100^3 node'})", "",
             f"{m['date']}; {m['cpu']}, {m['cores_usable']} cores usable, jax {m['versions']['jax']} "
             f"({m['jax_backend']}); load at start {m['busy_fraction_at_start']:.0%}", "",
             f"{n_placed} cells in {n_slots} slots on {'x'.join(map(str, scenario.grid.shape))} voxels; "
             f"solver.dt {dt:g} s with {stepper.walk_substeps} walk sub-steps; snapshots every {SNAPSHOT_EVERY_H:g} h", "",
             "| stage | per step (warm) |", "|---|---|",
             f"| whole step (advance, {args.steps} steps) | {per_step_s * 1e3:.1f} ms |",
             f"| motility (walk sub-steps) | {motility_s * 1e3:.1f} ms |",
             f"| fate | {fate_s * 1e3:.1f} ms |",
             f"| field (receptors + backward-Euler step) | {field_s * 1e3:.1f} ms |",
             f"| readouts + write, per snapshot | {per_snapshot_s * 1e3:.0f} ms |", "",
             f"File: {out['file_mb_per_snapshot']:.2f} MB per snapshot. Set-up {setup_s:.1f} s.", "",
             f"**Three days: {total_s / 60:.1f} min** ({n_steps:.0f} steps, {n_snapshots:.0f} snapshots) against the "
             f"target of {TARGET_S / 60:.0f} min: {'met' if total_s <= TARGET_S else 'missed'}."]
    (results / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
