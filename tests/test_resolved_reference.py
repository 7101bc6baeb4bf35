"""The resolved reference of benchmarks/resolved_reference.py (spherical cells on fine voxels)
checked against mathematics: the exact uptake of a sphere in a concentric Dirichlet sphere and
its convergence, the geometry's volumes and areas, conservation in a tissue block; and the
decay-length measurement against the lattice's exact dispersion relation."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "resolved_reference.py"
_spec = importlib.util.spec_from_file_location("resolved_reference", _PATH)
rr = importlib.util.module_from_spec(_spec)
sys.modules["resolved_reference"] = rr  # dataclasses look their module up there
_spec.loader.exec_module(rr)


def test_isolated_weak_consumer_converges_at_second_order_to_the_sphere():
    s = rr.capacity_um3_per_s()
    rows = [rr.isolated_sphere(h, 0.1 * s) for h in (1.0, 0.5)]
    assert abs(rows[0]["error"]) < 2e-3 and abs(rows[1]["error"]) < 5e-4
    assert rr.observed_order(rows) > 1.7


def test_isolated_diffusion_limited_consumer_converges_at_first_order_to_the_sphere():
    s = rr.capacity_um3_per_s()
    rows = [rr.isolated_sphere(h, 100.0 * s) for h in (1.0, 0.5)]
    assert abs(rows[1]["error"]) < 0.05
    assert rr.observed_order(rows) > 0.9


def test_exact_solution_tends_to_the_isolated_sphere():
    k, s = 300.0, rr.capacity_um3_per_s()
    assert rr.isolated_sphere_exact(k, rr.RADIUS_UM, 1e9) == pytest.approx(k * s / (s + k), rel=1e-8)


def test_sphere_block_volume_and_area():
    h, a, m = 0.5, rr.RADIUS_UM, 20
    block = rr.sphere_block((m,) * 3, h, np.full(3, m * h / 2), a)
    solid = (1.0 - block.fluid).sum() * h**3
    assert solid == pytest.approx(4.0 / 3.0 * math.pi * a**3, rel=2e-3)
    assert block.surface.sum() == pytest.approx(1.0)
    # the open area of the x faces through the centre plane is the square minus the great circle
    centre_plane = block.aperture[0, m // 2 - 1].sum() * h**2
    assert centre_plane == pytest.approx((m * h) ** 2 - math.pi * a**2, rel=1e-3)


def test_resolved_tissue_conserves_what_is_secreted():
    tissue = rr.random_tissue(2, 0.9, seed=1)
    out = rr.resolved_tissue(tissue, 1.0)
    assert abs(out["balance"]) < 1e-8
    assert np.all(out["uptake"] > 0)


def test_point_sink_decay_length_obeys_the_lattice_dispersion():
    """Consumers in every voxel as point sinks: the plane means decay exactly as
    2 (cosh(h/lambda) - 1) = k/(D h), the 7-point Laplacian's own dispersion."""
    k_over_s = 0.5
    k = k_over_s * rr.capacity_um3_per_s()
    target = rr.homogenised_decay_length_um(k, 1.0 / rr.PITCH_UM**3)
    slab = rr.sublattice_slab(k_over_s, 1, rr.slab_length(k_over_s, 1))
    measured = rr.il2rd_decay_length_um(slab, 1, target, None)
    assert measured == pytest.approx(rr.lattice_decay_length_um(k), rel=1e-6)


def test_lattice_field_with_unit_faces_is_il2rds_own_problem(tmp_path):
    """The variable-conductance lattice solve used to try il2rd/packing.py, with every factor 1,
    against il2rd's own steady solver on the same scenario (closure, periodic, linear)."""
    tissue = rr.random_tissue(4, 0.5, seed=2)
    scenario = rr.il2rd_scenario(rr.il2rd_overrides(tissue, tmp_path / "cells.csv", rr.RADIUS_UM))
    own = np.asarray(rr.il2rd_steady(scenario), np.float64)
    np.testing.assert_allclose(rr.lattice_field(scenario, np.ones((3,) + tissue.shape)), own, rtol=1e-7, atol=1e-9 * own.max())


def test_packed_faces_shorten_the_decay_length_by_the_maxwell_factor():
    """Point sinks in every voxel, every face narrowed by f: the lattice dispersion with f D."""
    k_over_s = 0.5
    k = k_over_s * rr.capacity_um3_per_s()
    f = rr.maxwell_factor(rr.sphere_volume_fraction())
    target = rr.homogenised_decay_length_um(k, 1.0 / rr.PITCH_UM**3)
    slab = rr.sublattice_slab(k_over_s, 1, rr.slab_length(k_over_s, 1))
    measured = rr.il2rd_decay_length_um(slab, 1, target, None, face_factors=True)
    assert measured == pytest.approx(rr.lattice_decay_length_um(k, diffusion=f * rr.DIFFUSION), rel=1e-6)


def test_packed_faces_narrow_only_faces_between_two_cells():
    occupied = np.zeros((5, 4, 4), bool)
    occupied[1, 1, 1] = occupied[2, 1, 1] = True  # two neighbours along x
    occupied[4, 3, 3] = True  # an isolated cell
    f = rr.packed_face_factors(occupied)
    assert (f < 1).sum() == 1 and f[0, 1, 1, 1] == pytest.approx(rr.maxwell_factor(rr.sphere_volume_fraction()))
    assert rr.maxwell_factor(1e-4) == pytest.approx(1.0 - 1.5e-4, rel=1e-7)  # dilute: 1 - 3 phi / 2
