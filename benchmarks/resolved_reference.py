"""Resolved reference for il2rd's uptake in packed tissue (issue 12, item 4).

What it measures
----------------
il2rd puts each cell into one 10 um voxel: a point sink (``physics.cell_radius=null``) or the
sub-grid closure of il2rd/physics/subgrid.py (``physics.cell_radius=a``), calibrated on an isolated cell.
Here the same tissue is solved with the cells resolved as spheres and compared cell by cell.

The resolved model (fine voxels of edge h, 1 um down to 0.25 um): IL-2 lives in the fluid outside
the spheres (radius a = 4 um, centred on the 10 um lattice positions il2rd uses); the sphere
surfaces are zero-flux except for their receptors and secretion,

    0 = D lap c - k_d c                         in the fluid
    -D dc/dn = (k / A) c - q / A                on a cell's surface (area A = 4 pi a^2, n out of the fluid)

with k = k_int R / K_M (um^3/s, linear uptake) and q (molecules/s) spread evenly over the surface.
The discretisation is a cut-cell finite volume: the flux through the face between two fine
voxels is D h alpha_f (c_i - c_j), alpha_f the open (fluid) fraction of that face; a fine voxel
crossed by a sphere's surface takes up (k A_v / A) c_v, A_v the part of the surface inside it,
and secretes q A_v / A; decay acts on its fluid volume. Voxels entirely inside a sphere drop out.
Apertures and fluid fractions are sampled on sub-grids of each cut face / voxel, A_v by binning
a Fibonacci point set of the sphere. The symmetric positive definite system is solved by Jacobi-
preconditioned CG (il2rd.solvers.krylov.pcg, float64, to 1e-10 relative residual).

Validation (exact): a sphere of radius a inside a concentric Dirichlet sphere c = c_inf at radius
R (applied at its true crossing of each grid link, Shortley-Weller) takes up

    U = c_inf k S_R / (S_R + k),     S_R = 4 pi D a R / (R - a)

(S_R -> 4 pi D a as R -> oo: the isolated sphere of Berg & Purcell). Checked for a weak
(k/S = 0.1) and a diffusion-limited (k/S = 100) consumer at h = 1, 0.5, 0.25 um, with the
observed order of convergence; the tissue comparison then extrapolates h -> 0 from the two
finest tissue solutions with that order (Richardson), and reports how far the finest one is.

The tissue: an n^3 block of 10 um positions, periodic, a fraction (5 %, 30 %, 70 %) of them
holding a cell, at random (seeded): IL-2 producers (secrete q, take up with R = 1500), Tregs
(R = 2e4, k/S = 1.7 at a = 4 um) and naive T cells (R = 100), the default T zone's laws
(configs/scenario/t_zone.yaml) with linear uptake. il2rd runs the same tissue through its own API
(config composed as the CLI does, a cells CSV, config.parse, Scenario.build, steady_field,
readouts.cell_columns) with point sinks and with the closure at a = 4 um, in float64 so that
only the model's error is measured; per cell type the error of its total uptake, and per cell the
RMS over cells of the relative error of each cell's uptake.

Homogenisation check: consumers on a regular sub-lattice (every voxel, or every 2nd voxel along
each axis), a fixed face c = 1 at x = 0, periodic sides, zero flux at the far end; the decay
length of the plane-averaged field through the population, measured over one period far from
both ends, against the homogenised sqrt(D / (n k_eff)), k_eff = k S / (S + k), S = 4 pi D a
(n cells per um^3), and against the same target on the lattice (the decay of a lattice with
per-voxel rate n h^3 k_eff, 2 (cosh(h P/lambda) - 1) ... see :func:`lattice_decay_length_um`).

Run:  python benchmarks/resolved_reference.py [--quick]   (writes benchmarks/results/resolved_reference.{json,md})
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # the reference is float64; il2rd runs ask for their precision

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from il2rd.physics import units  # noqa: E402
from il2rd.solvers.krylov import pcg  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

PITCH_UM = 10.0  # cell positions: il2rd's voxel centres at h = 10 um
RADIUS_UM = 4.0
DIFFUSION = 10.0  # um^2/s
DECAY = 2.8e-5  # 1/s, il2rd's default
K_INT = 1.1e-3  # 1/s
KM_PM = 43.0
SECRETION = 10.0  # molecules/s per producer

# name: (fraction of the cells, receptors, secretion molecules/s): the default T zone's laws
TYPES = {"il2_producer": (0.1, 1500.0, SECRETION), "treg": (0.2, 2.0e4, 0.0), "naive_t": (0.7, 100.0, 0.0)}

CG_RTOL = 1e-10


def linear_rate_um3_per_s(receptors, k_int_per_s=K_INT, km_pM=KM_PM):
    """k = k_int R / K_M (um^3/s), K_M converted to molecules/um^3."""
    return k_int_per_s * np.asarray(receptors, np.float64) / units.pM_to_molecules_per_um3(km_pM)


def capacity_um3_per_s(radius_um=RADIUS_UM, diffusion=DIFFUSION):
    """S = 4 pi D a (um^3/s)."""
    return 4.0 * math.pi * diffusion * radius_um


# ------------------------------------------------------------------------------ geometry
def _fibonacci_sphere(n_points: int) -> np.ndarray:
    """n_points nearly uniform unit vectors (golden-angle spiral), each standing for 1/n of the area."""
    i = np.arange(n_points) + 0.5
    z = 1.0 - 2.0 * i / n_points
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _sub_points(samples: int) -> np.ndarray:
    return (np.arange(samples) + 0.5) / samples


@dataclass(frozen=True)
class SphereBlock:
    """Cut-cell geometry of one sphere in a block of fine voxels (shape (nx, ny, nz), edge h).

    aperture[a]: open fraction of the face between voxel i and i + 1 along axis a (the last one
    lies on the block's face); fluid: fluid volume fraction; surface: fraction of the sphere's
    area inside each voxel (sums to 1 over the voxels that stay in the system)."""

    aperture: np.ndarray  # (3, nx, ny, nz)
    fluid: np.ndarray  # (nx, ny, nz)
    surface: np.ndarray  # (nx, ny, nz)


def _span(coord, h):
    """Nearest and farthest squared distance from 0 of the intervals [coord, coord + h)."""
    near = np.where(coord > 0, coord, np.where(coord + h < 0, coord + h, 0.0))
    return near**2, np.maximum(np.abs(coord), np.abs(coord + h)) ** 2


def _outer_sum(parts, order=(0, 1, 2)):
    """x_i + y_j + z_k of three 1-d arrays, axes put back in `order`."""
    x, y, z = parts
    return (x[:, None, None] + y[None, :, None] + z[None, None, :]).transpose(np.argsort(order))


def sphere_block(shape, spacing_um: float, centre_um, radius_um: float, face_samples: int = 16,
                 volume_samples: int = 8) -> SphereBlock:
    """Apertures, fluid fractions and surface shares of a sphere (centre, radius in um) in a
    block of fine voxels [0, n h)^3; only the faces and voxels its surface crosses are sampled
    (face_samples^2 points per face, volume_samples^3 per voxel)."""
    shape = tuple(int(s) for s in shape)
    h, r2 = float(spacing_um), float(radius_um) ** 2
    centre = np.asarray(centre_um, np.float64)
    lo = [np.arange(n) * h - c for n, c in zip(shape, centre)]  # voxel low corners relative to the centre
    aperture = np.ones((3,) + shape)
    sub = _sub_points(face_samples) * h
    for a in range(3):
        b, c = [x for x in range(3) if x != a]
        plane = lo[a] + h  # the face between voxel i and i + 1
        (nb, fb), (nc, fc) = _span(lo[b], h), _span(lo[c], h)
        near = _outer_sum((plane**2, nb, nc), (a, b, c))
        far = _outer_sum((plane**2, fb, fc), (a, b, c))
        aperture[a] = np.where(far <= r2, 0.0, 1.0)
        cut = np.argwhere((near < r2) & (far > r2))
        if len(cut):
            pa = plane[cut[:, a]][:, None, None]
            pb = lo[b][cut[:, b]][:, None, None] + sub[None, :, None]
            pc = lo[c][cut[:, c]][:, None, None] + sub[None, None, :]
            aperture[a][tuple(cut.T)] = ((pa**2 + pb**2 + pc**2) > r2).mean(axis=(1, 2))
    spans = [_span(x, h) for x in lo]
    near, far = _outer_sum([s[0] for s in spans]), _outer_sum([s[1] for s in spans])
    fluid = np.where(far <= r2, 0.0, 1.0)
    cut = np.argwhere((near < r2) & (far > r2))
    vs = _sub_points(volume_samples) * h
    for chunk in np.array_split(cut, max(1, len(cut) // 4096)):
        if len(chunk):
            p = [lo[a][chunk[:, a]][:, None] + vs[None, :] for a in range(3)]
            d2 = p[0][:, :, None, None] ** 2 + p[1][:, None, :, None] ** 2 + p[2][:, None, None, :] ** 2
            fluid[tuple(chunk.T)] = (d2 > r2).mean(axis=(1, 2, 3))
    # surface shares: a Fibonacci point set of the sphere binned into the voxels
    n_points = int(max(2e5, 400 * 4 * math.pi * r2 / h**2))
    pts = centre + radius_um * _fibonacci_sphere(n_points)
    idx = np.clip(np.floor(pts / h).astype(np.int64), 0, np.asarray(shape) - 1)
    surface = np.zeros(shape)
    np.add.at(surface, tuple(idx.T), 1.0)
    # a surface voxel whose faces all sampled closed would drop out: give its share to the rest
    surface[~_open(aperture)] = 0.0
    return SphereBlock(aperture, fluid, surface / surface.sum())


def _open(aperture) -> np.ndarray:
    """Voxels with at least one open face (the others lie inside a sphere and drop out)."""
    return (aperture.sum(axis=0) + sum(np.roll(aperture[a], 1, a) for a in range(3))) > 0


# ----------------------------------------------------------------------------- the system
@dataclass(frozen=True)
class FineSystem:
    """A x = b on fine voxels: A = sum over faces of conductance (c_i - c_j) + diag; periodic
    wrap through the last face of each axis (set its conductance 0 for a closed box).

    conductance: (3, ...) D h alpha_f (um^3/s); diagonal: sink + decay + Dirichlet links (um^3/s),
    1 on voxels that drop out; rhs: secretion + Dirichlet inflow (pM um^3/s); active: voxels in
    the system."""

    conductance: np.ndarray
    diagonal: np.ndarray
    rhs: np.ndarray
    active: np.ndarray


@jax.jit
def _solve(conductance, diagonal, rhs):
    def matvec(c):
        out = diagonal * c
        for a in range(3):
            flux = conductance[a] * (c - jnp.roll(c, -1, a))  # from i to i + 1
            out = out + flux - jnp.roll(flux, 1, a)
        return out

    jacobi = diagonal + sum(conductance[a] + jnp.roll(conductance[a], 1, a) for a in range(3))
    x, info = pcg(matvec, rhs, lambda r: r / jacobi, jnp.zeros_like(rhs), CG_RTOL * jnp.linalg.norm(rhs), 200000)
    residual = jnp.linalg.norm(rhs - matvec(x)) / jnp.linalg.norm(rhs)
    return x, info.iterations, residual


def solve(system: FineSystem):
    """(field pM, CG iterations, relative residual) of a FineSystem."""
    x, it, res = _solve(jnp.asarray(system.conductance), jnp.asarray(system.diagonal), jnp.asarray(system.rhs))
    if not float(res) <= 10 * CG_RTOL:
        raise RuntimeError(f"resolved CG stopped at relative residual {float(res):.3g} after {int(it)} iterations")
    return np.asarray(x), int(it), float(res)


# ------------------------------------------------------------------------ isolated sphere
def isolated_sphere_exact(rate_um3_per_s, radius_um, outer_um, diffusion=DIFFUSION, c_inf=1.0):
    """U / c_inf (um^3/s) of a linear sphere inside a concentric Dirichlet sphere of radius R."""
    s_r = 4.0 * math.pi * diffusion * radius_um * outer_um / (outer_um - radius_um)
    return c_inf * rate_um3_per_s * s_r / (s_r + rate_um3_per_s)


def isolated_sphere(spacing_um: float, rate_um3_per_s: float, radius_um: float = RADIUS_UM, outer_um: float | None = None,
                    diffusion: float = DIFFUSION) -> dict:
    """The resolved solver on one sphere inside a Dirichlet sphere c = 1 at R (3 a by default):
    its uptake (um^3/s per unit c_inf) against :func:`isolated_sphere_exact`."""
    outer = 3.0 * radius_um if outer_um is None else outer_um
    h = spacing_um
    n = 2 * int(math.ceil((outer + 2 * h) / h))  # even: the centre is a voxel corner, as in the tissue
    centre = np.full(3, n * h / 2)
    block = sphere_block((n,) * 3, h, centre, radius_um)
    x = (np.arange(n) + 0.5) * h - centre[0]
    r = np.sqrt(x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2)
    inside = r < outer  # voxel centres inside R are unknowns; outside: c = 1
    active = inside & _open(block.aperture)
    g = diffusion * h * block.aperture
    diag = rate_um3_per_s * block.surface
    rhs = np.zeros_like(diag)
    coord = np.meshgrid(x, x, x, indexing="ij")
    for a in range(3):
        reach = np.sqrt(np.maximum(outer**2 - sum(coord[b] ** 2 for b in range(3) if b != a), 0.0))
        g[a][tuple(slice(-1, None) if b == a else slice(None) for b in range(3))] = 0.0  # a closed box
        for sign in (+1, -1):
            # links from an unknown to a voxel outside R end on the Dirichlet sphere, at the fraction
            # theta of the link where |p + t e_a| = R
            neighbour_inside = np.roll(inside, -sign, a)
            link = g[a] if sign > 0 else np.roll(g[a], 1, a)
            theta = np.clip((reach - sign * coord[a]) / h, 1e-3, 1.0)
            extra = np.where(active & ~neighbour_inside, link / theta, 0.0)
            diag, rhs = diag + extra, rhs + extra  # c = 1 on the sphere R
        g[a] = np.where(active & np.roll(active, -1, a), g[a], 0.0)
    diag, rhs = np.where(active, diag, 1.0), np.where(active, rhs, 0.0)
    t0 = time.perf_counter()
    c, iterations, residual = solve(FineSystem(g, diag, rhs, active))
    uptake = float(np.sum(rate_um3_per_s * block.surface * c))
    exact = isolated_sphere_exact(rate_um3_per_s, radius_um, outer, diffusion)
    return dict(spacing_um=h, k_over_s=rate_um3_per_s / capacity_um3_per_s(radius_um, diffusion), voxels=n**3,
                uptake=uptake, exact=exact, error=uptake / exact - 1.0, cg_iterations=iterations,
                residual=residual, solve_s=time.perf_counter() - t0)


def observed_order(rows: list[dict]) -> float:
    """Order p from the errors at the two finest spacings, |e(h)| ~ h^p."""
    (h1, e1), (h2, e2) = [(r["spacing_um"], abs(r["error"])) for r in rows[-2:]]
    return math.log(e1 / e2) / math.log(h1 / h2)


# --------------------------------------------------------------------------------- tissue
@dataclass(frozen=True)
class Tissue:
    """Cells on a block of PITCH_UM positions (shape (nx, ny, nz), periodic unless said): voxel
    (n_cells, 3) indices of the positions, type_name (n_cells,), receptors and secretion
    (molecules/s) per cell."""

    shape: tuple
    voxel: np.ndarray
    type_name: np.ndarray
    receptors: np.ndarray
    secretion_molecules_per_s: np.ndarray

    @property
    def occupancy(self) -> float:
        return len(self.voxel) / math.prod(self.shape)


def random_tissue(n: int, occupancy: float, seed: int = 0) -> Tissue:
    """round(occupancy n^3) cells at random positions, the TYPES in their fractions (at least one
    producer and one of each other type)."""
    rng = np.random.default_rng(seed)
    n_cells = max(len(TYPES), int(round(occupancy * n**3)))
    flat = rng.choice(n**3, n_cells, replace=False)
    counts = {name: max(1, int(round(f * n_cells))) for name, (f, _, _) in TYPES.items()}
    counts["naive_t"] = n_cells - sum(v for k, v in counts.items() if k != "naive_t")
    names = np.concatenate([[name] * counts[name] for name in TYPES])
    rng.shuffle(names)
    receptors = np.array([TYPES[t][1] for t in names])
    secretion = np.array([TYPES[t][2] for t in names])
    return Tissue((n,) * 3, np.stack(np.unravel_index(flat, (n,) * 3), axis=1), names, receptors, secretion)


def _tile(occupied, block, empty, m):
    """A fine field of blocks of m^3 voxels, one per position of `occupied` (nx, ny, nz): `block`
    where occupied, `empty` elsewhere."""
    nx, ny, nz = occupied.shape
    out = np.where(occupied[:, None, :, None, :, None], block[None, :, None, :, None, :], empty)
    return out.reshape(nx * m, ny * m, nz * m)


def _per_block(field, shape, m):
    """Sum of a fine field over each block of m^3 voxels (a field of the positions' shape)."""
    nx, ny, nz = shape
    return field.reshape(nx, m, ny, m, nz, m).sum(axis=(1, 3, 5))


def resolved_tissue(tissue: Tissue, spacing_um: float, radius_um: float = RADIUS_UM, diffusion: float = DIFFUSION,
                    decay_per_s: float = DECAY, x_lo_fixed_pM: float | None = None) -> dict:
    """Solve the tissue with the cells resolved at fine spacing h: each cell's uptake (molecules/s),
    and the fluid-volume mean of the field over each plane of positions along x (pM).
    x_lo_fixed_pM: c fixed on the x_lo face and zero flux at x_hi instead of periodic along x."""
    m = int(round(PITCH_UM / spacing_um))
    if abs(m * spacing_um - PITCH_UM) > 1e-9:
        raise ValueError(f"spacing_um = {spacing_um} must divide the cell pitch {PITCH_UM} um")
    shape, h = tuple(tissue.shape), spacing_um
    block = sphere_block((m,) * 3, h, np.full(3, PITCH_UM / 2), radius_um)
    occupied = np.zeros(shape, bool)
    occupied[tuple(tissue.voxel.T)] = True
    rate_cell, secretion_cell = np.zeros(shape), np.zeros(shape)
    rate_cell[tuple(tissue.voxel.T)] = linear_rate_um3_per_s(tissue.receptors)
    secretion_cell[tuple(tissue.voxel.T)] = tissue.secretion_molecules_per_s / units.MOLECULES_PER_UM3_PER_PM
    aperture = np.stack([_tile(occupied, block.aperture[a], 1.0, m) for a in range(3)])
    surface = _tile(occupied, block.surface, 0.0, m)
    fluid = _tile(occupied, block.fluid, 1.0, m)
    spread = lambda per_cell: np.repeat(np.repeat(np.repeat(per_cell, m, 0), m, 1), m, 2) * surface  # noqa: E731
    rate_v, secretion_v = spread(rate_cell), spread(secretion_cell)
    active = _open(aperture)
    conductance = diffusion * h * aperture
    diag = rate_v + decay_per_s * fluid * h**3
    rhs = secretion_v.copy()
    if x_lo_fixed_pM is not None:
        conductance[0, -1] = 0.0  # zero flux at x_hi
        diag[0] += 2.0 * diffusion * h  # half a voxel to the fixed x_lo face (no cell crosses it)
        rhs[0] += 2.0 * diffusion * h * x_lo_fixed_pM
    diag, rhs = np.where(active, diag, 1.0), np.where(active, rhs, 0.0)
    t0 = time.perf_counter()
    c, iterations, residual = solve(FineSystem(conductance, diag, rhs, active))
    solve_s = time.perf_counter() - t0
    uptake = _per_block(rate_v * c, shape, m)[tuple(tissue.voxel.T)] * units.MOLECULES_PER_UM3_PER_PM
    plane = _per_block(fluid * c, shape, m).sum(axis=(1, 2)) / _per_block(fluid, shape, m).sum(axis=(1, 2))
    secreted = float(tissue.secretion_molecules_per_s.sum())
    decayed = float(np.sum(decay_per_s * fluid * h**3 * c) * units.MOLECULES_PER_UM3_PER_PM)
    return dict(spacing_um=h, voxels=math.prod(shape) * m**3, uptake=uptake, plane_mean_pM=plane, cg_iterations=iterations,
                residual=residual, solve_s=solve_s,
                balance=(float(uptake.sum()) + decayed) / secreted - 1.0 if secreted > 0 else None)


# ------------------------------------------------------------------------------- il2rd runs
def il2rd_overrides(tissue: Tissue, csv_path: Path, cell_radius_um, precision: str = "float64", extra=()) -> list[str]:
    """The il2rd command-line overrides for the tissue (periodic block of 10 um voxels, linear
    uptake, the cells from a CSV written to csv_path)."""
    centres = (tissue.voxel + 0.5) * PITCH_UM
    csv_path.write_text("x,y,z,type,receptors\n" + "".join(
        f"{x:g},{y:g},{z:g},{t},{r:g}\n" for (x, y, z), t, r in zip(centres, tissue.type_name, tissue.receptors)))
    nx, ny, nz = tissue.shape
    return [f"grid.shape=[{nx},{ny},{nz}]", f"grid.spacing={PITCH_UM:g}", "grid.boundary=periodic", "physics.uptake=linear",
            f"physics.diffusion={DIFFUSION:g}", f"physics.decay={DECAY:g}", f"cells.csv={csv_path}",
            f"cell_types.il2_producer.secretion={SECRETION:g}", f"precision={precision}", "solver.rtol=1e-10",
            "physics.cell_radius=" + ("null" if cell_radius_um is None else f"{cell_radius_um:g}"), *extra]


def il2rd_scenario(overrides):
    """il2rd's Scenario for command-line overrides, composed as the il2rd command composes them."""
    from hydra import compose, initialize_config_dir

    from il2rd import cli, config
    from il2rd.config import schema
    from il2rd.scenario import Scenario

    schema.register_configs()
    with initialize_config_dir(config_dir=str(cli.config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return Scenario.build(config.parse(cfg))


def il2rd_steady(scenario):
    """il2rd's steady field of a scenario (raises if it did not converge)."""
    from il2rd.solvers.steady import steady_field

    field, info = steady_field(scenario.grid, scenario.coefficients, options=scenario.settings.numerics.options)
    if not bool(info.converged):
        raise RuntimeError(f"il2rd's steady solve did not converge: relative residual {float(info.relative_residual):.3g}")
    return field


def il2rd_uptake(tissue: Tissue, cell_radius_um, precision: str = "float64", extra=(), face_factors: bool = False) -> np.ndarray:
    """Each cell's uptake (molecules/s) from il2rd itself: the config composed as the il2rd
    command composes it, parsed, the scenario built, the steady field solved, the per-cell
    readouts taken (il2rd.analysis.readouts.cell_columns). face_factors: the same coefficients on a
    lattice whose faces between two cells conduct less (:func:`packed_face_factors`, :func:`lattice_field`)."""
    from il2rd.analysis import readouts

    with tempfile.TemporaryDirectory() as tmp:
        scenario = il2rd_scenario(il2rd_overrides(tissue, Path(tmp) / "cells.csv", cell_radius_um, precision, extra))
    field = lattice_field(scenario, _packing_factors(tissue)) if face_factors else il2rd_steady(scenario)
    return np.asarray(readouts.cell_columns(field, scenario)["uptake"], np.float64)


def maxwell_factor(volume_fraction: float) -> float:
    """D_eff / D = 2 (1 - phi) / (2 + phi) of insulating spheres at volume fraction phi (Maxwell)."""
    return 2.0 * (1.0 - volume_fraction) / (2.0 + volume_fraction)


def sphere_volume_fraction(radius_um: float = RADIUS_UM, spacing_um: float = PITCH_UM) -> float:
    """phi = (4/3) pi a^3 / h^3: the part of one voxel that one cell fills."""
    return 4.0 / 3.0 * math.pi * radius_um**3 / spacing_um**3


def packed_face_factors(occupied, radius_um: float = RADIUS_UM, spacing_um: float = PITCH_UM) -> np.ndarray:
    """A tried correction (issue 12 item 4's suggestion): (3, nx, ny, nz) conductance factors of the
    face between voxel i and i + 1 along each axis (the last wraps to voxel 0): Maxwell's
    f(phi) where both voxels hold a cell (IL-2 must pass between two spheres), 1 where at most one
    does (that cell's own body is already in its closure, so an isolated cell stays exact)."""
    occupied = np.asarray(occupied, bool)
    f = maxwell_factor(sphere_volume_fraction(radius_um, spacing_um))
    return np.stack([np.where(occupied & np.roll(occupied, -1, axis), f, 1.0) for axis in range(3)])


def _packing_factors(tissue: Tissue):
    occupied = np.zeros(tissue.shape, bool)
    occupied[tuple(tissue.voxel.T)] = True
    return packed_face_factors(occupied)


def lattice_field(scenario, factors, x_lo_fixed_pM: float | None = None):
    """il2rd's field equation for a scenario's coefficients (linear uptake, periodic, or fixed
    x_lo / zero-flux x_hi), with the conductance of each face multiplied by factors (3, ...), solved
    by this module's CG: with factors 1 it is il2rd's own discrete problem."""
    coef, h = scenario.coefficients, scenario.grid.spacing_um
    volume = h**3
    d = float(coef.diffusion_um2_per_s)
    rate = np.asarray(coef.vmax_pM_per_s, np.float64) / np.asarray(coef.km_pM, np.float64) * volume  # um^3/s per voxel
    diag = rate + float(coef.decay_per_s) * volume
    rhs = np.asarray(coef.secretion_pM_per_s, np.float64) * volume
    conductance = d * h * np.asarray(factors, np.float64)
    if x_lo_fixed_pM is not None:
        conductance[0, -1] = 0.0
        diag[0] += 2.0 * d * h
        rhs[0] += 2.0 * d * h * x_lo_fixed_pM
    return solve(FineSystem(conductance, diag, rhs, np.ones(diag.shape, bool)))[0]


def uptake_errors(tissue: Tissue, model: np.ndarray, reference: np.ndarray) -> dict:
    """Per cell type: the error of its total uptake and the RMS of its cells' relative errors;
    'all': the RMS over every cell."""
    rel = model / reference - 1.0
    out = {"all": dict(cells=len(rel), rms=float(np.sqrt(np.mean(rel**2))), max=float(np.max(np.abs(rel))))}
    for name in TYPES:
        mask = tissue.type_name == name
        if mask.any():
            out[name] = dict(cells=int(mask.sum()), total=float(model[mask].sum() / reference[mask].sum() - 1.0),
                             rms=float(np.sqrt(np.mean(rel[mask] ** 2))), max=float(np.max(np.abs(rel[mask]))))
    return out


# -------------------------------------------------------------------------- homogenisation
def lattice_decay_length_um(rate_um3_per_s, spacing_um=PITCH_UM, diffusion=DIFFUSION):
    """Decay length of a lattice with a sink of rate kappa in every voxel: the root of
    2 (cosh(h / lambda) - 1) = kappa / (D h) (the 1-d dispersion of the 7-point Laplacian)."""
    return spacing_um / math.acosh(1.0 + rate_um3_per_s / (2.0 * diffusion * spacing_um))


def homogenised_decay_length_um(rate_um3_per_s, cells_per_um3, radius_um=RADIUS_UM, diffusion=DIFFUSION):
    """sqrt(D / (n k_eff)), k_eff = k S / (S + k), S = 4 pi D a (um)."""
    s = capacity_um3_per_s(radius_um, diffusion)
    return math.sqrt(diffusion / (cells_per_um3 * rate_um3_per_s * s / (s + rate_um3_per_s)))


SC_MADELUNG = 2.837297  # the simple cubic lattice's periodic Green function: G(r) = 1/(4 pi r) - SC_MADELUNG/(4 pi L) + O(r^2)


def periodic_array_decay_length_um(rate_um3_per_s, period: int, radius_um=RADIUS_UM, diffusion=DIFFUSION):
    """The decay length through a simple cubic array of spheres (pitch L = P h) to leading order
    in a/L: each sphere takes up c_mean / (1/k + 1/S - SC_MADELUNG / (4 pi D L)) (its neighbours'
    sinks lower the mean below its far field; the 1.7601 phi^(1/3) of Hasimoto and Sangani &
    Acrivos), through a medium of Maxwell's D_eff = D 2 (1 - phi)/(2 + phi): sqrt(D_eff / (n k_phi))."""
    pitch = period * PITCH_UM
    s = capacity_um3_per_s(radius_um, diffusion)
    resistance = 1.0 / rate_um3_per_s + 1.0 / s - SC_MADELUNG / (4.0 * math.pi * diffusion * pitch)
    phi = 4.0 / 3.0 * math.pi * radius_um**3 / pitch**3
    return math.sqrt(diffusion * maxwell_factor(phi) * pitch**3 * resistance)


def sublattice_slab(k_over_s: float, period: int, n_x: int) -> Tissue:
    """Consumers (k = k_over_s 4 pi D a, type treg) on every `period`-th position along each axis
    of an (n_x, side, side) block, side = the multiple of the period nearest 4 from above."""
    side = period * math.ceil(4 / period)
    receptors = k_over_s * capacity_um3_per_s() * units.pM_to_molecules_per_um3(KM_PM) / K_INT
    idx = np.arange(0, n_x, period), np.arange(0, side, period), np.arange(0, side, period)
    voxel = np.stack(np.meshgrid(*idx, indexing="ij"), axis=-1).reshape(-1, 3)
    return Tissue((n_x, side, side), voxel, np.array(["treg"] * len(voxel)), np.full(len(voxel), receptors), np.zeros(len(voxel)))


def bloch_decay_length_um(plane_mean, period: int, target_um: float) -> float:
    """The decay length from plane means one period apart (their ratio is exp(P h / lambda) for
    a periodic population), starting 2 + 2 lambda/h planes from the fixed face."""
    start = period * math.ceil((2 + 2 * target_um / PITCH_UM) / period)
    if start + period >= len(plane_mean) // 2:
        raise ValueError(f"{len(plane_mean)} planes are too few for a decay length of {target_um:.3g} um")
    return period * PITCH_UM / math.log(plane_mean[start] / plane_mean[start + period])


def slab_length(k_over_s: float, period: int) -> int:
    """Planes of the slab: the measurement starts near 2 + 2 lambda/h and must stay in the first half."""
    target = homogenised_decay_length_um(k_over_s * capacity_um3_per_s(), 1.0 / (period * PITCH_UM) ** 3)
    return 2 * period * (math.ceil((4 + 2 * target / PITCH_UM) / period) + 1)


def il2rd_decay_length_um(tissue: Tissue, period: int, target_um: float, cell_radius_um, precision: str = "float64",
                          face_factors: bool = False) -> float:
    """il2rd's decay length through the slab: c = 1 pM on the x_lo face, periodic sides, zero flux
    at x_hi, no bulk decay (:func:`bloch_decay_length_um`); face_factors as in :func:`il2rd_uptake`."""
    boundary = "{x_lo: fixed, y_lo: periodic, y_hi: periodic, z_lo: periodic, z_hi: periodic}"
    with tempfile.TemporaryDirectory() as tmp:
        overrides = il2rd_overrides(tissue, Path(tmp) / "cells.csv", cell_radius_um, precision)
        overrides = [o for o in overrides if not o.startswith(("grid.boundary", "physics.decay"))]
        overrides += [f"grid.boundary={boundary}", "grid.boundary_value=1.0", "physics.decay=0"]
        scenario = il2rd_scenario(overrides)
    field = lattice_field(scenario, _packing_factors(tissue), 1.0) if face_factors else il2rd_steady(scenario)
    return bloch_decay_length_um(np.asarray(field, np.float64).mean(axis=(1, 2)), period, target_um)


def homogenisation_rows(k_over_s_values=(0.1, 1.0, 1.4), periods=(1, 2, 3), radius_um=RADIUS_UM,
                        spacings_um=(1.0,)) -> list[dict]:
    """Decay lengths through sub-lattice populations: homogenised target, resolved, il2rd."""
    rows = []
    s = capacity_um3_per_s(radius_um)
    for period in periods:
        n = 1.0 / (period * PITCH_UM) ** 3
        for ks in k_over_s_values:
            k = ks * s
            target = homogenised_decay_length_um(k, n, radius_um)
            slab = sublattice_slab(ks, period, slab_length(ks, period))
            resolved = {h: bloch_decay_length_um(resolved_tissue(slab, h, radius_um, decay_per_s=0.0, x_lo_fixed_pM=1.0)
                                                 ["plane_mean_pM"], period, target) for h in spacings_um}
            best = resolved[min(spacings_um)]
            point = il2rd_decay_length_um(slab, period, target, None)
            closure = il2rd_decay_length_um(slab, period, target, radius_um)
            faces = il2rd_decay_length_um(slab, period, target, radius_um, face_factors=True)
            rows.append(dict(
                period=period, occupancy=1.0 / period**3, k_over_s=ks, target_um=target,
                resolved_um={f"{h:g}": v for h, v in resolved.items()}, point_um=point, closure_um=closure,
                resolved_vs_target=best / target - 1.0, point_vs_resolved=point / best - 1.0,
                closure_vs_resolved=closure / best - 1.0, closure_vs_target=closure / target - 1.0,
                closure_faces_um=faces, closure_faces_vs_resolved=faces / best - 1.0))
    return rows


# ------------------------------------------------------------------------------------ main
def maxwell_tortuosity(occupancy: float, radius_um: float = RADIUS_UM) -> float:
    """lambda with D_eff / D = 1 / lambda^2 = maxwell_factor(phi), phi = occupancy (4/3) pi a^3 / h^3."""
    return 1.0 / math.sqrt(maxwell_factor(occupancy * sphere_volume_fraction(radius_um)))


def validation_rows(spacings_um, k_over_s_values=(0.1, 100.0)) -> list[dict]:
    rows = []
    for ks in k_over_s_values:
        series = [isolated_sphere(h, ks * capacity_um3_per_s()) for h in spacings_um]
        if len(series) > 1:
            series[-1]["order"] = observed_order(series)
        rows += series
    return rows


def tissue_rows(n: int, occupancies, spacings_um, seed: int = 0, radius_um: float = RADIUS_UM) -> list[dict]:
    rows = []
    for occupancy in occupancies:
        tissue = random_tissue(n, occupancy, seed)
        solves = [resolved_tissue(tissue, h, radius_um) for h in spacings_um]
        reference = solves[-1]["uptake"]
        row = dict(occupancy=occupancy, positions=n**3, cells={t: int((tissue.type_name == t).sum()) for t in TYPES},
                   reference=[{k: v for k, v in s.items() if k not in ("uptake", "plane_mean_pM")} for s in solves])
        if len(solves) > 1:  # how far the finest reference is from the next coarser: its own error, about
            row["reference_change_rms"] = float(np.sqrt(np.mean((solves[-2]["uptake"] / reference - 1.0) ** 2)))
        tortuosity = maxwell_tortuosity(occupancy, radius_um)
        runs = {"point": (None, (), False), "closure": (radius_um, (), False),
                "closure_maxwell": (radius_um, (f"physics.tortuosity={tortuosity:.6f}",), False),
                "closure_faces": (radius_um, (), True)}
        row["il2rd"] = {name: uptake_errors(tissue, il2rd_uptake(tissue, a, extra=extra, face_factors=faces), reference)
                        for name, (a, extra, faces) in runs.items()}
        row["maxwell_tortuosity"] = tortuosity
        rows.append(row)
    return rows


def _pct(x, digits=1):
    return "-" if x is None else f"{100 * x:+.{digits}f}%"


def markdown(result: dict) -> str:
    lines = [
        "# Resolved reference: il2rd's per-cell uptake in packed tissue (issue 12, item 4)",
        "",
        f"- command: `{result['command']}`; wall time {result['wall_s']:.0f} s; "
        f"date {result['date']}; JAX backend {result['backend']}",
        f"- cells: spheres of radius {RADIUS_UM:g} um on {PITCH_UM:g} um positions; D = {DIFFUSION:g} um^2/s, "
        f"linear uptake k = k_int R / K_M (k_int = {K_INT:g} /s, K_M = {KM_PM:g} pM), S = 4 pi D a = "
        f"{capacity_um3_per_s():.1f} um^3/s; producers secrete {SECRETION:g} molecules/s",
        "- resolved model: cut-cell finite volume on fine voxels (apertures, surface shares), Jacobi-PCG "
        f"to {CG_RTOL:g}; il2rd: 10 um voxels, its own API, float64, `physics.uptake=linear`",
        "",
        "## Validation: one sphere inside a Dirichlet sphere R = 3a, U = k S_R/(S_R + k), S_R = 4 pi D a R/(R - a)",
        "",
        "| k/S | h (um) | fine voxels | U (um^3/s) | exact | error | order | CG its |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["validation"]:
        order = f"{r['order']:.2f}" if "order" in r else ""
        lines.append(f"| {r['k_over_s']:g} | {r['spacing_um']:g} | {r['voxels']} | {r['uptake']:.4g} | {r['exact']:.4g} | "
                     f"{_pct(r['error'], 2)} | {order} | {r['cg_iterations']} |")
    lines += [
        "",
        "## Tissue: il2rd at 10 um against the resolved cells, per-cell uptake",
        "",
        f"Periodic block of {result['tissue_n']}^3 positions, cells at random (seed 0): 10 % producers "
        f"(R = {TYPES['il2_producer'][1]:g}, k/S = {linear_rate_um3_per_s(TYPES['il2_producer'][1]) / capacity_um3_per_s():.2f}), "
        f"20 % Tregs (R = {TYPES['treg'][1]:g}, k/S = {linear_rate_um3_per_s(TYPES['treg'][1]) / capacity_um3_per_s():.2f}), "
        f"70 % naive (R = {TYPES['naive_t'][1]:g}, k/S = {linear_rate_um3_per_s(TYPES['naive_t'][1]) / capacity_um3_per_s():.3f}); "
        f"default decay {DECAY:g} /s. Reference: the finest spacing "
        f"({min(result['spacings_um']):g} um); 'ref change' is the RMS per-cell change from the next coarser one "
        "(an estimate of the reference's own error). Errors: RMS over cells of U_il2rd/U_ref - 1; per type "
        "'total' is the error of the type's summed uptake. closure + Maxwell: the closure with "
        "`physics.tortuosity` from Maxwell's D_eff/D = 2(1 - phi)/(2 + phi) for the block's sphere volume fraction phi. "
        "closure + packed faces: the closure's coefficients on a lattice whose faces between two occupied voxels "
        "conduct 2(1 - phi)/(2 + phi) D, phi = (4/3) pi a^3/h^3 (a tried correction, `packed_face_factors`, solved by this benchmark's CG).",
        "",
        "| occupancy | cells (prod/treg/naive) | ref change | model | all cells RMS | producer total / RMS | treg total / RMS | naive total / RMS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["tissue"]:
        cells = "/".join(str(r["cells"][t]) for t in TYPES)
        for name, label in (("point", "point sinks (`cell_radius=null`)"), ("closure", f"closure (`cell_radius={RADIUS_UM:g}`)"),
                            ("closure_maxwell", f"closure + Maxwell (tortuosity {r['maxwell_tortuosity']:.3f})"),
                            ("closure_faces", "closure + packed faces (tried)")):
            if name not in r["il2rd"]:
                continue
            e = r["il2rd"][name]
            per_type = " | ".join(f"{_pct(e[t]['total'])} / {100 * e[t]['rms']:.1f}%" if t in e else "-" for t in TYPES)
            head = (f"{100 * r['occupancy']:g} %", cells, _pct(r.get("reference_change_rms"), 2)) if name == "point" else ("",) * 3
            lines.append(f"| {' | '.join(head)} | {label} | {100 * e['all']['rms']:.1f}% | {per_type} |")
    lines += [
        "",
        "## Homogenisation: decay length through a population of consumers",
        "",
        "Consumers on every P-th position along each axis (occupancy 1/P^3), c fixed on one face, periodic "
        "sides, no bulk decay; decay length from plane means one period apart. Target: the dilute "
        "homogenised sqrt(D/(n k_eff)), k_eff = k S/(S + k). Periodic-array theory (an independent check of the "
        "resolved solver, leading order in a/L, P >= 2): each sphere takes up c_mean/(1/k + 1/S - 2.8373/(4 pi D L)) "
        "through Maxwell's D_eff = D 2(1 - phi)/(2 + phi).",
        "",
        "| P | occupancy | k/S | target (um) | resolved (um) | resolved vs target | periodic-array theory vs resolved | il2rd point (um) | il2rd closure (um) | point vs resolved | closure vs resolved | closure vs target | closure + packed faces vs resolved |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["homogenisation"]:
        resolved = " / ".join(f"{v:.3f}" for v in r["resolved_um"].values())
        theory = None  # leading order in a/L: not meant for P = 1 (a/L = 0.4)
        if r["period"] > 1:
            theory = periodic_array_decay_length_um(r["k_over_s"] * capacity_um3_per_s(), r["period"]) / min(r["resolved_um"].values()) - 1.0
        lines.append(f"| {r['period']} | {100 * r['occupancy']:.1f} % | {r['k_over_s']:g} | {r['target_um']:.3f} | {resolved} | "
                     f"{_pct(r['resolved_vs_target'])} | {_pct(theory)} | {r['point_um']:.3f} | {r['closure_um']:.3f} | "
                     f"{_pct(r['point_vs_resolved'])} | {_pct(r['closure_vs_resolved'])} | {_pct(r['closure_vs_target'])} | "
                     f"{_pct(r.get('closure_faces_vs_resolved'))} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import datetime
    import json
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (~30 s): coarse reference, small block")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for resolved_reference.{json,md}")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.quick:
        spacings, n, validation_spacings, homogenisation = (1.0,), 4, (1.0, 0.5), dict(k_over_s_values=(1.4,), periods=(1,))
    else:
        spacings, n, validation_spacings = (1.0, 0.5), 6, (1.0, 0.5, 0.25)
        homogenisation = dict(k_over_s_values=(0.1, 1.0, 1.4), periods=(1, 2))
    result = dict(command="python benchmarks/resolved_reference.py" + (" --quick" if args.quick else ""),
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  backend=jax.default_backend(), spacings_um=list(spacings), tissue_n=n)
    result["validation"] = validation_rows(validation_spacings)
    print(f"validation done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    result["tissue"] = tissue_rows(n, (0.05, 0.3, 0.7), spacings)
    print(f"tissue done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    result["homogenisation"] = homogenisation_rows(spacings_um=(min(1.0, *spacings),), **homogenisation)
    if not args.quick:  # one dilute case, the strong consumer only (the costliest resolved solve)
        result["homogenisation"] += homogenisation_rows(k_over_s_values=(1.4,), periods=(3,), spacings_um=(1.0,))
    result["wall_s"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "resolved_reference_quick" if args.quick else "resolved_reference"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (args.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
