"""Reading and writing run files: HDF5 (hdf5.py), its XDMF sidecar (xdmf.py), the reader (reader.py)."""

from .reader import RunFile, load

__all__ = ["RunFile", "load"]
