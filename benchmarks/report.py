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


def targets(res: dict) -> list[dict]:
    """The issue's targets against this run's numbers."""
    out = []
    on_gpu = res["machine"].get("jax_backend") == "gpu"
    st = res.get("stencil")
    if st:
        need = 0.5 if on_gpu else 0.4
        largest = max(r["n"] for r in st["explicit"])
        for r in st["explicit"]:
            if r["n"] == largest:
                f = r["fraction_of_roofline"]
                lo = r.get("fraction_of_lower_bandwidth", f)
                shown = f"{f:.0%}" + (f" ({lo:.0%} vs the lower bandwidth)" if lo > 1.05 * f else "")
                out.append(dict(target=f"explicit step >= {need:.0%} of roofline ({largest}^3 {r['dtype']})", measured=shown,
                                met=f >= need, factor=need / f))
    for size in res.get("steady", []):
        rows = size["rows"]
        if on_gpu and size["n"] == 256:
            r = _find(rows, "il2rd steady_field", "nonlinear", "float32")
            if r:
                out.append(dict(target="256^3 steady field < 100 ms on a GPU (float32)", measured=_time(r["seconds"]), met=r["seconds"] < 0.1,
                                factor=r["seconds"] / 0.1))
        if size["n"] == 128:
            best = min((r for r in rows if r["solver"].startswith("SciPy CG") and r["dtype"] == "float64"), key=lambda r: r["seconds"], default=None)
            for label, mine in (("il2rd PCG float64 (like for like)", _find(rows, "il2rd PCG", "linear", "float64")),
                                ("il2rd steady_field float32 nonlinear (default run)", _find(rows, "il2rd steady_field", "nonlinear", "float32"))):
                if best and mine:
                    x = best["seconds"] / mine["seconds"]
                    out.append(dict(target=f">= 10x faster than SciPy CG at 128^3: {label} vs {best['solver']} float64",
                                    measured=f"{x:.2f}x", met=x >= 10, factor=10 / x))
    tr = res.get("transient")
    if tr:
        py = _find(tr["rows"], "py-pde")
        if py:
            for r in tr["rows"]:
                if r["solver"].startswith("il2rd") and ("dt 60" not in r["solver"]):
                    x = r["sim_s_per_wall_s"] / py["sim_s_per_wall_s"]
                    out.append(dict(target=f">= 4x py-pde transient throughput at {tr['n']}^3: {r['solver']} {r['dtype']}", measured=f"{x:.2f}x",
                                    met=x >= 4, factor=4 / x))
    sc = res.get("scaling")
    if sc and sc["exponents"].get("time_vs_voxels_from_64") is not None:
        e = sc["exponents"]["time_vs_voxels_from_64"]
        out.append(dict(target="steady time ~ N^e with e <= 1.1 (fixed rtol 1e-6, from 64^3)", measured=f"e = {e:.2f}", met=e <= 1.1, factor=None))
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
        L.append("## Targets (issue 6)\n")
        L.append("| target | measured | met | missed by |")
        L.append("|---|---|---|---|")
        for t in tg:
            miss = "-" if t["met"] or t["factor"] is None else f"{t['factor']:.1f}x"
            L.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} | {miss} |")
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
