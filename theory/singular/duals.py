r"""Normalised duals on the sphere and the classifier their depth limit becomes.

Radhakrishnan, Belkin & Uhler (2023), "Wide and deep neural networks achieve consistency for
classification", PNAS 120(14), §2–3. Write an activation in the orthonormal probabilists'
Hermite basis, φ = Σᵢ aᵢ hᵢ with hᵢ = Heᵢ/√(i!), normalised so that Σᵢ aᵢ² = E[φ(u)²] = 1
(u ~ N(0, 1)). For inputs on the unit sphere, one infinitely wide layer maps the correlation
ξ = xᵀz to the *dual*

    φ̌(ξ) = E[φ(u) φ(v)] = Σᵢ aᵢ² ξⁱ,        (u, v) ~ N(0, [[1, ξ], [ξ, 1]])      (Mehler)

and φ̌(1) = 1 keeps every layer on the sphere. Three numbers decide the depth limit:

    a₀² = φ̌(0),     c = φ̌'(0) = a₁²,     λ = φ̌'(1) = Σᵢ i aᵢ².

- a₀ ≠ 0: φ̌ has an attracting fixed point ξ* ∈ (0, 1); every off-diagonal kernel entry tends
  to ξ* and the interpolating classifier becomes **majority vote**;
- a₀ = a₁ = 0: φ̌^{∘L} → 0 super-exponentially, the largest correlation wins: **1-nearest
  neighbour**;
- a₀ = 0, a₁ ≠ 0, φ nonlinear (c < 1 < λ): φ̌^{∘L}(ξ) ≈ c^L Φ(ξ) with Φ the Koenigs function
  of the attracting fixed point 0, and Φ(1 − ε) ≍ ε^(−α/2) as ε → 0 with

      α = 2 ln(1/c) / ln λ,

  i.e. Φ is a **singular kernel** ‖x − z‖^(−α) (‖x − z‖² = 2ε on the sphere). The classifier
  is Nadaraya–Watson with that kernel; it is Bayes-consistent when α equals the intrinsic
  dimension m of the data (m = d − 1 on S^(d−1)), i.e. c = λ^(−m/2) — Devroye, Györfi &
  Krzyżak's Hilbert kernel estimate.
- a₁ = 1 (φ linear, φ̌(ξ) = ξ): the kernel is xᵀz at every depth; no limit (kind ``'linear'``).

The closed-form duals (ReLU, erf, sine, monomials) are those of `theory.kernels.dual`,
normalised on the sphere by `theory.kernels.dual.normalised`; this module adds what the
depth limit needs: c, λ, α, the Taylor coefficients at 0 (for the Koenigs series) and an
accurate *gap* g(ε) = 1 − φ̌(1 − ε) (ε coordinates near the repelling fixed point 1, where
1 − φ̌(ξ) computed directly loses all digits).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.special
from numpy.polynomial import hermite_e

from theory.kernels import dual as kdual

KINDS = ("majority_vote", "nearest_neighbor", "singular", "linear")

# |a₀|² or a₁² below this count as zero when classifying a dual (coefficients from
# quadrature carry ~1e-15 absolute error).
_ZERO = 0.0


class Dual:
    r"""A normalised dual φ̌ on [−1, 1] with φ̌(1) = 1, and the activation it comes from.

    Attributes: ``c = φ̌'(0)``, ``lam = φ̌'(1)``, ``a0sq = φ̌(0)``, ``kind`` (one of
    ``'majority_vote' | 'nearest_neighbor' | 'singular' | 'linear'``), ``alpha`` (the
    singular exponent 2 ln(1/c)/ln λ, None unless singular), ``parity`` (``'odd'``,
    ``'even'`` or None: an odd dual is also singular at ξ = −1, with Φ(−ξ) = −Φ(ξ)).

    Methods: ``__call__(xi)`` = φ̌(ξ), ``derivative(xi)`` = φ̌'(ξ), ``gap(eps)`` =
    1 − φ̌(1 − ε) evaluated without cancellation, ``activation(x)`` = φ(x) with E[φ(u)²] = 1.
    They take and return ``jax.Array`` (float64 when x64 is enabled) and can be jitted.
    """

    def __init__(
        self,
        name: str,
        fn: Callable,
        derivative: Callable,
        gap: Callable,
        activation: Callable,
        *,
        a0sq: float,
        c: float,
        lam: float,
        taylor0: Sequence[float],
        curvature1: float | None,
        parity: str | None,
        weights: np.ndarray | None = None,
        key: tuple | None = None,
    ):
        self.name = name
        # equal keys ⇔ equal duals: caches (Koenigs tables, compiled kernels) are shared
        self.key = key if key is not None else (name, id(self))
        self._fn, self._derivative, self._gap, self._activation = fn, derivative, gap, activation
        self.a0sq, self.c, self.lam = float(a0sq), float(c), float(lam)
        # φ̌(ξ) = d₀ + d₁ξ + d₂ξ² + d₃ξ³ + O(ξ⁴) near 0 (Koenigs series), φ̌''(1) (linearizer at 1)
        self.taylor0 = tuple(float(t) for t in taylor0)
        self.curvature1 = None if curvature1 is None else float(curvature1)
        self.parity = parity
        self.weights = None if weights is None else np.asarray(weights, np.float64)
        for attr in ("a0sq", "c", "lam"):
            if not math.isfinite(getattr(self, attr)):
                raise ValueError(f"dual {name!r}: {attr} is not finite")

    def __reduce__(self):
        # rebuilt by its factory (the closures inside do not pickle)
        if getattr(self, "_origin", None) is None:
            raise TypeError(f"dual {self.name!r} was not made by a factory and cannot be pickled")
        return self._origin

    def __eq__(self, other) -> bool:
        return isinstance(other, Dual) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    # ---------------------------------------------------------------- evaluation
    def __call__(self, xi):
        return self._fn(jnp.asarray(xi))

    def derivative(self, xi):
        return self._derivative(jnp.asarray(xi))

    def gap(self, eps):
        """g(ε) = 1 − φ̌(1 − ε), accurate to a few ulps of g even for ε ≪ 1e-16."""
        return self._gap(jnp.asarray(eps))

    def activation(self, x):
        return self._activation(jnp.asarray(x))

    # ---------------------------------------------------------------- taxonomy
    @property
    def kind(self) -> str:
        if self.a0sq > _ZERO:
            return "majority_vote"
        if self.c <= _ZERO:
            return "nearest_neighbor"
        if self.lam - self.c <= 1e-12:
            return "linear"
        return "singular"

    @property
    def alpha(self) -> float | None:
        if self.kind != "singular":
            return None
        return 2 * math.log(1 / self.c) / math.log(self.lam)

    def __repr__(self) -> str:
        extra = f", alpha={self.alpha:.6g}" if self.alpha is not None else ""
        return f"Dual({self.name!r}, kind={self.kind!r}, c={self.c:.6g}, lam={self.lam:.6g}{extra})"


# -------------------------------------------------------------------- power series


def _power_series_dual(name: str, weights: np.ndarray, activation: Callable) -> Dual:
    """φ̌(ξ) = Σ wᵢ ξⁱ with wᵢ = aᵢ² ≥ 0, Σ wᵢ = 1 (Horner); gap −Σ wᵢ expm1(i log1p(−ε))."""
    w = np.asarray(weights, np.float64)
    deg = len(w) - 1
    dw = w[1:] * np.arange(1, deg + 1)
    nz = np.nonzero(w)[0]
    if np.all(nz % 2 == 1):
        parity = "odd"
    elif np.all(nz % 2 == 0):
        parity = "even"
    else:
        parity = None

    def horner(coef, xi):
        out = jnp.full_like(xi, coef[-1])
        for a in coef[-2::-1]:
            out = out * xi + a
        return out

    def fn(xi):
        return horner(w, xi)

    def derivative(xi):
        return horner(dw, xi) if deg > 0 else jnp.zeros_like(xi)

    def gap(eps):
        # 1 − Σ wᵢ(1 − ε)ⁱ = −Σ_{i≥1} wᵢ expm1(i log1p(−ε)) (Σ wᵢ = 1); direct beyond ε = 1/2
        near = eps < 0.5
        log1m = jnp.log1p(-jnp.where(near, eps, 0.0))
        out = jnp.zeros_like(eps)
        for i in nz:
            if i > 0:
                out = out - w[i] * jnp.expm1(i * log1m)
        return jnp.where(near, out, 1 - horner(w, 1 - eps))

    taylor = [w[i] if i <= deg else 0.0 for i in range(4)]
    curv1 = float(np.sum(w * np.arange(deg + 1) * (np.arange(deg + 1) - 1)))
    return Dual(
        name,
        fn,
        derivative,
        gap,
        activation,
        a0sq=w[0],
        c=w[1] if deg >= 1 else 0.0,
        lam=float(dw.sum()),
        taylor0=taylor,
        curvature1=curv1,
        parity=parity,
        weights=w,
        key=("power series", tuple(w.tolist())),
    )


def _check_coefficients(coeffs, name: str) -> np.ndarray:
    a = np.asarray(coeffs, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {a}")
    return a


def hermite_dual(coeffs: Sequence[float], normalize: bool = False) -> Dual:
    r"""The dual of φ = Σᵢ aᵢ Heᵢ/√(i!) (``coeffs`` = a₀, a₁, …): φ̌(ξ) = Σᵢ aᵢ² ξⁱ.

    The theory needs Σ aᵢ² = E[φ²] = 1; a ValueError says so unless ``normalize=True``,
    which divides the aᵢ by √(Σ aᵢ²).
    """
    a = _check_coefficients(coeffs, "coeffs")
    norm = float(np.sum(a * a))
    if norm == 0:
        raise ValueError("coeffs: all Hermite coefficients are zero (φ = 0 has no dual)")
    if abs(norm - 1) > 1e-12:
        if not normalize:
            raise ValueError(
                f"coeffs: Σ aᵢ² = {norm:.17g} ≠ 1; normalise them or pass normalize=True"
            )
        a = a / math.sqrt(norm)
    w = a * a
    d = polynomial_dual(w / w.sum())
    poly = a * np.exp(-0.5 * scipy.special.gammaln(np.arange(a.size) + 1.0))
    # the signs of the aᵢ matter for φ, not for φ̌
    d._activation = lambda x: jnp.asarray(hermite_e.hermeval(np.asarray(x, np.float64), poly))
    d.name = "hermite" + d.name[4:]
    d._origin = (hermite_dual, (tuple(a.tolist()), False))
    return d


def polynomial_dual(weights: Sequence[float]) -> Dual:
    r"""The dual φ̌(ξ) = Σᵢ wᵢ ξⁱ given by its power series (wᵢ = aᵢ² ≥ 0, Σ wᵢ = 1, kept
    exactly as given): the activation is Σᵢ √wᵢ Heᵢ/√(i!) (any signs of aᵢ give this dual)."""
    w = _check_coefficients(weights, "weights")
    if np.any(w < 0):
        raise ValueError(f"weights: a dual's power-series coefficients aᵢ² must be ≥ 0, got {w}")
    if abs(w.sum() - 1) > 1e-12:
        raise ValueError(f"weights: Σ wᵢ = φ̌(1) must be 1, got {w.sum():.17g}")
    poly = np.sqrt(w) * np.exp(-0.5 * scipy.special.gammaln(np.arange(w.size) + 1.0))

    def activation(x):
        return jnp.asarray(hermite_e.hermeval(np.asarray(x, np.float64), poly))

    terms = " + ".join(f"{v:.4g}ξ^{i}" for i, v in enumerate(w) if v != 0)
    d = _power_series_dual(f"dual[{terms}]", w, activation)
    d._origin = (polynomial_dual, (tuple(w.tolist()),))
    return d


def monomial_dual(k: int) -> Dual:
    r"""φ(x) = x^k / √((2k−1)!!): x^k = Σⱼ k!/(2ʲ j! (k−2j)!) He_{k−2j}(x), so the dual is
    a polynomial of degree k with only the powers of the parity of k. Odd k ≥ 3: singular;
    even k: majority vote (a₀² = ((k−1)!!)²/(2k−1)!!); k = 1: linear."""
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be an integer ≥ 1, got {k!r}")
    k = int(k)
    a = np.zeros(k + 1)
    for j in range(k // 2 + 1):
        m = k - 2 * j
        a[m] = math.factorial(k) / (2**j * math.factorial(j) * math.factorial(m))
        a[m] *= math.sqrt(math.factorial(m))
    d = hermite_dual(a, normalize=True)
    d.name = f"monomial[{k}]"
    d._origin = (monomial_dual, (k,))
    return d


# -------------------------------------------------------------------- closed forms


def relu_dual() -> Dual:
    r"""φ(x) = √2 max(x, 0): φ̌(ξ) = (√(1 − ξ²) + (π − arccos ξ) ξ)/π (Cho & Saul 2009),
    φ̌'(ξ) = (π − arccos ξ)/π. a₀² = 1/π ≠ 0: majority vote, but λ = φ̌'(1) = 1, so 1 is
    neutral rather than repelling and the limit needs depths of order 10⁴–10⁵."""
    pair = kdual.abrelu(0.0, 1.0)
    fn = kdual.normalised(pair)

    def derivative(xi):
        return (math.pi - jnp.arccos(jnp.clip(xi, -1, 1))) / math.pi

    def gap(eps):
        # θ = arccos(1 − ε) = 2 arcsin(√(ε/2));  1 − φ̌ = (θ − sin θ + (π − θ) ε)/π
        theta = 2 * jnp.arcsin(jnp.sqrt(jnp.clip(eps, 0, 2) / 2))
        t2 = theta * theta
        series = theta * t2 / 6 * (1 - t2 / 20 * (1 - t2 / 42 * (1 - t2 / 72)))
        tms = jnp.where(theta < 0.1, series, theta - jnp.sin(theta))
        return (tms + (math.pi - theta) * eps) / math.pi

    def activation(x):
        return math.sqrt(2) * jnp.maximum(x, 0)

    d = Dual(
        "relu",
        fn,
        derivative,
        gap,
        activation,
        a0sq=1 / math.pi,
        c=0.5,
        lam=1.0,
        taylor0=(1 / math.pi, 0.5, 1 / (2 * math.pi), 0.0),
        curvature1=None,
        parity=None,
        key=("relu",),
    )
    d._origin = (relu_dual, ())
    return d


def erf_dual() -> Dual:
    r"""φ(x) = erf(x)/√A, A = (2/π) arcsin(2/3): φ̌(ξ) = arcsin(2ξ/3)/arcsin(2/3)
    (Williams 1997). Odd, singular: c = (2/3)/arcsin(2/3), λ = (2/√5)/arcsin(2/3),
    α = 2 ln(1/c)/ln λ ≈ 0.888."""
    pair = kdual.erf()
    fn = kdual.normalised(pair)
    s = math.asin(2 / 3)

    def derivative(xi):
        return (2 / 3) / jnp.sqrt(1 - (2 * xi / 3) ** 2) / s

    def gap(eps):
        # arcsin u − arcsin v = arcsin((u² − v²)/(u√(1−v²) + v√(1−u²))), u = 2/3, v = u(1−ε)
        u = 2 / 3
        v = u * (1 - eps)
        num = u * u * eps * (2 - eps)
        den = u * jnp.sqrt(1 - v * v) + v * math.sqrt(1 - u * u)
        return jnp.arcsin(num / den) / s

    def activation(x):
        return jax.scipy.special.erf(x) / math.sqrt(2 / math.pi * s)

    d = Dual(
        "erf",
        fn,
        derivative,
        gap,
        activation,
        a0sq=0.0,
        c=(2 / 3) / s,
        lam=(2 / 3) / math.sqrt(5 / 9) / s,
        taylor0=(0.0, (2 / 3) / s, 0.0, (2 / 3) ** 3 / 6 / s),
        curvature1=(2 / 3) * (4 / 9) * (5 / 9) ** -1.5 / s,
        parity="odd",
        key=("erf",),
    )
    d._origin = (erf_dual, ())
    return d


def sine_dual(a: float) -> Dual:
    r"""φ(x) = sin(√a x)/√(e^(−a) sinh a): φ̌(ξ) = sinh(aξ)/sinh(a) (``theory.kernels.dual.sin``
    with b = √a, normalised). Odd, singular with c = a/sinh a, λ = a coth a,

        α(a) = 2 ln(sinh(a)/a) / ln(a coth a),

    increasing from 1 (a → 0) to ∞, so every α > 1 has one a (`consistent_dual`)."""
    a = float(a)
    if not (math.isfinite(a) and a > 0):
        raise ValueError(f"a must be a positive finite number, got {a!r}")
    if a > 700:
        raise ValueError(f"a = {a} overflows sinh in float64; use a ≤ 700 (α ≤ ~190)")
    pair = kdual.sin(b=math.sqrt(a))
    fn = kdual.normalised(pair)
    sh = math.sinh(a)

    def derivative(xi):
        return a * jnp.cosh(a * xi) / sh

    def gap(eps):
        # sinh a − sinh(a − aε) = 2 cosh(a − aε/2) sinh(aε/2)
        return 2 * jnp.cosh(a - a * eps / 2) * jnp.sinh(a * eps / 2) / sh

    def activation(x):
        return jnp.sin(math.sqrt(a) * x) / math.sqrt(math.exp(-a) * sh)

    d = Dual(
        f"sine[a={a:.6g}]",
        fn,
        derivative,
        gap,
        activation,
        a0sq=0.0,
        c=a / sh,
        lam=a / math.tanh(a),
        taylor0=(0.0, a / sh, 0.0, a**3 / 6 / sh),
        curvature1=a * a,
        parity="odd",
        key=("sine", a),
    )
    d._origin = (sine_dual, (a,))
    return d


# -------------------------------------------------------------------- from an activation


def activation_dual(fn: Callable, degree: int = 30, nodes: int = 200) -> Dual:
    r"""The dual of any activation through its Hermite coefficients
    aᵢ = E[φ(u) Heᵢ(u)]/√(i!) (`theory.kernels.dual.hermite_coefficients`, Gauss quadrature),
    truncated at ``degree`` and normalised. Raises when the truncation leaves more than 1e-6
    of E[φ²] unexplained (raise ``degree``)."""
    a, residual = kdual.hermite_coefficients(fn, degree, nodes)
    if residual > 1e-6:
        raise ValueError(
            f"degree: the first {degree + 1} Hermite coefficients leave {residual:.2e} of E[φ²]"
            " unexplained; raise degree"
        )
    a = np.where(np.abs(a) < 1e-14 * np.max(np.abs(a)), 0.0, a)
    return hermite_dual(a, normalize=True)


# -------------------------------------------------------------------- consistency


def sine_alpha(a):
    """α(a) = 2 ln(sinh(a)/a)/ln(a coth a) of `sine_dual` (vectorised, float64)."""
    a = np.asarray(a, np.float64)
    small = a < 0.5
    t = np.where(small, a, 0.5) ** 2
    # series of sinh(a)/a − 1 and a·coth(a) − 1 below a = ½ (truncation < 1e-17 relative)
    s_small = t / 6 * (1 + t / 20 * (1 + t / 42 * (1 + t / 72 * (1 + t / 110))))
    c_small = t / 3 - t**2 / 45 + 2 * t**3 / 945 - t**4 / 4725 + 2 * t**5 / 93555
    big = np.where(small, 1.0, a)
    log_sinh_over_a = np.where(
        small,
        np.log1p(s_small),
        big + np.log1p(-np.exp(-2 * big)) - math.log(2) - np.log(big),
    )
    log_coth = np.where(small, np.log1p(c_small), np.log(big / np.tanh(big)))
    return 2 * log_sinh_over_a / log_coth


def consistent_dual(intrinsic_dim: float, family: str = "sine") -> Dual:
    r"""A dual whose depth limit is the Hilbert kernel of dimension m = ``intrinsic_dim``
    (α = m, Bayes-consistent on data of intrinsic dimension m).

    - ``'sine'``: sinh(aξ)/sinh(a) with α(a) = m solved by Brent's method (m > 1);
    - ``'polynomial'``: for m ≥ 2, c ξ + (1 − 2c) ξ² + c ξ³ with c = 2^(−m/2) (λ = 2; m = 2,
      4, 8 give the examples ξ/2 + ξ³/2, ξ/4 + ξ²/2 + ξ³/4, ξ/16 + 7ξ²/8 + ξ³/16); for
      0 < m < 2, c ξ + (1 − c) ξᵏ with the smallest odd k > 1 + 2/m and c solved for α = m.
    """
    m = float(intrinsic_dim)
    if not (math.isfinite(m) and m > 0):
        raise ValueError(f"intrinsic_dim must be positive and finite, got {intrinsic_dim!r}")
    if family == "sine":
        if m <= 1:
            raise ValueError(
                f"intrinsic_dim: the sine family reaches only α > 1 (α → 1 as a → 0), got {m}; "
                "use family='polynomial'"
            )
        hi = 1.0
        while sine_alpha(hi) < m:
            hi *= 2
        a = scipy.optimize.brentq(lambda t: sine_alpha(t) - m, 1e-6, hi, xtol=1e-15, rtol=1e-15)
        return sine_dual(a)
    if family == "polynomial":
        if m >= 2:
            c = 2.0 ** (-m / 2)
            return polynomial_dual([0.0, c, 1 - 2 * c, c])
        k = 3
        while 2 / (k - 1) >= m:
            k += 2

        def alpha_of(c):
            return 2 * math.log(1 / c) / math.log(c + k * (1 - c)) - m

        c = scipy.optimize.brentq(alpha_of, 1e-12, 1 - 1e-12, xtol=1e-16, rtol=1e-15)
        w = np.zeros(k + 1)
        w[1], w[k] = c, 1 - c
        return polynomial_dual(w)
    raise ValueError(f"family must be 'sine' or 'polynomial', got {family!r}")


def as_dual(dual) -> Dual:
    """Check that ``dual`` is a `Dual` (clear TypeError otherwise)."""
    if not isinstance(dual, Dual):
        raise TypeError(
            f"dual must be a theory.singular.Dual (e.g. sine_dual(a), hermite_dual(coeffs)), "
            f"got {type(dual).__name__}"
        )
    return dual
