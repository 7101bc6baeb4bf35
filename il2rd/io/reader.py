"""Reading a run's HDF5 file: `load(path)` gives its field, time, cells and config.

Large datasets (the field, the per-cell time series) stay on disk until indexed:

    with il2rd.io.load("outputs/.../il2rd.h5") as run:
        run.time                      # (time,) s, numpy
        run.field[-1]                 # (z, y, x) pM of the last snapshot, read now
        run.field_xyz(-1)             # the same as (nx, ny, nz), the lattice's own order
        run.field_stored              # (time,) bool: which snapshots hold the field (output.field_every)
        run.cells_stored              # (time,) bool: which hold the cell columns il2 .. pstat5 (output.cells_every)
        run.cells["il2"][-1]          # (cell,) pM seen by each cell at the last snapshot
        run.cells["x"], run.type_names, run.config["physics"]["diffusion"]
        run.readouts_by_type["treg"]["pstat5_positive_fraction"]   # the printed per-type table
        a = run.attribution           # None for a run without /attribution (transient, or output.attribution=false)
        a.uptake()["il2_producer"]["treg"]     # molecules/s of il2_producer's IL-2 taken up by Tregs
        a.shares()["il2_producer"]             # {responder: fraction of the source's output, ..., "decay/left": ...}
        a.by_cell_molecules_per_s     # (cell, source) each cell's uptake from each source

Only complete snapshots are visible (the first `n_snapshots`), also in a file whose run was
killed while writing one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np
import yaml

from ._holder import HoldsFile
from .layout import CELL_COLUMNS, CONTACT_COLUMNS, FATE_COLUMNS, TRACK_COLUMNS, TYPE_SCALE


class LazyArray:
    """A dataset whose first axis is time, cut to the complete snapshots, read on indexing."""

    def __init__(self, dataset: h5py.Dataset, n_time: int):
        self.dataset, self.n_time = dataset, n_time

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n_time, *self.dataset.shape[1:])

    @property
    def dtype(self):
        return self.dataset.dtype

    @property
    def attrs(self):
        return self.dataset.attrs

    def __len__(self) -> int:
        return self.n_time

    def __getitem__(self, index):
        if isinstance(index, tuple):
            first, rest = index[0], index[1:]
        else:
            first, rest = index, ()
        if isinstance(first, (int, np.integer)):
            if not -self.n_time <= first < self.n_time:
                raise IndexError(f"snapshot {first} out of range for {self.n_time} snapshots")
            first = int(first) % self.n_time
        elif isinstance(first, slice):
            first = slice(*first.indices(self.n_time))
        else:
            first = np.arange(self.n_time)[first]
        return self.dataset[(first, *rest)]

    def __array__(self, dtype=None, copy=None):
        data = self.dataset[: self.n_time]
        return data if dtype is None else data.astype(dtype)


@dataclass
class RunFile(HoldsFile):
    path: Path
    file: h5py.File
    attrs: dict
    config: dict
    time: np.ndarray  # (time,) s
    x: np.ndarray  # voxel centres, um
    y: np.ndarray
    z: np.ndarray
    field: LazyArray  # (time, z, y, x) pM; NaN at snapshots whose field was not stored (field_stored)
    cells: dict  # x, y, z (um), type: (cell,) numpy; il2, uptake, receptors[_intermediate], pstat5: (time, cell) lazy
    type_names: list[str]
    cell_types: dict = field(default_factory=dict)  # per-type parameters, numpy
    readouts: dict = field(default_factory=dict)  # per-type readouts of the last field, numpy (cell_type,)
    field_stored: np.ndarray | None = None  # (time,) bool: the snapshots whose field is stored (output.field_every)
    cells_stored: np.ndarray | None = None  # (time,) bool: those whose CELL_COLUMNS are stored (output.cells_every)

    def __post_init__(self):
        every = np.ones(len(self.time), bool)  # files written before output.field_every store every snapshot
        self.field_stored = every if self.field_stored is None else self.field_stored
        self.cells_stored = every if self.cells_stored is None else self.cells_stored

    @property
    def spacing_um(self) -> float:
        return float(self.attrs["spacing_um"])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.attrs["shape"])

    def snapshot_index(self, time_s: float | None, stored: bool = False) -> int:
        """The snapshot nearest to time_s (the last one for None); a time outside the stored
        snapshots' range (by more than half a snapshot interval) or NaN is refused. stored: the
        nearest (or last) of the snapshots that hold both the field and the cell columns
        (output.field_every, cells_every)."""
        if len(self.time) == 0:
            raise ValueError(f"{self.path} holds no complete snapshot")
        held = np.flatnonzero(self.field_stored & self.cells_stored) if stored else np.arange(len(self.time))
        if not len(held):
            raise ValueError(f"{self.path}: none of its {len(self.time)} complete snapshots holds both the field and "
                             "the cell columns (output.field_every, cells_every)")
        if time_s is None:
            return int(held[-1])
        first, last = float(self.time[0]), float(self.time[-1])
        slack = 0.5 * (last - first) / (len(self.time) - 1) if len(self.time) > 1 else 0.0
        if not np.isfinite(time_s) or not first - slack <= time_s <= last + slack:
            held = f"{first:g} s" if len(self.time) == 1 else f"{first:g} .. {last:g} s ({len(self.time)} snapshots)"
            raise ValueError(f"time = {time_s:g} s: outside the snapshots this file holds, {held}")
        return int(held[np.argmin(np.abs(self.time[held] - time_s))])

    @property
    def readouts_by_type(self) -> dict[str, dict[str, float]]:
        """The stored per-type table: {type name: {column: value}} (empty for a file without /readouts)."""
        return {name: {column: values[i].item() for column, values in self.readouts.items()}
                for i, name in enumerate(self.type_names)} if self.readouts else {}

    @cached_property
    def attribution(self) -> "StoredAttribution | None":
        """The run's source attribution (/attribution) with names, None where the file has none."""
        if "attribution" not in self.file:
            return None
        g = self.file["attribution"]
        return StoredAttribution(
            sources=tuple(_strings(g["source"][:])), responders=tuple(_strings(g["responder"][:])),
            uptake_molecules_per_s=g["uptake_molecules_per_s"][:], output_molecules_per_s=g["output_molecules_per_s"][:],
            by_cell_molecules_per_s=g["by_cell_molecules_per_s"][:], autocrine_molecules_per_s=g["autocrine_molecules_per_s"][:],
            cell_type=self.cells["type"], closure=float(g.attrs["closure"]),
            autocrine_window_change=float(g.attrs["autocrine_window_change"]),
            autocrine_exact=bool(g.attrs.get("autocrine_exact", False)), remainder=str(g.attrs.get("remainder", "")))

    @property
    def moves(self) -> bool:
        """Whether the run's cells move (a tissue run: /cells/track_x, _y, _z per snapshot)."""
        return "track_x" in self.cells

    @property
    def has_fate(self) -> bool:
        """Whether cells divide and die in this run (fate.enabled: /cells/alive per snapshot)."""
        return "alive" in self.cells

    def living(self, index: int = -1) -> np.ndarray:
        """(cell,) bool: the slots holding a living cell at snapshot `index` (every cell in runs
        without fate; in runs with fate the other slots' columns are NaN)."""
        if not self.has_fate:
            return np.ones(len(self.cells["type"]), bool)
        return np.asarray(self.cells["alive"][index]) > 0

    def positions_um(self, index: int = -1) -> np.ndarray:
        """(cell, 3) where each cell is at snapshot `index` (um): its track in a tissue run, else
        where it was placed (/cells/x, y, z)."""
        if self.moves:
            return np.stack([np.asarray(self.cells[f"track_{a}"][index], np.float64) for a in "xyz"], axis=1)
        return np.stack([self.cells[a] for a in "xyz"], axis=1).astype(np.float64)

    def field_xyz(self, index: int = -1) -> np.ndarray:
        """One snapshot as (nx, ny, nz), the lattice's own order."""
        return np.transpose(self.field[index], (2, 1, 0))


def closure_note(closure: float, remainder: str, n_sources: int) -> str:
    """How closely the shares add up, in words: the closure, and where one source's part is the
    steady field less the others' (attribution.py, attrs remainder), that it holds by construction."""
    if not remainder:
        return f"closure of the shares {closure:.1e}"
    rest = "itself" if n_sources == 1 else "less the other sources'"
    return f"closure of the shares {closure:.1e} by construction: {remainder}'s part is the steady field {rest}"


@dataclass(frozen=True)
class StoredAttribution:
    """Who took up whose IL-2 (the file's /attribution, attribution.py), with names. Arrays in
    molecules/s: uptake (source, responder) by responder type, output (source,) what each source
    put in, by_cell (cell, source), autocrine (cell,) each cell's uptake of its own secretion
    (part of its type's share of its type's source)."""

    sources: tuple[str, ...]
    responders: tuple[str, ...]
    uptake_molecules_per_s: np.ndarray
    output_molecules_per_s: np.ndarray
    by_cell_molecules_per_s: np.ndarray
    autocrine_molecules_per_s: np.ndarray
    cell_type: np.ndarray  # (cell,) index into responders
    closure: float
    autocrine_window_change: float
    autocrine_exact: bool = False  # from one global solve per secreting cell (files before it: the window)
    remainder: str = ""  # the source whose part is the steady field less the others' ('' if all solved; files before it)

    def output(self) -> dict[str, float]:
        """{source: molecules/s it put in}."""
        return {s: float(v) for s, v in zip(self.sources, self.output_molecules_per_s)}

    def uptake(self) -> dict[str, dict[str, float]]:
        """{source: {responder type: molecules/s of that source's IL-2 its cells took up}}."""
        return {s: {r: float(v) for r, v in zip(self.responders, row)}
                for s, row in zip(self.sources, self.uptake_molecules_per_s)}

    def autocrine(self) -> dict[str, float]:
        """{source: molecules/s of its IL-2 taken up again by the very cell that secreted it} (0 for
        the boundary and the circulation)."""
        return {s: float(self.autocrine_molecules_per_s[self.cell_type == self.responders.index(s)].sum())
                if s in self.responders else 0.0 for s in self.sources}

    def shares(self) -> dict[str, dict[str, float]]:
        """{source: {responder: fraction of its output taken up, "decay/left": the rest, decayed or
        left the lattice, "autocrine": the fraction its own cells took up again}} (nan for a source
        with no output)."""
        out = {}
        auto = self.autocrine()
        for s, total, row in zip(self.sources, self.output_molecules_per_s, self.uptake_molecules_per_s):
            share = row / total if total > 0 else np.full(len(row), np.nan)
            out[s] = {**{r: float(v) for r, v in zip(self.responders, share)},
                      "decay/left": float(1 - share.sum()), "autocrine": float(auto[s] / total) if total > 0 else np.nan}
        return out


def _text(dataset) -> str:
    value = dataset[()]
    return value.decode() if isinstance(value, bytes) else str(value)


def _strings(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def load(path: str | Path) -> RunFile:
    """Open a run's file for reading (keep it open while using the lazy arrays; close() or `with`)."""
    path = Path(path)
    f = h5py.File(path, "r")
    try:
        return _read(path, f)
    except BaseException:  # a foreign or damaged file: raise what is missing, leave no handle open
        f.close()
        raise


def _read(path: Path, f: h5py.File) -> RunFile:
    attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    n = int(attrs.get("n_snapshots", f["time"].shape[0]))
    cells = {name: f["cells"][name][:] for name in ("x", "y", "z", "type")}
    for name in (*CELL_COLUMNS, *TRACK_COLUMNS, *FATE_COLUMNS, *CONTACT_COLUMNS):
        if name in f["cells"]:
            cells[name] = LazyArray(f["cells"][name], n)
    cell_types = {k: (_strings(v[:]) if v.dtype.kind in "OS" else v[:]) for k, v in f["cell_types"].items()
                  if k != TYPE_SCALE} if "cell_types" in f else {}
    return RunFile(
        path=path,
        file=f,
        attrs=attrs,
        config=yaml.safe_load(_text(f["meta/config"])),
        time=f["time"][:n],
        x=f["x"][:],
        y=f["y"][:],
        z=f["z"][:],
        field=LazyArray(f["fields/il2"], n),
        cells=cells,
        type_names=_strings(f["cells/type_names"][:]),
        cell_types=cell_types,
        readouts={k: v[:] for k, v in f["readouts"].items() if k != TYPE_SCALE} if "readouts" in f else {},
        field_stored=_flags(f["fields"], n),
        cells_stored=_flags(f["cells"], n),
    )


def _flags(group: h5py.Group, n: int) -> np.ndarray | None:
    """The group's /stored flags of the first n snapshots as bool; None where the file predates them."""
    return group["stored"][:n] > 0 if "stored" in group else None
