r"""The polynomial method for softmax and tensor attention (Alman & Song), order t in general.

Replace exp by a polynomial P of degree g with |P(x) − eˣ| ≤ ε eˣ on the range [−R, R] of the
scores. Writing a score as x = s Σ_l q_l k1_l ⋯ k(t−1)_l and expanding xᵐ multinomially,

    P(x) = Σ_{m ≤ g} c_m xᵐ = Σ_{|α| ≤ g} w_α q^α k1^α ⋯ k(t−1)^α,
    w_α = c_{|α|} s^{|α|} |α|! / α!,   q^α = Π_l q_l^(α_l),

so the n × m^(t−1) matrix P(scores) factors as U0 (U1 ⊘ ⋯ ⊘ U(t−1))ᵀ with the monomial
feature maps U0[i, α] = w_α q_i^α, Uj[j, α] = kj_j^α of rank r = C(d + g, g) (the number of
multi-indices α ∈ ℕ^d with |α| ≤ g; far below the papers' counting bounds). The attention output
is then, never forming the m^(t−1) columns, in O(n r d_v + Σ m r d_v):

    out = (U0 W) / (U0 σ),   W = Π_j (Ujᵀ Vj)   (elementwise over the t − 1 key sets),
                             σ = Π_j (Ujᵀ 1).

t = 2 is matrix attention, t = 3 tensor attention (Alman & Song, ICLR 2024: an n^(1+o(1))
algorithm when entries are bounded by B = o((log n)^(1/3)); for B = Ω((log n)^(1/3)) nothing
beats n^(3−o(1)) under SETH). For order t the regime is B = o((log n)^(1/t)): with s = 1/d the
scores lie in [−B^t, B^t], and the degree needed grows with R = B^t.

Polynomials (`exp_polynomial`): the Taylor polynomial at 0, whose relative error on [−R, R] is
at most R^(g+1) e^R / (g+1)! (Lagrange remainder: e^ξ x^(g+1)/(g+1)! with ξ between 0 and x,
divided by eˣ ≥ e^(−R)… the factor e^(ξ−x) ≤ e^R); or the Taylor polynomial of e^(x+R) at
x = −R, i.e. of e^y on y ∈ [0, 2R], with relative error at most (2R)^(g+1)/(g+1)! (ξ ≤ y, so
e^(ξ−y) ≤ 1; the constant factor e^(−R) cancels in the attention ratio). Given ε, the smaller
degree of the two certified bounds is used.

Output guarantee: with P = eˣ(1 + δ), |δ| ≤ ε < 1, every output entry is within
2ε/(1 − ε) · ‖V1‖∞ ⋯ ‖V(t−1)‖∞ of exact attention (the numerator and denominator errors
together; P > 0 follows from ε < 1).

Precision: the monomial expansion sums terms of magnitude up to e^R to produce values as small
as e^(−R), so roundoff is about u e^(2R) relative (u the unit roundoff: float32 6e-8 gives 4e-2
at R = 8). The functions refuse (ValueError) an accuracy ε below 10 u e^(2R) and warn when a
given degree is evaluated where u e^(2R) > 1e-3.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from theory.attention.exact import _as_float, _scale, score_bound

# ---------------------------------------------------------------------------- polynomials


class ExpPoly(NamedTuple):
    """A polynomial P(x) = Σ_j coeffs[j] x^j approximating eˣ (up to a constant factor) on
    [−radius, radius] with certified relative error ≤ error_bound; centre 0 or −radius."""

    degree: int
    center: float
    coeffs: tuple[float, ...]
    radius: float
    error_bound: float


def _log_taylor_bound(r: float, g: int) -> float:
    return -math.inf if r == 0 else (g + 1) * math.log(r) + r - math.lgamma(g + 2)


def _log_shifted_bound(r: float, g: int) -> float:
    return -math.inf if r == 0 else (g + 1) * math.log(2 * r) - math.lgamma(g + 2)


def _exp_or_inf(x: float) -> float:
    return math.inf if x > 709.0 else math.exp(x)


def taylor_error_bound(radius: float, degree: int) -> float:
    """R^(g+1) e^R / (g+1)!: relative error bound of the Taylor polynomial of eˣ at 0 on [−R, R]
    (inf beyond float64)."""
    return _exp_or_inf(_log_taylor_bound(float(radius), int(degree)))


def shifted_error_bound(radius: float, degree: int) -> float:
    """(2R)^(g+1) / (g+1)!: relative error bound of the Taylor polynomial of e^(x+R) at x = −R
    (inf beyond float64)."""
    return _exp_or_inf(_log_shifted_bound(float(radius), int(degree)))


def _check_radius(radius) -> float:
    r = float(radius)
    if not (math.isfinite(r) and r >= 0):
        raise ValueError(f"radius must be a finite non-negative number, got {radius!r}")
    return r


def _check_eps(eps) -> float:
    e = float(eps)
    if not (math.isfinite(e) and 0 < e < 1):
        raise ValueError(f"eps must lie in (0, 1), got {eps!r}")
    return e


def _check_degree(degree) -> int:
    if isinstance(degree, bool) or int(degree) != degree or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree!r}")
    return int(degree)


def _coeffs(degree: int, center: float) -> tuple[float, ...]:
    """Coefficients in x of Σ_{m≤g} (x − c)^m / m! (c = center): the Taylor polynomial of
    e^(x − c) at x = c, i.e. e^(−c) times one of eˣ: c_j = (1/j!) Σ_{k ≤ g−j} (−c)^k / k!."""
    a = -float(center)
    tail, term = [], 1.0
    for k in range(degree + 1):  # partial sums of e^a
        tail.append(term if k == 0 else tail[-1] + term)
        term *= a / (k + 1)
    return tuple(tail[degree - j] * math.exp(-math.lgamma(j + 1)) for j in range(degree + 1))


def certified_degree(radius: float, eps: float) -> tuple[int, float, float]:
    """(g, centre, bound): the smallest degree whose certified relative error bound on
    [−R, R] is ≤ eps, over the Taylor polynomials at 0 and at −R, with its centre and bound."""
    r = _check_radius(radius)
    log_e = math.log(_check_eps(eps))
    g = 0
    while True:
        t, sh = _log_taylor_bound(r, g), _log_shifted_bound(r, g)
        if min(t, sh) <= log_e:
            return g, (0.0 if t <= sh else -r), math.exp(min(t, sh))
        g += 1


def exp_polynomial(radius: float, degree: int | None = None, eps: float | None = None) -> ExpPoly:
    """The polynomial used for scores in [−radius, radius]: exactly one of degree / eps.

    With ``degree``: the Taylor polynomial of eˣ at 0 of that degree. With ``eps``: the
    smallest degree g whose certified relative error bound is ≤ eps, over the Taylor
    polynomials at 0 (bound R^(g+1)e^R/(g+1)!) and at −R (bound (2R)^(g+1)/(g+1)!).
    """
    r = _check_radius(radius)
    if (degree is None) == (eps is None):
        raise ValueError("give exactly one of degree and eps")
    if degree is not None:
        g = _check_degree(degree)
        return ExpPoly(g, 0.0, _coeffs(g, 0.0), r, taylor_error_bound(r, g))
    g, center, bound = certified_degree(r, eps)
    return ExpPoly(g, center, _coeffs(g, center), r, bound)


def degree_for(bound: float, eps: float, order: int = 3) -> int:
    """Smallest degree g with a certified |P(x) − eˣ| ≤ ε eˣ on [−B^t, B^t], t = ``order``.

    ``bound`` is B, the largest absolute entry of Q, K1, …; with the paper's scale s = 1/d a
    score of order-t attention (t = 2 matrix, 3 tensor) lies in [−B^t, B^t].
    """
    b = float(bound)
    if not (math.isfinite(b) and b >= 0):
        raise ValueError(f"bound must be a finite non-negative number, got {bound!r}")
    t = int(order)
    if t < 2 or t != order:
        raise ValueError(f"order must be an integer ≥ 2, got {order!r}")
    return certified_degree(b**t, eps)[0]


def critical_bound(n: int, order: int = 3) -> float:
    """(ln n)^(1/t): the entry bound that separates the two regimes of order-t attention.

    Entries bounded by B = o((ln n)^(1/t)) keep the scores in [−B^t, B^t] = o(ln n) (scale
    1/d) and the polynomial method runs in n^(1+o(1)) (Alman & Song: t = 2 in their NeurIPS
    2023 paper, t = 3 in the ICLR 2024 one); for B = Ω((ln n)^(1/t)) no algorithm beats the
    naive n^(t−o(1)) under SETH (shown there for t = 2 and 3).
    """
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer ≥ 2, got {n!r}")
    if int(order) != order or order < 2:
        raise ValueError(f"order must be an integer ≥ 2, got {order!r}")
    return math.log(n) ** (1 / order)


def rank(d: int, degree: int) -> int:
    """C(d + g, g): the number of multi-indices α ∈ ℕ^d with |α| ≤ g (features per factor)."""
    return math.comb(int(d) + int(degree), int(degree))


def roundoff_floor(radius: float, dtype) -> float:
    """u e^(2R): the relative roundoff of evaluating eˣ on [−R, R] through monomials."""
    u = float(jnp.finfo(dtype).eps) / 2
    return u * math.exp(min(2 * float(radius), 700.0))


# ---------------------------------------------------------------------------- features


@functools.lru_cache(maxsize=64)
def _monomial_plan(d: int, degree: int):
    """Multi-indices α (|α| ≤ g) in graded order, each with its parent α − e_l (l = the last
    non-zero coordinate) and l, so that x^α = x^(α − e_l) · x_l; and |α|!/α!."""
    alphas = [(0,) * d]
    parents, coords = [0], [0]
    by_degree = [[0]]
    for m in range(1, degree + 1):
        layer = []
        for p_idx in by_degree[m - 1]:
            a = alphas[p_idx]
            last = max((i for i in range(d) if a[i]), default=0)
            for l in range(last, d):  # extend only at or after the last non-zero: each α once
                b = list(a)
                b[l] += 1
                alphas.append(tuple(b))
                parents.append(p_idx)
                coords.append(l)
                layer.append(len(alphas) - 1)
        by_degree.append(layer)
    deg = np.array([sum(a) for a in alphas])
    multinom = np.array(
        [math.factorial(sum(a)) / math.prod(math.factorial(x) for x in a) for a in alphas]
    )
    starts = np.cumsum([0] + [len(x) for x in by_degree])
    return (
        np.array(parents),
        np.array(coords),
        deg,
        multinom,
        tuple(int(s) for s in starts),
    )


def monomial_features(x, degree: int) -> jax.Array:
    """x (n, d) → (n, C(d+g, g)): every monomial x^α, |α| ≤ g, in graded order (1 first).

    Built degree by degree (x^α = x^(α − e_l) x_l), so memory is n · r.
    """
    x = jnp.asarray(x)
    g = _check_degree(degree)
    parents, coords, _, _, starts = _monomial_plan(x.shape[1], g)
    feats = [jnp.ones((x.shape[0], 1), x.dtype)]
    for m in range(1, g + 1):
        lo, hi = starts[m], starts[m + 1]
        prev = jnp.concatenate(feats, axis=1)
        feats.append(prev[:, parents[lo:hi]] * x[:, coords[lo:hi]])
    return jnp.concatenate(feats, axis=1)


def feature_weights(d: int, poly: ExpPoly, scale: float) -> np.ndarray:
    """w_α = c_{|α|} s^{|α|} |α|!/α! for the query features (float64)."""
    _, _, deg, multinom, _ = _monomial_plan(d, poly.degree)
    c = np.asarray(poly.coeffs)[deg]
    return c * float(scale) ** deg * multinom


# ---------------------------------------------------------------------------- attention


def _score_radius(q, keys, scale: float) -> float:
    """A bound on |s Σ_l q_l k1_l ⋯| from coordinate-wise maxima: s Σ_l max|q_l| Π max|kj_l|
    (`score_bound` of the query of coordinate-wise largest magnitudes)."""
    q_max = jnp.max(jnp.abs(q), axis=0, keepdims=True)
    return float(score_bound(q_max, keys, scale)[0])


def _check_multi(q, keys, values):
    q = _as_float("q", q)
    if len(keys) != len(values) or not keys:
        raise ValueError(
            f"keys and values must be non-empty and of equal length, got {len(keys)} and "
            f"{len(values)}"
        )
    keys = [_as_float(f"keys[{j}]", k) for j, k in enumerate(keys)]
    values = [_as_float(f"values[{j}]", v) for j, v in enumerate(values)]
    for j, (k, v) in enumerate(zip(keys, values)):
        if k.shape[1] != q.shape[1]:
            raise ValueError(
                f"q and keys[{j}] must have the same width d, got {q.shape}, {k.shape}"
            )
        if v.shape[0] != k.shape[0]:
            raise ValueError(f"keys[{j}] and values[{j}] must have equal lengths")
        if v.shape[1] != values[0].shape[1]:
            raise ValueError("every values[j] must have the same width")
    dtype = jnp.result_type(q, *keys, *values)
    return q.astype(dtype), [k.astype(dtype) for k in keys], [v.astype(dtype) for v in values]


class PolyInfo(NamedTuple):
    """What `poly_multi_attention(..., return_info=True)` used."""

    degree: int
    rank: int
    radius: float
    error_bound: float
    output_bound: float  # 2ε/(1 − ε) Π ‖Vj‖∞ (inf when the bound ε ≥ 1)
    roundoff: float


def poly_multi_attention(
    q,
    keys: Sequence,
    values: Sequence,
    degree: int | None = None,
    *,
    eps: float | None = None,
    scale=None,
    return_info: bool = False,
):
    """Order-t attention by the polynomial method, t = len(keys) + 1.

    out[i] = Σ_{j1…} P(s ⟨q_i, k1_j1 ∘ ⋯⟩) v1_j1 ∘ ⋯ / Σ_{j1…} P(…), computed as
    (U0 W)/(U0 σ) with W = Π_j Ujᵀ Vj, σ = Π_j Ujᵀ 1 (see the module docstring).

    Give ``degree`` (Taylor polynomial at 0) or ``eps`` (the smallest certified degree for
    the inputs' score radius R = s Σ_l max|q_l| Π_j max|kj_l|; then every output entry is
    within 2ε/(1−ε) Π‖Vj‖∞ of exact attention). ``scale`` defaults to 1/d.

    Raises ValueError when eps is below the dtype's roundoff floor 10 u e^(2R); warns when a
    given degree is used where u e^(2R) > 1e-3, or when a denominator is not positive (the
    polynomial is negative somewhere: entries beyond the bounded regime for this degree).
    Under `jax.jit`/`jax.grad` only ``degree`` works (picking a degree from ``eps`` needs the
    inputs' values) and those checks are skipped. The guarantee 2ε/(1 − ε) (not 2ε) is the
    provable one: the numerator and denominator errors are each ≤ ε relative.
    """
    q, keys, values = _check_multi(q, keys, values)
    d = q.shape[1]
    s = _scale(scale, d)
    traced = any(isinstance(a, jax.core.Tracer) for a in (q, *keys, *values))
    if traced:
        # Under jit/grad the inputs' values are unknown: the degree must be given, and the
        # radius-dependent checks (roundoff, certificate) are skipped.
        if eps is None and degree is not None:
            g = _check_degree(degree)
            poly = ExpPoly(g, 0.0, _coeffs(g, 0.0), math.nan, math.nan)
            w = jnp.asarray(feature_weights(d, poly, s), q.dtype)
            num, den = _poly_apply(q, tuple(keys), tuple(values), w, g)
            if return_info:
                raise ValueError("return_info needs concrete inputs (not under jit/grad)")
            return num / den[:, None]
        raise ValueError(
            "under jax.jit/grad give degree= (eps needs the inputs' values to pick a degree)"
        )
    radius = _score_radius(q, keys, s)
    poly = exp_polynomial(radius, degree=degree, eps=eps)
    floor = roundoff_floor(radius, q.dtype)
    if eps is not None and eps < 10 * floor:
        raise ValueError(
            f"eps={eps:g} is impossible in {q.dtype} for scores up to R={radius:.3g}: "
            f"evaluating exp through monomials loses about u·e^(2R) = {floor:.2g}; use float64 "
            "(jax.enable_x64) or smaller entries"
        )
    if degree is not None and floor > 1e-3:
        warnings.warn(
            f"poly attention in {q.dtype} with scores up to R={radius:.3g}: roundoff about "
            f"u·e^(2R) = {floor:.2g} relative",
            RuntimeWarning,
            stacklevel=2,
        )
    w = jnp.asarray(feature_weights(d, poly, s), q.dtype)
    num, den = _poly_apply(q, tuple(keys), tuple(values), w, poly.degree)
    if not bool(jnp.all(jnp.isfinite(num))) or not bool(jnp.all(jnp.isfinite(den))):
        raise FloatingPointError("poly attention: non-finite sums from finite inputs")
    if not bool(jnp.all(den > 0)):
        warnings.warn(
            "poly attention: a denominator Σ P(scores) ≤ 0 — the polynomial is negative "
            f"at these scores (R={radius:.3g}, degree {poly.degree}); the output is "
            "meaningless there: raise the degree or bound the entries",
            RuntimeWarning,
            stacklevel=2,
        )
    result = num / den[:, None]
    if not return_info:
        return result
    vmax = math.prod(float(jnp.max(jnp.abs(v))) for v in values)
    e = poly.error_bound
    bound = 2 * e / (1 - e) * vmax if e < 1 else math.inf
    return result, PolyInfo(poly.degree, rank(d, poly.degree), radius, e, bound, floor)


@functools.partial(jax.jit, static_argnames=("degree",))
def _poly_apply(q, keys, values, w, degree: int):
    u0 = monomial_features(q, degree) * w
    big_w = None
    sigma = None
    for k, v in zip(keys, values):
        u = monomial_features(k, degree)
        uv = u.T @ v  # (r, d_v)
        us = jnp.sum(u, axis=0)  # (r,)
        big_w = uv if big_w is None else big_w * uv
        sigma = us if sigma is None else sigma * us
    return u0 @ big_w, u0 @ sigma


def poly_attention(q, k, v, degree: int | None = None, *, eps=None, scale=None, return_info=False):
    """Softmax attention by the polynomial method: `poly_multi_attention(q, [k], [v], …)`."""
    return poly_multi_attention(q, [k], [v], degree, eps=eps, scale=scale, return_info=return_info)


def poly_tensor_attention(
    q, k1, k2, v1, v2, degree: int | None = None, *, eps=None, scale=None, return_info=False
):
    """Tensor attention by the polynomial method (Alman & Song): O(n r d), r = C(d+g, g).

    `poly_multi_attention(q, [k1, k2], [v1, v2], …)`; see there for ``degree``/``eps``.
    """
    return poly_multi_attention(
        q, [k1, k2], [v1, v2], degree, eps=eps, scale=scale, return_info=return_info
    )


def multi_attention(q, keys: Sequence, values: Sequence, scale=None) -> jax.Array:
    """Exact order-t attention, naive (memory n · Π m_j): the reference for small sizes."""
    q, keys, values = _check_multi(q, keys, values)
    s = _scale(scale, q.shape[1])
    letters = "abcdefgh"[: len(keys)]
    if len(keys) > len(letters):
        raise ValueError("at most 8 key sets")
    spec = ",".join(["il"] + [f"{c}l" for c in letters]) + "->i" + letters
    scores = s * jnp.einsum(spec, q, *keys)
    axes = tuple(range(1, len(keys) + 1))
    p = jnp.exp(scores - jnp.max(scores, axis=axes, keepdims=True))
    spec_v = ",".join(["i" + letters] + [f"{c}e" for c in letters]) + "->ie"
    num = jnp.einsum(spec_v, p, *values)
    return num / jnp.sum(p, axis=axes)[:, None]
