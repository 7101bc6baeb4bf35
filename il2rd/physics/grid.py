"""The lattice: cell-centred voxels, boundary conditions by ghost cells, the Laplacian.

Voxel (i, j, k) covers [i h, (i+1) h) x [j h, (j+1) h) x [k h, (k+1) h) (um) and its value is
the concentration at its centre ((i + 1/2) h, ...). Fields are arrays of shape (nx, ny, nz);
a 2-D lattice is nz = 1, whose z faces are always zero flux.

Boundary conditions are set per face (x_lo, x_hi, y_lo, y_hi, z_lo, z_hi) by a ghost voxel
outside the face, each face's rule owned by its object in boundaries.py:

    zero_flux   c_ghost = c_inside                 (no flux through the face)
    fixed       c_ghost = 2 c_b - c_inside         (c = c_b on the face, second order)
    periodic    c_ghost = c on the opposite side

so that the 7-point Laplacian

    lap(c)_i = sum_axes (c_{i+1} - 2 c_i + c_{i-1}) / h^2

is second-order accurate and conserves mass: its sum over the lattice is exactly the net
flux through the faces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from . import boundaries
from .boundaries import Boundary, ZeroFlux, second_difference_matrix

FACES = ("x_lo", "x_hi", "y_lo", "y_hi", "z_lo", "z_hi")
BOUNDARY_KINDS = tuple(boundaries.KINDS)  # the kind names (config values), as before boundaries.py
FACE_TOLERANCE_VOXELS = 1e-9


@dataclass(frozen=True)
class Grid:
    """Static description of the lattice (hashable, so it can be a jit static argument).

    shape: (nx, ny, nz) voxels; spacing_um: voxel edge h in um;
    boundary: one kind name per face, in the order of :data:`FACES` (boundaries.KINDS; given as
    names or boundaries.Boundary objects, kept as names: the config values and the file's);
    faces: the same as boundaries.Boundary objects, which the operators call.
    Boundary *values* (pM) are not here: they are physical parameters that may be swept or
    differentiated, so they travel with the coefficients.
    """

    shape: tuple[int, int, int]
    spacing_um: float
    boundary: tuple[str, str, str, str, str, str] = (ZeroFlux.name,) * 6
    faces: tuple[Boundary, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        faces = [boundaries.of(kind) for kind in self.boundary]
        if self.shape[2] == 1:  # 2-D: nothing can flow through the z faces
            faces[4] = faces[5] = ZeroFlux()
        object.__setattr__(self, "faces", tuple(faces))
        object.__setattr__(self, "boundary", tuple(face.name for face in faces))

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))

    @property
    def voxel_volume_um3(self) -> float:
        return self.spacing_um**3

    @property
    def extent_um(self) -> tuple[float, float, float]:
        return tuple(n * self.spacing_um for n in self.shape)

    def axis_faces(self, axis: int) -> tuple[Boundary, Boundary]:
        """The low and high face of an axis."""
        return self.faces[2 * axis], self.faces[2 * axis + 1]

    def axis_second_difference(self, axis: int) -> np.ndarray:
        """-d^2/dx^2 along one axis with its faces' ghost rules, for h = 1 (n x n)."""
        return second_difference_matrix(self.shape[axis], self.axis_faces(axis))

    @property
    def passes_flux(self) -> bool:
        """Whether IL-2 can enter or leave the lattice through some face."""
        return any(face.passes_flux for face in self.faces)

    def centres_um(self, axis: int) -> np.ndarray:
        """Voxel-centre coordinates along one axis (um)."""
        return (np.arange(self.shape[axis]) + 0.5) * self.spacing_um

    def voxel_of(self, xyz_um: np.ndarray) -> np.ndarray:
        """Integer voxel indices (..., 3) of points (..., 3) in um: the i with i h <= x < (i+1) h.

        A point within 1e-9 voxel below a face counts as on it, so decimal coordinates meant to
        lie on a face (6.6 = 3 x 2.2, not exact in binary) land in the upper voxel."""
        x = np.asarray(xyz_um, dtype=np.float64)
        return np.floor(x / self.spacing_um + FACE_TOLERANCE_VOXELS).astype(np.int64)

    def contains(self, xyz_um: np.ndarray) -> np.ndarray:
        """Whether points (..., 3) in um lie in the lattice, i.e. in one of its voxels."""
        x = np.asarray(xyz_um, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            return np.zeros(x.shape[:-1], bool)
        i = self.voxel_of(x)
        return np.all((i >= 0) & (i < np.asarray(self.shape)), axis=-1)

    def laplacian_norm_inf(self) -> float:
        """||-lap||_inf, the largest row sum of |entries| (1/um^2): 4/h^2 per axis of 2 or more
        voxels (2 on the diagonal, 1 to each neighbour or ghost; at most that at a face), and on
        a one-voxel axis its lone entry (the ghost rules': 2 per fixed face)."""
        total = 0.0
        for axis, n in enumerate(self.shape):
            total += 4 if n > 1 else abs(float(self.axis_second_difference(axis)[0, 0]))
        return total / self.spacing_um**2

    def max_diagonal(self) -> float:
        """Largest diagonal entry of -lap (1/um^2), for the explicit stability limit: per axis the
        largest of its second difference's, at least the interior's 2 on an axis of 2 or more
        voxels (3 next to a fixed face; a lone voxel's entry, 2 per fixed face, is all of it)."""
        total = 0.0
        for axis, n in enumerate(self.shape):
            total += max(float(np.max(np.diag(self.axis_second_difference(axis)))), 2.0 if n > 1 else 0.0)
        return total / self.spacing_um**2


def laplacian(c, grid: Grid, face_values_pM=None):
    """7-point Laplacian of c (1/um^2 times c's unit) with the grid's boundary conditions: along
    each axis c padded with its faces' ghost layers, then (c_{i+1} - 2 c_i + c_{i-1}) / h^2.

    face_values_pM: the six fixed-face values (pM); None gives the homogeneous operator
    (fixed faces at 0), i.e. the linear part of the affine map c -> lap(c).
    """
    homogeneous = face_values_pM is None
    inv_h2 = 1.0 / grid.spacing_um**2
    total = jnp.zeros_like(c)
    for axis in range(3):
        faces = grid.axis_faces(axis)
        n = c.shape[axis]
        if n == 1 and boundaries.lone_voxel_is_closed(faces):
            continue
        # static slices: jnp.take with an index array lowers to a gather XLA cannot fold into the
        # stencil's offsets (the explicit step ran 2.2x slower at 128^3 on 2 CPU cores)
        first = jax.lax.slice_in_dim(c, 0, 1, axis=axis)
        last = jax.lax.slice_in_dim(c, n - 1, n, axis=axis)
        values = (None, None) if homogeneous else (face_values_pM[2 * axis], face_values_pM[2 * axis + 1])
        lo = faces[0].ghost(first, last, values[0])
        hi = faces[1].ghost(last, first, values[1])
        padded = jnp.concatenate([lo, c, hi], axis=axis)
        below = jax_slice(padded, axis, 0, n)
        above = jax_slice(padded, axis, 2, n + 2)
        total = total + (above - 2.0 * c + below) * inv_h2
    return total


def jax_slice(a, axis: int, start: int, stop: int):
    index = [slice(None)] * a.ndim
    index[axis] = slice(start, stop)
    return a[tuple(index)]


def boundary_outflux(c, grid: Grid, diffusion_um2_per_s, face_values_pM):
    """Net rate at which IL-2 leaves through the faces, in pM um^3/s.

    Each face's Boundary.outflux: through a fixed face the discrete flux is D (c_inside - c_b) / (h/2)
    per unit area; zero-flux faces pass nothing and periodic faces pass as much in as out.
    """
    total = 0.0
    for axis in range(3):
        for side, face in enumerate(grid.axis_faces(axis)):
            if not face.passes_flux:  # its outflux is 0: no need to read its layer
                continue
            inside = jnp.take(c, 0 if side == 0 else c.shape[axis] - 1, axis=axis)
            total = total + face.outflux(inside, face_values_pM[2 * axis + side], diffusion_um2_per_s, grid.spacing_um)
    return total
