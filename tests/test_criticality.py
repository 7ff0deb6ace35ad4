"""theory.kernels.criticality: the recursions against closed forms, independent quadrature,
the stax kernel engine, and Monte Carlo over finite networks.

Monte Carlo tolerances: every estimate's standard error (SE) comes from the spread over
independent networks (`kurtosis_estimate`, `ntk_moments_estimate`); a check allows 4 SE
(two-sided normal tail 6e-5 per comparison), plus, where the theory is a leading-order
expansion, the size of the next order as stated at the check.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special

from theory.kernels import criticality as cr
from theory.kernels import stax

RELU, TANH, GELU, SWISH = stax.Relu(), stax.Tanh(), stax.Gelu(), stax.Swish()


# -------------------------------------------------- independent float64 Gaussian integrals


def gauss(f, k):
    """⟨f⟩_K by adaptive quadrature (scipy.integrate.quad), independent of the module."""
    s = math.sqrt(k)
    val, _ = scipy.integrate.quad(
        lambda u: f(s * u) * math.exp(-u * u / 2) / math.sqrt(2 * math.pi),
        -np.inf,
        np.inf,
        epsabs=1e-14,
        epsrel=1e-13,
        limit=400,
    )
    return val


def gelu_np(x):
    return x * scipy.special.ndtr(x)


def dgelu_np(x):
    return scipy.special.ndtr(x) + x * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def swish_np(x):
    return x * scipy.special.expit(x)


def dswish_np(x):
    s = scipy.special.expit(x)
    return s * (1 + x * (1 - s))


# ------------------------------------------------------------------ critical points


def test_relu_and_scale_invariant_class():
    assert cr.universality_class(RELU) == "scale-invariant"
    assert cr.critical_initialization(RELU) == (0.0, 2.0, None)
    alpha = 0.3
    cp = cr.critical_initialization(stax.LeakyRelu(alpha))
    assert cp.C_b == 0 and cp.K_star is None
    assert cp.C_W == pytest.approx(2 / (1 + alpha**2), rel=1e-12)
    # a plain function goes through quadrature (no dual): linear σ has C_W = 1
    assert cr.universality_class(lambda x: x) == "scale-invariant"
    assert cr.critical_initialization(lambda x: x).C_W == pytest.approx(1.0, rel=1e-12)
    # every K is a fixed point at C_W = 2
    ks = cr.kernel_recursion(RELU, 0.0, 2.0, 0.37, 50)
    np.testing.assert_allclose(ks, 0.37, rtol=1e-13)


def test_tanh_is_k_star_zero_with_the_one_over_2l_law():
    assert cr.universality_class(TANH) == "K*=0"
    assert cr.critical_initialization(TANH) == (0.0, 1.0, 0.0)
    assert cr.fixed_point(TANH, 0.0, 1.0).K_star == 0.0
    # K⁽ˡ⁾ = 1/(2l) (1 + (5/12) ln l / l + O(1/l)) with a₁ = −2, a₂ = 17/3 (expansion of
    # K' = K + a₁K² + a₂K³ + …): at l = 10⁴ the O(1/l) remainder is below 2/l
    ks = cr.kernel_recursion(TANH, 0.0, 1.0, 1.0, 10_000)
    l = 10_000
    assert abs(2 * l * ks[-1] - 1 - (5 / 12) * math.log(l) / l) < 2 / l
    # sin and erf are in the same class; C_W = 1/σ'(0)²
    assert cr.universality_class(stax.Sin()) == "K*=0"
    assert cr.critical_initialization(stax.Erf()).C_W == pytest.approx(math.pi / 4, rel=1e-12)


@pytest.mark.parametrize(
    "layer, f, df", [(GELU, gelu_np, dgelu_np), (SWISH, swish_np, dswish_np)], ids=["gelu", "swish"]
)
def test_gelu_and_swish_critical_points_by_independent_quadrature(layer, f, df):
    """χ_∥ = (C_W/2K²)⟨σ²(z² − K)⟩ and χ_⊥ = C_W⟨σ'²⟩ by adaptive quadrature of hand-written
    σ, σ' (not the module's dual, autodiff or quadrature): both 1 to 1e-8, and K* a fixed
    point with C_b > 0."""
    cp = cr.critical_initialization(layer)
    assert cr.universality_class(layer) == "none"
    assert cp.C_b > 0 and cp.K_star > 0
    k = cp.K_star
    chi_par = cp.C_W / (2 * k * k) * gauss(lambda z: f(z) ** 2 * (z * z - k), k)
    chi_perp = cp.C_W * gauss(lambda z: df(z) ** 2, k)
    assert abs(chi_par - 1) < 1e-8 and abs(chi_perp - 1) < 1e-8
    assert cp.C_b + cp.C_W * gauss(lambda z: f(z) ** 2, k) == pytest.approx(k, rel=1e-10)
    # only one critical point with C_b ≥ 0 in (1e-4, 1e4)
    assert len(cr.critical_points(layer)) == 1


def test_gelu_and_swish_fixed_points_are_half_stable():
    """At K* the map F(K) = C_b + C_W⟨σ²⟩_K has F' = 1: a tangent fixed point, attracting on one
    side only. GELU (F'' < 0) attracts from above and repels below, towards a stable fixed point
    at K ≈ 3.03 (χ_∥ ≈ 0.9999); Swish (F'' > 0) attracts from below and repels above, towards a
    stable one at K ≈ 14.59. Starts at K*(1 ± 0.005), 400 layers (steps ~1e-8 K*)."""
    for layer, from_above in ((GELU, True), (SWISH, False)):
        c_b, c_w, k = cr.critical_initialization(layer)
        up = cr.kernel_recursion(layer, c_b, c_w, 1.005 * k, 400)
        down = cr.kernel_recursion(layer, c_b, c_w, 0.995 * k, 400)
        if from_above:
            assert k < up[-1] < up[0] and down[-1] < down[0]
            other = cr.fixed_point(layer, c_b, c_w, K1=0.5 * k)
            assert other.K_star == pytest.approx(3.035, abs=1e-3) and other.chi_parallel < 1
        else:
            assert down[0] < down[-1] < k and up[-1] > up[0]
            other = cr.fixed_point(layer, c_b, c_w, K1=2 * k)
            assert other.K_star == pytest.approx(14.593, abs=1e-3) and other.chi_parallel < 1


def test_plain_functions_take_the_quadrature_route_to_the_same_points():
    """A scalar JAX function has no dual: everything by the half-line rule. GELU's critical
    point from jax.nn.gelu (quadrature) equals stax.Gelu()'s (closed-form dual) to 1e-9, and
    jnp.tanh is in the K* = 0 class like stax.Tanh()."""
    a = cr.critical_initialization(lambda x: jax.nn.gelu(x, approximate=False))
    b = cr.critical_initialization(GELU)
    np.testing.assert_allclose(a, b, rtol=1e-9)
    assert cr.critical_initialization(jnp.tanh) == (0.0, 1.0, 0.0)


def test_no_critical_point_and_bad_input():
    with pytest.raises(cr.NoCriticalPointError, match="no critical initialization.*σ\\(0\\)"):
        cr.critical_initialization(stax.Sigmoid())
    assert cr.universality_class(stax.Sigmoid()) == "none"
    with pytest.raises(ValueError, match="C_W must be finite and > 0"):
        cr.kernel_recursion(TANH, 0.0, 0.0, 1.0, 3)
    with pytest.raises(ValueError, match="C_W must be finite and > 0"):
        cr.susceptibilities(TANH, -1.0, 1.0)
    with pytest.raises(ValueError, match="C_b must be finite and >= 0"):
        cr.kernel_recursion(TANH, -0.1, 1.0, 1.0, 3)
    with pytest.raises(ValueError, match="depth must be an integer >= 1"):
        cr.kernel_recursion(TANH, 0.0, 1.0, 1.0, 0)
    with pytest.raises(ValueError, match="K must be finite and > 0"):
        cr.susceptibilities(TANH, 1.0, [1.0, 0.0])
    with pytest.raises(TypeError, match="activation must be a stax activation layer"):
        cr.critical_initialization(3.0)
    with pytest.raises(ValueError, match="not elementwise"):
        cr.critical_initialization(stax.Dense(1))
    with pytest.raises(ValueError, match="widths must be"):
        cr.vertex_recursion(RELU, 0.0, 2.0, 1.0, 4, [8, 8])
    with pytest.raises(ValueError, match="K12"):
        cr.correlation_flow(RELU, 0.0, 2.0, 1.0, 1.0, 1.5, 3)
    with pytest.raises(ValueError, match="method"):
        cr.sample_networks(RELU, 0.0, 2.0, 1.0, 2, 4, 8, method="loop")
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        cr.sample_networks(RELU, 0.0, 2.0, 1.0, 2, 0, 8)


def test_overflow_is_an_error_not_an_inf():
    with pytest.raises(FloatingPointError, match="non-finite"):
        cr.kernel_recursion(stax.Exp(), 0.0, 4.0, 1.0, 6)
    with pytest.raises(FloatingPointError, match="non-finite"):
        cr.sample_networks(stax.Exp(), 0.0, 4.0, 1.0, 5, 8, 16)


def test_fixed_points_and_phases():
    explode = cr.fixed_point(RELU, 0.0, 2.2)
    assert explode.K_star == math.inf
    assert cr.fixed_point(TANH, 0.0, 0.5).K_star == 0.0  # ordered phase, K → 0
    fp = cr.fixed_point(TANH, 0.0, 1.5)  # chaotic phase: a stable K* > 0
    assert fp.K_star > 0 and abs(fp.chi_parallel) < 1 and fp.chi_perpendicular > 1
    assert 1.5 * gauss(lambda z: math.tanh(z) ** 2, fp.K_star) == pytest.approx(fp.K_star, 1e-9)


# ------------------------------------------------------------- recursions, second routes


@pytest.mark.parametrize(
    "layer, f, df",
    [
        (TANH, math.tanh, lambda z: 1 - math.tanh(z) ** 2),
        (GELU, gelu_np, dgelu_np),
        (stax.Erf(), math.erf, lambda z: 2 / math.sqrt(math.pi) * math.exp(-z * z)),
    ],
    ids=["tanh", "gelu", "erf"],
)
def test_susceptibilities_against_quadrature(layer, f, df):
    for k in (0.05, 0.7, 3.0):
        chi_par, chi_perp = cr.susceptibilities(layer, 1.3, k)
        ref_par = 1.3 / (2 * k * k) * gauss(lambda z, k=k: f(z) ** 2 * (z * z - k), k)
        ref_perp = 1.3 * gauss(lambda z: df(z) ** 2, k)
        assert chi_par == pytest.approx(ref_par, rel=1e-9, abs=1e-12)
        assert chi_perp == pytest.approx(ref_perp, rel=1e-9, abs=1e-12)


def test_he4_moment_is_four_k_squared_times_the_second_derivative():
    """⟨σ²He₄(z/√K)⟩_K (quadrature) = 4K² d²⟨σ²⟩_K/dK² (autodiff of GELU's closed-form dual):
    the heat equation d⟨f⟩_K/dK = ⟨f''⟩_K / 2, two independent routes."""
    act = cr.as_activation(GELU)
    with jax.enable_x64(True):
        for k in (0.3, 2.0, 9.0):
            kk = jnp.float64(k)
            d2 = jax.grad(jax.grad(act.sigma2))(kk)
            assert float(act.sigma2_he4(kk)) == pytest.approx(float(4 * k * k * d2), rel=1e-9)


def _stax_net(layer, c_b, c_w, depth):
    ws, bs = math.sqrt(c_w), math.sqrt(c_b)
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(1, W_std=ws, b_std=bs), layer]
    return stax.serial(*layers, stax.Dense(1, W_std=ws, b_std=bs))


@pytest.mark.parametrize(
    "layer",
    [GELU, pytest.param(stax.Tanh(deg=120), marks=pytest.mark.slow)],  # 120² nodes: 15 s
    ids=["gelu", "tanh"],
)
def test_kernel_and_ntk_recursions_equal_the_stax_kernel_engine(layer):
    """The last K⁽ˡ⁾ (one more layer) and Θ equal the diagonal of stax's NNGP/NTK of the same
    network in float64. GELU's dual is closed form (1e-12); for tanh the recursion uses its
    160-node half-line rule (1.5e-14 from scipy's adaptive quad at K = 2.5) and stax
    Gauss–Hermite, here with 120 nodes, 2e-9 off (1e-8; stax.Tanh()'s default 25 nodes are 1e-4
    off at these variances: tanh's poles at ±iπ/2 limit Gauss–Hermite's convergence)."""
    c_b, c_w, depth = 0.1, 1.6, 5
    x = np.array([[0.3, -1.2, 0.8, 2.0]])
    k1 = c_b + c_w * float(np.sum(x * x) / x.shape[1])
    tol = 1e-12 if layer is GELU else 1e-8
    tol_ntk = 1e-12 if layer is GELU else 1e-6  # GH-120's ⟨sech⁴⟩ is 5e-7 off
    with jax.enable_x64(True):
        k = _stax_net(layer, c_b, c_w, depth)[2](jnp.asarray(x, jnp.float64), get=("nngp", "ntk"))
        ks = cr.kernel_recursion(layer, c_b, c_w, k1, depth + 1)
        theta = cr.ntk_recursion(layer, c_b, c_w, k1, depth)
    assert ks[-1] == pytest.approx(float(k.nngp[0, 0]), rel=tol)
    assert theta[-1] == pytest.approx(float(k.ntk[0, 0]), rel=tol_ntk)


def test_vertex_closed_forms():
    n = 7.0
    v = cr.vertex_recursion(RELU, 0.0, 2.0, 1.3, 12, n)
    np.testing.assert_allclose(v.normalized * n, 5 * np.arange(12), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(v.K_correction, 0, atol=1e-12)
    lin = cr.vertex_recursion(lambda z: z, 0.0, 1.0, 1.3, 12, n)
    np.testing.assert_allclose(lin.normalized * n, 2 * np.arange(12), rtol=1e-10, atol=1e-10)
    # sympy: slopes 5 (ReLU), 2 (linear), 6(a⁴+b⁴)/(a²+b²)² − 1 (leaky)
    assert cr.scale_invariant_closed_form()["vertex_slope"] == 5
    assert cr.scale_invariant_closed_form(1, 1)["vertex_slope"] == 2
    form = cr.scale_invariant_closed_form(0.5, 1)
    assert float(form["vertex_slope"]) == pytest.approx(6 * (0.5**4 + 1) / 1.25**2 - 1)
    assert form["critical_C_W"] == pytest.approx(2 / 1.25)
    leaky = cr.vertex_recursion(stax.LeakyRelu(0.5), 0.0, 2 / 1.25, 1.0, 6, 1.0)
    np.testing.assert_allclose(leaky.normalized, float(form["vertex_slope"]) * np.arange(6))
    # the exact finite-width kurtosis agrees with the leading order to O(1/n²)
    exact = cr.scale_invariant_kurtosis(6, 1000.0)
    assert exact - 1 == pytest.approx(25 / 1000, rel=0.02)
    # unequal widths: Π (1 + 5/n_l)
    assert cr.scale_invariant_kurtosis(3, [4, 10]) == pytest.approx(2.25 * 1.5)


def test_tanh_vertex_grows_like_two_thirds_l():
    """V⁽ˡ⁾/(n K²) = (2/3) l − (5/18) ln l + O(1) at criticality (a₁ = −2, a₂ = 17/3): the
    ln-coefficient from the difference between l = 10⁴ and 10⁵ (the O(1) part cancels)."""
    v = cr.vertex_recursion(TANH, 0.0, 1.0, 1.0, 100_000, 1.0)
    f = v.normalized - (2 / 3) * np.arange(1, 100_001)
    assert (f[-1] - f[9_999]) / math.log(10) == pytest.approx(-5 / 18, abs=2e-3)
    assert v.normalized[-1] / 100_000 == pytest.approx(2 / 3, rel=1e-4)


def test_correlation_flow():
    # ReLU at criticality: 1 − ρ ≈ 9π²/(2l²) (from 1 − f(1 − ε) = ε − (2√2/3π) ε^{3/2}); the
    # correction is O(ln l / l): 1.7% at l = 2000, under 0.5% at l = 20000
    fl = cr.correlation_flow(RELU, 0.0, 2.0, 1.0, 1.0, 0.2, 20_000)
    l2eps = 20_000**2 * (1 - fl.rho[-1])
    assert l2eps == pytest.approx(9 * math.pi**2 / 2, rel=5e-3)
    np.testing.assert_allclose(fl.K11, 1.0, rtol=1e-12)
    # off criticality at a stable K* > 0: 1 − ρ shrinks by χ_⊥(K*) per layer
    c_b, c_w = 0.3, 0.5
    fp = cr.fixed_point(TANH, c_b, c_w)
    assert fp.chi_perpendicular < 1
    fl = cr.correlation_flow(TANH, c_b, c_w, fp.K_star, fp.K_star, 0.5 * fp.K_star, 14)
    eps = 1 - fl.rho  # 1e-6 by layer 13: the O(ε) nonlinearity and the roundoff are ~1e-6
    assert eps[-1] / eps[-2] == pytest.approx(fp.chi_perpendicular, rel=1e-5)


def test_ntk_variance_leading_order_formula():
    # ReLU: depth·(11·depth + 7)/(3n(depth + 1)); linear (r = 3): forward and backward
    # factors uncorrelated
    for depth in (1, 4, 9):
        expect = depth * (11 * depth + 7) / (3 * (depth + 1))
        assert cr.scale_invariant_ntk_variance(depth, 1.0) == pytest.approx(expect)
    assert cr.scale_invariant_ntk_variance(1, 10.0, 1.0, 1.0) == pytest.approx(2 * 2 / 4 / 10)


# ------------------------------------------------------------------------ Monte Carlo


@pytest.mark.parametrize(
    "method, count",
    [("gaussian", 40_000), pytest.param("dense", 4_000, marks=pytest.mark.slow)],
)
def test_relu_kurtosis_and_mean_ntk_are_exact_at_finite_width(method, count):
    """E[z⁴]/(3E[z²]²) = (1 + 5/n)^{l−1} and E[Θ] = (depth + 1)K for ReLU at any width;
    networks of width 16, both samplers."""
    depth, n = 5, 16
    exact = np.array([cr.scale_invariant_kurtosis(l, n) for l in range(1, depth + 1)])
    s = cr.sample_networks(RELU, 0.0, 2.0, 1.0, depth, n, count, key=1, method=method)
    r, se = cr.kurtosis_estimate(s)
    assert np.all(np.abs(r - exact) <= 4 * se), (r, exact, se)
    m = cr.ntk_moments_estimate(s)
    assert abs(m["mean"] - (depth + 1)) <= 4 * m["mean_se"], m
    np.testing.assert_allclose(s.m2.mean(0), 1.0, atol=4 * s.m2.std(0).max() / count**0.5)


def test_tanh_kernel_shift_and_kurtosis_follow_the_one_over_n_theory():
    """tanh at criticality, width 32, depth 4, 60 000 networks: n(E[z⁴]/(3E[z²]²) − 1) against
    the normalized vertex and n(E[z²] − K)/K against δK/K, each within 4 SE plus the next
    order, O(L/n) of the 1/n term (allowed: 25% of it at L/n = 1/8)."""
    depth, n, count = 4, 32, 60_000
    th = cr.vertex_recursion(TANH, 0.0, 1.0, 1.0, depth, n)
    s = cr.sample_networks(TANH, 0.0, 1.0, 1.0, depth, n, count, key=7)
    r, se = cr.kurtosis_estimate(s)
    assert np.all(np.abs(r - 1 - th.normalized) <= 4 * se + 0.25 * th.normalized)
    shift = s.m2.mean(0) - th.K
    shift_se = s.m2.std(0, ddof=1) / math.sqrt(count)
    assert np.all(np.abs(shift - th.K_correction) <= 4 * shift_se + 0.25 * np.abs(th.K_correction))
    # and the shift is really there: at layer 4 it is > 4 SE away from 0
    assert abs(shift[-1]) > 4 * shift_se[-1]


@pytest.mark.slow
def test_samplers_agree_in_distribution():
    """The rank-one Gaussian sampler is exact in distribution: against explicit weights
    (tanh, off criticality, with biases), means of z², z⁴ per layer and of Θ, Θ² agree
    within 4 combined SE."""
    args = (TANH, 0.2, 1.4, 0.8, 4, 12)
    a = cr.sample_networks(*args, 30_000, key=11, method="gaussian")
    b = cr.sample_networks(*args, 30_000, key=12, method="dense")
    for xa, xb in ((a.m2, b.m2), (a.m4, b.m4), (a.ntk, b.ntk), (a.ntk**2, b.ntk**2)):
        se = np.sqrt(xa.var(0) / len(xa) + xb.var(0) / len(xb))
        assert np.all(np.abs(xa.mean(0) - xb.mean(0)) <= 4 * se)


@pytest.mark.slow
def test_relu_ntk_variance_extrapolates_to_the_leading_order():
    """n·(E[Θ²]/E[Θ]² − 1) at depth 2 for n = 32 … 256 (200 000 networks each), fitted by
    a + b/n (weighted least squares): the intercept a is the 1/n coefficient, 58/9 = 6.44."""
    depth, ns = 2, np.array([32, 64, 128, 256])
    y, w = [], []
    for n in ns:
        m = cr.ntk_moments_estimate(
            cr.sample_networks(RELU, 0.0, 2.0, 1.0, depth, int(n), 200_000, key=int(n))
        )
        y.append(n * np.expm1(m["log_ratio"]))
        w.append(1 / (n * math.exp(m["log_ratio"]) * m["log_ratio_se"]) ** 2)
    design = np.c_[np.ones(len(ns)), 1 / ns] * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(design, np.asarray(y) * np.sqrt(w), rcond=None)
    cov = np.linalg.inv(design.T @ design)
    expect = cr.scale_invariant_ntk_variance(depth, 1.0)
    assert abs(coef[0] - expect) <= 4 * math.sqrt(cov[0, 0]), (coef, cov, expect)


@pytest.mark.slow  # 18 s; batch over four devices is checked by default in test_stax.py
def test_sampler_spreads_networks_over_devices():
    """With 4 host devices the chunk is sharded over the network axis and the numbers are those
    of one device (same keys, same per-network computation)."""
    code = textwrap.dedent(
        """
        import jax, json, numpy as np
        from theory.kernels import stax, criticality as cr
        assert jax.local_device_count() == 4
        s = cr.sample_networks(stax.Relu(), 0.0, 2.0, 1.0, 3, 8, 100, key=5, chunk=48)
        print(json.dumps(np.c_[s.m2, s.m4, s.ntk].tolist()))
        """
    )
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, env={**os.environ, **env}, check=True
    ).stdout
    many = np.asarray(json.loads(out.decode().strip().splitlines()[-1]))
    s = cr.sample_networks(RELU, 0.0, 2.0, 1.0, 3, 8, 100, key=5, chunk=48)
    np.testing.assert_allclose(many, np.c_[s.m2, s.m4, s.ntk], rtol=1e-5)
