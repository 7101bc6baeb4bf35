"""il2rd's benchmark suite: one command, results as JSON + markdown (+ the scaling plot).

    python benchmarks/run.py                # full CPU suite (about 10 minutes on 2 cores)
    python benchmarks/run.py --quick        # smoke run, small lattices (about a minute)
    python benchmarks/run.py --gpu          # include 256^3 in the steady section (default on a GPU)
    python benchmarks/run.py --sections stencil steady --out DIR

Sections (each module's docstring states exactly what it measures):
  stencil      memory bandwidth (copy, triad) and the explicit step's voxel updates/s vs roofline
  steady       time to a steady field vs SciPy CG / direct / Newton-CG, py-pde, il2rd's own
               transient solvers run to steady state
  transient    simulated seconds per wall second, il2rd implicit/explicit vs py-pde
  scaling      steady solve time and peak memory vs lattice size and cell count (subprocesses)
and what a user waits for, each its own script in a subprocess (they compose il2rd's config, so
they need hydra-core, which the sections above do not):
  run          the default `il2rd` run, whole process: empty, warm and no compilation cache (default_run.py)
  attribution  the source attribution against the steady solve, warm (attribution_time.py)
  sweep        batched vs one at a time vs one process per point (sweep_throughput.py)
  days         three days of the default node with cells that move, divide and die (tissue_days.py)
  node_sweep   256 points of the default node in one batched command: time, peak memory (default_sweep.py;
               about 15 minutes on 2 cores, 4 points with --quick)
Writes OUT/<tag>.json, OUT/<tag>.md and OUT/<tag>_scaling.png, tag = quick | cpu | gpu; the
markdown opens with issue 17's targets, measured, met or missed and by how much.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

# SciPy's CG spends its time in BLAS-1 dots and axpys; multithreaded OpenBLAS made it 2.6x slower
# on the 2-core development machine (1.61 s vs 0.62 s, 128^3 float64), so the peers get their
# faster single-threaded BLAS unless the caller sets these
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

import common  # noqa: E402  (enables float64 in JAX)
import report  # noqa: E402

SECTIONS = ("stencil", "steady", "transient", "scaling", "run", "attribution", "sweep", "days", "node_sweep")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small lattices, one repeat: a smoke run")
    p.add_argument("--gpu", action="store_true", help="include 256^3 in the steady section (automatic when JAX runs on a GPU)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--repeats", type=int, default=None, help="warm repeats per timing (default 3; 1 with --quick)")
    p.add_argument("--tag", default=None, help="file name stem (default quick | cpu | gpu)")
    p.add_argument("--no-pypde", action="store_true", help="skip py-pde rows")
    p.add_argument("--budget-s", type=float, default=None, help="skip the sections (and steady sizes) that would start after this many seconds")
    args = p.parse_args(argv)

    on_gpu = jax.default_backend() == "gpu"
    big = args.gpu or on_gpu
    quick = args.quick
    repeats = args.repeats or (1 if quick else 3)
    tag = args.tag or ("quick" if quick else ("gpu" if on_gpu else "cpu"))
    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()
    res = dict(mode=("quick smoke run" if quick else "full suite") + (" on GPU" if on_gpu else " on CPU"),
               command="python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]) if argv is None else "run.main",
               machine=common.machine(), notes=[])
    common.log(f"machine: {res['machine']['cpu']}, {res['machine']['cores']} cores, GPU {res['machine']['gpu'] or 'none'}, "
               f"jax {res['machine']['versions']['jax']} ({jax.default_backend()})")
    pypde = not args.no_pypde
    if quick:
        common.QUIET_TIMEOUT_S = 1.0
    section_s = res["section_wall_s"] = {}

    def save():
        res["wall_s"] = time.perf_counter() - t_start
        common.dump(res, os.path.join(args.out, f"{tag}.json"))
        with open(os.path.join(args.out, f"{tag}.md"), "w") as f:
            f.write(report.markdown(res))

    def want(name):
        return name in args.sections and within_budget(name)

    def within_budget(name):
        used = time.perf_counter() - t_start
        if args.budget_s and used > args.budget_s:
            res["notes"].append(f"section {name} skipped: the time budget of {args.budget_s:.0f} s was used up ({used:.0f} s)")
            common.log(res["notes"][-1])
            return False
        return True

    def done(name, t0):
        section_s[name] = time.perf_counter() - t0
        common.log(f"[{name}] {section_s[name]:.0f} s")
        save()  # after every section, so a run cut short keeps what it measured

    if want("stencil"):
        t0 = time.perf_counter()
        import stencil

        res["stencil"] = stencil.run(quick, repeats=max(repeats, 2))
        done("stencil", t0)
    if want("steady"):
        t0 = time.perf_counter()
        import steady

        if quick:
            sizes = (32,)
        elif on_gpu:
            sizes = (64, 128, 256)  # the direct solve (32^3 only) is a CPU row
        else:
            sizes = (32, 64, 128, 256) if big else (32, 64, 128)
        res["steady_problem"] = steady.__doc__.split("\n\n", 1)[1].strip()
        res["steady"] = []
        for n in sizes:
            if n != sizes[0] and not within_budget(f"steady {n}^3"):
                continue
            res["steady"].append(steady.run_size(n, repeats=repeats, direct_max=0 if quick else 32, with_pypde=pypde,
                                                 scipy_repeats=1 if (quick or n >= 256) else 3,
                                                 implicit_dts=(10.0,) if quick else steady.IMPLICIT_DT,
                                                 profile_sizes=(sizes[-1],) if (quick or on_gpu) else (128,)))
            save()
        done("steady", t0)
    if want("transient"):
        t0 = time.perf_counter()
        import transient

        res["transient"] = transient.run(32 if quick else (256 if on_gpu else 128), interval_s=60.0 if quick else 120.0,
                                         repeats=repeats, with_pypde=pypde)
        done("transient", t0)
    if want("scaling"):
        t0 = time.perf_counter()
        import scaling

        if quick:
            sizes, cells, cells_n = (16, 32, 48), (1000, 10000), 32
        elif on_gpu:
            sizes, cells, cells_n = (64, 128, 256, 384), (1e4, 1e5, 1e6, 1e7), 256
        else:
            sizes, cells, cells_n = (32, 64, 128, 256), (1e3, 1e4, 1e5, 1e6), 128
        res["scaling"] = scaling.run(sizes, [int(k) for k in cells], cells_n, "float32", repeats=1 if quick else 2)
        png = os.path.join(args.out, f"{tag}_scaling.png")
        scaling.plot(res["scaling"], png, f"il2rd steady solve, {res['machine']['cpu']}, {res['machine']['jax_backend']}")
        res["plot"] = os.path.basename(png)
        done("scaling", t0)

    here = os.path.dirname(os.path.abspath(__file__))

    def script(name: str, *script_args: str) -> dict | None:
        """benchmarks/<name> in its own process, its JSON result (None, with a note, if it failed)."""
        with tempfile.TemporaryDirectory() as tmp:
            found = os.path.join(tmp, "result.json")
            command = [sys.executable, os.path.join(here, name), *(a.replace("{json}", found).replace("{dir}", tmp) for a in script_args)]
            done_ = subprocess.run(command, capture_output=True, text=True)
            if done_.returncode != 0 or not os.path.exists(found):
                res["notes"].append(f"{name} failed (exit {done_.returncode}): {done_.stderr.strip().splitlines()[-1:]}")
                common.log(res["notes"][-1])
                return None
            with open(found) as f:
                return json.load(f)

    if want("run"):
        t0 = time.perf_counter()
        res["default_run"] = script("default_run.py", "--out", "{dir}", "--json", "{json}")
        done("run", t0)
    if want("attribution"):
        t0 = time.perf_counter()
        res["attribution"] = script("attribution_time.py", "--json", "{json}", *(["--quick"] if quick else []))
        done("attribution", t0)
    if want("sweep"):
        t0 = time.perf_counter()
        size = ["--points", "8", "--size", "32", "--batch-size", "4", "--process-points", "2"] if quick else []
        res["sweep"] = script("sweep_throughput.py", "--json", "{json}", *size)
        done("sweep", t0)
    if want("days"):
        t0 = time.perf_counter()
        res["days"] = script("tissue_days.py", "--out", "{dir}", "--json", "{json}", *(["--quick"] if quick else []))
        done("days", t0)
    if want("node_sweep"):
        t0 = time.perf_counter()
        res["node_sweep"] = script("default_sweep.py", "--json", "{json}", *(["--points", "4"] if quick else []))
        done("node_sweep", t0)

    res["hydra_or_omegaconf_imported"] = any(m in sys.modules for m in ("hydra", "omegaconf"))
    save()
    common.log(f"wrote {args.out}/{tag}.json, {tag}.md" + (f", {res['plot']}" if res.get("plot") else "") + f" in {res['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
