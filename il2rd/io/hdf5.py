"""HDF5 output: one file per run, snapshots appended and flushed as the run goes.

Layout (all lengths in um, times in s, concentrations in pM):

    /                 attrs: il2rd_version, schema_version, spacing_um, origin_um, shape (nx, ny, nz),
                             solver, precision, seed, jax_version, device, boundary
    /time             (time,) s                      dimension scale
    /x, /y, /z        voxel centres, um              dimension scales
    /fields/il2       (time, z, y, x) float32 pM     one snapshot per chunk, gzip
    /cells/x|y|z      (cell,) um
    /cells/type       (cell,) int32, index into /cells/type_names (also attribute type_names)
    /cells/il2        (time, cell) pM seen by each cell
    /cells/uptake     (time, cell) molecules/s taken up by each cell
    /cell_types/*     per-type parameters: name, secretion_molecules_per_s, receptors, km_pM, k_int_per_s
    /meta/config      the resolved config, YAML text

Fields are held as (nx, ny, nz) in memory and transposed to (z, y, x) on disk, the order
xarray, netCDF and ParaView expect for C-ordered arrays.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from ..cells import type_table

SCHEMA_VERSION = "1"
CHUNK_BYTES = 4 * 2**20


class OutputError(OSError):
    """The output file cannot be written (raised before any computing)."""


def _string_dataset(group, name, text):
    group.create_dataset(name, data=text, dtype=h5py.string_dtype())


class Hdf5Writer:
    """Writes one run. Open it before computing (so an unwritable path fails first), then
    `append` each snapshot; each append is flushed, so a killed run leaves a readable file."""

    def __init__(self, path: Path, scenario, config_yaml: str, extra_attrs: dict | None = None):
        import jax

        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = h5py.File(self.path, "w")
        except OSError as err:
            raise OutputError(f"output.dir = {str(self.path.parent)!r}: cannot write {self.path.name} there ({err})") from err
        settings, grid, pop = scenario.settings, scenario.grid, scenario.population
        f = self.file
        f.attrs.update(
            il2rd_version=__version__,
            schema_version=SCHEMA_VERSION,
            spacing_um=grid.spacing_um,
            origin_um=np.zeros(3),
            shape=np.asarray(grid.shape),
            boundary=np.asarray(grid.boundary, dtype=h5py.string_dtype()),
            face_values_pM=np.asarray(settings.face_values_pM),
            solver=settings.solver_kind,
            precision=settings.precision,
            seed=settings.seed,
            jax_version=jax.__version__,
            device=str(jax.devices()[0].device_kind),
            **(extra_attrs or {}),
        )
        _string_dataset(f.require_group("meta"), "config", config_yaml)

        self.time = f.create_dataset("time", shape=(0,), maxshape=(None,), dtype="f8", chunks=(1024,))
        self.time.attrs["units"] = "s"
        self.time.make_scale("time")
        scales = {}
        for axis, name in enumerate("xyz"):
            d = f.create_dataset(name, data=grid.centres_um(axis))
            d.attrs["units"] = "um"
            d.make_scale(name)
            scales[name] = d

        nx, ny, nz = grid.shape
        z_per_chunk = int(max(1, min(nz, CHUNK_BYTES // (4 * nx * ny))))
        self.field = f.require_group("fields").create_dataset(
            "il2", shape=(0, nz, ny, nx), maxshape=(None, nz, ny, nx), dtype="f4",
            chunks=(1, z_per_chunk, ny, nx), compression="gzip", compression_opts=4, shuffle=True,
        )
        self.field.attrs["units"] = "pM"
        for dim, name in enumerate(("time", "z", "y", "x")):
            self.field.dims[dim].label = name
            self.field.dims[dim].attach_scale(self.time if name == "time" else scales[name])

        g = f.require_group("cells")
        for axis, name in enumerate("xyz"):
            g.create_dataset(name, data=pop.position_um[:, axis]).attrs["units"] = "um"
        names = np.asarray(pop.type_names, dtype=h5py.string_dtype())
        g.create_dataset("type", data=pop.type_index.astype(np.int32)).attrs["type_names"] = names
        g.create_dataset("type_names", data=names)
        n = len(pop)
        self.cells = {}
        for name, units in (("il2", "pM"), ("uptake", "molecules/s")):
            d = g.create_dataset(name, shape=(0, n), maxshape=(None, n), dtype="f8", chunks=(1, max(n, 1)))
            d.attrs["units"] = units
            d.dims[0].label = "time"
            d.dims[1].label = "cell"
            self.cells[name] = d

        t = f.require_group("cell_types")
        t.create_dataset("name", data=names)
        for key, values in type_table(settings.types, pop.type_names).items():
            t.create_dataset(key, data=values)
        f.flush()

    def append(self, time_s: float, field_xyz, il2_seen_pM, uptake_molecules_per_s):
        i = self.time.shape[0]
        for d in (self.time, self.field, *self.cells.values()):
            d.resize(i + 1, axis=0)
        self.time[i] = time_s
        self.field[i] = np.transpose(np.asarray(field_xyz, np.float32), (2, 1, 0))
        self.cells["il2"][i] = il2_seen_pM
        self.cells["uptake"][i] = uptake_molecules_per_s
        self.file.flush()

    def set_attrs(self, **attrs):
        self.file.attrs.update(attrs)
        self.file.flush()

    def close(self):
        if self.file.id.valid:
            self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
