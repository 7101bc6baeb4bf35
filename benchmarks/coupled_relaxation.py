"""How far the coupled solver's field is from a fine-step reference, and how far the quasi-steady
field (what solver.kind=coupled took before issue 12) would be, on il2rd's own scenarios.

For each scenario: the coupled run at solver.dt = 1800 s, and the reference, the same coupled solver
at dt = 60 s (its backward-Euler field and exponential receptor step are first order, so its own
error is ~1/30 of the 1800 s one); at each hour, max |c - c_ref| / max c_ref for the 1800 s run and
for the steady field of the reference's receptors at that time (the quasi-steady field).

    PYTHONPATH=. python benchmarks/coupled_relaxation.py [--shape 24] [--hours 6]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from compose import compose_config  # noqa: E402

from il2rd.config import parse  # noqa: E402
from il2rd.cells.dynamics import cell_kinetics, coefficients_at  # noqa: E402
from il2rd.solvers.steppers import Coupled, advance, initialize  # noqa: E402
from il2rd.scenario import Scenario  # noqa: E402
from il2rd.solvers.steady import steady_field  # noqa: E402

HOUR = 3600.0
SCENARIOS = {
    # the default T zone (70 % of voxels hold a cell), producers on the Sojka course, Treg feedback
    "t_zone (dense)": ["+cell_types.treg.cd25_gain=10", "+cell_types.il2_producer.secretion_course=[1,7,22]"],
    # producers among naive T cells only at 5 % occupancy: little uptake, decay-dominated
    "sparse naive": ["+cell_types.il2_producer.secretion_course=[1,7,22]", "cell_types.treg.density=0",
                     "cell_types.naive_t.density=4e4"],
}


def trajectory(scenario, dt_s, hours, initial_field):
    """(field, IL-2Ra) at every hour, float64."""
    grid, coef, options = scenario.grid, scenario.coefficients, scenario.settings.numerics.options
    kin = cell_kinetics(scenario, coef.dtype)
    state, _ = initialize(Coupled(coef, kin, grid, options, initial_field), 0.0)
    per_hour = int(round(HOUR / dt_s))
    out = []
    for h in range(hours):
        state, info = advance(Coupled(coef, kin, grid, options, initial_field), state, jnp.asarray(h * HOUR, coef.dtype),
                              jnp.asarray(dt_s, coef.dtype), per_hour)
        assert bool(info.converged), (h, info)
        out.append(state)
    return kin, out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", type=int, default=24)
    parser.add_argument("--hours", type=int, default=6)
    parser.add_argument("--initial-field", default="steady")
    args = parser.parse_args()
    for name, extra in SCENARIOS.items():
        cfg = compose_config(f"grid.shape=[{args.shape},{args.shape},{args.shape}]", "solver.kind=coupled",
                             "precision=float64", "solver.rtol=1e-9", *extra)
        scenario = Scenario.build(parse(cfg))
        started = time.perf_counter()
        kin, ref = trajectory(scenario, 60.0, args.hours, args.initial_field)
        _, coarse = trajectory(scenario, 1800.0, args.hours, args.initial_field)
        print(f"{name}: {len(scenario.population)} cells on {args.shape}^3, initial field {args.initial_field} "
              f"({time.perf_counter() - started:.0f} s)")
        print(f"{'t (h)':>6}{'max c_ref (pM)':>16}{'coupled dt=1800':>17}{'quasi-steady':>14}")
        for h, ((c_ref, r_ref), (c, _)) in enumerate(zip(ref, coarse), start=1):
            steady, _ = steady_field(scenario.grid, coefficients_at(scenario.coefficients, kin, r_ref, h * HOUR),
                                     options=scenario.settings.numerics.options)
            top = float(jnp.max(c_ref))
            error = lambda x: f"{float(jnp.max(jnp.abs(x - c_ref))) / top:.2%}" if top > 0 else "-"  # noqa: E731
            print(f"{h:>6}{top:>16.4g}{error(c):>17}{error(steady):>14}")


if __name__ == "__main__":
    main()
