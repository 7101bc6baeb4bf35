"""Section a: memory bandwidth of this machine and throughput of il2rd's explicit step.

Bandwidth (median of 5 timed passes: one run here once showed a best-of-3 at 1.8x every other
run's, so the best is not robust on a shared VM), STREAM convention (bytes the kernel names: copy/scale 2 words per element, triad 3;
the extra read of write-allocate caches is not counted), arrays far larger than the last cache:
  numpy copy   np.copyto(b, a), one thread and one thread per core on disjoint chunks
  numpy triad  a = b + s c, blocked so the temporary stays in L1, threads as above
  jax scale    x = s x in place, K times in a jitted fori_loop (all cores / the GPU)
  jax triad    x = y + s x in place, likewise
The roofline is the best of these on the device that runs JAX (on a GPU only the jax kernels
measure device memory).

Explicit step: il2rd.solvers.transient.explicit_step under jit, K steps in one fori_loop, the
coefficients passed as arguments (as il2rd's own advance does). The least memory traffic a step
can have: read c, secretion, v_max, K_M and write c' = 5 arrays x itemsize bytes per voxel.
roofline (voxel updates/s) = bandwidth / (5 x itemsize).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from common import log, scenario, timed, wait_quiet
from il2rd.solvers.transient import explicit_stable_dt, explicit_step

BYTES_ARRAYS_PER_VOXEL = 5  # c, secretion, v_max, K_M read; c' written


def _threads_run(pool, fn, n, nthreads, block):
    step = (n // nthreads // block + 1) * block
    list(pool.map(lambda lo: fn(lo, min(lo + step, n)), range(0, n, step)))


def numpy_bandwidth(n_elements: int, repeats: int, threads: int) -> dict:
    a = np.ones(n_elements)
    b = np.full(n_elements, 2.0)
    c = np.full(n_elements, 3.0)
    block = 1 << 14

    def copy(lo, hi):
        np.copyto(a[lo:hi], b[lo:hi])

    def triad(lo, hi):
        tmp = np.empty(block)
        for i in range(lo, hi, block):
            j = min(i + block, hi)
            t = tmp[: j - i]
            np.multiply(c[i:j], 3.0, out=t)
            np.add(t, b[i:j], out=a[i:j])

    out = {}
    for nt in sorted({1, threads}):
        with ThreadPoolExecutor(nt) as pool:
            for name, fn, words in (("copy", copy, 2), ("triad", triad, 3)):
                _threads_run(pool, fn, n_elements, nt, block)  # warm (page faults)
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    _threads_run(pool, fn, n_elements, nt, block)
                    times.append(time.perf_counter() - t0)
                out[f"numpy {name} ({nt} thread{'s' if nt > 1 else ''})"] = words * n_elements * 8 / float(np.median(times)) / 1e9
    return out


def jax_bandwidth(n_elements: int, repeats: int, loops: int) -> dict:
    out = {}
    x = jnp.ones(n_elements, jnp.float32)
    y = jnp.full(n_elements, 0.5, jnp.float32)
    scale = jax.jit(lambda x, s: jax.lax.fori_loop(0, loops, lambda i, x: x * s, x), donate_argnums=0)
    triad = jax.jit(lambda x, y, s: jax.lax.fori_loop(0, loops, lambda i, x: y + s * x, x), donate_argnums=0)
    for name, f, extra, words in (("scale", scale, (), 2), ("triad", triad, (y,), 3)):  # f(x, *extra, s)
        s = jnp.float32(0.999)
        x = jax.block_until_ready(f(x, *extra, s))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            x = jax.block_until_ready(f(x, *extra, s))
            times.append(time.perf_counter() - t0)
        out[f"jax {name} (in place, {jax.default_backend()})"] = words * n_elements * 4 * loops / float(np.median(times)) / 1e9
    return out


def explicit_throughput(n: int, dtype, repeats: int, target_updates: float) -> dict:
    grid, coef = scenario(n, dtype)
    dt = jnp.asarray(explicit_stable_dt(grid, coef), dtype)
    steps = int(max(5, min(5000, round(target_updates / n**3))))

    @jax.jit
    def run(c, coef, dt):
        return jax.lax.fori_loop(0, steps, lambda i, c: explicit_step(c, grid, coef, dt), c)

    c0 = jnp.zeros(grid.shape, dtype)
    wait_quiet(timeout=20)
    t, _ = timed(run, c0, coef, dt, repeats=repeats)
    itemsize = jnp.dtype(dtype).itemsize
    updates = steps * n**3 / t["best_s"]
    return dict(
        n=n, dtype=jnp.dtype(dtype).name, steps=steps, seconds=t["best_s"], compile_s=t["compile_s"],
        ms_per_step=t["best_s"] / steps * 1e3, voxel_updates_per_s=updates,
        effective_GBps=updates * BYTES_ARRAYS_PER_VOXEL * itemsize / 1e9,
        working_set_MB=BYTES_ARRAYS_PER_VOXEL * itemsize * n**3 / 2**20,
    )


def run(quick: bool, repeats: int) -> dict:
    on_gpu = jax.default_backend() == "gpu"
    if quick:
        n_bw, sizes = 1 << 24, (32, 64)  # 128 MB float64 arrays
    else:
        n_bw, sizes = (1 << 28 if on_gpu else 1 << 26), (64, 128, 256)
    log(f"[stencil] bandwidth on {n_bw * 8 / 2**20:.0f} MB arrays")
    wait_quiet(timeout=20)
    bw = {}
    try:
        import os

        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    except Exception:  # noqa: BLE001
        threads = 1
    bw.update(numpy_bandwidth(n_bw, repeats=5, threads=threads))
    bw.update(jax_bandwidth(2 * n_bw, repeats=5, loops=50 if on_gpu else 5))
    rows = []
    target = 2e9 if on_gpu else 2.5e8
    for n in sizes:
        for dtype in (jnp.float32, jnp.float64):
            rows.append(explicit_throughput(n, dtype, repeats, target))
    # the same kernels again after the steps: on the shared development VM the bandwidth moved
    # between ~65 and ~120 GB/s from one run to the next, so the roofline is the higher of the
    # two measurements (a conservative fraction) and their spread is reported
    after = jax_bandwidth(2 * n_bw, repeats=5, loops=50 if on_gpu else 5)
    if not on_gpu:
        after.update({k: v for k, v in numpy_bandwidth(n_bw, repeats=5, threads=threads).items() if "threads" in k})
    device = lambda d: {k: v for k, v in d.items() if k.startswith("jax") or not on_gpu}  # noqa: E731
    before_best, after_best = max(device(bw).values()), max(device(after).values())
    roof = max(before_best, after_best)
    best_name = max(device(bw), key=device(bw).get) if before_best >= after_best else max(device(after), key=device(after).get) + " (after)"
    spread = roof / min(before_best, after_best)
    for k, v in bw.items():
        log(f"  {k:<34} {v:7.1f} GB/s" + (f"   after the steps {after[k]:7.1f}" if k in after else ""))
    for r in rows:
        itemsize = jnp.dtype(r["dtype"]).itemsize
        r["roofline_voxel_updates_per_s"] = roof * 1e9 / (BYTES_ARRAYS_PER_VOXEL * itemsize)
        r["fraction_of_roofline"] = r["voxel_updates_per_s"] / r["roofline_voxel_updates_per_s"]
        r["fraction_of_lower_bandwidth"] = r["fraction_of_roofline"] * spread
        log(f"  explicit step {r['n']}^3 {r['dtype']}: {r['voxel_updates_per_s'] / 1e9:.3f} Gvox/s "
            f"({r['fraction_of_roofline']:.0%} of roofline), compile {r['compile_s']:.2f} s")
    return dict(bandwidth_GBps=bw, bandwidth_after_GBps=after, roofline_GBps=roof, roofline_source=best_name, bandwidth_spread=spread,
                bytes_per_voxel_model="5 arrays x itemsize (read c, secretion, v_max, K_M; write c')",
                explicit=rows)
