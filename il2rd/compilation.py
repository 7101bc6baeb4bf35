"""How il2rd's kernels are compiled: `jit` (jax.jit with il2rd's compiler options) and JAX's
persistent compilation cache (`devices.compilation_cache`, on by default).

Most of a small run is XLA compilation, not solving: a 16x12x8 run took 12.6 s of which 5.1 s
remained once every kernel was cached, and compiling the steady solver for a 128^3 lattice took
5.6 s against 0.7 s for the solve (2-core x86-64 CPU, jax 0.10.2). Two things cut that:

- On a CPU, kernels are compiled with XLA's element-wise IR emitters instead of its newer MLIR
  fusion emitters (`xla_cpu_use_fusion_emitters=False`): the steady solver then compiles in 3.1 s
  instead of 5.6 s at 128^3 (1.3 s instead of 2.1 s at 16x12x8) and solves as fast (0.71 s vs
  0.74 s). The option is probed once; a jaxlib that does not know it compiles with its defaults.
- Compiled executables are kept on disk and reused by later processes. The folder is JAX's own
  setting where the user gave one (JAX_COMPILATION_CACHE_DIR), else `<user cache folder>/il2rd/jax`
  ($XDG_CACHE_HOME or ~/.cache). JAX keys each entry by the program, the compiler options, the
  device and the JAX version, so an upgrade never reuses a stale entry. (The wrong answers the test
  suite once blamed on it came from jit's in-memory cache: pytree.py.)
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import jax
import jax.numpy as jnp

log = logging.getLogger("il2rd")

CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}

# Cache every kernel, however quickly it compiles (JAX's own default, 1 s, would skip most of
# il2rd's, which compile in 0.01 - 3 s on a CPU): the default run's ~70 kernels under 0.1 s each
# still took 1.7 s to compile in every process (warm run: 3.6 -> 2.2 s of tracing and compiling).
MIN_COMPILE_TIME_S = 0.0


@functools.cache
def compiler_options() -> dict:
    """The options every il2rd kernel is compiled with on the default backend ({} off the CPU,
    or where this jaxlib rejects them)."""
    if jax.default_backend() != "cpu":
        return {}
    try:
        jax.jit(lambda x: -x, compiler_options=CPU_COMPILER_OPTIONS).lower(jnp.float32(1)).compile()
    except Exception as err:  # an unknown option is an XlaRuntimeError; anything else: same answer
        log.debug("compiling with XLA's defaults: %s", err)
        return {}
    return dict(CPU_COMPILER_OPTIONS)


class _Kernel:
    """A jax.jit-compiled function whose compiler options are chosen at its first use (choosing
    them at import would start JAX's backend, and on a GPU claim its memory, in every process
    that merely imports il2rd, e.g. to plot)."""

    def __init__(self, fun, jit_kwargs):
        functools.update_wrapper(self, fun)
        self._fun, self._jit_kwargs, self._jitted = fun, jit_kwargs, None
        self._nested = jax.jit(fun, **jit_kwargs)  # inside another kernel: compiled with that one's options

    def _compiled(self):
        if self._jitted is None:
            self._jitted = jax.jit(self._fun, compiler_options=compiler_options() or None, **self._jit_kwargs)
        return self._jitted

    def __call__(self, *args, **kwargs):
        traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves((args, kwargs)))
        return (self._nested if traced else self._compiled())(*args, **kwargs)

    def lower(self, *args, **kwargs):
        return self._compiled().lower(*args, **kwargs)


def jit(fun=None, **jit_kwargs):
    """jax.jit (same keywords, also as `@jit(static_argnames=...)`) with il2rd's compiler options."""
    if fun is None:
        return functools.partial(jit, **jit_kwargs)
    return _Kernel(fun, jit_kwargs)


def default_cache_folder() -> Path:
    """JAX's configured folder if the user set one, else <user cache folder>/il2rd/jax."""
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "il2rd" / "jax"


def configure_cache(enabled: bool) -> Path | None:
    """Switch the persistent cache on (returns its folder) or off (returns None).

    Takes effect for kernels compiled afterwards: call it before the first compilation of a
    process (simulate.run and sweep.run_batched do). A folder that cannot be created leaves the
    cache off with a warning, never fails a run."""
    if not enabled or os.environ.get("JAX_ENABLE_COMPILATION_CACHE", "").lower() in ("0", "false"):  # the environment wins
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    folder = default_cache_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        log.warning("compilation cache off: cannot create %s (%s)", folder, err.strerror or err)
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:  # the user's choice wins
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    return folder
