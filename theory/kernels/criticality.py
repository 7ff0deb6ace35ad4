r"""Criticality and finite-width corrections of deep networks.

Roberts, Yaida & Hanin, *The Principles of Deep Learning Theory* (2022; "RYH"), chapters 4–5
and 8–9, and Hanin & Nica (2019), "Finite depth and width corrections to the neural tangent
kernel". The network is the one `theory.kernels.stax` describes with ``Dense(W_std=√C_W,
b_std=√C_b)`` layers (NTK parameterization), widths n_l, all W, b iid N(0, 1):

    z⁽¹⁾ = √(C_W/n₀) W⁽¹⁾ x + √C_b b⁽¹⁾,    z⁽ˡ⁺¹⁾ = √(C_W/n_l) W⁽ˡ⁺¹⁾ σ(z⁽ˡ⁾) + √C_b b⁽ˡ⁺¹⁾,

and ⟨f⟩_K is the expectation of f(z) over z ~ N(0, K).

Infinite width (RYH §4.3, §5.1):

    K⁽¹⁾ = C_b + C_W |x|²/n₀,     K⁽ˡ⁺¹⁾ = C_b + C_W ⟨σ²⟩_{K⁽ˡ⁾},
    χ_∥(K) = C_W d⟨σ²⟩_K/dK = (C_W / 2K²) ⟨σ²(z² − K)⟩_K,     χ_⊥(K) = C_W ⟨σ'²⟩_K,
    Θ⁽¹⁾ = K⁽¹⁾,     Θ⁽ˡ⁺¹⁾ = K⁽ˡ⁺¹⁾ + χ_⊥(K⁽ˡ⁾) Θ⁽ˡ⁾     (the NTK, every parameter trained).

χ_∥ is the slope of the kernel map at K, χ_⊥ the slope of the two-input map along the
perpendicular direction: at a fixed point K* with the two inputs at K* and correlation
ρ = 1 − ε, one layer maps ε ↦ χ_⊥(K*) ε + o(ε) for smooth σ. An initialization is *critical*
when χ_∥(K*) = χ_⊥(K*) = 1 at a fixed point K* = C_b + C_W ⟨σ²⟩_{K*}: deep signals then
neither explode nor vanish, and correlations approach 1 by a power law instead of
exponentially. Solving: g(K) = ⟨σ²⟩_K, h(K) = ⟨σ'²⟩_K; χ_∥ = χ_⊥ at K* means g'(K*) = h(K*),
then C_W = 1/h(K*) and C_b = K* − C_W g(K*) (which must be ≥ 0). Universality classes
(RYH §5.2–5.3):

- *scale-invariant*: σ(x) = a₊x (x > 0), a₋x (x < 0). g(K) = (a₊² + a₋²)K/2 and g' = h for
  every K: C_W = 2/(a₊² + a₋²), C_b = 0, every K is a fixed point (ReLU: C_W = 2).
- *K* = 0*: σ(0) = 0, σ₁ = σ'(0) ≠ 0 and a₁ = σ₃/σ₁ + (3/4)(σ₂/σ₁)² < 0 (σₖ the k-th
  derivative at 0): C_b = 0, C_W = 1/σ₁², and K⁽ˡ⁾ ≈ 1/(−a₁ l) at large l (tanh: a₁ = −2,
  K⁽ˡ⁾ ≈ 1/(2l)).
- otherwise *none*: an activation may still have a critical point with K* > 0 (GELU, Swish),
  found by solving g'(K) = h(K) above; or none at all (sigmoid: σ(0) ≠ 0 and no root with
  C_b ≥ 0), and then `critical_initialization` raises `NoCriticalPointError`.

Finite width, leading order in 1/n (RYH §4.4). Conditional on layer l, z⁽ˡ⁺¹⁾ is Gaussian with
variance G_l = C_b + (C_W/n_l) Σ_j σ(z_j⁽ˡ⁾)², so E[z⁴] = 3 E[G²] and the fourth cumulant
E[z⁴] − 3E[z²]² = 3 Var G_l. Writing V̂⁽ˡ⁺¹⁾ = Var G_l,

    V̂⁽¹⁾ = 0,    V̂⁽ˡ⁺¹⁾ = (C_W²/n_l) (⟨σ⁴⟩ − ⟨σ²⟩²)_{K⁽ˡ⁾} + χ_∥(K⁽ˡ⁾)² V̂⁽ˡ⁾ + O(1/n²),

the first term the fluctuation of the n_l independent σ_j² given layer l − 1, the second the
shared fluctuation of layer l − 1 carried through the slope of ⟨σ²⟩. RYH's four-point vertex is
V⁽ˡ⁺¹⁾ = n_l V̂⁽ˡ⁺¹⁾, and the normalized vertex V⁽ˡ⁾/(n (K⁽ˡ⁾)²) = V̂⁽ˡ⁾/(K⁽ˡ⁾)² is the excess
kurtosis E[z⁴]/(3E[z²]²) − 1 at this order. At criticality with equal widths: ReLU
V/K² = 5(l − 1), linear 2(l − 1) (`scale_invariant_closed_form` derives them with sympy).
For scale-invariant σ with C_b = 0 the recursion is exact at any width: with
r = ⟨σ⁴⟩/⟨σ²⟩² = 6(a₊⁴ + a₋⁴)/(a₊² + a₋²)², E[G_l² | G_{l−1}] = (1 + (r − 1)/n_l) G_{l−1}², so

    E[z⁽ᴸ⁾⁴] / (3 E[z⁽ᴸ⁾²]²) = Π_{l<L} (1 + (r − 1)/n_l)       (ReLU: (1 + 5/n)^{L−1}).

Monte Carlo (`sample_networks`) draws finite networks vectorized with ``vmap`` (networks
spread over all local devices) and returns per-network moments of every layer and the NTK
Θ(x, x); its default method draws each layer's weights only through the two Gaussian vectors
the single-input forward and backward passes see (exact in distribution; see
`sample_networks`), O(n·L) work per network instead of O(n²·L).

All theory functions compute in float64 and return numpy arrays or Python floats.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from theory.kernels import dual, stax

__all__ = [
    "Activation",
    "CriticalPoint",
    "NoCriticalPointError",
    "NetworkSamples",
    "as_activation",
    "kernel_recursion",
    "susceptibilities",
    "fixed_point",
    "critical_initialization",
    "critical_points",
    "universality_class",
    "correlation_flow",
    "ntk_recursion",
    "vertex_recursion",
    "scale_invariant_kurtosis",
    "scale_invariant_closed_form",
    "scale_invariant_ntk_variance",
    "sample_networks",
    "kurtosis_estimate",
    "ntk_moments_estimate",
]


class NoCriticalPointError(ValueError):
    """The activation has no initialization with χ_∥ = χ_⊥ = 1 (and C_b ≥ 0)."""


# --------------------------------------------------------------------------- activations


def _half_line_rule(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes tᵢ ≥ 0 and weights wᵢ with Σ wᵢ g(tᵢ) = E[g(|u|)], u ~ N(0, 1), exact for g a
    polynomial in t² of degree < 2·nodes (generalized Gauss–Laguerre, α = −1/2, in s = t²/2)."""
    import scipy.special

    s, w = scipy.special.roots_genlaguerre(nodes, -0.5)
    return np.sqrt(2 * s), w / math.sqrt(math.pi)


@dataclasses.dataclass(frozen=True, eq=False)
class Activation:
    """An activation σ with the single-input Gaussian expectations criticality needs.

    ⟨σ²⟩_K and ⟨σ'²⟩_K come from the layer's dual (`theory.kernels.dual`) when it is a closed
    form, else from 1-D quadrature of σ: E[f(z)] = E[f(√K|u|) + f(−√K|u|)]/2, u ~ N(0, 1), by
    the half-line rule of ``nodes`` nodes (`_half_line_rule`), which is exact for piecewise
    polynomials with their kink at 0 (ReLU's powers) and converges geometrically for smooth σ.
    ⟨σ⁴⟩_K always uses the quadrature. Build with `as_activation`.
    """

    name: str
    fn: Callable
    derivative: Callable
    pair: dual.Pair | None  # a closed-form dual, else None
    two_point: dual.Pair  # the dual used for two inputs (closed form or 2-D quadrature)
    nodes: int = 160

    def _expect(self, f: Callable, k: jax.Array) -> jax.Array:
        t, w = _half_line_rule(self.nodes)
        t, w = jnp.asarray(t, k.dtype), jnp.asarray(w, k.dtype)
        z = jnp.sqrt(k)[..., None] * t
        return jnp.sum(w * (f(z) + f(-z)), axis=-1) / 2

    def sigma2(self, k: jax.Array) -> jax.Array:
        """⟨σ²⟩_K."""
        if self.pair is not None:
            return dual.diagonal(self.pair, k)
        return self._expect(lambda z: self.fn(z) ** 2, k)

    def dsigma2(self, k: jax.Array) -> jax.Array:
        """d⟨σ²⟩_K/dK (autodiff of `sigma2`)."""
        return jnp.vectorize(jax.grad(lambda q: self.sigma2(q)))(k)

    def dsigma_sq(self, k: jax.Array) -> jax.Array:
        """⟨σ'²⟩_K."""
        if self.pair is not None:
            return self.pair(k, k, k, True, True)[1]
        return self._expect(lambda z: self.derivative(z) ** 2, k)

    def sigma4(self, k: jax.Array) -> jax.Array:
        """⟨σ⁴⟩_K."""
        return self._expect(lambda z: self.fn(z) ** 4, k)

    def sigma2_he4(self, k: jax.Array) -> jax.Array:
        """⟨σ² He₄(z/√K)⟩_K = K² d²⟨σ²⟩_K/dK² · 4 (He₄(u) = u⁴ − 6u² + 3), by quadrature."""
        return self._expect(
            lambda z: (
                self.fn(z) ** 2 * ((z * z) ** 2 / (k * k)[..., None] - 6 * z * z / k[..., None] + 3)
            ),
            k,
        )

    def taylor_at_zero(self) -> tuple[float, float, float, float]:
        """(σ(0), σ'(0), σ''(0), σ'''(0)) by autodiff."""
        with jax.enable_x64(True):
            x = jnp.float64(0.0)
            d1 = jax.grad(self.fn)
            d2 = jax.grad(d1)
            return tuple(float(f(x)) for f in (self.fn, d1, d2, jax.grad(d2)))


def _fn_key(f: Any) -> Any:
    """A hashable key equal for equal functions made by the same factory: a Python function's
    code, closure values and defaults (so two fresh ``stax.Relu()`` layers share compiled
    code), else the object itself."""
    code = getattr(f, "__code__", None)
    if code is None:
        return f
    cells = tuple(c.cell_contents for c in (f.__closure__ or ()))
    key = (code, tuple(_fn_key(c) if callable(c) else c for c in cells), f.__defaults__)
    try:
        hash(key)
    except TypeError:
        return f
    return key


def _activation_key(activation: Any) -> Any:
    info = stax.activation_info(activation)
    if info is None:
        return _fn_key(activation) if callable(activation) else activation
    # a quadrature dual is fixed by φ, φ' and the node count in the name; a closed form by itself
    pair = _fn_key(info.pair) if info.exact else None
    return (info.name, info.exact, _fn_key(info.fn), _fn_key(info.derivative), pair)


_ACTIVATIONS: dict = {}


def as_activation(activation: Any, nodes: int = 160) -> Activation:
    """See `_as_activation`; cached by what the activation is (not by object identity), so
    compiled maps and samplers are reused across fresh ``stax.Relu()`` layers."""
    if isinstance(activation, Activation):
        return activation
    try:
        key = (_activation_key(activation), nodes)
        hash(key)
    except TypeError:
        return _as_activation(activation, nodes)
    act = _ACTIVATIONS.get(key)
    if act is None:
        if len(_ACTIVATIONS) > 256:
            _ACTIVATIONS.clear()
        act = _ACTIVATIONS[key] = _as_activation(activation, nodes)
    return act


def _as_activation(activation: Any, nodes: int = 160) -> Activation:
    """An `Activation` from a ``stax`` activation layer (``stax.Relu()``, ``stax.Tanh()``,
    ``stax.Gelu()``, …) or a scalar JAX function σ (e.g. ``jnp.tanh``), which then uses
    quadrature throughout (``nodes`` nodes for single inputs, 2-D Gauss–Hermite of ``nodes``/4
    per axis for two inputs)."""
    if isinstance(activation, Activation):
        return activation
    if not isinstance(nodes, int) or isinstance(nodes, bool) or not 8 <= nodes <= 300:
        # scipy's generalized Gauss–Laguerre weights are NaN beyond ~350 nodes
        raise ValueError(f"nodes must be an integer in [8, 300], got {nodes!r}")
    info = stax.activation_info(activation)
    if info is None and isinstance(activation, tuple) and len(activation) == 3:
        raise ValueError(
            "activation must be an elementwise stax layer (stax.Relu(), stax.Tanh(), …) or a "
            f"scalar function; got a layer that is not elementwise: {activation[2]!r}"
        )
    if info is not None:
        if info.fn is None:
            raise ValueError(f"activation {info.name} has no function σ (built without fn)")
        fn, name = info.fn, info.name
        pair = info.pair if info.exact else None
        two_point = info.pair if info.pair is not None else dual.gauss_hermite(fn, nodes // 4)
        deriv = info.derivative
    elif callable(activation):
        fn, name = activation, getattr(activation, "__name__", "activation")
        pair, two_point, deriv = None, dual.gauss_hermite(fn, max(nodes // 4, 8)), None
    else:
        raise TypeError(
            f"activation must be a stax activation layer or a callable, got {activation!r}"
        )
    if deriv is None:
        deriv = jnp.vectorize(jax.grad(fn))
    return Activation(name, fn, deriv, pair, two_point, nodes)


def _check_positive(name: str, value, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        rule = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {rule}, got {value!r}")
    return v


def _check_depth(depth) -> int:
    if not isinstance(depth, int | np.integer) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    return int(depth)


def _finite(name: str, a: np.ndarray, hint: str = "") -> np.ndarray:
    if not np.all(np.isfinite(a)):
        raise FloatingPointError(
            f"{name}: non-finite values in float64 (the kernel overflows: {hint or 'lower C_W'})"
        )
    return a


# ------------------------------------------------------------------- single-input theory


@functools.lru_cache(maxsize=64)
def _compiled(act: Activation, which: str):
    """jitted float64 maps K -> quantity, cached per activation."""
    f = {
        "sigma2": act.sigma2,
        "dsigma2": act.dsigma2,
        "dsigma_sq": act.dsigma_sq,
        "sigma4": act.sigma4,
    }[which]
    return jax.jit(f)


def _eval(act: Activation, which: str, k) -> np.ndarray:
    with jax.enable_x64(True):
        return np.asarray(_compiled(act, which)(jnp.asarray(k, jnp.float64)))


@functools.lru_cache(maxsize=64)
def _scan_fn(act: Activation, depth: int, body: str):
    """A jitted float64 ``lax.scan`` over ``depth`` layers of the kernel recursion, emitting
    per layer (K, χ_∥, χ_⊥[, C_W²(⟨σ⁴⟩ − ⟨σ²⟩²)]); C_b, C_W, K⁽¹⁾ are traced arguments."""

    def run(c_b, c_w, k1):
        def f(k, _):
            out = (k, c_w * act.dsigma2(k), c_w * act.dsigma_sq(k))
            g = act.sigma2(k)
            if body == "vertex":
                he4 = act.sigma2_he4(k)
                out = out + (c_w**2 * (act.sigma4(k) - g * g), c_w * he4 / (8 * k * k))
            return c_b + c_w * g, out

        return jax.lax.scan(f, k1, None, length=depth)[1]

    return jax.jit(run)


def _depth_scan(act: Activation, c_b: float, c_w: float, k1: float, depth: int, body: str):
    """Per-layer outputs of `_scan_fn` as float64 numpy arrays."""
    with jax.enable_x64(True):
        args = (jnp.float64(c_b), jnp.float64(c_w), jnp.float64(k1))
        return [np.asarray(o) for o in _scan_fn(act, depth, body)(*args)]


def kernel_recursion(activation, C_b: float, C_W: float, K1: float, depth: int) -> np.ndarray:
    """K⁽¹⁾, …, K⁽ᵈᵉᵖᵗʰ⁾ from K⁽¹⁾ = ``K1`` by K⁽ˡ⁺¹⁾ = C_b + C_W ⟨σ²⟩_{K⁽ˡ⁾} (float64).

    ``K1`` is the first layer's kernel C_b + C_W |x|²/n₀; this equals the diagonal of the
    ``stax`` NNGP of ``serial(Dense(√C_W, √C_b), σ, …)`` after each Dense layer."""
    act = as_activation(activation)
    c_b, c_w = _check_positive("C_b", C_b, True), _check_positive("C_W", C_W)
    k1, depth = _check_positive("K1", K1, True), _check_depth(depth)
    return _finite("kernel_recursion", _depth_scan(act, c_b, c_w, k1, depth, "kernel")[0])


def susceptibilities(activation, C_W: float, K) -> tuple[np.ndarray, np.ndarray]:
    """(χ_∥(K), χ_⊥(K)) = (C_W d⟨σ²⟩_K/dK, C_W ⟨σ'²⟩_K), elementwise over an array ``K`` > 0
    (floats for a scalar ``K``)."""
    act = as_activation(activation)
    c_w = _check_positive("C_W", C_W)
    k = np.asarray(K, np.float64)
    if not np.all(np.isfinite(k)) or np.any(k <= 0):
        raise ValueError(f"K must be finite and > 0, got {K!r}")
    par, perp = c_w * _eval(act, "dsigma2", k), c_w * _eval(act, "dsigma_sq", k)
    return (float(par), float(perp)) if k.ndim == 0 else (par, perp)


class FixedPoint(NamedTuple):
    """A fixed point K* = C_b + C_W ⟨σ²⟩_{K*} with χ_∥(K*) (stable when |χ_∥| < 1)."""

    K_star: float
    chi_parallel: float
    chi_perpendicular: float


def _fixed_point_on_ray(act, c_b, c_w, k: float, direction: float) -> float | None:
    """The first K beyond ``k`` in ``direction`` with g(K) = C_b + C_W⟨σ²⟩_K − K = 0: a sign
    change (refined by Brent's method) or a tangent zero (a local minimum of |g| that is 0 to
    1e-12 relative, refined by bounded minimization). None if there is none in (1e-12 k, 1e8 k)."""
    import scipy.optimize

    t = np.geomspace(1e-12, 0.5, 3000)
    if direction > 0:
        ks = np.concatenate([k * (1 + t), k * np.geomspace(1.5, 1e8, 3000)])
    else:
        ks = np.concatenate([k * (1 - t), k * np.geomspace(0.5, 1e-12, 3000)[1:]])
    g = c_b + c_w * _eval(act, "sigma2", ks) - ks
    ks, g = (
        np.concatenate([[k], ks]),
        np.concatenate([[c_b + c_w * _eval(act, "sigma2", k) - k], g]),
    )

    def gap(x):
        return float(c_b + c_w * _eval(act, "sigma2", x) - x)

    for i in range(1, len(ks)):
        if not np.isfinite(g[i]):
            return None
        if np.sign(g[i]) != np.sign(g[i - 1]):
            lo, hi = sorted((ks[i - 1], ks[i]))
            return float(scipy.optimize.brentq(gap, lo, hi, xtol=1e-300, rtol=1e-15))
        if i + 1 < len(ks) and abs(g[i]) <= abs(g[i - 1]) and abs(g[i]) <= abs(g[i + 1]):
            lo, hi = sorted((ks[i - 1], ks[i + 1]))
            res = scipy.optimize.minimize_scalar(
                lambda x: abs(gap(x)),
                bounds=(lo, hi),
                method="bounded",
                options={"xatol": 1e-14 * hi},
            )
            if abs(res.fun) <= 1e-12 * res.x:
                return float(res.x)
    return None


def fixed_point(
    activation, C_b: float, C_W: float, K1: float = 1.0, max_depth: int = 2000
) -> FixedPoint:
    """The fixed point the kernel recursion reaches from ``K1``: ``max_depth`` layers are
    iterated, then the first zero of g(K) = C_b + C_W⟨σ²⟩_K − K beyond the last iterate in the
    direction the flow moves is solved for (a sign change, or a tangent zero where the flow
    approaches a half-stable fixed point like GELU's and Swish's critical points by a power law;
    iteration alone stops short there; a tangent zero is determined only to about
    √(ε/|g''|) relative, 1e-6 for GELU and Swish). Returns ``K_star = inf`` when the kernel grows
    without bound and 0.0 when it vanishes (with χ's at K = 1e-12)."""
    act = as_activation(activation)
    c_b, c_w = _check_positive("C_b", C_b, True), _check_positive("C_W", C_W)
    k = _check_positive("K1", K1, True)
    max_depth = _check_depth(max_depth)
    ks = _depth_scan(act, c_b, c_w, k, max_depth, "kernel")[0]
    finite = ks[np.isfinite(ks) & (ks < 1e100)]
    if len(finite) < len(ks):
        return FixedPoint(math.inf, math.inf, math.inf)
    k = float(ks[-1])
    step = c_b + c_w * float(_eval(act, "sigma2", k)) - k
    if k > 0 and abs(step) > 1e-14 * k:
        found = _fixed_point_on_ray(act, c_b, c_w, k, step)
        if found is None:
            if step > 0:
                return FixedPoint(math.inf, math.inf, math.inf)
            k = 0.0
        else:
            k = found
    if k < 1e-10 and c_b == 0:
        k_eval, k = 1e-12, 0.0
    else:
        k_eval = k
    chi_par, chi_perp = susceptibilities(act, c_w, k_eval)
    return FixedPoint(float(k), float(chi_par), float(chi_perp))


class CriticalPoint(NamedTuple):
    """A critical initialization: χ_∥(K*) = χ_⊥(K*) = 1 at the fixed point K*. ``K_star`` is
    None for the scale-invariant class, where every K is a fixed point."""

    C_b: float
    C_W: float
    K_star: float | None


def _is_scale_invariant(act: Activation) -> bool:
    ks = np.geomspace(1e-2, 1e2, 9)
    g = _eval(act, "sigma2", ks)
    h = _eval(act, "dsigma_sq", ks)
    ratio = g / ks
    return bool(
        np.all(np.abs(ratio - ratio[0]) <= 1e-9 * abs(ratio[0]))
        and np.all(np.abs(h - h[0]) <= 1e-9 * abs(h[0]))
        and abs(ratio[0] - h[0]) <= 1e-9 * abs(h[0])
        and h[0] > 0
    )


def _k_zero_coefficient(act: Activation) -> float | None:
    """a₁ = σ₃/σ₁ + (3/4)(σ₂/σ₁)² when σ(0) = 0 and σ'(0) ≠ 0, else None."""
    s0, s1, s2, s3 = act.taylor_at_zero()
    if abs(s0) > 1e-12 or abs(s1) < 1e-12:
        return None
    return s3 / s1 + 0.75 * (s2 / s1) ** 2


def universality_class(activation) -> str:
    """RYH's universality class of σ: ``"scale-invariant"`` (ReLU, leaky ReLU, linear),
    ``"K*=0"`` (σ(0) = 0, σ'(0) ≠ 0, a₁ < 0: tanh, sin, erf) or ``"none"`` (GELU, Swish,
    sigmoid, …; `critical_points` may still find a critical point with K* > 0)."""
    act = as_activation(activation)
    if _is_scale_invariant(act):
        return "scale-invariant"
    a1 = _k_zero_coefficient(act)
    if a1 is not None and a1 < 0:
        return "K*=0"
    return "none"


def critical_points(
    activation, k_range: tuple[float, float] = (1e-4, 1e4), grid: int = 400
) -> list[CriticalPoint]:
    """Every critical initialization of σ: the scale-invariant line (one entry, K* None), the
    K* = 0 point (C_b = 0, C_W = 1/σ'(0)²) when a₁ < 0, and each K* > 0 in ``k_range`` with
    ⟨σ²⟩'(K*) = ⟨σ'²⟩(K*) (sign changes on a log grid of ``grid`` points, refined by Brent's
    method to full float64 precision) whose C_b = K* − ⟨σ²⟩_{K*}/⟨σ'²⟩_{K*} is ≥ 0."""
    import scipy.optimize

    act = as_activation(activation)
    if _is_scale_invariant(act):
        h = float(_eval(act, "dsigma_sq", 1.0))
        return [CriticalPoint(0.0, 1.0 / h, None)]
    out = []
    a1 = _k_zero_coefficient(act)
    if a1 is not None and a1 < 0:
        out.append(CriticalPoint(0.0, 1.0 / act.taylor_at_zero()[1] ** 2, 0.0))
    lo, hi = k_range
    ks = np.geomspace(lo, hi, grid)

    def gap(k):  # χ_∥/χ_⊥ − 1, independent of C_W
        return _eval(act, "dsigma2", k) / _eval(act, "dsigma_sq", k) - 1

    f = gap(ks)
    for i in np.flatnonzero(np.isfinite(f[:-1]) & np.isfinite(f[1:]) & (f[:-1] * f[1:] < 0)):
        k_star = scipy.optimize.brentq(
            lambda k: float(gap(k)), ks[i], ks[i + 1], xtol=1e-300, rtol=1e-15, maxiter=200
        )
        c_w = 1.0 / float(_eval(act, "dsigma_sq", k_star))
        c_b = k_star - c_w * float(_eval(act, "sigma2", k_star))
        if c_b >= -1e-12 * k_star:
            out.append(CriticalPoint(max(c_b, 0.0), c_w, float(k_star)))
    return out


def critical_initialization(activation, **kwargs) -> CriticalPoint:
    """``(C_b, C_W, K_star)`` with χ_∥ = χ_⊥ = 1: the scale-invariant line (ReLU: (0, 2,
    None)), else the K* = 0 point (tanh: (0, 1, 0)), else the smallest K* > 0 (GELU, Swish).
    Raises `NoCriticalPointError` when σ has none (e.g. sigmoid). ``kwargs`` go to
    `critical_points`."""
    points = critical_points(activation, **kwargs)
    if not points:
        act = as_activation(activation)
        s0 = act.taylor_at_zero()[0]
        why = (
            f"σ(0) = {s0:.3g} ≠ 0 rules out K* = 0"
            if abs(s0) > 1e-12
            else "a₁ = σ₃/σ₁ + (3/4)(σ₂/σ₁)² ≥ 0 (or σ'(0) = 0) rules out K* = 0"
        )
        raise NoCriticalPointError(
            f"{act.name} has no critical initialization: {why}, and no K* in "
            f"{kwargs.get('k_range', (1e-4, 1e4))} solves χ_∥ = χ_⊥ with C_b ≥ 0"
        )
    return points[0]


# ------------------------------------------------------------------------ two inputs


class CorrelationFlow(NamedTuple):
    """Per layer l = 1..depth: the two variances, the covariance and ρ = K12/√(K11 K22)."""

    K11: np.ndarray
    K22: np.ndarray
    K12: np.ndarray
    rho: np.ndarray


def correlation_flow(
    activation, C_b: float, C_W: float, K11: float, K22: float, K12: float, depth: int
) -> CorrelationFlow:
    """The 2×2 kernel of two inputs through ``depth`` layers (float64), from the first
    layer's (K11, K22, K12): K_ab⁽ˡ⁺¹⁾ = C_b + C_W E[σ(z_a)σ(z_b)] under N(0, K⁽ˡ⁾), by the
    activation's dual. At a fixed point K* with χ_⊥(K*) ≠ 1 and smooth σ, 1 − ρ changes by the
    factor χ_⊥(K*) per layer; at criticality it approaches its fixed point by a power law
    (ReLU: 1 − ρ⁽ˡ⁾ ≈ 9π²/(2l²))."""
    act = as_activation(activation)
    c_b, c_w = _check_positive("C_b", C_b, True), _check_positive("C_W", C_W)
    k11, k22 = _check_positive("K11", K11), _check_positive("K22", K22)
    depth = _check_depth(depth)
    if not abs(float(K12)) <= math.sqrt(k11 * k22):
        raise ValueError(f"K12 must satisfy |K12| <= √(K11 K22), got {K12!r}")
    pair = act.two_point
    with jax.enable_x64(True):

        @jax.jit
        def run(k):
            def f(k, _):
                k11, k22, k12 = k[0], k[1], k[2]
                v = jnp.stack([k11, k22])
                var = dual.diagonal(pair, v)
                cov = pair(k12[None, None], k11[None, None], k22[None, None], False, False)[0]
                nxt = jnp.stack([c_b + c_w * var[0], c_b + c_w * var[1], c_b + c_w * cov[0, 0]])
                return nxt, k

            return jax.lax.scan(f, k, None, length=depth)[1]

        ks = np.asarray(run(jnp.asarray([k11, k22, float(K12)], jnp.float64)))
    _finite("correlation_flow", ks)
    rho = ks[:, 2] / np.sqrt(ks[:, 0] * ks[:, 1])
    return CorrelationFlow(ks[:, 0], ks[:, 1], ks[:, 2], rho)


# -------------------------------------------------------------------------- NTK, vertex


def ntk_recursion(activation, C_b: float, C_W: float, K1: float, depth: int) -> np.ndarray:
    """Θ⁽¹⁾, …, Θ⁽ᵈᵉᵖᵗʰ⁺¹⁾ for one input: Θ⁽¹⁾ = K⁽¹⁾, Θ⁽ˡ⁺¹⁾ = K⁽ˡ⁺¹⁾ + χ_⊥(K⁽ˡ⁾) Θ⁽ˡ⁾.
    The last entry is the NTK of a network with ``depth`` hidden layers and a Dense readout
    (the diagonal of ``stax``'s NTK for ``serial(Dense, σ, …, Dense)``)."""
    act = as_activation(activation)
    c_b, c_w = _check_positive("C_b", C_b, True), _check_positive("C_W", C_W)
    k1, depth = _check_positive("K1", K1, True), _check_depth(depth)
    ks, _, chi_perp = _depth_scan(act, c_b, c_w, k1, depth + 1, "kernel")
    theta = np.empty(depth + 1)
    theta[0] = ks[0]
    for i in range(1, depth + 1):
        theta[i] = ks[i] + chi_perp[i - 1] * theta[i - 1]
    return _finite("ntk_recursion", theta)


class Vertex(NamedTuple):
    """Per layer l = 1..depth: K⁽ˡ⁾, V̂⁽ˡ⁾ = (E[z⁴] − 3E[z²]²)/3 at order 1/n, the normalized
    vertex V̂/K² (the excess kurtosis E[z⁴]/(3E[z²]²) − 1 at this order), χ_∥, χ_⊥, and δK⁽ˡ⁾,
    the order-1/n shift of the finite-width E[z²] from K⁽ˡ⁾."""

    K: np.ndarray
    V_hat: np.ndarray
    normalized: np.ndarray
    chi_parallel: np.ndarray
    chi_perpendicular: np.ndarray
    K_correction: np.ndarray


def _widths(widths, depth: int) -> np.ndarray:
    w = np.asarray(widths, np.float64)
    if w.ndim == 0:
        w = np.full(max(depth - 1, 0), float(w))
    if w.shape != (max(depth - 1, 0),) or not np.all(np.isfinite(w)) or np.any(w < 1):
        raise ValueError(
            f"widths must be a number >= 1 or depth − 1 = {depth - 1} numbers >= 1 "
            f"(the hidden widths n_1..n_(depth−1)), got {widths!r}"
        )
    return w


def vertex_recursion(
    activation, C_b: float, C_W: float, K1: float, depth: int, widths: float | Sequence[float]
) -> Vertex:
    """The leading-order four-point vertex through ``depth`` layers (module docstring):
    V̂⁽¹⁾ = 0, V̂⁽ˡ⁺¹⁾ = (C_W²/n_l)(⟨σ⁴⟩ − ⟨σ²⟩²)_{K⁽ˡ⁾} + χ_∥(K⁽ˡ⁾)² V̂⁽ˡ⁾, with ``widths``
    one number n or the hidden widths n_1..n_{depth−1}. RYH's V⁽ˡ⁾ = n_{l−1} V̂⁽ˡ⁾.

    Also the 1/n shift of the kernel, E[z²] = K⁽ˡ⁾ + δK⁽ˡ⁾ + O(1/n²): a distribution of
    variance K + δK and fourth cumulant 3V̂ has E[f] = ⟨f⟩_K + δK ⟨f⟩'_K + (3V̂/24)⟨f⁽⁴⁾⟩_K
    + …, and ⟨f⁽⁴⁾⟩_K = ⟨f He₄(z/√K)⟩_K / K², so with f = σ²

        δK⁽¹⁾ = 0,    δK⁽ˡ⁺¹⁾ = χ_∥(K⁽ˡ⁾) δK⁽ˡ⁾ + (C_W V̂⁽ˡ⁾ / (8 (K⁽ˡ⁾)²)) ⟨σ² He₄(z/√K⁽ˡ⁾)⟩,

    zero for scale-invariant σ (whose E[z²] is exact at any width)."""
    act = as_activation(activation)
    c_b, c_w = _check_positive("C_b", C_b, True), _check_positive("C_W", C_W)
    k1, depth = _check_positive("K1", K1, True), _check_depth(depth)
    n = _widths(widths, depth)
    ks, chi_par, chi_perp, var4, he4 = _depth_scan(act, c_b, c_w, k1, depth, "vertex")
    v, dk = np.zeros(depth), np.zeros(depth)
    for i in range(1, depth):
        v[i] = var4[i - 1] / n[i - 1] + chi_par[i - 1] ** 2 * v[i - 1]
        dk[i] = chi_par[i - 1] * dk[i - 1] + he4[i - 1] * v[i - 1]
    _finite("vertex_recursion", v)
    _finite("vertex_recursion", dk)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalized = np.where(ks > 0, v / ks**2, 0.0)
    return Vertex(ks, v, normalized, chi_par, chi_perp, dk)


def scale_invariant_kurtosis(
    depth: int, widths: float | Sequence[float], a_minus: float = 0.0, a_plus: float = 1.0
) -> float:
    """The exact E[z⁴]/(3E[z²]²) of layer ``depth`` for σ(x) = a₊x (x > 0), a₋x (x < 0) with
    C_b = 0, any C_W and any widths: Π_{l<depth} (1 + (r − 1)/n_l), r = 6(a₊⁴ + a₋⁴)/(a₊² +
    a₋²)² (ReLU: (1 + 5/n)^{depth−1}; linear: (1 + 2/n)^{depth−1})."""
    depth = _check_depth(depth)
    n = _widths(widths, depth)
    a, b = float(a_minus), float(a_plus)
    if a * a + b * b == 0:
        raise ValueError("a_minus and a_plus cannot both be 0")
    r = 6 * (a**4 + b**4) / (a * a + b * b) ** 2
    return float(np.prod(1 + (r - 1) / n))


def scale_invariant_closed_form(a_minus=0, a_plus=1) -> dict[str, Any]:
    """Sympy closed forms for σ(x) = a₊x (x > 0), a₋x (x < 0) at variance K (symbol ``K``):
    ⟨σ²⟩, ⟨σ'²⟩, ⟨σ⁴⟩, χ_∥ and χ_⊥ at C_W (symbol ``C_W``), the critical C_W, and the vertex
    slope (C_W²(⟨σ⁴⟩ − ⟨σ²⟩²)/K² at criticality: V⁽ˡ⁾/K² = slope·(l − 1)); integrals done
    by sympy over the Gaussian density."""
    import sympy as sp

    z = sp.Symbol("z", real=True)
    K, C_W = sp.symbols("K C_W", positive=True)
    a, b = sp.nsimplify(a_minus), sp.nsimplify(a_plus)
    dens = sp.exp(-(z**2) / (2 * K)) / sp.sqrt(2 * sp.pi * K)

    def expect(neg, pos):
        return sp.simplify(
            sp.integrate(neg * dens, (z, -sp.oo, 0)) + sp.integrate(pos * dens, (z, 0, sp.oo))
        )

    s2 = expect((a * z) ** 2, (b * z) ** 2)
    ds2 = expect(a**2, b**2)
    s4 = expect((a * z) ** 4, (b * z) ** 4)
    c_crit = sp.simplify(1 / ds2)
    return {
        "K": K,
        "C_W": C_W,
        "sigma2": s2,
        "dsigma_sq": ds2,
        "sigma4": s4,
        "chi_parallel": sp.simplify(C_W * sp.diff(s2, K)),
        "chi_perpendicular": sp.simplify(C_W * ds2),
        "critical_C_W": c_crit,
        "vertex_slope": sp.simplify(c_crit**2 * (s4 - s2**2) / K**2),
    }


# ---------------------------------------------------------------------------- Monte Carlo


class NetworkSamples(NamedTuple):
    """Per-network statistics of ``S`` random finite networks (float64 numpy arrays):
    ``m2``/``m4`` (S, depth): the mean over the n neurons of layer l of z², z⁴;
    ``ntk`` (S,): Θ(x, x) of the scalar output (every W and b trained, NTK parameterization);
    ``output`` (S,): the output f(x)."""

    m2: np.ndarray
    m4: np.ndarray
    ntk: np.ndarray
    output: np.ndarray


def _network_gaussian(key, fn, dfn, depth, width, c_b, c_w, k1, dtype):
    """One network, weights drawn only through what one input sees (exact in distribution).

    For W with iid N(0, 1) entries and a fixed vector a (unit â = a/|a|), W = g âᵀ + W'(I − ââᵀ)
    with g = W â ~ N(0, I) independent of W'. Forward, W a = |a| g. Backward, Wᵀ δ =
    â (g·δ) + (I − ââᵀ) W'ᵀ δ, and W' enters nothing but this product, so given δ (which depends
    on later layers only) (I − ââᵀ) W'ᵀ δ ~ |δ| (I − ââᵀ) ξ with ξ ~ N(0, I) fresh. Hence per
    layer two Gaussian n-vectors replace the n² weights.
    """
    n = width
    kz, kf, kb = jax.random.split(key, 3)
    g = jax.random.normal(kf, (depth + 1, n), dtype)  # W⁽ˡ⁺¹⁾ â⁽ˡ⁾, l = 1..depth (row 0 unused)
    xi = jax.random.normal(kb, (depth + 1, n), dtype)  # backward fresh directions
    bias = jax.random.normal(jax.random.fold_in(kb, 1), (depth + 1, n), dtype)
    sb, sw = jnp.sqrt(jnp.asarray(c_b, dtype)), jnp.sqrt(jnp.asarray(c_w / n, dtype))
    z1 = jnp.sqrt(jnp.asarray(k1, dtype)) * jax.random.normal(kz, (n,), dtype)

    def forward(z, gb):  # layer l: z⁽ˡ⁾ -> z⁽ˡ⁺¹⁾ (the readout's row 0 after the last layer)
        gl, bl = gb
        a = fn(z)
        norm = jnp.sqrt(jnp.sum(a * a))
        unit = a / jnp.where(norm > 0, norm, 1)
        return sw * norm * gl + sb * bl, (z, norm, unit)

    out, (zs, norms, units) = jax.lax.scan(forward, z1, (g[1:], bias[1:]))
    f = out[0]
    # backward: δ⁽ˡ⁾ = ∂f/∂z⁽ˡ⁾ = σ'(z⁽ˡ⁾) ⊙ √(C_W/n) W⁽ˡ⁺¹⁾ᵀ δ⁽ˡ⁺¹⁾, the readout's δ being 1
    u = units[-1]
    wt_delta = sw * (u * g[depth, 0] + (xi[depth] - u * (u @ xi[depth])))
    theta0 = c_b + (c_w / n) * norms[-1] ** 2
    first = jnp.arange(depth) == 0
    prev_norms = jnp.concatenate([jnp.zeros((1,), dtype), norms[:-1]])
    prev_units = jnp.concatenate([jnp.zeros((1, n), dtype), units[:-1]])

    def backward(carry, xs):
        theta, wt = carry
        z, is_first, pn, pu, gl, xl = xs
        delta = dfn(z) * wt
        d2 = jnp.sum(delta * delta)
        coef = jnp.where(is_first, jnp.asarray(k1, dtype), c_b + (c_w / n) * pn**2)
        perp = xl - pu * (pu @ xl)
        return (theta + coef * d2, sw * (pu * (gl @ delta) + jnp.sqrt(d2) * perp)), None

    xs = (zs, first, prev_norms, prev_units, g[:-1], xi[:-1])
    (theta, _), _ = jax.lax.scan(backward, (theta0, wt_delta), xs, reverse=True)
    zz = zs**2
    return jnp.mean(zz, 1), jnp.mean(zz * zz, 1), theta, f


def _network_dense(key, fn, dfn, depth, width, c_b, c_w, k1, dtype):
    """One network with explicit n × n weights (the plain route, for checking the above):
    Θ = Σ_l (C_b + C_W|σ(z⁽ˡ⁻¹⁾)|²/n) |∂f/∂z⁽ˡ⁾|² with the first layer's factor K⁽¹⁾, the
    gradients by autodiff."""
    n = width
    keys = jax.random.split(key, depth + 2)
    z1 = jnp.sqrt(jnp.asarray(k1, dtype)) * jax.random.normal(keys[0], (n,), dtype)
    sb, sw = jnp.sqrt(jnp.asarray(c_b, dtype)), jnp.sqrt(jnp.asarray(c_w / n, dtype))
    weights = [
        (
            jax.random.normal(keys[l], (n if l < depth else 1, n), dtype),
            jax.random.normal(jax.random.fold_in(keys[l], 1), (n if l < depth else 1,), dtype),
        )
        for l in range(1, depth + 1)
    ]

    def forward(eps):
        z, zs, norms = z1 + eps[0], [], []
        for l in range(1, depth + 1):
            zs.append(z)
            a = fn(z)
            norms.append(jnp.sum(a * a))
            w, b = weights[l - 1]
            z = sw * (w @ a) + sb * b
            if l < depth:
                z = z + eps[l]
        return z[0], (zs, norms)

    eps = jnp.zeros((depth, n), dtype)
    deltas, (zs, norms) = jax.grad(forward, has_aux=True)(eps)
    f = forward(eps)[0]
    theta = c_b + (c_w / n) * norms[-1]
    for l in range(depth):
        coef = k1 if l == 0 else c_b + (c_w / n) * norms[l - 1]
        theta = theta + coef * jnp.sum(deltas[l] ** 2)
    zz = jnp.stack(zs) ** 2
    return jnp.mean(zz, 1), jnp.mean(zz * zz, 1), theta, f


@functools.lru_cache(maxsize=32)
def _compiled_sampler(act: Activation, depth, width, dtype, method, batched):
    """jit(vmap) of one network's statistics as a function of (keys, C_b, C_W, K⁽¹⁾): the
    scalars are traced, so new values reuse the compiled code."""
    one = {"gaussian": _network_gaussian, "dense": _network_dense}[method]

    def f(key, c_b, c_w, k1):
        return one(key, act.fn, act.derivative, depth, width, c_b, c_w, k1, dtype)

    return jax.jit(jax.vmap(f, in_axes=(0, None, None, None)) if batched else f)


def _sampler(act: Activation, depth, width, c_b, c_w, k1, dtype, method, batched):
    """``run(keys)`` (``batched``) or ``run(key)``: per-network (m2, m4, Θ, f)."""
    compiled = _compiled_sampler(act, depth, width, jnp.dtype(dtype), method, batched)
    scalars = tuple(jnp.asarray(v, dtype) for v in (c_b, c_w, k1))
    return lambda keys: compiled(keys, *scalars)


def sample_networks(
    activation,
    C_b: float,
    C_W: float,
    K1: float,
    depth: int,
    width: int,
    n_networks: int,
    key: jax.Array | int = 0,
    method: str = "gaussian",
    chunk: int = 1024,
    dtype=jnp.float32,
    progress: bool = False,
) -> NetworkSamples:
    """Monte Carlo over ``n_networks`` random networks of ``depth`` hidden layers of ``width``
    neurons and a scalar Dense readout, at one input whose first-layer kernel is ``K1``.

    ``method="gaussian"`` (default) draws each layer only through the Gaussian vectors one
    input's forward and backward passes see (`_network_gaussian`: exact in distribution for
    every single-input statistic, O(n·depth) per network); ``"dense"`` draws the n × n
    weights and differentiates (O(n²·depth); its chunk is capped so that a chunk's weights stay
    under 256 MiB). Networks are vmapped in chunks of ``chunk``,
    each chunk's networks split over all local devices (a ``jax.sharding.NamedSharding`` of
    the network axis). Sums are formed per network in ``dtype`` and returned in float64."""
    act = as_activation(activation)
    c_b, c_w = _check_positive("C_b", C_b, True), _check_positive("C_W", C_W)
    k1, depth = _check_positive("K1", K1, True), _check_depth(depth)
    for name, v in (("width", width), ("n_networks", n_networks), ("chunk", chunk)):
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if method not in ("gaussian", "dense"):
        raise ValueError(f"method must be 'gaussian' or 'dense', got {method!r}")
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.float32, jnp.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    key = jax.random.key(key) if isinstance(key, int | np.integer) else key
    devices = jax.local_devices()
    if method == "dense":  # keep a chunk's n × n weights under 256 MiB
        per_net = depth * int(width) ** 2 * dtype.itemsize
        chunk = min(chunk, max(len(devices), (256 << 20) // per_net))
    chunk = -(-min(chunk, n_networks) // len(devices)) * len(devices)
    sharding = None
    if len(devices) > 1:
        mesh = jax.sharding.Mesh(np.asarray(devices), ("networks",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("networks"))
    x64 = dtype == jnp.float64
    with jax.enable_x64(x64):
        run = _sampler(act, depth, int(width), c_b, c_w, k1, dtype, method, True)
        keys = jax.random.split(key, n_networks)
        starts = range(0, n_networks, chunk)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"networks (chunks of {chunk})", leave=False)
        parts = []
        for s in starts:
            k = keys[s : s + chunk]
            short = chunk - k.shape[0]
            if short:
                k = jnp.concatenate([k, keys[:short]])  # padding, discarded
            if sharding is not None:
                k = jax.device_put(k, sharding)
            out = [np.asarray(o, np.float64) for o in run(k)]
            parts.append([o[: chunk - short] for o in out])
    m2, m4, ntk, f = (np.concatenate([p[i] for p in parts]) for i in range(4))
    for name, a in (("m2", m2), ("m4", m4), ("ntk", ntk), ("output", f)):
        _finite(f"sample_networks ({name})", a, "use dtype=float64 or lower C_W")
    return NetworkSamples(m2, m4, ntk, f)


def kurtosis_estimate(samples: NetworkSamples) -> tuple[np.ndarray, np.ndarray]:
    """(R̂, standard error) per layer of R = E[z⁴]/(3E[z²]²), from the per-network means
    (independent across networks; neurons within a network are exchangeable, not independent),
    the error by the delta method: Var R̂ ≈ R²(Var m₄/E[m₄]² + 4Var m₂/E[m₂]² −
    4Cov(m₂, m₄)/(E[m₂]E[m₄]))/S."""
    m2, m4 = samples.m2, samples.m4
    s = m2.shape[0]
    if s < 2:
        raise ValueError("kurtosis_estimate needs at least 2 networks")
    e2, e4 = m2.mean(0), m4.mean(0)
    r = e4 / (3 * e2**2)
    v2, v4 = m2.var(0, ddof=1), m4.var(0, ddof=1)
    c = np.mean((m2 - e2) * (m4 - e4), 0) * s / (s - 1)
    rel = v4 / e4**2 + 4 * v2 / e2**2 - 4 * c / (e2 * e4)
    return r, r * np.sqrt(np.maximum(rel, 0) / s)


def ntk_moments_estimate(samples: NetworkSamples) -> dict[str, float]:
    """E[Θ], its standard error, and log(E[Θ²]/E[Θ]²) with a delta-method standard error."""
    t = samples.ntk
    s = t.shape[0]
    if s < 2:
        raise ValueError("ntk_moments_estimate needs at least 2 networks")
    e1, e2 = t.mean(), np.mean(t * t)
    v1, v2 = t.var(ddof=1), np.var(t * t, ddof=1)
    c = np.mean((t - e1) * (t * t - e2)) * s / (s - 1)
    # log e2 − 2 log e1: gradient (1/e2, −2/e1)
    var_log = (v2 / e2**2 + 4 * v1 / e1**2 - 4 * c / (e1 * e2)) / s
    return {
        "mean": float(e1),
        "mean_se": float(math.sqrt(v1 / s)),
        "log_ratio": float(math.log(e2 / e1**2)),
        "log_ratio_se": float(math.sqrt(max(var_log, 0.0))),
    }


def scale_invariant_ntk_variance(
    depth: int, width: float, a_minus: float = 0.0, a_plus: float = 1.0
) -> float:
    r"""Var Θ / E[Θ]² of Θ(x, x) at leading order in 1/n for σ(x) = a₊x (x > 0), a₋x (x < 0)
    at criticality with C_b = 0, ``depth`` hidden layers of ``width`` n and a Dense readout
    (L' = depth + 1 weight layers; `sample_networks`' network).

    Θ = K Σ_{l=1}^{L'} F_l B_l with the forward factor F_l = Π_{j<l} X_j (the layer-l input
    norm over K) and the backward factor B_l = Π_{j≥l} Y_j (|∂f/∂z⁽ˡ⁾|²), where per layer
    X = (C_W/n)Σ σ(g_i)² and Y = (C_W/n)Σ σ'(g_i)² ξ_i² (g, ξ iid N(0, 1)) have mean 1,
    variance (r − 1)/n each (r = ⟨σ⁴⟩/⟨σ²⟩² = 6(a₊⁴ + a₋⁴)/(a₊² + a₋²)²) and covariance
    (r/3 − 1)/n (they share the signs of g). Layers are independent at this order, so with
    E[Θ] = L'K exactly,

        Var Θ / E[Θ]² = (1/(L'² n)) Σ_{l,m=1}^{L'} [(r − 1)(min(l,m) − 1 + L' − max(l,m))
                                                   + (r/3 − 1)|l − m|]  + O(1/n²).

    ReLU (r = 6): depth·(11·depth + 7)/(3n(depth + 1)) → (11/3)·depth/n at large depth."""
    depth = _check_depth(depth)
    n = _check_positive("width", width)
    a, b = float(a_minus), float(a_plus)
    if a * a + b * b == 0:
        raise ValueError("a_minus and a_plus cannot both be 0")
    r = 6 * (a**4 + b**4) / (a * a + b * b) ** 2
    layers = depth + 1
    i = np.arange(1, layers + 1)
    lo, hi = np.minimum.outer(i, i), np.maximum.outer(i, i)
    total = (r - 1) * (lo - 1 + layers - hi) + (r / 3 - 1) * (hi - lo)
    return float(total.sum() / (layers**2 * n))
