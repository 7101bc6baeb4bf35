"""`il2rd-collect <sweep dir>`: every run of a sweep in one tidy table, and the standard sweep plots.

One row per run and cell type: the run's folder, its status, the swept parameters (from
Hydra's .hydra/overrides.yaml), the seed, and the readouts of its last snapshot for that type
(cells, mean IL-2 seen, mean uptake, total uptake, mean pSTAT5, pSTAT5+ fraction, mean high- and
intermediate-affinity receptors) and, for runs with a source attribution, the share of each source's
output that type took up (`share_of_<source>`) and, on a secreting type's row, its autocrine share and
the share that decayed or left. A run that
failed (its il2rd.failed says why), was killed part-way (its file is not marked complete), or
never wrote anything keeps one row with that status, so nothing is silently dropped.

Writes <sweep dir>/sweep.csv, <sweep dir>/sweep.h5 (group /table, one dataset per column along a
`row` dimension, openable with xarray) and figures in <sweep dir>/sweep_figures/.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import h5py
import numpy as np
import yaml

from ..io.reader import load
from ..runfolder import FAILED_MARKER, failure_of

READOUTS = ("cells", "mean_il2_pM", "mean_uptake_molecules_per_s", "total_uptake_molecules_per_s", "mean_pstat5",
            "pstat5_positive_fraction", "mean_receptors", "mean_receptors_intermediate")
PLOTTED = "pstat5_positive_fraction"


def _value(text: str):
    """An override's value as a number where it is one."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _swept(job_dir: Path) -> tuple[dict, str]:
    """The job's swept parameters from .hydra/overrides.yaml, and what was wrong with that file
    ("" if nothing): a hand-edited or truncated one costs the parameters, never the row."""
    path = job_dir / ".hydra" / "overrides.yaml"
    try:
        overrides = yaml.safe_load(path.read_text()) if path.is_file() else []
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        return {}, f"{path.relative_to(job_dir)} unreadable ({str(err).splitlines()[0]})"
    if not isinstance(overrides, list):
        return {}, f"{path.relative_to(job_dir)} is not a list of overrides"
    params = {}
    for item in overrides:
        key, _, value = str(item).lstrip("+~").partition("=")
        params[key] = _value(value)
    return params, ""


def _job_dirs(sweep_dir: Path) -> list[Path]:
    found = {p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")}
    found |= {p.parent for p in sweep_dir.rglob("il2rd.h5")}
    found |= {p.parent for p in sweep_dir.rglob(FAILED_MARKER)}

    def order(path: Path):
        rel = path.relative_to(sweep_dir).parts
        return tuple((0, int(x)) if x.isdigit() else (1, x) for x in rel)

    return sorted(found, key=order)


def _rows_of_run(job_dir: Path, sweep_dir: Path) -> list[dict]:
    params, problem = _swept(job_dir)
    base = {"run": str(job_dir.relative_to(sweep_dir)) or ".", **{f"param:{k}": v for k, v in params.items()}}
    h5 = job_dir / "il2rd.h5"
    failed = failure_of(job_dir)
    if failed is not None:
        return [{**base, "status": "failed", "message": failed}]
    if not h5.is_file():
        return [{**base, "status": "missing", "message": "no il2rd.h5 (killed before writing, or never started)"}]
    try:
        rows = _rows_of_file(h5, base)
    except Exception as err:  # noqa: BLE001 (a foreign, older or damaged file is a row that says so)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return [{**base, "status": "unreadable", "message": f"il2rd.h5: {type(err).__name__}: {first}"}]
    if problem:
        for r in rows:
            r["message"] = "; ".join(m for m in (r["message"], problem) if m)
    return rows


def _rows_of_file(h5: Path, base: dict) -> list[dict]:
    with load(h5) as run:
        if not run.attrs.get("complete", False):
            return [{**base, "status": "incomplete",
                     "message": f"{len(run.time)} snapshot(s) written, not finished (killed?)"}]
        threshold = float(run.config.get("signalling", {}).get("pstat5_threshold", 0.5))
        il2, uptake, pstat5 = (np.asarray(run.cells[name][-1], np.float64) for name in ("il2", "uptake", "pstat5"))
        receptors = {name: np.asarray(run.cells[name][-1], np.float64) if name in run.cells else None
                     for name in ("receptors", "receptors_intermediate")}  # the latter absent from files of older il2rd
        rows = []
        for i, name in enumerate(run.type_names):
            sel = (run.cells["type"] == i) & run.living(-1)
            n = int(sel.sum())
            mean = lambda a: float(a[sel].mean()) if n else math.nan  # noqa: E731
            rows.append({
                **base, "status": "complete", "message": "", "seed": int(run.attrs["seed"]), "cell_type": name,
                "cells": n, "mean_il2_pM": mean(il2), "mean_uptake_molecules_per_s": mean(uptake),
                "total_uptake_molecules_per_s": float(uptake[sel].sum()), "mean_pstat5": mean(pstat5),
                "pstat5_positive_fraction": float(np.mean(pstat5[sel] >= threshold)) if n else math.nan,
                **{f"mean_{k}": mean(v) if v is not None else math.nan for k, v in receptors.items()},
                **_attribution_columns(run.attribution, name),
            })
        return rows


def _attribution_columns(attribution, cell_type: str) -> dict:
    """The row's attribution columns (runs with /attribution): for each source s (a secreting type,
    `boundary`, `circulation`), `share_of_<s>`, the fraction of s's output this cell type took up;
    on a secreting type's own row `autocrine_share`, the fraction of its output its cells took up
    again, and `decayed_or_left_share`. Runs without an attribution have none of these columns."""
    if attribution is None:
        return {}
    shares = attribution.shares()
    columns = {f"share_of_{source}": shares[source].get(cell_type, math.nan) for source in attribution.sources}
    own = shares.get(cell_type, {})
    columns["autocrine_share"] = own.get("autocrine", math.nan)
    columns["decayed_or_left_share"] = own.get("decay/left", math.nan)
    return columns


def collect(sweep_dir: Path) -> list[dict]:
    """The tidy table of a sweep folder (basic, joblib, submitit or il2rd_batched multirun)."""
    rows = []
    for job_dir in _job_dirs(Path(sweep_dir)):
        rows += _rows_of_run(job_dir, Path(sweep_dir))
    return rows


def swept_keys(rows: list[dict]) -> list[str]:
    """The `param:` keys that take more than one value across the runs, in command-line order
    (overrides.yaml keeps it); the seed is its own column, and keys fixed for every run (such as
    grid.shape) are not swept."""
    keys = dict.fromkeys(k for r in rows for k in r if k.startswith("param:") and k != "param:seed")
    return [k for k in keys if len({repr(r.get(k)) for r in rows}) > 1]


def fixed_overrides(rows: list[dict]) -> dict:
    """The overrides every run shares ({key: value}), e.g. grid.shape: not swept."""
    keys = dict.fromkeys(k for r in rows for k in r if k.startswith("param:") and k != "param:seed")
    return {k.removeprefix("param:"): rows[0].get(k) for k in keys if k not in swept_keys(rows)}


def _columns(rows: list[dict]) -> list[str]:
    first = ["run", "status", "message"]
    rest = ["seed", "cell_type", *READOUTS]
    shares = dict.fromkeys(k for r in rows for k in r if k.startswith("share_of_"))  # sources differ between presets
    attribution = [*shares, "autocrine_share", "decayed_or_left_share"] if shares else []
    return first + swept_keys(rows) + rest + attribution


def write_csv(rows: list[dict], path: Path) -> Path:
    tmp = path.with_suffix(".csv.tmp")  # written whole, then renamed: never a half table
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_columns(rows), restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def write_hdf5(rows: list[dict], path: Path) -> Path:
    """The table as one dataset per column (numbers as float64 with NaN for blanks, else text)."""
    tmp = path.with_suffix(".h5.tmp")
    with h5py.File(tmp, "w") as f:
        g = f.create_group("table")
        row = g.create_dataset("row", data=np.arange(len(rows)))
        row.make_scale("row")
        for column in _columns(rows):
            values = [r.get(column, "") for r in rows]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) or v == "" for v in values)
            if numeric and any(v != "" for v in values):
                data = np.array([np.nan if v == "" else float(v) for v in values])
            else:
                data = np.array([str(v) for v in values], dtype=h5py.string_dtype())
            d = g.create_dataset(column.replace(":", "."), data=data)
            d.dims[0].attach_scale(row)
    tmp.replace(path)
    return path


def _numeric_params(rows: list[dict]) -> list[str]:
    done = [r for r in rows if r["status"] == "complete"]
    return [k for k in swept_keys(rows) if all(isinstance(r.get(k), (int, float)) for r in done) and len({r.get(k) for r in done}) > 1]


def plot(rows: list[dict], out_dir: Path, readout: str = PLOTTED) -> list[Path]:
    """The sweep figures (il2rd/figures/sweep.py) over the numeric swept parameters, in command-line order."""
    from ..figures.sweep import plot as plot_sweep

    return plot_sweep(rows, _numeric_params(rows), out_dir, readout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="il2rd-collect", description="Gather every run of a sweep into one table.")
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder (e.g. multirun/<date>/<time>)")
    parser.add_argument("--readout", default=PLOTTED, choices=READOUTS[1:], help="readout to plot")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"il2rd-collect: error: sweep_dir = {str(args.sweep_dir)!r}: no such folder", file=sys.stderr)
        return 2
    rows = collect(args.sweep_dir)
    if not rows:
        print(f"il2rd-collect: error: sweep_dir = {str(args.sweep_dir)!r}: holds no il2rd runs", file=sys.stderr)
        return 2
    written = [write_csv(rows, args.sweep_dir / "sweep.csv"), write_hdf5(rows, args.sweep_dir / "sweep.h5")]
    if not args.no_plots:
        written += plot(rows, args.sweep_dir / "sweep_figures", args.readout)
    fixed = fixed_overrides(rows)
    if fixed:
        print("the same in every run (not swept): " + ", ".join(f"{k}={v}" for k, v in fixed.items()))
    runs = {r["run"]: r["status"] for r in rows}
    counts = {s: list(runs.values()).count(s) for s in sorted(set(runs.values()))}
    print(f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    for r in rows:
        if r["status"] != "complete":
            print(f"  {r['run']}: {r['status']}: {r['message']}")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
