"""JAX's persistent compilation cache, on by default (`devices.compilation_cache`).

Most of a small run is XLA compilation (a 16x12x8 run: 12.6 s cold, 5.1 s when every kernel is
cached), and a user re-runs the same shapes many times, so compiled executables are kept on disk
and reused by later processes. The folder is JAX's own setting where the user gave one
(JAX_COMPILATION_CACHE_DIR), else `<user cache folder>/il2rd/jax` ($XDG_CACHE_HOME or ~/.cache).
JAX keys each entry by the program, the compiler options, the device and the JAX version, and writes
it atomically, so concurrent processes (a multirun, two terminals) share one folder safely and an
upgrade never reuses a stale entry. `devices.compilation_cache=false` switches it off.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import jax

log = logging.getLogger("il2rd")

# Cache every kernel that takes longer than this to compile (JAX's own default, 1 s, would skip
# most of il2rd's, which compile in 0.2 - 2 s on a CPU).
MIN_COMPILE_TIME_S = 0.1


def default_folder() -> Path:
    """JAX's configured folder if the user set one, else <user cache folder>/il2rd/jax."""
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "il2rd" / "jax"


def configure(enabled: bool) -> Path | None:
    """Switch the persistent cache on (returns its folder) or off (returns None).

    Takes effect for kernels compiled afterwards: call it before the first compilation of a
    process. A folder that cannot be created leaves the cache off with a warning, never fails a run."""
    if not enabled:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    folder = default_folder()
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
