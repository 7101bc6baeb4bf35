"""Cell fate (il2rd/cells/fate.py) against mathematics: the birth-death process's exact mean and variance
at constant signal, whatever the step; the time-averaged pSTAT5's exact relaxation; capacity,
excluded volume and confinement never violated by daughters; lineage bookkeeping; the minimal
cycle time. Float32, the default precision, unless a test says otherwise."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from il2rd.cells import fate, motility

DAY = fate.DAY_S
HOUR = fate.HOUR_S


def _setup(n_placed, n_slots, shape=(20, 20, 20), room=0.0, division=1.0 / DAY, death=0.25 / DAY, cycle=0.0,
           periodic=(True, True, True), allowed=None, seed=0, dtype=jnp.float32, types=None):
    """n_slots slots of one type (or `types` (n_slots,) indices), the first n_placed alive at random
    voxels (one per voxel where room = 1), a walk that does not move, and constant rates."""
    rng = np.random.default_rng(seed)
    h = 10.0
    n_vox = math.prod(shape)
    flat = rng.choice(n_vox, size=n_slots, replace=n_slots > n_vox)
    voxel = np.stack(np.unravel_index(flat, shape), axis=-1)
    position = (voxel + rng.uniform(0.1, 0.9, voxel.shape)) * h
    types = np.zeros(n_slots, np.int32) if types is None else np.asarray(types, np.int32)
    allowed = np.ones((1, n_vox), bool) if allowed is None else allowed
    walk = motility.Walk(jnp.zeros(n_slots, dtype), jnp.ones(n_slots, dtype), jnp.full(n_slots, room, dtype),
                         jnp.zeros(n_slots, jnp.int32), jnp.asarray(allowed), shape, h, periodic)
    walkers = motility.Walkers(jnp.asarray(position, dtype), jnp.zeros((n_slots, 3), dtype), jnp.zeros((n_slots, 3), dtype))
    order = np.argsort(types, kind="stable").astype(np.int32)
    n_types = int(types.max()) + 1
    start_of = np.minimum(np.searchsorted(types[order], np.arange(n_types)), n_slots - 1).astype(np.int32)
    per = lambda v: jnp.full(n_slots, v, dtype)  # noqa: E731
    rates = fate.Rates(per(division), per(death), per(cycle), jnp.asarray(types), jnp.asarray(order), jnp.asarray(start_of),
                       averaging_s=6 * HOUR, half_pstat5=0.5, hill=2.0)
    alive = np.arange(n_slots) < n_placed
    return walk, walkers, rates, alive


def _full_signal(rates):
    """Rates whose response h is 1 at pSTAT5 1 to round-off: K tiny."""
    import dataclasses
    return dataclasses.replace(rates, half_pstat5=1e-6)


def _run(walk, walkers, rates, alive, dt_s, n_steps, pstat5=1.0, seed=1, every=1):
    n = alive.shape[0]
    dtype = walkers.position_um.dtype
    state = fate.start(alive, jnp.full(n, pstat5, dtype), dtype)
    receptors = jnp.arange(n, dtype=dtype)
    p = jnp.full(n, pstat5, dtype)
    step = jax.jit(fate.step)
    key = jax.random.PRNGKey(seed)
    history = []
    for k in range(n_steps):
        key, sub = jax.random.split(key)
        state, walkers, receptors = step(sub, state, walkers, walk, rates, p, dt_s, receptors)
        if (k + 1) % every == 0:
            history.append((state, walkers, receptors))
    return history


def _birth_death_mean_sd(n0, b, d, t):
    """Mean and sd of a linear birth-death process from n0 cells at time t (Kendall 1948)."""
    g = b - d
    mean = n0 * math.exp(g * t)
    var = n0 * (b + d) / g * math.exp(g * t) * (math.exp(g * t) - 1.0) if g else n0 * 2 * b * t
    return mean, math.sqrt(var)


@pytest.mark.parametrize("b_per_day, d_per_day", [(1.0, 0.25), (0.2, 1.0), (0.6, 0.6)])
def test_population_follows_the_exact_birth_death_mean_at_any_step(b_per_day, d_per_day):
    """At a constant pSTAT5 of half response (h = 1/2: division b_max / 2, death d_0 / 2) the number
    alive is N0 exp((b - d) t) within 4 sd of the process's own spread, at steps of 3 h (where the
    naive P = rate dt would end 3 sd off in the growth case)."""
    n0, dt = 4000, 3 * HOUR
    walk, walkers, rates, alive = _setup(n0, 16000, division=2 * b_per_day / DAY, death=2 * d_per_day / DAY)
    history = _run(walk, walkers, rates, alive, dt, 12, pstat5=rates.half_pstat5)
    for k, (state, _, _) in enumerate(history, start=1):
        mean, sd = _birth_death_mean_sd(n0, b_per_day, d_per_day, k * dt / DAY)
        got = int(np.sum(np.asarray(state.alive)))
        assert abs(got - mean) < 4 * sd + 1, (k, got, mean, sd)
    naive = n0 * (1 + (b_per_day - d_per_day) * dt / DAY) ** 12
    if b_per_day > d_per_day:
        assert abs(naive - _birth_death_mean_sd(n0, b_per_day, d_per_day, 12 * dt / DAY)[0]) > 2.5 * sd


def test_without_signal_cells_die_at_the_death_rate_and_none_divide():
    n0, dt = 5000, HOUR
    walk, walkers, rates, alive = _setup(n0, 6000, division=2.0 / DAY, death=1.0 / DAY)
    history = _run(walk, walkers, rates, alive, dt, 24, pstat5=0.0)
    state = history[-1][0]
    mean, sd = _birth_death_mean_sd(n0, 0.0, 1.0, 1.0)
    assert abs(int(np.sum(np.asarray(state.alive))) - mean) < 4 * sd
    assert int(state.next_id) == n0 and not np.any(np.asarray(state.divisions))


def test_pstat5_mean_relaxes_exactly():
    walk, walkers, rates, alive = _setup(50, 50, division=0.0, death=0.0)
    state = fate.start(alive, jnp.zeros(50), jnp.float32)
    for k in range(1, 7):
        state, walkers, _ = fate.step(jax.random.PRNGKey(k), state, walkers, walk, rates, jnp.full(50, 0.8), 2 * HOUR,
                                      jnp.zeros(50))
        want = 0.8 * (1 - math.exp(-k * 2 * HOUR / rates.averaging_s))
        np.testing.assert_allclose(np.asarray(state.pstat5_mean), want, rtol=1e-5)


def test_daughters_respect_capacity_room_confinement_and_type():
    """Two types, one voxel per cell (room 1), a region of half the lattice: after many divisions
    no voxel holds two cells, no cell sits outside its region, no type has more alive than its
    slots, and full slots make divisions wait (pending) rather than vanish."""
    shape = (12, 12, 12)
    allowed = np.zeros(shape, bool)
    allowed[:6] = True
    types = np.array([0] * 300 + [1] * 300)
    rng = np.random.default_rng(3)
    walk, walkers, rates, _ = _setup(0, 600, shape=shape, room=1.0, division=6.0 / DAY, death=0.0, types=types,
                                     periodic=(False, False, False), allowed=allowed.reshape(1, -1))
    # placed cells: 100 of each type on distinct voxels of the region; the rest free slots
    inside = np.flatnonzero(allowed.ravel())
    flat = rng.choice(inside, size=600, replace=False)
    voxel = np.stack(np.unravel_index(flat, shape), axis=-1)
    walkers = motility.Walkers(jnp.asarray((voxel + 0.5) * 10.0, jnp.float32), walkers.velocity_um_per_s,
                               walkers.displacement_um)
    alive = np.zeros(600, bool)
    alive[:100] = alive[300:400] = True
    history = _run(walk, walkers, _full_signal(rates), alive, HOUR, 72, every=8)
    for state, w, _ in history:
        a = np.asarray(state.alive)
        v = np.asarray(motility.voxel_of(w.position_um, 10.0, shape))[a]
        flat_v = np.ravel_multi_index(v.T, shape)
        assert np.bincount(flat_v).max() <= 1
        assert allowed.ravel()[flat_v].all()
        assert a[:300].sum() <= 300 and a[300:].sum() <= 300
    last = history[-1][0]
    a = np.asarray(last.alive)
    assert a.sum() > 400 and np.any(np.asarray(last.pending))  # grew, and full: waiting
    assert a.sum() <= allowed.sum()


def test_lineage_bookkeeping():
    walk, walkers, rates, alive = _setup(200, 2000, division=3.0 / DAY, death=0.5 / DAY)
    history = _run(walk, walkers, _full_signal(rates), alive, HOUR, 48)
    state = history[-1][0]
    a = np.asarray(state.alive)
    ids, parent, lineage = (np.asarray(x)[a] for x in (state.cell_id, state.parent, state.lineage))
    assert len(np.unique(ids)) == len(ids) and ids.max() < int(state.next_id)
    placed = ids < 200
    assert np.all(parent[placed] == -1) and np.all(lineage[placed] == ids[placed])
    assert np.all((parent[~placed] >= 0) & (parent[~placed] < ids[~placed]))
    assert np.all((lineage >= 0) & (lineage < 200))
    divisions = np.asarray(state.divisions)[a]
    assert np.all(divisions[~placed] >= 1)
    founder = dict(zip(ids, lineage))  # a living daughter is of its living mother's lineage
    pairs = [(c, p) for c, p in zip(ids, parent) if p in founder]
    assert len(pairs) > 100 and all(founder[c] == founder[p] for c, p in pairs)


def test_a_cell_divides_at_most_once_per_cycle():
    """b far above 1 / cycle: divisions happen at the cycle time, so after t no cell counts more
    than t / cycle divisions."""
    walk, walkers, rates, alive = _setup(50, 5000, division=20.0 / DAY, death=0.0, cycle=8 * HOUR)
    history = _run(walk, walkers, _full_signal(rates), alive, HOUR, 40)
    state = history[-1][0]
    assert int(np.asarray(state.divisions).max()) <= 40 // 8
    assert int(np.asarray(state.divisions).max()) >= 3


def test_event_probabilities_are_exact_in_the_mean():
    b, d = jnp.asarray([1e-5, 2e-5, 3e-5, 0.0]), jnp.asarray([2e-5, 2e-5, 0.0, 0.0])
    for dt in (60.0, 3600.0, 6 * 3600.0):
        p_b, p_d = fate.event_probabilities(b, d, dt)
        np.testing.assert_allclose(1 + np.asarray(p_b, np.float64) - np.asarray(p_d), np.exp((np.asarray(b) - np.asarray(d)) * dt),
                                   rtol=1e-6)
