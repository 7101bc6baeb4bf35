"""Shared pieces of the benchmark suite: the scenarios, the timer, the machine description.

Imports only il2rd modules that do not import hydra/omegaconf (grid, kinetics, units, cells,
solvers), so the suite runs where only JAX, numpy and matplotlib are installed (a lent GPU).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from importlib import metadata

import jax

jax.config.update("jax_enable_x64", True)  # float64 runs need it; float32 arrays stay float32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from il2rd import cells
from il2rd.cells import placement
from il2rd.physics import units  # noqa: E402
from il2rd.physics.grid import Grid  # noqa: E402
from il2rd.physics.kinetics import FieldCoefficients  # noqa: E402

SPACING_UM = 10.0
DIFFUSION = 10.0  # um^2/s
DECAY = 2.8e-5  # 1/s
SOURCE_RATE = 10.0  # molecules/s per producer
CONSUMER_VMAX_MOLECULES = 1.1e-3 * 2e4  # k_int R, molecules/s (Treg-like, 2e4 receptors)
KM = 43.0  # pM


# ----------------------------------------------------------------------------------- scenarios
def scenario(n: int, dtype, seed: int = 0, spacing_um: float = SPACING_UM, uptake: str = "saturating"):
    """The steady-time scenario: n^3 voxels of 10 um, zero-flux faces, 1 % of voxels secrete
    10 molecules/s, 20 % take up IL-2 with v_max = k_int R (R = 2e4) and K_M = 43 pM."""
    grid = Grid((n, n, n), spacing_um)
    u = np.random.default_rng(seed).random(grid.shape)
    volume = grid.voxel_volume_um3
    secretion = np.where(u < 0.01, units.cell_rate_to_voxel_rate_pM_per_s(SOURCE_RATE, volume), 0.0)
    vmax = np.where((u >= 0.01) & (u < 0.21), units.cell_rate_to_voxel_rate_pM_per_s(CONSUMER_VMAX_MOLECULES, volume), 0.0)
    a = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    coef = FieldCoefficients(a(DIFFUSION), a(DECAY), a(secretion), a(vmax), a(np.where(vmax > 0, KM, 1.0)), a(np.zeros(6)), uptake=uptake)
    return grid, coef


CELL_TYPES = {
    "producer": cells.CellType("producer", secretion_molecules_per_s=SOURCE_RATE, receptors=0.0, km_pM=KM),
    "treg": cells.CellType("treg", receptors=2e4, km_pM=KM, k_int_per_s=1.1e-3),
}


def cells_scenario(n: int, n_cells: int, dtype, seed: int = 0, return_population: bool = False):
    """n_cells cells placed by il2rd.cells.placement.place_random on n^3 voxels, producers : Treg-like
    consumers = 1 : 20 (the scenario's ratio), coefficients by il2rd.cells.field_coefficients."""
    grid = Grid((n, n, n), SPACING_UM)
    n_src = max(1, round(n_cells / 21))
    requests = [("producer", n_src, placement.Region()), ("treg", n_cells - n_src, placement.Region())]
    population = placement.place_random(grid, requests, ("producer", "treg"), seed)
    point_sinks = cells.coupling_of(grid, population, CELL_TYPES, DIFFUSION, 1.0, "saturating", dtype, closure=False)
    coef = cells.field_coefficients(grid, population, CELL_TYPES, DIFFUSION, DECAY, np.zeros(6), point_sinks, dtype)
    return (grid, coef, population) if return_population else (grid, coef)


# -------------------------------------------------------------------------------------- timing
def block(x):
    return jax.block_until_ready(x)


def timed(fn, *args, repeats: int = 3, warmup: bool = True, **kwargs) -> tuple[dict, object]:
    """Call fn once to warm up (compilation; its time reported as first_s, and first_s - best_s
    as compile_s), then `repeats` times; best_s is the fastest warm call. Every call ends with
    block_until_ready. warmup=False (host code with nothing to compile, e.g. SciPy): `repeats`
    calls in all, the first one among the candidates for best_s."""
    times = []
    first = None
    if warmup:
        t0 = time.perf_counter()
        out = block(fn(*args, **kwargs))
        first = time.perf_counter() - t0
    for _ in range(max(repeats, 0 if warmup else 1)):
        t0 = time.perf_counter()
        out = block(fn(*args, **kwargs))
        times.append(time.perf_counter() - t0)
    best = min(times) if times else first
    compile_s = max(first - best, 0.0) if (warmup and times) else None
    return dict(best_s=best, first_s=first, compile_s=compile_s, times_s=times), out


def busy_fraction(interval: float = 0.3) -> float:
    """Fraction of all CPU time spent non-idle over `interval` seconds (Linux /proc/stat),
    i.e. what other processes use before a measurement starts; nan elsewhere."""
    try:
        def read():
            with open("/proc/stat") as f:
                v = list(map(int, f.readline().split()[1:]))
            return sum(v), v[3] + v[4]

        t0, i0 = read()
        time.sleep(interval)
        t1, i1 = read()
        return 1.0 - (i1 - i0) / max(t1 - t0, 1)
    except OSError:
        return float("nan")


QUIET_TIMEOUT_S = 20.0  # run.py lowers it for --quick


def wait_quiet(limit: float = 0.15, timeout: float | None = None) -> float:
    """Wait (up to timeout s, default QUIET_TIMEOUT_S) until other processes use less than
    `limit` of the CPUs; return the last busy fraction seen. The timings of a shared machine
    are only as good as this."""
    timeout = QUIET_TIMEOUT_S if timeout is None else min(timeout, QUIET_TIMEOUT_S)
    t = time.time()
    b = busy_fraction()
    while b > limit and time.time() - t < timeout:
        b = busy_fraction()
    return b


def peak_rss_mb() -> float:
    """This process's peak resident set size (MB): VmHWM of /proc/self/status on Linux (ru_maxrss
    there carries the parent's high-water mark across fork+exec, so a worker process started by a
    large parent would report the parent's peak), else ru_maxrss (kB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024.0


def device_peak_mb() -> float | None:
    """Peak bytes in use on the default device (MB) where JAX reports it (GPU), else None."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - CPU backends may not implement it
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20


# ------------------------------------------------------------------------------------- machine
def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """'model name' of /proc/cpuinfo, with family/model and the widest SIMD flag (a VM may
    report only 'AMD EPYC')."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = (x.strip() for x in line.split(":", 1))
                    info.setdefault(k, v)
                elif info:
                    break
    except OSError:
        return platform.processor() or platform.machine()
    flags = info.get("flags", "").split()
    simd = next((f for f in ("avx512f", "avx2", "sse4_2", "asimd") if f in flags), None)
    extra = [f"family {info['cpu family']} model {info['model']}" if "cpu family" in info else None, simd]
    name = info.get("model name") or platform.processor() or platform.machine()
    return name + (" (" + ", ".join(e for e in extra if e) + ")" if any(extra) else "")


def gpu_models() -> list[str]:
    models = [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    if not models:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            if out.returncode == 0:
                models = [f"{line.strip()} (not used by JAX)" for line in out.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    return models


def memory_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def l3_cache() -> str | None:
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size") as f:
            return f.read().strip()
    except OSError:
        return None


def machine() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return dict(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        cpu=cpu_model(),
        cores=os.cpu_count(),
        cores_usable=usable,
        l3_cache=l3_cache(),
        memory_gib=memory_total_gib(),
        gpu=gpu_models(),
        jax_backend=jax.default_backend(),
        jax_devices=[f"{d.platform}:{d.device_kind}" for d in jax.devices()],
        python=platform.python_version(),
        versions={k: _version(k) for k in ("il2rd", "jax", "jaxlib", "numpy", "scipy", "py-pde", "numba", "matplotlib")},
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        blas_threads=os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        busy_fraction_at_start=busy_fraction(),
    )


def dump(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=_jsonable)


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if hasattr(x, "dtype") and hasattr(x, "shape") and x.shape == ():
        return np.asarray(x).item()
    return str(x)


def log(*a):
    print(*a, flush=True, file=sys.stderr)
