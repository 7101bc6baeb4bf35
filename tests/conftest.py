"""Test set-up: float64 is available in every test (as in diffrax's suite); float32 tests ask for
float32 explicitly, so the order in which tests run never changes a dtype.

The float32 tier (tests/float32/) runs the same way users do, with x64 off: test_float32_tier.py
starts it as a separate pytest process with IL2RD_TEST_X64=0 (x64 is a process-wide switch)."""

import gc
import os

# No persistent compilation cache in the tests (JAX's on-disk cache, which il2rd switches on for
# users: compilation.py; tests/test_compilation_cache.py tests it with a folder of its own): every
# test process compiles what it runs. (It was switched off while wrong answers in one worker were
# blamed on it; they came from jit's in-memory cache, il2rd/pytree.py.)
os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"  # il2rd's run() leaves the cache off then (compilation.py)
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)

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
