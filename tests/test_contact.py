"""Contact delivery (contact.py): IL-2 handed from a source to the cells it touches.

What must hold, in float32 (the default) unless a test says otherwise: what is handed over equals
what is received (IL-2 conserved), no source hands more than phi q, no cell takes more than V from
contacts, only cells of partner types in reach (own voxel and face neighbours) receive and a
source never feeds itself; the split follows the partners' V; the field step's balance holds with
the field's share of the secretion, and the run's balance and attribution count both routes; a
tissue run (cells that walk) keeps them; the signal of a received flux is the occupancy formula;
bad input is refused naming the key."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from compose import compose_config
from il2rd import config
from il2rd.cells import contact
from il2rd.physics import kinetics
from il2rd.solvers import steppers
from il2rd.config import ConfigError
from il2rd.scenario import Scenario
from il2rd.simulate import run

SHAPE = (6, 5, 4)


def _contact(type_index, fraction_by_type, accepts):
    type_index = np.asarray(type_index)
    fraction = np.asarray(fraction_by_type, np.float64)
    return contact.Contact(jnp.asarray(fraction[type_index], jnp.float32), jnp.asarray(type_index, jnp.int32),
                           jnp.asarray(accepts), tuple(int(k) for k in np.flatnonzero(fraction > 0)), SHAPE)


def test_a_random_tissue_hands_over_what_it_receives_within_reach_and_capacity():
    rng = np.random.default_rng(3)
    n = 60
    voxel = np.stack([rng.integers(0, s, n) for s in SHAPE], axis=1)
    types = rng.integers(0, 3, n)  # 0: a source that feeds types 1 and 2; 1: a source that feeds type 2; 2: consumers
    accepts = np.array([[False, True, True], [False, False, True], [False, False, False]])
    cp = _contact(types, [0.7, 0.4, 0.0], accepts)
    vmax = jnp.asarray(np.where(types == 0, 0.0, rng.uniform(0.0, 3.0, n)), jnp.float32)
    q = jnp.asarray(np.where(types < 2, rng.uniform(1.0, 10.0, n), 0.0), jnp.float32)
    d = contact.delivery(cp, jnp.asarray(voxel, jnp.int32), vmax, q)
    handed, received = np.asarray(d.handed, np.float64), np.asarray(d.received, np.float64)
    assert received.shape == (n, 2)
    for m, s in enumerate((0, 1)):  # per source type: conserved
        assert received[:, m].sum() == pytest.approx(handed[types == s].sum(), rel=1e-5)
    assert np.all(handed <= np.asarray(cp.fraction) * np.asarray(q) * (1 + 1e-6))
    assert np.all(received.sum(axis=1) <= np.asarray(vmax) * (1 + 1e-6))
    assert np.all(received[types == 0] == 0) and np.all(received[types == 1, 1] == 0)  # not partners
    # a source hands over only if a partner with receptors is in reach, and then its full share
    # unless the partners it reaches are full
    reach = np.abs(voxel[:, None, :] - voxel[None, :, :]).sum(axis=-1) <= 1
    np.fill_diagonal(reach, False)
    for i in np.flatnonzero(types < 2):
        partners = reach[i] & accepts[types[i]][types] & (np.asarray(vmax) > 0)
        if not partners.any():
            assert handed[i] == 0
    assert handed.sum() > 0 and (received > 0).sum() > 5  # the test has something to check


def test_the_split_follows_the_partners_receptors_and_the_cap():
    """One source between two partners with V = 1 and 3 (and one beyond reach): they receive
    1/4 and 3/4 of phi q; with phi q above their V they take V each."""
    voxel = jnp.asarray([[2, 2, 2], [3, 2, 2], [2, 3, 2], [4, 2, 2]], jnp.int32)
    cp = _contact([0, 1, 1, 1], [0.5, 0.0], np.array([[False, True], [False, False]]))
    vmax = jnp.asarray([0.0, 1.0, 3.0, 5.0], jnp.float32)
    d = contact.delivery(cp, voxel, vmax, jnp.asarray([4.0, 0.0, 0.0, 0.0], jnp.float32))
    np.testing.assert_allclose(np.asarray(d.received[:, 0]), [0.0, 0.5, 1.5, 0.0], rtol=1e-6)
    assert float(d.handed[0]) == pytest.approx(2.0, rel=1e-6)
    d = contact.delivery(cp, voxel, vmax, jnp.asarray([40.0, 0.0, 0.0, 0.0], jnp.float32))
    np.testing.assert_allclose(np.asarray(d.received[:, 0]), [0.0, 1.0, 3.0, 0.0], rtol=1e-6)
    assert float(d.handed[0]) == pytest.approx(4.0, rel=1e-6)


def test_a_source_of_its_own_partner_type_feeds_others_not_itself():
    voxel = jnp.asarray([[1, 1, 1], [1, 1, 1]], jnp.int32)  # two cells sharing a voxel
    cp = _contact([0, 0], [0.5], np.array([[True]]))
    d = contact.delivery(cp, voxel, jnp.asarray([2.0, 2.0], jnp.float32), jnp.asarray([1.0, 0.0], jnp.float32))
    np.testing.assert_allclose(np.asarray(d.received[:, 0]), [0.0, 0.5], rtol=1e-6)


def test_the_signal_of_a_received_flux_is_the_occupancy_it_adds():
    """c' = K (f + d) / (1 - f - d), f = c / (K + c), d = received / V: the law's occupancy at c'
    is f + d; nothing received leaves c; a flux beyond the receptors is capped."""
    c, received, vmax, km = (jnp.asarray(a, jnp.float32) for a in ([0.0, 5.0, 100.0, 5.0], [0.3, 0.2, 0.0, 50.0],
                                                                     [1.0, 1.0, 1.0, 1.0], [43.0] * 4))
    seen = np.asarray(contact.seen_with_contact(c, received, vmax, km), np.float64)
    occupancy = seen / (43.0 + seen)
    f = np.asarray(c) / (43.0 + np.asarray(c))
    np.testing.assert_allclose(occupancy[:2], f[:2] + np.asarray(received)[:2], rtol=1e-5)
    assert seen[2] == pytest.approx(100.0)
    assert occupancy[3] == pytest.approx(contact.MAX_OCCUPANCY, rel=1e-6) and np.isfinite(seen[3])


CONTACT = ["grid.shape=[12,12,8]", "output.progress=false", "cell_types.il2_producer.contact=0.6",
           "cell_types.il2_producer.partners=[treg]", "cell_types.treg.density=2e5"]


@pytest.mark.parametrize("kind", ["coupled", "tissue"])
def test_a_step_with_contacts_keeps_the_field_balance(kind):
    """Over one backward-Euler step the field changes by its own share of the secretion less decay
    and uptake (float32 to the solve's tolerance), and that share plus the handed part is the
    whole secretion."""
    cfg = compose_config(*CONTACT, f"solver.kind={kind}", "solver.dt=300", "time.end=3600", "time.snapshot_every=1800")
    stepper = steppers.for_scenario(Scenario.build(config.parse(cfg)))
    state, _ = steppers.initialize(stepper, 0.0)
    after, _ = steppers.advance(stepper, state, 0.0, 300.0, 1)
    field = lambda s: np.asarray(stepper.field(s), np.float64)  # noqa: E731
    coef = stepper.coefficients_at(after, 300.0)
    u = np.asarray(kinetics.uptake_rate(stepper.field(after), coef), np.float64)
    s = np.asarray(coef.secretion_pM_per_s, np.float64).sum()
    change = np.sum(field(after) - field(state)) / 300.0
    assert change == pytest.approx(s - float(coef.decay_per_s) * field(after).sum() - u.sum(), abs=3e-5 * s)
    cells = stepper.cell_state(after, 300.0)
    q = np.asarray(stepper.cells.secretion_molecules_per_s, np.float64)
    if "alive" in cells:
        q = q * cells["alive"]
    assert cells["contact_handed"].sum() > 0.2 * 0.6 * q.sum()  # most producers touch a Treg
    assert cells["contact_received"].sum() == pytest.approx(cells["contact_handed"].sum(), rel=1e-5)


@pytest.fixture(scope="module")
def handed_run(tmp_path_factory):
    cfg = compose_config(*CONTACT, "solver.kind=tissue", "solver.dt=300", "time.end=3600", "time.snapshot_every=1800")
    return run(cfg, tmp_path_factory.mktemp("contact"))


def test_a_run_counts_both_routes_in_its_balance_the_file_and_the_attribution(handed_run):
    import h5py

    r, shares = handed_run, handed_run.attribution
    s = r.summary
    assert 0 < s.contact_molecules_per_s < s.secretion_molecules_per_s
    with h5py.File(r.path) as f:
        handed, received = f["cells/handed"][-1], f["cells/received"][-1]
        uptake = f["cells/uptake"][-1]
        types = f["cells/type"][:]
    assert handed.sum() == pytest.approx(s.contact_molecules_per_s, rel=1e-5)
    assert received.sum() == pytest.approx(handed.sum(), rel=1e-4)
    assert np.all(uptake >= received - 1e-6)  # the uptake column includes what is received
    treg = list(r.summary.types).index(next(t for t in r.summary.types if t.name == "treg"))
    assert received[types != treg].sum() == 0  # partners=[treg]
    k = shares.sources.index("il2_producer")
    assert shares.output_molecules_per_s[k] == pytest.approx(s.secretion_molecules_per_s, rel=1e-4)
    assert shares.closure < 0.03  # a tissue run's last field attributed as if steady: 1 - 2 % without contacts too
    assert shares.matrix_molecules_per_s[k, treg] >= 0.99 * handed.sum()  # the Tregs got at least the handed IL-2


def test_contact_input_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"cell_types.il2_producer.contact.*allowed|cell_types.il2_producer.contact.*<= 1"):
        config.parse(compose_config(*CONTACT, "solver.kind=coupled", "cell_types.il2_producer.contact=1.5"))
    with pytest.raises(ConfigError, match="cell_types.il2_producer.partners.*'tregs'"):
        config.parse(compose_config(*CONTACT, "solver.kind=coupled", "cell_types.il2_producer.partners=[tregs]"))
    with pytest.raises(ConfigError, match="cell_types.il2_producer.contact.*solver.kind=coupled or tissue"):
        config.parse(compose_config(*CONTACT))
