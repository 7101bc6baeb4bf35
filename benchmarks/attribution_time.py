"""The source attribution against the steady solve it explains (issue 17: at most 2x), warm.

Builds the default scenario (`il2rd` with no arguments: the 128^3 T zone, 1.47 million cells;
`--quick`: 32^3), solves its steady field and attributes it in one process, then times both warm
(best of --repeats; compilation apart, from the first call): `steady_field` and
`attribution.attribute`, whose parts are the type shares (one global solve per source type) and
the autocrine part (exact global solves where few cells secrete, else window solves around each
secreting cell: autocrine.py).

    python benchmarks/attribution_time.py [--quick] [--repeats 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

QUICK = ["grid.shape=[32,32,32]"]


def best_of(fn, repeats: int) -> tuple[float, float]:
    """(first call's seconds, the best warm call's seconds)."""
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - started)
    return times[0], min(times[1:])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    from il2rd import api, config
    from il2rd.analysis.attribution import attribute
    from il2rd.scenario import Scenario
    from il2rd.solvers.steady import steady_field

    settings = config.parse(api.compose(*(QUICK if args.quick else [])))
    jax.config.update("jax_enable_x64", settings.numerics.precision == "float64")
    sc = Scenario.build(settings)
    field = lambda: steady_field(sc.grid, sc.coefficients, options=settings.numerics.options)[0]  # noqa: E731
    solve_first, solve_s = best_of(field, args.repeats)
    c = field()
    attribution_first, attribution_s = best_of(lambda: attribute(c, sc, steady=True).by_cell_molecules_per_s, args.repeats)
    last = attribute(c, sc, steady=True)
    result = dict(machine=machine(), scenario="default" + (" (32^3, --quick)" if args.quick else ""),
                  shape=list(sc.grid.shape), cells=len(sc.population), precision=settings.numerics.precision,
                  secreting_cells=int((last.autocrine_molecules_per_s > 0).sum()), autocrine_exact=last.autocrine_exact,
                  solve_s=solve_s, solve_first_s=solve_first, attribution_s=attribution_s,
                  attribution_first_s=attribution_first, ratio=attribution_s / solve_s)
    print(f"{result['scenario']} {tuple(sc.grid.shape)}, {result['cells']} cells: steady solve {solve_s:.3f} s "
          f"(first {solve_first:.2f} s), attribution {attribution_s:.3f} s (first {attribution_first:.2f} s): "
          f"{result['ratio']:.2f}x the solve (target <= 2x)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
