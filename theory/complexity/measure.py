"""Closed forms of the inductive-bias complexity, in bits, computed in log space.

Boopathy et al. (2023), "Model-agnostic measure of generalization difficulty", ICML:

    Ĩ = −log₂ P(test error ≤ ε | hypothesis fits the n training points),

for hypotheses drawn uniformly from a space of band-limited functions on the data manifold.
The paper bounds it by (§4, Theorem 4.1 and its classification corollary)

    Ĩ = dim Θ_q · log₂( B √(D C) · L_f · W / ε ),      dim Θ_q = dim Θ − n D,

with the data modelled as C copies (one per class) of an m-sphere of radius R, hypotheses
band-limited to spatial resolution δ (§5.1):

    M = 2πR/δ                          (largest frequency)
    K = (√((m−1)² + 4M²) − (m−1)) / 2  (largest eigenvalue index, K(K+m−1) = M²)
    E = binom(m+K, m) + binom(m+K−1, m)    (spherical-harmonic count, Gamma binomial)
    W = √(m/6) · (C |S^m| R^m / n)^(1/m),  |S^m| = 2π^((m+1)/2) / Γ((m+1)/2)
    L_f = K √D / R,   dim Θ = 2 D C E.

Symbols ↔ arguments:

    n ↔ ``n``, m ↔ ``m``, R ↔ ``radius``, δ ↔ ``delta``, C ↔ ``num_classes``,
    ε ↔ ``error``, B ↔ ``output_bound``, D = C − 1 (outputs).

Everything is float64 numpy/scipy (the values reach 1e145 and overflow float32); `E`,
`dim Θ` and `Ĩ` are carried as natural logarithms and exponentiated only at the end, so
`log10_bits` stays finite even where `bits` overflows float64 to ``inf``. All functions
broadcast over array arguments, which is how the sweeps are computed.

When the task is so small that dim Θ_q ≤ 0 (more constraints than parameters), or the log
ratio is negative (every hypothesis already generalises), the paper's expression is negative
and meaningless as a bit count: `bits` is clipped to 0 (``log10_bits = -inf``) and
`ComplexityTerms.clipped` says so; the raw factors stay available in the breakdown.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import gammaln

__all__ = [
    "IBC",
    "ComplexityTerms",
    "eigenfunction_count",
    "log_sphere_area",
    "log_ball_volume",
    "classification_terms",
    "inductive_bias_complexity",
    "rl_terms",
    "rl_inductive_bias_complexity",
    "meta_terms",
    "meta_inductive_bias_complexity",
]

_LN2 = np.log(2.0)
_LN10 = np.log(10.0)


class IBC(NamedTuple):
    """Inductive-bias complexity Ĩ in bits and its base-10 logarithm (float64 arrays)."""

    bits: np.ndarray  # Ĩ, inf where it overflows float64, 0 where clipped
    log10_bits: np.ndarray  # log₁₀ Ĩ, -inf where clipped


class ComplexityTerms(NamedTuple):
    """The factors of Ĩ = dim Θ_q · log₂(B √(D C) L_f W / ε), for plots and explanation.

    Counts that overflow float64 are also given as log₁₀ (``log10_*``).
    """

    max_frequency: np.ndarray  # M
    K: np.ndarray  # largest (real) eigenvalue index
    log10_E: np.ndarray  # log₁₀ of the eigenfunction count E per manifold copy and output
    W: np.ndarray  # Wasserstein-distance bound between training and test distributions
    L_f: np.ndarray  # Lipschitz constant of the band-limited hypotheses
    log10_dim_theta: np.ndarray  # log₁₀ dim Θ
    log10_dim_theta_q: np.ndarray  # log₁₀ dim Θ_q (nan where dim Θ_q ≤ 0)
    bits_per_dimension: np.ndarray  # log₂(B √(D C) L_f W / ε)
    bits: np.ndarray  # Ĩ (clipped at 0)
    log10_bits: np.ndarray  # log₁₀ Ĩ
    clipped: np.ndarray  # True where dim Θ_q ≤ 0 or the log ratio ≤ 0

    @property
    def E(self) -> np.ndarray:
        return 10.0**self.log10_E

    @property
    def dim_theta_q(self) -> np.ndarray:
        return np.where(np.isnan(self.log10_dim_theta_q), 0.0, 10.0**self.log10_dim_theta_q)

    def ibc(self) -> IBC:
        return IBC(self.bits, self.log10_bits)


# --------------------------------------------------------------------- validation


def _as_float(name: str, value, *, positive: bool = True, integer: bool = False) -> np.ndarray:
    """float64 array of ``value``; ValueError/TypeError naming ``name`` when out of range."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a real number or array, got {type(value).__name__}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number or array, got {value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and np.any(arr <= 0):
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if integer and np.any(arr != np.round(arr)):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return arr


def _check_n(n) -> np.ndarray:
    arr = _as_float("n", n, positive=False)
    if np.any(arr < 1):
        raise ValueError(f"n (number of training points) must be >= 1, got {n!r}")
    return arr


def _check_error(error) -> np.ndarray:
    arr = _as_float("error", error, positive=False)
    if np.any((arr <= 0) | (arr >= 1)):
        raise ValueError(f"error (target error ε) must lie in (0, 1), got {error!r}")
    return arr


# ------------------------------------------------------------------ building blocks


def _log_binom(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ln binom(a, b) = ln Γ(a+1) − ln Γ(b+1) − ln Γ(a−b+1), for real a ≥ b − 1 + tiny."""
    return gammaln(a + 1.0) - gammaln(b + 1.0) - gammaln(a - b + 1.0)


def _eigen_K(m: np.ndarray, max_frequency: np.ndarray) -> np.ndarray:
    # The Laplace–Beltrami eigenvalue of degree-k harmonics on the unit m-sphere is
    # k(k+m−1); band-limiting to frequency M keeps k(k+m−1) ≤ M², solved for real K.
    # For m > 1 written as 2M² / (√(...) + (m−1)) to avoid cancellation when M ≪ m.
    root = np.sqrt((m - 1.0) ** 2 + 4.0 * max_frequency**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        stable = 2.0 * max_frequency**2 / (root + (m - 1.0))
    return np.where(m > 1, stable, 0.5 * (root - (m - 1.0)))


def _log_E(m: np.ndarray, K: np.ndarray) -> np.ndarray:
    # E = binom(m+K, m) + binom(m+K−1, m), in log space (logaddexp).
    return np.logaddexp(_log_binom(m + K, m), _log_binom(m + K - 1.0, m))


def eigenfunction_count(m, max_frequency) -> tuple[np.ndarray, np.ndarray]:
    """(K, E): spherical-harmonic count on S^m up to frequency M (Boopathy et al. 2023, §5.1).

        K = (√((m−1)² + 4M²) − (m−1)) / 2,   E = binom(m+K, m) + binom(m+K−1, m).

    For integer K, E = Σ_{k≤K} [binom(m+k, m) − binom(m+k−2, m)], the number of degree-≤K
    harmonics; for real K the binomials are Gamma-function ones. Overflows float64 for
    large m — use `classification_terms(...).log10_E` there.

    Args ↔ symbols: ``m`` ↔ m (sphere dimension), ``max_frequency`` ↔ M.
    """
    m = _as_float("m", m)
    M = _as_float("max_frequency", max_frequency)
    K = _eigen_K(m, M)
    with np.errstate(over="ignore"):
        return K, np.exp(_log_E(m, K))


def log_sphere_area(m) -> np.ndarray:
    """ln |S^m| = ln(2 π^((m+1)/2) / Γ((m+1)/2)), the area of the unit m-sphere in R^(m+1)."""
    m = _as_float("m", m)
    return _LN2 + 0.5 * (m + 1.0) * np.log(np.pi) - gammaln(0.5 * (m + 1.0))


def log_ball_volume(m, radius) -> np.ndarray:
    """ln(π^(m/2) r^m / Γ(m/2 + 1)), the volume of the m-ball of radius r."""
    m = _as_float("m", m)
    r = _as_float("radius", radius)
    return 0.5 * m * np.log(np.pi) + m * np.log(r) - gammaln(0.5 * m + 1.0)


def _assemble(M, K, log_dim_theta, log_nD, log_ratio_e, W, L_f) -> ComplexityTerms:
    """Ĩ = dim Θ_q · log₂(ratio) from natural logs, with the clipping described above."""
    # ln dim Θ_q = ln dim Θ + ln(1 − nD/dim Θ); nan where dim Θ_q ≤ 0.
    frac = log_nD - log_dim_theta  # ln(nD / dim Θ)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_dq = np.where(frac < 0, log_dim_theta + np.log1p(-np.exp(np.minimum(frac, 0))), np.nan)
    bits_per_dim = log_ratio_e / _LN2
    clipped = np.isnan(log_dq) | (bits_per_dim <= 0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        log_bits = np.where(clipped, -np.inf, log_dq + np.log(np.where(clipped, 1.0, bits_per_dim)))
        bits = np.where(clipped, 0.0, np.exp(log_bits))
    return ComplexityTerms(
        max_frequency=np.asarray(M, dtype=np.float64),
        K=np.asarray(K, dtype=np.float64),
        log10_E=np.asarray(np.nan),  # filled by the caller
        W=np.asarray(W, dtype=np.float64),
        L_f=np.asarray(L_f, dtype=np.float64),
        log10_dim_theta=log_dim_theta / _LN10,
        log10_dim_theta_q=log_dq / _LN10,
        bits_per_dimension=bits_per_dim,
        bits=bits,
        log10_bits=log_bits / _LN10,
        clipped=clipped,
    )


def _general_terms(n, m, R, delta, error, *, log_C, log_D, B) -> ComplexityTerms:
    """The classification formula with C manifold copies and D outputs given as logs."""
    M = 2.0 * np.pi * R / delta
    K = _eigen_K(m, M)
    log_E = _log_E(m, K)
    log_W = 0.5 * np.log(m / 6.0) + (log_C + log_sphere_area(m) + m * np.log(R) - np.log(n)) / m
    log_Lf = np.log(K) + 0.5 * log_D - np.log(R)
    log_dim_theta = _LN2 + log_D + log_C + log_E  # dim Θ = 2 D C E
    log_ratio = np.log(B) + 0.5 * (log_D + log_C) + log_Lf + log_W - np.log(error)
    terms = _assemble(
        M, K, log_dim_theta, np.log(n) + log_D, log_ratio, np.exp(log_W), np.exp(log_Lf)
    )
    return terms._replace(log10_E=log_E / _LN10)


# ------------------------------------------------------------------ classification


def classification_terms(
    n, m, radius, delta, num_classes, error, output_bound=1.0
) -> ComplexityTerms:
    """Term-by-term inductive-bias complexity of C-way classification.

    Boopathy et al. (2023), §5.1 (the data manifold is C copies of an m-sphere of radius R,
    one per class, with D = C − 1 outputs):

        Ĩ = (2 D C E − n D) · log₂( B √(D C) · (K √D / R) · W / ε )

    with M, K, E, W as in the module docstring.

    Args ↔ symbols:
        n ↔ n, number of training points (≥ 1).
        m ↔ m, intrinsic dimension of the data (> 0; need not be an integer).
        radius ↔ R, largest training-point norm (> 0).
        delta ↔ δ, resolution: smallest distance between classes (> 0).
        num_classes ↔ C (a whole number ≥ 2).
        error ↔ ε, target test error, in (0, 1).
        output_bound ↔ B, bound on the hypotheses' outputs (> 0).

    All arguments broadcast against each other. Returns `ComplexityTerms` (float64).
    """
    n = _check_n(n)
    m = _as_float("m", m)
    R = _as_float("radius", radius)
    delta = _as_float("delta", delta)
    C = _as_float("num_classes", num_classes, integer=True)
    if np.any(C < 2):
        raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
    error = _check_error(error)
    B = _as_float("output_bound", output_bound)
    return _general_terms(n, m, R, delta, error, log_C=np.log(C), log_D=np.log(C - 1.0), B=B)


def inductive_bias_complexity(n, m, radius, delta, num_classes, error, output_bound=1.0) -> IBC:
    """Ĩ in bits for C-way classification (Boopathy et al. 2023, §5.1); see `classification_terms`.

    Example (MNIST, §6): n = 60000, m = 14, R = 17.179, δ = 2.3987, C = 10, ε = 0.001
    gives Ĩ ≈ 1.4848e16 bits.
    """
    return classification_terms(n, m, radius, delta, num_classes, error, output_bound).ibc()


# ---------------------------------------------------------- reinforcement learning


def rl_terms(m, action_dim, n, delta, error) -> ComplexityTerms:
    """Term-by-term Ĩ of a policy on an m-torus observation space (Boopathy et al. 2023, §5.2).

    Observations live on a torus of side 2π; policies are D-dimensional and band-limited to
    Fourier modes |k| ≤ M = 2π/δ, whose count is the volume of the m-ball of radius M
    (two real coefficients per mode and output: dim Θ = 2 D π^(m/2) M^m / Γ(m/2+1)).
    With W = 2π √(m/6) n^(−1/m), L_f = M √D and B = 1:

        Ĩ = D (2 π^(m/2) (2π/δ)^m / Γ(m/2+1) − n) · log₂( 4π²/√6 · D √m / (δ n^(1/m) ε) ).

    Args ↔ symbols: ``m`` ↔ m (observation dimension), ``action_dim`` ↔ D, ``n`` ↔ n
    (observations seen), ``delta`` ↔ δ (spatial resolution), ``error`` ↔ ε.
    """
    m = _as_float("m", m)
    D = _as_float("action_dim", action_dim)
    n = _check_n(n)
    delta = _as_float("delta", delta)
    error = _check_error(error)
    M = 2.0 * np.pi / delta
    log_W = np.log(2.0 * np.pi) + 0.5 * np.log(m / 6.0) - np.log(n) / m
    log_Lf = np.log(M) + 0.5 * np.log(D)
    log_dim_theta = np.log(D) + _LN2 + log_ball_volume(m, M)
    log_ratio = 0.5 * np.log(D) + log_Lf + log_W - np.log(error)  # B = 1, C = 1
    terms = _assemble(
        M, M, log_dim_theta, np.log(n) + np.log(D), log_ratio, np.exp(log_W), np.exp(log_Lf)
    )
    # "E" here is the Fourier-mode count per output: half of dim Θ / D.
    return terms._replace(log10_E=log_ball_volume(m, M) / _LN10)


def rl_inductive_bias_complexity(m, action_dim, n, delta, error) -> IBC:
    """Ĩ in bits of an RL task on an m-torus (Boopathy et al. 2023, §5.2); see `rl_terms`.

    The simplified cart-pole with T observations is m = 2T, D = 1, n = 10⁴, δ = ε = 10⁻³.
    """
    return rl_terms(m, action_dim, n, delta, error).ibc()


# ------------------------------------------------------------------- meta-learning


def meta_terms(n, m_within, m_across, radius, delta, error, ways=20) -> ComplexityTerms:
    """Term-by-term Ĩ of N-way one-shot meta-learning (Boopathy et al. 2023, §5.3, Omniglot).

    The meta-learner maps a support set of N images to an N-way classifier. The output is
    that classifier's parameter vector, of dimension D = 2 N (N−1) E(m₀, 2πR/δ) (the image
    classification space with C = N, D = N − 1); the input is a support set on a manifold of
    dimension m₁ + (N−1) m₀ and radius R√N; outputs are bounded by B = √(N(N−1)); C = 1:

        Ĩ = Ĩ_classification(n, m₁ + (N−1) m₀, R√N, δ, C = 1, D, B = √(N(N−1)), ε).

    Args ↔ symbols: ``n`` ↔ n (training episodes; may exceed 1e38), ``m_within`` ↔ m₀
    (dimension of images within an alphabet), ``m_across`` ↔ m₁ (across alphabets),
    ``radius`` ↔ R, ``delta`` ↔ δ, ``error`` ↔ ε, ``ways`` ↔ N (whole number ≥ 2).
    """
    n = _check_n(n)
    m0 = _as_float("m_within", m_within)
    m1 = _as_float("m_across", m_across)
    R = _as_float("radius", radius)
    delta = _as_float("delta", delta)
    error = _check_error(error)
    N = _as_float("ways", ways, integer=True)
    if np.any(N < 2):
        raise ValueError(f"ways must be >= 2, got {ways!r}")
    log_E0 = _log_E(m0, _eigen_K(m0, 2.0 * np.pi * R / delta))
    log_D = _LN2 + np.log(N) + np.log(N - 1.0) + log_E0
    return _general_terms(
        n,
        m1 + (N - 1.0) * m0,
        R * np.sqrt(N),
        delta,
        error,
        log_C=np.zeros_like(log_D),
        log_D=log_D,
        B=np.sqrt(N * (N - 1.0)),
    )


def meta_inductive_bias_complexity(n, m_within, m_across, radius, delta, error, ways=20) -> IBC:
    """Ĩ in bits of N-way one-shot meta-learning (Boopathy et al. 2023, §5.3); see `meta_terms`."""
    return meta_terms(n, m_within, m_across, radius, delta, error, ways).ibc()
