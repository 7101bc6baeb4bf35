"""Motility (il2rd/cells/motility.py): the persistent random walk against its exact statistics, and the
rules it must never break (confinement, excluded volume), in float32 (the default) and float64.

References: Fuerth's mean squared displacement 6 M [t - tau (1 - exp(-t/tau))] from a stationary
start, the stationary mean squared speed 3 M / tau, and the velocity autocorrelation exp(-t/tau);
each compared within a few standard errors of the sample mean (seeded, so the test is repeatable)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from il2rd.cells import motility
from il2rd.cells.motility import Walk

MINUTE = 60.0
M_UM2_PER_S = 60.0 / MINUTE  # naive T cells: motility coefficient ~60 um^2/min (Miller et al. 2002)
TAU_S = 1.5 * MINUTE


def free_walk(n_cells, shape=(32, 32, 32), h=10.0, room=0.0, periodic=(True, True, True), m=M_UM2_PER_S, tau=TAU_S,
              allowed=None, dtype=jnp.float32):
    n_vox = math.prod(shape)
    allowed = jnp.ones((1, n_vox), bool) if allowed is None else jnp.asarray(allowed).reshape(1, n_vox)
    return Walk(jnp.full(n_cells, m, dtype), jnp.full(n_cells, tau, dtype), jnp.full(n_cells, room, dtype),
                jnp.zeros(n_cells, jnp.int32), allowed, tuple(shape), h, periodic)


def walk_for(key, walkers, walk, dt_s, n_steps):
    """The walkers after each of n_steps steps (a lax.scan), and which moves were refused."""

    def body(w, k):
        w, _ = motility.step(k, w, walk, dt_s)
        return w, w

    _, history = jax.lax.scan(body, walkers, jax.random.split(key, n_steps))
    return history


walk_for_jit = jax.jit(walk_for, static_argnames=("n_steps",))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("dt_s", [20.0, 120.0])
def test_mean_squared_displacement_is_fuerths(dtype, dt_s):
    """From a stationary start the MSD at every step time is exact whatever dt (the walk draws
    the exact transition): within 4 standard errors at each of 30 times from t << tau to t >> tau."""
    n = 4000
    walk = free_walk(n, dtype=dtype)
    key_start, key_walk = jax.random.split(jax.random.PRNGKey(7))
    voxel = jax.random.randint(key_start, (n, 3), 0, 32)
    walkers = motility.start(key_start, motility.voxel_centres_um(voxel, walk.spacing_um, dtype), walk, dtype)
    history = walk_for_jit(key_walk, walkers, walk, jnp.asarray(dt_s, dtype), n_steps=30)
    t = dt_s * np.arange(1, 31)
    squared = np.sum(np.asarray(history.displacement_um, np.float64) ** 2, axis=-1)  # (steps, cells)
    msd, se = squared.mean(axis=1), squared.std(axis=1) / math.sqrt(n)
    exact = motility.fuerth_msd_um2(t, M_UM2_PER_S, TAU_S)
    assert np.all(np.abs(msd - exact) < 4 * se), np.max(np.abs(msd - exact) / se)
    # both regimes are in the range: ballistic ~ t^2 early, diffusive ~ t late
    assert exact[0] < 0.5 * 6 * M_UM2_PER_S * t[0] and exact[-1] > 0.9 * 6 * M_UM2_PER_S * (t[-1] - TAU_S)


def test_speed_and_velocity_memory_are_the_ou_processs():
    n, dt = 4000, 30.0
    walk = free_walk(n, dtype=jnp.float64)
    key_start, key_walk = jax.random.split(jax.random.PRNGKey(3))
    walkers = motility.start(key_start, motility.voxel_centres_um(jax.random.randint(key_start, (n, 3), 0, 32), 10.0,
                                                                    jnp.float64), walk, jnp.float64)
    history = walk_for_jit(key_walk, walkers, walk, jnp.asarray(dt), n_steps=8)
    v0 = np.asarray(walkers.velocity_um_per_s)
    v = np.asarray(history.velocity_um_per_s)
    speed2 = np.sum(v[-1] ** 2, axis=1)
    assert abs(speed2.mean() - 3 * M_UM2_PER_S / TAU_S) < 4 * speed2.std() / math.sqrt(n)
    for k in (0, 2, 5):  # <v(0) . v(t)> = 3 (M / tau) exp(-t / tau)
        product = np.sum(v0 * v[k], axis=1)
        exact = 3 * M_UM2_PER_S / TAU_S * math.exp(-(k + 1) * dt / TAU_S)
        assert abs(product.mean() - exact) < 4 * product.std() / math.sqrt(n)
    # the mean speed the literature reports: sqrt(8 / (3 pi)) v_rms, and M from it
    mean_speed = np.sqrt(speed2).mean()
    assert mean_speed == pytest.approx(math.sqrt(8 / (3 * math.pi)) * math.sqrt(3 * M_UM2_PER_S / TAU_S), rel=0.02)
    assert motility.mean_speed_to_motility(mean_speed * MINUTE, TAU_S / MINUTE) == pytest.approx(M_UM2_PER_S * MINUTE,
                                                                                                  rel=0.04)


def test_same_key_same_walk_and_sessile_cells_stay():
    n = 50
    walk = free_walk(n)
    walk = Walk(walk.motility_um2_per_s.at[:10].set(0.0), walk.persistence_s, walk.room, walk.region, walk.allowed,
                walk.shape, walk.spacing_um, walk.periodic)
    key = jax.random.PRNGKey(11)
    walkers = motility.start(key, motility.voxel_centres_um(jnp.full((n, 3), 16), 10.0), walk)
    a = walk_for_jit(key, walkers, walk, jnp.float32(60.0), n_steps=10)
    b = walk_for_jit(key, walkers, walk, jnp.float32(60.0), n_steps=10)
    np.testing.assert_array_equal(np.asarray(a.position_um), np.asarray(b.position_um))
    np.testing.assert_array_equal(np.asarray(a.position_um[:, :10]), np.broadcast_to(np.asarray(walkers.position_um[:10]),
                                                                                        (10, 10, 3)))
    assert np.all(np.any(np.asarray(a.position_um[-1, 10:]) != np.asarray(walkers.position_um[10:]), axis=1))


def _sphere_mask(shape, centre, radius):
    x, y, z = np.meshgrid(*(np.arange(n) + 0.5 for n in shape), indexing="ij")
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= radius**2


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_cells_never_leave_their_region_nor_the_lattice(dtype):
    """A sphere-shaped compartment in a lattice with open (non-periodic) faces, fast cells (several
    um per step), many steps: every position at every step lies in the region."""
    shape = (16, 16, 16)
    mask = _sphere_mask(shape, (8, 8, 8), 5.5)
    n = 200
    inside = np.argwhere(mask)
    voxel = inside[np.random.default_rng(0).choice(len(inside), n, replace=False)]
    walk = free_walk(n, shape=shape, periodic=(False, False, False), m=5 * M_UM2_PER_S, allowed=mask.ravel(), dtype=dtype)
    key = jax.random.PRNGKey(5)
    walkers = motility.start(key, motility.voxel_centres_um(voxel, walk.spacing_um, dtype), walk, dtype)
    history = walk_for_jit(key, walkers, walk, jnp.asarray(60.0, dtype), n_steps=100)
    idx = np.floor(np.asarray(history.position_um, np.float64) / walk.spacing_um).astype(int)
    assert idx.min() >= 0 and idx.max() < 16
    assert mask[idx[..., 0], idx[..., 1], idx[..., 2]].all()
    moved = np.any(idx[-1] != voxel, axis=1).mean()
    assert moved > 0.5  # the cells did walk


@pytest.mark.parametrize("per_voxel", [1, 3])
def test_no_voxel_ever_holds_more_cells_than_fit(per_voxel):
    """Crowded cells (half of the room filled) walk 100 steps: at every step no voxel's load
    exceeds one voxel, and cells still move (refusals do not freeze the crowd)."""
    shape = (10, 10, 10)
    n_vox = math.prod(shape)
    n = n_vox * per_voxel // 2
    rng = np.random.default_rng(1)
    slots = rng.permutation(np.repeat(np.arange(n_vox), per_voxel))[:n]
    voxel = np.stack(np.unravel_index(slots, shape), axis=1)
    walk = free_walk(n, shape=shape, room=1.0 / per_voxel, m=3 * M_UM2_PER_S)
    key = jax.random.PRNGKey(2)
    walkers = motility.start(key, motility.voxel_centres_um(voxel, walk.spacing_um), walk)
    assert float(jnp.max(motility.load_per_voxel(walkers.position_um, walk))) <= 1.0 + 1e-6
    history = walk_for_jit(key, walkers, walk, jnp.float32(60.0), n_steps=100)
    loads = jax.vmap(lambda p: motility.load_per_voxel(p, walk))(history.position_um)
    assert float(jnp.max(loads)) <= 1.0 + 1e-6
    counts = jax.vmap(lambda p: jnp.bincount(motility.flat_index(motility.voxel_of(p, 10.0, shape), shape), length=n_vox))(
        history.position_um)
    assert int(jnp.max(counts)) <= per_voxel
    start_voxel = motility.flat_index(jnp.asarray(voxel), shape)
    final_voxel = motility.flat_index(motility.voxel_of(history.position_um[-1], 10.0, shape), shape)
    assert float(jnp.mean(final_voxel != start_voxel)) > 0.5


def test_admission_takes_entering_cells_in_order_while_room_lasts():
    """Four cells want voxel 0 (room for two, one staying there): one is admitted, the one with the
    lowest priority; a cell leaving a voxel still counts there this step, so a cell entering it is
    admitted only beside it; a voxel with room for more takes one newcomer a step; tied priorities
    admit one (the lower index)."""
    old = jnp.array([0, 1, 2, 3, 4, 5])
    new = jnp.array([0, 0, 0, 0, 1, 9])
    wants = new != old
    room = jnp.full(6, 0.5)
    priority = jnp.array([0.0, 0.7, 0.2, 0.9, 0.1, 0.5])
    admitted = motility.admit(old, new, wants, room, priority, 10)
    # cell 0 stays in voxel 0 (0.5), cell 2 has the lowest priority of those entering: admitted (1.0 in all);
    # cells 1 and 3 are refused; voxel 1 counts cell 1 (leaving or not) and takes cell 4 beside it: 1.0, fits;
    # cell 5 goes to an empty voxel
    np.testing.assert_array_equal(np.asarray(admitted), [False, False, True, False, True, True])
    tight = motility.admit(old, new, wants, jnp.full(6, 0.6), priority, 10)  # voxel 1 cannot take cell 4 beside cell 1
    np.testing.assert_array_equal(np.asarray(tight), [False, False, False, False, False, True])
    empty = motility.admit(jnp.array([1, 2, 3]), jnp.array([0, 0, 0]), jnp.array([True, True, True]), jnp.full(3, 0.25),
                           jnp.array([0.5, 0.5, 0.9]), 4)  # room for four, a tie at the lowest priority
    np.testing.assert_array_equal(np.asarray(empty), [True, False, False])
