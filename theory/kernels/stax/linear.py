"""Linear layers: Dense, Conv, Flatten and pooling. Each maps the kernel by a linear operator
(`theory.kernels.spatial` for the spatial ones) and an affine rescaling."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from theory.kernels import spatial
from theory.kernels.kernel import (
    Kernel,
)
from theory.kernels.stax._core import (
    MAYBE,
    NO,
    YES,
    Diagonal,
    KernelFn,
    _check_std,
    _mark,
)

__all__ = [
    "Dense",
    "Conv",
    "Flatten",
    "AvgPool",
    "SumPool",
    "MaxPool",
    "GlobalAvgPool",
    "GlobalSumPool",
]

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
