"""What the machine that runs a job must offer for its settings, probed where the job starts
(simulate, resume, sweep batches, compare, api.compose), not in config.parse, which depends on
the config alone: the devices devices.shard splits the lattice over, the hdf5plugin package for
output.compression=zstd. A lack raises ConfigError naming the key and the value, before any long
work starts.
"""

from __future__ import annotations

from . import Settings
from .validate import ConfigError


def check(settings: Settings) -> None:
    """Raise ConfigError if this machine cannot run `settings` (module docstring)."""
    if settings.numerics.shard:
        import jax

        n = len(jax.devices())
        if settings.problem.grid.shape[0] % n:
            raise ConfigError("devices.shard", settings.numerics.shard, f"splits x into {n} slabs, one per device, so grid.shape[0] = "
                              f"{settings.problem.grid.shape[0]} must be a multiple of {n}")
    if settings.output.compression == "zstd":
        try:
            import hdf5plugin  # noqa: F401
        except ImportError:
            raise ConfigError("output.compression", settings.output.compression, "zstd needs the hdf5plugin package (pip install 'il2rd[zstd]'); or use gzip")
