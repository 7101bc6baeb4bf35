"""Runs and sweeps that never lose work (issue 13): each test below failed on the main branch it
was written against.

* Sweeps: a batched sweep with a refused point and a point whose solve does not converge (a fake
  that raises what the solver raises, inside a batch) records both, re-runs the failed batch's other
  members one at a time and finishes them; the real command does the same with the il2rd_batched
  launcher, gives every job its own folder under output.dir, prints `N finished, M failed: see ...`
  and exits 1 only because some failed; a stale il2rd.failed goes once the run succeeds.
* Files: a second run into a folder another run is writing is refused before anything is truncated
  (the folder's lock; and a file held open by another process, as h5py holds it); another config's
  run in the folder is refused (output.overwrite=true replaces it); an interrupted run's command run
  again continues it instead of starting from t = 0.
* resume: a later time.end extends the run; any other override is refused by name; damaged files
  (n_snapshots = 0, corrupt YAML in meta/config) are one line, not a traceback.
* Faults: a disk that fills during a run (h5py's RuntimeError, and a real tmpfs), out of memory, a
  double Ctrl-C and a Ctrl-C at start-up end with one line and the documented exit status (130 for
  Ctrl-C), never a traceback or a signal.
* il2rd-collect: a foreign or older il2rd.h5 and a malformed overrides.yaml are rows that say so.
* Bounds: placement that would hang, empty tissues, numbers that overflow float32, `1_5` in a CSV.

Everything in this process runs on 12 x 10 x 8 voxels; the subprocess cases start together
(one fixture) to share JAX's start-up time.
"""

from __future__ import annotations

import errno
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from compose import compose_config
from test_reliability import cli, committed, il2rd_command, mount_tmpfs, no_traceback, one_line_error, subprocess_env  # noqa: F401

import il2rd.io
import il2rd.simulate
import il2rd.sweep
from il2rd.analysis import collect
from il2rd import runfolder
from il2rd.config import ConfigError
from il2rd.io.folder_lock import FolderLock
from il2rd.io.failures import OutputError
from il2rd.simulate import RunInterrupted, SimulationError, run

QUIET = ["output.progress=false"]
SMALL = ["grid.shape=[12,10,8]", *QUIET]
TRANSIENT = [*SMALL, "solver.kind=implicit", "time.end=100", "time.snapshot_every=20", "solver.dt=10",
             "precision=float64"]
TIMES = [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]


def fields(path: Path) -> np.ndarray:
    with il2rd.io.load(path) as r:
        return np.asarray(r.field, np.float64)


def file_state(path: Path) -> tuple:
    with il2rd.io.load(path) as r:
        return bool(r.attrs["complete"]), r.attrs["config_sha256"], np.asarray(r.time), np.asarray(r.field)


# ---------------------------------------------------------------------------------------------
# Sweeps

BAD_DIFFUSION = 7.5  # the point whose solve the fake below makes fail, alone or inside a batch


@pytest.fixture
def one_point_does_not_converge(monkeypatch):
    """The solver raises for the point with physics.diffusion = BAD_DIFFUSION, batched or alone,
    exactly as integrate.check_solve raises for an unconverged Newton solve."""
    real = il2rd.simulate.solve
    calls = []

    def solve(stepper, *args, **kwargs):
        diffusion = stepper.coef.diffusion_um2_per_s
        calls.append(np.size(diffusion))
        if np.any(np.isclose(np.ravel(np.asarray(diffusion)), BAD_DIFFUSION)):
            raise SimulationError("the nonlinear solve at t = 0 s stopped at relative residual 0.3 after 50 Newton "
                                  "steps (injected)")
        return real(stepper, *args, **kwargs)

    monkeypatch.setattr(il2rd.simulate, "solve", solve)
    monkeypatch.setattr(il2rd.sweep, "solve", solve)
    return calls


def test_batched_sweep_runs_every_point_it_can(tmp_path, one_point_does_not_converge):
    diffusions = [5.0, BAD_DIFFUSION, 20.0, -1.0, 10.0]
    cfgs = [compose_config(*SMALL, "precision=float32", f"physics.diffusion={d}") for d in diffusions]
    folders = [tmp_path / str(i) for i in range(len(cfgs))]
    (folders[0] / "").mkdir()
    (folders[0] / runfolder.FAILED_MARKER).write_text("simulation failed: an earlier attempt\n")  # stale
    files = il2rd.sweep.run_batched(cfgs, folders, batch_size=8, progress=False)

    assert one_point_does_not_converge[0] == 4  # the four valid points went as one batch ...
    assert one_point_does_not_converge[1:] == [1, 1, 1, 1]  # ... which failed, so each ran alone
    for i in (0, 2, 4):
        assert runfolder.failure_of(folders[i]) is None
        complete, _, time_s, field = file_state(files[i])
        assert complete and np.all(np.isfinite(field)) and field.max() > 0
    assert runfolder.failure_of(folders[1]).startswith("simulation failed: the nonlinear solve")
    assert files[3] is None and "physics.diffusion = -1.0" in runfolder.failure_of(folders[3])

    rows = collect.collect(tmp_path)
    status = {r["run"]: (r["status"], r["message"]) for r in rows}
    assert {k: s for k, (s, _) in status.items()} == {"0": "complete", "1": "failed", "2": "complete", "3": "failed",
                                                     "4": "complete"}
    assert "Newton" in status["1"][1] and "physics.diffusion" in status["3"][1]


def test_stale_failure_marker_goes_when_the_run_succeeds(tmp_path):
    (tmp_path / runfolder.FAILED_MARKER).write_text("error: physics.diffusion = -1.0: must be ...\n")
    run(compose_config(*SMALL), tmp_path)
    assert not (tmp_path / runfolder.FAILED_MARKER).exists()
    assert {r["status"] for r in collect.collect(tmp_path)} == {"complete"}


# ---------------------------------------------------------------------------------------------
# Files are never damaged or replaced by accident


def test_second_run_into_a_busy_folder_is_refused_before_anything_is_truncated(tmp_path):
    first = run(compose_config(*SMALL), tmp_path).path
    before = file_state(first)
    lock = FolderLock.acquire(tmp_path)  # another process writing there (flock: per open file)
    try:
        with pytest.raises(OutputError, match="another il2rd run is writing"):
            run(compose_config(*SMALL, "physics.diffusion=5", "output.overwrite=true"), tmp_path)
    finally:
        lock.release()
    after = file_state(first)
    assert after[:3] == before[:3] and np.array_equal(after[3], before[3])


def test_file_held_open_by_another_process_is_not_truncated(tmp_path):
    """What a running il2rd does to its file (h5py opens it r+, with HDF5's lock): a second run of
    another config into that folder must leave it whole (h5py's "w" truncated it before checking)."""
    path = run(compose_config(*SMALL), tmp_path).path
    before = file_state(path)
    holder = subprocess.Popen([sys.executable, "-c", "import h5py, sys, time; f = h5py.File(sys.argv[1], 'r+'); "
                               "print('open', flush=True); time.sleep(60)", str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(OutputError):
            run(compose_config(*SMALL, "physics.diffusion=5"), tmp_path)
    finally:
        holder.kill()
        holder.wait()
    after = file_state(path)
    assert after[:3] == before[:3] and np.array_equal(after[3], before[3])


def test_another_runs_file_is_refused_unless_overwrite(tmp_path, cli):
    out = tmp_path / "out"
    path = run(compose_config(*SMALL), out).path
    before = file_state(path)
    line = one_line_error(*cli(*SMALL, "physics.diffusion=5", f"output.dir={out}"))
    assert line.startswith("il2rd: error: output.dir") and str(out) in line
    assert "finished steady run of another config" in line and "output.overwrite=true" in line
    after = file_state(path)
    assert after[1] == before[1] and np.array_equal(after[3], before[3])

    (out / "il2rd.h5").write_bytes(b"not an HDF5 file")  # a foreign file is not replaced either
    line = one_line_error(*cli(*SMALL, f"output.dir={out}"))
    assert "cannot read as a run" in line and "output.overwrite=true" in line
    assert (out / "il2rd.h5").read_bytes() == b"not an HDF5 file"

    code, _, stderr = cli(*SMALL, "physics.diffusion=5", f"output.dir={out}", "output.overwrite=true")
    assert code == 0, stderr
    assert file_state(path)[0] and not any(p.name.endswith(".tmp") for p in out.iterdir())


def interrupt_at_snapshot(monkeypatch, n: int) -> None:
    """KeyboardInterrupt as snapshot n is committed (what Ctrl-C raises at that moment)."""
    from h5py._hl.attrs import AttributeManager

    set_attr = AttributeManager.__setitem__

    def attr(self, name, value):
        if name == "n_snapshots" and int(value) == n + 1:
            raise KeyboardInterrupt
        return set_attr(self, name, value)

    monkeypatch.setattr(AttributeManager, "__setitem__", attr)


def test_rerunning_an_interrupted_run_continues_it(tmp_path, monkeypatch):
    whole = fields(run(compose_config(*TRANSIENT), tmp_path / "whole").path)
    interrupt_at_snapshot(monkeypatch, 3)
    with pytest.raises(RunInterrupted):
        run(compose_config(*TRANSIENT), tmp_path / "cut")
    monkeypatch.undo()
    path = tmp_path / "cut" / "il2rd.h5"
    kept = fields(path)
    assert len(kept) == 3
    result = run(compose_config(*TRANSIENT), tmp_path / "cut")  # the same command again, no resume=
    complete, _, time_s, field = file_state(result.path)
    assert complete and list(time_s) == TIMES
    np.testing.assert_array_equal(field[:3], kept)  # the snapshots kept were not recomputed away
    np.testing.assert_allclose(field, whole, rtol=1e-6, atol=0)


# ---------------------------------------------------------------------------------------------
# resume


def test_resume_extends_to_a_later_end_and_refuses_other_overrides(tmp_path, cli):
    path = run(compose_config(*TRANSIENT), tmp_path).path
    line = one_line_error(*cli(f"resume={path}", "grid.shape=[8,8,8]", "seed=3", *QUIET))
    assert line.startswith("il2rd: error: resume") and "grid.shape, seed" in line and "refused" in line
    line = one_line_error(*cli(f"resume={path}", "time.end=50", *QUIET))
    assert line.startswith("il2rd: error: time.end = 50") and "100" in line

    code, _, stderr = cli(f"resume={path}", "time.end=160", *QUIET)
    assert code == 0, stderr
    complete, key, time_s, field = file_state(path)
    assert complete and list(time_s) == TIMES + [120.0, 140.0, 160.0]
    longer = run(compose_config(*TRANSIENT[:-3], "time.end=160", "time.snapshot_every=20", "solver.dt=10",
                                "precision=float64"), tmp_path / "longer").path
    np.testing.assert_allclose(field, fields(longer), rtol=1e-6, atol=0)
    assert key == file_state(longer)[1]  # the file now records the config it ran to


def test_resume_of_damaged_files_is_one_line(tmp_path, cli):
    path = run(compose_config(*TRANSIENT), tmp_path / "a").path
    with h5py.File(path, "r+") as f:
        f.attrs["n_snapshots"] = 0
        f.attrs["complete"] = False
    line = one_line_error(*cli(f"resume={path}", *QUIET))
    assert line.startswith("il2rd: error: resume") and "no checkpoint" in line

    path = run(compose_config(*TRANSIENT), tmp_path / "b").path
    with h5py.File(path, "r+") as f:
        del f["meta/config"]
        f["meta"].create_dataset("config", data="grid: {shape: [12, 10\n  : ]]", dtype=h5py.string_dtype())
    line = one_line_error(*cli(f"resume={path}", *QUIET))
    assert line.startswith("il2rd: error: resume") and "not a readable il2rd output file" in line


# ---------------------------------------------------------------------------------------------
# Out of space, out of memory


def test_hdf5_runtime_error_on_a_full_disk_ends_in_one_message(tmp_path, monkeypatch, cli):
    """h5py raises RuntimeError, not OSError, for some write failures on a full disk."""
    from h5py._hl.dataset import Dataset

    set_item = Dataset.__setitem__

    def item(self, index, value):
        if self.name == "/fields/il2" and index == 3:
            raise RuntimeError("Can't write data (file write failed: time = Tue Dec  1 20:00:00 2026, filename = "
                               f"'il2rd.h5', errno = {errno.ENOSPC}, error message = 'No space left on device')")
        return set_item(self, index, value)

    monkeypatch.setattr(Dataset, "__setitem__", item)
    out = tmp_path / "out"
    line = one_line_error(*cli(*TRANSIENT, f"output.dir={out}"))
    monkeypatch.undo()
    assert str(out / "il2rd.h5") in line and "disk is full" in line and "keeps the 3 snapshot(s)" in line
    assert f"resume={out / 'il2rd.h5'}" in line
    assert list(file_state(out / "il2rd.h5")[2]) == TIMES[:3]


def test_out_of_memory_ends_in_one_message_with_a_suggestion(tmp_path, monkeypatch, cli):
    from jax.errors import JaxRuntimeError

    def solve(*args, **kwargs):
        raise JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 17179869184 bytes.")

    monkeypatch.setattr(il2rd.simulate, "solve", solve)
    line = one_line_error(*cli(*SMALL, f"output.dir={tmp_path}"), expected_code=1)
    assert "out of memory" in line and "precision=float32" in line and str(tmp_path / "il2rd.h5") in line


# ---------------------------------------------------------------------------------------------
# il2rd-collect: foreign and damaged files are rows


def test_collect_turns_foreign_and_damaged_files_into_rows(tmp_path):
    sweep = tmp_path / "sweep"
    run(compose_config(*SMALL), sweep / "0")
    (sweep / "0" / ".hydra").mkdir()
    (sweep / "0" / ".hydra" / "overrides.yaml").write_text("- seed=0\n- physics.diffusion: [5\n")  # malformed
    (sweep / "1").mkdir()
    with h5py.File(sweep / "1" / "il2rd.h5", "w") as f:  # someone else's HDF5 file
        f["data"] = np.arange(3)
    run(compose_config(*SMALL), sweep / "2")
    with h5py.File(sweep / "2" / "il2rd.h5", "r+") as f:  # an older il2rd's file, without cells/type_names
        del f["cells/type_names"]
    rows = collect.collect(sweep)
    by_run = {}
    for r in rows:
        by_run.setdefault(r["run"], []).append(r)
    assert {r["status"] for r in by_run["0"]} == {"complete"}
    assert all("overrides.yaml unreadable" in r["message"] for r in by_run["0"])
    assert [r["status"] for r in by_run["1"]] == ["unreadable"] and "KeyError" in by_run["1"][0]["message"]
    assert [r["status"] for r in by_run["2"]] == ["unreadable"]
    assert collect.main([str(sweep), "--no-plots"]) == 0


# ---------------------------------------------------------------------------------------------
# Bounds: nothing that hangs, runs an empty tissue or overflows float32


@pytest.mark.parametrize("overrides, key", [
    (["node.follicles.count=200000"], "node.follicles.count"),
    (["grid.spacing=1e-6", "physics.cell_radius=null"], "cell_types"),  # point sinks: an empty tissue
    (["grid.spacing=1e-6"], "cell_types.il2_producer.radius"),  # spheres: a voxel far smaller than a cell
    (["grid.boundary=fixed", "grid.boundary_value=3e18"], "grid.boundary_value"),
    (["vessels.blood_il2=1e20"], "vessels.blood_il2"),
    (["cell_types.il2_producer.secretion=1e30"], "cell_types.il2_producer.secretion"),
    (["cell_types.treg.receptors=1e40"], "cell_types.treg.receptors"),
])
def test_bounds_refused_at_once_naming_the_key(tmp_path, overrides, key):
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        run(compose_config(*SMALL, *overrides), tmp_path)
    assert str(info.value).startswith(f"{key} = ") and time.perf_counter() - started < 10
    assert not (tmp_path / "il2rd.h5").exists()


@pytest.mark.parametrize("body, says", [("", "holds no cells"), ("1_5,5,5,treg\n", "not numeric"),
                                        ("5,5,5,treg,1_000\n", "receptors '1_000'")])
def test_csv_without_cells_or_with_python_only_numbers_is_refused(tmp_path, body, says):
    from il2rd.cells.placement import PlacementError

    path = tmp_path / "cells.csv"
    path.write_text("x,y,z,type" + (",receptors" if body.count(",") == 4 else "") + "\n" + body)
    with pytest.raises(PlacementError, match=says):
        run(compose_config(*SMALL, f"cells.csv={path}"), tmp_path / "out")
    assert not (tmp_path / "out" / "il2rd.h5").exists()


# ---------------------------------------------------------------------------------------------
# The real command: Ctrl-C (twice, at start-up), a disk filling up, a sweep with failures

LONG = ["grid.shape=[32,28,24]", "solver.kind=explicit", "time.end=60000", "time.snapshot_every=150", "solver.dt=10",
        "precision=float64", *QUIET]


def _start(tmp_path: Path, name: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([il2rd_command(), *args, f"hydra.run.dir={tmp_path / ('hydra_' + name)}"], cwd=tmp_path,
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_snapshots(proc, path: Path, n: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline and committed(path) < n:
        time.sleep(0.02)
    assert proc.poll() is None, f"il2rd ended early:\n{proc.communicate()[1][-2000:]}"
    assert committed(path) >= n, f"no snapshot within {timeout_s} s"


def _wait_for_jax_import(proc, timeout_s: float = 120) -> None:
    """Until the process has begun loading JAX's compiled library (il2rd's start-up, after the
    interpreter's own, which no program can guard)."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if "jaxlib" in Path(f"/proc/{proc.pid}/maps").read_text():
                return
        except OSError:
            pass
        time.sleep(0.005)


@pytest.fixture(scope="module")
def command_cases(tmp_path_factory):
    """Four real il2rd processes at once: Ctrl-C twice, Ctrl-C at start-up, a tmpfs filled up
    while the run writes to it, and a batched multirun with failing points."""
    tmp = tmp_path_factory.mktemp("commands")
    disk = tmp / "small_disk"
    disk.mkdir()
    mounted = mount_tmpfs(disk, "size=64m")
    sweep = ["-m", "solver.max_newton=1,50", "physics.diffusion=5,20,-1", "precision=float64", *SMALL,
             "hydra/launcher=il2rd_batched", f"output.dir={tmp / 'sweep_out'}", f"hydra.sweep.dir={tmp / 'sweep'}"]
    procs = {
        "twice": _start(tmp, "twice", *LONG, f"output.dir={tmp / 'twice'}"),
        "start": _start(tmp, "start", *SMALL, f"output.dir={tmp / 'start'}"),
        "sweep": subprocess.Popen([il2rd_command(), *sweep], cwd=tmp, env=subprocess_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True),
    }
    if mounted:
        procs["disk"] = _start(tmp, "disk", *LONG, "time.end=15000", "output.compression=none", f"output.dir={disk / 'out'}")
    results = {}
    try:
        _wait_for_jax_import(procs["start"])
        procs["start"].send_signal(signal.SIGINT)  # still importing JAX (seconds), before any config is composed
        _wait_for_snapshots(procs["twice"], tmp / "twice" / "il2rd.h5", 2)
        procs["twice"].send_signal(signal.SIGINT)
        time.sleep(0.002)
        procs["twice"].send_signal(signal.SIGINT)
        if mounted:
            _wait_for_snapshots(procs["disk"], disk / "out" / "il2rd.h5", 1)
            free = shutil.disk_usage(disk).free
            with (disk / "filler").open("wb") as handle:  # another process takes the space
                try:
                    handle.write(b"\0" * free)
                except OSError:
                    pass
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=600)
            results[name] = (proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if mounted:
            subprocess.run(["umount", str(disk)], capture_output=True)
    return tmp, results


def test_ctrl_c_twice_exits_130_with_one_line_keeping_the_snapshots(command_cases):
    tmp, results = command_cases
    code, out, err = results["twice"]
    no_traceback(out + err)
    assert code == 130, f"exit {code}\n{err}"
    lines = [line for line in err.splitlines() if line.startswith("il2rd:")]
    assert len(lines) == 1 and str(tmp / "twice" / "il2rd.h5") in lines[0], err
    with il2rd.io.load(tmp / "twice" / "il2rd.h5") as r:
        assert len(r.time) >= 2 and np.all(np.isfinite(np.asarray(r.field))) and not r.attrs["complete"]


def test_ctrl_c_at_start_up_exits_130_without_a_traceback(command_cases):
    tmp, results = command_cases
    code, out, err = results["start"]
    no_traceback(out + err)
    assert code == 130, f"exit {code}\n{err}"
    assert "interrupted" in err


def test_disk_filling_up_during_a_real_run_ends_in_one_message(command_cases):
    tmp, results = command_cases
    if "disk" not in results:
        pytest.skip("cannot mount a small tmpfs here")
    code, out, err = results["disk"]
    no_traceback(out + err)
    assert code == 2, f"exit {code} (a negative code is a signal)\n{err}"
    lines = [line for line in err.splitlines() if line.startswith("il2rd:")]
    assert len(lines) == 1 and "disk is full" in lines[0], err


def test_batched_multirun_with_failing_points_finishes_the_rest_and_counts(command_cases):
    tmp, results = command_cases
    code, out, err = results["sweep"]
    no_traceback(out + err)
    assert code == 1, err[-3000:]
    assert f"il2rd: 2 finished, 4 failed: see {tmp / 'sweep_out'}" in err
    out_dir = tmp / "sweep_out"  # output.dir: each job its own folder under it
    assert sorted(p.name for p in out_dir.iterdir()) == [str(i) for i in range(6)]
    rows = collect.collect(out_dir)
    status = {r["run"]: (r["status"], r["message"]) for r in rows}
    assert [status[str(i)][0] for i in range(6)] == ["failed", "failed", "failed", "complete", "complete", "failed"]
    assert "relative residual" in status["0"][1] and "Newton" in status["0"][1]  # max_newton=1 cannot converge
    assert all("physics.diffusion = -1.0" in status[str(i)][1] for i in (2, 5))
    assert all(runfolder.failure_of(out_dir / str(i)) is not None for i in (0, 1, 2, 5))
    with open(tmp / "sweep" / "0" / ".hydra" / "overrides.yaml") as handle:
        assert "solver.max_newton=1" in handle.read()


# ---------------------------------------------------------------------------------------------
# Memory: the estimate of what a run allocates, against the smallest limit


def test_memory_limit_is_the_smallest_of_ram_cgroup_and_slurm(tmp_path, monkeypatch):
    from il2rd import resources

    (tmp_path / "memory.max").write_text("max\n")
    assert resources.cgroup_limit_bytes(tmp_path) is None
    (tmp_path / "memory.max").write_text(f"{3 * 2**30}\n")
    assert resources.cgroup_limit_bytes(tmp_path) == 3 * 2**30
    assert resources.slurm_limit_bytes({"SLURM_MEM_PER_NODE": "2048"}) == 2 * 2**30
    assert resources.slurm_limit_bytes({"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_PER_TASK": "4"}) == 4000 * 2**20
    assert resources.slurm_limit_bytes({}) is None

    monkeypatch.setattr(resources, "physical_memory_bytes", lambda: 24 * 2**30)
    monkeypatch.setattr(resources, "cgroup_limit_bytes", lambda: 8 * 2**30)
    monkeypatch.setattr(resources, "slurm_limit_bytes", lambda: None)
    assert resources.memory_limit() == (8 * 2**30, "this process's cgroup limit")


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_lattice_that_does_not_fit_is_refused_with_a_suggestion(tmp_path, monkeypatch, precision):
    """512^3 voxels on a 24 GiB machine: a run needs ~30 GiB or more (40 bytes per voxel let it
    through before); 256^3 fits."""
    from il2rd import resources

    monkeypatch.setattr(resources, "physical_memory_bytes", lambda: 24 * 2**30)
    monkeypatch.setattr(resources, "cgroup_limit_bytes", lambda: None)
    monkeypatch.setattr(resources, "slurm_limit_bytes", lambda: None)
    with pytest.raises(ConfigError) as info:
        run(compose_config("grid.shape=[512,512,512]", f"precision={precision}", *QUIET), tmp_path)
    message = str(info.value)
    assert message.startswith("grid.shape = [512, 512, 512]") and "physical memory is 24 GiB" in message
    assert "output.attribution=false" in message and ("precision=float32" in message) == (precision == "float64")
    assert resources.memory_problem(256**3, "steady", precision, False, True) is None


# ---------------------------------------------------------------------------------------------
# Done when: a sweep with 5 % bad points collects every good run and a row saying why for the rest


def test_sweep_with_bad_points_loses_nothing_else(tmp_path):
    """benchmarks/bad_sweep.py at 30 runs, every 10th bad (its 500-run version, every 20th, is the
    benchmark): one unconverged, one refused and one interrupted mid-run point; the 27 others complete."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bad_sweep", Path(__file__).parent.parent / "benchmarks" / "bad_sweep.py")
    bad_sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bad_sweep)
    out = bad_sweep.bad_sweep(tmp_path, 30, kill=False, every=10)
    assert out["runs"] == 30
    expected = {"good": {"complete"}, "refused": {"failed"}, "unconverged": {"failed"}, "killed": {"incomplete"}}
    assert {str(i): expected[k] for i, k in enumerate(out["kinds"])} == out["status"]
    assert sorted(set(out["kinds"])) == ["good", "killed", "refused", "unconverged"]
    why = {r["run"]: r["message"] for r in out["rows"] if r["status"] != "complete"}
    assert "relative residual" in why["7"] and "physics.diffusion = -1.0" in why["17"] and "killed" in why["27"]
    good = [r for r in out["rows"] if r["status"] == "complete"]
    assert all(r["param:seed"] == int(r["run"]) for r in good)  # the swept values are in the table
