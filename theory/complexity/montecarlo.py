"""Monte Carlo check of the definition of inductive-bias complexity on a torus toy task.

Boopathy et al. (2023), §3 define

    Ĩ = −log₂ P_θ( test error(θ) ≤ ε | f_θ fits the n training points ),

with θ uniform on a bounded hypothesis space. Here everything is small enough to sample:

- inputs on the torus T^m = [0, 2π)^m with the uniform test distribution;
- hypotheses f_θ(x) = Σ_j θ_j φ_j(x) over the real orthonormal Fourier basis
  {1, √2 cos(k·x), √2 sin(k·x)} with ‖k‖₂ ≤ M (one k of each ±k pair), dim Θ = d;
- θ uniform on the ball ‖θ‖ ≤ r (``hypothesis_radius``; r = ‖f‖_L² bound);
- the target is f_θ₀ with ‖θ₀‖ = ``target_norm``·r, observed at n < d uniform points.

Fitting Φθ = y (Φ: n × d) leaves the q = d − n dimensional slice of the ball centred at the
minimum-norm interpolant c with radius ρ = √(r² − ‖c‖²); θ uniform on the ball conditioned on
fitting is uniform on that slice. The test error is the mean squared error over T^m; by
orthonormality it equals ‖θ − θ₀‖², and it is measured on a uniform grid of G > 2M points
per axis, which integrates trigonometric polynomials of that degree exactly. Hence the exact
success probability is the fraction of a q-ball of radius ρ within √ε of a point at distance
s = ‖θ₀ − c‖ from its centre (`mse_success_probability`); for √ε ≤ ρ − s it is (√ε/ρ)^q.

The estimate is compared with this closed form and with the paper's bound for the torus
(`rl_inductive_bias_complexity` with m, D = 1, n, δ = 2π/M), which must lie above it.
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import betainc

from theory.complexity.measure import rl_terms

__all__ = [
    "torus_frequencies",
    "torus_features",
    "mse_success_probability",
    "TorusMonteCarlo",
    "torus_monte_carlo",
]


def torus_frequencies(m: int, max_frequency: float) -> np.ndarray:
    """Integer frequencies k ∈ Z^m with 0 < ‖k‖₂ ≤ M, one of each ±k pair; (p, m).

    The real basis built from them has d = 1 + 2p = #{k ∈ Z^m : ‖k‖ ≤ M} functions, close
    to the volume of the m-ball of radius M (the paper's count, without its factor 2).
    """
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m must be an integer >= 1, got {m!r}")
    if not np.isfinite(max_frequency) or max_frequency < 1:
        raise ValueError(f"max_frequency must be >= 1, got {max_frequency!r}")
    top = int(np.floor(max_frequency))
    grid = np.array(list(itertools.product(range(-top, top + 1), repeat=m)), dtype=np.int64)
    inside = (grid**2).sum(1) <= max_frequency**2
    # Keep k whose first non-zero coordinate is positive: one representative of ±k.
    first = np.array([row[np.flatnonzero(row)[0]] if row.any() else 0 for row in grid])
    return grid[inside & (first > 0)]


def torus_features(x: jnp.ndarray, freqs: jnp.ndarray) -> jnp.ndarray:
    """Orthonormal real Fourier features [1, √2 cos(k·x), √2 sin(k·x)]; (n, m) -> (n, 1+2p)."""
    phase = x @ freqs.T.astype(x.dtype)  # (n, p)
    root2 = jnp.sqrt(jnp.asarray(2.0, x.dtype))
    return jnp.concatenate(
        [jnp.ones((x.shape[0], 1), x.dtype), root2 * jnp.cos(phase), root2 * jnp.sin(phase)],
        axis=1,
    )


def _cap_fraction(q: int, h: np.ndarray) -> np.ndarray:
    """Fraction of a unit q-ball beyond a hyperplane at signed distance h ∈ [−1, 1]."""
    half = 0.5 * betainc(0.5 * (q + 1), 0.5, np.clip(1.0 - h**2, 0.0, 1.0))
    return np.where(h >= 0, half, 1.0 - half)


def mse_success_probability(q: int, rho: float, offset: float, error) -> np.ndarray:
    """P(‖u − θ₀‖² ≤ ε) for u uniform on a q-ball of radius ρ and ‖θ₀ − centre‖ = s.

    Closed form as the volume of the lens of two balls (radii ρ and r = √ε, centres s
    apart) divided by the q-ball volume, each side a hyperspherical cap
    V_cap(R, h)/V(R) = ½ I_{1−h²/R²}((q+1)/2, ½) (regularised incomplete beta):

        P = cap(ρ; h₁) + (r/ρ)^q cap(r; h₂),   h₁ = (s² + ρ² − r²)/(2s), h₂ = s − h₁,

    and P = (r/ρ)^q when r ≤ ρ − s, P = 1 when r ≥ ρ + s. Vectorised over ``error``.
    """
    r = np.sqrt(np.asarray(error, dtype=np.float64))
    rho, s = float(rho), float(offset)
    inside = (r / rho) ** q
    with np.errstate(divide="ignore", invalid="ignore"):
        h1 = (s**2 + rho**2 - r**2) / (2 * s) if s > 0 else np.zeros_like(r)
        h2 = s - h1
        lens = _cap_fraction(q, h1 / rho) + inside * _cap_fraction(q, np.clip(h2 / r, -1, 1))
    return np.where(r + s <= rho, inside, np.where(r >= rho + s, 1.0, np.clip(lens, 0.0, 1.0)))


class TorusMonteCarlo(NamedTuple):
    """`torus_monte_carlo`'s result; arrays are indexed like ``errors``."""

    errors: np.ndarray  # ε thresholds on the test MSE
    p_hat: np.ndarray  # Monte Carlo P(test MSE ≤ ε | fits)
    p_exact: np.ndarray  # closed form (`mse_success_probability`)
    bits_hat: np.ndarray  # −log₂ p_hat (inf where no sample succeeded)
    bits_exact: np.ndarray  # −log₂ p_exact
    bound: np.ndarray  # paper's torus formula Ĩ(m, D=1, n, δ=2π/M, ε)
    bound_exact_count: np.ndarray  # same log factor times the actual q = d − n
    dim_theta: int  # d, number of basis functions
    dim_theta_q: int  # q = d − n
    slice_radius: float  # ρ
    target_offset: float  # s = ‖θ₀ − c‖
    num_samples: int
    max_fit_residual: float  # max |f_θ(x_i) − y_i| over samples checked (interpolation)
    max_mse_identity_gap: float  # max |grid MSE − ‖θ − θ₀‖²| (orthonormality check)


@partial(jax.jit, static_argnames=("num_samples", "chunk"))
def _sample_errors(key, center, null_basis, q, rho, theta0, grid_features, num_samples, chunk):
    """Test MSE of ``num_samples`` hypotheses uniform on the slice, and ‖Δθ‖² for checking.

    ``null_basis`` is (d, d) with its first q columns spanning the null space and zeros after,
    so the compiled program depends on d only, not on n.
    """
    d = null_basis.shape[1]
    n_chunks = -(-num_samples // chunk)
    keys = jax.random.split(key, n_chunks)
    live = jnp.arange(d) < q  # (d,)

    def one_chunk(k):
        kg, ku = jax.random.split(k)
        g = jnp.where(live, jax.random.normal(kg, (chunk, d), center.dtype), 0)
        radius = jax.random.uniform(ku, (chunk, 1), center.dtype) ** (1.0 / q)
        u = g / jnp.linalg.norm(g, axis=1, keepdims=True) * radius  # uniform in unit q-ball
        theta = center + rho * u @ null_basis.T  # (chunk, d)
        delta = theta - theta0
        residual = delta @ grid_features.T  # (chunk, G^m): f_θ − f_θ₀ on the test grid
        return jnp.mean(residual**2, axis=1), jnp.sum(delta**2, axis=1)

    mse, norm2 = jax.lax.map(one_chunk, keys)
    return mse.reshape(-1)[:num_samples], norm2.reshape(-1)[:num_samples]


def torus_monte_carlo(
    key,
    *,
    m: int = 2,
    max_frequency: float = 3.0,
    n: int = 25,
    errors=(0.01, 0.03, 0.1, 0.3),
    num_samples: int = 2**20,
    hypothesis_radius: float = 1.0,
    target_norm: float = 0.5,
) -> TorusMonteCarlo:
    """Estimate −log₂ P(test MSE ≤ ε | fit) on the torus toy and compare (module docstring).

    Args ↔ symbols: ``m`` ↔ m (torus dimension), ``max_frequency`` ↔ M, ``n`` ↔ n training
    points (< d), ``errors`` ↔ ε values, ``num_samples`` hypotheses sampled,
    ``hypothesis_radius`` ↔ r (= B), ``target_norm`` ↔ ‖θ₀‖/r ∈ [0, 1). Float32 sampling;
    the geometry (pseudo-inverse, null space, closed form) is float64 numpy.
    """
    freqs = torus_frequencies(m, max_frequency)
    d = 1 + 2 * freqs.shape[0]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n < d:
        raise ValueError(f"n must be an integer in [1, d) with d = {d} basis functions, got {n!r}")
    errs = np.asarray(errors, dtype=np.float64).reshape(-1)
    if errs.size == 0 or np.any((errs <= 0) | (errs >= 1)):
        raise ValueError(f"errors must be values in (0, 1), got {errors!r}")
    if not hypothesis_radius > 0:
        raise ValueError(f"hypothesis_radius must be > 0, got {hypothesis_radius!r}")
    if not 0 <= target_norm < 1:
        raise ValueError(f"target_norm must lie in [0, 1), got {target_norm!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise TypeError(f"num_samples must be an integer, got {num_samples!r}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")

    k_x, k_t, k_s = jax.random.split(key, 3)
    r = float(hypothesis_radius)
    # Float32 draws, widened: the geometry below is float64 numpy.
    x_train = 2 * np.pi * np.asarray(jax.random.uniform(k_x, (n, m)), np.float64)  # (n, m)
    direction = np.asarray(jax.random.normal(k_t, (d,)), np.float64)
    theta0 = target_norm * r * direction / np.linalg.norm(direction)
    phase = x_train @ freqs.T  # (n, p)
    phi = np.concatenate(
        [np.ones((n, 1)), np.sqrt(2) * np.cos(phase), np.sqrt(2) * np.sin(phase)], 1
    )
    y = phi @ theta0
    _, sv, vt = np.linalg.svd(phi)  # phi: (n, d), full row rank for generic points
    if sv[-1] < 1e-10 * sv[0]:
        raise ValueError("the training points do not give n independent constraints; resample")
    null_basis = vt[n:].T  # (d, q)
    center = np.linalg.pinv(phi) @ y  # minimum-norm interpolant
    rho = float(np.sqrt(r**2 - center @ center))
    offset = float(np.linalg.norm(theta0 - center))
    q = d - n

    G = 2 * int(np.floor(max_frequency)) + 1  # > 2M: the grid integrates |f − f₀|² exactly
    axes = np.meshgrid(*[np.arange(G) * 2 * np.pi / G] * m, indexing="ij")
    grid = np.stack([a.reshape(-1) for a in axes], 1)  # (G^m, m)
    grid_features = torus_features(jnp.asarray(grid, jnp.float32), jnp.asarray(freqs))

    f32 = partial(jnp.asarray, dtype=jnp.float32)
    padded_basis = np.zeros((d, d))
    padded_basis[:, :q] = null_basis
    mse, norm2 = _sample_errors(
        k_s,
        f32(center),
        f32(padded_basis),
        f32(q),
        f32(rho),
        f32(theta0),
        grid_features,
        int(num_samples),
        min(8192, int(num_samples)),
    )
    mse, norm2 = np.asarray(mse, np.float64), np.asarray(norm2, np.float64)
    p_hat = (mse[:, None] <= errs[None, :]).mean(0)
    p_exact = mse_success_probability(q, rho, offset, errs)

    # Interpolation check on a few samples, in float64.
    rng = np.random.default_rng(0)
    u = rng.standard_normal((64, q))
    u *= (rng.uniform(size=(64, 1)) ** (1 / q)) / np.linalg.norm(u, axis=1, keepdims=True)
    fit_residual = np.abs((center + rho * u @ null_basis.T) @ phi.T - y).max()

    terms = rl_terms(m, 1, n, 2 * np.pi / max_frequency, errs)
    with np.errstate(divide="ignore"):
        bits_hat = -np.log2(p_hat)
    return TorusMonteCarlo(
        errors=errs,
        p_hat=p_hat,
        p_exact=p_exact,
        bits_hat=bits_hat,
        bits_exact=-np.log2(p_exact),
        bound=np.asarray(terms.bits, np.float64),
        bound_exact_count=q * np.asarray(terms.bits_per_dimension, np.float64),
        dim_theta=d,
        dim_theta_q=q,
        slice_radius=rho,
        target_offset=offset,
        num_samples=int(num_samples),
        max_fit_residual=float(fit_residual),
        max_mse_identity_gap=float(np.abs(mse - norm2).max()),
    )
