"""Receptor dynamics and secretion time courses (il2rd/cells/dynamics.py): the receptor ODE against its
exact solution and its closed-form steady state at fixed IL-2, pSTAT5's EC50 shift with receptor
number, the coupled step (receptors, then a backward-Euler field step) against the discrete
equations, its first order in dt, and the feedback's mechanism (more CD25 on Tregs, less IL-2
around them). tests/test_coupled_transient.py checks the coupled field against a fine-step
transient reference."""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import coefficients, np_tendency
from scipy.optimize import brentq

from il2rd.physics import units
from il2rd.cells import coupling
from il2rd.cells.dynamics import (CellKinetics, ReceptorFeedback, advance_receptors, coefficients_at, production,
                                  pstat5_of, secretion_profile, seen)
from il2rd.solvers.steppers import Coupled, advance, initialize
from il2rd.physics.grid import Grid
from il2rd.physics.receptors import Signalling
from il2rd.solvers.steady import SolverOptions, steady_field

H = 10.0
HOUR = 3600.0


def kinetics_of(n, basal, gain=1.0, secretion=0.0, onset=None, peak=None, off=None, voxel=None, k_int=1.1e-3,
                il2rb=np.inf, gc=np.inf, shape=(12, 12, 12)):
    """CellKinetics of n point-sink cells at voxel (default (0, 0, 0)) of a `shape` lattice of voxel edge H, alpha = 1."""
    voxel = np.zeros((n, 3), np.int32) if voxel is None else voxel
    col = lambda v: jnp.asarray(np.broadcast_to(np.asarray(v, float), (n,)).copy())  # noqa: E731
    return CellKinetics(
        voxel=jnp.asarray(voxel, jnp.int32),
        basal_receptors=col(basal), gain=col(gain),
        k_int_per_s=col(k_int), secretion_molecules_per_s=col(secretion),
        coupling=coupling.build(voxel, shape, H, None, 10.0, 1.0, "saturating", jnp.result_type(float)),
        onset_s=col(onset or 0.0), peak_s=col(peak or 0.0), off_s=col(off or 0.0),
        timed=jnp.full((n,), onset is not None), km_pM=col(43.0),
        il2rb=col(il2rb), gc=col(gc), km_intermediate_pM=col(1035.0),
    )


def test_secretion_time_course():
    t = jnp.asarray([0.0, 1.0, 1.5, 2.0, 7.0, 14.5, 22.0, 30.0]) * HOUR
    f = np.asarray(secretion_profile(t, 1 * HOUR, 7 * HOUR, 22 * HOUR))
    np.testing.assert_allclose(f, [0, 0, 0.5 / 6, 1 / 6, 1, 0.5, 0, 0], atol=1e-12)
    # a course with onset = peak switches on at once
    np.testing.assert_allclose(np.asarray(secretion_profile(t, 2 * HOUR, 2 * HOUR, 22 * HOUR))[[1, 3, 5]], [0, 1, 7.5 / 20])


@pytest.mark.parametrize("pstat5", [0.0, 0.3, 0.9])
def test_receptors_relax_exactly_to_their_steady_state_at_fixed_signalling(pstat5):
    cells = kinetics_of(1, basal=1000.0, gain=10.0)
    fb = cells.feedback
    p = jnp.asarray([pstat5])
    target = 1000.0 * (1 + 9 * pstat5**3 / (fb.half_pstat5**3 + pstat5**3))  # closed form R* = k(p)/eta
    assert float(production(p, cells)[0]) / fb.turnover_per_s == pytest.approx(target, rel=1e-12)
    r0, t = jnp.asarray([300.0]), 30 * HOUR
    exact = target + (300.0 - target) * np.exp(-fb.turnover_per_s * t)
    one = advance_receptors(r0, p, cells, t)
    many = r0
    for _ in range(100):
        many = advance_receptors(many, p, cells, t / 100)
    assert float(one[0]) == pytest.approx(exact, rel=1e-12)
    assert float(many[0]) == pytest.approx(exact, rel=1e-10)


def test_receptor_fixed_point_at_fixed_il2_matches_the_root_of_the_feedback_equation():
    """At fixed IL-2 c the ODE's steady state solves R = R0 [1 + (gamma - 1) h(pSTAT5(c, R))],
    pSTAT5 depending on R through EC50(R): its root by bisection against many receptor steps."""
    s, fb = Signalling(), ReceptorFeedback()
    cells = kinetics_of(1, basal=1500.0, gain=10.0)
    c = 8.0  # pM

    def g(r):
        p = float(s.pstat5(c, r))
        return 1500.0 * (1 + 9 * p**3 / (fb.half_pstat5**3 + p**3)) - r

    root = brentq(g, 1500.0, 15000.0, xtol=1e-10)
    r = jnp.asarray([1500.0])
    for _ in range(400):
        r = advance_receptors(r, s.pstat5(jnp.asarray([c]), r), cells, 2 * HOUR)
    assert float(r[0]) == pytest.approx(root, rel=1e-8)


def test_pstat5_ec50_falls_as_receptors_rise():
    s = Signalling()
    receptors = np.array([10.0, 100.0, 1e3, 1e4, 1e5])
    ec50 = s.ec50_pM(receptors)
    assert np.all(np.diff(ec50) < 0)
    np.testing.assert_allclose(s.pstat5(ec50, receptors), 0.5, rtol=1e-12)
    # the Busse 2010 form: EC50(k) = E_max / 2 at R = k
    assert s.ec50_pM(s.ec50_k_receptors) == pytest.approx(s.ec50_max_pM / 2)


def _node(gain):
    """A producer in the middle of a 12^3 lattice and Tregs around it (float64)."""
    grid = Grid((12, 12, 12), H)
    rng = np.random.default_rng(3)
    flat = rng.choice(grid.n_voxels, 120, replace=False)
    voxel = np.stack(np.unravel_index(flat, grid.shape), axis=-1)
    voxel[0] = (6, 6, 6)
    flat[0] = np.ravel_multi_index((6, 6, 6), grid.shape)
    voxel = np.stack(np.unravel_index(flat, grid.shape), axis=-1)
    n = len(voxel)
    is_treg = np.arange(n) > 0
    cells = kinetics_of(n, basal=np.where(is_treg, 3000.0, 1500.0), gain=np.where(is_treg, gain, 1.0),
                        secretion=np.where(is_treg, 0.0, 400.0), voxel=voxel)
    coef = coefficients(grid.shape, diffusion=10.0, decay=2.8e-5, km=np.full(grid.shape, 43.0))
    return grid, coef, cells


OPTIONS = SolverOptions(rtol=1e-11)


def test_coupled_state_is_the_backward_euler_step_of_its_receptors():
    """Step 8 of dt = 30 min from the state of step 7 (c7, R7): R8 is R7 relaxed exactly towards
    k(pSTAT5(c7, R7))/eta, and c8 solves (c8 - c7)/dt = dc/dt(c8) with the coefficients of R8 (the
    discrete equation in numpy). These consumers relax in minutes, so c8 also lies close to the
    steady field of R8 (the quasi-steady limit; before issue 12 the coupled field was that field)."""
    grid, coef, cells = _node(gain=10.0)
    dt = 1800.0
    state, info = initialize(Coupled(coef, cells, grid, OPTIONS), 0.0)
    (c7, r7), info = advance(Coupled(coef, cells, grid, OPTIONS), state, 0.0, dt, 7)
    (c8, r8), step_info = advance(Coupled(coef, cells, grid, OPTIONS), (c7, r7), 7 * dt, dt, 1)
    assert bool(info.converged) and bool(step_info.converged)
    np.testing.assert_allclose(np.asarray(r8), np.asarray(advance_receptors(r7, pstat5_of(c7, r7, cells), cells, dt)),
                               rtol=1e-12)
    assert np.max(np.asarray(r8) / np.asarray(cells.basal_receptors)) > 1.5  # the receptors moved
    now = coefficients_at(coef, cells, r8, 8 * dt)
    c7, c8 = np.asarray(c7), np.asarray(c8)
    assert np.max(np.abs(c8 - c7 - dt * np_tendency(c8, grid, now))) < 1e-9 * np.max(c8)
    c_steady, _ = steady_field(grid, now, options=OPTIONS)
    lag = float(np.max(np.abs(c8 - np.asarray(c_steady))) / np.max(c8))
    assert 1e-6 < lag < 1e-2, lag


def test_without_feedback_receptors_stay_basal_and_the_field_steady():
    grid, coef, cells = _node(gain=1.0)
    state, _ = initialize(Coupled(coef, cells, grid, OPTIONS), 0.0)
    (c, r), _ = advance(Coupled(coef, cells, grid, OPTIONS), state, 0.0, 3600.0, 6)
    np.testing.assert_allclose(np.asarray(r), np.asarray(cells.basal_receptors), rtol=1e-12)
    assert float(jnp.max(jnp.abs(c - state[0])) / jnp.max(c)) < 1e-9


def test_cd25_feedback_raises_treg_receptors_and_lowers_il2_around_them():
    grid, coef, cells = _node(gain=10.0)
    state, _ = initialize(Coupled(coef, cells, grid, OPTIONS), 0.0)
    (c, r), _ = advance(Coupled(coef, cells, grid, OPTIONS), state, 0.0, 1800.0, 24)  # 12 h
    tregs = np.arange(len(r)) > 0
    gained = np.asarray(r)[tregs] - 3000.0
    assert np.all(gained >= -1e-9) and gained.max() > 100
    seen0, seen1 = np.asarray(seen(state[0], cells))[tregs], np.asarray(seen(c, cells))[tregs]
    assert np.all(seen1 <= seen0 * (1 + 1e-9)) and seen1.mean() < seen0.mean()


def test_coupled_solver_is_first_order_in_its_step():
    grid, coef, cells = _node(gain=10.0)
    state, _ = initialize(Coupled(coef, cells, grid, OPTIONS), 0.0)
    end = 8 * HOUR
    finals = {}
    for n in (4, 8, 16, 32):
        (_, r), _ = advance(Coupled(coef, cells, grid, OPTIONS), state, 0.0, end / n, n)
        finals[n] = np.asarray(r)
    e1 = np.max(np.abs(finals[4] - finals[32]))
    e2 = np.max(np.abs(finals[8] - finals[32]))
    e3 = np.max(np.abs(finals[16] - finals[32]))
    # errors against the finest: first order gives (e1 - ...)/(e2 - ...) ~ 2 between halvings
    order = np.log2((e1 - e2) / (e2 - e3))
    assert 0.8 < order < 1.3, order


def test_secretion_course_switches_the_field_on_and_off():
    grid, coef, cells = _node(gain=1.0)
    cells = kinetics_of(len(cells.gain), basal=np.asarray(cells.basal_receptors), secretion=np.where(np.arange(len(cells.gain)) == 0, 400.0, 0.0),
                        voxel=np.asarray(cells.voxel), onset=1 * HOUR, peak=7 * HOUR, off=22 * HOUR)
    state, _ = initialize(Coupled(coef, cells, grid, OPTIONS), 0.0)
    assert float(jnp.max(state[0])) == 0.0  # nothing secreted at t = 0
    peak_state, _ = advance(Coupled(coef, cells, grid, OPTIONS), state, 0.0, HOUR, 7)
    off_state, _ = advance(Coupled(coef, cells, grid, OPTIONS), peak_state, 7 * HOUR, HOUR, 16)
    assert float(jnp.max(peak_state[0])) > 1.0
    # after the shut-off (22 h) no source is left: backward Euler's maximum principle, at the
    # largest voxel of c' (lap c' <= 0 there, uptake >= 0), gives max c' <= max c / (1 + k_d dt)
    # exactly; these consumers take it down far faster
    at_off, _ = advance(Coupled(coef, cells, grid, OPTIONS), peak_state, 7 * HOUR, HOUR, 15)
    assert float(jnp.max(at_off[0])) > 0.0
    bound = float(jnp.max(at_off[0])) / (1 + float(coef.decay_per_s) * HOUR)
    assert float(jnp.max(off_state[0])) <= bound * (1 + 1e-12)
    assert float(jnp.max(off_state[0])) < 0.05 * bound


def test_coupled_run_writes_changing_receptors_its_attribution_and_a_balance_with_storage(tmp_path):
    import h5py
    from compose import compose_config

    from il2rd.simulate import run

    cfg = compose_config("grid.shape=[16,16,8]", "solver.kind=coupled", "solver.dt=1800", "time.end=21600",
                         "time.snapshot_every=19800", "+cell_types.treg.cd25_gain=10", "output.progress=false",
                         "+cell_types.il2_producer.secretion_course=[0,2,20]", "precision=float64", "solver.rtol=1e-10")
    result = run(cfg, tmp_path)
    with h5py.File(result.path) as f:
        np.testing.assert_allclose(f["time"][:], [0, 19800, 21600])  # the last snapshot one step after the one before
        fields = np.stack([f["checkpoint/il2_1"][...], f["checkpoint/il2_0"][...]])  # snapshots 1, 2 in float64
        receptors = f["cells/receptors"][:]
        types = f["cells/type"][:]
        names = [n.decode() for n in f["cells/type_names"][:]]
        tregs = types == names.index("treg")
        assert np.all(np.diff(receptors[:, tregs].mean(axis=1)) > 0)  # CD25 rises while IL-2 is made
        np.testing.assert_allclose(receptors[:, types == names.index("naive_t")], 100.0, rtol=1e-6)  # gain 1: none
        assert f["fields/il2"][0].max() == 0.0  # the course starts at 0: no IL-2 yet
        assert "attribution" in f
    # the last field is a backward-Euler step from the one before (zero-flux faces, no vessels), so
    # summed over the voxels: secreted - taken up - decayed = (N(t) - N(t - dt)) / dt, N its molecules
    s = result.summary
    assert not s.steady
    molecules = fields.sum(axis=(1, 2, 3)) * 10.0**3 * units.MOLECULES_PER_UM3_PER_PM
    storage = (molecules[1] - molecules[0]) / 1800.0
    assert abs(storage) > 1e-4 * s.secretion_molecules_per_s  # the field is still changing at 6 h
    net = s.secretion_molecules_per_s - s.uptake_molecules_per_s - s.decay_molecules_per_s
    assert net - storage == pytest.approx(0.0, abs=1e-8 * s.secretion_molecules_per_s)


def test_interrupted_coupled_run_resumes_to_the_same_result(tmp_path):
    """A coupled run cut after its fourth snapshot (n_snapshots is the commit marker: what lies
    beyond it is an unfinished write; the checkpoint slot of snapshot 3 is the one the fifth
    write would not touch) continues with `resume` from the checkpointed field and IL-2Ra to the
    uninterrupted run's snapshots."""
    import shutil

    import h5py
    from compose import compose_config

    from il2rd.simulate import run

    cfg = compose_config("grid.shape=[12,12,6]", "solver.kind=coupled", "solver.dt=1800", "time.end=14400",
                         "time.snapshot_every=3600", "+cell_types.treg.cd25_gain=10", "+cell_types.treg.il2rb=3e4",
                         "+cell_types.treg.gc=1e5", "+cell_types.il2_producer.secretion_course=[0,2,8]",
                         "output.progress=false", "precision=float64")
    whole = run(cfg, tmp_path / "whole")
    cut = tmp_path / "cut" / "il2rd.h5"
    cut.parent.mkdir()
    shutil.copy(whole.path, cut)
    with h5py.File(cut, "r+") as f:
        assert f.attrs["n_snapshots"] == 5
        f.attrs["n_snapshots"] = 4
        f.attrs["complete"] = False
        f["fields/il2"][4:] = -1.0  # what an unfinished write might leave: must be recomputed, not kept
    resumed = run(compose_config(f"resume={cut}"))
    with h5py.File(whole.path) as a, h5py.File(resumed.path) as b:
        assert b.attrs["n_snapshots"] == 5
        np.testing.assert_allclose(b["time"][:], a["time"][:])
        for name in ("fields/il2", "cells/receptors", "cells/receptors_intermediate", "cells/pstat5"):
            np.testing.assert_allclose(b[name][:], a[name][:], rtol=1e-6, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(b["checkpoint/il2ra_0"][:], a["checkpoint/il2ra_0"][:], rtol=1e-9)
        assert np.any(a["cells/receptors_intermediate"][-1] < a["cells/receptors_intermediate"][0])  # CD25 used IL-2Rb up
    # running the finished config again reuses the file, and its result is the final state's, not the basal one's
    again = run(cfg, tmp_path / "whole")
    assert again.wall_time_s == whole.wall_time_s  # read back, not recomputed
    for mine, theirs in zip(again.summary.types, whole.summary.types):
        assert mine.total_uptake_molecules_per_s == pytest.approx(theirs.total_uptake_molecules_per_s, rel=1e-6)
        # read back from the float32 cell columns (IL-2Ra below IL-2Rb = 3e4 is not a float32 integer)
        assert mine.mean_receptors == pytest.approx(theirs.mean_receptors, rel=1e-7)
    assert again.summary.secretion_molecules_per_s == pytest.approx(whole.summary.secretion_molecules_per_s, rel=1e-12)
    np.testing.assert_allclose(again.attribution.matrix_molecules_per_s, whole.attribution.matrix_molecules_per_s, rtol=1e-9)


def test_pstat5_of_other_affinities_is_the_high_affinity_curve_at_equal_occupancy():
    """A receptor with K_M = K signals at c like the reference receptor at c K_ref/K: same occupancy
    c/(K + c) = c'/(K_ref + c'). Intermediate affinity (~1 nM) then needs ~24x the IL-2."""
    s = Signalling()
    c = np.array([1.0, 10.0, 100.0, 1000.0])
    r = np.full(4, 8000.0)
    for km in (43.0, 1035.0):
        equivalent = c * s.reference_km_pM / km
        np.testing.assert_allclose(equivalent / (s.reference_km_pM + equivalent), c / (km + c), rtol=1e-12)
        np.testing.assert_allclose(s.pstat5(c, r, np.full(4, km)), s.pstat5(equivalent, r), rtol=1e-12)
    half_high = brentq(lambda x: float(s.pstat5(x, 8000.0, 43.0)) - 0.5, 1e-6, 1e6)
    half_intermediate = brentq(lambda x: float(s.pstat5(x, 8000.0, 1035.0)) - 0.5, 1e-6, 1e6)
    assert half_intermediate / half_high == pytest.approx(1035.0 / 43.0, rel=1e-8)
