"""Placing a lattice on several devices: domain decomposition along x with jax.sharding.

With `devices.shard=true` every field-shaped array (the coefficients, hence the field) is split
into equal slabs along x, one per device. The solvers are unchanged: XLA's SPMD partitioner
runs the same jitted programs on the slabs and exchanges the halos the stencil needs (and
gathers what the preconditioner's per-axis transforms need). On one CPU, test it with
XLA_FLAGS=--xla_force_host_platform_device_count=4.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from ..physics.kinetics import FieldCoefficients


def x_slabs(n_devices: int | None = None) -> NamedSharding:
    """Sharding of (nx, ny, nz) arrays into slabs along x over the first n_devices devices."""
    devices = jax.devices()[: n_devices or len(jax.devices())]
    mesh = jax.sharding.Mesh(np.asarray(devices), ("x",))
    return NamedSharding(mesh, PartitionSpec("x", None, None))


def shard_coefficients(coef: FieldCoefficients, sharding: NamedSharding) -> FieldCoefficients:
    """The coefficients with their fields split by `sharding` (scalars stay replicated)."""
    put = lambda a: jax.device_put(a, sharding) if np.ndim(a) == 3 else a  # noqa: E731
    return coef.replace(
        secretion_pM_per_s=put(coef.secretion_pM_per_s),
        vmax_pM_per_s=put(coef.vmax_pM_per_s),
        km_pM=put(coef.km_pM),
        exchange_per_s=put(coef.exchange_per_s),
        exchange_target_pM=put(coef.exchange_target_pM),
        vmax_intermediate_pM_per_s=put(coef.vmax_intermediate_pM_per_s),
        km_intermediate_pM=put(coef.km_intermediate_pM),
        vmax_own_pM_per_s=put(coef.vmax_own_pM_per_s),
        km_own_pM=put(coef.km_own_pM),
        own_offset_pM=put(coef.own_offset_pM),
    )
