"""Test set-up: float64 is available in every test (as in diffrax's suite); float32 tests ask for
float32 explicitly, so the order in which tests run never changes a dtype.

The float32 tier (tests/float32/) runs the same way users do, with x64 off: test_float32_tier.py
starts it as a separate pytest process with IL2RD_TEST_X64=0 (x64 is a process-wide switch)."""

import atexit
import gc
import os
import shutil
import tempfile

# A JAX compilation cache for the session, one folder per xdist worker, shared with the il2rd
# subprocesses that worker starts (they inherit the environment): most tests compile the same small
# problems, and a command-line test is mostly compilation (a 16x12x8 run: 12.6 s cold, 5.1 s warm).
# Never the user's own cache folder. Per worker, not one for all: JAX writes an entry in place
# (no lock, no rename, unless the cache has a size limit), and with one folder for all workers one
# worker twice computed all-zero fields for the 12x10x8 float64 lattice (CI at stop 22: 3 tests;
# this stop: 1 test in 1 of 4 runs), tests that pass alone and in 3 runs with a folder per worker.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="il2rd-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
if os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("IL2RD_TEST_CACHE_PER_WORKER"):
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(os.environ["JAX_COMPILATION_CACHE_DIR"],
                                                           os.environ["PYTEST_XDIST_WORKER"])
    os.environ["IL2RD_TEST_CACHE_PER_WORKER"] = "1"  # the float32 tier's own pytest keeps its worker's folder
# and locked for each read and write, as il2rd's own cache folder is (compilation.MAX_CACHE_BYTES): a
# worker's subprocesses (the float32 tier, command-line runs, six at once in test_reliability) share it
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 * 2**30))

# Compile with LLVM's optimisation level 0: the suite's time is mostly compilation of small problems,
# and this cuts compilation by about a third and the tests' time by about an eighth, the solves
# being slower (tests/test_attribution.py + test_exact_solutions.py: 135 s -> 117 s on 2 cores). The arithmetic is the same IEEE arithmetic (XLA enables no fast-math at any level);
# the float32 tier (test_float32_tier.py) runs at XLA's default level, exactly as users do.
TEST_XLA_FLAG = "--xla_backend_optimization_level=0"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", "") and not os.environ.get("IL2RD_TEST_KEEP_XLA_FLAGS"):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAG}".strip()
    os.environ["IL2RD_TEST_XLA_FLAG"] = TEST_XLA_FLAG  # what the float32 tier takes out again

import jax  # noqa: E402  (after the cache folder and the flags are in the environment)
import pytest  # noqa: E402

if os.environ.get("IL2RD_TEST_X64", "1") != "0":
    jax.config.update("jax_enable_x64", True)


def pytest_collection_modifyitems(config, items):
    """The longest test (the float32 tier, ~2 min in its own process) first, so that the other
    workers' tests fill the time beside it instead of one worker running it alone at the end."""
    items.sort(key=lambda item: "test_float32_tier" not in item.nodeid)


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject addopts): one worker per core, at most four (each holds ~3-4 GB)."""
    return max(1, min(os.cpu_count() or 1, 4))


# Linux caps a process at vm.max_map_count (65530) memory maps; each compiled XLA CPU executable
# holds about three, and the whole suite compiles tens of thousands of them, so one pytest process
# died in the compiler (SIGSEGV) late in the run. Dropping JAX's compilation caches between modules
# once the count is high frees them; tests that share compiled functions within a module keep them.
_MAPS = "/proc/self/maps"
_MAPS_HIGH = 30_000


def _memory_maps():
    try:
        with open(_MAPS) as maps:
            return sum(1 for _ in maps)
    except OSError:  # not Linux: no such limit to guard
        return 0


@pytest.fixture(autouse=True, scope="module")
def _bounded_memory_maps():
    yield
    if _memory_maps() > _MAPS_HIGH:
        jax.clear_caches()
        gc.collect()
