"""The markdown table of a results JSON (run.py writes both; `python benchmarks/report.py FILE.json`
rewrites the markdown from a JSON)."""

from __future__ import annotations

import json
import sys


def _f(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1000 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def _time(s):
    if s is None:
        return "-"
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _find(rows, solver, problem=None, dtype=None):
    for r in rows:
        if r["solver"].startswith(solver) and (problem is None or r.get("problem") == problem) and (dtype is None or r["dtype"] == dtype):
            return r
    return None


def steady_ratios(size: dict) -> list[tuple[str, float | None]]:
    rows = size["rows"]
    out = []

    def ratio(label, mine, peer):
        if mine and peer and mine.get("seconds") and peer.get("seconds"):
            out.append((label, peer["seconds"] / mine["seconds"], mine["seconds"], peer["seconds"]))

    for dt in ("float64", "float32"):
        ratio(f"il2rd PCG vs SciPy CG Jacobi, linear, both {dt}", _find(rows, "il2rd PCG", "linear", dt), _find(rows, "SciPy CG (Jacobi)", "linear", dt))
        ratio(f"il2rd PCG vs SciPy CG plain, linear, both {dt}", _find(rows, "il2rd PCG", "linear", dt),
              _find(rows, "SciPy CG (no", "linear", dt))
    best_scipy = min((r for r in rows if r["solver"].startswith("SciPy CG") and r["dtype"] == "float64"), key=lambda r: r["seconds"], default=None)
    for dt in ("float32", "float64"):
        ratio(f"il2rd steady_field nonlinear {dt} vs best SciPy CG float64 on the linearisation",
              _find(rows, "il2rd steady_field", "nonlinear", dt), best_scipy)
        ratio(f"il2rd steady_field nonlinear {dt} vs SciPy Newton-CG float64 (same problem)", _find(rows, "il2rd steady_field", "nonlinear", dt),
              _find(rows, "SciPy Newton-CG"))
    ratio("il2rd PCG float64 vs SciPy direct float64, linear", _find(rows, "il2rd PCG", "linear", "float64"), _find(rows, "SciPy direct"))
    for dt in ("float32", "float64"):
        ratio(f"il2rd steady_field {dt} vs py-pde forward Euler to steady", _find(rows, "il2rd steady_field", "nonlinear", dt),
              _find(rows, "py-pde"))
    ratio("il2rd explicit float64 vs py-pde explicit (same scheme, dt, steps)", _find(rows, "il2rd explicit", "nonlinear", "float64"),
          _find(rows, "py-pde"))
    for dt in ("float32", "float64"):
        mine = _find(rows, "il2rd steady_field", "nonlinear", dt)
        ratio(f"il2rd steady_field {dt} vs il2rd explicit to steady", mine, _find(rows, "il2rd explicit", "nonlinear", dt))
        ratio(f"il2rd steady_field {dt} vs il2rd implicit (dt 10 s) to steady", mine, _find(rows, "il2rd implicit Euler to steady (dt 10", "nonlinear", dt))
    return out


def _target(out, target, measured, met, factor=None):
    out.append(dict(target=target, measured=measured, met=met, factor=factor))


def targets(res: dict) -> list[dict]:
    """Issue 17's targets against this run's numbers; a target this run did not measure is listed
    with the reason, never dropped. factor: how many times too slow (or too low) a missed one is."""
    out = []
    on_gpu = res["machine"].get("jax_backend") == "gpu"
    absent = lambda target, why: _target(out, target, why, None)  # noqa: E731  (met None: not measured)

    runs = (res.get("default_run") or {}).get("runs")
    for name, limit in (("cold", 4.0), ("warm", 2.5)):
        label = f"default run, whole `il2rd` process, {'empty' if name == 'cold' else 'warm'} compilation cache <= {limit:g} s"
        if runs and name in runs:
            t = runs[name]["process_s"]
            _target(out, label, f"{t:.1f} s", t <= limit, t / limit)
        else:
            absent(label, "not measured (section run)")
    at = res.get("attribution")
    label = "attribution <= 2x the steady solve it explains (default scenario, warm)"
    if at:
        _target(out, label, f"{at['ratio']:.2f}x ({_time(at['attribution_s'])} vs {_time(at['solve_s'])}; {at['scenario']})",
                at["ratio"] <= 2, at["ratio"] / 2)
    else:
        absent(label, "not measured (section attribution)")
    sw = res.get("sweep")
    for key, need, what in (("process_per_point_runs_per_s", 10, "one process per point"),
                            ("one_at_a_time_runs_per_s", 3, "one at a time in one process")):
        label = f"sweep of steady points with attribution, batched >= {need}x {what}"
        if sw:
            x = sw["batched_runs_per_s"] / sw[key]
            _target(out, label + f" ({sw['points']} points of {sw['size']}^3)", f"{x:.2f}x", x >= need, need / x)
        else:
            absent(label, "not measured (section sweep)")
    ns = res.get("node_sweep")
    label = "256 points of the default node in one batched command within 24 GiB"
    if ns:
        ok = ns["complete"] == ns["points"] and ns["peak_rss_gib"] <= ns["limit_gib"]
        _target(out, label, f"{ns['points']} points ({ns['complete']} complete): peak {ns['peak_rss_gib']:.1f} GiB, "
                f"{ns['wall_s'] / 60:.1f} min (`{ns['command']}`)", ok if ns["points"] >= 256 else None,
                ns["peak_rss_gib"] / ns["limit_gib"] if not ok else None)
    else:
        absent(label, "not measured (section node_sweep)")
    steady128 = next((size for size in res.get("steady", []) if size["n"] == 128), None)
    jacobi = _find(steady128["rows"], "SciPy CG (Jacobi)", "linear", "float64") if steady128 else None
    for label, need, mine in (("steady 128^3, default precision (float32 nonlinear) vs SciPy Jacobi CG float64", 5,
                               _find(steady128["rows"], "il2rd steady_field", "nonlinear", "float32") if steady128 else None),
                              ("steady 128^3, like for like (il2rd PCG float64 linear) vs SciPy Jacobi CG float64", 4,
                               _find(steady128["rows"], "il2rd PCG", "linear", "float64") if steady128 else None)):
        if jacobi and mine:
            x = jacobi["seconds"] / mine["seconds"]
            _target(out, f"{label} >= {need}x", f"{x:.2f}x", x >= need, need / x)
        else:
            absent(f"{label} >= {need}x", "not measured (section steady at 128^3, with SciPy)")
    sc = res.get("scaling")
    e = sc["exponents"].get("time_vs_voxels_from_64") if sc else None
    if e is not None:
        _target(out, "steady time ~ N^e from 64^3 to the largest lattice, e <= 1.05", f"e = {e:.2f}", e <= 1.05)
    else:
        absent("steady time ~ N^e from 64^3, e <= 1.05", "not measured (section scaling)")
    st = res.get("stencil")
    need = 0.5 if on_gpu else 0.4
    if st:
        largest = max(r["n"] for r in st["explicit"])
        for r in st["explicit"]:
            if r["n"] == largest:
                f = r["fraction_of_roofline"]
                _target(out, f"explicit step >= {need:.0%} of the memory roofline ({largest}^3 {r['dtype']})", f"{f:.0%}",
                        f >= need, need / f)
    else:
        absent(f"explicit step >= {need:.0%} of the memory roofline", "not measured (section stencil)")
    tr = res.get("transient")
    py = _find(tr["rows"], "py-pde") if tr else None
    implicit = [r for r in tr["rows"] if r["solver"].startswith("il2rd implicit") and "dt 10 " in r["solver"] + " "] if tr else []
    for r in implicit:
        if py:
            x = r["sim_s_per_wall_s"] / py["sim_s_per_wall_s"]
            _target(out, f"implicit stepping at dt = 10 s >= 4x py-pde ({tr['n']}^3 {r['dtype']})", f"{x:.2f}x", x >= 4, 4 / x)
    if not (implicit and py):
        absent("implicit stepping at dt = 10 s >= 4x py-pde", "not measured (section transient with py-pde)")
    days = res.get("days")
    label = "three days of the default node, cells moving, dividing, dying <= 20 min"
    if days:
        node = "x".join(map(str, days["shape"]))
        _target(out, label + f" ({node})", f"{days['three_days_s'] / 60:.1f} min (extrapolated from timed steps)",
                days["three_days_s"] <= 1200, days["three_days_s"] / 1200)
    else:
        absent(label, "not measured (section days)")
    gpu_targets = ("256^3 steady field < 100 ms on a GPU (float32)", "batched sweep >= 20x one at a time on a GPU")
    if on_gpu:
        r = next((_find(size["rows"], "il2rd steady_field", "nonlinear", "float32") for size in res.get("steady", [])
                  if size["n"] == 256), None)
        if r:
            _target(out, gpu_targets[0], _time(r["seconds"]), r["seconds"] < 0.1, r["seconds"] / 0.1)
        else:
            absent(gpu_targets[0], "not measured (section steady at 256^3)")
        if sw:
            x = sw["batched_runs_per_s"] / sw["one_at_a_time_runs_per_s"]
            _target(out, gpu_targets[1], f"{x:.2f}x", x >= 20, 20 / x)
        else:
            absent(gpu_targets[1], "not measured (section sweep)")
    else:
        for t in gpu_targets:
            absent(t, "not measured: no GPU in this run")
    return out


def markdown(res: dict) -> str:
    m = res["machine"]
    v = m["versions"]
    L = []
    L.append(f"# il2rd benchmark results ({res['mode']})\n")
    L.append(f"- date: {m['date']}; command: `{res['command']}`; suite wall time {res.get('wall_s', 0):.0f} s")
    L.append(f"- CPU: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), L3 {m['l3_cache']}, memory {_f(m['memory_gib'])} GiB")
    L.append(f"- GPU: {', '.join(m['gpu']) or 'none'}; JAX backend {m['jax_backend']} ({', '.join(m['jax_devices'])})")
    L.append("- versions: python " + m["python"] + ", " + ", ".join(f"{k} {val}" for k, val in v.items() if val))
    L.append(f"- machine busy before start (other processes): {_f(m['busy_fraction_at_start'])}; XLA_FLAGS `{m['xla_flags']}`; "
             f"OPENBLAS_NUM_THREADS {m.get('blas_threads', 'default')} (SciPy's BLAS)")
    L.append("- every time: best of the warm repeats (first call excluded, reported as compile), block_until_ready; ratios = peer time / il2rd time (> 1: il2rd faster)\n")

    tg = targets(res)
    if tg:
        L.append("## Targets (issue 17)\n")
        L.append("| target | measured | met | missed by |")
        L.append("|---|---|---|---|")
        for t in tg:
            miss = "-" if t["met"] or t["factor"] is None else f"{t['factor']:.1f}x"
            met = "-" if t["met"] is None else ("yes" if t["met"] else "**no**")
            L.append(f"| {t['target']} | {t['measured']} | {met} | {miss} |")
        L.append("")

    st = res.get("stencil")
    if st:
        L.append("## a. Memory bandwidth and explicit-step throughput\n")
        after = st.get("bandwidth_after_GBps", {})
        L.append("| kernel (median of 5) | GB/s before the steps | GB/s after |")
        L.append("|---|---|---|")
        for k, val in st["bandwidth_GBps"].items():
            L.append(f"| {k} | {val:.1f} | {_f(after.get(k))} |")
        spread = st.get("bandwidth_spread", 1.0)
        L.append(f"\nRoofline bandwidth: {st['roofline_GBps']:.1f} GB/s ({st['roofline_source']}), the higher of the two "
                 f"measurements (they differ {spread:.2f}x). Bytes per voxel update, minimum: {st['bytes_per_voxel_model']}.\n")
        L.append("| lattice | dtype | steps | ms/step | voxel updates/s | roofline | fraction | (vs lower bandwidth) | effective GB/s | working set | compile |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in st["explicit"]:
            L.append(f"| {r['n']}^3 | {r['dtype']} | {r['steps']} | {r['ms_per_step']:.3f} | {r['voxel_updates_per_s'] / 1e9:.3f} G | "
                     f"{r['roofline_voxel_updates_per_s'] / 1e9:.2f} G | {r['fraction_of_roofline']:.0%} | "
                     f"({r.get('fraction_of_lower_bandwidth', r['fraction_of_roofline']):.0%}) | {r['effective_GBps']:.1f} | "
                     f"{r['working_set_MB']:.0f} MB | {r['compile_s']:.2f} s |")
        L.append(f"\nWorking sets below the L3 ({m['l3_cache']}) run from cache, so their fraction can exceed what DRAM allows.\n")

    if res.get("steady"):
        L.append("## b. Time to a steady field (relative residual 1e-6)\n")
        L.append("```\n" + res.get("steady_problem", "") + "\n```")
        for size in res["steady"]:
            L.append(f"\n### {size['n']}^3\n")
            L.append("| solver | problem | dtype | time | compile | Newton | CG | steps | residual (own) | residual f64 (SciPy A) | converged |")
            L.append("|---|---|---|---|---|---|---|---|---|---|---|")
            for r in size["rows"]:
                L.append(f"| {r['solver']} | {r['problem']} | {r['dtype']} | {_time(r['seconds'])} | {_time(r.get('compile_s'))} | "
                         f"{_f(r.get('newton'))} | {_f(r.get('cg'))} | {_f(r.get('steps'))} | {_f(r.get('residual'), 2)} | "
                         f"{_f(r.get('residual_f64'), 2)} | {_f(r.get('converged'))} |")
            rat = steady_ratios(size)
            if rat:
                L.append("\n| comparison | il2rd | peer | ratio |")
                L.append("|---|---|---|---|")
                for label, x, mine, peer in rat:
                    L.append(f"| {label} | {_time(mine)} | {_time(peer)} | {x:.2f}x |")
            prof = size.get("profile") or []
            if prof:
                L.append("\nPer-iteration profile (one application each, best of repeats):\n")
                L.append("| dtype | kernel | time | vs il2rd matvec |")
                L.append("|---|---|---|---|")
                for pr in prof:
                    mv = pr.get("matvec (apply_jacobian)")
                    for k, val in pr.items():
                        if isinstance(val, float):
                            L.append(f"| {pr['dtype']} | {k} | {val * 1e3:.2f} ms | {val / mv:.1f}x |")
                    for solver in ("il2rd PCG (multigrid", "il2rd PCG (mean", "SciPy CG (Jacobi)", "SciPy CG (no"):
                        row = _find(size["rows"], solver, "linear", pr["dtype"])
                        if row and row.get("cg"):  # solve time / iterations
                            L.append(f"| {pr['dtype']} | {row['solver']} iteration | {row['seconds'] / row['cg'] * 1e3:.2f} ms | "
                                     f"{row['seconds'] / row['cg'] / mv:.1f}x |")
            for note in size["notes"]:
                L.append(f"\n- {note}")
        L.append("")

    tr = res.get("transient")
    if tr:
        L.append(f"## c. Transient throughput at {tr['n']}^3 ({tr['interval_s']:g} simulated s from c = 0)\n")
        py = _find(tr["rows"], "py-pde")
        L.append("| solver | dtype | dt | steps | wall | compile | simulated s / wall s | vs py-pde |")
        L.append("|---|---|---|---|---|---|---|---|")
        for r in tr["rows"]:
            x = f"{r['sim_s_per_wall_s'] / py['sim_s_per_wall_s']:.2f}x" if py else "-"
            L.append(f"| {r['solver']} | {r['dtype']} | {r['dt_s']:.3g} s | {r['steps']} | {_time(r['seconds'])} | {_time(r.get('compile_s'))} | "
                     f"{r['sim_s_per_wall_s']:.1f} | {x} |")
        for note in tr["notes"]:
            L.append(f"\n- {note}")
        L.append("")

    sc = res.get("scaling")
    if sc:
        L.append(f"## d. Scaling of the steady solve ({sc['dtype']}, rtol {sc['rtol']:g})\n")
        L.append("| case | voxels | cells | setup | solve | compile | Newton | CG | peak RSS | baseline RSS | device peak | converged |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in sc["by_size"] + sc["by_cells"]:
            if "seconds" not in r:
                L.append(f"| {r['kind']} {r['n']}^3 | - | {r.get('cells')} | error: {r.get('error', '')[:80]} |||||||||")
                continue
            L.append(f"| {r['kind']} {r['n']}^3 | {r['voxels']:.3g} | {r['cells'] or '-'} | {_time(r['setup_s'])} | {_time(r['seconds'])} | "
                     f"{_time(r['compile_s'])} | {r['newton']} | {r['cg']} | {r['peak_rss_MB']:.0f} MB | {r['baseline_rss_MB']:.0f} MB | "
                     f"{_f(r['device_peak_MB'])} | {_f(r['converged'])} |")
        e = sc["exponents"]
        L.append("\nFitted exponents (log-log least squares): " + ", ".join(f"{k} = {val:.2f}" for k, val in e.items() if val is not None))
        if res.get("plot"):
            L.append(f"\n![scaling]({res['plot']})")
        L.append("")
    if res.get("notes"):
        L.append("## Notes\n")
        for note in res["notes"]:
            L.append(f"- {note}")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        res = json.load(f)
    print(markdown(res))
