"""The sub-grid closure (physics.cell_radius, il2rd/physics/subgrid.py) in coupled runs (solver.kind=coupled,
il2rd/cells/dynamics.py), where each cell's IL-2Ra, hence its collapsed law and stencil weights, change
every step and the voxel fields are rebuilt inside the jitted step: the JAX fields against the
numpy closure, the coupled state against the backward-Euler step of the sub-grid field of its
receptors, the sphere's uptake through the run path, and the attribution of a coupled sub-grid run
(whose shares add up to the uptake up to what the field still changes, a bound from the M-matrix)."""

from __future__ import annotations

import dataclasses
import math

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compose import compose_config
from helpers import coefficients, np_tendency

from il2rd import cells
from il2rd.cells import coupling
from il2rd.analysis import readouts
from il2rd.physics import kinetics, subgrid, units
from il2rd.physics.receptors import collapsed_law
from il2rd.analysis.attribution import attribute
from il2rd.config import parse
from il2rd.cells.dynamics import cell_kinetics, coefficients_at, secretion_course, secretion_profile, seen
from il2rd.physics.grid import Grid
from il2rd.scenario import Scenario
from il2rd.simulate import run
from il2rd.solvers.steppers import Coupled, advance, initialize
from il2rd.solvers.steady import SolverOptions, steady_field

HOUR = 3600.0
RADIUS = 5.0  # um
D = 10.0  # um^2/s


# ------------------------------------------------------------------------------------------
# 1. The JAX fields are the numpy closure's


def _cells_at_faces(shape, n, rng):
    """n distinct voxels, the first ones on faces, edges and corners of the lattice."""
    corners = [(0, 0, 0), (shape[0] - 1, shape[1] - 1, shape[2] - 1), (0, shape[1] - 1, 2), (3, 0, shape[2] - 1),
               (shape[0] - 1, 2, 3), (2, 3, 0)]
    taken = [np.ravel_multi_index(v, shape) for v in corners]
    rest = rng.permutation([f for f in range(math.prod(shape)) if f not in taken])[: n - len(corners)]
    flat = np.concatenate([taken, rest])
    return np.stack(np.unravel_index(flat, shape), axis=-1)


def _loop_closure(c, voxel, shape, h, periodic, vmax, km, q, law):
    """The closure's fields and each cell's (uptake, seen), cell by cell and arm by arm in plain
    Python (independent of coupling.py's vectorised scatter, fold and sharing): the per-cell
    weights from subgrid.effective_uptake, arms beyond a non-periodic face into the cell's voxel."""
    offsets = subgrid.STENCIL_OFFSETS
    k = np.where(vmax > 0, vmax / units.pM_to_molecules_per_um3(km), 0.0)
    p = subgrid.effective_uptake(h, D, RADIUS, k)
    w, vw, kf, kappa = (np.asarray(a, np.float64) for a in (p.stencil_weights, p.vmax_weights, p.km_factors, p.rate_um3_per_s))
    sec, vm, rate = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    arms = []
    for i, cell in enumerate(voxel):
        at_cell = []
        for j, off in enumerate(offsets):
            at = np.array(cell) + off
            for axis in range(3):
                if periodic[axis]:
                    at[axis] %= shape[axis]
            inside = bool(np.all((at >= 0) & (at < np.array(shape))))
            at = tuple(at) if inside else tuple(cell)
            at_cell.append(at)
            sec[at] += w[i, j] * q[i]
            vm[at] += vw[i, j] * vmax[i]
            rate[at] += w[i, j] * kappa[i]
        arms.append(at_cell)
    to_pM = lambda f: units.cell_rate_to_voxel_rate_pM_per_s(f, h**3)  # noqa: E731
    km_field = np.where(rate > 0, to_pM(vm) * h**3 / np.where(rate > 0, rate, 1.0), 1.0)
    field_uptake = vm * c / (km_field if law == "linear" else km_field + c)  # molecules/s per voxel
    own = np.zeros((len(voxel), 7))
    total = np.zeros(shape)
    for i in range(len(voxel)):
        for j, at in enumerate(arms[i]):
            own[i, j] = vw[i, j] * vmax[i] / (kf[i, j] * km[i] + (0.0 if law == "linear" else c[at]))
            total[at] += own[i, j]
    uptake = np.array([sum(own[i, j] / total[at] * field_uptake[at] for j, at in enumerate(arms[i]) if total[at] > 0)
                       for i in range(len(voxel))])
    seen = np.zeros(len(voxel))  # each cell's own law at its arms' IL-2: c_s = K f / (1 - f)
    for i in range(len(voxel)):
        if vmax[i] > 0:
            k_arm = [kf[i, j] * km[i] for j in range(7)]
            if law == "linear":
                seen[i] = km[i] * sum(vw[i, j] * c[at] / k_arm[j] for j, at in enumerate(arms[i]))
            else:
                occupied = sum(vw[i, j] * c[at] / (k_arm[j] + c[at]) for j, at in enumerate(arms[i]))
                seen[i] = km[i] * occupied / (1.0 - occupied)
    return (to_pM(sec), to_pM(vm), km_field), (uptake, seen)


@pytest.mark.parametrize("h", [8.0, 10.0, 20.0])
@pytest.mark.parametrize("periodic", [(False, False, False), (True, False, True)])
def test_the_coupling_is_the_closure_cell_by_cell(h, periodic):
    """coupling.voxel_fields and coupling.cell_uptake under jax.jit (float64) equal a cell-by-cell,
    arm-by-arm loop to 1e-12 for cells of k/S from 1e-3 to 1e3 (and without receptors), some at
    faces (arms folded or wrapped), overlapping; the fields keep every cell's secretion and maximum."""
    rng = np.random.default_rng(int(h) + 7 * periodic[0])
    shape = (7, 6, 5)
    voxel = _cells_at_faces(shape, 70, rng)
    n = len(voxel)
    km = rng.uniform(20.0, 1500.0, n)
    k = 10 ** rng.uniform(-3, 3, n) * 4 * math.pi * D * RADIUS  # um^3/s, weak to strong
    k[:4] = 0.0  # cells without receptors (secreting DCs)
    vmax = k * units.pM_to_molecules_per_um3(km)
    q = rng.uniform(0.0, 50.0, n)
    c = rng.uniform(0.0, 300.0, shape)
    cp = coupling.build(voxel, shape, h, RADIUS, D, 1.0, "saturating", jnp.float64, periodic)
    assert not np.asarray(cp.inside).all() and (periodic[0] or not bool(cp.inside[0, 2]))  # arms left at the corner

    fields = jax.jit(coupling.voxel_fields)(cp, jnp.asarray(vmax), jnp.asarray(km), jnp.asarray(q))
    for law in ("saturating", "linear"):
        want_fields, want_cells = _loop_closure(c, voxel, shape, h, periodic, vmax, km, q, law)
        for name, g, w in zip(("secretion", "vmax", "km"), fields, want_fields):
            assert g.dtype == jnp.float64
            np.testing.assert_allclose(np.asarray(g), w, rtol=1e-12, atol=1e-12 * np.max(np.abs(w)), err_msg=name)
        got = jax.jit(coupling.cell_uptake)(dataclasses.replace(cp, uptake=law), jnp.asarray(c), jnp.asarray(vmax),
                                            jnp.asarray(km))
        uptake, seen = (np.asarray(a) for a in got)
        np.testing.assert_allclose(uptake, want_cells[0], rtol=1e-12, atol=1e-12 * np.max(want_cells[0]), err_msg=law)
        np.testing.assert_allclose(seen, want_cells[1], rtol=1e-9, atol=1e-12, err_msg=f"{law} seen")
    to_molecules = lambda f: units.voxel_rate_to_cell_rate_molecules_per_s(np.sum(np.asarray(f)), h**3)  # noqa: E731
    assert to_molecules(fields[0]) == pytest.approx(q.sum(), rel=1e-12)
    assert to_molecules(fields[1]) == pytest.approx(vmax.sum(), rel=1e-12)


@pytest.mark.parametrize("h", [8.0, 20.0])
def test_a_saturated_cell_sees_finite_monotone_il2_in_float32(h):
    """Up to a million times K_M (high-dose therapy) the seen IL-2 of a cell alone on its voxels is
    the inversion K_M U / (V - U) of its uptake (float64, where that is well conditioned), finite
    in float32 and within 1e-5 of float64 there, and it rises with the field; a cell sharing its
    voxels with another sees what it would see alone (its own law at the voxels' IL-2)."""
    shape, km = (9, 9, 9), 43.0
    voxel = np.array([[4, 4, 4], [1, 1, 1], [1, 2, 1]])  # alone; two sharing a face
    vmax = 10.0 * 4 * math.pi * D * RADIUS * units.pM_to_molecules_per_um3(km) * np.array([1.0, 1.0, 0.1])
    x = np.indices(shape).sum(axis=0) / 24.0  # a gradient across every stencil
    seen = {}
    for dtype in (jnp.float64, jnp.float32):
        cp = coupling.build(voxel, shape, h, RADIUS, D, 1.0, "saturating", dtype, (False,) * 3)
        up = jax.jit(coupling.cell_uptake)
        seen[dtype] = []
        for level in km * 10.0 ** np.arange(-2, 7):
            u, s = (np.asarray(a, np.float64) for a in up(cp, jnp.asarray(level * (1 + x), dtype), jnp.asarray(vmax, dtype),
                                                     jnp.asarray(km, dtype)))
            assert np.all(np.isfinite(s)) and np.all(s > 0), (dtype, level, s)
            if dtype == jnp.float64 and u[0] < (1 - 1e-6) * vmax[0]:
                assert s[0] == pytest.approx(km * u[0] / (vmax[0] - u[0]), rel=1e-8)
            seen[dtype].append(s)
    s64, s32 = np.array(seen[jnp.float64]), np.array(seen[jnp.float32])
    np.testing.assert_allclose(s32, s64, rtol=1e-5)
    assert np.all(np.diff(s32, axis=0) > 0)
    alone = coupling.build(voxel[1:2], shape, h, RADIUS, D, 1.0, "saturating", jnp.float64, (False,) * 3)
    c = jnp.asarray(km * (1 + x))
    _, s_alone = coupling.cell_uptake(alone, c, jnp.asarray(vmax[1:2]), jnp.asarray(km))
    _, s_shared = coupling.cell_uptake(coupling.build(voxel, shape, h, RADIUS, D, 1.0, "saturating", jnp.float64, (False,) * 3),
                                       c, jnp.asarray(vmax), jnp.asarray(km))
    assert float(s_shared[1]) == pytest.approx(float(s_alone[0]), rel=1e-12)


def test_point_sinks_are_the_couplings_one_voxel_case():
    """physics.cell_radius=null: one arm of weight 1 per cell, each receptor class its own fields.
    Two cells in one voxel add (maxima, linear slopes, secretions; a cell walking into an occupied
    voxel, coupling.moved, adds too), each cell sees its voxel's IL-2, receptors or not, and a lone
    cell takes up exactly V_h c/(K_h + c) + V_i c/(K_i + c)."""
    shape, h = (5, 5, 5), 10.0
    voxel = np.array([[1, 1, 1], [1, 1, 1], [3, 2, 0], [4, 4, 4]])
    v_high, k_high = np.array([300.0, 50.0, 120.0, 0.0]), np.array([43.0, 20.0, 43.0, 43.0])
    v_int, k_int = np.array([0.0, 80.0, 40.0, 0.0]), np.full(4, 1035.0)
    q = np.array([10.0, 0.0, 0.0, 5.0])
    dtype = jnp.result_type(float)
    cp = coupling.build(voxel, shape, h, None, D, 1.0, "saturating", dtype)
    assert not cp.closure and cp.arms == 1 and not cp.own_capture
    as_law = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    classes = tuple(as_law(a) for a in (v_high, k_high, v_int, k_int))
    fields = {k: np.asarray(f) for k, f in coupling.coefficient_fields(cp, classes, as_law(q), intermediate=True).items()}
    to_pM = 1.0 / (units.MOLECULES_PER_UM3_PER_PM * h**3)
    shared, lone, empty = (1, 1, 1), (3, 2, 0), (2, 2, 2)
    assert fields["vmax_pM_per_s"][shared] == pytest.approx(350.0 * to_pM, rel=1e-12)
    assert fields["km_pM"][shared] == pytest.approx(350.0 / (300.0 / 43.0 + 50.0 / 20.0), rel=1e-12)  # both slopes kept
    assert fields["vmax_intermediate_pM_per_s"][shared] == pytest.approx(80.0 * to_pM, rel=1e-12)
    assert fields["km_pM"][lone] == pytest.approx(43.0, rel=1e-12)
    assert fields["secretion_pM_per_s"][shared] == pytest.approx(10.0 * to_pM, rel=1e-12)
    assert fields["secretion_pM_per_s"][(4, 4, 4)] == pytest.approx(5.0 * to_pM, rel=1e-12)
    assert fields["vmax_pM_per_s"][empty] == 0.0
    assert fields["secretion_pM_per_s"].sum() == pytest.approx(15.0 * to_pM, rel=1e-12)

    c = jnp.asarray(np.random.default_rng(2).uniform(1.0, 100.0, shape), dtype)
    coef = coefficients(shape, km=fields["km_pM"]).replace(**{k: jnp.asarray(f, dtype) for k, f in fields.items() if k != "km_pM"})
    v, km = (as_law(a) for a in collapsed_law(*classes))
    uptake, seen_pM = (np.asarray(a) for a in coupling.cell_uptake(cp, c, v, km, as_law(q), coef))
    c_at = np.asarray(c)[tuple(voxel.T)]
    np.testing.assert_array_equal(seen_pM, c_at)  # the cell without receptors too
    c2 = c_at[2]
    assert uptake[2] == pytest.approx(120.0 * c2 / (43.0 + c2) + 40.0 * c2 / (1035.0 + c2), rel=1e-12)
    voxel_rate = float(np.asarray(kinetics.uptake_rate(c, coef))[shared]) / to_pM
    assert uptake[0] + uptake[1] == pytest.approx(voxel_rate, rel=1e-12) and uptake[3] == 0.0

    walked = coupling.moved(cp, jnp.asarray([[1, 1, 1], [1, 1, 1], [1, 1, 1], [4, 4, 4]], jnp.int32))
    moved = coupling.coefficient_fields(walked, classes, as_law(q), intermediate=True)
    assert float(moved["vmax_pM_per_s"][shared]) == pytest.approx(470.0 * to_pM, rel=1e-12)
    assert float(moved["vmax_pM_per_s"][lone]) == 0.0


# ------------------------------------------------------------------------------------------
# The scenario of tests 2, 3, 5: 16^3 T-zone block in tissue, Tregs with IL-2Rb (two receptor
# classes, so the collapsed law changes its K as CD25 rises), float64


def _overrides(*extra):
    return ["grid.shape=[16,16,16]", "solver.kind=coupled", "solver.dt=1800",  # the closure by default: 5 um cells
            "precision=float64", "solver.rtol=1e-10", "physics.volume_fraction=0.3", "physics.tortuosity=1.6",
            "physics.diffusion=100", "+cell_types.treg.il2rb=3e4", "+cell_types.treg.gc=1e5",
            "cell_types.il2_producer.secretion=100", "output.progress=false", *extra]


def _max_relative(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))) / np.max(np.abs(np.asarray(b))))


def test_without_feedback_every_snapshot_is_the_steady_subgrid_field(tmp_path):
    """cd25_gain = 1 and constant secretion: receptors stay basal, so every snapshot of the coupled
    run is the steady run's field, and its per-cell readouts the steady run's (periodic faces: arms
    wrap)."""
    common = _overrides("grid.boundary=periodic", "time.end=7200", "time.snapshot_every=3600", "output.attribution=false")
    coupled = run(compose_config(*common), tmp_path / "coupled")
    steady = run(compose_config(*common[:2], "solver.kind=steady", *common[3:]), tmp_path / "steady")
    with h5py.File(coupled.path) as a, h5py.File(steady.path) as b:
        assert a.attrs["n_snapshots"] == 3
        ref = b["fields/il2"][0]
        for i in range(3):
            assert _max_relative(a["fields/il2"][i], ref) < 1e-8, i
            for name in ("il2", "uptake", "pstat5"):
                np.testing.assert_allclose(a[f"cells/{name}"][i], b[f"cells/{name}"][0], rtol=1e-7,
                                           atol=1e-9 * np.max(b[f"cells/{name}"][0]), err_msg=f"{name} at {i}")


def _coupled_state(*extra, n_steps=8, dt=1800.0):
    """A coupled sub-grid scenario advanced n_steps through the API: (scenario, CellKinetics, c, IL-2Ra, t,
    the field one step before)."""
    sc = Scenario.build(parse(compose_config(*_overrides(*extra))))
    kin = cell_kinetics(sc, jnp.float64)
    options = sc.settings.numerics.options
    state, info = initialize(Coupled(sc.coefficients, kin, sc.grid, options), 0.0)
    for k in range(n_steps):  # one step a call: one compilation
        before = state[0]
        state, info = advance(Coupled(sc.coefficients, kin, sc.grid, options), state, k * dt, dt, 1)
        assert bool(info.converged)
    return sc, kin, *state, n_steps * dt, before


def _storage_bound(c, c_before, dt_s, volume_um3, total_uptake):
    """The most the attribution's shares of a coupled field can miss its uptake, over the total uptake.

    The shares add up to the uptake of sum_k c_k = A^-1 (s + b + e) (attribution.py), and backward
    Euler makes A c = s + b + e - r, r = (c - c_before)/dt, so each cell misses its uptake of
    x = A^-1 r. With p_ij >= 0 summing to <= 1 over the cells at j, |A^-1 r| <= A^-1 |r| (A an
    M-matrix) and sigma^T A^-1 <= 1^T (A's column sums are k_d + sigma + k_ex + what fixed faces
    add, >= sigma): sum_i |missed_i| <= sum_j sigma_j (A^-1 |r|)_j <= sum_j |r_j|, in molecules/s."""
    storage = units.voxel_rate_to_cell_rate_molecules_per_s(
        np.sum(np.abs(np.asarray(c, np.float64) - np.asarray(c_before, np.float64))) / dt_s, volume_um3)
    return storage / total_uptake


def test_with_feedback_the_coupled_state_is_the_backward_euler_subgrid_field_of_its_receptors():
    """gain 10 and a secretion course [0, 2, 6] h, after 4 h (f = 0.5): the coefficients the jitted
    step built equal those the numpy closure (cells.field_coefficients) builds for the cells'
    current IL-2Ra and secretion, the field is the backward-Euler step with them from the field
    before (the discrete equation in numpy), close to their steady field (these consumers relax in
    minutes; before issue 12 the coupled field was that steady field), and the IL-2 the dynamics
    sees is the readouts' surface concentration."""
    sc, kin, c, r, t, c_before = _coupled_state("+cell_types.treg.cd25_gain=10", "+cell_types.il2_producer.secretion_course=[0,2,6]")
    settings, pop = sc.settings, sc.population
    basal = pop.receptors_per_cell(settings.problem.types)
    assert np.max(np.asarray(r) / basal) > 1.5  # CD25 rose: the laws and stencil weights changed
    f = float(secretion_profile(t, 0.0, 2 * HOUR, 6 * HOUR))
    assert f == pytest.approx(0.5)
    types = {name: dataclasses.replace(ty, secretion_molecules_per_s=ty.secretion_molecules_per_s * f)
             for name, ty in settings.problem.types.items()}
    reference = cells.field_coefficients(
        sc.grid, dataclasses.replace(pop, receptors=np.asarray(r)), types, settings.problem.diffusion_um2_per_s,
        settings.problem.decay_per_s, settings.problem.face_values_pM, sc.coupling, jnp.float64,
        tortuosity=settings.problem.tortuosity)
    now = coefficients_at(sc.coefficients, kin, r, t)
    for name in ("secretion_pM_per_s", "vmax_pM_per_s", "km_pM"):
        assert _max_relative(getattr(now, name), getattr(reference, name)) < 1e-12, name
    c64, before64 = np.asarray(c, np.float64), np.asarray(c_before, np.float64)
    # to the Newton solve's rtol 1e-10 on ||s + c_before/dt||_2 (here ~2e-8 of max c in the max norm)
    assert np.max(np.abs(c64 - before64 - 1800.0 * np_tendency(c64, sc.grid, reference))) < 1e-7 * np.max(c64)
    c_ref, info = steady_field(sc.grid, reference, options=settings.numerics.options)
    assert bool(info.converged)
    assert 1e-6 < _max_relative(c, c_ref) < 1e-2
    # what the receptor step sees is what the readouts report for that state
    columns = readouts.cell_columns(np.asarray(c), dataclasses.replace(sc, coefficients=now), np.asarray(r))
    np.testing.assert_allclose(np.asarray(seen(c, kin, r)), columns["il2"], rtol=1e-10, atol=1e-12)
    assert np.any(np.abs(np.asarray(seen(c, kin, r)) - np.asarray(c)[tuple(pop.voxel.T)]) > 1e-2 * np.asarray(c).max())

    # the attribution uses the cells' own final state: its autocrine part scales with the secretion course
    final = dataclasses.replace(sc, coefficients=now)
    course = np.asarray(secretion_course(kin, t))
    a = attribute(np.asarray(c), final, il2ra=np.asarray(r), secretion_course=course)
    peak = attribute(np.asarray(c), final, il2ra=np.asarray(r))
    producers = pop.type_index == pop.type_names.index("il2_producer")
    np.testing.assert_allclose(a.autocrine_molecules_per_s[producers], 0.5 * peak.autocrine_molecules_per_s[producers],
                               rtol=1e-9)
    total = columns["uptake"].sum()
    missed = np.sum(np.abs(a.by_cell_molecules_per_s.sum(axis=1) - columns["uptake"])) / total
    assert a.closure == pytest.approx(missed, rel=1e-6)
    assert missed <= _storage_bound(c, c_before, 1800.0, sc.interstitial_voxel_volume_um3, total) + 1e-8


def _box_capacity(n, h, cell):
    """The sphere's capacity in the box of n^3 voxels with faces at 0 around `cell`: 1/(1/S - rho),
    rho = (g - G_box(0)) / (D h) the resistance the near faces take away from the infinite lattice's
    (G_box(0) from a unit point source, linear solve; as tests/test_subgrid.py)."""
    grid = Grid((n,) * 3, h, ("fixed",) * 6)
    secretion = np.zeros(grid.shape)
    secretion[cell] = units.cell_rate_to_voxel_rate_pM_per_s(1.0, h**3)  # 1 molecule/s
    c, info = steady_field(grid, coefficients(grid.shape, diffusion=D, secretion=secretion, uptake="linear"),
                           options=SolverOptions(rtol=1e-10))
    assert bool(info.converged)
    green_box = float(c[cell]) * units.MOLECULES_PER_UM3_PER_PM * D * h
    rho = (subgrid.LATTICE_GREEN_ORIGIN - green_box) / (D * h)
    return 1.0 / (1.0 / (4 * np.pi * D * RADIUS) - rho)


@pytest.mark.parametrize("spacing_um", [8.0, 20.0])
def test_an_isolated_consumer_in_a_coupled_run_reads_out_the_sphere_uptake(tmp_path, spacing_um):
    """One strong linear consumer (k = 10 x 4 pi D a at first, CD25 feedback raising it) in a box
    whose faces hold 1 pM: its uptake readout at the end is the sphere's, c k S/(S + k) with k from
    its final receptors (k/S ~ 24 by then), exact for a linear cell: to 1e-3 here, with S the
    sphere's capacity in this 16^3 box (its near faces add 7 % to 4 pi D a at 8 um, 3 % at 20 um;
    tests/test_subgrid.py uses 24^3 and the free sphere, within 5 %)."""
    n, k_int, km_pM = 16, 1.1e-3, 43.0
    capacity = _box_capacity(n, spacing_um, (n // 2,) * 3)
    receptors = 10 * 4 * np.pi * D * RADIUS * units.pM_to_molecules_per_um3(km_pM) / k_int
    centre = (n // 2 + 0.5) * spacing_um
    csv = tmp_path / "cell.csv"
    csv.write_text(f"x,y,z,type\n{centre},{centre},{centre},treg\n")
    result = run(compose_config(
        f"grid.shape=[{n},{n},{n}]", f"grid.spacing={spacing_um}", "grid.boundary=fixed", "grid.boundary_value=1.0",
        "physics.decay=0", "physics.uptake=linear", f"cells.csv={csv}", f"cell_types.treg.receptors={receptors}",
        f"cell_types.treg.km={km_pM}", f"cell_types.treg.k_int={k_int}", "+cell_types.treg.cd25_gain=10",
        "solver.kind=coupled", "solver.dt=3600", "time.end=14400", "time.snapshot_every=14400", "precision=float64",
        "solver.rtol=1e-10", "output.progress=false", "output.attribution=false", f"physics.cell_radius={RADIUS}"),
        tmp_path / "run")
    treg = {t.name: t for t in result.summary.types}["treg"]
    assert treg.mean_receptors > 2 * receptors  # the feedback raised k
    k = k_int * treg.mean_receptors / units.pM_to_molecules_per_um3(km_pM)
    exact = units.pM_to_molecules_per_um3(1.0) * k * capacity / (capacity + k)
    assert treg.total_uptake_molecules_per_s == pytest.approx(exact, rel=1e-3)


def test_the_attribution_of_a_coupled_subgrid_run_adds_up_to_its_uptake(tmp_path):
    """Through the run path (gain 10, producers on a course [0, 2, 6] h, ended at 4 h, the last two
    snapshots one step apart): each cell's shares add up to its final uptake readout up to what the
    field still changes (_storage_bound; a steady field would close to the solves' 1e-6, the
    coupled field is a backward-Euler step), the producers put in their secretion of that moment
    (f = 0.5)."""
    result = run(compose_config(*_overrides("+cell_types.treg.cd25_gain=10", "+cell_types.il2_producer.secretion_course=[0,2,6]",
                                            "time.end=14400", "time.snapshot_every=12600")), tmp_path / "run")
    a = result.attribution
    with h5py.File(result.path) as f:
        np.testing.assert_allclose(f["time"][:], [0, 12600, 14400])
        uptake = f["cells/uptake"][-1].astype(np.float64)
        types = f["cells/type"][:]
        producers = int(np.sum(types == list(a.responders).index("il2_producer")))
        c, c_before = f["checkpoint/il2_0"][...], f["checkpoint/il2_1"][...]  # snapshots 2 and 1, float64
    volume = 0.3 * 10.0**3  # alpha h^3
    bound = _storage_bound(c, c_before, 1800.0, volume, result.summary.uptake_molecules_per_s)
    assert 1e-6 < a.closure <= bound + 1e-6, (a.closure, bound)
    np.testing.assert_allclose(a.by_cell_molecules_per_s.sum(axis=1), uptake, rtol=bound + 1e-6, atol=bound * uptake.max())
    assert a.matrix_molecules_per_s.sum() == pytest.approx(result.summary.uptake_molecules_per_s, rel=bound + 1e-6)
    assert a.output_molecules_per_s[0] == pytest.approx(producers * 100.0 * 0.5, rel=1e-9)
    own = a.by_cell_molecules_per_s[:, 0]
    assert np.all(a.autocrine_molecules_per_s >= 0) and np.all(a.autocrine_molecules_per_s <= own * (1 + 1e-9) + 1e-15)
