"""Elementwise layers (activations): φ applied per unit; the kernel maps through φ's dual
(`theory.kernels.dual`): K ← k(K), Θ ← Θ · k̇(K)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from theory.kernels import dual
from theory.kernels.kernel import (
    Kernel,
)
from theory.kernels.stax._core import (
    ElementwiseRule,
    KernelFn,
    _check_std,
    _stateless_init,
    new_layer,
)
from theory.kernels.stax._masking import Masking, channel_constant

__all__ = [
    "Relu",
    "LeakyRelu",
    "ABRelu",
    "Abs",
    "Erf",
    "Gelu",
    "Sin",
    "Cos",
    "Gaussian",
    "Rbf",
    "Exp",
    "Sign",
    "Monomial",
    "RectifiedMonomial",
    "Polynomial",
    "Hermite",
    "Elementwise",
    "ElementwiseNumerical",
    "Tanh",
    "Softplus",
    "Sigmoid",
    "Swish",
    "Gabor",
    "Sigmoid_like",
    "ExpNormalized",
    "ActivationInfo",
    "activation_info",
]


@dataclasses.dataclass(frozen=True)
class ActivationInfo:
    """What an activation layer is, for code that needs φ itself rather than the layer
    (`theory.kernels.criticality`): its name, φ (``fn``, None when only a kernel was given),
    its dual ``pair`` (see `theory.kernels.dual`; None when only φ was given), whether the dual
    is a closed form (``exact``; False for Gauss–Hermite quadrature) and φ' when the layer was
    given it (``derivative``; else None and autodiff of ``fn`` is used)."""

    name: str
    fn: Callable | None
    pair: dual.Pair | None
    exact: bool = True
    derivative: Callable | None = None


def activation_info(layer) -> ActivationInfo | None:
    """The `ActivationInfo` of an elementwise ``stax`` layer ``(init_fn, apply_fn, kernel_fn)``,
    None for any other layer."""
    if isinstance(layer, tuple) and len(layer) == 3 and isinstance(layer[2], KernelFn):
        return layer[2].activation
    return None


def _elementwise(
    name: str,
    fn: Callable | None,
    pair: dual.Pair | None,
    hint: str = "",
    exact: bool = True,
    derivative: Callable | None = None,
):
    """A layer applying φ elementwise; its kernel uses the dual ``pair`` of φ. ``hint`` is
    appended to the message of `NonFiniteKernelError` for networks containing the layer;
    ``exact`` says whether ``pair`` is a closed form (False for quadrature)."""

    def apply_fn(params, inputs, **kwargs):
        if fn is None:
            raise NotImplementedError(f"{name} has no finite-width function")
        return fn(inputs)

    def transform(k: Kernel) -> Kernel:
        if pair is None:
            raise NotImplementedError(f"{name} has no infinite-width kernel (nngp_fn=None)")
        if isinstance(k, (list, tuple)):
            raise ValueError(f"{name} takes one input; got {len(k)} branches")
        if not k.is_gaussian:
            raise ValueError(
                f"{name}: the input to an activation must be Gaussian; put a Dense layer "
                "before it (neural-tangents has the same rule)"
            )
        q11, q22 = k.outer_vars()
        nngp, dot = pair(k.nngp, q11, q22, False, k.ntk is not None)
        ntk = None if k.ntk is None else k.ntk * dot
        self_pairs = k.self_pairs()
        # E[φ(z)²] and E[φ'(z)²] at correlation exactly 1, once per point (and, with the
        # full spatial covariance, per pair of sites, correlation 1 on the site diagonal).
        need_rr = self_pairs is not None and ntk is not None
        cov1, dot_rr = pair(k.cov1, *k.block_vars(k.cov1), need_rr)
        cov2 = None if k.cov2 is None else pair(k.cov2, *k.block_vars(k.cov2), False)[0]
        if self_pairs is not None:
            # A point with itself has correlation exactly 1, but q12/√(q11 q22) computed in
            # floating point is 1 − δ with δ = O(ε), and arccos(1 − δ) ≈ √(2δ): an O(√ε)
            # error in θ (3e-4 in float32), which the ReLU NTK factor (π − θ)/2π carries into
            # every diagonal entry (neural-tangents' float32 NTK diagonal is off by 6e-4 at
            # depth 10). Overwrite those entries with the exact-correlation values (see
            # docs/conventions.md, "Infinite-width kernels"): an O(n) scatter instead of an
            # O(n1·n2) select in every layer.
            r, c = self_pairs
            nngp = nngp.at[r, c].set(cov1, mode="drop")
            if ntk is not None:
                ntk_rr = k.ntk.at[r, c].get(mode="fill", fill_value=0)
                ntk = ntk.at[r, c].set(ntk_rr * dot_rr, mode="drop")
        return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, is_gaussian=False)

    info = ActivationInfo(name, fn, pair, exact, derivative)
    kernel_fn = KernelFn(transform, name, activation=info, hints=(hint,) if hint else ())
    rule = None if fn is None else ElementwiseRule(fn)

    def kernel_mask(m, k_in, k_out):
        # a mask that differs between a site's channels survives only where φ(0) = 0
        if m.shape[-1] != 1 and not _keeps_zero(fn):
            channel_constant(m, f"{name} (φ(0) ≠ 0)")
        return m

    return new_layer(_stateless_init, apply_fn, kernel_fn, rule, Masking(kernel=kernel_mask))


def _keeps_zero(fn) -> bool:
    """Whether φ(0) = 0 (False when φ is unknown or cannot be evaluated on a constant)."""
    if fn is None:
        return False
    try:
        with jax.ensure_compile_time_eval():
            return bool(fn(jnp.zeros((), jnp.float32)) == 0)
    except Exception:  # noqa: BLE001 - a user's φ that does not take a scalar
        return False


# --------------------------------------------------------------------- activations


def ABRelu(a: float, b: float, do_stabilize: bool = False):
    r"""φ(x) = a·min(x, 0) + b·max(x, 0). ``do_stabilize`` is accepted for compatibility; the
    dual is computed from the correlation and needs no rescaling. See `dual.abrelu`."""
    a, b = float(a), float(b)
    return _elementwise(
        f"ABRelu({a}, {b})",
        lambda x: a * jnp.minimum(x, 0) + b * jnp.maximum(x, 0),
        dual.abrelu(a, b),
    )


def Relu(do_stabilize: bool = False):
    """φ(x) = max(x, 0): the degree-1 arc-cosine kernel (Cho & Saul 2009)."""
    return ABRelu(0.0, 1.0, do_stabilize)


def LeakyRelu(alpha: float, do_stabilize: bool = False):
    """φ(x) = α·min(x, 0) + max(x, 0)."""
    return ABRelu(alpha, 1.0, do_stabilize)


def Abs(do_stabilize: bool = False):
    """φ(x) = |x|."""
    return ABRelu(-1.0, 1.0, do_stabilize)


def Sign():
    """φ(x) = sign(x): k = 1 − 2θ/π; the NTK contribution is 0."""
    return _elementwise("Sign", jnp.sign, dual.sign())


def Erf(a: float = 1.0, b: float = 1.0, c: float = 0.0):
    """φ(x) = a·erf(b x) + c (Williams 1997). See `dual.erf`."""
    return _elementwise(
        f"Erf({a}, {b}, {c})",
        lambda x: a * jax.scipy.special.erf(b * x) + c,
        dual.erf(a, b, c),
    )


def Gelu(approximate: bool = False):
    """φ(x) = x Φ(x). ``approximate`` changes only the finite network (tanh form)."""
    return _elementwise("Gelu", lambda x: jax.nn.gelu(x, approximate=approximate), dual.gelu())


def Sin(a: float = 1.0, b: float = 1.0, c: float = 0.0):
    """φ(x) = a·sin(b x + c). See `dual.sin`."""
    return _elementwise(f"Sin({a}, {b}, {c})", lambda x: a * jnp.sin(b * x + c), dual.sin(a, b, c))


def Cos(a: float = 1.0, b: float = 1.0, c: float = 0.0):
    """φ(x) = a·cos(b x + c) = a·sin(b x + c + π/2)."""
    return Sin(a=a, b=b, c=c + math.pi / 2)


def Rbf(gamma: float = 1.0):
    """φ(x) = √2·sin(√(2γ) x + π/4), whose NNGP is the RBF kernel exp(−γ‖x − x'‖²/d)."""
    _check_std("gamma", gamma)
    return _elementwise(
        f"Rbf({gamma})",
        lambda x: math.sqrt(2) * jnp.sin(math.sqrt(2 * gamma) * x + math.pi / 4),
        dual.rbf(gamma),
    )


def Exp(a: float = 1.0, b: float = 1.0):
    """φ(x) = a·e^{b x}. Its dual a²·exp(b²(q11 + q22)/2 + b² q12) is exponential in the
    pre-activation variance q: E[φ(z)²] = a² e^{2b²q} leaves float32 once 2b²q > 88.7 (float64:
    709.8); such kernels raise `NonFiniteKernelError` with this explanation."""
    name = f"Exp({a}, {b})"
    hint = (
        f"{name} is in the network: its dual a²·exp(b²(q11 + q22)/2 + b²·q12) reaches "
        "a²·exp(2b²·q) at a pre-activation variance q, beyond float32 once 2b²·q > 88.7 and "
        "beyond float64 once 2b²·q > 709.8; lower the preceding W_std and b_std, b, or the "
        "input scale."
    )
    return _elementwise(name, lambda x: a * jnp.exp(b * x), dual.exp(a, b), hint)


def Gaussian(a: float = 1.0, b: float = -1.0):
    """φ(x) = a·e^{b x²}, any real b. For b > 0 the kernel is finite only while every
    pre-activation variance q has 4b·q < 1 (E[e^{2b z²}] diverges beyond); past that bound
    the kernel is infinite and `NonFiniteKernelError` says which bound was crossed."""
    b = float(b)
    hint = (
        f"Gaussian(a={a}, b={b}): E[exp(2b z²)] is finite only while 4b·Var(z) < 1, i.e. every "
        f"pre-activation variance below 1/(4b) = {1 / (4 * b):.4g}; lower b or the weight and "
        "bias variances before this layer"
        if b > 0
        else ""
    )
    return _elementwise(
        f"Gaussian({a}, {b})", lambda x: a * jnp.exp(b * x * x), dual.gaussian(a, b), hint
    )


def Gabor():
    """φ(x) = e^{−x²} sin x (neural-tangents' ``Gabor``; closed form in `dual.gabor`)."""
    return _elementwise("Gabor", lambda x: jnp.exp(-x * x) * jnp.sin(x), dual.gabor())


def Sigmoid_like():  # noqa: N802 - neural-tangents' name
    """φ(x) = ½ erf(x / 2.4020563531719796) + ½, the erf closest to the logistic sigmoid in
    squared error on [−5, 5] (neural-tangents' ``Sigmoid_like``): ``Erf(0.5, 1/2.402…, 0.5)``."""
    return Erf(a=0.5, b=1 / 2.4020563531719796, c=0.5)


def ExpNormalized(gamma: float = 1.0, shift: float = -1.0, do_clip: bool = False):
    """The "Gaussian normalized kernel" of Shankar et al. (2020), neural-tangents'
    ``ExpNormalized``: K ← √(K11 K22) exp(γ (K12/√(K11 K22) + shift)), Θ ← γ Θ exp(γ (ρ +
    shift)) (`dual.exp_normalized`). A kernel only: its ``apply_fn`` raises
    NotImplementedError, as neural-tangents' does."""
    for name, v in (("gamma", gamma), ("shift", shift)):
        if not math.isfinite(float(v)):
            raise ValueError(f"ExpNormalized: {name} must be finite, got {v!r}")
    return _elementwise(
        f"ExpNormalized({gamma}, {shift}, do_clip={bool(do_clip)})",
        None,
        dual.exp_normalized(float(gamma), float(shift), bool(do_clip)),
    )


def _check_degree(degree):
    if not isinstance(degree, int) or isinstance(degree, bool) or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree!r}")


def Monomial(degree: int):
    """φ(x) = xⁿ, any n ≥ 0 (closed form by Isserlis' theorem; see `dual.monomial`)."""
    _check_degree(degree)
    return _elementwise(f"Monomial({degree})", lambda x: x**degree, dual.monomial(degree))


def RectifiedMonomial(degree: int):
    """φ(x) = max(x, 0)ⁿ: the arc-cosine kernel of degree n (Cho & Saul 2009)."""
    _check_degree(degree)
    return _elementwise(
        f"RectifiedMonomial({degree})",
        lambda x: jnp.where(x >= 0, x**degree, 0),
        dual.rectified_monomial(degree),
    )


def Polynomial(coef: Sequence[float]):
    """φ(x) = coef[0] + coef[1] x + … + coef[n] xⁿ (numpy's coefficient order)."""
    coef = [float(c) for c in coef]
    if not all(math.isfinite(c) for c in coef):
        raise ValueError(f"coef must be finite, got {coef!r}")
    return _elementwise(
        f"Polynomial({coef})",
        lambda x: jnp.polyval(jnp.asarray(coef[::-1], x.dtype), x),
        dual.polynomial(coef),
    )


def Hermite(degree: int):
    """φ(x) = Heₙ(x)/√(n!): assumes unit-variance pre-activations (as neural-tangents)."""
    import numpy as np

    _check_degree(degree)
    p = np.polynomial.hermite_e.herme2poly([0] * degree + [1])[::-1]
    norm = math.sqrt(math.factorial(degree))
    return _elementwise(
        f"Hermite({degree})",
        lambda x: jnp.polyval(jnp.asarray(p, x.dtype), x) / norm,
        dual.hermite(degree),
    )


def Elementwise(
    fn: Callable | None = None,
    nngp_fn: Callable | None = None,
    d_nngp_fn: Callable | None = None,
):
    """Any φ with a user-supplied dual ``nngp_fn(cov12, var1, var2) = E[φ(z₁)φ(z₂)]``.

    ``d_nngp_fn = E[φ'(z₁)φ'(z₂)]`` defaults to ∂ nngp_fn / ∂ cov12 by autodiff
    (Price's theorem). With ``nngp_fn=None`` only the finite network works.
    """
    if fn is None and nngp_fn is None:
        raise ValueError("Elementwise needs fn (finite network) or nngp_fn (kernel), got neither")
    name = getattr(fn if fn is not None else nngp_fn, "__name__", "Elementwise")
    pair = None if nngp_fn is None else dual.custom(nngp_fn, d_nngp_fn)
    return _elementwise(f"Elementwise({name})", fn, pair)


def ElementwiseNumerical(fn: Callable, deg: int, df: Callable | None = None):
    """Any φ by 2-D Gauss–Hermite quadrature of ``deg`` nodes per axis (`dual.gauss_hermite`);
    the NTK uses φ' (``df``, or autodiff of ``fn``)."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r}")
    if not isinstance(deg, int) or deg < 1:
        raise ValueError(f"deg must be a positive integer, got {deg!r}")
    name = getattr(fn, "__name__", "fn")
    return _elementwise(
        f"ElementwiseNumerical({name}, deg={deg})",
        fn,
        dual.gauss_hermite(fn, deg, df),
        exact=False,
        derivative=df,
    )


def Tanh(deg: int = 25):
    """φ = tanh by quadrature (neural-tangents has no Tanh: its issue #15)."""
    return ElementwiseNumerical(jnp.tanh, deg, lambda x: 1 - jnp.tanh(x) ** 2)


def Softplus(deg: int = 25):
    """φ(x) = log(1 + eˣ) by quadrature."""
    return ElementwiseNumerical(jax.nn.softplus, deg, jax.nn.sigmoid)


def Sigmoid(deg: int = 25):
    """φ(x) = 1/(1 + e^{−x}) by quadrature."""
    return ElementwiseNumerical(
        jax.nn.sigmoid, deg, lambda x: jax.nn.sigmoid(x) * (1 - jax.nn.sigmoid(x))
    )


def Swish(deg: int = 25):
    """φ(x) = x·sigmoid(x) (SiLU) by quadrature."""
    return ElementwiseNumerical(
        jax.nn.silu, deg, lambda x: jax.nn.sigmoid(x) * (1 + x * (1 - jax.nn.sigmoid(x)))
    )
