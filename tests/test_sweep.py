"""Sweeps: batched equals one at a time, multirun + il2rd-collect (basic, il2rd_batched and
submitit_local launchers), failures kept in the table, re-runs skip finished runs, and the
lattice sharded over several devices gives the single-device field."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from compose import compose_config
from hydra import compose, initialize_config_dir

from il2rd.analysis import collect
from il2rd.solvers import steppers
from il2rd.cli import config_dir
from il2rd.config.schema import register_configs
from il2rd.io import load
from il2rd.simulate import run
from il2rd.sweep import run_batched

SMALL = ["grid.shape=[12,10,8]", "output.progress=false"]
# the multirun commands check files, tables and launchers, not the attribution (in-process tests
# above and tests/test_attribution.py do): leaving it out spares its compilation in every process
COMMAND = [*SMALL, "output.attribution=false"]


def compose_many(*override_sets):
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return [compose("config", overrides=list(o)) for o in override_sets]


def load_cells(path: Path) -> np.ndarray:
    with load(path) as r:
        return np.asarray(r.cells["type"])


def fields(path: Path) -> np.ndarray:
    with load(path) as r:
        return np.asarray(r.field, np.float64)


@pytest.mark.parametrize("kind", ["steady", "implicit", "explicit", "coupled"])
def test_batched_equals_each_point_alone(tmp_path, kind, caplog):
    # explicit: a step below every member's stability limit, so that no member needs sub-steps (a batch
    # takes the most sub-steps any member needs; alone, a member would take fewer, longer steps)
    steps = ["solver.dt=0.5"] if kind == "explicit" else []
    points = [[*SMALL, f"solver.kind={kind}", "time.end=30", "time.snapshot_every=10", "precision=float64", *steps,
               f"physics.diffusion={d}", f"seed={s}", f"cell_types.treg.receptors={r}"]
              for d, s, r in [(5.0, 0, 1e4), (10.0, 1, 2e4), (20.0, 2, 5e3), (10.0, 0, 2e4), (7.5, 3, 1e3)]]
    cfgs = compose_many(*points)
    alone = [run(c, tmp_path / "alone" / str(i)).path for i, c in enumerate(cfgs)]
    with caplog.at_level("INFO", logger="il2rd"):
        batched = run_batched(cfgs, [tmp_path / "batch" / str(i) for i in range(len(cfgs))], batch_size=2, progress=False)
    assert len(batched) == len(cfgs)  # 3 chunks of at most 2, every point written
    # batches of 2; a coupled run's cells are stacked with its field, so only points placing as many
    # cells share a batch
    n_cells = [len(load_cells(p)) for p in alone]
    pairs = {"coupled": sum(n_cells[i] == n_cells[i + 1] for i in (0, 2))}.get(kind, 2)
    assert caplog.text.count("solved 2 runs as one batch") == pairs
    if kind == "coupled":
        assert pairs >= 1
    for a, b in zip(alone, batched):
        fa, fb = fields(a), fields(b)
        assert fa.shape == fb.shape and np.abs(fa).max() > 0
        np.testing.assert_allclose(fb, fa, rtol=1e-6, atol=1e-9 * np.abs(fa).max())
        with load(a) as ra, load(b) as rb:
            np.testing.assert_array_equal(ra.time, rb.time)
            np.testing.assert_array_equal(ra.cells["x"], rb.cells["x"])  # same seeded placement
            np.testing.assert_allclose(np.asarray(rb.cells["uptake"]), np.asarray(ra.cells["uptake"]), rtol=1e-5, atol=1e-9)
            assert rb.attrs["complete"] and rb.attrs["config_sha256"] == ra.attrs["config_sha256"]


@pytest.mark.parametrize("kind", ["steady", "implicit"])
def test_the_vmapped_batch_of_an_accelerator_equals_each_point_alone(tmp_path, kind, monkeypatch):
    """On a CPU a batch runs its members one after another (steppers._each: lax.map); on a GPU it is
    vmapped. The vmapped program, traced here as a GPU would trace it (a lattice of its own, so no
    program traced before is reused), gives each point's own answer."""
    points = [["grid.shape=[9,7,5]", "output.progress=false", f"solver.kind={kind}", "time.end=20", "time.snapshot_every=10",
               "precision=float64", f"physics.diffusion={d}", f"cell_types.treg.receptors={r}"] for d, r in [(5.0, 1e4), (20.0, 3e3)]]
    cfgs = compose_many(*points)
    alone = [run(c, tmp_path / "alone" / str(i)).path for i, c in enumerate(cfgs)]
    monkeypatch.setattr(steppers.jax, "default_backend", lambda: "gpu")  # read where the batch is traced
    batched = run_batched(cfgs, [tmp_path / "batch" / str(i) for i in range(len(cfgs))], batch_size=2, progress=False)
    for a, b in zip(alone, batched):
        fa, fb = fields(a), fields(b)
        assert np.abs(fa).max() > 0
        np.testing.assert_allclose(fb, fa, rtol=1e-6, atol=1e-9 * np.abs(fa).max())


def test_points_of_different_shapes_are_batched_separately(tmp_path):
    """Different lattices, and points with and without intermediate-affinity receptors (whose
    coefficients then hold fields instead of scalars), go into separate batches."""
    cfgs = compose_many([*SMALL, "physics.diffusion=5"], ["grid.shape=[8,8,8]", "output.progress=false"],
                        [*SMALL, "physics.diffusion=20"], [*SMALL, "+cell_types.naive_t.il2rb=350"])
    paths = run_batched(cfgs, [tmp_path / str(i) for i in range(len(cfgs))], progress=False)
    assert sorted(p.parent.name for p in paths) == [str(i) for i in range(len(cfgs))]
    for i, cfg in enumerate(cfgs):
        np.testing.assert_allclose(fields(tmp_path / str(i) / "il2rd.h5"),
                                   fields(run(cfg, tmp_path / f"alone{i}").path), rtol=1e-5, atol=1e-6)



def test_a_batch_is_solved_once_full_not_after_every_point_is_built(tmp_path, monkeypatch):
    """Points are built one at a time and each batch is solved as soon as it is full, so a sweep
    holds at most a batch of scenarios (256 default-node points built up front ran out of 24 GiB)."""
    from il2rd import sweep

    built, solved = [], []
    prepare, run_chunk = sweep._prepare, sweep._run_chunk
    monkeypatch.setattr(sweep, "_prepare", lambda *a: built.append(1) or prepare(*a))
    monkeypatch.setattr(sweep, "_run_chunk", lambda chunk: solved.append((len(built), len(chunk))) or run_chunk(chunk))
    cfgs = compose_many(*([*SMALL, f"seed={i}"] for i in range(5)))
    paths = run_batched(cfgs, [tmp_path / str(i) for i in range(5)], batch_size=2, progress=False)
    assert solved == [(2, 2), (4, 2), (5, 1)]  # (points built when the batch started, its size)
    assert all(p.is_file() for p in paths)

def il2rd(*args, cwd, env=None, timeout=300):
    exe = shutil.which("il2rd") or str(Path(sys.executable).with_name("il2rd"))
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def read_table(sweep: Path) -> list[dict]:
    assert collect.main([str(sweep)]) == 0
    with (sweep / "sweep.csv").open() as handle:
        return list(csv.DictReader(handle))


def check_table_against_files(sweep: Path, rows: list[dict], expected_params: list[dict]) -> None:
    """One row per run and cell type, the swept values as given, readouts recomputed from each file."""
    complete = [r for r in rows if r["status"] == "complete"]
    runs = sorted({r["run"] for r in complete}, key=int)
    assert len(runs) == len(expected_params)
    for run_name, params in zip(runs, expected_params):
        mine = [r for r in complete if r["run"] == run_name]
        for key, value in params.items():
            assert all(float(r["seed" if key == "seed" else f"param:{key}"]) == value for r in mine)  # the seed: its own column
        with load(sweep / run_name / "il2rd.h5") as f:
            assert sorted(r["cell_type"] for r in mine) == sorted(f.type_names)
            il2 = np.asarray(f.cells["il2"][-1])
            for r in mine:
                i = f.type_names.index(r["cell_type"])
                sel = f.cells["type"] == i
                assert int(r["cells"]) == sel.sum()
                assert float(r["mean_il2_pM"]) == pytest.approx(il2[sel].mean(), rel=1e-6)
                for column in ("pstat5_positive_fraction", "mean_pstat5", "mean_receptors", "mean_receptors_intermediate"):
                    assert float(r[column]) == pytest.approx(f.readouts[column][i], rel=1e-5, abs=1e-3), column  # as printed
            a = f.attribution  # each source's output: the types' shares and what decayed or left add up to all of it
            assert (a is None) == ("autocrine_share" not in rows[0])
            for k, source in enumerate(a.sources if a is not None else ()):
                shares = {r["cell_type"]: float(r[f"share_of_{source}"]) for r in mine}
                assert shares == pytest.approx({t: a.uptake_molecules_per_s[k, f.type_names.index(t)] / a.output_molecules_per_s[k]
                                                for t in shares}, rel=1e-6)
                own = next(r for r in mine if r["cell_type"] == source)
                assert sum(shares.values()) + float(own["decayed_or_left_share"]) == pytest.approx(1.0, abs=1e-9)
                assert 0 < float(own["autocrine_share"]) <= shares[source]


def test_multirun_collect_with_a_failed_run_and_rerun_skipping(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "physics.diffusion=5,-1,20", "seed=0,1", *COMMAND, f"hydra.sweep.dir={sweep}"]
    proc = il2rd(*args, cwd=tmp_path)
    assert proc.returncode != 0  # Hydra reports the failed job at the end ...
    assert "physics.diffusion = -1.0" in proc.stderr
    rows = read_table(sweep)  # ... after running all the others
    statuses = {r["run"]: r["status"] for r in rows}
    assert statuses == {"0": "complete", "1": "complete", "2": "failed", "3": "failed", "4": "complete", "5": "complete"}
    failed = [r for r in rows if r["status"] == "failed"]
    assert all("physics.diffusion = -1.0" in r["message"] for r in failed)
    check_table_against_files(sweep, rows, [{"physics.diffusion": 5, "seed": 0}, {"physics.diffusion": 5, "seed": 1},
                                            {"physics.diffusion": 20, "seed": 0}, {"physics.diffusion": 20, "seed": 1}])
    # replicates differ only by seed: same cells per type, different placement
    with load(sweep / "0" / "il2rd.h5") as a, load(sweep / "1" / "il2rd.h5") as b:
        assert np.array_equal(np.bincount(a.cells["type"]), np.bincount(b.cells["type"]))
        assert not np.array_equal(a.cells["x"], b.cells["x"])

    # the same command again: finished runs are not recomputed (their files stay as they were)
    stamps = {p: p.stat().st_mtime_ns for p in sweep.glob("*/il2rd.h5")}
    proc = il2rd(*args, cwd=tmp_path)
    assert proc.stderr.count("not recomputed") + proc.stdout.count("not recomputed") == 4
    assert {p: p.stat().st_mtime_ns for p in sweep.glob("*/il2rd.h5")} == stamps


def test_collect_gives_each_type_its_share_of_each_source(tmp_path):
    """Runs with a source attribution: per row, the share of each source's output the type took up,
    and on the source's own row its autocrine share and what decayed or left (checked against each
    file in check_table_against_files: the shares of a source add up to all of its output)."""
    sweep = tmp_path / "sweep"
    proc = il2rd("-m", "physics.diffusion=5,20", *SMALL, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = read_table(sweep)
    assert {"share_of_il2_producer", "autocrine_share", "decayed_or_left_share"} <= set(rows[0])
    check_table_against_files(sweep, rows, [{"physics.diffusion": 5}, {"physics.diffusion": 20}])
    with h5py.File(sweep / "sweep.h5") as f:
        assert f["table/share_of_il2_producer"].dtype == np.float64


def test_a_killed_run_is_reported_and_a_rerun_redoes_it(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "physics.diffusion=5,20", *COMMAND, f"hydra.sweep.dir={sweep}"]
    assert il2rd(*args, cwd=tmp_path).returncode == 0
    with h5py.File(sweep / "1" / "il2rd.h5", "r+") as f:  # as a run killed part-way leaves it
        f.attrs["complete"] = False
    rows = read_table(sweep)
    assert {r["run"]: r["status"] for r in rows if r["run"] == "1"} == {"1": "incomplete"}
    proc = il2rd(*args, cwd=tmp_path)
    assert proc.returncode == 0
    assert (proc.stderr + proc.stdout).count("not recomputed") == 1  # run 0 only; run 1 is redone
    assert {r["status"] for r in read_table(sweep)} == {"complete"}


def test_batched_launcher_gives_the_basic_launchers_results(tmp_path):
    common = ["-m", "physics.diffusion=5,20", "cell_types.treg.receptors=5e3,2e4", *COMMAND]
    basic, batched = tmp_path / "basic", tmp_path / "batched"
    assert il2rd(*common, f"hydra.sweep.dir={basic}", cwd=tmp_path).returncode == 0
    proc = il2rd(*common, "hydra/launcher=il2rd_batched", f"hydra.sweep.dir={batched}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "solved 4 runs as one batch" in proc.stderr + proc.stdout
    for i in range(4):
        np.testing.assert_allclose(fields(batched / str(i) / "il2rd.h5"), fields(basic / str(i) / "il2rd.h5"),
                                   rtol=1e-5, atol=1e-6)
    rows_basic, rows_batched = read_table(basic), read_table(batched)
    assert [(r["run"], r["cell_type"], r["param:physics.diffusion"]) for r in rows_basic] == \
        [(r["run"], r["cell_type"], r["param:physics.diffusion"]) for r in rows_batched]


def test_submitit_local_launcher_runs_the_cluster_code_path(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    proc = il2rd("-m", "physics.diffusion=5,20", *COMMAND, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
                 f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_table(sweep)
    check_table_against_files(sweep, rows, [{"physics.diffusion": 5}, {"physics.diffusion": 20}])


def test_sweep_presets_compose(tmp_path):
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for name in ("source_x_treg_cd25", "therapy_dose_x_mutein"):
            cfg = compose("config", overrides=[f"+sweep={name}"], return_hydra_config=True)
            assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
            assert cfg.hydra.launcher._target_.endswith("Il2rdBatchedLauncher")
            assert len(cfg.hydra.sweeper.params) == 3 and "seed" in cfg.hydra.sweeper.params


def test_sharded_lattice_gives_the_single_device_field(tmp_path):
    args = ["grid.shape=[16,12,10]", "output.progress=false", "output.attribution=false", "precision=float64"]
    sharded = tmp_path / "sharded"
    # four host devices in a process of its own (the flag is read when JAX starts), with the suite's other flags
    four = {"XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip()}
    single = run(compose_config(*args), tmp_path / "single").path  # this process: one device
    proc = il2rd(*args, "devices.shard=true", f"hydra.run.dir={sharded}", cwd=tmp_path, env=four)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(fields(sharded / "il2rd.h5"), fields(single), rtol=1e-9, atol=1e-12)
    # a lattice that does not split evenly is refused before computing
    proc = il2rd("grid.shape=[10,12,10]", "devices.shard=true", f"hydra.run.dir={tmp_path / 'bad'}", cwd=tmp_path, env=four)
    assert proc.returncode == 2 and "devices.shard" in proc.stderr and "multiple of 4" in proc.stderr
