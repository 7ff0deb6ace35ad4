r"""Spatial pair operators: how convolutional layers act on kernels over sites.

For inputs with spatial axes S (NHWC: ``x`` of shape (n, *S, C)) the kernel of a layer is,
per pair of points (i, j), a function of the pair of sites (s, s'). A network that needs only
the *spatial diagonal* (convolutions, activations and Dense layers acting per site, ending
in ``Flatten``: the CNN-GP and CNTK without pooling) is computed with K[i, j, s] = K(x_i at s,
x_j at s), N1·N2·|S| entries, exactly as neural-tangents does in its ``diagonal_spatial``
mode (Novak et al. 2019; Arora et al. 2019). The operators here act on arrays whose leading
``batch_nd`` axes are point axes (2 for nngp/ntk (n1, n2, *S), 1 for cov1 (n1, *S)) and whose
trailing axes are sites.

- Input kernel (neural-tangents' convention): K⁰[i, j, s] = Σ_c x1[i, s, c] x2[j, s, c] / C,
  divided by the channel count C only.
- ``Conv`` with filter f, strides and padding: the same offset on both sides of a pair, so
  the diagonal maps to itself: K'[i, j, s] = (1/|f|) Σ_{a ∈ f} K[i, j, s·stride + a]
  (`conv_mean`), with zero padding for SAME (edge sites are still divided by |f|) and
  wrap-around padding for CIRCULAR.
- ``Flatten``: the mean over sites of the diagonal (`flatten_mean`); the result is an FC
  kernel of width C·|S|.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

PADDINGS = ("SAME", "VALID", "CIRCULAR")


def input_kernel_diagonal(x1: jax.Array, x2: jax.Array | None):
    """(nngp (n1, n2, *S), cov1 (n1, *S), cov2 (n2, *S) or None): Σ_c x x' / C per site."""
    c = x1.shape[-1]
    y = x1 if x2 is None else x2
    nngp = jnp.einsum("i...c,j...c->ij...", x1, y, precision=lax.Precision.HIGHEST) / c
    cov1 = jnp.sum(x1 * x1, axis=-1) / c
    cov2 = None if x2 is None else jnp.sum(x2 * x2, axis=-1) / c
    return nngp, cov1, cov2


def conv_pads(
    spatial: Sequence[int], filter_shape: Sequence[int], strides: Sequence[int], padding: str
):
    """Per-axis (low, high) padding of SAME/CIRCULAR (VALID: zeros), as ``lax`` computes it."""
    mode = "VALID" if padding == "VALID" else "SAME"
    return lax.padtype_to_pads(tuple(spatial), tuple(filter_shape), tuple(strides), mode)


def conv_output_shape(spatial, filter_shape, strides, padding) -> tuple[int, ...]:
    """The site shape after a convolution (SAME and CIRCULAR: ⌈S/stride⌉; VALID:
    ⌊(S − f)/stride⌋ + 1)."""
    pads = conv_pads(spatial, filter_shape, strides, padding)
    out = []
    for n, f, st, (lo, hi) in zip(spatial, filter_shape, strides, pads):
        size = (n + lo + hi - f) // st + 1
        if size < 1:
            raise ValueError(
                f"Conv: filter {tuple(filter_shape)} with {padding} padding does not fit input "
                f"sites {tuple(spatial)}"
            )
        out.append(size)
    return tuple(out)


def conv_mean(
    a: jax.Array,
    batch_nd: int,
    filter_shape: Sequence[int],
    strides: Sequence[int],
    padding: str,
) -> jax.Array:
    """(1/|f|) Σ_{a ∈ f} A[..., s·stride + a] over the trailing site axes of ``a`` (the
    diagonal-mode Conv of a kernel), zero padding for SAME, wrap-around for CIRCULAR."""
    spatial = a.shape[batch_nd:]
    pads = conv_pads(spatial, filter_shape, strides, padding)
    if padding == "CIRCULAR":
        a = jnp.pad(a, [(0, 0)] * batch_nd + [tuple(p) for p in pads], mode="wrap")
        pads = [(0, 0)] * len(spatial)
    window = (1,) * batch_nd + tuple(filter_shape)
    steps = (1,) * batch_nd + tuple(strides)
    full_pads = [(0, 0)] * batch_nd + [tuple(p) for p in pads]
    out = lax.reduce_window(a, jnp.zeros((), a.dtype), lax.add, window, steps, full_pads)
    return out / math.prod(filter_shape)


def flatten_mean(a: jax.Array, batch_nd: int) -> jax.Array:
    """The mean over the trailing site axes (diagonal-mode Flatten)."""
    axes = tuple(range(batch_nd, a.ndim))
    return a if not axes else jnp.mean(a, axis=axes)


# ------------------------------------------------------------ full spatial covariance
#
# Pair axes zipped as neural-tangents does, (S1, S1', S2, S2', …): nngp/ntk
# (n1, n2, S1, S1', …), per-point blocks cov1 (n1, S1, S1, …). Unlike neural-tangents, the
# pair axes are never reversed (it swaps them after an odd number of convolutions).


def input_kernel_full(x1: jax.Array, x2: jax.Array | None):
    """(nngp (n1, n2, S1, S1', …), cov1 (n1, S1, S1, …), cov2 or None): Σ_c x x' / C for every
    pair of sites."""
    nd = x1.ndim - 2
    c = x1.shape[-1]
    a, b = "abcd"[:nd], "ABCD"[:nd]
    zipped = "".join(p + q for p, q in zip(a, b))
    y = x1 if x2 is None else x2

    def cross(u, v, lhs, rhs, out):
        return jnp.einsum(f"{lhs},{rhs}->{out}", u, v, precision=lax.Precision.HIGHEST) / c

    nngp = cross(x1, y, f"i{a}z", f"j{b}z", f"ij{zipped}")
    cov1 = cross(x1, x1, f"i{a}z", f"i{b}z", f"i{zipped}")
    cov2 = None if x2 is None else cross(x2, x2, f"i{a}z", f"i{b}z", f"i{zipped}")
    return nngp, cov1, cov2


def site_diagonal(a: jax.Array, batch_nd: int) -> jax.Array:
    """The site diagonal (…, S1, S2, …) of a full-covariance array (…, S1, S1', S2, S2', …)."""
    nd = (a.ndim - batch_nd) // 2
    for _ in range(nd):
        a = jnp.diagonal(a, axis1=batch_nd, axis2=batch_nd + 1)  # appends the diagonal axis
    return a


def site_diagonal_mask(spatial: Sequence[int]) -> jax.Array:
    """Boolean (S1, S1', S2, S2', …): True where every pair of sites coincides."""
    mask = jnp.ones((), bool)
    for n in spatial:
        mask = mask[..., None, None] & jnp.eye(n, dtype=bool)
    return mask


def interleave(a: jax.Array, batch_nd: int, first: bool) -> jax.Array:
    """Site axes (…, S1, S2, …) expanded to zipped pair positions: (…, S1, 1, S2, 1, …) with
    ``first`` (the left member of each pair), else (…, 1, S1, 1, S2, …)."""
    shape = list(a.shape[:batch_nd])
    for n in a.shape[batch_nd:]:
        shape += [n, 1] if first else [1, n]
    return a.reshape(shape)


def _pair_axes(batch_nd: int, d: int) -> tuple[int, int]:
    return batch_nd + 2 * d, batch_nd + 2 * d + 1


def conv_full(a: jax.Array, batch_nd: int, filter_shape, strides, padding: str) -> jax.Array:
    """Conv of a full-covariance array: per spatial axis d, the same offset on both sides of a
    pair, K'[o, o'] = (1/f_d) Σ_t K[o s + t, o' s + t], as a sum of f_d shifted slices."""
    spatial = a.shape[batch_nd::2]
    pads = conv_pads(spatial, filter_shape, strides, padding)
    for d, (f, st, (lo, hi)) in enumerate(zip(filter_shape, strides, pads)):
        ax, bx = _pair_axes(batch_nd, d)
        width = [(0, 0)] * a.ndim
        width[ax] = width[bx] = (lo, hi)
        a = jnp.pad(a, width, mode="wrap" if padding == "CIRCULAR" else "constant")
        n_out = (a.shape[ax] - f) // st + 1
        acc = 0
        for t in range(f):
            sl = [slice(None)] * a.ndim
            sl[ax] = sl[bx] = slice(t, t + st * (n_out - 1) + 1, st)
            acc = acc + a[tuple(sl)]
        a = acc / f
    return a


def pool_full(
    a: jax.Array,
    batch_nd: int,
    window: Sequence[int],
    strides: Sequence[int],
    padding: str,
    normalize: str,
) -> jax.Array:
    """Average or sum pooling of a full-covariance array: independent offsets on the two sides,
    K'[o, o'] = Σ_{t, t'} K[o s + t, o' s + t'] / norm, per spatial axis. ``normalize``:
    ``"sum"`` (no division), ``"window"`` (w², every site), ``"edges"`` (count(o)·count(o'),
    the number of non-padding sites in each window: SAME with normalize_edges)."""
    spatial = a.shape[batch_nd::2]
    pads = conv_pads(spatial, window, strides, padding)
    for d, (w, st, (lo, hi)) in enumerate(zip(window, strides, pads)):
        ax, bx = _pair_axes(batch_nd, d)
        n = a.shape[ax]
        if padding == "CIRCULAR":
            width = [(0, 0)] * a.ndim
            width[ax] = width[bx] = (lo, hi)
            a = jnp.pad(a, width, mode="wrap")
            lo = hi = 0
        dims = [1] * a.ndim
        steps = [1] * a.ndim
        pad_cfg = [(0, 0)] * a.ndim
        dims[ax] = dims[bx] = w
        steps[ax] = steps[bx] = st
        pad_cfg[ax] = pad_cfg[bx] = (lo, hi)
        a = lax.reduce_window(a, jnp.zeros((), a.dtype), lax.add, dims, steps, pad_cfg)
        if normalize == "window":
            a = a / (w * w)
        elif normalize == "edges":
            ones = jnp.ones((n,), a.dtype)
            count = lax.reduce_window(
                ones, jnp.zeros((), a.dtype), lax.add, (w,), (st,), [(lo, hi)]
            )
            shape_a = [1] * a.ndim
            shape_b = [1] * a.ndim
            shape_a[ax], shape_b[bx] = count.shape[0], count.shape[0]
            a = a / (count.reshape(shape_a) * count.reshape(shape_b))
    return a


def pool_output_shape(spatial, window, strides, padding) -> tuple[int, ...]:
    return conv_output_shape(spatial, window, strides, padding)


def flatten_full(a: jax.Array, batch_nd: int) -> jax.Array:
    """Flatten of a full-covariance array: the mean of its site diagonal."""
    return flatten_mean(site_diagonal(a, batch_nd), batch_nd)


def global_pool_full(a: jax.Array, batch_nd: int, mean: bool) -> jax.Array:
    """Global average (``mean``) or sum pooling: the mean or sum over all pairs of sites."""
    axes = tuple(range(batch_nd, a.ndim))
    return jnp.mean(a, axis=axes) if mean else jnp.sum(a, axis=axes)
