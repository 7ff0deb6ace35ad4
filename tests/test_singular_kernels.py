"""Normalised duals, their depth limits and the Koenigs kernel (Radhakrishnan, Belkin & Uhler).

Independent routes: 2-D Gauss quadrature of the activation (duals), Hermite coefficients by
quadrature (c, λ, α of erf), mpmath iteration at 60–320 digits (the Koenigs function and deep
kernels near the repelling fixed point), theory.kernels.stax (NNGP/NTK recursions), and the
functional equation Φ(φ̌(ξ)) = cΦ(ξ).
"""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import mpmath as mp
import numpy as np
import pytest
from conftest import gauss_expectation

from theory.kernels import dual as kdual
from theory.singular import (
    consistent_dual,
    erf_dual,
    hermite_dual,
    koenigs_from_correlation,
    koenigs_from_gap,
    koenigs_kernel,
    log_koenigs_kernel,
    monomial_dual,
    nngp_at_depth,
    ntk_at_depth,
    polynomial_dual,
    relu_dual,
    sine_alpha,
    sine_dual,
)

# The four examples: dual weights (exact fractions) and α.
EXAMPLES = [
    ((0, Fraction(1, 2), 0, Fraction(1, 2)), 2.0),
    ((0, Fraction(1, 2), 0, 0, 0, 0, 0, Fraction(1, 2)), 1.0),
    ((0, Fraction(1, 4), Fraction(1, 2), Fraction(1, 4)), 4.0),
    ((0, Fraction(1, 16), Fraction(7, 8), Fraction(1, 16)), 8.0),
]


def _poly(weights):
    return polynomial_dual([float(w) for w in weights])


@pytest.fixture(scope="module")
def duals():
    return {
        "cubic": _poly(EXAMPLES[0][0]),
        "alpha4": _poly(EXAMPLES[2][0]),
        "alpha8": _poly(EXAMPLES[3][0]),
        "sine": consistent_dual(3.0, "sine"),
        "erf": erf_dual(),
    }


# ------------------------------------------------------------------ duals


@pytest.mark.parametrize(("weights", "alpha"), EXAMPLES)
def test_alpha_of_the_polynomial_examples(weights, alpha):
    d = _poly(weights)
    assert d.kind == "singular"
    assert d.alpha == pytest.approx(alpha, abs=1e-14)
    # λ = Σ i wᵢ, c = w₁ (exact rationals)
    assert d.lam == pytest.approx(float(sum(i * w for i, w in enumerate(weights))), abs=1e-15)
    assert d.c == float(weights[1])


def test_erf_alpha_by_hermite_quadrature():
    """α(erf) from the closed form equals α from erf's Hermite coefficients (Gauss quadrature,
    160 coefficients, truncation residual < 1e-5 of E[φ²], which bounds the error of λ's
    tail Σ_{i>160} i aᵢ² only loosely, hence rtol 1e-3 there; c converges much faster)."""
    d = erf_dual()
    a, residual = kdual.hermite_coefficients(_erf, 160, 400)
    w = a * a / (a * a).sum()
    assert residual < 1e-5 * (a * a).sum()
    assert d.c == pytest.approx(w[1], rel=1e-5)
    assert d.lam == pytest.approx(np.sum(np.arange(len(w)) * w), rel=2e-3)
    assert d.alpha == pytest.approx(0.888215, abs=1e-6)
    assert d.kind == "singular" and d.parity == "odd"


def _erf(x):
    import scipy.special

    return scipy.special.erf(x)


@pytest.mark.parametrize(
    "make",
    [
        lambda: sine_dual(2.5),
        erf_dual,
        relu_dual,
        lambda: monomial_dual(3),
        lambda: monomial_dual(4),
        lambda: hermite_dual([0.3, 0.5, -0.2, 0.4], normalize=True),
    ],
    ids=["sine", "erf", "relu", "x3", "x4", "hermite"],
)
def test_dual_is_the_gaussian_expectation_of_its_activation(make):
    """φ̌(ξ) = E[φ(u)φ(v)] for unit-variance (u, v) with correlation ξ, and E[φ²] = 1:
    closed forms against 2-D Gauss–Legendre quadrature of the activation (rtol 1e-9)."""
    d = make()

    def f(z):
        with jax.enable_x64(True):
            return np.asarray(d.activation(np.asarray(z, np.float64)), np.float64)

    assert gauss_expectation(f, f, 1.0, 1.0, 1.0 - 1e-15) == pytest.approx(1.0, rel=1e-9)
    for xi in (-0.9, -0.3, 0.0, 0.4, 0.95):
        want = gauss_expectation(f, f, 1.0, 1.0, xi)
        with jax.enable_x64(True):
            got = float(d(np.float64(xi)))
        assert got == pytest.approx(want, rel=1e-9, abs=1e-11), (d.name, xi)


@pytest.mark.parametrize("name", ["cubic", "alpha4", "sine", "erf"])
def test_derivative_and_gap(duals, name):
    """φ̌' against a central difference; gap(ε) = 1 − φ̌(1 − ε) against 60-digit arithmetic
    at ε down to 1e-30 (rtol 1e-13), and g(ε)/ε → λ."""
    d = duals[name]
    with jax.enable_x64(True):
        for xi in (-0.7, 0.0, 0.3, 0.9):
            h = 1e-6
            fd = (float(d(xi + h)) - float(d(xi - h))) / (2 * h)
            assert float(d.derivative(xi)) == pytest.approx(fd, rel=1e-8, abs=1e-9)
        eps = np.array([1e-30, 1e-17, 1e-9, 1e-3, 0.3, 0.49])
        got = np.asarray(d.gap(eps))
    mp.mp.dps = 60
    f = _mp_dual(d)
    for e, g in zip(eps, got):
        want = 1 - f(1 - mp.mpf(float(e)))
        assert g == pytest.approx(float(want), rel=1e-13)
    assert got[0] / eps[0] == pytest.approx(d.lam, rel=1e-14)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7])
def test_monomial_dual_matches_the_isserlis_closed_form(k):
    """The Hermite route of monomial_dual against theory.kernels.dual.monomial, normalised."""
    d = monomial_dual(k)
    xi = np.linspace(-1, 1, 21)
    with jax.enable_x64(True):
        ref = np.asarray(kdual.normalised(kdual.monomial(k))(xi))
        got = np.asarray(d(xi))
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)


def test_constructors_reject_bad_input():
    with pytest.raises(ValueError, match="coeffs"):
        hermite_dual([0.5, 0.5])  # Σ aᵢ² = 0.5
    assert hermite_dual([0.5, 0.5], normalize=True).c == pytest.approx(0.5)
    with pytest.raises(ValueError, match="coeffs"):
        hermite_dual([0.0, np.nan])
    with pytest.raises(ValueError, match="weights"):
        polynomial_dual([0.5, -0.1, 0.6])
    with pytest.raises(ValueError, match="a must be"):
        sine_dual(-1.0)
    with pytest.raises(ValueError, match="k must be"):
        monomial_dual(0)
    with pytest.raises(ValueError, match="intrinsic_dim"):
        consistent_dual(1.0, "sine")
    with pytest.raises(ValueError, match="family"):
        consistent_dual(3.0, "cosine")
    with pytest.raises(ValueError, match="intrinsic_dim"):
        consistent_dual(-2.0)


def test_taxonomy_of_the_standard_duals():
    assert relu_dual().kind == "majority_vote" and relu_dual().lam == pytest.approx(1.0)
    assert monomial_dual(2).kind == "majority_vote"
    assert monomial_dual(1).kind == "linear"
    assert monomial_dual(3).kind == "singular"
    assert polynomial_dual([0, 0, 1]).kind == "nearest_neighbor"
    assert polynomial_dual([0, 0, 0.5, 0.5]).alpha is None
    assert sine_dual(3.0).kind == "singular"


@pytest.mark.parametrize(
    ("family", "m"),
    [("sine", 1.5), ("sine", 2), ("sine", 5), ("sine", 8), ("sine", 30)]
    + [("polynomial", m) for m in (0.5, 1, 2, 3, 4, 8)],
)
def test_consistent_dual_has_alpha_equal_to_the_dimension(family, m):
    d = consistent_dual(m, family)
    assert d.alpha == pytest.approx(m, rel=1e-12)
    if family == "sine":
        a = d.key[1]
        assert sine_alpha(a) == pytest.approx(m, rel=1e-12)
        # α(a) increases from 1 to ∞ (one solution per α > 1)
        grid = np.geomspace(1e-3, 300, 2000)
        assert np.all(np.diff(sine_alpha(grid)) > 0)
        assert sine_alpha(1e-3) == pytest.approx(1.0, abs=1e-6)


def test_polynomial_family_reproduces_the_examples():
    for weights, alpha in [EXAMPLES[0], EXAMPLES[2], EXAMPLES[3]]:
        d = consistent_dual(alpha, "polynomial")
        np.testing.assert_allclose(d.weights, [float(w) for w in weights], atol=1e-15)


# ------------------------------------------------------------------ high-precision oracle


def _mp_dual(d):
    """φ̌ in mpmath: exact rational weights for power series, closed forms otherwise."""
    if d.weights is not None:
        w = [
            mp.mpf(Fraction(float(x)).numerator) / Fraction(float(x)).denominator for x in d.weights
        ]
        total = sum(w)
        w = [x / total for x in w]  # exactly φ̌(1) = 1 at the working precision
        return lambda x: mp.polyval(w[::-1], x)
    if d.key[0] == "sine":
        a = mp.mpf(d.key[1])
        return lambda x: mp.sinh(a * x) / mp.sinh(a)
    if d.key[0] == "erf":
        return lambda x: mp.asin(2 * x / 3) / mp.asin(mp.mpf(2) / 3)
    raise NotImplementedError(d.name)


def _mp_log_koenigs(d, eps, stop="1e-60"):
    """log|Φ(1 − ε)| = lim [log|φ̌^{∘n}(1 − ε)| + n ln(1/c)] by iteration at high precision,
    stopped when |ξ| < 1e-60 (Φ(ξ)/ξ − 1 = O(ξ): error ≤ 1e-55 relative)."""
    stop = mp.mpf(stop)
    f = _mp_dual(d)
    c = f(mp.mpf("1e-80")) / mp.mpf("1e-80")
    xi = 1 - mp.mpf(eps)
    n = 0
    while abs(xi) >= stop:
        xi = f(xi)
        n += 1
        if n > 20000:
            raise RuntimeError("no convergence")
    return mp.log(abs(xi)) - n * mp.log(c), mp.sign(xi)


# Each method once by default (8-13 s a case); every dual with both methods in the slow suite.
KOENIGS_DEFAULT = {("exact", "cubic"), ("table", "sine")}


@pytest.mark.parametrize(
    "method, name",
    [
        (m, n) if (m, n) in KOENIGS_DEFAULT else pytest.param(m, n, marks=pytest.mark.slow)
        for m in ("exact", "table")
        for n in ("cubic", "alpha8", "sine", "erf")
    ],
)
def test_koenigs_against_high_precision_iteration(duals, name, method):
    """log|Φ(1 − ε)| against mpmath iteration at ε from 1e-200 to 2 (dps 250: 1 − 1e-200
    must be representable). Tolerance 1e-10 absolute in log Φ (relative 1e-10 in Φ): the
    exact route is good to ~1e-13, the table to its build tolerance 1e-11, plus rounding of
    the log of values up to e^600."""
    d = duals[name]
    eps = np.array([1e-200, 1e-40, 1e-12, 3e-8, 1e-4, 0.01, 0.2, 0.49, 0.51, 0.9, 1.2, 1.7, 1.99])
    if method == "exact":
        sign, log_abs = koenigs_from_gap(eps, d)
    else:
        x1 = np.array([[1.0, 0.0]])
        theta = 2 * np.arcsin(np.sqrt(eps / 2))  # ‖x − z‖²/2 = 1 − cos θ = ε
        x2 = np.stack([np.cos(theta), np.sin(theta)], 1)
        sign, log_abs = log_koenigs_kernel(x1, x2, d, method="table")
        sign, log_abs = sign[0], log_abs[0]
    mp.mp.dps = 250
    for i, (s, l) in enumerate(zip(np.asarray(sign), np.asarray(log_abs))):
        if method == "exact":
            e = mp.mpf(float(eps[i]))
        else:  # the ε of the float64 points themselves, ‖x1 − x2‖²/2, at 250 digits
            e = ((1 - mp.mpf(float(x2[i, 0]))) ** 2 + mp.mpf(float(x2[i, 1])) ** 2) / 2
        want, want_sign = _mp_log_koenigs(d, e)
        assert s == float(want_sign), (name, eps[i])
        tol = 1e-10 * max(1.0, abs(float(want)) / 50)
        assert l == pytest.approx(float(want), abs=tol), (name, eps[i])


def test_koenigs_functional_equation_and_normalization(duals):
    """Φ(φ̌(ξ)) = c Φ(ξ) across the whole range (this links the two tables and the jump),
    and Φ(ξ) = ξ + O(ξ²) at 0."""
    xi = np.linspace(-0.999, 0.999, 101)
    eps = np.geomspace(1e-300, 0.49, 200)  # near ξ = 1 in ε coordinates: Φ(1 − g(ε)) = cΦ(1 − ε)
    for name, d in duals.items():
        with jax.enable_x64(True):
            image = np.asarray(d(xi))
            image_eps = np.asarray(d.gap(eps))
        lhs = np.asarray(koenigs_from_correlation(image, d))
        rhs = d.c * np.asarray(koenigs_from_correlation(xi, d))
        np.testing.assert_allclose(lhs, rhs, rtol=1e-9, atol=1e-12, err_msg=name)
        s1, l1 = koenigs_from_gap(image_eps, d)
        s0, l0 = koenigs_from_gap(eps, d)
        assert np.all(np.asarray(s1) == np.asarray(s0))
        np.testing.assert_allclose(np.asarray(l1) - np.asarray(l0), math.log(d.c), atol=1e-10)
        small = np.array([1e-7, -1e-7])
        np.testing.assert_allclose(koenigs_from_correlation(small, d), small, rtol=1e-5)


@pytest.mark.slow  # 10 s
def test_koenigs_sandwiches_the_power_law_with_a_log_periodic_factor(duals):
    """r(ε) = Φ(1 − ε)·(2ε)^(α/2) = Φ·‖x − z‖^α stays between two positive constants for
    ε ∈ [1e-300, 1e-2], and is log-periodic with period ln λ as ε → 0: r(ε) = r(ε/λ)
    (error O(ε), < 1e-9 here)."""
    for name, d in duals.items():
        eps = np.geomspace(1e-300, 1e-2, 2000)
        _, log_phi = koenigs_from_gap(eps, d)
        log_r = np.asarray(log_phi) + d.alpha / 2 * np.log(2 * eps)
        assert np.all(np.isfinite(log_r))
        assert np.ptp(log_r) < 1.0, name  # the ratio stays within a factor e
        tiny = np.geomspace(1e-250, 1e-100, 50)
        _, a = koenigs_from_gap(tiny, d)
        _, b = koenigs_from_gap(tiny / d.lam, d)
        shifted = np.asarray(b) - np.asarray(a) - d.alpha / 2 * math.log(d.lam)
        np.testing.assert_allclose(shifted, 0.0, atol=1e-9, err_msg=name)


def test_koenigs_kernel_is_the_limit_of_rescaled_deep_nngp(duals):
    """c^(−L) Σ⁽ᴸ⁾ → Φ: the relative gap shrinks with L and is < 1e-9 at L = 60 for points at
    distances 1e-6 to 1 (the convergence is geometric, error O(c^L·Φ·stuff))."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4))
    x[1] = x[0] + 1e-6 * rng.normal(size=4)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    d = duals["cubic"]
    phi = np.asarray(koenigs_kernel(x, x, d))
    off = ~np.eye(6, dtype=bool)
    errs = []
    for depth in (10, 30, 60):
        k = np.asarray(nngp_at_depth(x, x, d, depth)) / d.c**depth
        errs.append(np.max(np.abs(k[off] / phi[off] - 1)))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-9
    assert np.all(np.isinf(np.diag(phi)))


# ------------------------------------------------------------------ finite depth


def test_nngp_keeps_the_digits_near_the_repelling_fixed_point(duals):
    """Two points at distance 1e-7 (ε = 5e-15): after 20 layers 1 − Σ ≈ λ^20 ε ≈ 5e-9; plain
    ξ iteration in float64 keeps ~1 digit of it, the hybrid iteration all (mp oracle, 1e-10)."""
    d = duals["cubic"]
    x = np.array([[1.0, 0.0, 0.0], [math.cos(1e-7), math.sin(1e-7), 0.0]])
    eps = float(np.sum((x[0] - x[1]) ** 2) / 2)
    k = np.asarray(nngp_at_depth(x, None, d, 20))
    assert k[0, 0] == 1.0 and k[1, 1] == 1.0
    mp.mp.dps = 60
    f = _mp_dual(d)
    xi = 1 - mp.mpf(eps)
    for _ in range(20):
        xi = f(xi)
    assert 1 - k[0, 1] == pytest.approx(float(1 - xi), rel=1e-6)


def test_nngp_and_ntk_against_the_stax_recursion():
    """Σ⁽ᴸ⁾ and K⁽ᴸ⁾ equal the NNGP and NTK of theory.kernels.stax for the network
    Dense → [Sin → Dense]×L with the normalised sine activation, on inputs scaled by √d (stax's
    Dense divides by the fan-in), float64, rtol 1e-10; diagonals analytically."""
    from theory.kernels import stax

    a = 2.0
    d = sine_dual(a)
    scale = 1 / math.sqrt(math.exp(-a) * math.sinh(a))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    depth = 4
    layers = [stax.Dense(1, W_std=1.0, b_std=None)]
    for _ in range(depth):
        layers += [stax.Sin(a=scale, b=math.sqrt(a)), stax.Dense(1, W_std=1.0, b_std=None)]
    _, _, kernel_fn = stax.serial(*layers)
    with jax.enable_x64(True):
        ref = kernel_fn(np.sqrt(3) * x, None, ("nngp", "ntk"))
        nngp, ntk = np.asarray(ref.nngp), np.asarray(ref.ntk)
    np.testing.assert_allclose(nngp_at_depth(x, None, d, depth), nngp, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(ntk_at_depth(x, None, d, depth), ntk, rtol=1e-10, atol=1e-13)
    lam = d.lam
    assert np.diag(np.asarray(ntk_at_depth(x, None, d, depth)))[0] == pytest.approx(
        (lam ** (depth + 1) - 1) / (lam - 1), rel=1e-14
    )


def test_kernels_reject_bad_input(duals):
    d = duals["cubic"]
    x = np.eye(3)
    with pytest.raises(ValueError, match="unit sphere"):
        nngp_at_depth(2 * x, None, d, 3)
    with pytest.raises(ValueError, match="finite"):
        koenigs_kernel(np.array([[np.nan, 1.0]]), None, d)
    with pytest.raises(ValueError, match="depth"):
        nngp_at_depth(x, None, d, -1)
    with pytest.raises(ValueError, match="depth"):
        ntk_at_depth(x, None, d, 2.5)
    with pytest.raises(ValueError, match="dual"):
        koenigs_kernel(x, None, relu_dual())
    with pytest.raises(TypeError, match="dual"):
        koenigs_kernel(x, None, "relu")
    with pytest.raises(ValueError, match="same number of features"):
        koenigs_kernel(x, np.eye(2), d)
    with pytest.raises(ValueError, match="method"):
        koenigs_kernel(x, None, d, method="fast")
