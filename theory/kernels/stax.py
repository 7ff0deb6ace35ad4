r"""Fully-connected networks and their infinite-width kernels from one description.

A drop-in for neural-tangents' ``stax`` (fully-connected layers): every layer returns
``(init_fn, apply_fn, kernel_fn)`` with the same names, arguments, defaults and numbers::

    init_fn(key, input_shape) -> (output_shape, params)
    apply_fn(params, x) -> outputs
    kernel_fn(x1, x2=None, get=None) -> Kernel | array | (nngp, ntk)

``kernel_fn`` follows neural-tangents' conventions: input kernel ``x1·x2ᵀ/d``, NTK 0 before
the first ``Dense``; ``get`` is ``None`` (a `Kernel` with ``.nngp`` and ``.ntk``), a name
(``"nngp"``/``"ntk"``) or a tuple of names (a named tuple). It is compiled with ``jax.jit``
on first use for each input shape; float64 inputs (``jax_enable_x64``) give float64 kernels.

Layer recursions (Jacot, Gabriel & Hongler 2018, Thm. 1; Lee et al. 2019, eqs. 3–4):

- ``Dense``, NTK parameterization:  K ← σ_w² K + σ_b²,  Θ ← K_new + σ_w² Θ;
- ``Dense``, standard parameterization (Sohl-Dickstein et al. 2020):
  Θ ← n_in K_old + σ_w² Θ (+ 1 with a bias, even when ``b_std=0.0``), then K ← σ_w² K + σ_b²;
- activation φ with dual k and k̇ (see `theory.kernels.dual`): K ← k(K), Θ ← Θ · k̇(K).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from theory.kernels import dual, spatial
from theory.kernels.batching import default_tile, tiled_kernel
from theory.kernels.kernel import (
    Kernel,
    all_finite,
    check_inputs,
    check_memory,
    check_outputs,
    input_kernel,
    kernel_names,
)

__all__ = [
    "Kernel",
    "serial",
    "parallel",
    "FanOut",
    "FanInSum",
    "FanInProd",
    "Identity",
    "Dense",
    "Conv",
    "Flatten",
    "AvgPool",
    "SumPool",
    "MaxPool",
    "GlobalAvgPool",
    "GlobalSumPool",
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
]

_GETS = ("nngp", "ntk")


# ----------------------------------------------------------------------- kernel_fn

NO, MAYBE, YES = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Diagonal:
    """Whether a network's kernel can be computed on the spatial diagonal (neural-tangents'
    three-valued requirement, folded once per network): ``input`` says whether the layer
    accepts a diagonal-only input (NO, MAYBE: only if off-diagonal entries are 0, YES),
    ``output`` whether outputs from here on may be diagonal-only. ``serial`` composes with
    ``>>``, ``parallel`` combines with ``&``; the network is computed on the diagonal iff
    ``input == YES and output > NO``. Dense, activations and Conv: (YES, NO); Flatten (YES,
    YES); AvgPool/SumPool (MAYBE, NO); GlobalAvgPool/GlobalSumPool (MAYBE, YES)."""

    input: int = YES
    output: int = NO

    def __rshift__(self, other: Diagonal) -> Diagonal:
        if self.output == YES:
            return self
        if self.output > NO and other.input > NO:
            inp = self.input
        elif self.output == NO and other.input < YES:
            inp = NO
        else:
            inp = min(self.input, other.input)
        return Diagonal(inp, other.output)

    def __and__(self, other: Diagonal) -> Diagonal:
        return Diagonal(min(self.input, other.input), min(self.output, other.output))

    def __bool__(self) -> bool:
        return self.input == YES and self.output > NO


class KernelFn:
    """The infinite-width kernel of a network: ``kernel_fn(x1, x2=None, get=None)``.

    Also accepts a `Kernel` (or a list of them, for fan-in layers) instead of ``x1`` and
    then applies just this layer's transformation, which is how layers compose.

    Numerical guards (see `theory.kernels.kernel`): ``x1``/``x2`` must be finite float32 or
    float64 arrays (16-bit floats raise `TypeError`); an output that cannot fit in memory
    raises `KernelMemoryError` before anything is allocated; and a returned array that is not
    finite raises `NonFiniteKernelError` (never a silent NaN/inf; neural-tangents returns
    them silently, its issue #197), whose message names the quantity, the dtype and the
    remedy (float64: ``jax.config.update("jax_enable_x64", True)``); the values are in
    ``error.result``. Finiteness is probed inside the compiled computation (per tile, while
    it is in cache: +0.3% to +3.5% CPU time on a depth-10 ReLU kernel at N = 4000), so the check
    costs one scalar transfer. Inside a user's ``jax.jit`` the values are unknown and the
    output check is skipped.
    """

    def __init__(
        self,
        transform: Callable,
        name: str,
        is_activation: bool = False,
        hints: Sequence[str] = (),
        spatial_ndim: int | None = None,
        diagonal: Diagonal | None = None,
    ):
        self.transform = transform
        self.__name__ = name
        self.is_activation = is_activation
        # None: the network takes 2-D inputs; k: NHWC inputs with k site axes (convolutions)
        self.spatial_ndim = spatial_ndim
        self.diagonal = Diagonal() if diagonal is None else diagonal
        self.hints = tuple(dict.fromkeys(hints))  # layer notes for NonFiniteKernelError
        self._jitted = jax.jit(self._compute, static_argnames=("get", "compute_ntk"))

    def __repr__(self) -> str:
        return f"<kernel_fn of {self.__name__}>"

    def _compute(self, x1, x2, get, compute_ntk):
        """``(selected output, whether all of the kernel's arrays are finite)``."""
        n2 = x1.shape[0] if x2 is None else x2.shape[0]
        tile = default_tile(x1.shape[0], n2) if x1.ndim == 2 else None
        if tile is None:
            k = self.transform(input_kernel(x1, x2, compute_ntk, bool(self.diagonal)))
        else:
            k, ok = tiled_kernel(self.transform, x1, x2, compute_ntk, tile, with_flags=True)
        if isinstance(k, (list, tuple)):
            raise ValueError(
                f"{self.__name__} ends with {len(k)} branches: close them with "
                "FanInSum() or FanInProd() before asking for a kernel"
            )
        if k.spatial and k.diagonal_spatial:  # cannot happen: such networks run full
            raise AssertionError(f"{self.__name__}: a spatial output on the diagonal only")
        if tile is None:
            ok = all_finite([k.nngp, k.ntk])
        return self.select(k, get), ok & all_finite([k.cov1, k.cov2])

    @staticmethod
    def returned(k: Kernel, get) -> tuple[str, ...]:
        """Names of the arrays that ``select(k, get)`` returns."""
        if get is None:
            return tuple(n for n in ("nngp", "ntk", "cov1", "cov2") if getattr(k, n) is not None)
        return (get,) if isinstance(get, str) else tuple(get)

    @staticmethod
    def parse_get(get):
        """Validate ``get``; return it normalised and whether the NTK is needed."""
        if get is None:
            return None, True
        names = (get,) if isinstance(get, str) else tuple(get)
        if not names or any(g not in _GETS for g in names):
            raise ValueError(f"get must be None, 'nngp', 'ntk' or a tuple of them, got {get!r}")
        return (get if isinstance(get, str) else names), "ntk" in names

    @staticmethod
    def select(k: Kernel, get):
        if get is None:
            return k
        if isinstance(get, str):
            return getattr(k, get)
        return namedtuple("Kernels", get)(*(getattr(k, g) for g in get))

    def check(self, where: str, out, ok, get, x1, x2) -> None:
        """Raise `NonFiniteKernelError` unless every array in ``out`` is finite."""
        names = self.returned(out, get)
        if get is None:
            arrays = [getattr(out, n) for n in names]
        else:
            arrays = [out] if isinstance(get, str) else list(out)
        check_outputs(where, ok, dict(zip(names, arrays)), (x1, x2), out, self.hints)

    def __call__(self, x1, x2=None, get=None, **kwargs):
        if kwargs:
            raise TypeError(f"kernel_fn got unexpected keyword arguments {sorted(kwargs)}")
        get, compute_ntk = self.parse_get(get)
        if isinstance(x1, Kernel) or (
            isinstance(x1, (list, tuple)) and x1 and isinstance(x1[0], Kernel)
        ):
            if x2 is not None:
                raise ValueError("x2 must be None when kernel_fn is applied to a Kernel")
            k = self.transform(x1)
            return k if isinstance(k, (list, tuple)) else self.select(k, get)
        x1, x2 = check_inputs(x1, x2, spatial_ndim=self.spatial_ndim)
        name = self.__name__
        where = f"kernel_fn of {name if len(name) <= 80 else name[:70] + ' …)'}"
        sites = math.prod(x1.shape[1:-1])
        pairs = sites if bool(self.diagonal) else sites * sites
        check_memory(where, x1, x2, kernel_names(get, compute_ntk), pair_size=pairs)
        out, ok = self._jitted(x1, x2, get=get, compute_ntk=compute_ntk)
        self.check(where, out, ok, get, x1, x2)
        return out


# ------------------------------------------------------------------- layer builders


def _mark(apply_fn: Callable, structure: tuple) -> Callable:
    """Record what a layer is, for the structured empirical-NTK fast path."""
    apply_fn.structure = structure
    return apply_fn


def _stateless_init(rng, input_shape):
    return input_shape, ()


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
    if not (isinstance(layer, tuple) and len(layer) == 3):
        return None
    return getattr(layer[2], "activation", None)


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

    kernel_fn = KernelFn(transform, name, is_activation=True, hints=(hint,) if hint else ())
    kernel_fn.activation = ActivationInfo(name, fn, pair, exact, derivative)
    return _stateless_init, _mark(apply_fn, ("elementwise", fn)), kernel_fn


def _check_std(name: str, value, allow_none: bool = False):
    if value is None and allow_none:
        return
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


# --------------------------------------------------------------------------- Dense


def _check_affine(W_std, b_std, parameterization, s):
    """Validated ``(W_std, b_std, parameterization, s)`` of a Dense or Conv layer."""
    _check_std("W_std", W_std)
    _check_std("b_std", b_std, allow_none=True)
    if not isinstance(parameterization, str) or parameterization.lower() not in (
        "ntk",
        "standard",
    ):
        raise ValueError(f"parameterization must be 'ntk' or 'standard', got {parameterization!r}")
    s = tuple(int(v) for v in s)
    if len(s) != 2 or min(s) < 1:
        raise ValueError(f"s must be a pair of positive integers, got {s!r}")
    b = None if b_std is None else float(b_std)
    return float(W_std), b, parameterization.lower(), s


def Dense(
    out_dim: int,
    W_std: float = 1.0,
    b_std: float | None = None,
    batch_axis: int = 0,
    channel_axis: int = -1,
    parameterization: str = "ntk",
    s: tuple[int, int] = (1, 1),
):
    r"""Fully-connected layer (Jacot et al. 2018, §2; Sohl-Dickstein et al. 2020).

    ==================  ========================  ========================================
    argument            symbol                    meaning
    ==================  ========================  ========================================
    ``out_dim``         n_{l+1}                   output width (ignored by the kernel in
                                                  the NTK parameterization)
    ``W_std``           σ_w                       weight scale
    ``b_std``           σ_b (β in Jacot et al.)   bias scale; ``None`` = no bias
    ``parameterization`` —                        ``"ntk"``: z = σ_w/√n W x + σ_b b with
                                                  W, b ~ N(0, 1); ``"standard"``:
                                                  W ~ N(0, σ_w²/n), b ~ N(0, σ_b²), z = Wx + b
    ``s``               (s_in, s_out)             width multipliers (standard only)
    ==================  ========================  ========================================

    Parameters are ``(W, b)``, ``W`` of shape (n_in·s_in, out_dim·s_out), ``b`` of shape
    (1, out_dim·s_out) or None.
    """
    if not isinstance(out_dim, (int,)) or isinstance(out_dim, bool) or out_dim < 1:
        raise ValueError(f"out_dim must be a positive integer, got {out_dim!r}")
    if batch_axis != 0 or channel_axis not in (-1, 1):
        raise NotImplementedError(
            "only batch_axis=0 and channel_axis=-1 are supported for fully-connected inputs"
        )
    W_std, b_std, parameterization, s = _check_affine(W_std, b_std, parameterization, s)

    def init_fn(rng, input_shape):
        n_in = input_shape[-1]
        n_out = out_dim * (s[1] if parameterization == "standard" else 1)
        k1, k2 = jax.random.split(rng)
        W = jax.random.normal(k1, (n_in, n_out))
        b = None if b_std is None else jax.random.normal(k2, (1, n_out))
        if parameterization == "standard":
            W = W * (W_std / math.sqrt(n_in / s[0]))
            b = None if b is None else b * b_std
        return tuple(input_shape[:-1]) + (n_out,), (W, b)

    def apply_fn(params, inputs, **kwargs):
        W, b = params
        prod = inputs @ W
        if parameterization == "ntk":
            out = (W_std / math.sqrt(inputs.shape[-1])) * prod
            return out if b is None else out + b_std * b
        out = prod / math.sqrt(s[0])
        return out if b is None else out + b

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"Dense takes one input; got {len(k)} branches")

        def affine(m):
            m = W_std**2 * m
            return m if b_std is None else m + b_std**2

        nngp = affine(k.nngp)
        cov1 = affine(k.cov1)
        cov2 = None if k.cov2 is None else affine(k.cov2)
        ntk = k.ntk
        if ntk is not None:
            if parameterization == "ntk":
                ntk = nngp + W_std**2 * ntk
            else:
                ntk = (k.width / s[0]) * k.nngp + W_std**2 * ntk
                if b_std is not None:
                    ntk = ntk + 1.0
        width = out_dim * (s[1] if parameterization == "standard" else 1)
        return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, width=width, is_gaussian=True)

    structure = ("dense", dict(W_std=W_std, b_std=b_std, parameterization=parameterization, s=s))
    return init_fn, _mark(apply_fn, structure), KernelFn(transform, f"Dense({out_dim})")


# ---------------------------------------------------------------- convolutions


_SPATIAL_LETTERS = {1: "W", 2: "HW", 3: "DHW"}


def _check_window(what: str, shape, strides, padding):
    """``(shape, strides, padding)`` of a filter or pooling window, validated: 1–3 positive
    sizes, one positive stride per axis (default 1), a padding of `spatial.PADDINGS`."""
    try:
        shape = tuple(int(f) for f in shape)
    except TypeError:
        raise TypeError(f"{what}_shape must be a sequence of integers, got {shape!r}") from None
    nd = len(shape)
    if nd not in _SPATIAL_LETTERS or min(shape) < 1:
        raise ValueError(f"{what}_shape must have 1 to 3 positive sizes, got {shape!r}")
    strides = (1,) * nd if strides is None else tuple(int(v) for v in strides)
    if len(strides) != nd or min(strides) < 1:
        raise ValueError(
            f"strides must have {nd} positive entries (one per {what} axis), got {strides!r}"
        )
    if not isinstance(padding, str) or padding.upper() not in spatial.PADDINGS:
        raise ValueError(f"padding must be one of {spatial.PADDINGS}, got {padding!r}")
    return shape, strides, padding.upper()


def Conv(
    out_chan: int,
    filter_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    W_std: float = 1.0,
    b_std: float | None = None,
    dimension_numbers=None,
    parameterization: str = "ntk",
    s: tuple[int, int] = (1, 1),
):
    r"""Convolution over 1–3 spatial axes, NHWC inputs and HWIO filters (neural-tangents'
    defaults; other ``dimension_numbers`` are not supported yet).

    Finite network, NTK parameterization: z = σ_w/√(C_in·|f|) W ⋆ x + σ_b b with W, b ~ N(0, 1);
    standard: W ~ N(0, σ_w² s_in/(C_in·|f|)), z = W ⋆ x/√s_in + b. ``padding`` is ``"SAME"``
    (zeros), ``"VALID"`` or ``"CIRCULAR"`` (wrap-around).

    Kernel, on the spatial diagonal (`theory.kernels.spatial.conv_mean`, 𝒞 the mean over the
    filter's offsets, the same offset on both sides of a pair): K ← σ_w² 𝒞(K) + σ_b²; NTK
    parameterization Θ ← K_new + σ_w² 𝒞(Θ); standard Θ ← (C_in·|f|/s_in) 𝒞(K_old) + σ_w² 𝒞(Θ)
    (+1 with a bias), as for `Dense` with fan-in C_in·|f|. With the full spatial covariance
    (networks with pooling, or whose output keeps its sites) the same rule acts on every pair
    of sites (`theory.kernels.spatial.conv_full`); the output's pair axes are zipped
    (S1, S1', S2, S2', …) and, unlike neural-tangents', never reversed.
    """
    if not isinstance(out_chan, int) or isinstance(out_chan, bool) or out_chan < 1:
        raise ValueError(f"out_chan must be a positive integer, got {out_chan!r}")
    filter_shape, strides, padding = _check_window("filter", filter_shape, strides, padding)
    nd = len(filter_shape)
    if dimension_numbers is not None:
        raise NotImplementedError(
            "Conv: only the default dimension_numbers (NHWC inputs, HWIO filters) are supported"
        )
    W_std, b_std, parameterization, s = _check_affine(W_std, b_std, parameterization, s)
    letters = _SPATIAL_LETTERS[nd]
    spec = ("N" + letters + "C", letters + "IO", "N" + letters + "C")
    f_size = math.prod(filter_shape)

    def _conv(x, W):
        if padding == "CIRCULAR":
            pads = spatial.conv_pads(x.shape[1:-1], filter_shape, strides, "SAME")
            x = jnp.pad(x, [(0, 0)] + [tuple(p) for p in pads] + [(0, 0)], mode="wrap")
            pad = "VALID"
        else:
            pad = padding
        dn = jax.lax.conv_dimension_numbers(x.shape, W.shape, spec)
        return jax.lax.conv_general_dilated(x, W, strides, pad, dimension_numbers=dn)

    def init_fn(rng, input_shape):
        c_in = input_shape[-1]
        n_out = out_chan * (s[1] if parameterization == "standard" else 1)
        k1, k2 = jax.random.split(rng)
        W = jax.random.normal(k1, filter_shape + (c_in, n_out))
        b = None if b_std is None else jax.random.normal(k2, (1,) * (nd + 1) + (n_out,))
        if parameterization == "standard":
            W = W * (W_std / math.sqrt(c_in * f_size / s[0]))
            b = None if b is None else b * b_std
        out_sites = spatial.conv_output_shape(input_shape[1:-1], filter_shape, strides, padding)
        return (input_shape[0],) + out_sites + (n_out,), (W, b)

    def apply_fn(params, inputs, **kwargs):
        W, b = params
        out = _conv(inputs, W)
        if parameterization == "ntk":
            out = (W_std / math.sqrt(inputs.shape[-1] * f_size)) * out
            return out if b is None else out + b_std * b
        out = out / math.sqrt(s[0])
        return out if b is None else out + b

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"Conv takes one input; got {len(k)} branches")
        if len(k.spatial) != nd:
            raise ValueError(
                f"Conv with a {nd}-D filter {filter_shape} needs inputs with {nd} spatial axes "
                f"(NHWC), got {len(k.spatial)} (sites {k.spatial})"
            )

        def mean(a, batch_nd):
            if k.full_spatial:
                return spatial.conv_full(a, batch_nd, filter_shape, strides, padding)
            return spatial.conv_mean(a, batch_nd, filter_shape, strides, padding)

        def affine(m):
            m = W_std**2 * m
            return m if b_std is None else m + b_std**2

        k_mean = mean(k.nngp, 2)
        nngp = affine(k_mean)
        cov1 = affine(mean(k.cov1, 1))
        cov2 = None if k.cov2 is None else affine(mean(k.cov2, 1))
        ntk = k.ntk
        if ntk is not None:
            if parameterization == "ntk":
                ntk = nngp + W_std**2 * mean(ntk, 2)
            else:
                ntk = (k.width * f_size / s[0]) * k_mean + W_std**2 * mean(ntk, 2)
                if b_std is not None:
                    ntk = ntk + 1.0
        width = out_chan * (s[1] if parameterization == "standard" else 1)
        return k.replace(
            nngp=nngp,
            ntk=ntk,
            cov1=cov1,
            cov2=cov2,
            width=width,
            is_gaussian=True,
            spatial=tuple(nngp.shape[2::2] if k.full_spatial else nngp.shape[2:]),
        )

    name = f"Conv({out_chan}, {filter_shape}, {padding})"
    return init_fn, _mark(apply_fn, ("other",)), KernelFn(transform, name, spatial_ndim=nd)


def Flatten(batch_axis: int = 0, batch_axis_out: int = 0):
    """Flatten all but the batch axis. Kernel (spatial diagonal): the mean over sites
    (`theory.kernels.spatial.flatten_mean`), a non-Gaussian FC kernel of width C·|S|, as in
    neural-tangents (an activation right after it is refused)."""
    if batch_axis != 0 or batch_axis_out != 0:
        raise NotImplementedError("Flatten: only batch_axis=0 and batch_axis_out=0 are supported")

    def init_fn(rng, input_shape):
        return (input_shape[0], math.prod(input_shape[1:])), ()

    def apply_fn(params, inputs, **kwargs):
        return inputs.reshape(inputs.shape[0], -1)

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"Flatten takes one input; got {len(k)} branches")
        if not k.spatial:
            return k
        flat = spatial.flatten_full if k.full_spatial else spatial.flatten_mean
        return k.replace(
            nngp=flat(k.nngp, 2),
            ntk=None if k.ntk is None else flat(k.ntk, 2),
            cov1=flat(k.cov1, 1),
            cov2=None if k.cov2 is None else flat(k.cov2, 1),
            width=k.width * math.prod(k.spatial),
            is_gaussian=False,
            spatial=(),
        )

    kfn = KernelFn(transform, "Flatten", diagonal=Diagonal(YES, YES))
    return init_fn, _mark(apply_fn, ("other",)), kfn


def _reduce_windows(x, window_shape, strides, padding: str, init: float, op):
    """``op`` over each window of the sites of NHWC ``x`` (finite pooling layers): SAME pads
    with ``init``, CIRCULAR wraps around, VALID does not pad."""
    pads = spatial.conv_pads(x.shape[1:-1], window_shape, strides, padding)
    if padding == "CIRCULAR":
        x = jnp.pad(x, [(0, 0)] + [tuple(p) for p in pads] + [(0, 0)], mode="wrap")
        pads = [(0, 0)] * len(window_shape)
    cfg = [(0, 0)] + [tuple(p) for p in pads] + [(0, 0)]
    dims, steps = (1, *window_shape, 1), (1, *strides, 1)
    return jax.lax.reduce_window(x, jnp.array(init, x.dtype), op, dims, steps, cfg)


def _pool_init(window_shape, strides, padding: str):
    """The parameter-free ``init_fn`` of a pooling layer: the pooled output shape."""

    def init_fn(rng, input_shape):
        sites = spatial.pool_output_shape(input_shape[1:-1], window_shape, strides, padding)
        return (input_shape[0],) + sites + (input_shape[-1],), ()

    return init_fn


def _pool_layer(kind: str, window_shape, strides, padding, normalize_edges: bool):
    window_shape, strides, padding = _check_window("window", window_shape, strides, padding)
    nd = len(window_shape)
    if kind == "sum":
        normalize = "sum"
    elif normalize_edges and padding == "SAME":
        normalize = "edges"
    else:
        normalize = "window"
    w_size = math.prod(window_shape)

    def _pool(x):
        out = _reduce_windows(x, window_shape, strides, padding, 0.0, jax.lax.add)
        if normalize == "window":
            return out / w_size
        if normalize == "edges":
            ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
            return out / _reduce_windows(ones, window_shape, strides, padding, 0.0, jax.lax.add)
        return out

    init_fn = _pool_init(window_shape, strides, padding)

    def apply_fn(params, inputs, **kwargs):
        return _pool(inputs)

    name = f"{'AvgPool' if kind == 'avg' else 'SumPool'}({window_shape}, {padding})"

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"{name} takes one input; got {len(k)} branches")
        if len(k.spatial) != nd:
            raise ValueError(
                f"{name} with a {nd}-D window needs inputs with {nd} spatial axes, got "
                f"{len(k.spatial)} (sites {k.spatial})"
            )
        if not k.full_spatial:
            raise AssertionError(f"{name}: pooling needs the full spatial covariance")

        def pool(a, batch_nd):
            return spatial.pool_full(a, batch_nd, window_shape, strides, padding, normalize)

        nngp = pool(k.nngp, 2)
        return k.replace(
            nngp=nngp,
            ntk=None if k.ntk is None else pool(k.ntk, 2),
            cov1=pool(k.cov1, 1),
            cov2=None if k.cov2 is None else pool(k.cov2, 1),
            spatial=tuple(nngp.shape[2::2]),
        )

    kfn = KernelFn(transform, name, spatial_ndim=nd, diagonal=Diagonal(MAYBE, NO))
    return init_fn, _mark(apply_fn, ("other",)), kfn


def AvgPool(
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    normalize_edges: bool = False,
    batch_axis: int = 0,
    channel_axis: int = -1,
):
    """Average pooling over windows (strides default 1). Kernel (full spatial covariance):
    independent offsets on the two sides of a pair, K'[o, o'] = Σ K[o s + t, o' s + t'] / w²
    per axis, or / count(o)·count(o') with SAME padding and ``normalize_edges``
    (`theory.kernels.spatial.pool_full`)."""
    if batch_axis != 0 or channel_axis != -1:
        raise NotImplementedError("AvgPool: only batch_axis=0 and channel_axis=-1 are supported")
    return _pool_layer("avg", window_shape, strides, padding, normalize_edges)


def SumPool(
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    batch_axis: int = 0,
    channel_axis: int = -1,
):
    """Sum pooling over windows: as `AvgPool` without the division."""
    if batch_axis != 0 or channel_axis != -1:
        raise NotImplementedError("SumPool: only batch_axis=0 and channel_axis=-1 are supported")
    return _pool_layer("sum", window_shape, strides, padding, False)


def MaxPool(
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
):
    """Max pooling for the finite network only: the maximum of correlated Gaussians has no
    closed-form kernel (neural-tangents has no MaxPool either), so its ``kernel_fn`` raises
    `NotImplementedError` saying so; `AvgPool` is the kernel-friendly alternative."""
    window_shape, strides, padding = _check_window("window", window_shape, strides, padding)
    nd = len(window_shape)

    init_fn = _pool_init(window_shape, strides, padding)

    def apply_fn(params, inputs, **kwargs):
        return _reduce_windows(inputs, window_shape, strides, padding, -jnp.inf, jax.lax.max)

    def transform(k: Kernel) -> Kernel:
        raise NotImplementedError(
            "MaxPool has no infinite-width kernel: the maximum of correlated Gaussian "
            "pre-activations has no closed-form covariance (neural-tangents has no MaxPool "
            "either); use AvgPool, or estimate the kernel with monte_carlo_kernel"
        )

    kfn = KernelFn(transform, f"MaxPool({window_shape}, {padding})", spatial_ndim=nd)
    return init_fn, _mark(apply_fn, ("other",)), kfn


def _global_pool(mean: bool, batch_axis: int, channel_axis: int):
    name = "GlobalAvgPool" if mean else "GlobalSumPool"
    if batch_axis != 0 or channel_axis != -1:
        raise NotImplementedError(f"{name}: only batch_axis=0 and channel_axis=-1 are supported")

    def init_fn(rng, input_shape):
        return (input_shape[0], input_shape[-1]), ()

    def apply_fn(params, inputs, **kwargs):
        axes = tuple(range(1, inputs.ndim - 1))
        return jnp.mean(inputs, axis=axes) if mean else jnp.sum(inputs, axis=axes)

    def transform(k: Kernel) -> Kernel:
        if isinstance(k, (list, tuple)):
            raise ValueError(f"{name} takes one input; got {len(k)} branches")
        if not k.spatial:
            raise ValueError(f"{name} needs inputs with spatial axes (NHWC)")
        if not k.full_spatial:
            raise AssertionError(f"{name}: global pooling needs the full spatial covariance")

        def pool(a, batch_nd):
            return spatial.global_pool_full(a, batch_nd, mean)

        return k.replace(
            nngp=pool(k.nngp, 2),
            ntk=None if k.ntk is None else pool(k.ntk, 2),
            cov1=pool(k.cov1, 1),
            cov2=None if k.cov2 is None else pool(k.cov2, 1),
            spatial=(),
        )

    kfn = KernelFn(transform, name, diagonal=Diagonal(MAYBE, YES))
    return init_fn, _mark(apply_fn, ("other",)), kfn


def GlobalAvgPool(batch_axis: int = 0, channel_axis: int = -1):
    """The mean over all sites. Kernel: the mean over all pairs of sites (full covariance)."""
    return _global_pool(True, batch_axis, channel_axis)


def GlobalSumPool(batch_axis: int = 0, channel_axis: int = -1):
    """The sum over all sites. Kernel: the sum over all pairs of sites (full covariance)."""
    return _global_pool(False, batch_axis, channel_axis)


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
    """φ(x) = a·e^{b x²}, b ≤ 0 (for b > 0, E[φ(z)²] is infinite once 4b·Var z ≥ 1)."""
    if not float(b) <= 0:
        raise ValueError(f"b must be <= 0 (E[exp(2b z²)] diverges for b > 0), got {b!r}")
    return _elementwise(
        f"Gaussian({a}, {b})", lambda x: a * jnp.exp(b * x * x), dual.gaussian(a, b)
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


# --------------------------------------------------------------------- combinators


def Identity():
    """The identity layer."""
    return (
        _stateless_init,
        _mark(lambda params, x, **kw: x, ("identity",)),
        KernelFn(lambda k: k, "Identity"),
    )


def serial(*layers):
    """Compose layers: the output of each feeds the next. Parameters are a list, one entry
    per layer."""
    if not layers:
        raise ValueError("serial needs at least one layer")
    for i, layer in enumerate(layers):
        if not (isinstance(layer, tuple) and len(layer) == 3):
            raise TypeError(f"serial: argument {i} is not an (init_fn, apply_fn, kernel_fn) triple")
    inits, applies, kernels = zip(*layers)

    def init_fn(rng, input_shape):
        params = []
        for init in inits:
            rng, sub = jax.random.split(rng)
            input_shape, p = init(sub, input_shape)
            params.append(p)
        return input_shape, params

    def apply_fn(params, inputs, **kwargs):
        for f, p in zip(applies, params):
            inputs = f(p, inputs, **kwargs)
        return inputs

    # One XLA computation per activation, with the linear layers before it fused in.
    groups, pending = [], []
    for kf in kernels:
        pending.append(kf.transform)
        if kf.is_activation:
            groups.append(pending)
            pending = []
    if pending:
        groups.append(pending)

    def run_group(fs, k):
        for f in fs:
            k = f(k)
        return k

    def transform(k):
        for fs in groups:
            k = _fusion_boundary(functools.partial(run_group, fs), k)
        return k

    structure = ("serial", [getattr(f, "structure", ("other",)) for f in applies])
    name = "serial(" + ", ".join(kf.__name__ for kf in kernels) + ")"
    diagonal = functools.reduce(lambda a, b: a >> b, [kf.diagonal for kf in kernels])
    kfn = KernelFn(
        transform,
        name,
        hints=_hints(kernels),
        spatial_ndim=_spatial_ndim(kernels),
        diagonal=diagonal,
    )
    return init_fn, _mark(apply_fn, structure), kfn


def _spatial_ndim(kernels) -> int | None:
    """The site-axis count a network's inputs need: that of its first convolution."""
    for kf in kernels:
        nd = getattr(kf, "spatial_ndim", None)
        if nd is not None:
            return nd
    return None


def _hints(kernels) -> tuple[str, ...]:
    return tuple(h for kf in kernels for h in getattr(kf, "hints", ()))


def _fusion_boundary(f: Callable, k):
    """``f(k)``, compiled as its own XLA computation.

    XLA fuses elementwise producers into every consumer; in a deep kernel the NTK of layer
    l reads the NNGP of layer l, so without a boundary each layer's fusion recomputes the
    whole NNGP chain before it (O(depth²) work: 8× slower at depth 10; and O(depth²)
    compile time: 36 s instead of 3 s for a depth-50 kernel, measured). A
    ``lax.cond`` whose two branches are the same function is semantically ``f(k)`` whatever
    the predicate, but XLA cannot fuse across it. The predicate reads the data so that it
    cannot be constant-folded away.
    """
    leaves = jax.tree_util.tree_leaves(k)
    if not leaves or not isinstance(leaves[0], jax.core.Tracer):
        return f(k)  # eager use: nothing to fuse
    probe = leaves[0].reshape(-1)[0]
    return jax.lax.cond(probe == probe, f, f, k)


def parallel(*layers):
    """Apply layer i to input i of a list (as produced by `FanOut`)."""
    if not layers:
        raise ValueError("parallel needs at least one layer")
    inits, applies, kernels = zip(*layers)

    def init_fn(rng, input_shapes):
        keys = jax.random.split(rng, len(layers))
        out = [init(key, shape) for init, key, shape in zip(inits, keys, input_shapes)]
        return [o[0] for o in out], [o[1] for o in out]

    def apply_fn(params, inputs, **kwargs):
        return [f(p, x, **kwargs) for f, p, x in zip(applies, params, inputs)]

    def transform(ks):
        if not isinstance(ks, (list, tuple)) or len(ks) != len(kernels):
            raise ValueError(
                f"parallel of {len(kernels)} layers needs {len(kernels)} inputs (use FanOut)"
            )
        return [kf.transform(k) for kf, k in zip(kernels, ks)]

    name = "parallel(" + ", ".join(kf.__name__ for kf in kernels) + ")"
    diagonal = functools.reduce(lambda a, b: a & b, [kf.diagonal for kf in kernels])
    kfn = KernelFn(
        transform,
        name,
        hints=_hints(kernels),
        spatial_ndim=_spatial_ndim(kernels),
        diagonal=diagonal,
    )
    return init_fn, _mark(apply_fn, ("other",)), kfn


def FanOut(num: int):
    """Copy the input into ``num`` branches."""
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")

    def init_fn(rng, input_shape):
        return [input_shape] * num, ()

    return (
        init_fn,
        _mark(lambda params, x, **kw: [x] * num, ("other",)),
        KernelFn(lambda k: [k] * num, f"FanOut({num})"),
    )


def _fan_in_check(ks, name):
    if not isinstance(ks, (list, tuple)) or not ks:
        raise ValueError(f"{name} needs a list of branches (use FanOut and parallel)")
    widths = {k.width for k in ks}
    if len(widths) != 1:
        raise ValueError(f"{name}: all branches must have the same width, got {sorted(widths)}")


def _fan_in_init(rng, input_shapes):
    return input_shapes[0], ()


def FanInSum():
    """Sum the branches: K = Σ Kᵢ, Θ = Σ Θᵢ (branches must be Gaussian, as in
    neural-tangents: the sum of non-centred branches would need their means)."""

    def transform(ks):
        _fan_in_check(ks, "FanInSum")
        gaussian = all(k.is_gaussian for k in ks)
        if not gaussian and len(ks) != 1:
            raise NotImplementedError(
                "FanInSum needs every branch to end in a Dense layer (mean-zero Gaussian)"
            )

        def total(name):
            vals = [getattr(k, name) for k in ks]
            return None if vals[0] is None else functools.reduce(jnp.add, vals)

        return ks[0].replace(
            nngp=total("nngp"),
            ntk=total("ntk"),
            cov1=total("cov1"),
            cov2=total("cov2"),
            is_gaussian=gaussian,
        )

    return (
        _fan_in_init,
        _mark(lambda params, xs, **kw: functools.reduce(jnp.add, xs), ("other",)),
        KernelFn(transform, "FanInSum"),
    )


def FanInProd():
    """Multiply the branches elementwise: K = Π Kᵢ, Θ = Σᵢ Θᵢ Π_{j≠i} Kⱼ (independent
    branches)."""

    def transform(ks):
        _fan_in_check(ks, "FanInProd")
        nngp, ntk = 1.0, 0.0
        for k in ks:
            ntk = None if k.ntk is None or ntk is None else ntk * k.nngp + nngp * k.ntk
            nngp = nngp * k.nngp
        cov1 = functools.reduce(jnp.multiply, [k.cov1 for k in ks])
        cov2 = None if ks[0].cov2 is None else functools.reduce(jnp.multiply, [k.cov2 for k in ks])
        return ks[0].replace(
            nngp=nngp,
            ntk=ntk,
            cov1=cov1,
            cov2=cov2,
            is_gaussian=len(ks) == 1 and ks[0].is_gaussian,
        )

    return (
        _fan_in_init,
        _mark(lambda params, xs, **kw: functools.reduce(jnp.multiply, xs), ("other",)),
        KernelFn(transform, "FanInProd"),
    )


def structure_of(apply_fn: Callable) -> Any:
    """The recorded layer structure of a stax ``apply_fn`` (None for other functions)."""
    return getattr(apply_fn, "structure", None)
