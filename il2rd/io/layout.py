"""The HDF5 file's layout: what each dataset holds, its columns, units and version.

Schema version 3 (README.md, "Output: the HDF5 file"). Lengths in um, times in s,
concentrations in pM:

    /                 attrs: schema_version, il2rd_version, jax_version, numpy_version, h5py_version,
                             python_version, device, spacing_um, origin_um, shape (nx, ny, nz),
                             boundary, face_values_pM, solver, precision, seed, n_snapshots,
                             wall_time_s, summary_* numbers, config_sha256 (what identifies
                             the run: simulate.config_key), complete (set when the run finished)
    /time             (time,) s                      dimension scale, resizable
    /x, /y, /z        voxel centres, um              dimension scales
    /fields/il2       (time, z, y, x) float32 pM     one snapshot per chunk, gzip (or zstd, none); NaN (its fill
                                                     value, no disk space) at snapshots whose field is not stored
    /fields/time, x, y, z  the same datasets as /time, /x, /y, /z (hard links: group="fields" opens alone)
    /fields/stored    (time,) uint8                  1 where the field was stored (output.field_every: every k-th
                                                     snapshot and the last; files before it store every one)
    /cells/stored     (time,) uint8                  the same for the columns il2 .. pstat5 (output.cells_every);
                                                     NaN where not stored
    /il2              the same dataset as /fields/il2 (a hard link, so xarray finds it at the root)
    /cells/cell       (cell,) index                  dimension scale
    /cells/time       the same dataset as /time (a hard link: xarray's group="cells" gets the time coordinate)
    /cells/x|y|z      (cell,) um
    /cells/type       (cell,) int32 index into /cells/type_names (dimension scale /cells/cell_type)
    /cells/il2        (time, cell) float32 pM seen by each cell
    /cells/uptake     (time, cell) molecules/s
    /cells/receptors  (time, cell) high-affinity (IL-2Ra/b/gc) receptors per cell
    /cells/receptors_intermediate  (time, cell) intermediate-affinity (IL-2Rb/gc) receptors per cell
    /cells/pstat5     (time, cell) pSTAT5 level, 0..1
    /solver/relative_residual, backward_error, newton_iterations, krylov_iterations
                      (time,) how the solve behind each snapshot ended (SOLVER_COLUMNS; schema 3);
                      /solver/time is a hard link to /time
    /cell_types/*     per-type parameters along the dimension scale cell_type (the type names): name,
                      secretion_molecules_per_s, receptors (IL-2Ra), il2rb, gc (inf: not limiting), km_pM,
                      km_intermediate_pM, k_int_per_s
    /attribution/     steady runs (attribution.py): who took up whose IL-2 at the steady field
        source, responder            names (dimension scales); a source is a secreting cell type or 'boundary'
        cell                         the same dataset as /cells/cell (a hard link, so that the group opens alone)
        uptake_molecules_per_s       (source, responder) uptake of each responder type from each source
        output_molecules_per_s       (source,) what each source puts in
        by_cell_molecules_per_s      (cell, source) float32, each cell's uptake from each source
        autocrine_molecules_per_s    (cell,) float32, each cell's uptake of its own secretion
        attrs closure                sum over cells of |sum of its shares - its uptake| / total uptake
              autocrine_window_change how much the local autocrine solve still changed (attribution.py)
              autocrine_exact         1: the autocrine part from one global solve per secreting cell (0 there)
              remainder               the source whose part is the steady field less the others' ('' if all solved)
    /readouts/*       (cell_type,) per-type readouts of the last field, as printed (readouts.TypeReadout):
                      count, mean_il2_pM, mean_uptake_molecules_per_s, total_uptake_molecules_per_s,
                      mean_pstat5, pstat5_positive_fraction, mean_receptors, mean_receptors_intermediate;
                      attrs time_s, pstat5_threshold; dimension scale cell_type: the type names
    /meta/config      the resolved config, YAML text
    /meta/command_line
    /checkpoint/il2_0, il2_1
                      (nx, ny, nz) transient and coupled runs: snapshot i in the run's own precision
                      in slot i % 2; `resume` continues from snapshot n_snapshots - 1 (at /time[n - 1])
    /checkpoint/<name>_0, <name>_1
                      the rest of the state, per cell (steppers.py `checkpoint`): il2ra (cell,), each
                      cell's IL-2Ra (coupled and tissue runs); walk_position_um, walk_velocity_um_per_s,
                      walk_displacement_um (cell, 3) and walk_key (2,) uint32 (tissue runs: motility.py)
    /cells/track_x, track_y, track_z
                      (time, cell) um, tissue runs: where each cell is at each snapshot (cells move;
                      /cells/x, y, z are where they started)

Fields are held as (nx, ny, nz) in memory and stored (z, y, x), the order netCDF, xarray and
ParaView expect for C-ordered arrays.

hdf5.py writes it (Hdf5Writer), reader.py reads it.
"""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np

SCHEMA_VERSION = 3  # 3: /solver/*; readers accept 2
CHUNK_BYTES = 4 * 2**20
TYPE_SCALE = "cell_type"  # the per-type groups' dimension scale: the type names, so that xarray selects by name
CELL_COLUMNS = {"il2": "pM", "uptake": "molecules/s", "receptors": "receptors per cell",
                "receptors_intermediate": "receptors per cell", "pstat5": "1"}
TRACK_COLUMNS = {"track_x": "um", "track_y": "um", "track_z": "um"}  # tissue runs: cells that move
# tissue runs with fate.enabled (fate.py): alive, cell_id, ...; the other columns NaN where not alive
FATE_COLUMNS = {"alive": "1", "cell_id": "index", "parent": "index", "lineage": "index", "divisions": "divisions",
                "pstat5_mean": "1"}
# runs with contact delivery (contact.py): what each cell hands over and takes up in contacts (in `uptake` too)
CONTACT_COLUMNS = {"handed": "molecules/s", "received": "molecules/s"}


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What a run's file records of it beside its snapshots, as plain values: the lattice, the placed
    cells, their types' parameters (cells.type_table), the settings the file states and how it is
    written. The run builds it once from its scenario (Scenario.record), so that I/O depends on no
    physics, cell or scenario module."""

    shape: tuple[int, int, int]
    spacing_um: float
    centres_um: tuple[np.ndarray, np.ndarray, np.ndarray]  # voxel-centre coordinates along x, y, z
    boundary: tuple[str, ...]  # one kind name per face
    face_values_pM: np.ndarray
    solver: str  # solver.kind
    precision: str
    seed: int
    position_um: np.ndarray  # (n, 3), where each cell was placed
    type_index: np.ndarray  # (n,)
    type_names: tuple[str, ...]
    type_table: dict  # per-type parameter columns, by name
    snapshot_times_s: tuple[float, ...]
    field_every: int
    cells_every: int
    compression: str
    positive_threshold: float  # pSTAT5 level of a positive cell (/readouts)
    moving: bool = False  # a tissue run: TRACK_COLUMNS and the walk in the checkpoint
    fate: bool = False  # fate.enabled: FATE_COLUMNS
    contact: bool = False  # some type hands IL-2 over: CONTACT_COLUMNS

    @property
    def n_cells(self) -> int:
        return len(self.type_index)

    def stores(self, index: int, every: int) -> bool:
        """Whether snapshot `index` is one of every k-th (output.field_every, output.cells_every),
        counted from the first, or the run's last."""
        return index % every == 0 or index == len(self.snapshot_times_s) - 1


def estimated_bytes(record: RunRecord) -> int:
    """Upper bound on a run's file size: every snapshot uncompressed, plus the checkpoints."""
    n_voxels, n_cells = int(np.prod(record.shape)), record.n_cells
    columns = len(CELL_COLUMNS) + (len(TRACK_COLUMNS) if record.moving else 0)
    columns += len(FATE_COLUMNS) if record.fate else 0
    columns += len(CONTACT_COLUMNS) if record.contact else 0
    n_snapshots = len(record.snapshot_times_s)
    n_fields = sum(record.stores(i, record.field_every) for i in range(n_snapshots))
    n_cell_rows = sum(record.stores(i, record.cells_every) for i in range(n_snapshots))
    per_snapshot = 4 * (columns - len(CELL_COLUMNS)) * n_cells + 9
    per_cell = 1 + (9 + 8 if record.moving else 0)  # IL-2Ra; a tissue run's walk and fate
    state = 2 * 8 * (n_voxels + per_cell * n_cells)  # two checkpoint slots, at most 8 bytes a value
    static = 36 * n_cells + 24 * max(record.shape) + 2**20  # positions, types, metadata
    static += 4 * n_cells * (len(record.type_names) + 3)  # attribution: per source (types + boundary + blood), autocrine
    return 4 * (n_fields * n_voxels + n_cell_rows * len(CELL_COLUMNS) * n_cells) + n_snapshots * per_snapshot + state + static


# /solver/*, one value per snapshot: how the nonlinear solve(s) behind it ended (the worst since
# the previous snapshot; a snapshot that needed no solve, such as t = 0 of a transient run, holds
# 0); solvers/steady.py defines the two accuracy measures
SOLVER_COLUMNS = {
    "relative_residual": ("f8", "1"),  # ||F(c)|| / ||F(0)||
    "backward_error": ("f8", "1"),  # ||F(c)|| / (||J|| ||c|| + ||F(0)||)
    "newton_iterations": ("i4", "1"),
    "krylov_iterations": ("i4", "1"),
}


def checkpoint_slot(snapshot: int, name: str = "il2") -> str:
    """The checkpoint dataset holding snapshot `snapshot` (two slots, used in turn)."""
    return f"{name}_{snapshot % 2}"


def saved_state(f: h5py.File, snapshot: int) -> dict[str, np.ndarray]:
    """The checkpointed state of snapshot `snapshot` other than the field, by name ({} for none)."""
    group, suffix = f.get("checkpoint", {}), f"_{snapshot % 2}"
    return {key[: -len(suffix)]: group[key][...] for key in group if key.endswith(suffix) and key != checkpoint_slot(snapshot)}


def cell_column(group: h5py.Group, name: str, units: str, n: int, compression: str, time=None) -> h5py.Dataset:
    """An empty (time, cell) float32 column of the cells group, its dimension scales attached."""
    d = group.create_dataset(name, shape=(0, n), maxshape=(None, n if n else None), dtype="f4", fillvalue=np.float32(np.nan),
                             chunks=(1, max(n, 1)), **compressed(compression))
    d.attrs["units"] = units
    d.dims[0].attach_scale(group.file["time"] if time is None else time)
    d.dims[1].attach_scale(group["cell"])
    return d


def stored_flags(group: h5py.Group, what: str, every: int, time: h5py.Dataset) -> h5py.Dataset:
    """The group's (time,) uint8 `stored`: 1 at the snapshots where `what` is written."""
    d = group.create_dataset("stored", shape=(0,), maxshape=(None,), dtype="u1", chunks=(1024,))
    d.attrs.update(long_name=f"1 where {what} of the snapshot is stored", every=every)
    d.dims[0].attach_scale(time)
    return d


def type_scale(group: h5py.Group, names) -> h5py.Dataset:
    """The group's own `cell_type` dimension scale holding the type names (netCDF: a string
    coordinate), so that xarray opens the group alone and selects by name."""
    scale = group.create_dataset(TYPE_SCALE, data=np.asarray(names, dtype=h5py.string_dtype()))
    scale.make_scale(TYPE_SCALE)
    return scale


def compressed(kind: str) -> dict:
    """h5py dataset keywords of output.compression `kind` (gzip, zstd, none)."""
    if kind == "gzip":
        return dict(compression="gzip", compression_opts=4, shuffle=True)
    if kind == "zstd":
        import hdf5plugin

        return dict(**hdf5plugin.Zstd(clevel=3), shuffle=True)
    return {}


def attribution_group(f: h5py.File, attribution, compression: str) -> None:
    """/attribution (replaced if present): the source-by-responder matrix, each source's output,
    each cell's uptake by source and its autocrine part, molecules/s, with their scales."""
    g = f.require_group("attribution")
    for name in list(g):
        del g[name]
    scales = {}
    for dim, names in (("source", attribution.sources), ("responder", attribution.responders)):
        d = g.create_dataset(dim, data=np.asarray(names, dtype=h5py.string_dtype()))
        d.make_scale(dim)
        scales[dim] = d
    per_cell = lambda name, values: g.create_dataset(  # noqa: E731
        name, data=values.astype(np.float32), **compressed(compression) if len(values) else {})
    m = g.create_dataset("uptake_molecules_per_s", data=attribution.matrix_molecules_per_s)
    o = g.create_dataset("output_molecules_per_s", data=attribution.output_molecules_per_s)
    c = per_cell("by_cell_molecules_per_s", attribution.by_cell_molecules_per_s)
    a = per_cell("autocrine_molecules_per_s", attribution.autocrine_molecules_per_s)
    for d, dims in ((m, ("source", "responder")), (o, ("source",)), (c, ("cell", "source")), (a, ("cell",))):
        d.attrs["units"] = "molecules/s"
        for axis, dim in enumerate(dims):
            d.dims[axis].attach_scale(f["cells/cell"] if dim == "cell" else scales[dim])
    g["cell"] = f["cells/cell"]  # hard link: the group's own cell coordinate, for xarray
    g.attrs["closure"] = attribution.closure
    g.attrs["autocrine_window_change"] = attribution.autocrine_window_change
    g.attrs["autocrine_exact"] = attribution.autocrine_exact
    g.attrs["remainder"] = attribution.remainder


def readouts_group(f: h5py.File, summary, time_s: float, pstat5_threshold: float) -> None:
    """/readouts (replaced if present): the per-type readouts of the last field
    (readouts.Summary.types) as (cell_type,) columns."""
    g = f.require_group("readouts")
    for name in list(g):
        del g[name]
    per_type = type_scale(g, [t.name for t in summary.types])
    for column in dataclasses.fields(summary.types[0]) if summary.types else ():
        if column.name == "name":
            continue
        d = g.create_dataset(column.name, data=np.asarray([getattr(t, column.name) for t in summary.types]))
        d.dims[0].attach_scale(per_type)
    g.attrs["time_s"] = time_s
    g.attrs["pstat5_threshold"] = pstat5_threshold
