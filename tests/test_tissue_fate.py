"""solver.kind=tissue with fate.enabled (fate.py, cell_steppers.Tissue): cells that divide and die in a run.

What must hold, in float32 (the default) unless a test says otherwise: the IL-2 balance of a step in
which cells are born and die (the field step acts with the cells alive at its end); the per-cell
uptake adds up to the field's (empty slots take up nothing); over a run no voxel holds two cells,
daughters stay in their type's region, lineage ids are consistent and empty slots are NaN in the
file; an interrupted run resumes to the uninterrupted one (the fate state is checkpointed); a
batch equals each run alone; bad fate input is refused naming the key."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from compose import compose_config
from il2rd import config
from il2rd.physics import kinetics, units
from il2rd.analysis import readouts
from il2rd.solvers import steppers
from il2rd.config import ConfigError
from il2rd.scenario import Scenario
from il2rd.simulate import _at_state, run
from il2rd.sweep import run_batched

FAST = ["cell_types.treg.division=20", "cell_types.treg.death=4", "cell_types.treg.cycle=1",  # per day, h
        "cell_types.il2_producer.division=0", "cell_types.il2_producer.death=0", "cell_types.naive_t.death=0"]
FATE = ["grid.shape=[12,12,8]", "solver.kind=tissue", "solver.dt=120", "output.progress=false", "fate.enabled=true",
        "fate.capacity=3", "cell_types.treg.density=2e5", "cell_types.naive_t.density=2e5", *FAST]


def test_a_step_with_births_and_deaths_keeps_the_balance():
    """Over one backward-Euler step in which cells were born and died, sum (c1 - c0) / dt equals
    secretion - decay - uptake of the step's end (zero-flux faces) to the solve's tolerance, and
    the cells' own uptakes (readouts) add up to the field's (float64, rtol 1e-10)."""
    cfg = compose_config(*FATE, "precision=float64", "solver.rtol=1e-10", "time.end=7200", "time.snapshot_every=3600")
    scenario = Scenario.build(config.parse(cfg))
    stepper = steppers.for_scenario(scenario)
    state, _ = steppers.initialize(stepper, 0.0)
    state, _ = steppers.advance(stepper, state, 0.0, 120.0, 20)
    before = state
    for k in range(10):  # until a step both adds and removes cells
        after, info = steppers.advance(stepper, before, 2400.0 + 120.0 * k, 120.0, 1)
        a0, a1 = np.asarray(before.fate.alive), np.asarray(after.fate.alive)
        ids0, ids1 = np.asarray(before.fate.cell_id), np.asarray(after.fate.cell_id)
        if np.any(a1 & ((ids1 != ids0) | ~a0)) and np.any(a0 & ~a1):
            break
        before = after
    else:
        pytest.fail("no step with both a birth and a death")
    t1 = 2400.0 + 120.0 * (k + 1)
    coef = stepper.coefficients_at(after, t1)
    c0, c1 = np.asarray(before.field), np.asarray(after.field)
    u = np.asarray(kinetics.uptake_rate(after.field, coef))
    secretion = float(np.sum(np.asarray(coef.secretion_pM_per_s)))
    change = np.sum(c1 - c0) / 120.0
    rhs = secretion - float(coef.decay_per_s) * np.sum(c1) - np.sum(u)
    assert change == pytest.approx(rhs, abs=1e-7 * secretion)
    assert abs(change) > 1e-4 * secretion  # the step changed the store: the check is not 0 = 0
    now, cells = _at_state(scenario, stepper, after, t1)
    per_cell = readouts.cell_columns(c1, now, cells["il2ra"])["uptake"]
    field_uptake = units.voxel_rate_to_cell_rate_molecules_per_s(float(np.sum(u)), now.interstitial_voxel_volume_um3)
    assert per_cell.sum() == pytest.approx(field_uptake, rel=1e-10)
    assert np.all(per_cell[~a1] == 0)


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """Tregs in a sphere dividing fast among naive T cells, 12 h, a snapshot every 2 h (float32)."""
    sphere = "{kind: sphere, center: [60, 60, 40], radius: 45}"
    return run(compose_config(*FATE, "time.end=43200", "time.snapshot_every=7200", f"+cell_types.treg.region={sphere}"),
               tmp_path_factory.mktemp("grown"))


def test_a_run_grows_within_its_room_and_region(grown):
    with h5py.File(grown.path) as f:
        alive = f["cells/alive"][:] > 0
        tracks = np.stack([f[f"cells/track_{a}"][:] for a in "xyz"], axis=-1)
        treg = f["cells/type"][:] == list(f["cells/type"].attrs["type_names"]).index("treg")
        ids, parent, lineage = (f[f"cells/{n}"][:] for n in ("cell_id", "parent", "lineage"))
        il2 = f["cells/il2"][:]
    n_treg = (alive & treg).sum(axis=1)
    assert n_treg[-1] != n_treg[0] and np.all(n_treg <= treg.sum())
    assert np.all(alive[:, ~treg])  # naive T cells and producers neither divide nor die here
    for s in range(len(alive)):
        voxel = np.floor(tracks[s][alive[s]] / 10.0).astype(int)
        assert np.bincount(np.ravel_multi_index(voxel.T, (12, 12, 8))).max() == 1
        centres = (np.floor(tracks[s][alive[s] & treg] / 10.0) + 0.5) * 10.0
        assert np.all(np.linalg.norm(centres - [60, 60, 40], axis=-1) <= 45)
        assert np.all(np.isnan(il2[s][~alive[s]])) and np.all(np.isfinite(il2[s][alive[s]]))
        living = ids[s][alive[s]]
        assert len(np.unique(living)) == len(living)
    born = alive[-1] & (parent[-1] >= 0)
    assert born.sum() > 10 and np.all(lineage[-1][born] < alive[0].sum())
    # the printed table counts the living cells
    assert grown.summary.types[[t.name for t in grown.summary.types].index("treg")].count == n_treg[-1]


def test_an_interrupted_fate_run_resumes_to_the_same_result(tmp_path):
    cfg = compose_config(*FATE, "time.end=10800", "time.snapshot_every=3600")
    whole = run(cfg, tmp_path / "whole")
    cut = tmp_path / "cut" / "il2rd.h5"
    cut.parent.mkdir()
    shutil.copy(whole.path, cut)
    with h5py.File(cut, "r+") as f:
        f.attrs["n_snapshots"] = 3  # snapshot 2's checkpoint slot is whole (snapshot 3 wrote the other)
        f.attrs["complete"] = False
    resumed = run(compose_config(f"resume={cut}"))
    with h5py.File(whole.path) as a, h5py.File(resumed.path) as b:
        assert b.attrs["n_snapshots"] == 4
        for name in ("fields/il2", "cells/alive", "cells/cell_id", "cells/parent", "cells/track_x", "cells/uptake"):
            np.testing.assert_array_equal(b[name][:], a[name][:], err_msg=name)


def test_a_batch_of_fate_runs_equals_each_alone(tmp_path, caplog):
    points = [compose_config(*FATE, "time.end=3600", "time.snapshot_every=1800", f"cell_types.treg.receptors={r}")
              for r in (5e3, 2e4)]
    alone = [run(c, tmp_path / "alone" / str(i)).path for i, c in enumerate(points)]
    with caplog.at_level("INFO", logger="il2rd"):
        batched = run_batched(points, [tmp_path / "batch" / str(i) for i in range(2)], progress=False)
    assert "solved 2 runs as one batch" in caplog.text
    for a, b in zip(alone, batched):
        with h5py.File(a) as fa, h5py.File(b) as fb:
            np.testing.assert_array_equal(fb["cells/alive"][:], fa["cells/alive"][:])
            np.testing.assert_allclose(fb["fields/il2"][:], fa["fields/il2"][:], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("overrides, key", [
    (["solver.kind=coupled"], "fate.enabled"),
    (["cell_types.naive_t.division=-1"], "cell_types.naive_t.division"),
    (["cell_types.naive_t.death=100"], "cell_types.naive_t.death"),
    (["cell_types.naive_t.cycle=nan"], "cell_types.naive_t.cycle"),
    (["fate.capacity=0.5"], "fate.capacity"),
    (["fate.averaging=0"], "fate.averaging"),
    (["solver.dt=3600"], "solver.dt"),
])
def test_bad_fate_input_is_refused_naming_the_key(overrides, key):
    args = [a for a in FATE if not any(a.split("=")[0] == o.split("=")[0] for o in overrides)]
    with pytest.raises(ConfigError) as info:
        config.parse(compose_config(*args, *overrides, "time.end=7200"))
    assert str(info.value).startswith(key), str(info.value)


def test_the_figures_of_a_growing_run(grown, tmp_path):
    """population.png, tracks.png, distance.png and the slice are drawn from the file of a run with
    fate (empty slots are NaN there); a run without fate skips population.png, saying why."""
    from PIL import Image

    from il2rd import plot

    skipped = []
    written = plot.make_figures(grown.path, tmp_path / "figs", only=("population", "tracks", "distance", "slice"),
                                report=skipped.append, gif=False)
    assert {p.name for p in written} == {"population.png", "tracks.png", "distance.png", "slice.png"}, skipped
    with Image.open(tmp_path / "figs" / "population.png") as image:
        assert len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)) > 16
    still = run(compose_config("grid.shape=[12,12,8]", "output.progress=false"), tmp_path / "steady").path
    skipped = []
    assert plot.make_figures(still, tmp_path / "none", only=("population",), report=skipped.append) == []
    assert skipped and "neither divide nor die" in skipped[0]
