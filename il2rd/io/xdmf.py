"""XDMF sidecar: lets ParaView (and VisIt) open a run's field time series straight from the HDF5.

One temporal collection of uniform grids, one per snapshot whose field is stored. Each is a 3DCoRectMesh of
(nz+1, ny+1, nx+1) nodes with the field as a cell-centred attribute, read through a hyperslab
of /fields/il2 (time, z, y, x):

    start  (t, 0, 0, 0)   stride (1, 1, 1, 1)   count (1, nz, ny, nx)

Rewritten (atomically) after each snapshot, so it always lists exactly the complete ones.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path


FIELD_PATH = "/fields/il2"


def sidecar_path(h5_path: Path) -> Path:
    return Path(h5_path).with_suffix(".xmf")


def _item(parent, text: str, **attrs):
    item = ET.SubElement(parent, "DataItem", **attrs)
    item.text = text
    return item


def document(h5_name: str, shape: tuple[int, int, int], spacing_um: float, times_s, stored=None) -> ET.ElementTree:
    """The temporal collection of the snapshots whose field is stored (stored (time,) bool; None:
    all of them), each reading its own slab of /fields/il2, on a lattice of `shape` voxels of edge
    spacing_um."""
    nx, ny, nz = shape
    n_t = len(times_s)
    root = ET.Element("Xdmf", Version="3.0")
    domain = ET.SubElement(root, "Domain")
    series = ET.SubElement(domain, "Grid", Name="il2rd", GridType="Collection", CollectionType="Temporal")
    h = f"{float(spacing_um)!r}"
    for i, t in enumerate(times_s):
        if stored is not None and not stored[i]:
            continue
        g = ET.SubElement(series, "Grid", Name=f"snapshot_{i}", GridType="Uniform")
        ET.SubElement(g, "Time", Value=repr(float(t)))
        ET.SubElement(g, "Topology", TopologyType="3DCoRectMesh", Dimensions=f"{nz + 1} {ny + 1} {nx + 1}")
        geometry = ET.SubElement(g, "Geometry", GeometryType="ORIGIN_DXDYDZ")
        _item(geometry, "0 0 0", Name="Origin", Dimensions="3", NumberType="Float", Precision="8", Format="XML")
        _item(geometry, f"{h} {h} {h}", Name="Spacing", Dimensions="3", NumberType="Float", Precision="8", Format="XML")
        attribute = ET.SubElement(g, "Attribute", Name="il2_pM", AttributeType="Scalar", Center="Cell")
        slab = ET.SubElement(attribute, "DataItem", ItemType="HyperSlab", Dimensions=f"{nz} {ny} {nx}", Type="HyperSlab")
        _item(slab, f"{i} 0 0 0 1 1 1 1 1 {nz} {ny} {nx}", Dimensions="3 4", Format="XML")
        _item(slab, f"{h5_name}:{FIELD_PATH}", Dimensions=f"{n_t} {nz} {ny} {nx}", NumberType="Float",
              Precision="4", Format="HDF")
    ET.indent(root)
    return ET.ElementTree(root)


def write_sidecar(h5_path: Path, shape: tuple[int, int, int], spacing_um: float, times_s, stored=None) -> Path:
    """Write <run>.xmf next to <run>.h5 (referring to it by name, so the pair can be moved)."""
    path = sidecar_path(h5_path)
    tmp = path.with_suffix(".xmf.tmp")
    document(Path(h5_path).name, shape, spacing_um, times_s, stored).write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)
    return path
