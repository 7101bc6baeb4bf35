"""`il2rd.simulate.run(cfg, output_dir)`: the whole program without Hydra's app. Its Result
(summary, last field, file), its global balance, bad input failing before computing, and a
NaN stopping the run with the snapshots written so far kept (issue 2)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import il2rd.cli
import il2rd.simulate
import il2rd.solvers.steppers
from helpers import closure_cell_uptake

from il2rd import cells
from il2rd.config import ConfigError, parse
from il2rd.config.schema import register_configs
from il2rd.io.failures import OutputError
from il2rd.scenario import Scenario
from il2rd.simulate import SimulationError, run

SMALL = ["grid.shape=[16,16,8]", "output.progress=false"]


def compose_config(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(il2rd.cli.config_dir()), version_base="1.3"):
        return compose("config", overrides=[*SMALL, *overrides])


def relative_imbalance(summary) -> float:
    removed = summary.uptake_molecules_per_s + summary.decay_molecules_per_s + summary.boundary_outflux_molecules_per_s
    return abs(summary.secretion_molecules_per_s - removed) / summary.secretion_molecules_per_s


@pytest.mark.parametrize("boundary", ["zero_flux", "fixed"])
def test_steady_run_balances_secretion_against_removal(tmp_path, boundary):
    cfg = compose_config("precision=float64", "solver.rtol=1e-8", f"grid.boundary={boundary}")
    result = run(cfg, output_dir=tmp_path)
    s = result.summary

    # the secretion is what the population secretes: 10 molecules/s per producer
    population = Scenario.build(parse(cfg)).population  # seeded: the run's population
    assert s.secretion_molecules_per_s == pytest.approx(10.0 * population.count("il2_producer"), rel=1e-12)
    assert s.uptake_molecules_per_s > 0 and s.decay_molecules_per_s > 0
    if boundary == "fixed":  # drainage through the faces takes a visible share
        assert s.boundary_outflux_molecules_per_s > 1e-3 * s.secretion_molecules_per_s
    else:
        assert s.boundary_outflux_molecules_per_s == 0.0
    assert relative_imbalance(s) < 1e-3

    # per-type counts match the population, and the type readouts add up
    assert [t.name for t in s.types] == list(population.type_names)
    assert [t.count for t in s.types] == [population.count(n) for n in population.type_names]
    volume_mm3 = 16 * 16 * 8 * 1e3 / 1e9
    assert [t.count for t in s.types] == [round(d * volume_mm3) for d in (1e4, 1e5, 5.9e5)]
    assert sum(t.total_uptake_molecules_per_s for t in s.types) == pytest.approx(s.uptake_molecules_per_s, rel=1e-12)

    # the readouts are those of the returned field
    field = result.field_pM
    assert field.shape == (16, 16, 8) and np.all(np.isfinite(field)) and field.min() >= 0
    assert s.mean_il2_pM == pytest.approx(field.mean(), rel=1e-12)
    assert s.max_il2_pM == pytest.approx(field.max(), rel=1e-12)
    # each cell sees the IL-2 at its surface (the default sub-grid closure): its share of its stencil's
    # uptake of this field, read back through its own law
    scenario = Scenario.build(parse(cfg))
    laws = cells.collapsed_uptake(scenario.population, scenario.settings.problem.types)
    _, surface = closure_cell_uptake(field, population.voxel, 10.0, 10.0, 5.0, *laws)
    for i, t in enumerate(s.types):
        assert t.mean_il2_pM == pytest.approx(surface[population.type_index == i].mean(), rel=1e-9)
    # producers see more IL-2 than the average voxel; Tregs (most receptors) take up most per cell
    by_name = {t.name: t for t in s.types}
    assert by_name["il2_producer"].mean_il2_pM > s.mean_il2_pM
    assert by_name["treg"].mean_uptake_molecules_per_s > by_name["naive_t"].mean_uptake_molecules_per_s

    # the file is where the Result says, with the one steady snapshot of the same field
    assert result.path == tmp_path / "il2rd.h5"
    with h5py.File(result.path, "r") as f:
        assert f["time"][:].tolist() == [0.0]
        np.testing.assert_allclose(f["fields/il2"][0], field.transpose(2, 1, 0).astype(np.float32), rtol=1e-6)
        assert f.attrs["summary_mean_il2_pM"] == pytest.approx(s.mean_il2_pM)
    assert result.wall_time_s > 0


def test_run_uses_output_dir_from_the_config_when_none_is_given(tmp_path):
    cfg = compose_config(f"output.dir={tmp_path / 'from_config'}", "cell_types.naive_t.density=0")
    result = run(cfg)
    assert result.path == tmp_path / "from_config" / "il2rd.h5" and result.path.is_file()


def test_bad_config_fails_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError) as info:
        run(compose_config("physics.diffusion=-1"), output_dir=tmp_path / "out")
    assert "physics.diffusion" in str(info.value) and "-1" in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["proc", "under-a-file"])
def test_unwritable_output_dir_fails_before_computing(tmp_path, monkeypatch, where):
    def no_solving(*args, **kwargs):
        raise AssertionError("solve() was called although the output cannot be written")

    monkeypatch.setattr(il2rd.simulate, "solve", no_solving)
    if where == "proc":
        out = "/proc/il2rd-test/out"
    else:
        (tmp_path / "a_file").write_text("not a directory")
        out = str(tmp_path / "a_file" / "out")
    with pytest.raises(OutputError) as info:
        run(compose_config(), output_dir=out)
    assert "output.dir" in str(info.value) and out in str(info.value)


# ---------------------------------------------------------------------------------------------
# A NaN stops the run with the time and the place, and the snapshots before it stay in the file

BAD_VOXEL = (3, 5, 2)


@pytest.mark.parametrize("kind", ["implicit", "explicit"])
def test_nan_stops_a_transient_run_and_keeps_the_snapshots(tmp_path, monkeypatch, kind):
    real = il2rd.solvers.steppers.advance
    calls = {"n": 0, "t": 0.0}

    def faulty(stepper, c, t, dt, n_steps):
        """The real steps, with a NaN appearing at BAD_VOXEL once t >= 40 s."""
        c, info = real(stepper, c, t, dt, n_steps)
        start, calls["t"] = calls["t"], calls["t"] + n_steps * float(dt)
        calls["n"] += 1
        if calls["t"] > 40.0 + 1e-9:
            c = c.at[BAD_VOXEL].set(np.nan)
            calls.setdefault("fault", (start, calls["t"]))
        return c, info

    monkeypatch.setattr(il2rd.solvers.steppers, "advance", faulty)
    cfg = compose_config(f"solver.kind={kind}", "solver.dt=10", "time.end=100", "time.snapshot_every=20",
                         "precision=float64", "solver.rtol=1e-6")
    with pytest.raises(SimulationError) as info:
        run(cfg, output_dir=tmp_path)
    message = str(info.value)
    t0, t1 = calls["fault"]
    assert t0 >= 40.0 - 1e-9 and t1 <= 60.0 + 1e-9  # the fault came in the third interval
    assert f"t = {t0:g} s" in message and f"t = {t1:g} s" in message  # when
    assert "(3, 5, 2)" in message and "35, 55, 25 um" in message  # where: voxel and position
    assert calls["n"] >= 3

    with h5py.File(tmp_path / "il2rd.h5", "r") as f:  # the file is closed, readable, and kept
        assert f["time"][:].tolist() == [0.0, 20.0, 40.0]
        fields = f["fields/il2"][:]
        assert fields.shape == (3, 8, 16, 16) and np.all(np.isfinite(fields))
        assert fields[0].max() == 0.0 and fields[2].max() > fields[1].max() > 0  # IL-2 building up
        assert f["cells/il2"].shape[0] == 3 and f["cells/uptake"].shape[0] == 3
        assert np.all(np.isfinite(f["cells/il2"][:]))


def test_nan_in_the_steady_solve_stops_the_run(tmp_path, monkeypatch):
    real = il2rd.solvers.steppers.initialize

    def faulty(stepper, t_s):
        c, info = real(stepper, t_s)
        return c.at[BAD_VOXEL].set(np.inf), info

    monkeypatch.setattr(il2rd.solvers.steppers, "initialize", faulty)
    with pytest.raises(SimulationError) as info:
        run(compose_config(), output_dir=tmp_path)
    assert "(3, 5, 2)" in str(info.value) and "35, 55, 25 um" in str(info.value)
    with h5py.File(tmp_path / "il2rd.h5", "r") as f:  # nothing non-finite was written
        assert f["time"].shape == (0,) and f["fields/il2"].shape[0] == 0
