"""Boopathy et al. (2023), "Model-agnostic measure of generalization difficulty": the claims.

One test per claim. Closed forms are float64; the Monte Carlo uses a fixed PRNG key and a
tolerance of Z_TOL binomial standard errors, sqrt(p (1 − p) / S) for S samples.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.special import binom

import theory.complexity as tc

RTOL = 1e-10  # float64 closed form against float64 closed form
Z_TOL = 4.5  # Monte Carlo: |p̂ − p| ≤ 4.5 σ (two-sided false-alarm rate 7e-6 per point)


def _dim_harmonics(m: int, k: int) -> float:
    """Dimension of degree-k spherical harmonics on S^m: binom(m+k, m) − binom(m+k−2, m)."""
    return binom(m + k, m) - (binom(m + k - 2, m) if k >= 2 else 0.0)


@pytest.mark.parametrize("m", [1, 2, 3, 5, 8, 14])
def test_eigenfunction_count_identity(m):
    # For integer K (M² = K(K + m − 1)), E = Σ_{k≤K} dim H_k(S^m) = binom(m+K, m) +
    # binom(m+K−1, m); the Gamma-function binomial must agree at these points.
    for K in range(0, 16):
        M = np.sqrt(K * (K + m - 1)) if K > 0 else 1e-300
        K_hat, E = tc.eigenfunction_count(m, max(M, 1e-300))
        np.testing.assert_allclose(K_hat, K, atol=1e-9)
        total = sum(_dim_harmonics(m, k) for k in range(K + 1))
        np.testing.assert_allclose(E, total, rtol=1e-9)


def test_eigenfunction_count_on_s2_is_square():
    # On S² there are 2k + 1 harmonics of degree k: E = (K + 1)² for integer K.
    for K in range(1, 30):
        _, E = tc.eigenfunction_count(2, np.sqrt(K * (K + 1)))
        np.testing.assert_allclose(E, (K + 1) ** 2, rtol=1e-9)


def test_mnist_value():
    # §5 example with the inputs of the paper's code (R = 17.179045827183984,
    # δ = 2.3987084824335305; n = 60000, C = 10, m = 14, ε = 0.001): Ĩ = 1.4848e16 to the
    # five digits shown, i.e. within half a unit of the last one (3.4e-5 relative). The same
    # task with R and δ rounded to 17.1790 and 2.39871 gives 1.4847e16 (the README's example),
    # 4.5e-5 away: a rtol of 1e-4 could not tell the two apart.
    ibc = tc.inductive_bias_complexity(60000, 14, 17.179045827183984, 2.3987084824335305, 10, 1e-3)
    assert abs(ibc.bits - 1.4848e16) <= 0.00005e16, ibc.bits
    rounded = tc.inductive_bias_complexity(60000, 14, 17.1790, 2.39871, 10, 0.001)
    assert abs(rounded.bits - 1.4847e16) <= 0.00005e16, rounded.bits
    np.testing.assert_allclose(ibc.log10_bits, np.log10(ibc.bits), rtol=RTOL)
    assert tc.MNIST.ibc().bits == ibc.bits


_MNIST = dict(n=60000, m=14, radius=17.179, delta=2.3987, num_classes=10, error=1e-3)


@pytest.mark.parametrize(
    "name, values, direction",
    [
        ("n", np.geomspace(1e2, 1e12, 30), "falls"),
        ("delta", np.geomspace(0.05, 10, 30), "falls"),
        ("error", np.geomspace(1e-8, 0.5, 30), "falls"),
        # M = 2πR/δ ≈ 45 ≫ m; for m ≤ 2 dim Θ_q ≤ 0 at n = 60000 and Ĩ is clipped to 0.
        ("m", np.arange(3, 30), "rises"),
        ("num_classes", np.arange(2, 200), "rises"),
    ],
)
def test_complexity_is_monotone(name, values, direction):
    bits = tc.inductive_bias_complexity(**{**_MNIST, name: values}).log10_bits
    steps = np.diff(bits)
    assert np.all(steps < 0) if direction == "falls" else np.all(steps > 0)


def test_halving_error_adds_dim_theta_q_bits():
    for task in (*tc.IMAGE_TASKS, tc.MUJOCO_TASKS[0]):
        t = task.terms()
        halved = tc.sweep(task, "error", task.error / 2)
        # Difference of two ~1e16–1e41 numbers: rounding of each is ~1e-16 relative, so the
        # difference is exact to ~1e-16 · bits / dim Θ_q ≲ 1e-13 relative.
        np.testing.assert_allclose(halved.bits - t.bits, t.dim_theta_q, rtol=1e-9)


def test_complexity_is_polynomial_in_resolution_with_exponent_m():
    # Ĩ ∝ E · log(…) with E ~ K^m / m! and K ≈ M ∝ 1/δ: d log Ĩ / d log(1/δ) → m (plus the
    # log factor's 1/ln(…) share, < 2% at δ = 1e-8 R).
    for m in (2, 5, 10, 20):
        deltas = np.array([1e-8, 1e-9])
        logs = tc.inductive_bias_complexity(1e4, m, 1.0, deltas, 10, 0.01).log10_bits
        slope = (logs[1] - logs[0]) / (np.log10(deltas[0]) - np.log10(deltas[1]))
        assert abs(slope - m) < 0.02 * m + 0.05


def test_complexity_is_exponential_in_dimension():
    # At fixed resolution (M = 2πR/δ = 10⁴ ≫ m) log Ĩ grows linearly in m: its second
    # difference is small next to the first (≈ log₁₀ of M/m per dimension).
    m = np.arange(5, 60)
    logs = tc.inductive_bias_complexity(1e6, m, 1.0, 2 * np.pi * 1e-4, 10, 0.01).log10_bits
    first = np.diff(logs)
    assert np.all(first > 1.5)
    assert np.max(np.abs(np.diff(first))) < 0.1 * np.min(first)


def test_task_ordering():
    bits = {t.name: float(t.ibc().log10_bits) for t in tc.ALL_TASKS}
    # MNIST < CIFAR-10 < ImageNet; every image task < 20-way one-shot Omniglot.
    assert bits["MNIST"] < bits["CIFAR-10"] < bits["ImageNet"]
    assert max(bits[t.name] for t in tc.IMAGE_TASKS) < bits[tc.OMNIGLOT.name]
    # MDP < POMDP: cart-pole needs more bits with every extra observation.
    cart = [bits[t.name] for t in tc.CARTPOLE_TASKS]
    assert np.all(np.diff(cart) > 0)
    # MuJoCo: Reacher < Hopper < Half-Cheetah.
    muj = [bits[t.name] for t in tc.MUJOCO_TASKS]
    assert np.all(np.diff(muj) > 0)


# ------------------------------------------------------------------ Monte Carlo

MC_SAMPLES = 2**18
MC_ERRORS = (0.02, 0.05, 0.1, 0.3, 0.6)  # 0.6: √ε > ρ − s, the lens (partial-overlap) case


@pytest.fixture(scope="module")
def torus_mc():
    return tc.torus_monte_carlo(
        jax.random.PRNGKey(0),
        m=2,
        max_frequency=3.0,
        n=25,
        errors=MC_ERRORS,
        num_samples=MC_SAMPLES,
    )


def test_monte_carlo_matches_mse_closed_form(torus_mc):
    r = torus_mc
    assert r.dim_theta == 29 and r.dim_theta_q == 4  # #{k ∈ Z² : ‖k‖ ≤ 3} = 29, n = 25
    # The construction is what the closed form assumes: fits exactly, test MSE = ‖Δθ‖².
    assert r.max_fit_residual < 1e-10
    assert r.max_mse_identity_gap < 1e-5  # float32 sampling
    sigma = np.sqrt(r.p_exact * (1 - r.p_exact) / r.num_samples)
    assert np.all(np.abs(r.p_hat - r.p_exact) <= Z_TOL * sigma)
    assert np.all(r.p_exact * r.num_samples > 50)  # enough successes for the normal σ


def test_monte_carlo_stays_below_the_bound(torus_mc):
    r = torus_mc
    assert np.all(r.bits_hat < r.bound)
    assert np.all(r.bits_exact < r.bound_exact_count)  # even with the true count q = d − n


def test_mse_closed_form_is_a_power_law_inside():
    # Fully inside (√ε ≤ ρ − s): P = (√ε/ρ)^q, so halving ε adds exactly q/2 bits.
    p = tc.mse_success_probability(4, 0.9, 0.2, np.array([0.01, 0.005]))
    np.testing.assert_allclose(-np.log2(p[1]) + np.log2(p[0]), 2.0, rtol=RTOL)
    # Lens limits: continuity at both ends of the partial-overlap range.
    rho, s, q = 0.9, 0.2, 4
    inner, outer = (rho - s) ** 2, (rho + s) ** 2
    both = tc.mse_success_probability(q, rho, s, np.array([inner, inner * (1 + 1e-9)]))
    np.testing.assert_allclose(both[0], both[1], rtol=1e-6)
    assert tc.mse_success_probability(q, rho, s, outer * (1 - 1e-9)) > 1 - 1e-6
