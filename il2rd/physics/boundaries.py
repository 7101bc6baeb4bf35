"""Boundary kinds: one small frozen class per kind of face, owning everything the solvers ask of it.

A face of the lattice (x_lo, ..., z_hi) is closed by a ghost voxel outside it, an affine function
of the voxel inside the face (c_in), the voxel at the opposite end of the axis (c_opp) and the
face's value c_b (pM, traced: it travels with the coefficients, FieldCoefficients.face_values_pM,
not with the static Grid):

    zero_flux   c_ghost = c_in                 no flux through the face
    fixed       c_ghost = 2 c_b - c_in         c = c_b on the face (Dirichlet), second order
    periodic    c_ghost = c_opp                the axis wraps

From the ghost rule follow the face's end of the 1-D second difference -d^2/dx^2 (h = 1), the
IL-2 it lets out of the lattice (D (c_in - c_ghost) / h per um^2 of face, in pM um/s) and what it
is on a coarser multigrid level. grid.py, solvers/precond.py, solvers/multigrid.py, config/tissue.py,
attribution.py and cells.py call these methods; none compares kind names. A new kind (Robin, a
prescribed flux) is a class here and an entry in KINDS. The names are the config values of
grid.boundary and what the output file stores (its root attribute `boundary`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Boundary:
    """One face's boundary condition (hashable: a Grid holding it stays a jit static argument).

    The ghost is c_ghost = inside_weight c_in + opposite_weight c_opp + value_weight c_b; the
    subclasses set the weights and the few facts that do not follow from them."""

    name: ClassVar[str]
    inside_weight: ClassVar[float]
    opposite_weight: ClassVar[float] = 0.0
    value_weight: ClassVar[float] = 0.0
    wraps: ClassVar[bool] = False  # the axis is periodic: cells and stencils crossing the face re-enter opposite
    # the sine/cosine transform that diagonalises -d^2/dx^2 with this kind at both ends of an axis
    # ('dct' | 'dst' | None), and the shift of its wavenumbers: eigenvalues 4 sin^2(pi (k + s) / 2n)
    transform: ClassVar[str | None] = None
    transform_shift: ClassVar[int] = 0

    def ghost(self, inside, opposite, value):
        """The ghost layer (c's unit) from the layer inside the face, the one at the opposite end
        of the axis and the face value c_b (pM; None: the homogeneous operator, c_b = 0)."""
        raise NotImplementedError

    @property
    def row_end(self) -> tuple[float, float]:
        """(change of the end row's diagonal, its entry in the opposite end's column) of
        -d^2/dx^2 (h = 1) where this face closes the axis: -inside_weight, -opposite_weight."""
        return -self.inside_weight, -self.opposite_weight

    @property
    def passes_flux(self) -> bool:
        """Whether IL-2 can enter or leave the lattice through this face (the ghost depends on c_b)."""
        return self.value_weight != 0.0

    def feeds(self, value_pM) -> bool:
        """Whether the face, at value c_b (pM), brings IL-2 into the lattice from outside (the
        source named 'boundary' of the attribution)."""
        return self.passes_flux and value_pM > 0

    def outflux(self, inside, value, diffusion_um2_per_s, spacing_um: float):
        """Net rate at which IL-2 leaves the lattice through this face, pM um^3/s, from the layer
        inside it (c's unit, pM) and its value c_b (pM): the sum over the face of
        D (c_in - c_ghost) / h per um^2 times h^2. Zero flux passes nothing, and what leaves by a
        periodic face re-enters by its partner: both return the float 0.0."""
        return 0.0

    def coarsened(self, lone_axis: bool) -> "Boundary | None":
        """This face on the next coarser multigrid level (spacing 2h, rediscretised): the same
        kind, or None where it cannot be coarsened. lone_axis: the axis has one voxel, which
        coarsening keeps while doubling h, so a face whose term depends on h (c_b's ghost: 2/h^2
        on the diagonal) would change the operator."""
        return None if lone_axis and self.passes_flux else self


@dataclass(frozen=True)
class ZeroFlux(Boundary):
    """No flux: c_ghost = c_in, so (c_ghost - c_in) / h = 0 (a mirror; the end row of
    -d^2/dx^2 loses 1 on its diagonal)."""

    name: ClassVar[str] = "zero_flux"
    inside_weight: ClassVar[float] = 1.0
    transform: ClassVar[str | None] = "dct"  # DCT-II: eigenvalues 4 sin^2(pi k / 2n), k = 0 .. n-1
    transform_shift: ClassVar[int] = 0

    def ghost(self, inside, opposite, value):
        return inside


@dataclass(frozen=True)
class Fixed(Boundary):
    """Dirichlet: c = c_b (pM) on the face, c_ghost = 2 c_b - c_in (the mean of the two is c_b,
    second order). The end row of -d^2/dx^2 gains 1 on its diagonal and the face lets out
    2 D (c_in - c_b) / h per um^2 (pM um/s)."""

    name: ClassVar[str] = "fixed"
    inside_weight: ClassVar[float] = -1.0
    value_weight: ClassVar[float] = 2.0
    transform: ClassVar[str | None] = "dst"  # DST-II: eigenvalues 4 sin^2(pi (k + 1) / 2n)
    transform_shift: ClassVar[int] = 1

    def ghost(self, inside, opposite, value):
        return -inside if value is None else 2.0 * value - inside

    def outflux(self, inside, value, diffusion_um2_per_s, spacing_um: float):
        h = spacing_um  # c_in - c_ghost = 2 (c_in - c_b)
        return jnp.sum(2.0 * diffusion_um2_per_s * (inside - value) / h) * h * h


@dataclass(frozen=True)
class Periodic(Boundary):
    """The axis wraps: c_ghost = c_opp, the voxel at the other end (needs both faces of the axis
    periodic). The end row of -d^2/dx^2 gets -1 in the opposite end's column (circulant)."""

    name: ClassVar[str] = "periodic"
    inside_weight: ClassVar[float] = 0.0
    opposite_weight: ClassVar[float] = 1.0
    wraps: ClassVar[bool] = True

    def ghost(self, inside, opposite, value):
        return opposite


KINDS: dict[str, type[Boundary]] = {kind.name: kind for kind in (ZeroFlux, Fixed, Periodic)}


def of(kind: str | Boundary) -> Boundary:
    """The boundary object for a kind name (a config value) or an object (returned as is)."""
    if isinstance(kind, Boundary):
        return kind
    if kind not in KINDS:
        raise ValueError(f"unknown boundary kind {kind!r}; allowed: {tuple(KINDS)}")
    return KINDS[kind]()


def second_difference_matrix(n: int, faces: tuple[Boundary, Boundary]) -> np.ndarray:
    """-d^2/dx^2 on n cell-centred voxels (h = 1), closed at the low and high end by `faces`:
    [-1, 2, -1] inside, each end row changed by its face's row_end."""
    m = 2.0 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    for side, face in enumerate(faces):
        i, j = (0, n - 1) if side == 0 else (n - 1, 0)
        diagonal, opposite = face.row_end
        m[i, i] += diagonal
        m[i, j] += opposite
    return m


def lone_voxel_is_closed(faces: tuple[Boundary, Boundary]) -> bool:
    """Whether both faces of a one-voxel axis give back the voxel itself as ghost (zero flux or
    periodic), so that the axis adds nothing to the Laplacian."""
    return all(face.inside_weight + face.opposite_weight == 1.0 and not face.passes_flux for face in faces)


def symmetric_eigenvalues(n: int, faces: tuple[Boundary, Boundary], spacing_um: float) -> tuple[str, np.ndarray] | None:
    """(transform name, eigenvalues of -d^2/dx^2 in 1/um^2 in its order) where both ends of an
    axis of n voxels of spacing h (um) are the same kind with a fast sine/cosine transform:
    4/h^2 sin^2(pi (k + shift) / 2n); None otherwise."""
    lo, hi = faces
    if lo != hi or lo.transform is None:
        return None
    k = np.arange(n)
    return lo.transform, 4.0 * (1.0 / spacing_um**2) * np.sin(np.pi * (k + lo.transform_shift) / (2 * n)) ** 2
