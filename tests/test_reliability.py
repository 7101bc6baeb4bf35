"""Reliability (issue 7): interruptions, output-directory faults, numerical faults,
reproducibility, and bad input through the command line's own code path.

* Ctrl-C: a real `il2rd` interrupted with SIGINT between snapshots exits promptly and cleanly
  (exit 130, no traceback, a message naming the file and its snapshots) and leaves a file holding
  its committed snapshots; Ctrl-C while the time stepper compiles must end the same way (not in a
  crash); a KeyboardInterrupt while a snapshot is written leaves the committed ones intact and the
  run resumable; one while the file is being laid out must not leave an unreadable file that the
  message does not mention.
* Output directory: read-only (a read-only tmpfs mount for root, for whom chmod changes nothing;
  chmod 0555 otherwise) and full (simulated free space through il2rd.simulate.run and the command's
  code path, and a real 256 kB tmpfs where mounting is allowed) are refused before anything is
  computed, naming output.dir; with enough space the run goes ahead and its file stays within the
  estimate the check uses; a disk that fills up during a run stops it with a message, not a
  traceback, keeping the committed snapshots.
* Numerical faults: a solve that cannot converge (float32 below its round-off, Newton or CG budget
  of 1) stops the run naming the residual reached (SimulationError; exit 1 without a traceback on
  the command line), keeping a readable file with no unconverged field in it.
* Reproducibility: same config and seed give the same placement and bitwise the same fields on this
  device (steady and implicit); another seed another placement; float32 and float64 agree to 1e-4
  relative on the shipped scenario; the file records config, seed, versions and device, and
  re-running from its stored config (as text, or through the schema) reproduces the field bitwise,
  also for a CSV-placed run from the cells the file records.
* Bad input: 40 inputs not in tests/test_config.py's table (53) or tests/test_cli.py's (8), each run
  through `il2rd.cli.main` in this process (the command's code path, Hydra included); five also
  through the real command in subprocesses, started together to share JAX's start-up time.

Subprocesses are few (three interrupted runs, six bad-input/fault runs in parallel); everything else
runs in this process on lattices of at most 32^3 voxels.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import jax
import numpy as np
import pytest
from compose import compose_config
import yaml
from omegaconf import OmegaConf

import il2rd
import il2rd.cli
import il2rd.io
import il2rd.io.hdf5
import il2rd.simulate
from il2rd.config import parse
from il2rd.io.failures import OutputError
from il2rd.io.layout import estimated_bytes
from il2rd.scenario import Scenario
from il2rd.simulate import RunInterrupted, SimulationError, run, stored_config

QUIET = ["output.progress=false"]
SMALL = ["grid.shape=[12,10,8]", *QUIET]  # 960 voxels, every axis a different length



def il2rd_command() -> str:
    beside_python = Path(sys.executable).parent / "il2rd"
    found = str(beside_python) if beside_python.is_file() else shutil.which("il2rd")
    assert found, "the il2rd console command is not installed"
    return found


def subprocess_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}


def committed(path: Path) -> int:
    """n_snapshots of a file another process may be writing (no lock; errors mean 'not yet')."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f.attrs["n_snapshots"])
    except Exception:
        return 0


def read_all(path: Path) -> dict:
    with il2rd.io.load(path) as r:
        out = dict(time=np.asarray(r.time), field=np.asarray(r.field), il2=np.asarray(r.cells["il2"]),
                   x=np.asarray(r.cells["x"]), y=np.asarray(r.cells["y"]), z=np.asarray(r.cells["z"]),
                   type=np.asarray(r.cells["type"]), attrs=dict(r.attrs))
        n = int(r.attrs["n_snapshots"])
        if "checkpoint" in r.file:
            out["checkpoint"] = r.file["checkpoint"][f"il2_{(n - 1) % 2}"][...]
    out["n_snapshots"] = n
    return out


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, f"a Python traceback was printed:\n{text}"


# ---------------------------------------------------------------------------------------------
# The command's code path in this process: il2rd.cli.main with sys.argv, Hydra and all


@pytest.fixture
def cli(monkeypatch, capsys, tmp_path):
    """cli(*overrides) -> (exit code, stdout, stderr) of `il2rd <overrides>` run in this process."""
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    calls = {"n": 0}

    def call(*overrides: str):
        calls["n"] += 1
        run_dir = tmp_path / f"run{calls['n']}"
        monkeypatch.setattr(sys, "argv", ["il2rd", *overrides, f"hydra.run.dir={run_dir}"])
        try:
            il2rd.cli.main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        finally:  # Hydra configured logging onto this test's captured streams: undo that
            for handler in root.handlers:
                if handler not in saved[0]:
                    handler.close()
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def one_line_error(code: int, stdout: str, stderr: str, expected_code: int = 2) -> str:
    no_traceback(stdout + stderr)
    assert code == expected_code, f"exit {code}, expected {expected_code}\nstderr:\n{stderr}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Ctrl-C

# explicit steps on 32 x 28 x 24 voxels: about 0.03 s per 150 s snapshot, 401 snapshots in all
LONG = ["grid.shape=[32,28,24]", "solver.kind=explicit", "time.end=60000", "time.snapshot_every=150",
        "solver.dt=10", "precision=float64", *QUIET]


def test_ctrl_c_exits_promptly_and_cleanly_keeping_the_committed_snapshots(tmp_path):
    out = tmp_path / "out"
    path = out / "il2rd.h5"
    proc = subprocess.Popen([il2rd_command(), *LONG, f"output.dir={out}", f"hydra.run.dir={tmp_path / 'hydra'}"],
                            cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        seen = 0
        while proc.poll() is None and time.monotonic() < deadline and seen < 2:
            seen = committed(path)
            time.sleep(0.01)
        assert proc.poll() is None, f"il2rd ended before it could be interrupted:\n{proc.communicate()[1]}"
        assert seen >= 2, "no snapshot committed within 120 s"
        interrupted_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
        took = time.monotonic() - interrupted_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    no_traceback(stdout + stderr)
    assert "KeyboardInterrupt" not in stderr
    assert proc.returncode == 130, f"exit {proc.returncode} after Ctrl-C (130 expected)\n{stderr}"
    assert took < 20
    message = " ".join(stderr.split())
    assert "interrupted" in message and str(path) in message, stderr

    data = read_all(path)  # opens normally: closed, unlocked, consistent
    n = data["n_snapshots"]
    assert seen <= n < 401, f"{n} snapshots after an interrupt (seen {seen} before it)"
    assert f"{n} snapshot" in message  # says how much it kept
    assert bool(data["attrs"]["complete"]) is False  # not mistaken for a finished run
    np.testing.assert_array_equal(data["time"], 150.0 * np.arange(n))
    assert data["field"].shape[0] == n and data["il2"].shape[0] == n
    assert np.all(np.isfinite(data["field"])) and data["field"][-1].max() > 0
    # the last committed snapshot's checkpoint (what resume continues from) is that snapshot
    np.testing.assert_allclose(data["checkpoint"].transpose(2, 1, 0).astype(np.float32), data["field"][-1], rtol=0)


COMPILE_DELAYS_S = (0.15, 0.3)


def interrupt_after_first_snapshot(tmp_path: Path, name: str, delay: float):
    """Run a small implicit `il2rd`, send SIGINT `delay` s after snapshot 0 is committed; returns
    (file, exit code, stdout, stderr)."""
    out = tmp_path / f"out_{name}"
    path = out / "il2rd.h5"
    proc = subprocess.Popen([il2rd_command(), "grid.shape=[16,12,10]", "solver.kind=implicit", "time.end=3600",
                             "time.snapshot_every=600", "solver.dt=60", *QUIET, f"output.dir={out}",
                             f"hydra.run.dir={tmp_path / f'hydra_{name}'}"],
                            cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and committed(path) < 1:
            time.sleep(0.003)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return path, proc.returncode, stdout, stderr


def test_ctrl_c_while_the_time_stepper_compiles_exits_cleanly(tmp_path):
    """Snapshot 0 (the initial field) is written before the time stepper is compiled (well under
    a second for this implicit one): Ctrl-C 0.15 s and 0.3 s after that commit lands in XLA's
    compilation. Each run must end as after any Ctrl-C - exit 130, no traceback, the file kept -
    and not be killed by a signal (a crash on the way out)."""
    tested = 0
    for delay in COMPILE_DELAYS_S:
        path, code, stdout, stderr = interrupt_after_first_snapshot(tmp_path, str(delay), delay)
        assert code >= 0, (f"Ctrl-C {delay} s after snapshot 0: il2rd was killed by signal {-code} "
                           f"({signal.Signals(-code).name}); stderr:\n{stderr}")
        no_traceback(stdout + stderr)
        if code == 0:  # finished before the signal arrived
            continue
        tested += 1
        assert code == 130, stderr
        assert "interrupted" in stderr and str(path) in " ".join(stderr.split())
        assert read_all(path)["n_snapshots"] >= 1
    assert tested, "every run finished before Ctrl-C arrived: nothing was tested"


SHORT = ["grid.shape=[16,12,10]", "solver.kind=explicit", "time.end=500", "time.snapshot_every=100", "solver.dt=10",
         "precision=float64", *QUIET]
SHORT_TIMES = [0.0, 100.0, 200.0, 300.0, 400.0, 500.0]
SIGINT_AT = 3  # the snapshot being written when Ctrl-C lands


@pytest.fixture(scope="module")
def uninterrupted_short(tmp_path_factory):
    return read_all(run(compose_config(*SHORT), output_dir=tmp_path_factory.mktemp("short")).path)


@pytest.mark.parametrize("moment", ["field", "commit"])
def test_ctrl_c_while_a_snapshot_is_written_keeps_the_committed_ones_and_resumes(tmp_path, monkeypatch,
                                                                                 uninterrupted_short, moment):
    """KeyboardInterrupt (what Python raises on SIGINT) while snapshot SIGINT_AT is written: after its
    field is written but before the cell columns ("field"), or after everything but the commit
    ("commit"). The run reports RunInterrupted with the committed count; the file holds exactly those
    snapshots, and resuming it gives the uninterrupted run."""
    from h5py._hl.attrs import AttributeManager
    from h5py._hl.dataset import Dataset

    set_attr, set_item = AttributeManager.__setitem__, Dataset.__setitem__

    def attr(self, name, value):
        if moment == "commit" and name == "n_snapshots" and int(value) == SIGINT_AT + 1:
            raise KeyboardInterrupt
        return set_attr(self, name, value)

    def item(self, index, value):
        result = set_item(self, index, value)
        if moment == "field" and self.name == "/fields/il2" and index == SIGINT_AT:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(AttributeManager, "__setitem__", attr)
    monkeypatch.setattr(Dataset, "__setitem__", item)
    with pytest.raises(RunInterrupted) as info:
        run(compose_config(*SHORT), output_dir=tmp_path)
    monkeypatch.undo()
    path = tmp_path / "il2rd.h5"
    assert info.value.n_snapshots == SIGINT_AT and info.value.path == path
    assert str(path) in str(info.value)

    data = read_all(path)
    assert data["n_snapshots"] == SIGINT_AT
    np.testing.assert_array_equal(data["time"], SHORT_TIMES[:SIGINT_AT])
    np.testing.assert_array_equal(data["field"], uninterrupted_short["field"][:SIGINT_AT])

    run(compose_config(f"resume={path}", *QUIET))
    resumed = read_all(path)
    assert resumed["n_snapshots"] == len(SHORT_TIMES) and bool(resumed["attrs"]["complete"])
    np.testing.assert_array_equal(resumed["time"], SHORT_TIMES)
    np.testing.assert_allclose(resumed["field"], uninterrupted_short["field"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(resumed["checkpoint"], uninterrupted_short["checkpoint"], rtol=1e-6, atol=0)


def test_ctrl_c_while_the_file_is_being_laid_out_leaves_no_unreadable_file_unmentioned(tmp_path, monkeypatch, cli):
    """Ctrl-C after il2rd.h5 is created but before its layout is complete (JAX's device query in
    the version record takes a while on first use, so this window is hit in practice): the command
    exits 130 without a traceback, and either no il2rd.h5 is left, or the message names the file
    left and that file opens with il2rd's reader."""
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(il2rd.io.hdf5, "versions", interrupted)
    out = tmp_path / "out"
    path = out / "il2rd.h5"
    code, stdout, stderr = cli(*SMALL, f"output.dir={out}")
    monkeypatch.undo()
    no_traceback(stdout + stderr)
    assert code == 130, stderr
    if path.exists():
        assert str(path) in stderr, f"{path} was left behind, but the message does not name it: {stderr.strip()!r}"
        with il2rd.io.load(path) as r:
            assert int(r.attrs["n_snapshots"]) == 0


# ---------------------------------------------------------------------------------------------
# Output directory: read-only, full, filling up


def no_solving(*args, **kwargs):
    raise AssertionError("the solver was called although the output cannot be written")


def mount_tmpfs(where: Path, options: str) -> bool:
    """Mount a tmpfs at `where` (root only, and only where the container allows it)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "il2rd-test", str(where)], capture_output=True)
    return proc.returncode == 0


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory no one may write to: a read-only tmpfs mount for root (chmod does not stop
    root), or a chmod 0555 directory for other users."""
    where = tmp_path / "read_only"
    where.mkdir()
    if os.geteuid() != 0:
        where.chmod(0o555)
        yield where
        where.chmod(0o755)
        return
    if not mount_tmpfs(where, "ro,size=64k"):
        pytest.skip("running as root and cannot mount a read-only tmpfs here")
    try:
        with pytest.raises(OSError):  # it really is read-only
            (where / "probe").write_text("x")
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


@pytest.mark.parametrize("below", [False, True], ids=["the-directory", "a-new-folder-in-it"])
def test_read_only_output_dir_fails_before_computing(read_only_dir, monkeypatch, cli, below):
    out = read_only_dir / "out" if below else read_only_dir
    monkeypatch.setattr(il2rd.simulate, "solve", no_solving)
    with pytest.raises(OutputError) as info:
        run(compose_config(*SMALL), output_dir=out)
    assert "output.dir" in str(info.value) and str(out) in str(info.value)

    # the command: exit 2, one line naming output.dir and the directory
    line = one_line_error(*cli(*SMALL, f"output.dir={out}"))
    assert line.startswith("il2rd: error: output.dir") and str(out) in line


def fake_free_space(monkeypatch, free_bytes: int) -> None:
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(il2rd.io.hdf5.shutil, "disk_usage",
                        lambda path: type(usage)(usage.total, usage.total - free_bytes, free_bytes))


TRANSIENT = [*SMALL, "solver.kind=implicit", "time.end=200", "time.snapshot_every=10", "solver.dt=10",
             "output.compression=none"]


def test_full_disk_fails_before_computing_naming_output_dir(tmp_path, monkeypatch, cli):
    cfg = compose_config(*TRANSIENT)
    need = estimated_bytes(Scenario.build(parse(cfg)).record())
    fake_free_space(monkeypatch, need // 2)
    monkeypatch.setattr(il2rd.simulate, "solve", no_solving)
    out = tmp_path / "out"
    with pytest.raises(OutputError) as info:
        run(cfg, output_dir=out)
    message = str(info.value)
    assert message.startswith("output.dir") and str(out) in message
    assert "free" in message
    assert not (out / "il2rd.h5").exists()  # nothing half-made left behind

    line = one_line_error(*cli(*TRANSIENT, f"output.dir={out}"))
    assert line.startswith("il2rd: error: output.dir") and str(out) in line


def test_enough_free_space_runs_and_the_file_stays_within_the_estimate(tmp_path, monkeypatch):
    """The control of the test above: with twice the estimate free the run goes ahead, and the
    estimate the check relies on is an upper bound of the real (uncompressed) file."""
    cfg = compose_config(*TRANSIENT)
    need = estimated_bytes(Scenario.build(parse(cfg)).record())
    fake_free_space(monkeypatch, 2 * need)
    result = run(cfg, output_dir=tmp_path)
    assert read_all(result.path)["n_snapshots"] == 21
    assert result.path.stat().st_size <= need


def test_really_full_disk_fails_before_computing(tmp_path, monkeypatch):
    """A real 256 kB tmpfs (where mounting is allowed): the free space il2rd reads is the real one."""
    where = tmp_path / "small_disk"
    where.mkdir()
    if not mount_tmpfs(where, "size=256k"):
        pytest.skip("cannot mount a small tmpfs here")
    try:
        monkeypatch.setattr(il2rd.simulate, "solve", no_solving)
        with pytest.raises(OutputError) as info:
            run(compose_config(*TRANSIENT), output_dir=where / "out")
        assert str(info.value).startswith("output.dir") and str(where / "out") in str(info.value)
        assert not (where / "out" / "il2rd.h5").exists()
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


def test_disk_filling_up_during_a_run_stops_it_cleanly(tmp_path, monkeypatch, cli):
    """The disk fills while snapshot 3 is written (another process took the space): the command
    must stop with a message naming the file, not a traceback, and the file must keep the three
    snapshots committed before."""
    from h5py._hl.dataset import Dataset

    set_item = Dataset.__setitem__

    def item(self, index, value):
        if self.name == "/fields/il2" and index == 3:
            raise OSError(errno.ENOSPC, f"Can't write data ({os.strerror(errno.ENOSPC)})")
        return set_item(self, index, value)

    monkeypatch.setattr(Dataset, "__setitem__", item)
    out = tmp_path / "out"
    code, stdout, stderr = cli(*TRANSIENT, f"output.dir={out}")
    monkeypatch.undo()
    no_traceback(stdout + stderr)
    assert code != 0
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("il2rd:"), stderr
    assert str(out / "il2rd.h5") in stderr and "space" in stderr.lower()
    data = read_all(out / "il2rd.h5")
    assert data["n_snapshots"] == 3
    np.testing.assert_array_equal(data["time"], [0.0, 10.0, 20.0])


# ---------------------------------------------------------------------------------------------
# Numerical faults: a solve that cannot converge stops the run and names the residual

RESIDUAL = re.compile(r"relative residual ([0-9.eE+-]+)")


@pytest.mark.parametrize("overrides, rtol", [
    # (an rtol below float32's round-off converges at the round-off floor: solvers/steady.py, test_balance.py)
    pytest.param(["precision=float32", "solver.max_newton=1"], 1e-6, id="float32-newton-budget"),
    pytest.param(["precision=float64", "solver.max_newton=1"], 1e-6, id="newton-budget"),
    pytest.param(["precision=float64", "solver.max_iter=1", "solver.max_newton=2"], 1e-6, id="krylov-budget"),
])
def test_unconvergeable_steady_solve_stops_the_run_naming_the_residual(tmp_path, overrides, rtol):
    with pytest.raises(SimulationError) as info:
        run(compose_config(*SMALL, *overrides), output_dir=tmp_path)
    message = str(info.value)
    found = RESIDUAL.search(message)
    assert found, f"no residual named in: {message}"
    assert float(found.group(1)) > rtol  # the residual reached, not the one asked for
    assert str(tmp_path / "il2rd.h5") in message
    data = read_all(tmp_path / "il2rd.h5")  # kept, readable, and holding no unconverged field
    assert data["n_snapshots"] == 0 and data["field"].shape[0] == 0
    assert bool(data["attrs"]["complete"]) is False


def test_unconvergeable_implicit_step_stops_the_run_naming_time_and_residual(tmp_path):
    cfg = compose_config(*SMALL, "solver.kind=implicit", "time.end=40", "time.snapshot_every=10", "solver.dt=10",
                         "precision=float64", "solver.max_newton=1")
    with pytest.raises(SimulationError) as info:
        run(cfg, output_dir=tmp_path)
    message = str(info.value)
    assert RESIDUAL.search(message) and "t = 0 s" in message
    data = read_all(tmp_path / "il2rd.h5")
    assert data["n_snapshots"] == 1 and data["field"][0].max() == 0.0  # only the initial state


# ---------------------------------------------------------------------------------------------
# Reproducibility


def placement(data: dict) -> np.ndarray:
    return np.stack([data["x"], data["y"], data["z"], data["type"]], axis=1)


REPRO = ["grid.shape=[20,16,12]", *QUIET]


@pytest.mark.parametrize("kind", ["steady", "implicit"])
def test_same_config_and_seed_give_bitwise_the_same_run(tmp_path, kind):
    extra = [] if kind == "steady" else ["solver.kind=implicit", "time.end=30", "time.snapshot_every=10", "solver.dt=5"]
    cfg = compose_config(*REPRO, "seed=3", *extra)  # float32, the default precision
    first = run(cfg, output_dir=tmp_path / "a")
    second = run(compose_config(*REPRO, "seed=3", *extra), output_dir=tmp_path / "b")  # computed anew
    a, b = read_all(first.path), read_all(second.path)
    np.testing.assert_array_equal(placement(a), placement(b))
    assert first.field_pM.dtype == np.float32
    np.testing.assert_array_equal(first.field_pM, second.field_pM)
    np.testing.assert_array_equal(a["field"], b["field"])
    np.testing.assert_array_equal(a["il2"], b["il2"])
    assert a["field"].shape[0] == (1 if kind == "steady" else 4) and a["field"][-1].max() > 0

    other = run(compose_config(*REPRO, "seed=4", *extra), output_dir=tmp_path / "c")
    c = read_all(other.path)
    assert len(c["x"]) == len(a["x"])  # the same counts ...
    assert not np.array_equal(placement(a), placement(c))  # ... placed elsewhere
    producers = lambda d: {tuple(p) for p in placement(d)[d["type"] == 0][:, :3].tolist()}  # noqa: E731
    assert producers(a) != producers(c)
    assert not np.array_equal(first.field_pM, other.field_pM)


def test_float32_and_float64_agree_on_the_default_scenario(tmp_path):
    """The shipped scenario on a 32^3 lattice: mean IL-2 and every per-type readout agree to 1e-4
    relative between float32 (the default) and float64; the whole field to 1e-4 of its maximum."""
    results = {p: run(compose_config("grid.shape=[32,32,32]", f"precision={p}", *QUIET), output_dir=tmp_path / p)
               for p in ("float32", "float64")}
    s32, s64 = results["float32"].summary, results["float64"].summary
    assert results["float32"].field_pM.dtype == np.float32 and results["float64"].field_pM.dtype == np.float64
    assert s32.mean_il2_pM == pytest.approx(s64.mean_il2_pM, rel=1e-4)
    assert s32.max_il2_pM == pytest.approx(s64.max_il2_pM, rel=1e-4)
    assert [t.name for t in s32.types] == [t.name for t in s64.types] and [t.count for t in s32.types] == [
        t.count for t in s64.types]
    for t32, t64 in zip(s32.types, s64.types):
        assert t32.mean_il2_pM == pytest.approx(t64.mean_il2_pM, rel=1e-4), t32.name
        assert t32.mean_uptake_molecules_per_s == pytest.approx(t64.mean_uptake_molecules_per_s, rel=1e-4), t32.name
        assert t32.total_uptake_molecules_per_s == pytest.approx(t64.total_uptake_molecules_per_s, rel=1e-4), t32.name
    f32, f64 = results["float32"].field_pM.astype(np.float64), results["float64"].field_pM
    assert np.abs(f32 - f64).max() <= 1e-4 * np.abs(f64).max()


def test_file_records_what_is_needed_to_rerun_it_and_rerunning_reproduces_it(tmp_path):
    overrides = [*REPRO, "seed=11", "physics.diffusion=25", "cell_types.treg.receptors=5e4",
                 "+cell_types.bcell.receptors=300", "+cell_types.bcell.count=40", "grid.boundary={x_lo: fixed}",
                 "grid.boundary_value=2.5"]
    cfg = compose_config(*overrides)
    first = run(cfg, output_dir=tmp_path / "first")
    with h5py.File(first.path, "r") as f:
        attrs = dict(f.attrs)
        text = f["meta/config"][()]
        text = text.decode() if isinstance(text, bytes) else text
    # config, seed, versions, device
    assert OmegaConf.to_container(OmegaConf.create(yaml.safe_load(text))) == OmegaConf.to_container(cfg, resolve=True)
    assert int(attrs["seed"]) == 11 and attrs["precision"] == "float32" and attrs["solver"] == "steady"
    for key in ("il2rd_version", "jax_version", "numpy_version", "h5py_version", "hdf5_version", "python_version"):
        assert isinstance(attrs.get(key), str) and attrs[key], key
    assert attrs["il2rd_version"] == il2rd.__version__ and attrs["jax_version"] == jax.__version__
    device = jax.devices()[0]
    assert device.platform in attrs["device"] and str(device.device_kind) in attrs["device"]

    # re-run from the stored config alone (as text, and through the schema) reproduces the run
    reference = read_all(first.path)
    for i, again in enumerate([OmegaConf.create(text), stored_config(first.path)]):
        result = run(again, output_dir=tmp_path / f"again{i}")
        rerun = read_all(result.path)
        np.testing.assert_array_equal(placement(rerun), placement(reference))
        np.testing.assert_array_equal(result.field_pM, first.field_pM)
        np.testing.assert_array_equal(rerun["field"], reference["field"])


def test_csv_placed_run_records_its_cells_so_it_can_be_rerun_without_the_csv(tmp_path):
    rng = np.random.default_rng(0)
    names = ["il2_producer", "treg", "naive_t"]
    voxels = rng.choice(12 * 10 * 8, size=200, replace=False)
    i, j, k = np.unravel_index(voxels, (12, 10, 8))
    rows = [(10 * a + 3.0, 10 * b + 7.0, 10 * c + 5.0, names[t]) for a, b, c, t in
            zip(i, j, k, rng.integers(0, 3, 200))]
    csv = tmp_path / "cells.csv"
    csv.write_text("x,y,z,type\n" + "".join(f"{x},{y},{z},{t}\n" for x, y, z, t in rows))
    first = run(compose_config(*SMALL, f"cells.csv={csv}"), output_dir=tmp_path / "first")
    csv.unlink()

    data = read_all(first.path)
    with il2rd.io.load(first.path) as r:
        type_names = r.type_names
    rebuilt = tmp_path / "rebuilt.csv"
    rebuilt.write_text("x,y,z,type\n" + "".join(
        f"{float(x)!r},{float(y)!r},{float(z)!r},{type_names[t]}\n" for x, y, z, t in zip(data["x"], data["y"], data["z"], data["type"])))
    again = stored_config(first.path)
    again.cells.csv = str(rebuilt)
    result = run(again, output_dir=tmp_path / "again")
    np.testing.assert_array_equal(result.field_pM, first.field_pM)


# ---------------------------------------------------------------------------------------------
# Bad input through the command's code path. None of these is in tests/test_config.py's BAD table
# (53 cases) or tests/test_cli.py's BAD_CLI table (8 cases).

TINY = ["grid.shape=[8,8,4]", *QUIET]

BAD_INPUT = [
    # (id, overrides, what the message must name, who refuses: "il2rd" exits 2 with one line;
    #  "hydra" is Hydra's schema refusing the value while composing)
    ("ec50-max-zero", ["signalling.ec50_max=0"], ["signalling.ec50_max", "0"], "il2rd"),
    ("ec50-k-negative", ["signalling.ec50_k=-860"], ["signalling.ec50_k", "-860"], "il2rd"),
    ("ec50-exponent-negative", ["signalling.ec50_exponent=-1.5"], ["signalling.ec50_exponent", "-1.5"], "il2rd"),
    ("hill-zero", ["signalling.hill=0"], ["signalling.hill", "0"], "il2rd"),
    ("pstat5-threshold-above-one", ["signalling.pstat5_threshold=1.5"], ["signalling.pstat5_threshold", "1.5"], "il2rd"),
    ("pstat5-threshold-zero", ["signalling.pstat5_threshold=0"], ["signalling.pstat5_threshold", "0"], "il2rd"),
    ("compression-unknown", ["output.compression=lz4"], ["output.compression", "lz4"], "il2rd"),
    ("max-newton-zero", ["solver.max_newton=0"], ["solver.max_newton", "0"], "il2rd"),
    ("preconditioner-unknown", ["solver.preconditioner=ilu"], ["solver.preconditioner", "ilu"], "il2rd"),
    ("cd25-gain-below-one", ["+cell_types.treg.cd25_gain=0.5"], ["cell_types.treg.cd25_gain", "0.5"], "il2rd"),
    ("secretion-course-unordered", ["+cell_types.il2_producer.secretion_course=[7,1,22]"],
     ["cell_types.il2_producer.secretion_course", "onset <= peak <= off"], "il2rd"),
    ("secretion-course-two-numbers", ["+cell_types.il2_producer.secretion_course=[1,7]"],
     ["cell_types.il2_producer.secretion_course"], "il2rd"),
    ("receptor-turnover-zero", ["receptor_dynamics.turnover=0"], ["receptor_dynamics.turnover", "0"], "il2rd"),
    ("attribution-not-a-boolean", ["output.attribution=maybe"], ["output.attribution", "maybe"], "hydra"),
    ("cell-radius-above-the-voxel-limit", ["physics.cell_radius=20"], ["physics.cell_radius", "20", "grid.spacing"], "il2rd"),
    ("hev-exchange-negative", ["vessels.hev_exchange=-1"], ["vessels.hev_exchange", "-1"], "il2rd"),
    ("blood-il2-nan", ["vessels.blood_il2=nan"], ["vessels.blood_il2", "nan"], "il2rd"),
    ("lymph-drainage-without-room-for-the-node", ["grid.shape=[8,8,4]", "vessels.lymph_drainage=1e-3"], ["node"], "il2rd"),
    ("cell-radius-in-2d", ["grid.shape=[8,8,1]", "physics.cell_radius=5"], ["physics.cell_radius", "3-D"], "il2rd"),
    ("cell-radius-negative", ["physics.cell_radius=-5"], ["physics.cell_radius", "-5"], "il2rd"),
    ("rtol-nan", ["solver.rtol=nan"], ["solver.rtol", "nan"], "il2rd"),
    ("end-negative-steady", ["time.end=-3600"], ["time.end", "-3600"], "il2rd"),
    ("end-infinite-transient", ["solver.kind=implicit", "time.end=inf"], ["time.end", "inf"], "il2rd"),
    ("snapshot-every-negative", ["solver.kind=implicit", "time.snapshot_every=-600"], ["time.snapshot_every", "-600"],
     "il2rd"),
    ("too-many-steps", ["solver.kind=implicit", "solver.dt=1e-6"], ["solver.dt", "1e-06"], "il2rd"),
    ("too-many-snapshots", ["solver.kind=explicit", "time.snapshot_every=0.01"], ["time.snapshot_every", "0.01"],
     "il2rd"),
    ("decay-infinite", ["physics.decay=inf"], ["physics.decay", "inf"], "il2rd"),
    ("boundary-value-nan", ["grid.boundary_value=nan"], ["grid.boundary_value", "nan"], "il2rd"),
    ("boundary-value-unknown-face", ["grid.boundary_value={top: 1}"], ["grid.boundary_value.top", "1"], "il2rd"),
    ("boundary-a-list", ["grid.boundary=[fixed,fixed]"], ["grid.boundary", "fixed"], "il2rd"),
    ("unknown-physics-key", ["+physics.difusion=3"], ["physics.difusion", "3"], "il2rd"),
    ("unknown-top-level-key", ["+foo=1"], ["foo", "1"], "il2rd"),
    ("cell-type-not-a-mapping", ["cell_types.treg=5"], ["cell_types.treg", "5"], "il2rd"),
    ("no-cell-types", ["~cell_types.il2_producer", "~cell_types.treg", "~cell_types.naive_t"], ["cell_types"], "il2rd"),
    ("secretion-nan", ["cell_types.il2_producer.secretion=nan"], ["cell_types.il2_producer.secretion", "nan"], "il2rd"),
    ("receptors-infinite", ["cell_types.treg.receptors=inf"], ["cell_types.treg.receptors", "inf"], "il2rd"),
    ("km-negative", ["cell_types.naive_t.km=-43"], ["cell_types.naive_t.km", "-43"], "il2rd"),
    ("k-int-nan", ["cell_types.treg.k_int=nan"], ["cell_types.treg.k_int", "nan"], "il2rd"),
    ("density-nan", ["cell_types.treg.density=nan"], ["cell_types.treg.density", "nan"], "il2rd"),
    ("region-not-a-mapping", ["+cell_types.treg.region=5"], ["cell_types.treg.region", "5"], "il2rd"),
    ("region-corner-two-numbers", ["+cell_types.treg.region={kind: box, lo: [0, 0], hi: [40, 40, 40]}"],
     ["cell_types.treg.region.lo", "[0, 0]"], "il2rd"),
    ("region-corner-a-word", ["+cell_types.treg.region={kind: box, lo: [0, a, 0], hi: [40, 40, 40]}"],
     ["cell_types.treg.region.lo[1]", "a"], "il2rd"),
    ("region-sphere-without-radius", ["+cell_types.treg.region={kind: sphere, center: [40, 40, 20]}"],
     ["cell_types.treg.region", "sphere"], "il2rd"),
    ("region-sphere-radius-zero", ["+cell_types.treg.region={kind: sphere, center: [40, 40, 20], radius: 0}"],
     ["cell_types.treg.region.radius", "0"], "il2rd"),
    ("csv-a-directory", ["cells.csv=/tmp"], ["cells.csv", "/tmp"], "il2rd"),
    ("volume-fraction-above-one", ["physics.volume_fraction=1.5"], ["physics.volume_fraction", "1.5"], "il2rd"),
    ("tortuosity-nan", ["physics.tortuosity=nan"], ["physics.tortuosity", "nan"], "il2rd"),
    ("receptor-cv-a-percentage", ["cell_types.treg.receptor_cv=50"], ["cell_types.treg.receptor_cv", "50"], "il2rd"),
    ("region-node-on-a-tiny-lattice", ["+cell_types.treg.region={kind: node}"], ["node.capsule_thickness", "20"],
     "il2rd"),
    ("region-medulla-none-defined", ["grid.shape=[40,40,40]", "node.follicles.count=0", "node.medulla_fraction=0",
                                     "+cell_types.treg.region={kind: medulla}"], ["cell_types.treg.region", "medulla"],
     "il2rd"),
    ("node-semi-axes-a-word", ["node.semi_axes=[a,1,1]"], ["node.semi_axes", "a"], "hydra"),
    # no decay, no fixed face: producers secreting more than all receptors can internalise
    ("secretion-above-uptake-capacity", ["physics.decay=0", "cell_types.il2_producer.secretion=1e5"],
     ["physics.decay", "0"], "il2rd"),
    # a lattice no machine can hold (1e15 voxels): refused at start-up, not a MemoryError traceback
    ("lattice-too-large", ["grid.shape=[100000,100000,100000]"], ["grid.shape", "100000"], "il2rd"),
    ("seed-a-fraction", ["seed=1.5"], ["seed", "1.5"], "hydra"),
    ("spacing-a-word", ["grid.spacing=ten"], ["grid.spacing", "ten"], "hydra"),
    ("progress-not-a-boolean", ["output.progress=maybe"], ["output.progress", "maybe"], "hydra"),
    ("max-iter-a-word", ["solver.max_iter=many"], ["solver.max_iter", "many"], "hydra"),
    ("shape-a-number", ["grid.shape=8"], ["grid.shape", "8"], "hydra"),
]


@pytest.mark.parametrize("overrides, named, who", [pytest.param(o, n, w, id=i) for i, o, n, w in BAD_INPUT])
def test_bad_input_through_the_command_code_path(cli, tmp_path, overrides, named, who):
    code, stdout, stderr = cli(*TINY, *overrides)
    no_traceback(stdout + stderr)
    if who == "il2rd":
        line = one_line_error(code, stdout, stderr)
        assert line.startswith("il2rd: error: "), line
        text = line
    else:
        assert code != 0, f"accepted:\n{stdout}\n{stderr}"
        text = stderr
    for part in named:
        assert part in text, f"{part!r} not named in: {text}"
    assert not list(tmp_path.rglob("il2rd.h5")), "an output file was made for a refused input"


# Through the real command: a few of the table, started together (JAX's start-up paid in parallel)
SUBPROCESS_CASES = ["pstat5-threshold-above-one", "compression-unknown", "unknown-physics-key", "too-many-steps",
                    "lattice-too-large"]


@pytest.fixture(scope="module")
def command_runs(tmp_path_factory):
    """Each SUBPROCESS_CASES input, and one unconvergeable solve, run by the real `il2rd`."""
    table = {i: o for i, o, _, _ in BAD_INPUT}
    jobs = {name: [*TINY, *table[name]] for name in SUBPROCESS_CASES}
    jobs["unconvergeable"] = [*SMALL, "precision=float32", "solver.max_newton=1"]  # (rtol 1e-12 now stops at the float32 floor)
    procs = {}
    for name, overrides in jobs.items():
        work = tmp_path_factory.mktemp(name)
        procs[name] = (work, time.monotonic(), subprocess.Popen(
            [il2rd_command(), *overrides, f"hydra.run.dir={work / 'run'}"], cwd=work, env=subprocess_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    done = {}
    for name, (work, started, proc) in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        done[name] = (work, proc.returncode, stdout, stderr, time.monotonic() - started)
    return done


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_input_on_the_real_command_line(command_runs, case):
    work, code, stdout, stderr, _ = command_runs[case]
    named = {i: n for i, _, n, _ in BAD_INPUT}[case]
    line = one_line_error(code, stdout, stderr, expected_code=2)
    assert line.startswith("il2rd: error: ")
    for part in named:
        assert part in line, f"{part!r} not named in: {line}"
    assert not list(work.rglob("il2rd.h5"))


def test_unconvergeable_solve_on_the_real_command_line(command_runs):
    work, code, stdout, stderr, _ = command_runs["unconvergeable"]
    no_traceback(stdout + stderr)
    assert code == 1, f"exit {code}\n{stderr}"
    assert stderr.startswith("il2rd: simulation failed:") and RESIDUAL.search(stderr), stderr
    assert str(work / "run" / "il2rd.h5") in stderr  # names the file it kept
