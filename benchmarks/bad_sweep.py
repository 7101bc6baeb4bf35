"""A sweep with 5 % deliberately bad points loses nothing else (issue 13's "done when").

n runs on 12 x 10 x 8 voxels (steady, float32), solved as vmapped batches by il2rd.sweep.run_batched
(what `il2rd -m ... hydra/launcher=il2rd_batched` runs). Every 20th point is bad, in turn:
a solve that cannot converge (solver.rtol = 1e-12, below float32's round-off), a refused config
(physics.diffusion = -1), and the last bad point a run killed mid-run: a transient run of the real `il2rd` command,
SIGKILLed after its first snapshot (with --no-kill: interrupted in this process instead). Then
il2rd-collect must list n - n/20 complete runs and n/20 runs that say why (failed: the reason;
incomplete: killed), with the folders' swept parameters, and nothing else lost.

    PYTHONPATH=$PWD python benchmarks/bad_sweep.py /tmp/bad_sweep            # 500 runs, minutes
    PYTHONPATH=$PWD python benchmarks/bad_sweep.py /tmp/bad_sweep --runs 100

tests/test_safety.py runs a 30-run version (every 10th point bad) (interrupting the killed point in-process).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

BASE = ["grid.shape=[12,10,8]", "output.progress=false", "precision=float32", "output.attribution=false"]
KILLED = ["solver.kind=explicit", "time.end=60000", "time.snapshot_every=150", "solver.dt=10"]


def point(i: int, n_runs: int, every: int = 20) -> tuple[str, list[str]]:
    """(kind, overrides) of point i: good, or (every `every`-th point, in turn) unconverged,
    refused, ..., and the last bad point killed mid-run."""
    good = [f"seed={i}", f"cell_types.treg.receptors={1000 * (1 + i % 7)}"]
    if i % every != 7 % every:
        return "good", good
    j, last = i // every, (n_runs - 1 - 7 % every) // every  # this bad point's index, the last one's
    if j == last:
        return "killed", [f"seed={i}", *KILLED]
    if j % 2:
        return "refused", [*good, "physics.diffusion=-1"]
    # one Newton step from c = 0 meets neither rtol nor the round-off floor (solvers/steady.py); an
    # unreachable rtol no longer fails, float32 then stops at its floor and says so
    return "unconverged", [*good, "solver.max_newton=1"]


def _kill_mid_run(overrides: list[str], folder: Path) -> None:
    exe = shutil.which("il2rd") or str(Path(sys.executable).with_name("il2rd"))
    hydra_dir = folder.parent.parent / f".{folder.parent.name}_killed_run"  # outside the sweep: not a job of it
    proc = subprocess.Popen([exe, *overrides, f"output.dir={folder}", f"hydra.run.dir={hydra_dir}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import h5py

    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with h5py.File(folder / "il2rd.h5", "r", locking=False) as f:
                if int(f.attrs["n_snapshots"]) >= 2:
                    break
        except Exception:  # noqa: BLE001 (not there yet, or being written)
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _interrupt_mid_run(cfg, folder: Path) -> None:
    """The same state without a process to kill: Ctrl-C as snapshot 2 is committed."""
    from h5py._hl.attrs import AttributeManager

    from il2rd.simulate import RunInterrupted, run

    set_attr = AttributeManager.__setitem__

    def attr(self, name, value):
        if name == "n_snapshots" and int(value) == 3:
            raise KeyboardInterrupt
        return set_attr(self, name, value)

    AttributeManager.__setitem__ = attr
    try:
        run(cfg, folder)
    except RunInterrupted:
        pass
    finally:
        AttributeManager.__setitem__ = set_attr


def bad_sweep(sweep_dir: Path, n_runs: int = 500, kill: bool = True, batch_size: int = 64, every: int = 20) -> dict:
    """Run the sweep into sweep_dir and collect it; returns counts and timings."""
    from hydra import compose, initialize_config_dir

    from il2rd.analysis import collect
    from il2rd.cli import config_dir
    from il2rd.config.schema import register_configs
    from il2rd.sweep import run_batched

    sweep_dir = Path(sweep_dir)
    register_configs()
    kinds, cfgs, folders = [], [], []
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for i in range(n_runs):
            kind, overrides = point(i, n_runs, every)
            folder = sweep_dir / str(i)
            (folder / ".hydra").mkdir(parents=True, exist_ok=True)
            (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))  # as Hydra writes it
            kinds.append(kind)
            if kind == "killed":
                if kill:
                    _kill_mid_run([*BASE, *overrides], folder)
                else:
                    _interrupt_mid_run(compose("config", overrides=[*BASE, *overrides]), folder)
                continue
            cfgs.append(compose("config", overrides=[*BASE, *overrides]))
            folders.append(folder)
    started = time.perf_counter()
    run_batched(cfgs, folders, batch_size=batch_size, progress=False)
    solved_s = time.perf_counter() - started
    rows = collect.collect(sweep_dir)
    by_run = {}
    for r in rows:
        by_run.setdefault(r["run"], []).append(r)
    status = {run: {r["status"] for r in rs} for run, rs in by_run.items()}
    return dict(runs=len(by_run), kinds=kinds, status=status, rows=rows, solved_s=solved_s)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--no-kill", action="store_true", help="interrupt the killed point in this process instead")
    args = parser.parse_args(argv)
    if args.sweep_dir.exists() and any(args.sweep_dir.iterdir()):
        print(f"bad_sweep: {args.sweep_dir} is not empty; give a new folder", file=sys.stderr)
        return 2
    out = bad_sweep(args.sweep_dir, args.runs, kill=not args.no_kill)
    counts = {}
    for s in out["status"].values():
        counts[", ".join(sorted(s))] = counts.get(", ".join(sorted(s)), 0) + 1
    print(f"{out['runs']} runs collected in {args.sweep_dir}: {counts}; batched solve {out['solved_s']:.1f} s")
    for r in out["rows"]:
        if r["status"] != "complete" and r["run"].isdigit() and int(r["run"]) < 60 or r["status"] == "incomplete":
            print(f"  {r['run']}: {r['status']}: {r['message'][:150]}")
    good = sum(k == "good" for k in out["kinds"])
    ok = counts.get("complete", 0) == good and out["runs"] == args.runs
    print("nothing lost" if ok else "SOMETHING LOST")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
