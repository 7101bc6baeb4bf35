"""The steady solver against exact solutions of the continuum equation (../shared/science.md,
"Exact results to test against"), with the observed order of convergence under refinement.

The lattice is second-order accurate (cell-centred finite volumes, ghost-cell boundaries), so at
fixed physical points the error must fall as h^2. All in float64.
"""

import numpy as np
import pytest
from scipy.optimize import brentq

from helpers import (
    PM_IN_MOLECULES_PER_UM3,
    coefficients,
    fit_order,
    pair_orders,
    point_source_in_box_pM,
    relative_max_error,
)
from il2rd.physics import units
from il2rd.physics.grid import Grid
from il2rd.solvers.steady import SolverOptions, steady_field

TIGHT = SolverOptions(rtol=1e-11)


def solve(grid, coef, options=TIGHT):
    c, info = steady_field(grid, coef, options=options)
    assert bool(info.converged), info
    return np.asarray(c)


# ---------------------------------------------------------------------------------------------
# 1. Point source with bulk decay in 3-D.

D_PS, LAMBDA_PS, Q_PS = 10.0, 10.0, 10.0  # um^2/s, um, molecules/s
HALF_WIDTH = 6 * LAMBDA_PS  # box half-width (um), >= 6 lambda
POINT_SOURCE_SPACINGS = (4.0, 2.0, 1.0)
SAMPLE_DISTANCES = (16.0, 20.0, 24.0, 32.0, 40.0)  # um; > 3 voxels of the coarsest lattice


def point_source_field(h):
    """Steady field of one source in the centre voxel of an odd cube with c = 0 on its faces.
    Returns (c, index of the source voxel, half-width of the box in um)."""
    m = int(round(HALF_WIDTH / h))
    n = 2 * m + 1
    grid = Grid((n, n, n), h, ("fixed",) * 6)
    secretion = np.zeros((n, n, n))
    secretion[m, m, m] = units.cell_rate_to_voxel_rate_pM_per_s(Q_PS, h**3)
    coef = coefficients(grid.shape, D_PS, D_PS / LAMBDA_PS**2, secretion, uptake="linear")
    return solve(grid, coef), m, n * h / 2


@pytest.fixture(scope="module")
def point_source_runs():
    return {h: point_source_field(h) for h in POINT_SOURCE_SPACINGS}


def _axis_samples(c, m, j):
    """The six values at j voxels from the source along +-x, +-y, +-z."""
    return np.array([c[m + j, m, m], c[m - j, m, m], c[m, m + j, m], c[m, m - j, m], c[m, m, m + j], c[m, m, m - j]])


def test_point_source_converges_at_second_order(point_source_runs):
    errors = []
    for h in POINT_SOURCE_SPACINGS:
        c, m, half = point_source_runs[h]
        worst = 0.0
        for r in SAMPLE_DISTANCES:
            j = int(round(r / h))
            assert j * h == r  # the sample points nest under refinement
            exact = point_source_in_box_pM(r, 0.0, 0.0, half, Q_PS, D_PS, LAMBDA_PS)
            samples = _axis_samples(c, m, j)
            # cubic symmetry of the lattice problem, to round-off
            np.testing.assert_allclose(samples, samples[0], rtol=1e-11)
            worst = max(worst, abs(samples[0] - exact) / exact)
        errors.append(worst)
    order = fit_order(POINT_SOURCE_SPACINGS, errors)
    finest_pair = pair_orders(POINT_SOURCE_SPACINGS, errors)[-1]
    print(f"point source: errors {errors}, fitted order {order:.3f}, finest-pair order {finest_pair:.3f}")
    assert 1.7 <= order <= 2.3
    assert 1.8 <= finest_pair <= 2.2
    assert errors[-1] < 5e-3  # observed 2.5e-3 at h = 1 um (lambda = 10 um)


def test_point_source_whole_field_on_finest_lattice(point_source_runs):
    """Every voxel beyond 3 voxels from the source and within 4 lambda, in all directions
    (axes, face and body diagonals), matches the exact field with its images."""
    h = POINT_SOURCE_SPACINGS[-1]
    c, m, half = point_source_runs[h]
    x = (np.arange(c.shape[0]) - m) * h
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    r = np.sqrt(X**2 + Y**2 + Z**2)
    far = r > 4 * LAMBDA_PS
    near = ~far & (r > 3 * h + 1e-9)
    exact = point_source_in_box_pM(X[near], Y[near], Z[near], half, Q_PS, D_PS, LAMBDA_PS)
    error = np.abs(c[near] - exact) / exact
    print(f"point source, h = {h}: max relative error {error.max():.3g}, median {np.median(error):.3g}")
    assert error.max() < 0.04  # observed 2.8 %, at 3-4 voxels from the source
    assert np.median(error) < 2e-3  # observed 1.0e-3
    assert np.all(c >= 0)


# ---------------------------------------------------------------------------------------------
# 2. One-dimensional slabs: flux J into x = 0 as secretion J/h in the first voxel.

D_SLAB, LAMBDA_SLAB, J_SLAB = 10.0, 10.0, 1.0  # um^2/s, um, pM um/s
SLAB_SPACINGS = (2.0, 1.0, 0.5, 0.25)


def slab(h, length, far_kind, decay, vmax=0.0, km=1.0, uptake="linear", flux=J_SLAB, diffusion=D_SLAB):
    """(x centres, c) on an (n, 1, 1) lattice with zero-flux x = 0 fed by flux J."""
    n = int(round(length / h))
    assert n * h == length
    grid = Grid((n, 1, 1), h, ("zero_flux", far_kind) + ("zero_flux",) * 4)
    secretion = np.zeros(grid.shape)
    secretion[0] = flux / h
    coef = coefficients(grid.shape, diffusion, decay, secretion, vmax, km, uptake=uptake)
    return grid.centres_um(0), solve(grid, coef)[:, 0, 0]


def _slab_convergence(length, far_kind, exact):
    errors = []
    for h in SLAB_SPACINGS:
        x, c = slab(h, length, far_kind, D_SLAB / LAMBDA_SLAB**2)
        errors.append(relative_max_error(c, exact(x)))
    return errors


def test_semi_infinite_slab():
    lam = LAMBDA_SLAB
    exact = lambda x: J_SLAB * lam / D_SLAB * np.exp(-x / lam)  # noqa: E731
    errors = _slab_convergence(20 * lam, "fixed", exact)  # far end at 20 lambda: exp(-40) effects
    orders = pair_orders(SLAB_SPACINGS, errors)
    print(f"semi-infinite slab: errors {errors}, pair orders {orders}")
    assert np.all((orders > 1.9) & (orders < 2.1))  # observed 1.991 - 1.999
    assert errors[-1] < 2e-5  # observed 9.6e-6 at h = 0.25 um


def test_finite_slab_with_no_flux_far_end():
    lam, length = LAMBDA_SLAB, 24.0
    exact = lambda x: J_SLAB * lam / D_SLAB * np.cosh((length - x) / lam) / np.sinh(length / lam)  # noqa: E731
    errors = _slab_convergence(length, "zero_flux", exact)
    orders = pair_orders(SLAB_SPACINGS, errors)
    print(f"finite slab: errors {errors}, pair orders {orders}")
    assert np.all((orders > 1.9) & (orders < 2.1))
    assert errors[-1] < 2e-5


def test_slab_total_flux_balance():
    """Whatever enters at x = 0 decays in the slab: k sum(c) h = J (zero-flux far end)."""
    h, length, lam = 0.5, 24.0, LAMBDA_SLAB
    k = D_SLAB / lam**2
    _, c = slab(h, length, "zero_flux", k)
    assert k * c.sum() * h == pytest.approx(J_SLAB, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# 3. Michaelis-Menten consumers everywhere: xi^2 u'' = u / (1 + u), u = c / K_M.

MM_D, MM_KM, MM_XI = 10.0, 10.0, 10.0  # um^2/s, pM, um
MM_VMAX = MM_D * MM_KM / MM_XI**2  # pM/s
MM_U0 = 5.0  # boundary value u(0) the flux is chosen for (well into saturation)
MM_FLUX = np.sqrt(2 * (MM_U0 - np.log1p(MM_U0))) * MM_D * MM_KM / MM_XI
MM_SPACINGS = (2.0, 1.0, 0.5)


@pytest.fixture(scope="module")
def mm_profiles():
    return {
        h: slab(h, 20 * MM_XI, "fixed", 0.0, MM_VMAX, MM_KM, "saturating", flux=MM_FLUX, diffusion=MM_D)[1]
        for h in MM_SPACINGS
    }


def test_michaelis_menten_first_integral(mm_profiles):
    """xi^2 u'^2 / 2 = u - ln(1 + u) along the whole profile (u' and u at voxel faces)."""
    scale = MM_U0 - np.log1p(MM_U0)
    errors = []
    for h in MM_SPACINGS:
        u = mm_profiles[h] / MM_KM
        u_face = 0.5 * (u[1:] + u[:-1])
        du = (u[1:] - u[:-1]) / h
        defect = MM_XI**2 * du**2 / 2 - (u_face - np.log1p(u_face))
        errors.append(np.max(np.abs(defect)) / scale)
    orders = pair_orders(MM_SPACINGS, errors)
    print(f"Michaelis-Menten first integral: defects {errors}, pair orders {orders}")
    assert np.all((orders > 1.9) & (orders < 2.1))  # observed 1.98, 1.99
    assert errors[-1] < 1e-4  # observed 5.1e-5 at h = 0.5 um


def test_michaelis_menten_boundary_value(mm_profiles):
    """u(0) solves u0 - ln(1 + u0) = (J / (D K_M))^2 xi^2 / 2; u(0) from the first voxel by
    u(0) = u(h/2) + (h/2) J / (D K_M) + O(h^2)."""
    target = (MM_FLUX / (MM_D * MM_KM)) ** 2 * MM_XI**2 / 2
    u0 = brentq(lambda u: u - np.log1p(u) - target, 0.0, 1e3)
    assert u0 == pytest.approx(MM_U0, rel=1e-12)
    errors = []
    for h in MM_SPACINGS:
        c = mm_profiles[h]
        u_boundary = c[0] / MM_KM + h / 2 * MM_FLUX / (MM_D * MM_KM)
        errors.append(abs(u_boundary - u0) / u0)
    orders = pair_orders(MM_SPACINGS, errors)
    print(f"Michaelis-Menten u(0): errors {errors}, pair orders {orders}")
    assert np.all((orders > 1.9) & (orders < 2.1))  # observed 2.0000
    assert errors[-1] < 1e-4  # observed 3.9e-5


def test_michaelis_menten_uptake_equals_influx(mm_profiles):
    """Every molecule entering at x = 0 is taken up or leaves through the far (fixed 0) face,
    where the discrete flux is D c_last / (h/2); no decay."""
    h = MM_SPACINGS[-1]
    c = mm_profiles[h]
    uptake = np.sum(MM_VMAX * c / (MM_KM + c)) * h
    outflux = 2 * MM_D * c[-1] / h
    assert outflux < 1e-6 * MM_FLUX  # the slab is long enough to stand for a semi-infinite one
    assert uptake + outflux == pytest.approx(MM_FLUX, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# 4. Homogenised consumers: lambda = sqrt(D / (k + n k_on R)).


def test_uniform_linear_consumers_set_decay_length():
    """Linear uptake vmax/km in every voxel acts as extra bulk decay: lambda = sqrt(D/(k + vmax/km)).
    On the lattice the profile decays exactly as exp(-mu x), 2 (cosh(mu h) - 1) / h^2 = 1/lambda^2,
    which tends to 1/lambda at second order."""
    D, k, vmax, km = 10.0, 0.02, 0.5, 10.0
    lam = np.sqrt(D / (k + vmax / km))  # 11.95 um
    length = 240.0
    spacings = (2.0, 1.0, 0.5)
    errors = []
    for h in spacings:
        x, c = slab(h, length, "fixed", k, vmax, km, "linear")
        errors.append(relative_max_error(c, J_SLAB * lam / D * np.exp(-x / lam)))
        # decay length read off the profile between 2 and 6 lambda
        sel = (x > 2 * lam) & (x < 6 * lam)
        fitted = -1.0 / np.polyfit(x[sel], np.log(c[sel]), 1)[0]
        lattice = h / np.arccosh(1 + h**2 / (2 * lam**2))
        assert fitted == pytest.approx(lattice, rel=1e-9)
        assert abs(fitted / lam - 1) < (h / lam) ** 2 / 24 * 1.01  # lattice - lambda = lambda (h/lambda)^2/24 + ...
    orders = pair_orders(spacings, errors)
    print(f"uniform consumers: lambda {lam:.5f}, fitted {fitted:.5f} (h = {h}), errors {errors}, orders {orders}")
    assert np.all((orders > 1.9) & (orders < 2.1))  # observed 2.05, 2.03
    assert errors[-1] < 5e-5  # observed 2.7e-5
    # the consumers matter: without them the decay length would be sqrt(D / k) = 22 um
    assert abs(fitted - np.sqrt(D / k)) > 5.0


def test_sparse_cells_homogenise_to_density_times_clearance():
    """Cells with R receptors (linear uptake k_int R c / K_M molecules/s) in one voxel of every
    2 x 2 x 2 block, n = 1 / (8 h^3) cells per um^3 (1e6 cells/mm^3 at h = 5 um), fed by a flux
    plane at x = 0: the field decays as exp(-x / lambda), lambda = sqrt(D / (k + n kappa)),
    kappa = k_int R / (K_M 6.022e-4) um^3/s the clearance of one cell (science.md result 4).
    Lattice and homogenisation corrections are O((2h / lambda)^2)."""
    D, k, h = 10.0, 2.8e-5, 5.0
    receptors, k_int, km = 100.0, 1.1e-3, 43.0
    kappa = k_int * receptors / (km * PM_IN_MOLECULES_PER_UM3)  # um^3/s per cell
    density = 1.0 / (8 * h**3)
    lam = np.sqrt(D / (k + density * kappa))  # 48 um
    nx = 100  # 500 um, > 10 lambda
    grid = Grid((nx, 2, 2), h, ("zero_flux", "fixed", "periodic", "periodic", "periodic", "periodic"))
    secretion = np.zeros(grid.shape)
    secretion[0] = J_SLAB / h
    vmax = np.zeros(grid.shape)
    km_field = np.ones(grid.shape)
    vmax[::2, 0, 0] = units.cell_rate_to_voxel_rate_pM_per_s(k_int * receptors, h**3)
    km_field[::2, 0, 0] = km
    coef = coefficients(grid.shape, D, k, secretion, vmax, km_field, uptake="linear")
    plane = solve(grid, coef).mean(axis=(1, 2))
    x = grid.centres_um(0)
    # the same phase of the 2-voxel pattern, 2 lambda apart, from x ~ 2 lambda to 6 lambda
    i0 = 2 * int(round(2 * lam / (2 * h)))
    di = 2 * int(round(2 * lam / (2 * h)))
    fitted = (x[i0 + 2 * di] - x[i0]) / np.log(plane[i0] / plane[i0 + 2 * di])
    print(f"sparse cells: homogenised lambda {lam:.3f} um, fitted {fitted:.3f} um")
    assert fitted == pytest.approx(lam, rel=(2 * h / lam) ** 2 / 4)  # observed 0.67 %, bound 1.07 %
