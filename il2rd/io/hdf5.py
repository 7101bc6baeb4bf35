"""HDF5 output: one file per run, snapshots appended and flushed as the run goes.

The layout, its columns and its version are layout.py's. A snapshot counts once `n_snapshots` says so: it is
raised, and the file flushed, only after all of the snapshot's datasets are written, so a run
killed at any moment leaves a file whose first n_snapshots snapshots are complete.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from . import layout, xdmf
from .layout import (CELL_COLUMNS, CHUNK_BYTES, CONTACT_COLUMNS, FATE_COLUMNS, SCHEMA_VERSION, SOLVER_COLUMNS,
                     TRACK_COLUMNS, TYPE_SCALE, RunRecord, checkpoint_slot, estimated_bytes, saved_state)
from ._holder import HoldsFile
from .failures import OutputError, first_line, writing
from .folder_lock import FolderLock

# Files whose close failed (a full disk): HDF5 tries to flush them again when the interpreter
# exits, and can crash doing so; the il2rd command ends with os._exit when this is not empty.
UNCLOSED: list[Path] = []

TEMPORARY_PREFIX = "."  # a file being laid out is .il2rd.h5.<pid>.tmp beside its final name

def _present(*datasets) -> tuple:
    return tuple(d for d in datasets if d is not None)


def versions() -> dict:
    import jax

    return dict(
        il2rd_version=__version__,
        jax_version=jax.__version__,
        numpy_version=np.__version__,
        h5py_version=h5py.__version__,
        hdf5_version=h5py.version.hdf5_version,
        python_version=platform.python_version(),
        device=f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}",
    )


class Hdf5Writer(HoldsFile):
    """Writes one run, described by its layout.RunRecord. Create it before computing (so an
    unwritable path fails first), then `append` each snapshot. `Hdf5Writer.resume` reopens an
    interrupted run's file."""

    def __init__(self, path: Path, file: h5py.File, record: RunRecord, lock: FolderLock | None = None):
        self.path, self.file, self.record, self.lock = Path(path), file, record, lock
        f = file
        self.time = f["time"]
        self.field = f["fields/il2"]
        # which snapshots hold the field and the cells' CELL_COLUMNS (output.field_every, cells_every);
        # None in files written before these keys (all stored)
        self.stored = f["fields"].get("stored")
        self.cells_stored = f["cells"].get("stored")
        self.cells = {name: f["cells"][name] for name in (*CELL_COLUMNS, *TRACK_COLUMNS, *FATE_COLUMNS, *CONTACT_COLUMNS)
                      if name in f["cells"]}
        self.committed = int(f.attrs["n_snapshots"])  # also readable from a signal handler, without HDF5

    @classmethod
    def create(cls, path: Path, record: RunRecord, config_yaml: str, config_key: str = "",
               lock: FolderLock | None = None) -> "Hdf5Writer":
        """Lay the file out under a temporary name beside `path`, then rename it onto `path`: an
        existing file there is replaced only by a complete layout, never truncated. The caller holds
        the folder's lock (simulate.open_output), so no other run writes there meanwhile."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            need, free = estimated_bytes(record), shutil.disk_usage(path.parent).free
        except OSError as err:
            raise OutputError(f"output.dir = {str(path.parent)!r}: cannot write {path.name} there ({err})") from err
        if need > free:
            raise OutputError(f"output.dir = {str(path.parent)!r}: the run needs up to {need / 2**20:.1f} MiB "
                              f"({len(record.snapshot_times_s)} snapshots, uncompressed) but only "
                              f"{free / 2**20:.1f} MiB are free there")
        for stale in path.parent.glob(f"{TEMPORARY_PREFIX}{path.name}.*.tmp"):  # a layout killed part-way
            stale.unlink(missing_ok=True)
        tmp = path.with_name(f"{TEMPORARY_PREFIX}{path.name}.{os.getpid()}.tmp")
        try:
            f = h5py.File(tmp, "x")
        except (OSError, RuntimeError) as err:
            raise OutputError(f"output.dir = {str(path.parent)!r}: cannot write {path.name} there ({first_line(err)})") from err
        try:
            with writing(path, 0):
                cls._layout(f, record, config_yaml)
                f.attrs.update(config_sha256=config_key, complete=False)
                f.flush()
            os.replace(tmp, path)
        except BaseException:  # a half-laid-out file holds nothing: leave none behind
            with contextlib.suppress(Exception):
                f.close()
            tmp.unlink(missing_ok=True)
            raise
        return cls(path, f, record, lock)

    def close(self):
        """Close the file (quietly if a failed write left HDF5 unable to flush it), then drop the lock."""
        try:
            if self.file.id.valid:
                self.file.close()
        except (OSError, RuntimeError):
            UNCLOSED.append(self.path)
        finally:
            if self.lock is not None:
                self.lock.release()

    @staticmethod
    def _layout(f: h5py.File, record: RunRecord, config_yaml: str) -> None:
        compression = record.compression
        f.attrs.update(
            schema_version=SCHEMA_VERSION,
            spacing_um=record.spacing_um,
            origin_um=np.zeros(3),
            shape=np.asarray(record.shape),
            boundary=np.asarray(record.boundary, dtype=h5py.string_dtype()),
            face_values_pM=np.asarray(record.face_values_pM),
            solver=record.solver,
            precision=record.precision,
            seed=record.seed,
            n_snapshots=0,
            **versions(),
        )
        meta = f.require_group("meta")
        meta.create_dataset("config", data=config_yaml, dtype=h5py.string_dtype())
        meta.create_dataset("command_line", data=" ".join(sys.argv), dtype=h5py.string_dtype())

        time = f.create_dataset("time", shape=(0,), maxshape=(None,), dtype="f8", chunks=(1024,))
        time.attrs["units"] = "s"
        time.make_scale("time")
        scales = {"time": time}
        for axis, name in enumerate("xyz"):
            d = f.create_dataset(name, data=record.centres_um[axis])
            d.attrs["units"] = "um"
            d.make_scale(name)
            scales[name] = d

        nx, ny, nz = record.shape
        z_per_chunk = int(max(1, min(nz, CHUNK_BYTES // (4 * nx * ny))))
        fields = f.require_group("fields")
        field = fields.create_dataset(  # NaN where not written: a skipped snapshot reads as no value, on no disk
            "il2", shape=(0, nz, ny, nx), maxshape=(None, nz, ny, nx), dtype="f4", fillvalue=np.float32(np.nan),
            chunks=(1, z_per_chunk, ny, nx), **layout.compressed(compression),
        )
        field.attrs.update(units="pM", long_name="IL-2 concentration")
        for dim, name in enumerate(("time", "z", "y", "x")):
            field.dims[dim].label = name
            field.dims[dim].attach_scale(scales[name])
        f["il2"] = field  # hard link: the same dataset at the root, for xarray
        layout.stored_flags(fields, "the field", record.field_every, time)
        for name, scale in scales.items():  # hard links: the group opens alone in xarray with its coordinates
            fields[name] = scale
        f["cells/time"] = time  # and the time axis in the cells group, so that it opens alone with its coordinate

        g = f.require_group("cells")
        n = record.n_cells
        packed = layout.compressed(compression) if n else {}
        cell = g.create_dataset("cell", data=np.arange(n, dtype=np.int32), **packed)
        cell.make_scale("cell")
        for axis, name in enumerate("xyz"):
            d = g.create_dataset(name, data=record.position_um[:, axis], **packed)
            d.attrs["units"] = "um"
            d.dims[0].attach_scale(cell)
        names = np.asarray(record.type_names, dtype=h5py.string_dtype())
        d = g.create_dataset("type", data=np.asarray(record.type_index, np.int32), **packed)
        d.attrs["type_names"] = names
        d.dims[0].attach_scale(cell)
        type_names = g.create_dataset("type_names", data=names)
        type_scale = g.create_dataset("cell_type", data=np.arange(len(names), dtype=np.int32))
        type_scale.make_scale("cell_type")
        type_names.dims[0].attach_scale(type_scale)
        for name, units in CELL_COLUMNS.items():  # float32, like the field they are read from
            layout.cell_column(g, name, units, n, compression)
        layout.stored_flags(g, f"the cell columns {', '.join(CELL_COLUMNS)}", record.cells_every, time)

        solver = f.require_group("solver")  # how accurately each snapshot's field was solved
        solver["time"] = time  # hard link: the group opens alone in xarray with its time coordinate
        for name, (dtype, units) in SOLVER_COLUMNS.items():
            d = solver.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(1024,))
            d.attrs["units"] = units
            d.dims[0].attach_scale(time)

        t = f.require_group("cell_types")
        per_type = layout.type_scale(t, names)
        t.create_dataset("name", data=names)
        for key, values in record.type_table.items():
            t.create_dataset(key, data=values)
        for key in t:
            if key != TYPE_SCALE:
                t[key].dims[0].attach_scale(per_type)
        f.flush()

    @classmethod
    def resume(cls, path: Path, record: RunRecord, lock: FolderLock | None = None
               ) -> tuple["Hdf5Writer", float, np.ndarray, dict[str, np.ndarray]]:
        """Reopen an interrupted run's file: drop any incomplete trailing snapshot and return
        (writer, time of the last complete snapshot in s, its field in the run's precision, the rest
        of its checkpointed state by name: saved_state). A file that cannot be continued (damaged,
        foreign, nothing committed) raises OutputError saying why, and is left as it was."""
        path = Path(path)
        try:
            f = h5py.File(path, "r+")
        except (OSError, RuntimeError) as err:
            raise OutputError(f"resume = {str(path)!r}: cannot open it for appending ({first_line(err)})") from err
        try:
            return cls._reopen(path, f, record, lock)
        except OutputError:
            f.close()
            raise
        except (OSError, RuntimeError, KeyError, ValueError, IndexError) as err:  # hand-damaged or foreign
            f.close()
            raise OutputError(f"resume = {str(path)!r}: is damaged or not an il2rd run file ({first_line(err)})") from None

    @classmethod
    def _reopen(cls, path: Path, f: h5py.File, record: RunRecord, lock):
        if record.n_cells != f["cells/x"].shape[0] or not all(
            np.array_equal(f["cells"][name][:], record.position_um[:, axis]) for axis, name in enumerate("xyz")
        ):
            raise OutputError(f"resume = {str(path)!r}: its cells differ from the ones its stored config places")
        n = int(f.attrs["n_snapshots"])
        if "checkpoint" not in f or n < 1 or checkpoint_slot(n - 1) not in f["checkpoint"] or n > f["time"].shape[0]:
            raise OutputError(f"resume = {str(path)!r}: holds no checkpoint to continue from (a steady run, or no "
                              f"snapshot committed yet: n_snapshots = {n}); run its config again instead")
        state = f["checkpoint"][checkpoint_slot(n - 1)][...]
        if state.shape != tuple(record.shape):
            raise OutputError(f"resume = {str(path)!r}: its checkpoint has shape {state.shape}, its lattice {tuple(record.shape)}")
        saved = saved_state(f, n - 1)
        writer = cls(path, f, record, lock)
        with writing(path, n):
            for d in (writer.time, writer.field, *writer.cells.values(), *_present(writer.stored, writer.cells_stored)):
                d.resize(n, axis=0)
            f.flush()
        return writer, float(writer.time[n - 1]), state, saved

    def restate(self, config_yaml: str, config_key: str) -> None:
        """A resumed run given a later time.end: store the config it now runs to, and mark the file
        unfinished until that end is reached."""
        with writing(self.path, self.committed):
            meta = self.file.require_group("meta")
            if "config" in meta:
                del meta["config"]
            meta.create_dataset("config", data=config_yaml, dtype=h5py.string_dtype())
            self.file.attrs.update(config_sha256=config_key, complete=False)
            self.file.flush()

    @property
    def n_snapshots(self) -> int:
        return int(self.file.attrs["n_snapshots"])

    def append(self, time_s: float, field_xyz, columns: dict[str, np.ndarray], checkpoint: bool = False,
               state: dict[str, np.ndarray] | None = None, solver_info: dict | None = None):
        """Write one snapshot: the field (nx, ny, nz), the per-cell columns (CELL_COLUMNS, and a
        tissue run's TRACK_COLUMNS), how accurately the field was solved (solver_info:
        SOLVER_COLUMNS' values, the worst since the last snapshot) and, for runs that can be
        resumed, the checkpoint: the field at full precision and the rest of the state by name
        (`state`, the stepper's checkpoint: a coupled run's IL-2Ra per cell, a tissue run's walk)."""
        with writing(self.path, self.committed):
            self._append(time_s, field_xyz, columns, checkpoint, state or {}, solver_info)

    def _append(self, time_s: float, field_xyz, columns: dict[str, np.ndarray], checkpoint: bool, state, solver_info):
        i = self.n_snapshots
        for name, units in {**TRACK_COLUMNS, **FATE_COLUMNS, **CONTACT_COLUMNS}.items():
            if name in columns and name not in self.cells:  # the first snapshot of a tissue run (or with contacts)
                self.cells[name] = layout.cell_column(self.file["cells"], name, units, len(columns[name]),
                                                self.record.compression, self.time)
        solver = self.file.get("solver")  # absent in files written before schema 3
        accuracy = [] if solver is None else [solver[name] for name in SOLVER_COLUMNS]
        for d in (self.time, self.field, *self.cells.values(), *accuracy, *_present(self.stored, self.cells_stored)):
            d.resize(i + 1, axis=0)
        for d in accuracy:
            d[i] = (solver_info or {}).get(d.name.rsplit("/", 1)[-1], np.nan if d.dtype.kind == "f" else -1)
        # a snapshot not kept leaves its chunks unwritten: no disk space, read as the fill value NaN
        keep_field = self.stored is None or self.record.stores(i, self.record.field_every)
        keep_cells = self.cells_stored is None or self.record.stores(i, self.record.cells_every)
        if keep_field:
            self.field[i] = np.transpose(np.asarray(field_xyz, np.float32), (2, 1, 0))
        for name, d in self.cells.items():
            if keep_cells or name not in CELL_COLUMNS:  # tracks, fate and contact columns: every snapshot
                d[i] = columns[name]
        for flags, kept in ((self.stored, keep_field), (self.cells_stored, keep_cells)):
            if flags is not None:
                flags[i] = kept
        self.time[i] = time_s
        if checkpoint:  # alternate slots: the committed snapshot's slot is never being overwritten
            group = self.file.require_group("checkpoint")
            for name, value in (("il2", field_xyz), *state.items()):
                value = np.asarray(value)
                if checkpoint_slot(i, name) not in group:
                    group.create_dataset(checkpoint_slot(i, name), data=value)
                group[checkpoint_slot(i, name)][...] = value
        self.file.flush()
        self.file.attrs["n_snapshots"] = i + 1  # only now is the snapshot complete
        self.committed = i + 1
        self.file.flush()
        xdmf.write_sidecar(self.path, self.record.shape, self.record.spacing_um, self.time[: i + 1],
                           None if self.stored is None else self.stored[: i + 1].astype(bool))

    def write_attribution(self, attribution) -> None:
        with writing(self.path, self.committed):
            layout.attribution_group(self.file, attribution, self.record.compression)
            self.file.flush()

    def write_readouts(self, summary, time_s: float) -> None:
        """The per-type readouts of the last field (readouts.Summary.types) as (cell_type,) columns."""
        with writing(self.path, self.committed):
            layout.readouts_group(self.file, summary, time_s, self.record.positive_threshold)
            self.file.flush()

    def set_attrs(self, **attrs):
        with writing(self.path, self.committed):
            self.file.attrs.update(attrs)
            self.file.flush()
