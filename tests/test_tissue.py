"""solver.kind=tissue (cell_steppers.Tissue, motility.py): the coupled run with cells that move.

What must hold: cells that do not move give exactly the coupled run; the field is advanced with
each cell acting where it now is (its per-cell uptake adds up to the field's uptake at the moved
positions, and not at the old ones); no cell leaves its region or overfills a voxel over a run;
an interrupted run resumes to the uninterrupted one (the walk's random key is checkpointed);
a batch equals its points alone; bad motility input is refused naming the key."""

from __future__ import annotations

import dataclasses
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

SMALL = ["grid.shape=[12,12,8]", "solver.dt=60", "output.progress=false", "precision=float64"]
TISSUE = [*SMALL, "solver.kind=tissue", "time.end=600", "time.snapshot_every=300"]
STILL = [f"cell_types.{t}.{k}=0" for t in ("il2_producer", "treg", "naive_t") for k in ("speed", "motility")]


def test_cells_that_do_not_move_give_the_coupled_run(tmp_path):
    tissue = run(compose_config(*TISSUE, *STILL), tmp_path / "tissue")
    coupled = run(compose_config(*TISSUE[:-3], "solver.kind=coupled", *TISSUE[-2:], *STILL), tmp_path / "coupled")
    with h5py.File(tissue.path) as a, h5py.File(coupled.path) as b:
        np.testing.assert_array_equal(a["time"][:], b["time"][:])
        for name in ("fields/il2", "cells/receptors", "cells/pstat5", "cells/uptake"):
            np.testing.assert_allclose(a[name][:], b[name][:], rtol=1e-12, atol=1e-15, err_msg=name)
        np.testing.assert_array_equal(a["cells/track_x"][-1], a["cells/x"][:])  # nobody moved


def _advanced(n_steps=3, *extra):
    scenario = Scenario.build(config.parse(compose_config(*TISSUE, *extra)))
    stepper = steppers.for_scenario(scenario)
    state, _ = steppers.initialize(stepper, 0.0)
    state, info = steppers.advance(stepper, state, 0.0, 60.0, n_steps)
    assert bool(info.converged)
    return scenario, stepper, state


def test_each_cell_takes_up_where_it_now_is():
    """After three steps the cells have moved; their per-cell uptake (the readouts, from the moved
    stencils) adds up to the field's uptake u(c) of the moved coefficients, to round-off, while the
    same field read with the cells where they started does not."""
    scenario, stepper, state = _advanced()
    moved, cells = _at_state(scenario, stepper, state, 180.0)
    c = np.asarray(state.field)
    assert np.mean(np.any(moved.population.voxel != scenario.population.voxel, axis=1)) > 0.1
    field_uptake = units.voxel_rate_to_cell_rate_molecules_per_s(
        float(np.sum(np.asarray(kinetics.uptake_rate(state.field, moved.coefficients)))), moved.interstitial_voxel_volume_um3)
    per_cell = readouts.cell_columns(c, moved, cells["il2ra"])["uptake"]
    assert per_cell.sum() == pytest.approx(field_uptake, rel=1e-10)
    still = dataclasses.replace(moved, population=scenario.population, coupling=scenario.coupling)
    unmoved = readouts.cell_columns(c, still, cells["il2ra"])["uptake"]
    assert np.max(np.abs(unmoved - per_cell)) > 1e-3 * np.max(per_cell)  # where a cell is matters


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    """Tregs confined to a sphere (their placement region), every type walking among the others
    (one 5 um cell per 10 um voxel: two do not fit), 20 steps with a snapshot after each."""
    sphere = "{kind: sphere, center: [60, 60, 40], radius: 35}"
    return run(compose_config(*SMALL, "solver.kind=tissue", "time.end=1200", "time.snapshot_every=60",
                              f"+cell_types.treg.region={sphere}"), tmp_path_factory.mktemp("walked")).path


def test_no_cell_leaves_its_region_or_overfills_a_voxel(walked):
    """At every snapshot each Treg is in its sphere and no voxel holds two cells."""
    with h5py.File(walked) as f:
        tracks = np.stack([f[f"cells/track_{a}"][:] for a in "xyz"], axis=-1)  # (time, cell, 3)
        treg = f["cells/type"][:] == list(f["cells/type"].attrs["type_names"]).index("treg")
        start = np.stack([f[f"cells/{a}"][:] for a in "xyz"], axis=-1)
    voxel = np.floor(tracks / 10.0).astype(int)
    centre = (voxel + 0.5) * 10.0
    assert np.all(np.linalg.norm(centre[:, treg] - [60, 60, 40], axis=-1) <= 35)
    flat = np.ravel_multi_index(np.moveaxis(voxel, -1, 0), (12, 12, 8))
    assert max(np.bincount(row).max() for row in flat) == 1
    assert np.mean(np.linalg.norm(tracks[-1] - start, axis=-1) > 1.0) > 0.3  # and they did walk


def test_the_figures_show_where_the_cells_are(walked, tmp_path):
    """tracks.png (paths near the mid plane) and the animation with the cells are drawn from the
    file; a run whose cells do not move skips tracks.png, saying why."""
    from PIL import Image

    from il2rd import plot

    skipped = []
    written = plot.make_figures(walked, tmp_path / "figs", only=("tracks", "slice"), report=skipped.append)
    assert {p.name for p in written} == {"tracks.png", "slice.png", "slice.gif"} and not skipped
    with Image.open(tmp_path / "figs" / "tracks.png") as image:
        assert len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)) > 16
    with Image.open(tmp_path / "figs" / "slice.gif") as gif:
        assert gif.n_frames == 21
    still = run(compose_config(*SMALL), tmp_path / "steady").path
    skipped = []
    assert plot.make_figures(still, tmp_path / "none", only=("tracks",), report=skipped.append) == []
    assert skipped == ["skipped tracks.png: the cells do not move in this run (solver.kind=tissue walks them)"]


def test_an_interrupted_tissue_run_resumes_to_the_same_result(tmp_path):
    """Cut after its second snapshot, the run continues from the checkpointed field, receptors,
    walk and random key to the uninterrupted run's snapshots, tracks included (also from a file
    written before fate.py, without /checkpoint/fate_*)."""
    cfg = compose_config(*SMALL, "solver.kind=tissue", "time.end=900", "time.snapshot_every=300")
    whole = run(cfg, tmp_path / "whole")
    cut = tmp_path / "cut" / "il2rd.h5"
    cut.parent.mkdir()
    shutil.copy(whole.path, cut)
    with h5py.File(cut, "r+") as f:
        assert f.attrs["n_snapshots"] == 4
        f.attrs["n_snapshots"] = 3
        f.attrs["complete"] = False
        for name in [k for k in f["checkpoint"] if k.startswith("fate_")]:  # as a file from before fate.py
            del f["checkpoint"][name]
    resumed = run(compose_config(f"resume={cut}"))
    with h5py.File(whole.path) as a, h5py.File(resumed.path) as b:
        assert b.attrs["n_snapshots"] == 4 and b.attrs["complete"]
        for name in ("fields/il2", "cells/track_x", "cells/track_y", "cells/track_z", "cells/receptors", "cells/uptake"):
            np.testing.assert_allclose(b[name][:], a[name][:], rtol=1e-9, atol=1e-12, err_msg=name)


def test_a_batch_of_tissue_runs_equals_each_alone(tmp_path, caplog):
    points = [compose_config(*TISSUE, f"cell_types.treg.receptors={r}") for r in (5e3, 2e4)]
    alone = [run(c, tmp_path / "alone" / str(i)).path for i, c in enumerate(points)]
    with caplog.at_level("INFO", logger="il2rd"):
        batched = run_batched(points, [tmp_path / "batch" / str(i) for i in range(2)], progress=False)
    assert "solved 2 runs as one batch" in caplog.text
    for a, b in zip(alone, batched):
        with h5py.File(a) as fa, h5py.File(b) as fb:
            for name in ("fields/il2", "cells/track_x", "cells/uptake"):
                np.testing.assert_allclose(fb[name][:], fa[name][:], rtol=1e-6, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("overrides, key", [
    (["cell_types.treg.speed=10", "cell_types.treg.motility=0"], "cell_types.treg.motility"),
    (["cell_types.treg.speed=0", "cell_types.treg.motility=60"], "cell_types.treg.speed"),
    (["cell_types.treg.speed=-1"], "cell_types.treg.speed"),
    (["cell_types.treg.speed=500"], "cell_types.treg.speed"),
    (["cell_types.treg.motility=nan"], "cell_types.treg.motility"),
])
def test_bad_motility_is_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as info:
        config.parse(compose_config(*TISSUE, *overrides))
    assert str(info.value).startswith(key)
