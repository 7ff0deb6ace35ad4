r"""Dual activations: closed-form Gaussian expectations of activation functions.

For a centred Gaussian pair (z₁, z₂) with covariance ``[[q11, q12], [q12, q22]]`` the dual
of an activation φ is (Daniely, Frostig & Singer 2016; Cho & Saul 2009)

    k(q12, q11, q22) = E[φ(z₁) φ(z₂)],        k̇(q12, q11, q22) = E[φ'(z₁) φ'(z₂)] = ∂k/∂q12,

the second equality by Price's theorem. A network layer maps the NNGP kernel K ↦ k(K) and
the NTK Θ ↦ Θ · k̇(K) (Jacot et al. 2018, Thm. 1; Lee et al. 2019, eq. 3).

Every dual here is a function ``pair(q12, q11, q22, same, need_dot) -> (k, k̇ or None)``
that broadcasts: q11 has shape (n1, 1), q22 (1, n2), q12 (n1, n2). ``same`` is True where
the entry pairs a point with itself; there the correlation is set to exactly 1 so that the
ill-conditioned angle ``arccos(q12/√(q11 q22))`` is exactly 0: computed in floating point the
ratio is 1 − δ with δ = O(ε), and arccos(1 − δ) ≈ √(2δ), an O(√ε) error in θ (3e-4 in
float32) that the ReLU NTK factor (π − θ)/2π would carry into every diagonal entry (see
``docs/conventions.md``, "Infinite-width kernels").

These functions are shared with the singular-kernel classifiers (normalised duals, depth
limits) and are the single place where each closed form is written.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Pair = Callable[..., tuple[jax.Array, jax.Array | None]]

# Abramowitz & Stegun 4.4.46: arccos(x) = √(1−x)·Σ aₖ xᵏ on [0, 1], |error| ≤ 2e-8.
_AS_ARCCOS = (
    1.5707963050,
    -0.2145988016,
    0.0889789874,
    -0.0501743046,
    0.0308918810,
    -0.0170881256,
    0.0066700901,
    -0.0012624911,
)


@jax.custom_jvp
def safe_sqrt(x: jax.Array) -> jax.Array:
    """√x whose derivative is 0 where x ≤ 0 instead of ∞ · 0 = NaN.

    Duals take square roots of quantities that are exactly 0 at legitimate inputs: a variance
    q11 = 0 at a zero input without bias, 1 − c² = 0 where a point meets itself (c is set to 1
    there). The derivative 1/(2√x) is infinite at 0 while the argument's own derivative is 0,
    and the chain rule returns NaN. At such points the kernel is not differentiable (it behaves
    like |x| or √x), and this sets the one-sided derivative's undefined product to 0, as
    neural-tangents does — the subgradient that its autodiff tests and users rely on. Values are
    ``jnp.sqrt``'s (NaN for negative x); derivatives of every order are finite.
    """
    return jnp.sqrt(x)


@safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    y = safe_sqrt(x)
    pos = x > 0
    return y, jnp.where(pos, dx / (2 * jnp.where(pos, y, 1)), 0)


@jax.custom_jvp
def arccos(c: jax.Array) -> jax.Array:
    """arccos for c ∈ [−1, 1], accurate to the dtype, with the derivative 0 at c = ±1.

    float64 uses XLA's arccos. float32 uses the A&S 4.4.46 polynomial (absolute error
    ≤ 2e-8, below float32 resolution near π), which XLA fuses into the surrounding
    elementwise loop; XLA's own ``acos`` is 11× slower on CPU (4000 × 4000 float32 entries:
    0.91 s against 0.08 s, measured on 2 cores). The derivative −1/√(1 − c²) is infinite at
    c = ±1 (a point paired with itself); there it is set to 0 as in :func:`safe_sqrt`.
    """
    if c.dtype != jnp.float32:
        return jnp.arccos(c)
    a = jnp.abs(c)
    p = _AS_ARCCOS[7]
    for coef in _AS_ARCCOS[6::-1]:
        p = p * a + coef
    r = jnp.sqrt(1.0 - a) * p
    return jnp.where(c < 0, jnp.float32(math.pi) - r, r)


@arccos.defjvp
def _arccos_jvp(primals, tangents):
    (c,), (dc,) = primals, tangents
    s2 = (1 - c) * (1 + c)
    pos = s2 > 0
    return arccos(c), jnp.where(pos, -dc / safe_sqrt(jnp.where(pos, s2, 1)), 0)


def _correlation(q12, q11, q22, same):
    """(c, √(q11 q22)) with c = q12/√(q11 q22) clipped to [−1, 1]; c = 0 where a variance is 0,
    c = 1 exactly on the diagonal. The square roots and reciprocals are taken on the
    (n1, 1) and (1, n2) variance vectors, so the (n1, n2) work is two multiplications."""
    s1, s2 = safe_sqrt(q11), safe_sqrt(q22)
    inv1 = jnp.where(s1 > 0, 1 / jnp.where(s1 > 0, s1, 1), 0)
    inv2 = jnp.where(s2 > 0, 1 / jnp.where(s2 > 0, s2, 1), 0)
    c = jnp.clip(q12 * inv1 * inv2, -1, 1)
    if same is not False:
        c = jnp.where(same, 1, c)
    return c, s1 * s2


# ------------------------------------------------------------------ piecewise linear


def abrelu(a: float, b: float) -> Pair:
    r"""φ(x) = a·min(x, 0) + b·max(x, 0)  (ReLU: a=0, b=1; |x|: a=−1, b=1).

    With c = cos θ = q12/√(q11 q22) (Cho & Saul 2009, degree-1 arc-cosine kernel):

        k = (a−b)²/(2π) · √(q11 q22) sin θ + [(a²+b²)/2 − (a−b)²/(2π) θ] · q12,
        k̇ = (a²+b²)/2 − (a−b)²/(2π) θ.
    """
    factor = (a - b) ** 2 / (2 * math.pi)
    mean_sq = (a**2 + b**2) / 2

    def pair(q12, q11, q22, same=False, need_dot=True):
        c, sqrt_prod = _correlation(q12, q11, q22, same)
        theta = arccos(c)
        dot = mean_sq - factor * theta
        sin = safe_sqrt(jnp.maximum(1 - c * c, 0))
        k = factor * sqrt_prod * sin + dot * sqrt_prod * c
        return k, (dot if need_dot else None)

    return pair


def sign() -> Pair:
    r"""φ(x) = sign(x):  k = 1 − 2θ/π,  k̇ = 0 (the derivative is a point mass at 0)."""

    def pair(q12, q11, q22, same=False, need_dot=True):
        c, sqrt_prod = _correlation(q12, q11, q22, same)
        theta = jnp.where(sqrt_prod > 0, arccos(c), math.pi / 2)
        k = 1 - 2 * theta / math.pi
        return k, (jnp.zeros_like(k) if need_dot else None)

    return pair


@functools.cache
def _arccos_kernel_J(n: int) -> Callable:
    """Cho & Saul's J_n(θ) = (−1)ⁿ sin^{2n+1}θ · ((1/sin θ) ∂_θ)ⁿ ((π−θ)/sin θ), symbolically.

    Returned as a function of (θ, cos θ, sin θ), a polynomial in cos, sin plus θ times one:
    finite at θ = 0 and θ = π, where the defining expression is 0/0 (neural-tangents
    evaluates it there and gets NaN in float64; see ``docs/conventions.md``,
    "Infinite-width kernels").
    """
    import sympy as sp

    t, c, s = sp.symbols("t c s")
    f = (sp.pi - t) / sp.sin(t)
    for _ in range(n):
        f = sp.diff(f, t) / sp.sin(t)
    expr = sp.expand(
        sp.expand_trig(sp.simplify(sp.expand((-1) ** n * sp.sin(t) ** (2 * n + 1) * f)))
    )
    expr = expr.subs({sp.sin(t): s, sp.cos(t): c})
    return sp.lambdify((t, c, s), expr, modules=[{"pi": math.pi}, jnp])


def rectified_monomial(degree: int) -> Pair:
    r"""φ(x) = max(x, 0)^n (Cho & Saul 2009, arc-cosine kernel of degree n):

        k = (q11 q22)^{n/2} / (2π) · J_n(θ),      k̇ = n² (q11 q22)^{(n−1)/2} / (2π) · J_{n−1}(θ)

    (Price's theorem: ∂k_n/∂q12 = n² k_{n−1}); k̇ = 0 for n = 0.
    """
    jn = _arccos_kernel_J(degree)
    jm = _arccos_kernel_J(degree - 1) if degree > 0 else None

    def pair(q12, q11, q22, same=False, need_dot=True):
        c, sqrt_prod = _correlation(q12, q11, q22, same)
        theta = arccos(c)
        s = safe_sqrt(jnp.maximum(1 - c * c, 0))
        k = sqrt_prod**degree / (2 * math.pi) * jn(theta, c, s)
        if not need_dot:
            return k, None
        if degree == 0:
            return k, jnp.zeros_like(k)
        dot = degree**2 * sqrt_prod ** (degree - 1) / (2 * math.pi) * jm(theta, c, s)
        return k, dot

    return pair


# ------------------------------------------------------------------ smooth, closed form


def erf(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Pair:
    r"""φ(x) = a·erf(b x) + c (Williams 1997). With qᵢⱼ ← b² qᵢⱼ:

    k = a² · (2/π) arcsin(2 q12 / √((1+2q11)(1+2q22))) + c²,
    k̇ = a² b² · (4/π) / √((1+2q11)(1+2q22) − 4 q12²).
    """

    def pair(q12, q11, q22, same=False, need_dot=True):
        q12, q11, q22 = b * b * q12, b * b * q11, b * b * q22
        prod = (1 + 2 * q11) * (1 + 2 * q22)
        if same is not False:
            q12 = jnp.where(same, safe_sqrt(q11 * q22), q12)
        root = safe_sqrt(jnp.maximum(prod - 4 * q12 * q12, 0))
        k = a * a * (2 / math.pi) * jnp.arctan2(2 * q12, root) + c * c
        dot = a * a * b * b * (4 / math.pi) / root if need_dot else None
        return k, dot

    return pair


def gelu() -> Pair:
    r"""φ(x) = x Φ(x) (Tsuchida, Pearce, van der Heide, Roosta & Gallagher 2020). With
    δ² = (1+q11)(1+q22) − q12² and α = arcsin(q12 / √((1+q11)(1+q22))):

        k = q12/4 + [q12 α + (q12² + q11 q22 δ²) / ((1+q11)(1+q22) δ)] / (2π),
        k̇ = 1/4 + α/(2π) + q12/(2π δ) · (1 + 1/δ² + (1 − q11 q22)/((1+q11)(1+q22))).
    """

    def pair(q12, q11, q22, same=False, need_dot=True):
        prod, prod1 = q11 * q22, (1 + q11) * (1 + q22)
        if same is not False:
            q12 = jnp.where(same, safe_sqrt(prod), q12)
        delta2 = prod1 - q12 * q12
        delta = safe_sqrt(jnp.maximum(delta2, 0))
        alpha = jnp.arctan2(q12, delta)
        k = q12 / 4 + (q12 * alpha + (q12 * q12 + prod * delta2) / (prod1 * delta)) / (2 * math.pi)
        if not need_dot:
            return k, None
        dot = 0.25 + alpha / (2 * math.pi)
        dot = dot + q12 / (2 * math.pi * delta) * (1 + 1 / delta2 + (1 - prod) / prod1)
        return k, dot

    return pair


def sin(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Pair:
    r"""φ(x) = a sin(b x + c):

    k = a²/2 · [e^{−b²(q11+q22)/2 + b² q12} − cos(2c) e^{−b²(q11+q22)/2 − b² q12}],
    k̇ = a² b²/2 · [e^{−b²(q11+q22)/2 + b² q12} + cos(2c) e^{−b²(q11+q22)/2 − b² q12}].
    """

    cos2c = math.cos(2 * c)

    def pair(q12, q11, q22, same=False, need_dot=True):
        # e^{x} ∓ C e^{−x} = (1 ∓ C) cosh x + (1 ± C) sinh x: no cancellation when q12 → 0
        # (the plain difference loses every digit of sinh(b² q12) below 1e-16 · e^{b² q12}).
        scale = jnp.exp(-0.5 * b * b * (q11 + q22))
        x = b * b * q12
        ch, sh = jnp.cosh(x), jnp.sinh(x)
        k = a * a / 2 * scale * ((1 - cos2c) * ch + (1 + cos2c) * sh)
        if not need_dot:
            return k, None
        return k, a * a * b * b / 2 * scale * ((1 + cos2c) * ch + (1 - cos2c) * sh)

    return pair


def rbf(gamma: float = 1.0) -> Pair:
    r"""φ(x) = √2 sin(√(2γ) x + π/4):  k = exp(−γ (q11 + q22 − 2 q12)),  k̇ = 2γ k."""

    def pair(q12, q11, q22, same=False, need_dot=True):
        k = jnp.exp(-gamma * (q11 + q22 - 2 * q12))
        return k, (2 * gamma * k if need_dot else None)

    return pair


def exp(a: float = 1.0, b: float = 1.0) -> Pair:
    r"""φ(x) = a e^{b x}:  k = a² exp(b² (q11 + q22)/2 + b² q12),  k̇ = b² k."""

    def pair(q12, q11, q22, same=False, need_dot=True):
        k = a * a * jnp.exp(b * b * (0.5 * (q11 + q22) + q12))
        return k, (b * b * k if need_dot else None)

    return pair


def gaussian(a: float = 1.0, b: float = -1.0) -> Pair:
    r"""φ(x) = a e^{b x²}: with Δ = √det(I − 2bΣ) = √((1 − 2b q11)(1 − 2b q22) − 4b² q12²),

    k = a² / Δ,     k̇ = 4 a² b² q12 / Δ³.

    For b > 0 the expectation E[a² e^{b(z1² + z2²)}] is finite iff 2b·λ_max(Σ) < 1 (Σ⁻¹ − 2bI
    positive definite); on the diagonal (z1 = z2) that is 4b·q < 1. Where it diverges the dual
    is +inf (not the formula, whose determinant is positive again once both eigenvalues pass
    1/(2b)), so the kernel's non-finite check names it.
    """

    def pair(q12, q11, q22, same=False, need_dot=True):
        det = safe_sqrt(
            jnp.maximum((1 - 2 * b * q11) * (1 - 2 * b * q22) - 4 * b * b * q12 * q12, 0)
        )
        k = a * a / det
        dot = 4 * a * a * b * b * q12 / det**3 if need_dot else None
        if b > 0:
            half = (q11 + q22) / 2
            lam_max = half + safe_sqrt(((q11 - q22) / 2) ** 2 + q12 * q12)
            diverges = 2 * b * lam_max >= 1
            k = jnp.where(diverges, jnp.inf, k)
            dot = None if dot is None else jnp.where(diverges, jnp.inf, dot)
        return k, dot

    return pair


def gabor() -> Pair:
    r"""φ(x) = e^{−x²} sin x. Writing sin z₁ sin z₂ = ½[cos(z₁ − z₂) − cos(z₁ + z₂)] and using
    E[exp(−zᵀz + i wᵀz)] = det(I + 2Σ)^{−1/2} exp(−½ wᵀ Σ(I + 2Σ)⁻¹ w) for z ~ N(0, Σ), with
    D = det(I + 2Σ) = 1 + 2(q11 + q22) + 4(q11 q22 − q12²) and s = q11 + q22:

        k = ½ D^{−1/2} e^{−1/2} (e^{g₊} − e^{g₋}),     g± = (1 + s ± 2 q12) / (2D),

    and k̇ = ∂k/∂q12 = ½ e^{−1/2} [4 q12 D^{−3/2} (e^{g₊} − e^{g₋}) + D^{−1/2} (g₊′ e^{g₊} −
    g₋′ e^{g₋})] with g±′ = (±D + 4 q12 (1 + s ± 2 q12)) / D² (∂D/∂q12 = −8 q12). On the
    diagonal (q12 = q11 = q22 = q) k = (1 − e^{−2q/(1+4q)}) / (2√(1 + 4q)).
    """

    def pair(q12, q11, q22, same=False, need_dot=True):
        s = q11 + q22
        d = 1 + 2 * s + 4 * (q11 * q22 - q12 * q12)
        gp, gm = (1 + s + 2 * q12) / (2 * d), (1 + s - 2 * q12) / (2 * d)
        # e^{−1/2}(e^{g₊} − e^{g₋}) with both exponents ≤ 1/2: no overflow for any q
        ep, em = jnp.exp(gp - 0.5), jnp.exp(gm - 0.5)
        root = safe_sqrt(d)
        k = 0.5 * (ep - em) / root
        if not need_dot:
            return k, None
        dp = (d + 4 * q12 * (1 + s + 2 * q12)) / d**2
        dm = (-d + 4 * q12 * (1 + s - 2 * q12)) / d**2
        dot = 0.5 * (4 * q12 * (ep - em) / (d * root) + (dp * ep - dm * em) / root)
        return k, dot

    return pair


def exp_normalized(gamma: float = 1.0, shift: float = -1.0, do_clip: bool = False) -> Pair:
    r"""The "Gaussian normalized kernel" (Shankar et al. 2020, p. 6; neural-tangents'
    ``ExpNormalized``): with ρ = q12/√(q11 q22) (clipped to [−1, 1] if ``do_clip``),

        k = √(q11 q22) · exp(γ (ρ + shift)),      k̇ = ∂k/∂q12 = γ · exp(γ (ρ + shift)).

    A kernel map, not the dual of an activation (no φ)."""

    def pair(q12, q11, q22, same=False, need_dot=True):
        scale = safe_sqrt(q11 * q22)
        rho = q12 / scale
        if do_clip:
            rho = jnp.clip(rho, -1, 1)
        e = jnp.exp(gamma * (rho + shift))
        return scale * e, (gamma * e if need_dot else None)

    return pair


def _double_factorial(n: int) -> int:
    return math.prod(range(n, 0, -2)) if n > 0 else 1


def monomial(degree: int) -> Pair:
    r"""φ(x) = xⁿ. Writing z₂ = ρ z₁ σ₂/σ₁ + √(1−ρ²) σ₂ v and using Isserlis' theorem,

        k = Σ_{m=0}^{⌊n/2⌋} C(n, 2m) (2n−2m−1)!! (2m−1)!! · q12^{n−2m} (q11 q22 − q12²)^m,
        k̇ = n² · k_{n−1}.

    Exact for every n ≥ 0 (neural-tangents stops at 5).
    """

    def moment(n, q12, prod):
        if n < 0:
            return jnp.zeros_like(q12)
        resid = prod - q12 * q12
        out = 0.0
        for m in range(n // 2 + 1):
            coef = math.comb(n, 2 * m) * _double_factorial(2 * n - 2 * m - 1)
            coef *= _double_factorial(2 * m - 1)
            out = out + coef * q12 ** (n - 2 * m) * resid**m
        return out + jnp.zeros_like(q12)

    def pair(q12, q11, q22, same=False, need_dot=True):
        prod = q11 * q22
        if same is not False:
            q12 = jnp.where(same, safe_sqrt(prod), q12)
        k = moment(degree, q12, prod)
        return k, (degree**2 * moment(degree - 1, q12, prod) if need_dot else None)

    return pair


def polynomial(coef: Sequence[float]) -> Pair:
    r"""φ(x) = Σᵢ coef[i] xⁱ, through the normalised Hermite expansion of φ(σ u):

        φ(σ u) = Σ_l r_l(σ) He_l(u)/√(l!),
        r_l(σ) = Σ_i coef[l+2i] σ^{l+2i} (l+2i)! / (2ⁱ i! √(l!)),
        k = Σ_l r_l(σ₁) r_l(σ₂) ρ^l,        k̇ = Σ_l l r_l(σ₁) r_l(σ₂) ρ^{l−1} / (σ₁σ₂),

    with σᵢ = √qᵢᵢ and ρ = q12/(σ₁σ₂) (Mehler's formula).
    """
    coef = [float(x) for x in coef]
    deg = len(coef)

    def r(l, sigma):
        out = 0.0
        for i in range((deg - 1 - l) // 2 + 1):
            n = l + 2 * i
            w = (
                coef[n]
                * math.factorial(n)
                / (2**i * math.factorial(i) * math.sqrt(math.factorial(l)))
            )
            out = out + w * sigma**n
        return out

    def pair(q12, q11, q22, same=False, need_dot=True):
        rho, sqrt_prod = _correlation(q12, q11, q22, same)
        s1, s2 = safe_sqrt(q11), safe_sqrt(q22)
        k = jnp.zeros_like(q12)
        dot = jnp.zeros_like(q12)
        for l in range(deg):
            rr = r(l, s1) * r(l, s2)
            k = k + rr * rho**l
            if need_dot and l > 0:
                dot = dot + l * rr * rho ** (l - 1)
        if not need_dot:
            return k, None
        safe = sqrt_prod > 0
        return k, jnp.where(safe, dot / jnp.where(safe, sqrt_prod, 1), 0)

    return pair


def hermite(degree: int) -> Pair:
    r"""φ(x) = Heₙ(x)/√(n!) (probabilists' Hermite, unit Gaussian norm). For unit-variance
    inputs (q11 = q22 = 1), k = q12ⁿ and k̇ = n q12^{n−1}; like neural-tangents, these
    formulas are applied as they are and are exact only for unit variances.
    """

    def pair(q12, q11, q22, same=False, need_dot=True):
        k = q12**degree if degree > 0 else jnp.ones_like(q12)
        if not need_dot:
            return k, None
        dot = degree * q12 ** (degree - 1) if degree > 0 else jnp.zeros_like(q12)
        return k, dot + jnp.zeros_like(q12)

    return pair


# ------------------------------------------------------------------ numerical and custom


def gauss_hermite(fn: Callable, deg: int, df: Callable | None = None) -> Pair:
    r"""Any φ by 2-D Gauss–Hermite quadrature with ``deg`` nodes per axis:

        E[φ(z₁)φ(z₂)] ≈ (1/π) Σᵢⱼ wᵢ wⱼ φ(√(2q11) xᵢ) φ(ρ√(2q22) xᵢ + √(2 q22 (1−ρ²)) yⱼ),

    with (xᵢ, wᵢ) the nodes and weights for e^{−x²}. k̇ uses φ' (``df`` or autodiff).
    Error falls like the quadrature error of smooth integrands; use ≥ 25 nodes for tanh-like
    φ. Memory stays O(n1·n2): the outer sum is a ``lax.scan``.
    """
    import scipy.special

    xs, ws = scipy.special.roots_hermite(deg)
    dfn = df if df is not None else jnp.vectorize(jax.grad(fn))

    def integrate(f, q12, q11, q22):
        dtype = q12.dtype
        x = jnp.asarray(xs, dtype)
        w = jnp.asarray(ws, dtype)
        s11 = safe_sqrt(jnp.maximum(2 * q11, 0))
        safe = q11 > 0
        slope = jnp.where(safe, q12 / jnp.where(safe, q11, 1), 0)  # ρ σ₂/σ₁
        cond = safe_sqrt(jnp.maximum(2 * (q22 - slope * q12), 0))  # √(2 q22 (1−ρ²))

        def body(acc, xw):
            xi, wi = xw
            z1 = s11 * xi
            inner = 0.0
            for j in range(deg):
                inner = inner + w[j] * f(slope * z1 + cond * x[j])
            return acc + wi * f(z1) * inner, None

        acc, _ = jax.lax.scan(body, jnp.zeros_like(q12 + q11 + q22), (x, w))
        return acc / math.pi

    def pair(q12, q11, q22, same=False, need_dot=True):
        if same is not False:
            q12 = jnp.where(same, safe_sqrt(q11 * q22), q12)
        k = integrate(fn, q12, q11, q22)
        return k, (integrate(dfn, q12, q11, q22) if need_dot else None)

    return pair


def custom(nngp_fn: Callable, d_nngp_fn: Callable | None = None) -> Pair:
    """A user's scalar dual ``nngp_fn(cov12, var1, var2) = E[φ(z₁)φ(z₂)]``, vectorised; its
    derivative ``d_nngp_fn`` (= E[φ'φ']) defaults to ∂/∂cov12 by autodiff."""
    k_fn = jnp.vectorize(nngp_fn)
    d_fn = jnp.vectorize(d_nngp_fn if d_nngp_fn is not None else jax.grad(nngp_fn))

    def pair(q12, q11, q22, same=False, need_dot=True):
        q11, q22 = jnp.broadcast_to(q11, q12.shape), jnp.broadcast_to(q22, q12.shape)
        k = k_fn(q12, q11, q22)
        return k, (d_fn(q12, q11, q22) if need_dot else None)

    return pair


def diagonal(pair: Pair, q: jax.Array) -> jax.Array:
    """E[φ(z)²] for z ~ N(0, q): the dual at q12 = q11 = q22 = q with correlation exactly 1."""
    return pair(q, q, q, True, False)[0]


def normalised(pair: Pair) -> Callable[[jax.Array], jax.Array]:
    """The dual as a map of the correlation on the unit sphere: ρ ↦ k(ρ, 1, 1) / k(1, 1, 1)."""
    one = np.float64(1.0)

    def f(rho):
        rho = jnp.asarray(rho)
        ones = jnp.ones_like(rho)
        return pair(rho, ones, ones, False, False)[0] / pair(one, one, one, True, False)[0]

    return f


def hermite_coefficients(fn: Callable, degree: int, nodes: int = 200) -> tuple[np.ndarray, float]:
    r"""Coefficients of φ in the orthonormal probabilists' Hermite basis hᵢ = Heᵢ/√(i!):

        aᵢ = E[φ(u) hᵢ(u)],  u ~ N(0, 1),   i = 0, …, degree,

    by Gauss–Hermite(e) quadrature with ``nodes`` nodes (exact for polynomial φ of degree
    < 2·nodes − degree), in float64. Returns ``(a, residual)`` with residual = E[φ²] − Σ aᵢ²
    ≥ 0 (Parseval), the part of φ the truncation misses. For unit-variance inputs the dual is
    then k(ρ, 1, 1) = Σ aᵢ² ρⁱ (Mehler's formula).
    """
    if not isinstance(degree, int | np.integer) or degree < 0:
        raise ValueError(f"degree must be an integer ≥ 0, got {degree!r}")
    if not isinstance(nodes, int | np.integer) or nodes <= degree:
        raise ValueError(f"nodes must be an integer > degree = {degree}, got {nodes!r}")
    import scipy.special

    # scipy's nodes stay finite for thousands of nodes (numpy's hermegauss overflows at ~150)
    x, w = scipy.special.roots_hermitenorm(int(nodes))
    w = w / math.sqrt(2 * math.pi)
    f = np.asarray(fn(x), dtype=np.float64)
    if f.shape != x.shape or not np.all(np.isfinite(f)):
        raise ValueError("fn must map a float64 vector to finite values of the same shape")
    # hᵢ by the stable three-term recurrence h_{i+1} = (x hᵢ − √i h_{i−1}) / √(i+1)
    a = np.empty(degree + 1)
    h_prev, h = np.zeros_like(x), np.ones_like(x)
    for i in range(degree + 1):
        a[i] = np.sum(w * f * h)
        h_prev, h = h, (x * h - math.sqrt(i) * h_prev) / math.sqrt(i + 1)
    energy = float(np.sum(w * f * f))
    if not (np.all(np.isfinite(a)) and math.isfinite(energy)):
        raise FloatingPointError("hermite_coefficients: non-finite result; lower degree/nodes")
    return a, max(energy - float(np.sum(a * a)), 0.0)
